//! A spinning thread pool for the CPU backend's per-token loops (products, attention).
//!
//! A decode step runs about five parallel loops a layer, each a few tens of microseconds of
//! work. Rayon parks an idle worker after a short spin, and waking it costs 5–15 µs a loop on a
//! VM (measured: 4 µs a loop back to back, 15 µs after a 50 µs gap): on a 30-layer model,
//! milliseconds a token. Here the workers spin between loops instead (`spin_loop`, checking one
//! atomic word) and park only after [`SPIN`] without work, so a step's loops start in well under
//! a microsecond; the caller takes tasks too. This is what llama.cpp's CPU backend does.
//!
//! Spinning assumes the pool's threads have cores to themselves. When they do not (another
//! busy process on a 2-core machine), a worker is descheduled holding a task and the caller
//! waits milliseconds for it, slower than running alone. So the caller times each loop: a wait
//! for the last task far longer than a task takes is a stall, and after two within 100 ms the
//! loops run on the caller alone for a back-off period (doubling while stalls recur, up to a
//! second), then the pool is tried again ([`Adapt`]; `WAVEFRONT_POOL_ADAPT=0` turns it off).
//!
//! One loop runs at a time: a caller that finds the pool busy (another engine, on another
//! thread) runs its tasks itself, in order. Which thread runs a task never changes what it
//! computes: every task writes its own outputs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// The first serial period after a stall, and the longest.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A wait for the last tasks is a stall when it exceeds `STALL_TASKS` times the caller's mean
/// task time plus `STALL_SLACK` (a worker's wake-up from parking, an interrupt).
const STALL_TASKS: u32 = 4;
const STALL_SLACK: Duration = Duration::from_micros(200);
/// Two stalls this close make the loops serial.
const RECUR: Duration = Duration::from_millis(100);

/// Most tasks one loop may have (the task count lives in 16 bits of the claim word).
pub const MAX_TASKS: usize = u16::MAX as usize;

/// One loop: the function and its task count (on the caller's stack while the loop runs).
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Shared {
    /// The current loop's claim word: a generation count (bits 32..64), its task count (bits
    /// 16..32) and the next unclaimed task (bits 0..16). A worker claims task `i` by moving the
    /// word from `i` to `i + 1` with the generation unchanged, so a claim can only take a task
    /// of the loop it read, and that loop's `Job` is alive until every claimed task is done.
    claim: AtomicU64,
    /// The current loop's `Job`, set before its claim word is published.
    job: AtomicPtr<()>,
    done: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

fn tasks_left(word: u64) -> bool {
    let (n, next) = ((word >> 16) & 0xFFFF, word & 0xFFFF);
    next < n
}

impl Shared {
    /// Claims and runs tasks of the current loop until none is left; returns how many it ran.
    fn work(&self) -> u32 {
        let mut ran = 0;
        loop {
            let word = self.claim.load(Ordering::Acquire);
            if !tasks_left(word) {
                return ran;
            }
            if self
                .claim
                .compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // SAFETY: the claim succeeded with the word of the loop whose `Job` this points to
            // (the pointer is set before the word is published, and replaced only after every
            // claimed task of the loop has finished, ours included).
            let job = unsafe { &*(self.job.load(Ordering::Acquire) as *const Job<'_>) };
            let i = (word & 0xFFFF) as usize;
            if catch_unwind(AssertUnwindSafe(|| (job.f)(i))).is_err() {
                self.panicked.store(true, Ordering::Release);
            }
            self.done.fetch_add(1, Ordering::AcqRel);
            ran += 1;
        }
    }

    fn worker(&self) {
        loop {
            let start = Instant::now();
            let mut spins = 0u32;
            loop {
                if tasks_left(self.claim.load(Ordering::Acquire)) {
                    self.work();
                    break;
                }
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
                    self.park();
                    break;
                }
            }
        }
    }

    /// Sleeps until a loop with tasks is published.
    fn park(&self) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !tasks_left(self.claim.load(Ordering::SeqCst)) {
            g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        drop(g);
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether loops run on the pool or on the caller alone (see the module doc): held with the
/// pool's busy lock, so only the loop running reads or changes it.
#[derive(Debug, Default)]
struct Adapt {
    /// Loops run on the caller alone until then.
    serial_until: Option<Instant>,
    /// The serial period a stall starts; zero until the first stall.
    backoff: Duration,
    /// When the pool last ran loops without a stall after a serial period (the back-off
    /// shrinks back once the pool has run stall-free for as long as it last stayed serial).
    clean_since: Option<Instant>,
    /// The last stall.
    last_stall: Option<Instant>,
}

impl Adapt {
    /// Whether a loop starting at `now` may use the workers.
    fn parallel(&mut self, now: Instant) -> bool {
        match self.serial_until {
            Some(t) if now < t => false,
            Some(_) => {
                self.serial_until = None;
                self.clean_since = Some(now);
                true
            }
            None => {
                if let Some(c) = self.clean_since {
                    if now.duration_since(c) > self.backoff {
                        self.backoff = Duration::ZERO;
                        self.clean_since = None;
                    }
                }
                true
            }
        }
    }

    /// A pool loop ended at `now`: the caller ran `tasks` tasks in `own`, then waited `wait`
    /// for the workers' last ones.
    fn record(&mut self, now: Instant, own: Duration, tasks: u32, wait: Duration) {
        if tasks == 0 || wait <= own / tasks * STALL_TASKS + STALL_SLACK {
            return;
        }
        // One stall alone (an interrupt, the host's hiccup) is not a pattern: a second within
        // `RECUR` is.
        let recurs = self
            .last_stall
            .is_some_and(|t| now.duration_since(t) < RECUR);
        self.last_stall = Some(now);
        if !recurs {
            return;
        }
        self.backoff = (self.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.serial_until = Some(now + self.backoff);
        self.clean_since = None;
        self.last_stall = None;
    }
}

/// Whether stalls make loops serial: unless `WAVEFRONT_POOL_ADAPT=0` (for A/B runs).
fn adaptive() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("WAVEFRONT_POOL_ADAPT").map_or(true, |v| v != "0"))
}

pub struct Pool {
    shared: &'static Shared,
    workers: usize,
    /// Held by the loop running; a caller that cannot take it runs its tasks itself.
    busy: Mutex<Adapt>,
}

/// The pool: as many threads as rayon's (`RAYON_NUM_THREADS` sets both), the caller one of
/// them, the rest spawned on first use.
pub fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            claim: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }));
        let wanted = rayon::current_num_threads().max(1) - 1;
        let workers = (0..wanted)
            .filter(|i| {
                std::thread::Builder::new()
                    .name(format!("wavefront-cpu-{}", i + 1))
                    .spawn(move || shared.worker())
                    .is_ok()
            })
            .count();
        Pool {
            shared,
            workers,
            busy: Mutex::new(Adapt::default()),
        }
    })
}

impl Pool {
    /// Threads that run a loop's tasks (the workers and the caller).
    pub fn threads(&self) -> usize {
        self.workers + 1
    }

    /// Runs `f(0) … f(n − 1)` across the pool and returns when all have run. A panic in a task
    /// is raised here once every task has finished.
    pub fn for_each(&self, n: usize, f: impl Fn(usize) + Sync) {
        // More tasks than the claim word counts: in loops of MAX_TASKS.
        for first in (0..n).step_by(MAX_TASKS) {
            self.one_loop((n - first).min(MAX_TASKS), |i| f(first + i));
        }
    }

    fn one_loop(&self, n: usize, f: impl Fn(usize) + Sync) {
        if n == 0 {
            return;
        }
        let start = Instant::now();
        let mut guard = match self.busy.try_lock() {
            Ok(mut g) if self.workers > 0 && n > 1 => {
                if !adaptive() || g.parallel(start) {
                    g
                } else {
                    drop(g);
                    return serial(n, f);
                }
            }
            _ => return serial(n, f),
        };
        let s = self.shared;
        let job = Job { f: &f };
        s.done.store(0, Ordering::Relaxed);
        s.job
            .store(&job as *const Job<'_> as *mut (), Ordering::Release);
        let generation = (s.claim.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xFFFF_FFFF;
        s.claim
            .store(generation << 32 | (n as u64) << 16, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let tasks = s.work();
        let worked = Instant::now();
        while s.done.load(Ordering::Acquire) < n {
            std::hint::spin_loop();
        }
        let end = Instant::now();
        guard.record(end, worked - start, tasks, end - worked);
        drop(guard);
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a task of a CPU loop panicked");
        }
    }

    /// `f(i, chunk_i)` for the consecutive `chunk`-element pieces of `data` (the last may be
    /// shorter), across the pool.
    pub fn chunks<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        f: impl Fn(usize, &mut [T]) + Sync,
    ) {
        assert!(chunk > 0);
        let len = data.len();
        let base = SendPtr(data.as_mut_ptr());
        self.for_each(len.div_ceil(chunk), |i| {
            let start = i * chunk;
            let end = (start + chunk).min(len);
            // SAFETY: task i alone touches elements start..end, inside `data`, which the loop
            // borrows mutably until every task has run.
            let piece = unsafe { std::slice::from_raw_parts_mut(base.at(start), end - start) };
            f(i, piece)
        });
    }
}

/// A loop on the caller alone, with the pool's panic rule: every task runs, then a panic in
/// any of them is raised.
fn serial(n: usize, f: impl Fn(usize)) {
    let mut panicked = false;
    for i in 0..n {
        panicked |= catch_unwind(AssertUnwindSafe(|| f(i))).is_err();
    }
    if panicked {
        panic!("a task of a CPU loop panicked");
    }
}

struct SendPtr<T>(*mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: only used to hand disjoint pieces of one slice to the tasks of a loop.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    fn at(self, i: usize) -> *mut T {
        // SAFETY: callers stay inside the slice the pointer came from.
        unsafe { self.0.add(i) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_chunks_cover_the_slice() {
        let p = pool();
        for n in [0usize, 1, 2, 7, 64, 1000, MAX_TASKS + 3] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            p.for_each(n, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{n}");
        }
        let mut v = vec![0usize; 1003];
        p.chunks(&mut v, 16, |c, piece| {
            for (j, x) in piece.iter_mut().enumerate() {
                *x += c * 16 + j + 1;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == i + 1));
    }

    #[test]
    fn loops_from_several_threads_and_after_parking_still_complete() {
        std::thread::scope(|sc| {
            for t in 0..3 {
                sc.spawn(move || {
                    for round in 0..200 {
                        let sum = AtomicUsize::new(0);
                        pool().for_each(9, |i| {
                            sum.fetch_add(i + t + round, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 36 + 9 * (t + round));
                    }
                });
            }
        });
        std::thread::sleep(SPIN * 3); // the workers park
        let sum = AtomicUsize::new(0);
        pool().for_each(5, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn recurring_stalls_make_loops_serial_for_a_doubling_while_then_the_pool_returns() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let mut a = Adapt::default();
        assert!(a.parallel(t0));
        // Waits within a few tasks' time are not stalls, however long the tasks (prefill).
        a.record(t0, ms(40), 4, ms(30));
        a.record(t0, us(40), 4, us(150));
        a.record(t0, ms(1), 0, ms(50)); // the caller ran nothing: no measure of a task
        assert!(a.parallel(t0 + ms(1)));
        // One stall alone is not a pattern; a second within RECUR is.
        a.record(t0, us(40), 4, ms(3));
        assert!(a.parallel(t0 + ms(1)));
        let t1 = t0 + RECUR + ms(1);
        a.record(t1, us(40), 4, ms(3)); // RECUR after the first: alone again
        assert!(a.parallel(t1));
        a.record(t1 + ms(5), us(40), 4, ms(3));
        assert!(!a.parallel(t1 + ms(6)));
        assert!(!a.parallel(t1 + ms(5) + BACKOFF_MIN - us(1)));
        let t2 = t1 + ms(5) + BACKOFF_MIN;
        assert!(a.parallel(t2));
        // Stalls again at once: twice as long, up to BACKOFF_MAX.
        let mut t = t2;
        let mut want = BACKOFF_MIN;
        for _ in 0..10 {
            a.record(t, us(40), 4, ms(3));
            a.record(t, us(40), 4, ms(3));
            want = (want * 2).min(BACKOFF_MAX);
            assert!(!a.parallel(t + want - us(1)), "{want:?}");
            t += want;
            assert!(a.parallel(t), "{want:?}");
        }
        assert_eq!(want, BACKOFF_MAX);
        // A clean run as long as the last serial period: the next stalls start from the least.
        assert!(a.parallel(t + BACKOFF_MAX + ms(1)));
        let t3 = t + BACKOFF_MAX + ms(2);
        a.record(t3, us(40), 4, ms(3));
        a.record(t3, us(40), 4, ms(3));
        assert!(!a.parallel(t3 + BACKOFF_MIN - us(1)));
        assert!(a.parallel(t3 + BACKOFF_MIN));
    }

    #[test]
    fn a_panicking_task_panics_the_caller_after_the_loop() {
        let panics_after_all_ran = || {
            let ran = AtomicUsize::new(0);
            let r = catch_unwind(AssertUnwindSafe(|| {
                pool().for_each(8, |i| {
                    ran.fetch_add(1, Ordering::Relaxed);
                    assert!(i != 3, "task 3");
                })
            }));
            assert!(r.is_err());
            assert_eq!(ran.load(Ordering::Relaxed), 8);
        };
        // On the pool (or on the caller, when another test's loop holds it) …
        panics_after_all_ran();
        // … and on the caller alone for certain: a loop started while the pool is busy.
        {
            let _busy = pool().busy.lock().unwrap_or_else(|e| e.into_inner());
            panics_after_all_ran();
        }
        // The pool still works.
        let sum = AtomicUsize::new(0);
        pool().for_each(4, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }
}
