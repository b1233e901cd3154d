//! `[guard]`: what the guard watches while expand, backfill, contract or abort runs, and what
//! each signal makes it do — throttle, pause or stop — at which level.
//!
//! A level is absolute (`5`, `"2s"`, `"200ms"`), a multiple of the signal's baseline taken
//! just before the run (`"10x"`, never below the signal's floor, so a baseline of zero does not
//! make every sample a breach), or a share of a maximum (`"90%"`, for connections). `"off"`
//! turns a default off.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the guard samples, once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// The longest any other session has waited for a lock that one of our statements holds
    /// or waits for (seconds).
    LockWait,
    /// How many sessions wait on such a lock.
    LockWaiters,
    /// Transactions rolled back per second in this database, ours left out.
    Rollbacks,
    /// Deadlocks per second.
    Deadlocks,
    /// The mean time of the database's busiest statements over the last interval
    /// (`pg_stat_statements`; milliseconds).
    Latency,
    /// Client connections of the server, as a share of `max_connections` (0 to 1).
    Connections,
    /// Sessions idle in a transaction.
    IdleInTransaction,
    /// The largest replay lag of a replica (seconds).
    ReplicaLag,
    /// WAL written per second (MB).
    WalRate,
    /// Checkpoints requested per minute (the WAL outgrew `max_wal_size`).
    Checkpoints,
    /// The operator's health URL: 1 while it answers 2xx, 0 otherwise.
    Health,
}

impl Signal {
    pub const ALL: [Signal; 11] = [
        Signal::LockWait,
        Signal::LockWaiters,
        Signal::Rollbacks,
        Signal::Deadlocks,
        Signal::Latency,
        Signal::Connections,
        Signal::IdleInTransaction,
        Signal::ReplicaLag,
        Signal::WalRate,
        Signal::Checkpoints,
        Signal::Health,
    ];

    /// Its key under `[guard]`.
    pub fn key(self) -> &'static str {
        match self {
            Signal::LockWait => "lock_wait",
            Signal::LockWaiters => "lock_waiters",
            Signal::Rollbacks => "rollbacks",
            Signal::Deadlocks => "deadlocks",
            Signal::Latency => "latency",
            Signal::Connections => "connections",
            Signal::IdleInTransaction => "idle_in_transaction",
            Signal::ReplicaLag => "replica_lag",
            Signal::WalRate => "wal_rate",
            Signal::Checkpoints => "checkpoints",
            Signal::Health => "health",
        }
    }

    /// A multiple of the baseline is never below this: a quiet database's baseline of zero
    /// rollbacks must not make one rollback a breach.
    pub fn floor(self) -> f64 {
        match self {
            Signal::Rollbacks => 5.0,
            Signal::Deadlocks => 1.0,
            Signal::Latency => 5.0,
            Signal::WalRate => 16.0,
            Signal::Checkpoints => 1.0,
            _ => 0.0,
        }
    }

    /// Whether the value is a time in seconds (levels are written as durations).
    pub fn is_duration(self) -> bool {
        matches!(self, Signal::LockWait | Signal::ReplicaLag)
    }
}

/// One level of one signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    /// In the signal's unit (seconds for durations).
    Absolute(f64),
    /// This many times the baseline, at least the signal's floor.
    Times(f64),
    /// A share of the signal's maximum (0 to 1).
    Share(f64),
}

impl Level {
    /// The value a sample must exceed, from the signal's baseline; `None` when it needs a
    /// baseline that could not be taken (then the level does not apply, and `status` says so).
    pub fn threshold(self, signal: Signal, baseline: Option<f64>) -> Option<f64> {
        match self {
            Level::Absolute(v) | Level::Share(v) => Some(v),
            Level::Times(k) => baseline.map(|b| (b * k).max(signal.floor())),
        }
    }

    pub fn describe(self, signal: Signal) -> String {
        match self {
            Level::Absolute(v) if signal.is_duration() => format!("{v:.1} s"),
            Level::Absolute(v) => format!("{v}"),
            Level::Times(k) => format!("{k}× baseline"),
            Level::Share(v) => format!("{:.0}%", v * 100.0),
        }
    }
}

/// What a signal makes the guard do, level by level.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Levels {
    /// The backfill slows down (a pause as long as each batch).
    pub throttle: Option<Level>,
    /// The backfill waits and a step waits before its next try, until the signal recovers.
    pub pause: Option<Level>,
    /// Our statement is cancelled and the run ends at its last checkpoint.
    pub stop: Option<Level>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GuardSettings {
    pub enabled: bool,
    /// How often the signals are sampled.
    pub interval: Duration,
    /// Samples in a row over a stop level before the stop (one more check, as gh-ost does).
    pub confirm: u32,
    /// Samples in a row under the pause level before a pause or throttle lifts.
    pub recover: u32,
    /// A pause longer than this becomes a stop.
    pub max_pause: Duration,
    /// Any answer but 2xx (or none within `health_timeout`) is unhealthy; plain HTTP.
    pub health_url: Option<String>,
    pub health_timeout: Duration,
    pub signals: BTreeMap<Signal, Levels>,
}

impl Default for GuardSettings {
    fn default() -> Self {
        let mut signals = BTreeMap::new();
        let abs = |v| Some(Level::Absolute(v));
        let times = |v| Some(Level::Times(v));
        // Sessions queued behind us: a second is a stall an app notices, five an outage.
        signals.insert(
            Signal::LockWait,
            Levels {
                throttle: None,
                pause: abs(1.0),
                stop: abs(5.0),
            },
        );
        // The app failing far more than it usually does: a bad release, or us.
        signals.insert(
            Signal::Rollbacks,
            Levels {
                pause: times(10.0),
                ..Default::default()
            },
        );
        signals.insert(
            Signal::Deadlocks,
            Levels {
                pause: times(10.0),
                ..Default::default()
            },
        );
        signals.insert(
            Signal::Latency,
            Levels {
                throttle: times(2.0),
                pause: times(4.0),
                stop: None,
            },
        );
        // Our workers' connections are among the last few.
        signals.insert(
            Signal::Connections,
            Levels {
                throttle: Some(Level::Share(0.85)),
                pause: Some(Level::Share(0.95)),
                stop: None,
            },
        );
        signals.insert(
            Signal::ReplicaLag,
            Levels {
                pause: abs(10.0),
                ..Default::default()
            },
        );
        signals.insert(
            Signal::Health,
            Levels {
                pause: Some(Level::Absolute(0.5)),
                ..Default::default()
            },
        );
        GuardSettings {
            enabled: true,
            interval: Duration::from_secs(1),
            confirm: 2,
            recover: 3,
            max_pause: Duration::from_secs(30 * 60),
            health_url: None,
            health_timeout: Duration::from_secs(2),
            signals,
        }
    }
}

/// `[guard]` as written. Unknown keys land in `signals` and are refused there, by name
/// (serde's `deny_unknown_fields` does not work beside `flatten`).
#[derive(Debug, Default, Deserialize)]
pub struct RawGuard {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub confirm: Option<u32>,
    pub recover: Option<u32>,
    pub max_pause: Option<String>,
    pub health_url: Option<String>,
    pub health_timeout: Option<String>,
    /// One table per signal (`[guard.rollbacks] pause = "10x"`).
    #[serde(flatten)]
    pub signals: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevels {
    pub throttle: Option<toml::Value>,
    pub pause: Option<toml::Value>,
    pub stop: Option<toml::Value>,
}

impl GuardSettings {
    pub fn from_raw(raw: &RawGuard) -> Result<GuardSettings, String> {
        let mut g = GuardSettings::default();
        if let Some(e) = raw.enabled {
            g.enabled = e;
        }
        let duration = |key: &str, v: &Option<String>, into: &mut Duration| {
            if let Some(t) = v {
                *into = super::parse_duration(t).map_err(|e| format!("[guard] {key}: {e}"))?;
            }
            Ok::<_, String>(())
        };
        duration("interval", &raw.interval, &mut g.interval)?;
        duration("max_pause", &raw.max_pause, &mut g.max_pause)?;
        duration("health_timeout", &raw.health_timeout, &mut g.health_timeout)?;
        for (key, v, into) in [
            ("confirm", raw.confirm, &mut g.confirm),
            ("recover", raw.recover, &mut g.recover),
        ] {
            if let Some(n) = v {
                if !(1..=60).contains(&n) {
                    return Err(format!(
                        "[guard] {key}: {n} is not between 1 and 60 samples"
                    ));
                }
                *into = n;
            }
        }
        if let Some(url) = &raw.health_url {
            if !url.starts_with("http://") {
                return Err(format!(
                    "[guard] health_url: `{url}` is not a plain http:// URL; the guard speaks plain HTTP — point it at an internal port or a sidecar that answers the health check"
                ));
            }
            g.health_url = Some(url.clone());
        }
        for (key, levels) in &raw.signals {
            let Some(signal) = Signal::ALL.into_iter().find(|s| s.key() == key) else {
                let keys: Vec<&str> = Signal::ALL.iter().map(|s| s.key()).collect();
                return Err(format!(
                    "[guard]: there is no setting or signal `{key}`; the signals are {}",
                    keys.join(", ")
                ));
            };
            let levels: RawLevels = levels.clone().try_into().map_err(|e| {
                format!(
                    "[guard.{key}]: {}; write throttle, pause or stop levels",
                    e.to_string().trim_end()
                )
            })?;
            let into = g.signals.entry(signal).or_default();
            for (name, value, slot) in [
                ("throttle", &levels.throttle, &mut into.throttle),
                ("pause", &levels.pause, &mut into.pause),
                ("stop", &levels.stop, &mut into.stop),
            ] {
                if let Some(v) = value {
                    *slot =
                        parse_level(signal, v).map_err(|e| format!("[guard.{key}] {name}: {e}"))?;
                }
            }
        }
        Ok(g)
    }
}

/// One level as written: a number, `"10x"`, `"90%"`, a duration, or `"off"`.
fn parse_level(signal: Signal, v: &toml::Value) -> Result<Option<Level>, String> {
    let level = match v {
        toml::Value::Integer(i) => Level::Absolute(*i as f64),
        toml::Value::Float(f) => Level::Absolute(*f),
        toml::Value::Boolean(false) => return Ok(None),
        toml::Value::String(s) => {
            let t = s.trim();
            if t == "off" {
                return Ok(None);
            }
            if let Some(k) = t.strip_suffix('x') {
                Level::Times(
                    k.trim()
                        .parse()
                        .map_err(|_| format!("`{s}` is not a multiple (write 10x)"))?,
                )
            } else if let Some(p) = t.strip_suffix('%') {
                if signal != Signal::Connections {
                    return Err(format!(
                        "`{s}`: a share applies to connections only (of max_connections)"
                    ));
                }
                let p: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}` is not a share (write 90%)"))?;
                Level::Share(p / 100.0)
            } else if signal.is_duration() {
                Level::Absolute(super::parse_duration(t)?.as_secs_f64())
            } else {
                Level::Absolute(
                    t.parse()
                        .map_err(|_| format!("`{s}` is not a number, a multiple (10x) or off"))?,
                )
            }
        }
        other => return Err(format!("`{other:?}` is not a level")),
    };
    match level {
        Level::Absolute(v) | Level::Times(v) | Level::Share(v) if v.is_nan() || v < 0.0 => {
            Err(format!("`{v}` is not a level (negative)"))
        }
        l => Ok(Some(l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GuardSettings, String> {
        let raw: RawGuard = toml::from_str(text).map_err(|e| e.to_string())?;
        GuardSettings::from_raw(&raw)
    }

    #[test]
    fn levels_absolute_relative_shares_durations_and_off() {
        let g = parse(
            "health_url = \"http://127.0.0.1:9/health\"\n\
             [rollbacks]\npause = \"20x\"\nstop = 500\n\
             [lock_wait]\nstop = \"800ms\"\npause = \"off\"\n\
             [connections]\nstop = \"99%\"",
        )
        .unwrap();
        let r = g.signals[&Signal::Rollbacks];
        assert_eq!(r.pause, Some(Level::Times(20.0)));
        assert_eq!(r.stop, Some(Level::Absolute(500.0)));
        let l = g.signals[&Signal::LockWait];
        assert_eq!((l.pause, l.stop), (None, Some(Level::Absolute(0.8))));
        assert_eq!(
            g.signals[&Signal::Connections].stop,
            Some(Level::Share(0.99))
        );
        // A multiple never goes under the floor.
        assert_eq!(
            Level::Times(10.0).threshold(Signal::Rollbacks, Some(0.0)),
            Some(5.0)
        );
        assert_eq!(Level::Times(10.0).threshold(Signal::Rollbacks, None), None);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse("[rollback]\npause = 3")
            .unwrap_err()
            .contains("no setting or signal `rollback`"));
        assert!(parse("[rollbacks]\npause = \"90%\"")
            .unwrap_err()
            .contains("connections only"));
        assert!(parse("health_url = \"https://x/h\"")
            .unwrap_err()
            .contains("plain http"));
        assert!(parse("[lock_wait]\nstop = \"soon\"")
            .unwrap_err()
            .contains("[guard.lock_wait] stop"));
    }
}
