//! The decisions: from one sample of every signal to go, throttle, pause or stop — with a
//! confirmation before a stop and hysteresis before a pause lifts.

use crate::config::{GuardSettings, Signal};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the run may do now, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Go,
    Throttle,
    Pause,
    Stop,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Go => "go",
            Action::Throttle => "throttle",
            Action::Pause => "pause",
            Action::Stop => "stop",
        }
    }
}

/// The guard's verdict, as the run sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// The signal behind it (none for go).
    pub signal: Option<Signal>,
    /// The signal, its value and the level it crossed, for a person.
    pub reason: String,
}

impl Verdict {
    pub fn go() -> Verdict {
        Verdict {
            action: Action::Go,
            signal: None,
            reason: String::new(),
        }
    }
}

/// A signal's value, how it is shown, and what it is compared with.
pub fn show(signal: Signal, v: f64) -> String {
    match signal {
        Signal::LockWait | Signal::ReplicaLag => format!("{v:.1} s"),
        Signal::Rollbacks | Signal::Deadlocks => format!("{v:.1}/s"),
        Signal::Latency => format!("{v:.1} ms"),
        Signal::Connections => format!("{:.0}% of max_connections", v * 100.0),
        Signal::WalRate => format!("{v:.1} MB/s"),
        Signal::Checkpoints => format!("{v:.1}/min"),
        Signal::Health => if v >= 0.5 { "healthy" } else { "unhealthy" }.to_string(),
        Signal::LockWaiters | Signal::IdleInTransaction => format!("{v:.0}"),
    }
}

/// Turns samples into verdicts.
pub struct Judge {
    settings: GuardSettings,
    baselines: BTreeMap<Signal, f64>,
    /// Samples in a row each signal has been over its stop level.
    over_stop: BTreeMap<Signal, u32>,
    /// Samples in a row better than the current verdict.
    better: u32,
    current: Verdict,
    paused_at: Option<Instant>,
    /// How long the pause that lifted last had lasted.
    pub resumed_after: Duration,
}

impl Judge {
    pub fn new(settings: GuardSettings, baselines: BTreeMap<Signal, f64>) -> Judge {
        Judge {
            settings,
            baselines,
            over_stop: BTreeMap::new(),
            better: 0,
            current: Verdict::go(),
            paused_at: None,
            resumed_after: Duration::ZERO,
        }
    }

    pub fn baseline(&self, signal: Signal) -> Option<f64> {
        self.baselines.get(&signal).copied()
    }

    /// The level a value of `signal` must exceed for `action`.
    fn threshold(&self, signal: Signal, action: Action) -> Option<f64> {
        let levels = self.settings.signals.get(&signal)?;
        let level = match action {
            Action::Throttle => levels.throttle,
            Action::Pause => levels.pause,
            Action::Stop => levels.stop,
            Action::Go => None,
        }?;
        level.threshold(signal, self.baseline(signal))
    }

    /// The worst action `signal` at `value` calls for, and the level crossed. Health is
    /// breached below its level, every other signal above it.
    fn breach(&self, signal: Signal, value: f64) -> Option<(Action, f64)> {
        [Action::Stop, Action::Pause, Action::Throttle]
            .into_iter()
            .find_map(|a| {
                let t = self.threshold(signal, a)?;
                let over = if signal == Signal::Health {
                    value < t
                } else {
                    value > t
                };
                over.then_some((a, t))
            })
    }

    /// Takes in one sample (the signals measured this time); the new verdict when it changed.
    pub fn judge(&mut self, sample: &BTreeMap<Signal, f64>, now: Instant) -> Option<Verdict> {
        if self.current.action == Action::Stop {
            return None;
        }
        let mut worst = Verdict::go();
        for (&signal, &value) in sample {
            let Some((mut action, level)) = self.breach(signal, value) else {
                self.over_stop.remove(&signal);
                continue;
            };
            let mut confirming = false;
            if action == Action::Stop {
                let n = self.over_stop.entry(signal).or_default();
                *n += 1;
                // Not yet confirmed: a pause until the next look.
                if *n < self.settings.confirm {
                    action = Action::Pause;
                    confirming = true;
                }
            } else {
                self.over_stop.remove(&signal);
            }
            if action > worst.action {
                let base = self
                    .baseline(signal)
                    .map(|b| format!(", baseline {}", show(signal, b)))
                    .unwrap_or_default();
                let verb = if signal == Signal::Health {
                    "below"
                } else {
                    "over"
                };
                let level = if signal == Signal::Health {
                    String::new()
                } else {
                    format!(" {}", show(signal, level))
                };
                let (crossed, then) = match confirming {
                    true => ("stop", "; stopping if the next sample confirms it"),
                    false => (action.name(), ""),
                };
                worst = Verdict {
                    action,
                    signal: Some(signal),
                    reason: format!(
                        "{} {} ({verb} its {crossed} level{level}{base}){then}",
                        signal.key(),
                        show(signal, value),
                    ),
                };
            }
        }
        if worst.action == Action::Pause || worst.action == Action::Stop {
            self.paused_at.get_or_insert(now);
        }
        if let Some(at) = self.paused_at {
            let long = now.saturating_duration_since(at);
            if worst.action == Action::Pause && long > self.settings.max_pause {
                worst = Verdict {
                    action: Action::Stop,
                    signal: worst.signal,
                    reason: format!(
                        "paused for {:.0} s, longer than max_pause: {}",
                        long.as_secs_f64(),
                        worst.reason
                    ),
                };
            }
        }
        let changed = if worst.action >= self.current.action {
            self.better = 0;
            // Worse, or the same action for another reason: the reason that holds now.
            worst.action > self.current.action || worst.signal != self.current.signal
        } else {
            self.better += 1;
            self.better >= self.settings.recover
        };
        if !changed {
            return None;
        }
        self.better = 0;
        if worst.action < Action::Pause {
            if let Some(at) = self.paused_at.take() {
                self.resumed_after = now.saturating_duration_since(at);
            }
        }
        self.current = worst.clone();
        Some(worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GuardLevel;

    fn sample(pairs: &[(Signal, f64)]) -> BTreeMap<Signal, f64> {
        pairs.iter().copied().collect()
    }

    fn judge() -> Judge {
        let baselines = [(Signal::Rollbacks, 2.0)].into_iter().collect();
        Judge::new(GuardSettings::default(), baselines)
    }

    #[test]
    fn a_burst_of_rollbacks_pauses_and_three_good_samples_lift_it() {
        let mut j = judge();
        let t = Instant::now();
        assert_eq!(j.judge(&sample(&[(Signal::Rollbacks, 15.0)]), t), None);
        let v = j.judge(&sample(&[(Signal::Rollbacks, 30.0)]), t).unwrap();
        assert_eq!(
            (v.action, v.signal),
            (Action::Pause, Some(Signal::Rollbacks))
        );
        assert!(v.reason.contains("rollbacks 30.0/s"), "{}", v.reason);
        assert!(v.reason.contains("baseline 2.0/s"), "{}", v.reason);
        for _ in 0..2 {
            assert_eq!(j.judge(&sample(&[(Signal::Rollbacks, 1.0)]), t), None);
        }
        // A bad sample again restarts the count.
        assert_eq!(j.judge(&sample(&[(Signal::Rollbacks, 40.0)]), t), None);
        for _ in 0..2 {
            assert_eq!(j.judge(&sample(&[(Signal::Rollbacks, 1.0)]), t), None);
        }
        let v = j.judge(&sample(&[(Signal::Rollbacks, 1.0)]), t).unwrap();
        assert_eq!(v.action, Action::Go);
    }

    #[test]
    fn a_stop_needs_confirming_and_stays() {
        let mut j = judge();
        let t = Instant::now();
        // Over the stop level once: a pause.
        let v = j.judge(&sample(&[(Signal::LockWait, 6.0)]), t).unwrap();
        assert_eq!(v.action, Action::Pause);
        let v = j.judge(&sample(&[(Signal::LockWait, 7.0)]), t).unwrap();
        assert_eq!(v.action, Action::Stop);
        assert!(
            v.reason
                .starts_with("lock_wait 7.0 s (over its stop level 5.0 s"),
            "{}",
            v.reason
        );
        assert_eq!(j.judge(&sample(&[(Signal::LockWait, 0.0)]), t), None);
        // Once under it in between: the count starts again.
        let mut j = judge();
        j.judge(&sample(&[(Signal::LockWait, 6.0)]), t);
        j.judge(&sample(&[(Signal::LockWait, 0.5)]), t);
        let v = j.judge(&sample(&[(Signal::LockWait, 6.0)]), t);
        assert!(v.is_none_or(|v| v.action == Action::Pause));
    }

    #[test]
    fn an_unhealthy_check_pauses_and_a_long_pause_becomes_a_stop() {
        let mut j = judge();
        let t = Instant::now();
        let v = j.judge(&sample(&[(Signal::Health, 0.0)]), t).unwrap();
        assert_eq!(v.action, Action::Pause);
        assert_eq!(v.reason, "health unhealthy (below its pause level)");
        let later = t + Duration::from_secs(31 * 60);
        let v = j.judge(&sample(&[(Signal::Health, 0.0)]), later).unwrap();
        assert_eq!(v.action, Action::Stop);
        assert!(v.reason.starts_with("paused for 1860 s"), "{}", v.reason);
    }

    #[test]
    fn a_relative_level_without_a_baseline_does_not_apply() {
        let mut s = GuardSettings::default();
        s.signals.get_mut(&Signal::Latency).unwrap().pause = Some(GuardLevel::Times(2.0));
        let mut j = Judge::new(s, BTreeMap::new());
        assert_eq!(
            j.judge(&sample(&[(Signal::Latency, 1e6)]), Instant::now()),
            None
        );
    }

    #[test]
    fn the_worst_signal_names_the_verdict() {
        let mut j = judge();
        let v = j
            .judge(
                &sample(&[(Signal::Connections, 0.9), (Signal::Rollbacks, 50.0)]),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(
            (v.action, v.signal),
            (Action::Pause, Some(Signal::Rollbacks))
        );
    }
}
