//! Running migrations: expand (then backfill), contract, abort — one step at a time, each
//! checkpointed in the metadata before the next begins, so a killed run continues at the
//! right step. The plan is stored when a migration starts and followed from the store
//! thereafter: a resume never re-plans.

use super::backfill::{self, Backfill};
use super::exec::{run_step, Checkpoint, ExecSettings};
use super::guard::{Guard, Voice};
use super::state::{checksum, Metadata, MigrationPhase, MigrationRecord};
use super::{connect, introspect, lock, versions};
use crate::analyze::analyze_targets;
use crate::config::Settings;
use crate::error::Error;
use crate::files::{self, LintTarget, MigrationEntry};
use crate::lint::Level;
use crate::model::locks::{LockHold, LockLevel, TableLock};
use crate::model::QualifiedName;
use crate::plan::{MigrationPlan, Phase, Reshape, Step, StepKind, ViewChange};
use sqlx::PgConnection;
use std::io::Write;
use std::time::Instant;

/// Names, each once, with how often it came when more than once: `users ×3, orders`.
fn tally<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for n in names {
        match counts.iter_mut().find(|(m, _)| *m == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    counts
        .iter()
        .map(|(n, c)| match c {
            1 => n.to_string(),
            c => format!("{n} ×{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A connection holding the runner lock, with the metadata schema ready.
pub struct Runner {
    conn: PgConnection,
    /// For the connections of backfill workers; never printed.
    url: String,
    meta: Metadata,
    settings: Settings,
    exec: ExecSettings,
    /// Watching the database while this runner changes it (see [`Runner::watch`]).
    guard: Option<Guard>,
}

/// A migration file with its checksum.
struct Migration {
    entry: MigrationEntry,
    checksum: String,
}

/// Tests stop the process right after a chosen checkpoint (`MIGRATE_FAILPOINT=expand:2`), the
/// way a `kill -9` would, to prove a rerun finishes the job. Only in builds with the
/// `failpoints` feature (the test command's); elsewhere it is nothing.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(phase: &str, step: usize) {
    if let Ok(fp) = std::env::var("MIGRATE_FAILPOINT") {
        if fp == format!("{phase}:{step}") {
            eprintln!("failpoint {fp}: stopping");
            std::process::exit(86);
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_phase: &str, _step: usize) {}

impl Runner {
    pub async fn open(
        url: &str,
        exec: ExecSettings,
        mut settings: Settings,
    ) -> Result<Runner, Error> {
        let mut conn = connect(url).await?;
        // Plans are made for the server they run on, whatever migrate.toml says for `plan`.
        let num: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| Error::Database(format!("reading the server version: {e}")))?;
        if let Ok(n) = num.parse::<u32>() {
            settings.pg_version = crate::config::PgVersion {
                major: n / 10_000,
                minor: n % 10_000,
            };
        }
        lock::acquire(&mut conn, &settings.metadata_schema).await?;
        let meta = Metadata::new(&settings.metadata_schema);
        meta.ensure(&mut conn).await?;
        Ok(Runner {
            conn,
            url: url.to_string(),
            meta,
            settings,
            exec,
            guard: None,
        })
    }

    /// Opens a runner for `command` with its guard watching (see [`Runner::watch`]).
    pub async fn open_watched(
        url: &str,
        exec: ExecSettings,
        settings: Settings,
        command: &str,
    ) -> Result<Runner, Error> {
        let mut runner = Runner::open(url, exec, settings).await?;
        if let Err(e) = runner.watch(command).await {
            runner.close().await;
            return Err(Error::Database(format!(
                "the guard cannot watch this run ({e}); free a connection, or set `[guard] enabled = false` to run unwatched"
            )));
        }
        Ok(runner)
    }

    /// Starts the guard (unless `[guard] enabled = false`) for `command`: from here on every
    /// step and batch asks it first, and a stop cancels our statement. During an abort only
    /// the lock queue behind our statements counts: an app failing is a reason to finish
    /// undoing the migration, not to wait.
    pub async fn watch(&mut self, command: &str) -> Result<(), Error> {
        if !self.settings.guard.enabled || self.guard.is_some() {
            return Ok(());
        }
        let mut settings = self.settings.guard.clone();
        if command == "abort" {
            settings.signals.retain(|s, _| {
                matches!(
                    s,
                    crate::config::Signal::LockWait | crate::config::Signal::LockWaiters
                )
            });
        }
        let voice = Voice {
            prefix: self
                .exec
                .rollout
                .as_ref()
                .map(|h| format!("{} ", h.target))
                .unwrap_or_default(),
            metadata_schema: self.settings.metadata_schema.clone(),
            json: self.exec.json_events,
        };
        let guard = Guard::start(&self.url, &settings, command, voice).await?;
        guard.handle.register(&mut self.conn).await;
        self.exec.guard = Some(guard.handle.clone());
        self.guard = Some(guard);
        Ok(())
    }

    /// A failed run's error, said as the guard's stop when the guard stopped it.
    fn guarded<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        match &self.exec.guard {
            Some(g) => r.map_err(|e| g.explain(e)),
            None => r,
        }
    }

    /// Releases the runner lock and closes the connection cleanly, so the next run can start
    /// at once.
    pub async fn close(mut self) {
        if let Some(g) = self.guard.take() {
            g.finish().await;
        }
        lock::release(&mut self.conn, &self.settings.metadata_schema).await;
        let _ = sqlx::Connection::close(self.conn).await;
    }

    /// The migration files in order, up to and including `upto`.
    fn migrations(&self, upto: Option<&str>) -> Result<Vec<Migration>, Error> {
        let mut entries = files::list_dir(&self.settings.migrations_dir)?;
        if let Some(last) = upto {
            let Some(i) = entries.iter().position(|e| e.name == last) else {
                return Err(Error::Usage(format!(
                    "no migration `{last}` in {}; `migrate status` lists them",
                    self.settings.migrations_dir.display()
                )));
            };
            entries.truncate(i + 1);
        }
        entries
            .into_iter()
            .map(|entry| {
                let bytes = std::fs::read(&entry.path).map_err(|e| Error::io(&entry.path, e))?;
                Ok(Migration {
                    checksum: checksum(&bytes),
                    entry,
                })
            })
            .collect()
    }

    async fn records(&mut self) -> Result<Vec<MigrationRecord>, Error> {
        self.meta.records(&mut self.conn).await
    }

    /// Refuses a migration whose file changed since it was recorded.
    fn unchanged(m: &Migration, r: &MigrationRecord) -> Result<(), Error> {
        if r.checksum != m.checksum && r.phase != MigrationPhase::Aborted {
            return Err(Error::Refused(format!(
                "{} changed after it was {}: recorded checksum {}, the file's is now {}; restore the file, or write a new migration",
                m.entry.name, r.phase, r.checksum, m.checksum
            )));
        }
        Ok(())
    }

    /// Plans one migration against the live catalog; refuses findings at error level.
    async fn plan(&mut self, m: &Migration) -> Result<MigrationPlan, Error> {
        let catalog = introspect::read_catalog(&mut self.conn).await?;
        let target = LintTarget::all(vec![m.entry.clone()]);
        // The tables that migrations in flight still change after expand: their steps name
        // them as they are, so this migration renames none of them before its contract.
        let mut settings = self.settings.clone();
        for (_, phase, plan) in self.in_flight_plans().await? {
            // Only the phases still to run: a backfilled migration has only its contract left.
            let backfilled = matches!(
                phase,
                MigrationPhase::Backfilled | MigrationPhase::Contracting
            );
            for step in plan.rewrites.iter().flat_map(|r| r.steps.iter()) {
                if step.phase == Phase::Expand || (backfilled && step.phase == Phase::Backfill) {
                    continue;
                }
                for lock in &step.locks {
                    if !settings.pending_tables.iter().any(|t| t.same(&lock.table)) {
                        settings.pending_tables.push(lock.table.clone());
                    }
                }
            }
        }
        let mut reports = analyze_targets(&[target], &settings, &catalog)?;
        let report = reports
            .pop()
            .ok_or_else(|| Error::Usage("nothing to plan".into()))?;
        let errors: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .map(|f| {
                format!(
                    "  {}:{}:{} [{}] {}",
                    crate::report::display_path(&f.file),
                    f.line,
                    f.column,
                    f.rule,
                    f.message
                )
            })
            .chain(report.plan.rejected().map(|r| {
                format!(
                    "  line {}: {}: {}",
                    r.line,
                    r.intent,
                    r.rejected.clone().unwrap_or_default()
                )
            }))
            .collect();
        if !errors.is_empty() {
            return Err(Error::Refused(format!(
                "{} cannot run safely; nothing was changed:\n{}\n(`migrate plan` explains each)",
                m.entry.name,
                errors.join("\n")
            )));
        }
        Ok(report.plan)
    }

    /// Runs the steps of `steps` from `from`, checkpointing each as step `i + 1` of `phase`.
    async fn run_steps(
        &mut self,
        name: &str,
        phase: MigrationPhase,
        label: &str,
        steps: &[&Step],
        from: usize,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        if let Some(g) = &self.exec.guard {
            g.running(name);
        }
        for (i, step) in steps.iter().enumerate().skip(from) {
            if let Some(h) = &self.exec.rollout {
                h.check(|| format!("{name} {label} {}/{}", i + 1, steps.len()))?;
            }
            let started = Instant::now();
            let tell = |start: bool| {
                if let Some(o) = &self.exec.observer {
                    (o.0)(super::exec::StepEvent {
                        migration: name.to_string(),
                        label: label.to_string(),
                        step: i + 1,
                        action: step.action.clone(),
                        sized_by: step
                            .locks
                            .iter()
                            .find(|l| l.hold != LockHold::Brief)
                            .map(|l| l.table.to_string()),
                        start,
                    });
                }
            };
            tell(true);
            let cp = Checkpoint {
                meta: &self.meta,
                migration: name,
                phase,
                step: (i + 1) as i32,
            };
            let result = match &step.kind {
                StepKind::Backfill {
                    table,
                    set,
                    filter,
                    verify,
                } => {
                    let b = Backfill {
                        migration: name,
                        ordinal: i as i32,
                        table,
                        set,
                        filter: filter.as_deref(),
                        verify: verify.as_deref(),
                        url: Some(&self.url),
                    };
                    match backfill::run(&mut self.conn, &self.meta, &b, &self.exec).await {
                        Ok(r) => {
                            let secs = started.elapsed().as_secs_f64().max(1e-3);
                            let _ = writeln!(
                                out,
                                "{name}  {label} {}/{}  {} of {} rows changed in {} batches of {}–{} rows, {:.0} rows/s{}{}{}{}",
                                i + 1,
                                steps.len(),
                                r.rows,
                                r.walked,
                                r.batches,
                                r.smallest,
                                r.largest,
                                r.walked as f64 / secs,
                                if r.lock_timeouts > 0 {
                                    format!(", {} lock timeouts retried smaller", r.lock_timeouts)
                                } else {
                                    String::new()
                                },
                                if r.guard_wait < std::time::Duration::from_millis(50) {
                                    String::new()
                                } else {
                                    format!(", {:.1} s paused by the guard", r.guard_wait.as_secs_f64())
                                },
                                if r.slowest_commit.is_zero() {
                                    String::new()
                                } else {
                                    format!(
                                        ", a one-row commit took {:.1}–{:.1} ms{}",
                                        r.lowest_commit.as_secs_f64() * 1e3,
                                        r.slowest_commit.as_secs_f64() * 1e3,
                                        if r.slowdowns == 0 {
                                            String::new()
                                        } else {
                                            format!(" (backed off {} times)", r.slowdowns)
                                        }
                                    )
                                },
                                if r.verified { ", verified" } else { ", not verifiable (volatile values)" }
                            );
                            self.meta
                                .checkpoint(&mut self.conn, name, phase, cp.step)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => run_step(&mut self.conn, step, &self.exec, Some(&cp))
                    .await
                    .map(|_| ()),
            };
            tell(false);
            if let Err(e) = result {
                if !matches!(e, Error::Stopped(_)) {
                    let _ = self
                        .meta
                        .note_error(&mut self.conn, name, &e.to_string())
                        .await;
                }
                return Err(e);
            }
            let _ = writeln!(
                out,
                "{name}  {label} {}/{}  {}  ({} ms)",
                i + 1,
                steps.len(),
                step.action,
                started.elapsed().as_millis()
            );
            failpoint(label, i + 1);
        }
        Ok(())
    }

    /// Enters the `running` phase at step `from`, runs the remaining steps, and records `done`.
    async fn run_phase(
        &mut self,
        name: &str,
        (running, done): (MigrationPhase, MigrationPhase),
        label: &str,
        steps: &[&Step],
        from: usize,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        self.meta
            .checkpoint(&mut self.conn, name, running, from as i32)
            .await?;
        self.run_steps(name, running, label, steps, from, out)
            .await?;
        self.meta.checkpoint(&mut self.conn, name, done, 0).await
    }

    async fn stored_plan(&mut self, name: &str) -> Result<MigrationPlan, Error> {
        self.meta
            .plan(&mut self.conn, name)
            .await?
            .ok_or_else(|| Error::Database(format!("{name} has no stored plan")))
    }

    /// Expands every pending migration in order (up to `upto`), then runs its backfills;
    /// resumes any that a killed run left half done.
    pub async fn expand(
        &mut self,
        upto: Option<&str>,
        backfill: bool,
        out: &mut dyn Write,
    ) -> Result<usize, Error> {
        let r = self.expand_unguarded(upto, backfill, out).await;
        self.guarded(r)
    }

    async fn expand_unguarded(
        &mut self,
        upto: Option<&str>,
        backfill: bool,
        out: &mut dyn Write,
    ) -> Result<usize, Error> {
        let migrations = self.migrations(upto)?;
        let recorded = self.meta.records(&mut self.conn).await?;
        let mut done = 0;
        for m in &migrations {
            let name = m.entry.name.clone();
            // Read once above: a record only changes when its own migration is run, below.
            let record = recorded.iter().find(|r| r.name == name);
            if let Some(r) = record {
                Self::unchanged(m, r)?;
            }
            let (plan, phase, step) = match record.map(|r| (r.phase, r.step)) {
                // An aborted migration whose file is still here runs again, planned from the
                // file as it is now (it may have been fixed since).
                None | Some((MigrationPhase::Aborted, _)) => {
                    // A new file that sorts before one already applied: running it now would
                    // apply migrations in a different order here than on a fresh database.
                    if let Some(later) = recorded.iter().find(|r| {
                        !matches!(r.phase, MigrationPhase::Aborted | MigrationPhase::Pending)
                            && crate::files::natural_cmp(&r.name, &name).is_gt()
                    }) {
                        return Err(Error::Refused(format!(
                            "{name} is new but sorts before {}, which is already {}: migrations run in the order of their names, so a fresh database would run {name} first; rename it to sort after the last applied migration",
                            later.name, later.phase
                        )));
                    }
                    let plan = self.plan(m).await?;
                    self.refuse_conflicts(&plan).await?;
                    if self.settings.views {
                        // What the views would refuse (row security before 15, two tables of
                        // one name), refused before the first step rather than after the last.
                        // A rename is the table's own at expand: the new version needs no view
                        // for it.
                        let own = plan
                            .view_changes()
                            .filter(|c| {
                                !matches!(
                                    c,
                                    ViewChange::RenameColumn { .. }
                                        | ViewChange::RenameTable { .. }
                                )
                            })
                            .cloned()
                            .collect();
                        self.version_step(&name, own).await?;
                        self.keep_shapes(&name, &plan.reshaped(), true, out).await?;
                    }
                    self.meta
                        .start(&mut self.conn, &name, &m.checksum, &plan)
                        .await?;
                    (plan, MigrationPhase::Expanding, 0)
                }
                Some((MigrationPhase::Aborting, _)) => {
                    return Err(Error::Refused(format!(
                        "the abort of {name} is unfinished: run `migrate abort {name}`"
                    )))
                }
                Some((
                    p @ (MigrationPhase::Expanding
                    | MigrationPhase::Expanded
                    | MigrationPhase::Backfilling),
                    s,
                )) => (self.stored_plan(&name).await?, p, s as usize),
                Some(_) => continue,
            };
            if phase == MigrationPhase::Expanding {
                if self.settings.views {
                    // Committed before the first step that changes a table: a running version
                    // that reads the table itself goes on through its view of it as it was.
                    let kept = self.keep_shapes(&name, &plan.reshaped(), false, out).await;
                    if let Err(e) = kept {
                        if step == 0 {
                            self.meta.forget(&mut self.conn, &name).await?;
                        }
                        return Err(e);
                    }
                }
                let steps: Vec<&Step> = plan.steps_in(Phase::Expand).collect();
                let run = self
                    .run_steps(
                        &name,
                        MigrationPhase::Expanding,
                        "expand",
                        &steps,
                        step,
                        out,
                    )
                    .await;
                if let Err(e) = run {
                    // Nothing applied yet (step 0): leave no trace of the attempt, and no view
                    // kept for a change that did not happen.
                    self.meta.forget(&mut self.conn, &name).await?;
                    if self.settings.views {
                        let _ = self.drop_redundant_views(out).await;
                    }
                    return Err(e);
                }
                if self.settings.views {
                    // Committed together with the Expanded checkpoint: a killed run makes it again.
                    self.make_version(&name, MigrationPhase::Expanded, out)
                        .await?;
                    // A view kept for a change that left the table's shape as it was.
                    self.drop_redundant_views(out).await?;
                } else {
                    self.meta
                        .checkpoint(&mut self.conn, &name, MigrationPhase::Expanded, 0)
                        .await?;
                }
            }
            if !backfill {
                done += 1;
                continue;
            }
            let from = if phase == MigrationPhase::Backfilling {
                step
            } else {
                0
            };
            self.run_backfills(&name, &plan, from, out).await?;
            done += 1;
        }
        if self.settings.views {
            self.warn_foreign(out).await?;
        }
        Ok(done)
    }

    /// Runs the backfill steps of a plan from step `from`, then marks the migration backfilled.
    async fn run_backfills(
        &mut self,
        name: &str,
        plan: &MigrationPlan,
        from: usize,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        let steps: Vec<&Step> = plan.steps_in(Phase::Backfill).collect();
        let phases = (MigrationPhase::Backfilling, MigrationPhase::Backfilled);
        // In a rollout, at most so many targets backfill at once (the fleet's `backfills`).
        let slots = self.exec.rollout.as_ref().map(|h| h.backfills.clone());
        let _slot = match &slots {
            Some(s) if !steps.is_empty() => Some(
                s.acquire()
                    .await
                    .map_err(|_| Error::Usage("the rollout's backfill budget closed".into()))?,
            ),
            _ => None,
        };
        self.run_phase(name, phases, "backfill", &steps, from, out)
            .await
    }

    /// Runs or resumes the backfills of every expanded migration in order (up to `upto`);
    /// pending ones are left for `expand`.
    pub async fn backfill(
        &mut self,
        upto: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<usize, Error> {
        let r = self.backfill_unguarded(upto, out).await;
        self.guarded(r)
    }

    async fn backfill_unguarded(
        &mut self,
        upto: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<usize, Error> {
        let migrations = self.migrations(upto)?;
        let mut done = 0;
        for m in &migrations {
            let name = m.entry.name.clone();
            let Some(record) = self.meta.record(&mut self.conn, &name).await? else {
                continue;
            };
            Self::unchanged(m, &record)?;
            let from = match record.phase {
                MigrationPhase::Expanded => 0,
                MigrationPhase::Backfilling => record.step as usize,
                MigrationPhase::Expanding => {
                    return Err(Error::Refused(format!(
                        "the expand of {name} is unfinished: run `migrate expand` first"
                    )))
                }
                _ => continue,
            };
            let plan = self.stored_plan(&name).await?;
            self.run_backfills(&name, &plan, from, out).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Contracts every backfilled migration in order (up to `upto`); stops at the first that
    /// is not ready, saying why.
    pub async fn contract(
        &mut self,
        upto: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<usize, Error> {
        let r = self.contract_unguarded(upto, out).await;
        self.guarded(r)
    }

    async fn contract_unguarded(
        &mut self,
        upto: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<usize, Error> {
        let migrations = self.migrations(upto)?;
        let mut done = 0;
        for m in &migrations {
            let name = m.entry.name.clone();
            let Some(r) = self.meta.record(&mut self.conn, &name).await? else {
                return Err(Error::Refused(format!(
                    "{name} is pending: run `migrate expand` first"
                )));
            };
            Self::unchanged(m, &r)?;
            let from = match r.phase {
                MigrationPhase::Complete | MigrationPhase::Aborted => continue,
                MigrationPhase::Backfilled => 0,
                MigrationPhase::Contracting => r.step as usize,
                other => {
                    return Err(Error::Refused(format!(
                        "{name} is {other}: its expand or backfill is unfinished, and contracting now would break the running version; run `migrate expand` first"
                    )))
                }
            };
            let plan = self.stored_plan(&name).await?;
            // The old version is gone: its schema goes first, so that no view of it holds on
            // to a column or table this contract drops.
            self.drop_versions_before(&name, out).await?;
            let steps: Vec<&Step> = plan.steps_in(Phase::Contract).collect();
            let phases = (MigrationPhase::Contracting, MigrationPhase::Complete);
            self.run_phase(&name, phases, "contract", &steps, from, out)
                .await?;
            // The new version's views of the window (a hidden column, a swapped type) now
            // equal their tables: it reads the tables themselves from here on.
            self.drop_redundant_views(out).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Undoes an expanded, not yet contracted migration: the old version keeps working.
    pub async fn abort(&mut self, name: &str, out: &mut dyn Write) -> Result<(), Error> {
        let r = self.abort_unguarded(name, out).await;
        self.guarded(r)
    }

    async fn abort_unguarded(&mut self, name: &str, out: &mut dyn Write) -> Result<(), Error> {
        let records = self.records().await?;
        let Some(r) = records.iter().find(|r| r.name == name) else {
            return Err(Error::Refused(format!(
                "{name} was never expanded: nothing to abort"
            )));
        };
        let from = match r.phase {
            MigrationPhase::Aborted => return Ok(()),
            MigrationPhase::Complete | MigrationPhase::Contracting => {
                return Err(Error::Refused(format!(
                    "{name} is {}: its contract phase has dropped what the old version needs; write a new migration instead",
                    r.phase
                )))
            }
            MigrationPhase::Pending => return Err(Error::Refused(format!("{name} is pending: nothing to abort"))),
            MigrationPhase::Aborting => r.step as usize,
            _ => 0,
        };
        let later: Vec<&str> = records
            .iter()
            .filter(|o| {
                files::natural_cmp(&o.name, name).is_gt()
                    && !matches!(o.phase, MigrationPhase::Aborted | MigrationPhase::Pending)
            })
            .map(|o| o.name.as_str())
            .collect();
        if !later.is_empty() {
            return Err(Error::Refused(format!(
                "later migrations build on {name}: abort {} first",
                later.join(", ")
            )));
        }
        let plan = self.stored_plan(name).await?;
        let cannot: Vec<&str> = plan
            .rewrites
            .iter()
            .filter(|rw| rw.steps_in(Phase::Expand).next().is_some() && rw.abort.is_empty())
            .map(|rw| rw.intent.as_str())
            .collect();
        if !cannot.is_empty() {
            return Err(Error::Refused(format!(
                "{name} cannot be aborted automatically: no undo for {}; undo it by hand",
                cannot.join(", ")
            )));
        }
        // Its version schema first: its views read what the undo drops.
        let own = versions::schema_name(&self.settings.metadata_schema, name);
        self.drop_versions(
            &[own],
            &format!("abort of {name}: drop its version schema"),
            out,
        )
        .await?;
        // Undo in reverse order of the rewrites.
        let steps: Vec<&Step> = plan
            .rewrites
            .iter()
            .rev()
            .flat_map(|rw| rw.abort.iter())
            .collect();
        let phases = (MigrationPhase::Aborting, MigrationPhase::Aborted);
        self.run_phase(name, phases, "abort", &steps, from, out)
            .await?;
        // The running versions' views kept for the undone change equal their tables again.
        if self.settings.views {
            self.drop_redundant_views(out).await?;
        }
        Ok(())
    }

    /// Makes the version schema of `name` as the newest version: the live tables with the view
    /// changes of every migration not yet contracted, up to `name`; the checkpoint to `phase`
    /// commits with it.
    async fn make_version(
        &mut self,
        name: &str,
        phase: MigrationPhase,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let (step, views) = self.version_step(name, Vec::new()).await?;
        let cp = Checkpoint {
            meta: &self.meta,
            migration: name,
            phase,
            step: 0,
        };
        run_step(&mut self.conn, &step, &self.exec, Some(&cp)).await?;
        let _ = writeln!(
            out,
            "{name}  {}: {}  ({} ms)",
            step.action,
            match views {
                0 => "no view, the version reads the tables".to_string(),
                1 => "1 view, where the version's shape of a table differs".to_string(),
                n => format!("{n} views, where the version's shape of a table differs"),
            },
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// The migrations in flight (expanded, not yet contracted), in order, with their plans.
    async fn in_flight_plans(
        &mut self,
    ) -> Result<Vec<(String, MigrationPhase, MigrationPlan)>, Error> {
        let mut records = self.records().await?;
        records.sort_by(|a, b| files::natural_cmp(&a.name, &b.name));
        let mut plans = Vec::new();
        for r in records.iter().filter(|r| r.phase.in_flight()) {
            if let Some(plan) = self.meta.plan(&mut self.conn, &r.name).await? {
                plans.push((r.name.clone(), r.phase, plan));
            }
        }
        Ok(plans)
    }

    /// The step that makes the version schema of `name`, and how many views it holds: a view
    /// of each table whose shape differs for that version from the table itself (the live
    /// tables with the view changes of the migrations in flight up to `name`, then `more`).
    async fn version_step(
        &mut self,
        name: &str,
        more: Vec<ViewChange>,
    ) -> Result<(Step, usize), Error> {
        let mut changes: Vec<ViewChange> = self
            .in_flight_plans()
            .await?
            .iter()
            .filter(|(m, _, _)| !files::natural_cmp(m, name).is_gt())
            .flat_map(|(_, _, p)| p.view_changes().cloned())
            .collect();
        changes.extend(more);
        if self.settings.dropped_columns == crate::config::DroppedColumns::Shown {
            // The new version reads the table, the column included, until contract drops it.
            changes.retain(|c| !matches!(c, ViewChange::HideColumn { .. }));
        }
        let managed = self.managed().await?;
        let tables = versions::read_tables(&mut self.conn, &managed).await?;
        let usage = versions::schema_usage(&mut self.conn, &managed).await?;
        let shape = versions::shape(&tables, &changes);
        let schema = versions::schema_name(&self.settings.metadata_schema, name);
        let held = versions::held(&mut self.conn, std::slice::from_ref(&schema), &managed).await?;
        let views: Vec<&versions::TableView> = shape
            .iter()
            .filter(|v| v.differs())
            .filter(|v| !held.own_in(&schema).any(|o| o.name == v.name))
            .collect();
        let mut sql = versions::schema_sql(&schema, &usage, name);
        sql.extend(versions::views_sql(
            &schema,
            &views,
            self.settings.pg_version,
            name,
        )?);
        let step = Step {
            phase: Phase::Expand,
            action: format!("version schema {schema}"),
            sql: sql.join(";\n"),
            kind: StepKind::Ddl,
            // Creating a view reads its table's definition: a brief ACCESS SHARE.
            locks: views
                .iter()
                .map(|v| TableLock {
                    table: QualifiedName::new(Some(&v.table.schema), &v.table.name),
                    level: LockLevel::AccessShare,
                    hold: LockHold::Brief,
                })
                .collect(),
        };
        Ok((step, views.len()))
    }

    /// The managed schemas (`schemas` of migrate.toml), each of which must exist.
    async fn managed(&mut self) -> Result<Vec<String>, Error> {
        let managed = self.settings.managed_schemas.clone();
        let present = versions::existing(&mut self.conn, &managed).await?;
        if let Some(missing) = managed.iter().find(|m| !present.contains(m)) {
            return Err(Error::Refused(format!(
                "schema {} (in `schemas` of migrate.toml) does not exist in this database: fix the name, or create it first; nothing was changed",
                crate::model::quote_ident(missing)
            )));
        }
        Ok(managed)
    }

    /// The version schemas that exist, in migration order, each with its migration.
    async fn version_schemas(&mut self) -> Result<Vec<(String, String)>, Error> {
        let mut records = self.records().await?;
        records.sort_by(|a, b| files::natural_cmp(&a.name, &b.name));
        let names: Vec<String> = records
            .iter()
            .map(|r| versions::schema_name(&self.settings.metadata_schema, &r.name))
            .collect();
        let present = versions::existing(&mut self.conn, &names).await?;
        Ok(names
            .into_iter()
            .zip(records)
            .filter(|(s, _)| present.contains(s))
            .map(|(s, r)| (s, r.name))
            .collect())
    }

    /// Before the expand of `name` changes the shape of tables, every other version that reads
    /// one of them itself gets its view of the table as it is, committed before the change:
    /// PostgreSQL analyses that version's prepared statements again when the table changes, and
    /// finds the view first on their `search_path`, with the shape they were prepared for.
    /// Idempotent. With `dry`, only what it would refuse is refused; nothing runs.
    async fn keep_shapes(
        &mut self,
        name: &str,
        reshaped: &Reshape,
        dry: bool,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        if reshaped.is_nothing() {
            return Ok(());
        }
        let own = versions::schema_name(&self.settings.metadata_schema, name);
        let running: Vec<(String, String)> = self
            .version_schemas()
            .await?
            .into_iter()
            .filter(|(s, _)| *s != own)
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        let managed = self.managed().await?;
        let tables = versions::read_tables(&mut self.conn, &managed).await?;
        let targets: Vec<&versions::LiveTable> = tables
            .iter()
            .filter(|t| reshaped.includes(&t.schema, &t.name))
            .collect();
        let schemas: Vec<String> = running.iter().map(|(s, _)| s.clone()).collect();
        let held = versions::held(&mut self.conn, &schemas, &managed).await?;
        let mut sql = Vec::new();
        let mut kept = Vec::new();
        for (schema, migration) in &running {
            let missing: Vec<versions::TableView> = targets
                .iter()
                .filter(|t| !held.own_in(schema).any(|v| v.table == Some(t.oid)))
                .map(|t| versions::TableView::as_is(t))
                .collect();
            for v in &missing {
                let taken = format!(
                    "{}.{}",
                    crate::model::quote_ident(schema),
                    crate::model::quote_ident(&v.name)
                );
                if let Some(f) = held
                    .foreign
                    .iter()
                    .find(|f| f.reads.is_none() && f.what.ends_with(&format!(" {taken}")))
                {
                    return Err(Error::Refused(format!(
                        "{name}: version {migration} reads {}.{} itself and needs its view of it before the change, but {} (owner {}) has that name; {}; nothing was changed",
                        crate::model::quote_ident(&v.table.schema),
                        crate::model::quote_ident(&v.table.name),
                        f.what,
                        f.owner,
                        f.fix
                    )));
                }
                kept.push((schema.clone(), v.name.clone()));
            }
            let views: Vec<&versions::TableView> = missing.iter().collect();
            sql.extend(versions::views_sql(
                schema,
                &views,
                self.settings.pg_version,
                migration,
            )?);
        }
        if dry || sql.is_empty() {
            return Ok(());
        }
        let step = Step {
            phase: Phase::Expand,
            action: format!(
                "keep the running versions' shape: a view of {} in {}",
                tally(kept.iter().map(|(_, t)| t.as_str())),
                {
                    let mut made: Vec<&String> = kept.iter().map(|(s, _)| s).collect();
                    made.dedup();
                    match made.as_slice() {
                        [one] => one.to_string(),
                        many => format!("{} version schemas", many.len()),
                    }
                }
            ),
            sql: sql.join(";\n"),
            kind: StepKind::Ddl,
            locks: targets
                .iter()
                .map(|t| TableLock {
                    table: QualifiedName::new(Some(&t.schema), &t.name),
                    level: LockLevel::AccessShare,
                    hold: LockHold::Brief,
                })
                .collect(),
        };
        self.run_version_step(&step, name, out).await
    }

    /// What every version schema holds.
    async fn held_by_versions(&mut self) -> Result<versions::Held, Error> {
        let schemas: Vec<String> = self
            .version_schemas()
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let managed = self.settings.managed_schemas.clone();
        versions::held(&mut self.conn, &schemas, &managed).await
    }

    /// Runs a step on the version schemas under the lock timeout like any step (no checkpoint:
    /// each is idempotent), and says what it did, after `migration` when given.
    async fn run_version_step(
        &mut self,
        step: &Step,
        migration: &str,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        let started = Instant::now();
        run_step(&mut self.conn, step, &self.exec, None).await?;
        let lead = if migration.is_empty() {
            String::new()
        } else {
            format!("{migration}  ")
        };
        let _ = writeln!(
            out,
            "{lead}{}  ({} ms)",
            step.action,
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// Drops the views of ours that have come to equal their tables (and that nothing else
    /// reads): their versions read the tables themselves, with the same result.
    async fn drop_redundant_views(&mut self, out: &mut dyn Write) -> Result<(), Error> {
        let held = self.held_by_versions().await?;
        let redundant = held.redundant();
        let Some(sql) = versions::drop_sql(&redundant, &[]) else {
            return Ok(());
        };
        let step = Step {
            phase: Phase::Contract,
            action: format!(
                "drop views that equal their tables now (their versions read the tables): {}",
                tally(redundant.iter().map(|v| v.name.as_str()))
            ),
            sql,
            kind: StepKind::Ddl,
            locks: Vec::new(),
        };
        self.run_version_step(&step, "", out).await
    }

    /// Says what the version schemas hold that `migrate` did not make: contract and abort stop
    /// on it until it is moved.
    async fn warn_foreign(&mut self, out: &mut dyn Write) -> Result<(), Error> {
        let held = self.held_by_versions().await?;
        for f in &held.foreign {
            let _ = writeln!(
                out,
                "warning: not made by migrate, in or over version schema {}: {f}; contract and abort stop until it is moved",
                f.schema
            );
        }
        Ok(())
    }

    /// Drops the version schemas of every recorded migration before `name`.
    async fn drop_versions_before(&mut self, name: &str, out: &mut dyn Write) -> Result<(), Error> {
        let older: Vec<String> = self
            .records()
            .await?
            .iter()
            .filter(|r| files::natural_cmp(&r.name, name).is_lt())
            .map(|r| versions::schema_name(&self.settings.metadata_schema, &r.name))
            .collect();
        self.drop_versions(
            &older,
            &format!("contract of {name}: drop the schemas of older versions"),
            out,
        )
        .await
    }

    /// Drops those of `schemas` that exist: the views `migrate` made in them, then the schemas,
    /// by name, never `CASCADE`, under the lock timeout like any step; idempotent. Anything
    /// else in them, or over their views, stops it before anything is dropped.
    async fn drop_versions(
        &mut self,
        schemas: &[String],
        action: &str,
        out: &mut dyn Write,
    ) -> Result<(), Error> {
        let present = versions::existing(&mut self.conn, schemas).await?;
        if present.is_empty() {
            return Ok(());
        }
        let managed = self.settings.managed_schemas.clone();
        let held = versions::held(&mut self.conn, &present, &managed).await?;
        if !held.foreign.is_empty() {
            return Err(versions::refusal(
                action,
                &held.foreign.iter().collect::<Vec<_>>(),
            ));
        }
        let views: Vec<&versions::OwnView> = held.own.iter().collect();
        let Some(sql) = versions::drop_sql(&views, &present) else {
            return Ok(());
        };
        let step = Step {
            phase: Phase::Contract,
            action: format!("{action} ({})", present.join(", ")),
            sql,
            kind: StepKind::Ddl,
            locks: Vec::new(),
        };
        self.run_version_step(&step, "", out).await
    }

    /// The newest version schema, with its migration's phase.
    pub async fn latest(&mut self) -> Result<Option<(String, MigrationPhase)>, Error> {
        let mut records = self.records().await?;
        records.sort_by(|a, b| files::natural_cmp(&a.name, &b.name));
        for r in records.iter().rev() {
            if matches!(
                r.phase,
                MigrationPhase::Aborted | MigrationPhase::Aborting | MigrationPhase::Pending
            ) {
                continue;
            }
            let schema = versions::schema_name(&self.settings.metadata_schema, &r.name);
            if !versions::existing(&mut self.conn, std::slice::from_ref(&schema))
                .await?
                .is_empty()
            {
                return Ok(Some((schema, r.phase)));
            }
        }
        Ok(None)
    }

    /// After `baseline`: the version schema of the newest recorded migration.
    pub async fn make_baseline_version(&mut self, out: &mut dyn Write) -> Result<(), Error> {
        if !self.settings.views {
            return Ok(());
        }
        let mut records = self.records().await?;
        records.sort_by(|a, b| files::natural_cmp(&a.name, &b.name));
        if let Some(last) = records.last() {
            let (name, phase) = (last.name.clone(), last.phase);
            if phase == MigrationPhase::Complete {
                self.make_version(&name, phase, out).await?;
            }
        }
        Ok(())
    }

    /// Refuses a new migration that changes a column (or table) an earlier migration, not
    /// yet contracted, is still renaming, swapping or dropping: its contract would act on names
    /// or a column that are about to change underneath (a CHECK on a column a later swap drops
    /// would be lost with it).
    async fn refuse_conflicts(&mut self, plan: &MigrationPlan) -> Result<(), Error> {
        for (r, _, earlier) in self.in_flight_plans().await? {
            for change in earlier.view_changes() {
                let (table, column) = change.in_flux();
                let hit = plan.rewrites.iter().find_map(|rw| {
                    rw.touches
                        .iter()
                        .find(|(t, c)| t.same(table) && (column == "*" || c == "*" || c == column))
                        .map(|_| rw)
                });
                if let Some(rw) = hit {
                    let what = if column == "*" {
                        table.to_string()
                    } else {
                        format!("{table}.{}", crate::model::quote_ident(column))
                    };
                    return Err(Error::Refused(format!(
                        "{} line {}: {} changes {what}, which {} is still changing ({}) until its contract; nothing was changed. Deploy the version of {}, run `migrate contract {}`, then expand again",
                        plan.migration, rw.line, rw.intent, r, change.describe(), r, r
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
