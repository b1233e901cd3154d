//! The batch size, moving toward a target duration.

use crate::config::BackfillSettings;
use std::time::Duration;

/// Moves the batch size toward the target duration: grows at most a fifth per batch, and only
/// after a full batch that was quicker than the target; shrinks at once to the size that would
/// have met the target (at most to a quarter per batch) after a slow one, and to a quarter
/// after a lock timeout. Always within the bounds.
#[derive(Debug, Clone)]
pub struct Sizer {
    rows: f64,
    min: f64,
    max: f64,
    target: Duration,
}

impl Sizer {
    pub fn new(s: &BackfillSettings, resume_at: Option<i64>) -> Sizer {
        let mut sizer = Sizer {
            rows: resume_at.unwrap_or(s.initial_rows) as f64,
            min: s.min_rows as f64,
            max: s.max_rows as f64,
            target: s.target,
        };
        sizer.clamp();
        sizer
    }

    pub fn rows(&self) -> i64 {
        self.rows.round() as i64
    }

    fn clamp(&mut self) {
        self.rows = self.rows.clamp(self.min, self.max);
    }

    /// After a batch that took `took` for `walked` rows.
    pub fn observe(&mut self, walked: i64, took: Duration) {
        let ratio = self.target.as_secs_f64() / took.as_secs_f64().max(1e-6);
        if ratio < 1.0 {
            let fitting = walked.max(1) as f64 * ratio;
            self.rows = fitting.clamp(self.rows / 4.0, self.rows);
        } else if walked >= self.rows() {
            self.rows *= ratio.min(1.2);
        }
        self.clamp();
    }

    /// After a batch that gave up waiting for a row lock.
    pub fn lock_timeout(&mut self) {
        self.rows /= 4.0;
        self.clamp();
    }

    pub fn at_min(&self) -> bool {
        self.rows <= self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BackfillSettings {
        BackfillSettings {
            target: Duration::from_millis(100),
            min_rows: 100,
            max_rows: 50_000,
            initial_rows: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn grows_slowly_toward_the_target() {
        let mut s = Sizer::new(&settings(), None);
        // 10 ms for 1,000 rows: ten times faster than the target, but it grows by a fifth.
        s.observe(1_000, Duration::from_millis(10));
        assert_eq!(s.rows(), 1_200);
        for _ in 0..100 {
            let rows = s.rows();
            s.observe(rows, Duration::from_micros(rows as u64 * 10));
        }
        // 10 µs a row: 10,000 rows meet 100 ms.
        assert!((9_000..=11_000).contains(&s.rows()), "{}", s.rows());
    }

    #[test]
    fn a_partial_batch_does_not_grow_it() {
        let mut s = Sizer::new(&settings(), None);
        s.observe(10, Duration::from_millis(1));
        assert_eq!(s.rows(), 1_000);
    }

    #[test]
    fn shrinks_fast_and_stays_in_bounds() {
        let mut s = Sizer::new(&settings(), Some(40_000));
        // Twice the target: straight to half.
        s.observe(40_000, Duration::from_millis(200));
        assert_eq!(s.rows(), 20_000);
        // A stall of 10 s: at most a quarter per batch.
        s.observe(20_000, Duration::from_secs(10));
        assert_eq!(s.rows(), 5_000);
        for _ in 0..10 {
            s.lock_timeout();
        }
        assert_eq!(s.rows(), 100);
        assert!(s.at_min());
        let mut s = Sizer::new(&settings(), Some(1_000_000));
        assert_eq!(s.rows(), 50_000, "a resumed size is bounded too");
        s.observe(50_000, Duration::from_millis(1));
        assert_eq!(s.rows(), 50_000);
    }
}
