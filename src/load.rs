//! What every simulated app version shares — the demo's two versions and the rehearsal's
//! probes: a session set up as an app of that version sets itself up (its name, its
//! version's `search_path`), and the requests' timings with their percentiles.

use sqlx::PgConnection;

/// Names the session and puts it on its version's `search_path` (when given), in one round
/// trip, as an app's connection setup does.
pub async fn app_session(
    c: &mut PgConnection,
    application_name: Option<&str>,
    search_path: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT CASE WHEN $1::text IS NULL THEN NULL ELSE set_config('application_name', $1, false) END,
                CASE WHEN $2::text IS NULL THEN NULL ELSE set_config('search_path', $2, false) END",
    )
    .bind(application_name)
    .bind(search_path)
    .execute(c)
    .await
    .map(|_| ())
}

/// The requests of one version (over one stretch): the times of those that succeeded, and
/// how many failed.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    ms: Vec<f64>,
    pub failed: u64,
}

impl Timings {
    pub fn ok(&mut self, ms: f64) {
        self.ms.push(ms);
    }

    pub fn fail(&mut self) {
        self.failed += 1;
    }

    pub fn requests(&self) -> usize {
        self.ms.len() + self.failed as usize
    }

    /// The nearest-rank percentile of the successful requests' times (`q` in 0–1); 0 with none.
    pub fn percentile(&self, q: f64) -> f64 {
        let mut l = self.ms.clone();
        l.sort_by(f64::total_cmp);
        if l.is_empty() {
            return 0.0;
        }
        l[((q * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1]
    }

    pub fn max(&self) -> f64 {
        self.ms.iter().copied().fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::Timings;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut t = Timings::default();
        assert_eq!(t.percentile(0.99), 0.0);
        for ms in (1..=100).rev() {
            t.ok(f64::from(ms));
        }
        t.fail();
        assert_eq!(t.percentile(0.5), 50.0);
        assert_eq!(t.percentile(0.99), 99.0);
        assert_eq!(t.max(), 100.0);
        assert_eq!(t.requests(), 101);
    }
}
