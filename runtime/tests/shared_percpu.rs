//! Per-CPU caches on one thread: claims, refill and drain in batches,
//! deferred drains, and a property test against a sequential model of the
//! caches and the shared allocator. (Threads: `shared_stress.rs`.)

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;

use framealloc::alloc::{
    AtomicBitmapAllocator, ClaimError, CpuCache, DrainAll, FirmwareRegion, MemoryMap, MemoryRegion,
    NormalizeOptions, PerCpuCaches, RegionKind::*, normalize,
};
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use proptest::prelude::*;

const CPUS: usize = 3;
const CAP: usize = 8;
type Caches<'a, 's> = PerCpuCaches<&'a AtomicBitmapAllocator<'s>, Size4KiB, CPUS, CAP>;

fn regions(frames: u64) -> Vec<MemoryRegion> {
    let firmware = [FirmwareRegion::new(0x20_0000, frames * 4096, Usable)];
    let mut storage = vec![MemoryRegion::default(); 4];
    let (map, _) = normalize(&firmware, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

fn storage_for(map: &MemoryMap<'_>) -> Vec<AtomicU64> {
    (0..AtomicBitmapAllocator::words_needed(map))
        .map(|_| AtomicU64::new(0))
        .collect()
}

fn loaded<'s>(storage: &'s [AtomicU64], map: &MemoryMap<'_>) -> AtomicBitmapAllocator<'s> {
    let a = AtomicBitmapAllocator::new(storage);
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    unsafe { a.load_map(map) }.unwrap();
    a
}

#[test]
fn claims_are_exclusive_and_checked() {
    let regions = regions(64);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let caches: Caches<'_, '_> = PerCpuCaches::new(&a);
    let first = caches.claim(1).unwrap();
    assert_eq!(caches.claim(1).err(), Some(ClaimError::Busy { cpu: 1 }));
    assert_eq!(
        caches.claim(3).err(),
        Some(ClaimError::NoSuchCpu { cpu: 3, cpus: 3 })
    );
    assert!(caches.claim(0).is_ok());
    drop(first);
    assert!(caches.claim(1).is_ok());
}

#[test]
fn refills_and_drains_move_half_the_capacity() {
    let regions = regions(64);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let caches: Caches<'_, '_> = PerCpuCaches::new(&a);
    let mut cache = caches.claim(0).unwrap();
    let f = cache.allocate_frame().unwrap();
    assert_eq!(
        (cache.len(), a.free_frames()),
        (3, 60),
        "refilled 4, handed out 1"
    );
    let mut held = vec![f];
    held.extend((0..3).map(|_| cache.allocate_frame().unwrap()));
    assert_eq!(
        (cache.len(), a.free_frames()),
        (0, 60),
        "served from the cache"
    );
    held.extend((0..8).map(|_| cache.allocate_frame().unwrap()));
    assert_eq!((cache.len(), a.free_frames()), (0, 52), "two more refills");
    for f in held {
        // SAFETY: the frames are unused.
        unsafe { cache.deallocate_frame(f) };
    }
    // 12 frames given back: 8 fit, the 9th drained the oldest 4.
    assert_eq!((cache.len(), a.free_frames()), (8, 56));
    assert_eq!(cache.drain(), 8);
    assert_eq!(a.free_frames(), 64);
    assert_eq!(a.rejected_deallocations(), 0);
}

#[test]
fn drain_all_drains_idle_caches_and_defers_held_ones() {
    let regions = regions(64);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let mut caches: Caches<'_, '_> = PerCpuCaches::new(&a);
    for cpu in 0..CPUS {
        let mut cache = caches.claim(cpu).unwrap();
        let f = cache.allocate_frame().unwrap();
        // SAFETY: the frame is unused.
        unsafe { cache.deallocate_frame(f) };
    }
    assert_eq!(a.free_frames(), 64 - 12);
    let mut held = caches.claim(2).unwrap();
    assert_eq!(
        caches.drain_all(),
        DrainAll {
            drained: 8,
            deferred: 1
        }
    );
    assert_eq!(a.free_frames(), 64 - 4);
    // CPU 2 drains at its next operation, then serves it.
    let f = held.allocate_frame().unwrap();
    assert_eq!((held.len(), a.free_frames()), (3, 60));
    // SAFETY: the frame is unused.
    unsafe { held.deallocate_frame(f) };
    drop(held);
    assert_eq!(caches.drain_all_now(), 4);
    assert_eq!(a.free_frames(), 64);
}

/// `&mut cache` is what `x86_64`'s `map_to` takes.
#[test]
fn a_cpu_cache_is_a_frame_allocator() {
    fn take(frames: &mut impl FrameAllocator<Size4KiB>) -> Option<PhysFrame> {
        frames.allocate_frame()
    }
    let regions = regions(2);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = loaded(&storage, &map);
    let caches: Caches<'_, '_> = PerCpuCaches::new(&a);
    let mut cache: CpuCache<'_, _, _, CPUS, CAP> = caches.claim(0).unwrap();
    let x = take(&mut cache).unwrap();
    let y = take(&mut cache).unwrap();
    assert_ne!(x, y);
    assert_eq!(take(&mut cache), None);
}

// ---- property test against a sequential model ----------------------------

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize, usize),
    Release(usize),
    Drain(usize),
    DrainAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..CPUS).prop_map(Op::Alloc),
        5 => (0..CPUS, any::<usize>()).prop_map(|(c, i)| Op::Free(c, i)),
        1 => (0..CPUS).prop_map(Op::Release),
        1 => (0..CPUS).prop_map(Op::Drain),
        1 => Just(Op::DrainAll),
    ]
}

/// Linux's per-CPU lists, counted: how many frames each CPU holds, whether
/// it owes a drain, and how many the shared allocator has.
struct Model {
    cached: [usize; CPUS],
    owes_drain: [bool; CPUS],
    shared_free: u64,
}

impl Model {
    fn settle(&mut self, cpu: usize) {
        if std::mem::take(&mut self.owes_drain[cpu]) {
            self.shared_free += self.cached[cpu] as u64;
            self.cached[cpu] = 0;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn caches_match_the_model(frames in 1..40u64, ops in prop::collection::vec(op(), 0..150)) {
        let regions = regions(frames);
        let map = MemoryMap::from_regions(&regions).unwrap();
        let storage = storage_for(&map);
        let a = loaded(&storage, &map);
        let mut caches: Caches<'_, '_> = PerCpuCaches::new(&a);
        let mut m = Model { cached: [0; CPUS], owes_drain: [false; CPUS], shared_free: frames };
        let mut held: Vec<PhysFrame> = Vec::new();
        let mut seen = BTreeSet::new();
        {
            let mut handles: Vec<Option<CpuCache<'_, _, _, CPUS, CAP>>> = (0..CPUS).map(|_| None).collect();
            for op in ops {
                match op {
                    Op::Alloc(cpu) => {
                        let cache = handles[cpu].get_or_insert_with(|| caches.claim(cpu).unwrap());
                        m.settle(cpu);
                        if m.cached[cpu] == 0 {
                            let refill = (CAP as u64 / 2).min(m.shared_free);
                            m.shared_free -= refill;
                            m.cached[cpu] = refill as usize;
                        }
                        let got = cache.allocate_frame();
                        prop_assert_eq!(got.is_some(), m.cached[cpu] > 0);
                        if let Some(f) = got {
                            m.cached[cpu] -= 1;
                            prop_assert!(seen.insert(f), "{:?} handed out twice", f);
                            held.push(f);
                        }
                    }
                    Op::Free(cpu, i) if !held.is_empty() => {
                        let cache = handles[cpu].get_or_insert_with(|| caches.claim(cpu).unwrap());
                        m.settle(cpu);
                        if m.cached[cpu] == CAP {
                            m.cached[cpu] -= CAP / 2;
                            m.shared_free += CAP as u64 / 2;
                        }
                        m.cached[cpu] += 1;
                        let f = held.swap_remove(i % held.len());
                        seen.remove(&f);
                        // SAFETY: the frame is unused.
                        unsafe { cache.deallocate_frame(f) };
                    }
                    Op::Release(cpu) => handles[cpu] = None,
                    Op::Drain(cpu) => {
                        if let Some(cache) = &mut handles[cpu] {
                            m.owes_drain[cpu] = false;
                            prop_assert_eq!(cache.drain(), m.cached[cpu]);
                            m.shared_free += m.cached[cpu] as u64;
                            m.cached[cpu] = 0;
                        }
                    }
                    Op::DrainAll => {
                        let report = caches.drain_all();
                        let mut expected = DrainAll::default();
                        for (cpu, handle) in handles.iter().enumerate() {
                            if handle.is_some() {
                                m.owes_drain[cpu] = true;
                                expected.deferred += 1;
                            } else {
                                m.owes_drain[cpu] = false;
                                expected.drained += m.cached[cpu];
                                m.shared_free += m.cached[cpu] as u64;
                                m.cached[cpu] = 0;
                            }
                        }
                        prop_assert_eq!(report, expected);
                    }
                    Op::Free(..) => {}
                }
                for (cpu, handle) in handles.iter().enumerate() {
                    if let Some(cache) = handle {
                        prop_assert_eq!(cache.len(), m.cached[cpu], "cpu {}", cpu);
                    }
                }
                prop_assert_eq!(a.free_frames(), m.shared_free);
            }
        }
        for f in held {
            // SAFETY: the frame is unused.
            unsafe { FrameDeallocator::deallocate_frame(&mut caches.claim(0).unwrap(), f) };
        }
        caches.drain_all_now();
        prop_assert_eq!(a.free_frames(), frames);
        prop_assert_eq!(a.rejected_deallocations(), 0);
    }
}
