//! The lock-free bitmap and the per-CPU caches under real threads: every
//! frame is handed out to one owner at a time, and nothing is lost once
//! everything is freed, over thousands of rounds.
//!
//! An ownership table (one flag per 4 KiB frame) is the referee: a thread
//! that receives a frame swaps its flag from free to owned and fails if it
//! was owned already; it clears the flag before giving the frame back.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use framealloc::alloc::{
    AtomicBitmapAllocator, ClaimError, CpuCache, DeallocError, FRAME_SIZE, FirmwareRegion,
    MemoryMap, MemoryRegion, NormalizeOptions, PerCpuCaches, RegionKind::*, normalize,
};
use framealloc::{FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size2MiB, Size4KiB};

const K: u64 = FRAME_SIZE;
const M2: u64 = Size2MiB::SIZE;
const THREADS: usize = 4;

/// 16 MiB from 2 MiB on, with a reserved frame in the third chunk: 4095
/// usable frames, 7 whole chunks.
fn regions() -> Vec<MemoryRegion> {
    let firmware = [
        FirmwareRegion::new(0x20_0000, 8 * M2, Usable),
        FirmwareRegion::new(0x60_0000 + 7 * K, K, Reserved),
    ];
    let mut storage = vec![MemoryRegion::default(); 10];
    let (map, _) = normalize(&firmware, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

struct Owners {
    base: u64,
    owned: Vec<AtomicBool>,
}

impl Owners {
    fn new(map: &MemoryMap<'_>) -> Self {
        let base = map.usable().next().unwrap().start;
        let end = map.usable().last().unwrap().end;
        let owned = (0..(end - base) / K)
            .map(|_| AtomicBool::new(false))
            .collect();
        Owners { base, owned }
    }

    fn take(&self, addr: u64, frames: u64) {
        for f in 0..frames {
            let i = ((addr - self.base) / K + f) as usize;
            assert!(
                !self.owned[i].swap(true, Ordering::AcqRel),
                "frame {:#x} handed out while owned",
                addr + f * K
            );
        }
    }

    fn give(&self, addr: u64, frames: u64) {
        for f in 0..frames {
            let i = ((addr - self.base) / K + f) as usize;
            assert!(self.owned[i].swap(false, Ordering::AcqRel));
        }
    }
}

/// A barrier that fails instead of hanging when a thread has panicked, so
/// that a failed check in one thread fails the test instead of leaving the
/// others waiting.
struct Barrier {
    threads: usize,
    arrived: AtomicUsize,
    poisoned: AtomicBool,
}

impl Barrier {
    fn new(threads: usize) -> Self {
        Barrier {
            threads,
            arrived: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        let ticket = self.arrived.fetch_add(1, Ordering::AcqRel);
        let target = (ticket / self.threads + 1) * self.threads;
        while self.arrived.load(Ordering::Acquire) < target {
            assert!(
                !self.poisoned.load(Ordering::Relaxed),
                "another thread failed"
            );
            std::thread::yield_now();
        }
    }

    /// Runs `f`, poisoning the barrier if it panics.
    fn guard<R>(&self, f: impl FnOnce() -> R) -> R {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            self.poisoned.store(true, Ordering::Relaxed);
            resume_unwind(panic)
        })
    }
}

/// A small xorshift, so each thread's sequence is fixed by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn loaded<'a>(storage: &'a [AtomicU64], map: &MemoryMap<'_>) -> AtomicBitmapAllocator<'a> {
    let a = AtomicBitmapAllocator::new(storage);
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    unsafe { a.load_map(map) }.unwrap();
    a
}

fn storage_for(map: &MemoryMap<'_>) -> Vec<AtomicU64> {
    (0..AtomicBitmapAllocator::words_needed(map))
        .map(|_| AtomicU64::new(0))
        .collect()
}

/// Threads allocate random numbers of 4 KiB and 2 MiB frames, and free them
/// in random order, 2000 rounds each.
#[test]
fn churn_hands_out_each_frame_once_and_loses_none() {
    let regions = regions();
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let owners = Owners::new(&map);
    let huge_seen = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (a, owners, huge_seen) = (&a, &owners, &huge_seen);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                let mut held: Vec<PhysFrame<Size4KiB>> = Vec::new();
                let mut held_huge: Vec<PhysFrame<Size2MiB>> = Vec::new();
                for _ in 0..2000 {
                    for _ in 0..rng.below(48) {
                        if let Some(f) = a.allocate_4kib() {
                            owners.take(f.start_address().as_u64(), 1);
                            held.push(f);
                        }
                    }
                    if rng.below(8) == 0
                        && let Some(h) = a.allocate_2mib()
                    {
                        owners.take(h.start_address().as_u64(), 512);
                        held_huge.push(h);
                        huge_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    while held.len() > rng.below(64) as usize {
                        let f = held.swap_remove(rng.below(held.len() as u64) as usize);
                        owners.give(f.start_address().as_u64(), 1);
                        // SAFETY: the frame is unused (never touched).
                        unsafe { a.try_deallocate_4kib(f) }.unwrap();
                    }
                    if rng.below(4) == 0
                        && let Some(h) = held_huge.pop()
                    {
                        owners.give(h.start_address().as_u64(), 512);
                        // SAFETY: as above.
                        unsafe { a.try_deallocate_2mib(h) }.unwrap();
                    }
                }
                for f in held {
                    owners.give(f.start_address().as_u64(), 1);
                    // SAFETY: as above.
                    unsafe { a.try_deallocate_4kib(f) }.unwrap();
                }
                for h in held_huge {
                    owners.give(h.start_address().as_u64(), 512);
                    // SAFETY: as above.
                    unsafe { a.try_deallocate_2mib(h) }.unwrap();
                }
            });
        }
    });
    assert!(huge_seen.load(Ordering::Relaxed) > 0, "the 2 MiB path ran");
    assert_eq!(a.free_frames(), 4095);
    assert_eq!(a.free_2mib_frames(), 7);
    // Nothing was lost from the summaries either: all of it can be had again.
    let mut chunks = 0;
    while a.allocate_2mib().is_some() {
        chunks += 1;
    }
    assert_eq!(chunks, 7);
    let mut frames = 0;
    while a.allocate_4kib().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 4095 - 7 * 512);
}

/// Rounds in which the threads together empty the allocator (4 KiB singles
/// and batches), then free everything: every round the union of what they
/// got is exactly the usable frames.
#[test]
fn exhaustion_rounds_hand_out_exactly_the_usable_frames() {
    const ROUNDS: usize = 300;
    let regions = regions();
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let owners = Owners::new(&map);
    let total = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (a, owners, total, barrier) = (&a, &owners, &total, &barrier);
            s.spawn(move || {
                barrier.guard(|| {
                    let mut out = [std::mem::MaybeUninit::uninit(); 24];
                    let mut held = Vec::new();
                    for round in 0..ROUNDS {
                        loop {
                            let n = if (round + t) % 2 == 0 {
                                usize::from(
                                    a.allocate_4kib()
                                        .inspect(|&f| out[0] = std::mem::MaybeUninit::new(f))
                                        .is_some(),
                                )
                            } else {
                                a.allocate_4kib_batch(&mut out)
                            };
                            if n == 0 {
                                break;
                            }
                            for slot in &out[..n] {
                                // SAFETY: the first `n` were written.
                                let f = unsafe { slot.assume_init() };
                                owners.take(f.start_address().as_u64(), 1);
                                held.push(f);
                            }
                        }
                        total.fetch_add(held.len() as u64, Ordering::Relaxed);
                        barrier.wait();
                        if t == 0 {
                            assert_eq!(total.swap(0, Ordering::Relaxed), 4095, "round {round}");
                            assert_eq!(a.free_frames(), 0);
                        }
                        barrier.wait();
                        for f in held.drain(..) {
                            owners.give(f.start_address().as_u64(), 1);
                            // SAFETY: the frame is unused.
                            unsafe { a.try_deallocate_4kib(f) }.unwrap();
                        }
                        barrier.wait();
                    }
                });
            });
        }
    });
    assert_eq!(a.free_frames(), 4095);
    assert_eq!(a.free_2mib_frames(), 7);
}

/// Two threads free the same frame at once: exactly one succeeds, the
/// other is told it is a double free.
#[test]
fn racing_double_frees_are_refused_once() {
    let regions = regions();
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let barrier = Barrier::new(2);
    let frames: Vec<_> = (0..2000).map(|_| a.allocate_4kib().unwrap()).collect();
    let outcomes: Vec<Vec<Result<(), DeallocError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (a, barrier, frames) = (&a, &barrier, &frames);
                s.spawn(move || {
                    barrier.guard(|| {
                        frames
                            .iter()
                            .map(|&f| {
                                barrier.wait();
                                // SAFETY: the frame is unused; one of the two
                                // frees is refused (checked below).
                                unsafe { a.try_deallocate_4kib(f) }
                            })
                            .collect()
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, f) in frames.iter().enumerate() {
        let mut results = [outcomes[0][i], outcomes[1][i]];
        results.sort_by_key(Result::is_err);
        assert_eq!(
            results,
            [
                Ok(()),
                Err(DeallocError::AlreadyFree {
                    addr: f.start_address().as_u64()
                })
            ]
        );
    }
    assert_eq!(a.free_frames(), 4095);
}

/// Claims `cpu`'s cache, waiting while a `drain_all` drains it.
fn claim<'c, const CPUS: usize, const CAP: usize>(
    caches: &'c PerCpuCaches<&AtomicBitmapAllocator<'_>, Size4KiB, CPUS, CAP>,
    cpu: usize,
) -> CpuCache<'c, &'c AtomicBitmapAllocator<'c>, Size4KiB, CPUS, CAP> {
    loop {
        match caches.claim(cpu) {
            Ok(cache) => return cache,
            Err(ClaimError::Busy { .. }) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Per-CPU caches: each thread is one CPU, allocating and freeing through
/// its handle; another thread keeps asking for a drain of all caches.
#[test]
fn per_cpu_caches_hand_out_each_frame_once_and_drain_everything() {
    let regions = regions();
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let owners = Owners::new(&map);
    let mut caches: PerCpuCaches<&AtomicBitmapAllocator<'_>, Size4KiB, THREADS, 32> =
        PerCpuCaches::new(&a);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for cpu in 0..THREADS {
            let (caches, owners, done) = (&caches, &owners, &done);
            s.spawn(move || {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (cpu as u64 + 1));
                let mut held = Vec::new();
                for round in 0..2000 {
                    // The handle is held for a round; between rounds the
                    // drainer may drain this CPU's cache itself.
                    let mut cache = claim(caches, cpu);
                    for _ in 0..rng.below(40) {
                        if let Some(f) = cache.allocate_frame() {
                            owners.take(f.start_address().as_u64(), 1);
                            held.push(f);
                        } else {
                            // Memory pressure: collect the other CPUs' frames.
                            drop(cache);
                            caches.drain_all();
                            cache = claim(caches, cpu);
                        }
                    }
                    while held.len() > rng.below(80) as usize {
                        let f: PhysFrame<Size4KiB> =
                            held.swap_remove(rng.below(held.len() as u64) as usize);
                        owners.give(f.start_address().as_u64(), 1);
                        // SAFETY: the frame is unused.
                        unsafe { cache.deallocate_frame(f) };
                    }
                    assert!(cache.len() <= 32);
                    if round % 500 == 499 {
                        // This CPU goes offline and comes back.
                        cache.drain();
                        assert!(cache.is_empty());
                    }
                }
                let mut cache = claim(caches, cpu);
                for f in held {
                    owners.give(f.start_address().as_u64(), 1);
                    // SAFETY: the frame is unused.
                    unsafe { cache.deallocate_frame(f) };
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        s.spawn(|| {
            while done.load(Ordering::Relaxed) < THREADS {
                caches.drain_all();
                std::thread::yield_now();
            }
        });
    });
    caches.drain_all_now();
    assert_eq!(a.rejected_deallocations(), 0);
    assert_eq!(a.free_frames(), 4095);
    assert_eq!(a.free_2mib_frames(), 7);
}
