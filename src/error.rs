//! The library's typed errors: each names the file or setting at fault and what to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: the file is not valid UTF-8; save it as UTF-8")]
    NotUtf8(PathBuf),
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("database: {0}")]
    Database(String),
    /// Another runner holds the lock; the message names it.
    #[error("{0}")]
    Locked(String),
    /// The command will not run, and says why (unsafe findings, a changed file, a phase out
    /// of order); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// A step could not get its lock within its tries; the message names the blockers.
    #[error("lock timeout: {0}")]
    LockTimeout(String),
    /// The run stopped cleanly at a checkpoint — the guard stopped it, or, in a rollout,
    /// another target failed; a rerun resumes it (exit code 3 on its own).
    #[error("{0}")]
    Stopped(String),
    /// A rollout over many databases ended with failures; the message lists every target.
    #[error("{0}")]
    Rollout(String),
}

impl Error {
    /// Whether it is a file or directory that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
