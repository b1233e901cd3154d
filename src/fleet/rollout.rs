//! One command over every target of a fleet, as careful as a good app rollout.
//!
//! First every target is read (never written): one that cannot be reached, or whose recorded
//! checksum differs from its file, refuses the whole rollout before any is touched; so does a
//! contract while any target's old version may still run. Then the canaries run, alone, one
//! after the other; then the rest, at most `parallel` at once, with at most `backfills` of
//! them backfilling. The first failure stops new targets from starting and makes the running
//! ones stop at their next step or batch, each at a checkpoint its next run resumes from. Each
//! target keeps its own metadata, exactly as a single database does, so a rerun continues.

use super::{Fleet, Target};
use crate::config::Settings;
use crate::engine::exec::{ExecSettings, RolloutHooks};
use crate::engine::guard::{Action, Guard, Voice};
use crate::engine::run::Runner;
use crate::engine::state::MigrationPhase;
use crate::engine::status::{lines, StatusLine};
use crate::error::Error;
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The command a rollout runs on each target.
#[derive(Debug, Clone)]
pub enum Op {
    Expand {
        upto: Option<String>,
        backfill: bool,
    },
    Backfill {
        upto: Option<String>,
    },
    Contract {
        upto: Option<String>,
    },
    Abort {
        name: String,
    },
    Baseline {
        upto: Option<String>,
    },
    Latest,
}

impl Op {
    /// Whether it changes the targets (and so a stage of it is watched before the next).
    fn changes(&self) -> bool {
        !matches!(self, Op::Latest)
    }

    fn verb(&self) -> &'static str {
        match self {
            Op::Expand { .. } => "expand",
            Op::Backfill { .. } => "backfill",
            Op::Contract { .. } => "contract",
            Op::Abort { .. } => "abort",
            Op::Baseline { .. } => "baseline",
            Op::Latest => "latest",
        }
    }
}

/// Where a target stands at the end of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NotStarted,
    Done(String),
    Failed(String),
    Stopped(String),
}

/// What each target of the fleet came to, in the fleet's order.
#[derive(Debug)]
pub struct Report {
    pub verb: &'static str,
    pub targets: Vec<(String, Outcome)>,
    /// Why the rollout stopped before a wider stage: the target and its signal.
    pub halted: Option<String>,
    pub took: Duration,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.halted.is_some()
            || self
                .targets
                .iter()
                .any(|(_, o)| !matches!(o, Outcome::Done(_)))
    }

    /// The closing summary: counts, then each target that is not done.
    pub fn summary(&self) -> String {
        let count = |f: fn(&Outcome) -> bool| self.targets.iter().filter(|(_, o)| f(o)).count();
        let done = count(|o| matches!(o, Outcome::Done(_)));
        let failed = count(|o| matches!(o, Outcome::Failed(_)));
        let stopped = count(|o| matches!(o, Outcome::Stopped(_)));
        let waiting = count(|o| matches!(o, Outcome::NotStarted));
        let mut s = format!(
            "{}: {done} of {} targets done",
            self.verb,
            self.targets.len()
        );
        if !self.failed() {
            s.push_str(&format!(" in {:.1} s", self.took.as_secs_f64()));
            return s;
        }
        s.push_str(&format!(
            ", {failed} failed, {stopped} stopped, {waiting} not started"
        ));
        if let Some(why) = &self.halted {
            s.push_str(&format!(
                "\n  halted       before the next stage, a target done turned bad: {why}"
            ));
        }
        for (name, o) in &self.targets {
            match o {
                Outcome::Failed(e) => s.push_str(&format!("\n  failed       {name}: {e}")),
                Outcome::Stopped(e) => s.push_str(&format!("\n  stopped      {e}")),
                _ => {}
            }
        }
        let untouched: Vec<&str> = self
            .targets
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::NotStarted))
            .map(|(n, _)| n.as_str())
            .collect();
        if !untouched.is_empty() {
            s.push_str(&format!("\n  not started  {}", untouched.join(", ")));
        }
        s.push_str(
            "\nfix the failure, then run the same command again: targets that are done are left as they are, stopped ones resume where they stopped",
        );
        s
    }
}

/// Refuses the rollout, before any target is touched, when one of them cannot be read, has
/// a file that changed since it was applied, or — for a contract — may still serve the old
/// version.
pub async fn preflight(fleet: &Fleet, settings: &Settings, op: &Op) -> Result<(), Error> {
    let read = each(fleet, fleet.parallel.max(4), |t: Target| {
        let settings = settings.clone();
        async move { lines(&settings, t.url()).await }
    })
    .await;
    let mut problems = Vec::new();
    for (t, r) in fleet.targets.iter().zip(&read) {
        match r {
            Err(e) => problems.push(format!("{}: {e}", t.name)),
            Ok(lines) => {
                for l in lines.iter().filter(|l| l.changed) {
                    problems.push(format!(
                        "{}: {} {}",
                        t.name,
                        l.name,
                        l.note.clone().unwrap_or_default()
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused(format!(
            "{} refused over the fleet ({}); no target was touched:\n  {}",
            op.verb(),
            fleet.source.display(),
            problems.join("\n  ")
        )));
    }
    if let Op::Contract { upto } = op {
        let read: Vec<Vec<StatusLine>> = read.into_iter().map(|r| r.unwrap_or_default()).collect();
        old_version_gone(fleet, &read, upto.as_deref())?;
    }
    Ok(())
}

/// A contract removes what the old version reads; while any target has not expanded and
/// backfilled a migration, the old version may still run against it (the app's versions are
/// deployed to the whole fleet at once), so no target contracts it.
fn old_version_gone(
    fleet: &Fleet,
    read: &[Vec<StatusLine>],
    upto: Option<&str>,
) -> Result<(), Error> {
    let ready = |p: MigrationPhase| {
        matches!(
            p,
            MigrationPhase::Backfilled | MigrationPhase::Contracting | MigrationPhase::Complete
        )
    };
    let in_scope = |name: &str| {
        upto.is_none_or(|u| crate::files::natural_cmp(name, u) != std::cmp::Ordering::Greater)
    };
    let mut behind = Vec::new();
    let names: Vec<&str> = read
        .iter()
        .flatten()
        .filter(|l| in_scope(&l.name) && !l.file_missing)
        .map(|l| l.name.as_str())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            continue;
        }
        let phases: Vec<(&str, MigrationPhase)> = fleet
            .targets
            .iter()
            .zip(read)
            .map(|(t, lines)| {
                let p = lines
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| l.phase)
                    .unwrap_or(MigrationPhase::Pending);
                (t.name.as_str(), p)
            })
            .collect();
        let all_aborted = phases.iter().all(|(_, p)| *p == MigrationPhase::Aborted);
        if all_aborted {
            continue;
        }
        for (t, p) in phases {
            if !ready(p) {
                behind.push(format!("{t}: {name} is {p}"));
            }
        }
    }
    if behind.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "contract refused over the fleet: the old version may still run, because not every target has expanded and backfilled; no target was touched:\n  {}\nrun `migrate expand --fleet` (and `migrate backfill --fleet`) until every target is backfilled, deploy the new version everywhere, then contract",
        behind.join("\n  ")
    )))
}

/// Runs `f` on every target, at most `limit` at once, on this thread; results in the
/// fleet's order.
pub async fn each<T, F, Fut>(fleet: &Fleet, limit: usize, f: F) -> Vec<T>
where
    T: 'static,
    F: Fn(Target) -> Fut,
    Fut: std::future::Future<Output = T> + 'static,
{
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut set = tokio::task::JoinSet::new();
            let mut results: Vec<Option<T>> = fleet.targets.iter().map(|_| None).collect();
            let mut next = fleet.targets.iter().cloned().enumerate();
            loop {
                while set.len() < limit {
                    let Some((i, t)) = next.next() else { break };
                    let fut = f(t);
                    set.spawn_local(async move { (i, fut.await) });
                }
                match set.join_next().await {
                    Some(Ok((i, r))) => results[i] = Some(r),
                    Some(Err(e)) => panic!("a fleet task failed: {e}"),
                    None => break,
                }
            }
            results
                .into_iter()
                .map(|r| r.expect("every target ran"))
                .collect()
        })
        .await
}

/// Lines of output, each prefixed with its target's name; above the progress line on a
/// terminal.
struct View {
    width: usize,
    bar: Option<indicatif::ProgressBar>,
    to_stderr: bool,
}

impl View {
    fn line(&self, target: &str, text: &str) {
        let line = format!("{target:<w$}  {text}", w = self.width);
        match &self.bar {
            Some(bar) => bar.println(line),
            None if self.to_stderr => eprintln!("{line}"),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }
}

/// A target's output, line by line, into the view.
struct Lines {
    view: Rc<View>,
    target: String,
    buf: Vec<u8>,
}

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        while let Some(i) = self.buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.view.line(&self.target, &text);
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            self.view.line(&self.target, &text);
        }
        Ok(())
    }
}

/// The state of one target while the rollout runs.
#[derive(Clone)]
struct Slot {
    outcome: Outcome,
    running: bool,
    progress: Arc<Mutex<Option<(i64, i64)>>>,
}

/// Runs `op` over the fleet: canaries first, alone, then the rest; see the module's text.
/// The targets' lines go to stdout, or to stderr when stdout is for a machine format.
pub async fn run(
    fleet: &Fleet,
    settings: &Settings,
    exec: &ExecSettings,
    op: &Op,
    lines_to_stderr: bool,
) -> Result<Report, Error> {
    let started = Instant::now();
    preflight(fleet, settings, op).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(tokio::sync::Semaphore::new(fleet.backfills));
    let bar = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}")
                    .expect("a valid template"),
            );
            bar
        })
    };
    let view = Rc::new(View {
        width: fleet
            .targets
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0)
            .min(24),
        bar,
        to_stderr: lines_to_stderr,
    });
    let slots: Rc<RefCell<Vec<Slot>>> = Rc::new(RefCell::new(
        fleet
            .targets
            .iter()
            .map(|_| Slot {
                outcome: Outcome::NotStarted,
                running: false,
                progress: Arc::new(Mutex::new(None)),
            })
            .collect(),
    ));
    let local = tokio::task::LocalSet::new();
    let halted: RefCell<Option<String>> = RefCell::new(None);
    let one = |i: usize| {
        let t = fleet.targets[i].clone();
        let hooks = RolloutHooks {
            target: t.name.clone(),
            stop: stop.clone(),
            backfills: budget.clone(),
            progress: slots.borrow()[i].progress.clone(),
        };
        let exec = ExecSettings {
            rollout: Some(hooks),
            ..exec.clone()
        };
        let (settings, op, view, slots, stop) = (
            settings.clone(),
            op.clone(),
            view.clone(),
            slots.clone(),
            stop.clone(),
        );
        async move {
            slots.borrow_mut()[i].running = true;
            let mut out = Lines {
                view,
                target: t.name.clone(),
                buf: Vec::new(),
            };
            let r = on_target(&t, &settings, exec, &op, &mut out).await;
            let _ = out.flush();
            let outcome = match r {
                Ok(s) => Outcome::Done(s),
                Err(Error::Stopped(s)) => Outcome::Stopped(s),
                Err(e) => {
                    stop.store(true, Ordering::SeqCst);
                    Outcome::Failed(e.to_string())
                }
            };
            let mut s = slots.borrow_mut();
            s[i].running = false;
            s[i].outcome = outcome;
        }
    };
    local
        .run_until(async {
            let ticker = view.bar.clone().map(|bar| {
                let slots = slots.clone();
                let names: Vec<String> = fleet.targets.iter().map(|t| t.name.clone()).collect();
                tokio::task::spawn_local(async move {
                    loop {
                        bar.set_message(progress_line(&slots.borrow(), &names));
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                })
            });
            // The canaries first, then the rest in the fleet's order, cut into stages.
            let order: Vec<usize> = fleet
                .canary
                .iter()
                .copied()
                .chain((0..fleet.targets.len()).filter(|i| !fleet.canary.contains(i)))
                .collect();
            let mut from = 0;
            for (k, &upto) in fleet.stages.iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let stage = &order[from..upto];
                if k == 0 {
                    // The canaries, alone, one after the other.
                    for &i in stage {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        one(i).await;
                    }
                } else {
                    let mut set = tokio::task::JoinSet::new();
                    let mut rest = stage.iter().copied();
                    loop {
                        while set.len() < fleet.parallel && !stop.load(Ordering::SeqCst) {
                            let Some(i) = rest.next() else { break };
                            set.spawn_local(one(i));
                        }
                        if set.join_next().await.is_none() {
                            break;
                        }
                    }
                }
                from = upto;
                let last = upto == order.len();
                if stop.load(Ordering::SeqCst) || last || fleet.watch.is_zero() || !op.changes()
                {
                    continue;
                }
                let done: Vec<Target> = order[..upto]
                    .iter()
                    .map(|i| fleet.targets[*i].clone())
                    .collect();
                view.line(
                    "",
                    &format!(
                        "stage {} done ({upto} of {} targets); watching them for {:.0} s before the next",
                        k + 1,
                        order.len(),
                        fleet.watch.as_secs_f64()
                    ),
                );
                if let Err(why) = watch_stage(&done, settings, fleet.watch).await {
                    view.line("", &format!("stopping the rollout before it widens: {why}"));
                    halted.replace(Some(why));
                    stop.store(true, Ordering::SeqCst);
                }
            }
            if let Some(t) = ticker {
                t.abort();
            }
        })
        .await;
    if let Some(bar) = &view.bar {
        bar.finish_and_clear();
    }
    let targets = fleet
        .targets
        .iter()
        .zip(slots.borrow().iter())
        .map(|(t, s)| (t.name.clone(), s.outcome.clone()))
        .collect();
    Ok(Report {
        verb: op.verb(),
        targets,
        halted: halted.into_inner(),
        took: started.elapsed(),
    })
}

/// Watches the targets `done` for `how_long` with a guard each (on connections of its own;
/// nothing of ours runs there now): the first that turns bad — a signal at a pause or stop
/// level — ends the watch, named. Without a guard (`[guard] enabled = false`), a blind wait.
async fn watch_stage(
    done: &[Target],
    settings: &Settings,
    how_long: Duration,
) -> Result<(), String> {
    if !settings.guard.enabled {
        tokio::time::sleep(how_long).await;
        return Ok(());
    }
    let mut guards = Vec::new();
    let mut result = Ok(());
    for t in done {
        let voice = Voice {
            prefix: format!("{} ", t.name),
            metadata_schema: settings.metadata_schema.clone(),
            json: false,
        };
        match Guard::start(t.url(), &settings.guard, "watch", voice).await {
            Ok(g) => guards.push((t.name.clone(), g)),
            Err(e) => {
                result = Err(format!("{}: the guard cannot watch it ({e})", t.name));
                break;
            }
        }
    }
    let deadline = Instant::now() + how_long;
    while result.is_ok() && Instant::now() < deadline {
        for (name, g) in &guards {
            let v = g.handle.verdict();
            if v.action >= Action::Pause {
                result = Err(format!("{name}: {}", v.reason));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (_, g) in guards {
        g.finish().await;
    }
    result
}

/// Targets done, running and waiting, and the backfill furthest from its end.
fn progress_line(slots: &[Slot], names: &[String]) -> String {
    let done = slots
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Done(_)))
        .count();
    let running = slots.iter().filter(|s| s.running).count();
    let waiting = slots
        .iter()
        .filter(|s| !s.running && s.outcome == Outcome::NotStarted)
        .count();
    let backfills: Vec<(i64, i64, &String)> = slots
        .iter()
        .zip(names)
        .filter_map(|(s, n)| {
            let (walked, total) = (*s.progress.lock().ok()?)?;
            Some((walked, total, n))
        })
        .collect();
    // The furthest from its end by share where the table had an estimate; else by rows.
    let slowest = backfills
        .iter()
        .filter(|b| b.1 > 0)
        .min_by(|a, b| (a.0 as f64 / a.1 as f64).total_cmp(&(b.0 as f64 / b.1 as f64)))
        .or_else(|| backfills.iter().min_by_key(|b| b.0));
    let mut line = format!("targets: {done} done, {running} running, {waiting} waiting");
    match slowest {
        Some((walked, total, name)) if *total > 0 => line.push_str(&format!(
            "; slowest backfill {name} {:.0}%",
            100.0 * (*walked as f64 / *total as f64).min(1.0)
        )),
        Some((walked, _, name)) => {
            line.push_str(&format!("; slowest backfill {name} {walked} rows"))
        }
        None => {}
    }
    line
}

/// The command on one target, as it runs on a single database.
async fn on_target(
    t: &Target,
    settings: &Settings,
    exec: ExecSettings,
    op: &Op,
    out: &mut dyn Write,
) -> Result<String, Error> {
    if let Op::Baseline { upto } = op {
        let (added, existing) =
            crate::cli::baseline::baseline(settings, t.url(), upto.as_deref(), out).await?;
        return Ok(format!(
            "recorded {added} migration(s) as applied; {existing} already recorded"
        ));
    }
    let command = match op {
        Op::Expand { .. } => Some("expand"),
        Op::Backfill { .. } => Some("backfill"),
        Op::Contract { .. } => Some("contract"),
        Op::Abort { .. } => Some("abort"),
        Op::Latest | Op::Baseline { .. } => None,
    };
    let mut runner = match command {
        Some(c) => Runner::open_watched(t.url(), exec, settings.clone(), c).await?,
        None => Runner::open(t.url(), exec, settings.clone()).await?,
    };
    let result = match op {
        Op::Expand { upto, backfill } => runner
            .expand(upto.as_deref(), *backfill, out)
            .await
            .map(|n| format!("expanded {n} migration(s)")),
        Op::Backfill { upto } => runner
            .backfill(upto.as_deref(), out)
            .await
            .map(|n| format!("backfilled {n} migration(s)")),
        Op::Contract { upto } => runner
            .contract(upto.as_deref(), out)
            .await
            .map(|n| format!("contracted {n} migration(s)")),
        Op::Abort { name } => runner
            .abort(name, out)
            .await
            .map(|_| format!("aborted {name}")),
        Op::Latest => runner.latest().await.map(|l| match l {
            Some((schema, _)) => {
                crate::engine::versions::search_path(&schema, &settings.managed_schemas)
            }
            None => "no version schema yet".into(),
        }),
        Op::Baseline { .. } => unreachable!("handled above"),
    };
    runner.close().await;
    let summary = result?;
    let _ = writeln!(out, "{summary}");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(outcome: Outcome, running: bool, progress: Option<(i64, i64)>) -> Slot {
        Slot {
            outcome,
            running,
            progress: Arc::new(Mutex::new(progress)),
        }
    }

    #[test]
    fn the_progress_line_counts_targets_and_names_the_backfill_furthest_from_its_end() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let slots = vec![
            slot(Outcome::Done("x".into()), false, None),
            slot(Outcome::NotStarted, true, Some((900, 1000))),
            slot(Outcome::NotStarted, true, Some((100, 1000))),
            slot(Outcome::NotStarted, false, None),
        ];
        assert_eq!(
            progress_line(&slots, &names),
            "targets: 1 done, 2 running, 1 waiting; slowest backfill c 10%"
        );
        // Tables never analyzed have no estimate: rows, not a share.
        let slots = vec![
            slot(Outcome::NotStarted, true, Some((5000, 0))),
            slot(Outcome::NotStarted, true, Some((700, 0))),
        ];
        assert_eq!(
            progress_line(&slots, &names[..2]),
            "targets: 0 done, 2 running, 0 waiting; slowest backfill b 700 rows"
        );
    }

    #[test]
    fn the_summary_names_every_target_that_is_not_done() {
        let r = Report {
            verb: "expand",
            targets: vec![
                ("a".into(), Outcome::Done("expanded 1 migration(s)".into())),
                ("b".into(), Outcome::Failed("lock timeout: x".into())),
                ("c".into(), Outcome::Stopped("c: stopped before y".into())),
                ("d".into(), Outcome::NotStarted),
                ("e".into(), Outcome::NotStarted),
            ],
            halted: None,
            took: Duration::from_secs(1),
        };
        assert!(r.failed());
        let s = r.summary();
        assert!(s.starts_with("expand: 1 of 5 targets done, 1 failed, 1 stopped, 2 not started"));
        assert!(s.contains("failed       b: lock timeout: x"));
        assert!(s.contains("stopped      c: stopped before y"));
        assert!(s.contains("not started  d, e"));
    }

    #[test]
    fn a_halted_rollout_is_failed_and_says_why_though_every_target_started_is_done() {
        let r = Report {
            verb: "expand",
            targets: vec![
                ("a".into(), Outcome::Done("expanded 1 migration(s)".into())),
                ("b".into(), Outcome::NotStarted),
            ],
            halted: Some("a: rollbacks 40.0/s".into()),
            took: Duration::from_secs(1),
        };
        assert!(r.failed());
        let s = r.summary();
        assert!(s.contains(
            "halted       before the next stage, a target done turned bad: a: rollbacks 40.0/s"
        ));
        assert!(s.contains("not started  b"));
    }
}
