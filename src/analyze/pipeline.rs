//! Parsing on every core while one thread lints in order.
//!
//! The items (migration files) are parsed by worker threads and by the linting thread itself
//! whenever the next file in order is not ready; results are handed to the linter in order.
//! The workers are started before the items are known ([`Pipeline::start`]), while the files
//! are listed: on the VMs this runs on, a new thread often ran only 1-4 ms after it was spawned
//! (an idle core, halted, is slow to wake; a new thread placed on its parent's core waits for
//! the scheduler to move it), which was a third of a 286-migration lint. A worker that is
//! already running when the items come takes them within microseconds; it spins for them a
//! short while ([`SPIN`]), then sleeps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The stack of a thread that parses, as the main thread's: the deepest tree the reader takes
/// (`sql::reader::MAX_DEPTH`) needs about 1.3 MiB of it, and the walks over that tree after it
/// more. Only what a parse touches is ever mapped.
pub const PARSE_STACK: usize = 8 << 20;

/// How long a worker started before its items spins for them before it sleeps: longer than
/// a directory listing takes.
pub const SPIN: Duration = Duration::from_millis(5);

type Panic = Box<dyn std::any::Any + Send>;
type Work<T, R> = Box<dyn Fn(&T) -> R + Send + Sync>;

/// The items and what to do with each, once known.
struct Job<T, R> {
    items: Vec<T>,
    work: Work<T, R>,
}

struct Shared<T, R> {
    job: OnceLock<Job<T, R>>,
    /// Set once `job` is set or will never be: what a worker that stopped spinning sleeps on.
    published: (Mutex<bool>, Condvar),
    cancelled: AtomicBool,
    next: AtomicUsize,
    /// Finished results by index; a worker's panic is passed on, not waited for.
    ready: Mutex<BTreeMap<usize, Result<R, Panic>>>,
    arrived: Condvar,
    /// Whether the caller waits on `arrived` (read and written under `ready`'s lock): a worker
    /// wakes it only then, not with a system call for every result.
    waiting: AtomicBool,
}

/// Worker threads, started, waiting for a job.
pub struct Pipeline<T, R> {
    shared: Arc<Shared<T, R>>,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + Sync + 'static, R: Send + 'static> Pipeline<T, R> {
    /// Starts `workers` threads (besides the caller), each off the caller's core where it may
    /// run elsewhere, spinning for a job.
    pub fn start(workers: usize) -> Pipeline<T, R> {
        STARTED.store(true, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            job: OnceLock::new(),
            published: (Mutex::new(false), Condvar::new()),
            cancelled: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            ready: Mutex::new(BTreeMap::new()),
            arrived: Condvar::new(),
            waiting: AtomicBool::new(false),
        });
        let home = current_cpu();
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .stack_size(PARSE_STACK)
                .spawn(move || {
                    leave_cpu(home);
                    work(&shared);
                });
            // A thread the system will not start leaves its share to the caller, which
            // parses whatever is not taken.
            match spawned {
                Ok(h) => handles.push(h),
                Err(_) => break,
            }
        }
        Pipeline {
            shared,
            workers: handles,
        }
    }

    /// Runs `work` over the items `produce` makes, on the workers and this thread, and hands
    /// each item and its result to `consume` in order.
    pub fn run<E>(
        mut self,
        produce: impl FnOnce() -> Result<Vec<T>, E>,
        work: impl Fn(&T) -> R + Send + Sync + 'static,
        mut consume: impl FnMut(&T, R),
    ) -> Result<(), E> {
        // On an error, dropping `self` sends the workers away.
        let items = produce()?;
        let shared = Arc::clone(&self.shared);
        let _ = shared.job.set(Job {
            items,
            work: Box::new(work),
        });
        self.publish();
        let job = shared.job.get().expect("just set");
        let unwrap = |r: Result<R, Panic>| r.unwrap_or_else(|p| std::panic::resume_unwind(p));
        let take = |want: usize| lock(&shared.ready).remove(&want);
        let mut want = 0;
        while want < job.items.len() {
            if let Some(r) = take(want) {
                consume(&job.items[want], unwrap(r));
                want += 1;
                continue;
            }
            // The next result is not there: make one more here rather than wait.
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            if let Some(item) = job.items.get(i) {
                let r = (job.work)(item);
                if i == want {
                    consume(item, r);
                    want += 1;
                } else {
                    lock(&shared.ready).insert(i, Ok(r));
                }
                continue;
            }
            // Everything is handed out: wait for the worker that has `want`.
            let mut ready = lock(&shared.ready);
            while !ready.contains_key(&want) {
                shared.waiting.store(true, Ordering::Relaxed);
                ready = shared
                    .arrived
                    .wait(ready)
                    .unwrap_or_else(|p| p.into_inner());
            }
            shared.waiting.store(false, Ordering::Relaxed);
        }
        for h in std::mem::take(&mut self.workers) {
            let _ = h.join();
        }
        Ok(())
    }

    /// Wakes the workers for the job, or, with none set, to leave.
    fn publish(&self) {
        if self.shared.job.get().is_none() {
            self.shared.cancelled.store(true, Ordering::Release);
        }
        *lock(&self.shared.published.0) = true;
        self.shared.published.1.notify_all();
    }
}

/// A pipeline dropped without a job (its `produce` failed, or it was never run) sends its
/// workers away.
impl<T, R> Drop for Pipeline<T, R> {
    fn drop(&mut self) {
        if self.shared.job.get().is_none() {
            self.shared.cancelled.store(true, Ordering::Release);
            *lock(&self.shared.published.0) = true;
            self.shared.published.1.notify_all();
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A worker: waits for the job (spinning, then sleeping), then takes items until none is left.
fn work<T, R>(shared: &Shared<T, R>) {
    let start = Instant::now();
    let job = loop {
        if let Some(job) = shared.job.get() {
            break job;
        }
        if shared.cancelled.load(Ordering::Acquire) {
            return;
        }
        if start.elapsed() > SPIN {
            let mut done = lock(&shared.published.0);
            while !*done {
                done = shared
                    .published
                    .1
                    .wait(done)
                    .unwrap_or_else(|p| p.into_inner());
            }
            match shared.job.get() {
                Some(job) => break job,
                None => return,
            }
        }
        std::hint::spin_loop();
    };
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = job.items.get(i) else { break };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.work)(item)));
        let waiting = {
            let mut ready = lock(&shared.ready);
            ready.insert(i, r);
            shared.waiting.load(Ordering::Relaxed)
        };
        if waiting {
            shared.arrived.notify_one();
        }
    }
}

/// The core this thread runs on, where the system says.
fn current_cpu() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getcpu takes nothing and returns a number or -1.
        let cpu = unsafe { libc::sched_getcpu() };
        usize::try_from(cpu).ok()
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Moves this thread off `cpu` (the thread that started it) when it may run elsewhere: a new
/// thread is often started on its parent's core and shares it until the scheduler moves it
/// (half the starts, measured on this project's VMs).
fn leave_cpu(cpu: Option<usize>) {
    #[cfg(target_os = "linux")]
    if let Some(cpu) = cpu.filter(|&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: the set is a plain bit mask, read and written by the calls it is made for,
        // for this thread (pid 0) only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut set) != 0 || !libc::CPU_ISSET(cpu, &set) {
                return;
            }
            libc::CPU_CLR(cpu, &mut set);
            if libc::CPU_COUNT(&set) > 0 {
                libc::sched_setaffinity(0, size, &set);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}

/// How long [`wake_cores`] keeps the other cores busy at the most.
const WAKE_FOR: Duration = Duration::from_millis(20);

/// Set when the first pipeline starts its workers: the end of [`wake_cores`]' spinning.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Keeps the other cores busy from the start of the process until the parse threads start
/// (at most [`WAKE_FOR`]), so that those threads find a core that is awake. A worker started
/// even at the very beginning found an idle core as slow to wake as one started later; one
/// that starts while another thread still runs there takes it at once. Measured on this
/// project's 2-core VM, `migrate plan --format json`, interleaved runs, median without and
/// with: crates.io 8.64 -> 7.67 ms (120 runs; two earlier runs of 80: -5%, -12%), kratos
/// 8.22 -> 7.51 ms, lemmy 20.1 -> 20.5 ms (40 runs each; its parse is long enough to absorb
/// the wake).
pub fn wake_cores() {
    for _ in 0..spare_cores() {
        let spawned = std::thread::Builder::new().stack_size(64 << 10).spawn(|| {
            let start = Instant::now();
            while !STARTED.load(Ordering::Relaxed) && start.elapsed() < WAKE_FOR {
                std::hint::spin_loop();
            }
        });
        if spawned.is_err() {
            break;
        }
    }
}

/// How many threads to parse with besides the caller.
pub fn spare_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn churn(n: u64) -> u64 {
        (0..(n % 7) * 1000).fold(n, |a, b| a.wrapping_mul(31).wrapping_add(b)) ^ n
    }

    #[test]
    fn results_come_in_order_whoever_made_them() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let mut seen = Vec::new();
        let out: Result<(), ()> = Pipeline::start(3).run(
            || Ok((0..500u64).collect()),
            move |&n| {
                counted.fetch_add(1, Ordering::Relaxed);
                // Uneven work, so that results arrive out of order.
                churn(n)
            },
            |&n, r| seen.push((n, r)),
        );
        assert_eq!(out, Ok(()));
        assert_eq!(calls.load(Ordering::Relaxed), 500, "each item made once");
        let order: Vec<u64> = seen.iter().map(|&(n, _)| n).collect();
        assert_eq!(order, (0..500).collect::<Vec<_>>());
        assert!(seen.iter().all(|&(n, r)| r == churn(n)));
    }

    #[test]
    fn a_failed_listing_sends_the_waiting_workers_away_and_is_returned() {
        let pipeline: Pipeline<u32, u32> = Pipeline::start(3);
        let shared = Arc::clone(&pipeline.shared);
        let out = pipeline.run(|| Err("no such directory"), |&n| n, |_, _| unreachable!());
        assert_eq!(out, Err("no such directory"));
        assert!(shared.cancelled.load(Ordering::Acquire));
        // The workers leave: only this test's handle keeps the shared state.
        let start = Instant::now();
        while Arc::strong_count(&shared) > 1 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "a worker still waits"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn items_listed_after_the_workers_stopped_spinning_are_all_handed_out_in_order() {
        let pipeline: Pipeline<u32, u32> = Pipeline::start(2);
        std::thread::sleep(SPIN * 3);
        let mut seen = Vec::new();
        let out: Result<(), ()> =
            pipeline.run(|| Ok(vec![1, 2, 3, 4]), |&n| n * 10, |_, r| seen.push(r));
        assert_eq!(out, Ok(()));
        assert_eq!(seen, [10, 20, 30, 40]);
    }
}
