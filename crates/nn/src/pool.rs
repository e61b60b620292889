//! A small persistent thread pool for the engine's large convolutions.
//!
//! Why not `thread::scope` or rayon: a run has ~20 steps worth splitting, a few tens of µs
//! each. Spawning threads per step costs more than it saves and allocates; rayon's injector
//! allocates now and then, and the per-frame path must not. Here the workers live as long as
//! the [`Pool`]; [`Pool::run`] hands them a borrowed closure and an atomic task counter, and
//! allocates nothing. Between steps of one frame the workers spin briefly, so the next step
//! starts at once; between frames they park on a condvar, so an idle daemon burns no CPU.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A task body, borrowed for one [`Pool::run`]; workers call it only while that run waits.
type Task = *const (dyn Fn(usize, usize) + Sync);

/// The job workers see: its epoch, body and task count.
struct Job {
    epoch: u64,
    f: Option<Task>,
    n: usize,
}

// SAFETY: the raw pointer is only dereferenced while the `run` that published it is blocked
// waiting for its tasks (see `Pool::run`), and the closure behind it is `Sync`.
unsafe impl Send for Job {}

struct Shared {
    job: Mutex<Job>,
    wake: Condvar,
    /// The latest epoch, readable without the lock (workers spin on it).
    epoch: AtomicU64,
    /// `epoch << 32 | next task`: claiming a task checks the epoch in the same atomic step, so
    /// a worker that slept through a run can never take a task of the next one with the old
    /// body.
    ticket: AtomicU64,
    done: AtomicUsize,
    /// A task panicked in this run: `run` re-raises it on the caller once every task is
    /// accounted for, rather than waiting forever for a dead worker.
    panicked: AtomicBool,
    stop: AtomicBool,
}

/// Spin iterations (about 50 µs) before a worker parks.
const SPIN: u32 = 20_000;

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads())
    }
}

impl Pool {
    /// A pool that runs tasks on `threads` threads: the caller's plus `threads − 1` workers.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: Mutex::new(Job {
                epoch: 0,
                f: None,
                n: 0,
            }),
            wake: Condvar::new(),
            epoch: AtomicU64::new(0),
            ticket: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("steadyface-nn-{i}"))
                    .spawn(move || worker(&s, i))
                    .expect("spawn an engine worker thread")
            })
            .collect();
        Self { shared, workers }
    }

    /// Threads that run tasks, the caller's included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(0, t)`, …, `f(n − 1, t)` across the pool and return when all are done; `t` is
    /// the thread that runs the task (0 for the caller, which runs tasks too), so per-thread
    /// scratch needs no sharing. Allocation-free.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.workers.is_empty() || n <= 1 {
            (0..n).for_each(|i| f(i, 0));
            return;
        }
        let s = &*self.shared;
        // SAFETY (lifetime erasure): `f` outlives every call through this pointer. A worker
        // calls it only after claiming a task of this epoch, and this function does not
        // return before every claimed task has finished (`done == n` below).
        let task: Task = unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync), Task>(f) };
        let epoch = {
            let mut job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            job.epoch += 1;
            s.done.store(0, Ordering::Relaxed);
            s.ticket.store(job.epoch << 32, Ordering::Release);
            job.f = Some(task);
            job.n = n;
            s.epoch.store(job.epoch, Ordering::Release);
            job.epoch
        };
        s.wake.notify_all();
        claim(s, epoch, n, 0, f);
        while s.done.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        s.job.lock().unwrap_or_else(|e| e.into_inner()).f = None;
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a task of the engine's thread pool panicked (see the message above)");
        }
    }
}

/// Take tasks of `epoch` until none are left, as thread `me`.
fn claim(s: &Shared, epoch: u64, n: usize, me: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    loop {
        let t = s.ticket.load(Ordering::Acquire);
        let i = (t & 0xFFFF_FFFF) as usize;
        if t >> 32 != epoch || i >= n {
            return;
        }
        if s.ticket
            .compare_exchange_weak(t, t + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // A panicking task still counts as done, so the run ends and reports it.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i, me))).is_ok();
            if !ok {
                s.panicked.store(true, Ordering::Release);
            }
            s.done.fetch_add(1, Ordering::Release);
        }
    }
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0;
    loop {
        let mut spins = 0;
        while s.epoch.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Acquire) {
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            while job.epoch == seen && !s.stop.load(Ordering::Acquire) {
                job = s.wake.wait(job).unwrap_or_else(|e| e.into_inner());
            }
        }
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        let (epoch, f, n) = {
            let job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            (job.epoch, job.f, job.n)
        };
        seen = epoch;
        if let Some(f) = f {
            // SAFETY: see `Pool::run`; `claim` calls `f` only for a task of this epoch,
            // which that run is still waiting for.
            claim(s, epoch, n, me, unsafe { &*f });
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            // Taking the lock orders the store before any worker's re-check under it.
            let _job = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Every task of every run is done exactly once, by several threads, over many short runs
    /// (where a worker can lag one run behind), and the pool shuts down cleanly.
    #[test]
    fn every_task_runs_once_across_many_runs() {
        let pool = Pool::new(3);
        assert_eq!(pool.threads(), 3);
        let hits: Vec<AtomicU32> = (0..64).map(|_| AtomicU32::new(0)).collect();
        let threads = Mutex::new(std::collections::HashSet::new());
        for run in 0..2000 {
            let n = 1 + run % 64;
            pool.run(n, &|i, t| {
                assert!(t < 3);
                hits[i].fetch_add(1, Ordering::Relaxed);
                if run % 100 == 0 {
                    threads.lock().unwrap().insert(std::thread::current().id());
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            });
        }
        for (i, h) in hits.iter().enumerate() {
            let want = (0..2000).filter(|run| i < 1 + run % 64).count() as u32;
            assert_eq!(h.load(Ordering::Relaxed), want, "task {i}");
        }
        assert!(threads.lock().unwrap().len() >= 2, "the workers took part");
    }

    /// A panicking task ends the run with a panic on the caller, not a hang, and the pool
    /// keeps working afterwards.
    #[test]
    fn a_panicking_task_is_reported_not_hung() {
        let pool = Pool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(8, &|i, _| {
                if i == 5 {
                    panic!("task 5 fails");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(8, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn one_thread_runs_inline() {
        let pool = Pool::new(1);
        let sum = AtomicUsize::new(0);
        pool.run(10, &|i, _| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }
}
