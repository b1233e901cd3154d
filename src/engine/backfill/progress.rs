//! Progress: a bar on a terminal, a log line every few seconds elsewhere; in a rollout over
//! many databases, figures for the rollout's own view instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a rollout reads a target's backfill progress: rows walked and the estimate (0 when
/// the table has none: never analyzed).
pub(super) type Sink = Arc<Mutex<Option<(i64, i64)>>>;

/// Rows done, rows/s and time left: a bar on a terminal, a line every few seconds elsewhere.
pub(super) struct Progress {
    pub(super) bar: Option<indicatif::ProgressBar>,
    pub(super) label: String,
    pub(super) started: Instant,
    pub(super) last_line: Instant,
    pub(super) start_walked: i64,
    pub(super) total: i64,
    /// In a rollout: the target's name and its figures, and no bar or lines of its own.
    pub(super) sink: Option<(String, Sink)>,
    /// Whether the table had a row estimate when the backfill started.
    pub(super) estimated: bool,
    /// The guard, whose line of signals follows the figures.
    guard: Option<crate::engine::guard::GuardHandle>,
}

/// How often the progress line is written when the output is not a terminal.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    pub(super) fn new(
        label: String,
        done: i64,
        total: i64,
        sink: Option<(String, Sink)>,
    ) -> Progress {
        use std::io::IsTerminal;
        let bar = (sink.is_none() && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total.max(done) as u64),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {human_pos}/~{human_len} rows  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            bar.set_position(done as u64);
            bar.reset_eta();
            bar
        });
        Progress {
            bar,
            label,
            started: Instant::now(),
            last_line: Instant::now(),
            start_walked: done,
            total,
            sink,
            estimated: total > 0,
            guard: None,
        }
    }

    /// Shows the guard's signals beside the figures.
    pub(super) fn watched_by(mut self, guard: Option<crate::engine::guard::GuardHandle>) -> Self {
        self.guard = guard;
        self
    }

    /// `  ·  guard: …` when a guard watches, else nothing.
    fn guard_line(&self) -> String {
        self.guard
            .as_ref()
            .map(|g| g.line())
            .filter(|l| !l.is_empty())
            .map(|l| format!("  ·  {l}"))
            .unwrap_or_default()
    }

    pub(super) fn update(&mut self, walked: i64, size: i64) {
        if walked > self.total {
            self.total = walked;
        }
        if let Some((_, sink)) = &self.sink {
            if let Ok(mut s) = sink.lock() {
                let estimate = if self.estimated { self.total } else { 0 };
                *s = Some((walked, estimate));
            }
            return;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.total as u64);
                bar.set_position(walked as u64);
                bar.set_message(format!("batch {size}{}", self.guard_line()));
            }
            None if self.last_line.elapsed() >= LOG_EVERY => {
                self.last_line = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                let rate = (walked - self.start_walked) as f64 / secs;
                let left = (self.total - walked).max(0) as f64;
                eprintln!(
                    "{}: {walked} / ~{} rows ({:.0}%), {:.0} rows/s, ~{:.0} s left, batch {size} rows{}",
                    self.label,
                    self.total,
                    100.0 * walked as f64 / self.total.max(1) as f64,
                    rate,
                    if rate > 0.0 { left / rate } else { 0.0 },
                    self.guard_line()
                );
            }
            None => {}
        }
    }

    pub(super) fn say(&self, message: &str) {
        match (&self.bar, &self.sink) {
            (Some(bar), _) => bar.set_message(message.to_string()),
            (None, Some((target, _))) => eprintln!("{target}  {}: {message}", self.label),
            (None, None) => eprintln!("{}: {message}", self.label),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some((_, sink)) = &self.sink {
            if let Ok(mut s) = sink.lock() {
                *s = None;
            }
        }
    }
}
