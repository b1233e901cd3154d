//! The small vocabulary every stage shares: how bad a finding is, which PostgreSQL a plan is
//! for, and the phases of a change. A leaf: it imports nothing of the crate, so `config`,
//! `lint`, `plan` and the engine can all use it without importing each other.

use serde::Serialize;
use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Style: nothing breaks.
    Info,
    /// Unsafe as written; the plan makes it safe, or a person must look.
    Warning,
    /// Cannot be made safe automatically: the build fails.
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PostgreSQL server version, major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PgVersion {
    pub major: u32,
    pub minor: u32,
}

impl PgVersion {
    pub const DEFAULT: PgVersion = PgVersion {
        major: 15,
        minor: 0,
    };

    pub fn at_least(&self, major: u32) -> bool {
        self.major >= major
    }
}

impl std::str::FromStr for PgVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a PostgreSQL version; write it as 15 or 14.3");
        let mut parts = s.trim().split('.');
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor: u32 = match parts.next() {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => 0,
        };
        // 9.6 style versions: the first two parts are the major version.
        let (major, minor) = if major == 9 {
            (9, minor)
        } else {
            (major, minor)
        };
        if !(9..=99).contains(&major) || parts.next().is_some() {
            return Err(bad());
        }
        Ok(PgVersion { major, minor })
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The three phases of a zero-downtime change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Additive, backward-compatible: before the code deploy.
    Expand,
    /// Data moved in batches, while traffic runs.
    Backfill,
    /// Destructive and tightening: after the old version is gone.
    Contract,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Expand, Phase::Backfill, Phase::Contract];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Backfill => "backfill",
            Phase::Contract => "contract",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
