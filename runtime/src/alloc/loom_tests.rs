//! Loom model checks of the lock-free bitmap and the per-CPU caches: every
//! interleaving of the atomic operations of a few concurrent calls (up to a
//! preemption bound), on the real code, whose atomics `sync` swaps for
//! loom's.
//!
//! Run them with (a minute to build, seconds to check):
//!
//! ```sh
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p framealloc --lib --release loom_
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` (default here: 3; 4 takes about 40 s) changes the
//! bound.

extern crate std;

use std::boxed::Box;
use std::vec::Vec;

use loom::thread;
use x86_64::structures::paging::{PhysFrame, Size2MiB, Size4KiB};

use super::atomic_bitmap::AtomicBitmapAllocator;
use super::memory_map::{
    FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, RegionKind, normalize,
};
use super::percpu::PerCpuCaches;
use super::shared::SharedFrameDeallocator;
use super::sync::AtomicU64;
use crate::{FrameAllocator, FrameDeallocator};

const M2: u64 = 0x20_0000;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // The set-up before the threads start (filling a chunk) takes more
    // atomic operations than loom allows by default; it has one thread, so
    // it adds no interleavings.
    builder.max_branches = 100_000;
    builder.check(f);
}

/// An allocator over `[start, start + len)` (one 2 MiB chunk at 2 MiB,
/// or less), leaked so that loom threads can share it.
fn bitmap(len: u64) -> &'static AtomicBitmapAllocator<'static> {
    let firmware = [FirmwareRegion::new(M2, len, RegionKind::Usable)];
    let mut regions = [MemoryRegion::default(); 4];
    let (map, _) = normalize(&firmware, &mut regions, NormalizeOptions::new()).unwrap();
    let map = MemoryMap::from_regions(map.regions()).unwrap();
    let words = AtomicBitmapAllocator::words_needed(&map);
    let storage: &'static [AtomicU64] = Box::leak(
        (0..words)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let bitmap = Box::leak(Box::new(AtomicBitmapAllocator::new(storage)));
    // SAFETY: the map describes no real memory: its frames are numbers the
    // models never access, and nothing else manages them or the storage.
    unsafe { bitmap.load_map(&map) }.unwrap();
    bitmap
}

/// Two CPUs take the last two frames: different frames, then none left.
#[test]
fn loom_two_allocations_get_different_frames() {
    model(|| {
        let a = bitmap(2 * 4096);
        let t = thread::spawn(move || a.allocate_4kib());
        let mine = a.allocate_4kib();
        let theirs = t.join().unwrap();
        assert!(mine.is_some() && theirs.is_some());
        assert_ne!(mine, theirs);
        assert_eq!(a.allocate_4kib(), None);
        a.check_invariants();
    });
}

/// One CPU empties a word while another frees into it: the summary bit
/// must survive (the emptying CPU re-checks the word after clearing it).
#[test]
fn loom_free_racing_the_emptying_of_a_word_keeps_its_summary_bit() {
    model(|| {
        let a = bitmap(2 * 4096);
        let held = a.allocate_4kib().unwrap();
        let t = thread::spawn(move || a.allocate_4kib());
        // SAFETY: the frame is unused.
        unsafe { a.try_deallocate_4kib(held) }.unwrap();
        let taken = t.join().unwrap();
        assert!(taken.is_some());
        a.check_invariants();
        assert!(a.allocate_4kib().is_some());
    });
}

/// Two CPUs free the last two taken frames of a chunk, in different words:
/// one of them must see the chunk complete and set its hint bit.
#[test]
fn loom_frees_completing_a_chunk_set_its_hint() {
    model(|| {
        let a = bitmap(M2);
        let frames: Vec<_> = core::iter::from_fn(|| a.allocate_4kib()).collect();
        assert_eq!(frames.len(), 512);
        for &f in &frames[1..511] {
            // SAFETY: the frame is unused.
            unsafe { a.try_deallocate_4kib(f) }.unwrap();
        }
        let (first, last) = (frames[0], frames[511]);
        // SAFETY: the frames are unused.
        let t = thread::spawn(move || unsafe { a.try_deallocate_4kib(last) });
        // SAFETY: as above.
        unsafe { a.try_deallocate_4kib(first) }.unwrap();
        t.join().unwrap().unwrap();
        a.check_invariants();
        assert!(a.allocate_2mib().is_some());
    });
}

/// A 2 MiB allocation races a 4 KiB allocation and free in its chunk: no
/// frame is handed out twice, and a failed claim puts back what it took
/// and keeps the chunk's hint.
#[test]
fn loom_huge_allocation_racing_small_ones() {
    model(|| {
        let a = bitmap(M2);
        let t = thread::spawn(move || {
            let f = a.allocate_4kib();
            if let Some(f) = f {
                // SAFETY: the frame is unused.
                unsafe { a.try_deallocate_4kib(f) }.unwrap();
            }
            f
        });
        let huge: Option<PhysFrame<Size2MiB>> = a.allocate_2mib();
        let small_frame = t.join().unwrap();
        match huge {
            // The small frame was given back before the claim, or never had.
            Some(h) => {
                assert_eq!(a.free_frames(), 0);
                // SAFETY: the frame is unused.
                unsafe { a.try_deallocate_2mib(h) }.unwrap();
            }
            None => assert!(small_frame.is_some()),
        }
        a.check_invariants();
        assert!(a.allocate_2mib().is_some());
    });
}

/// Two CPUs free the same frame at once: one succeeds, one is refused.
#[test]
fn loom_racing_double_free_is_refused_once() {
    model(|| {
        let a = bitmap(2 * 4096);
        let f = a.allocate_4kib().unwrap();
        // SAFETY: the frame is unused; one of the two frees is refused.
        let t = thread::spawn(move || unsafe { a.try_deallocate_4kib(f) });
        // SAFETY: as above.
        let mine = unsafe { a.try_deallocate_4kib(f) };
        let theirs = t.join().unwrap();
        assert!(mine.is_ok() != theirs.is_ok());
        a.check_invariants();
    });
}

type Caches = PerCpuCaches<&'static AtomicBitmapAllocator<'static>, Size4KiB, 2, 4>;

/// A CPU refills, allocates and frees through its cache while another CPU
/// drains all caches: loom's cells check that no two threads reach one
/// magazine at once, and no frame is lost or duplicated.
#[test]
fn loom_cache_use_racing_drain_all() {
    model(|| {
        let a = bitmap(4 * 4096);
        let caches: &'static Caches = Box::leak(Box::new(PerCpuCaches::new(a)));
        let t = thread::spawn(move || {
            // Busy only while `drain_all` drains this slot.
            let mut cache = loop {
                if let Ok(cache) = caches.claim(0) {
                    break cache;
                }
                thread::yield_now();
            };
            let x = cache.allocate_frame().unwrap(); // refills 2
            let y = cache.allocate_frame().unwrap();
            assert_ne!(x, y);
            // SAFETY: the frame is unused.
            unsafe { cache.deallocate_frame(x) };
            y
        });
        let first = caches.drain_all();
        let y = t.join().unwrap();
        // SAFETY: the frame is unused.
        unsafe { SharedFrameDeallocator::deallocate_frame(a, y) };
        // Nobody holds a cache now: whatever is left is drained now.
        let second = caches.drain_all();
        assert_eq!(second.deferred, 0);
        // At most what CPU 0 held at once: the refill of 2 less one in use.
        assert!(first.drained <= 1 && first.deferred <= 1);
        assert_eq!(a.free_frames(), 4);
        assert_eq!(a.rejected_deallocations(), 0);
        a.check_invariants();
    });
}

/// Two threads claim the same CPU's cache: never both at once.
#[test]
fn loom_one_cpu_one_holder() {
    model(|| {
        let a = bitmap(4 * 4096);
        let caches: &'static Caches = Box::leak(Box::new(PerCpuCaches::new(a)));
        let t = thread::spawn(move || {
            if let Ok(mut cache) = caches.claim(1) {
                let f = cache.allocate_frame().unwrap();
                // SAFETY: the frame is unused.
                unsafe { cache.deallocate_frame(f) };
            }
        });
        if let Ok(mut cache) = caches.claim(1) {
            let f = cache.allocate_frame().unwrap();
            // SAFETY: the frame is unused.
            unsafe { cache.deallocate_frame(f) };
        }
        t.join().unwrap();
        assert_eq!(caches.drain_all().drained, 2);
        assert_eq!(a.free_frames(), 4);
    });
}
