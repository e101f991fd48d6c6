//! The lock-free bitmap allocator on one thread: unit tests, the `&self`
//! interface and its `FrameAllocator` view, and a property test against a
//! sequential model. (Threads: `shared_stress.rs`; interleavings: the loom
//! models in `runtime/src/alloc/loom_tests.rs`.)

use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicU64;

use framealloc::alloc::{
    AtomicBitmapAllocator, AtomicBitmapError, DeallocError, FRAME_SIZE, FirmwareRegion, MemoryMap,
    MemoryRegion, NormalizeOptions, RegionKind::*, normalize,
};
use framealloc::x86_64::PhysAddr;
use framealloc::{
    FrameAllocator, FrameDeallocator, PageSize, PhysFrame, SharedFrameAllocator,
    SharedFrameDeallocator, SharedView, Size2MiB, Size4KiB,
};
use proptest::prelude::*;

const K: u64 = FRAME_SIZE;
const M2: u64 = Size2MiB::SIZE;

fn normalized(firmware: &[FirmwareRegion]) -> Vec<MemoryRegion> {
    let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
    let (map, _) = normalize(firmware, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

fn storage_for(map: &MemoryMap<'_>) -> Vec<AtomicU64> {
    (0..AtomicBitmapAllocator::words_needed(map))
        .map(|_| AtomicU64::new(0))
        .collect()
}

fn small(addr: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

fn huge(addr: u64) -> PhysFrame<Size2MiB> {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

#[test]
fn storage_too_small_then_loaded_once() {
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 0x20_0000, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let needed = AtomicBitmapAllocator::words_needed(&map);
    let storage = storage_for(&map);
    let short = AtomicBitmapAllocator::new(&storage[..needed - 1]);
    assert_eq!(
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        unsafe { short.load_map(&map) },
        Err(AtomicBitmapError::StorageTooSmall {
            needed,
            available: needed - 1
        })
    );
    let a = AtomicBitmapAllocator::new(&storage);
    assert_eq!(a.allocate_4kib(), None, "nothing before a map is loaded");
    assert_eq!(a.free_frames(), 0);
    // SAFETY: as above.
    unsafe { a.load_map(&map) }.unwrap();
    assert_eq!(a.free_frames(), 512);
    // SAFETY: refused (checked here), so nothing changes.
    let again = unsafe { a.load_map(&map) };
    assert_eq!(again, Err(AtomicBitmapError::AlreadyLoaded));
    assert_eq!(a.free_frames(), 512);
}

#[test]
fn errors_for_foreign_frames_double_frees_and_mixed_sizes() {
    let regions = normalized(&[
        FirmwareRegion::new(0x20_0000, 0x40_0000, Usable),
        FirmwareRegion::new(0x30_0000, K, Reserved),
    ]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = AtomicBitmapAllocator::new(&storage);
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    unsafe { a.load_map(&map) }.unwrap();
    assert_eq!(a.free_frames(), 1023);
    assert_eq!(a.usable_frames(), 1023);
    assert_eq!(
        a.free_2mib_frames(),
        1,
        "the chunk with the hole is not free"
    );

    let h = a.allocate_2mib().unwrap();
    assert_eq!(h.start_address().as_u64(), 0x40_0000);
    assert_eq!(a.allocate_2mib(), None);
    let f = a.allocate_4kib().unwrap();
    assert!(f.start_address().as_u64() < 0x40_0000);

    // SAFETY: every call below is refused (checked), so nothing changes.
    unsafe {
        assert_eq!(
            a.try_deallocate_4kib(small(0x10_0000)),
            Err(DeallocError::OutsideRange { addr: 0x10_0000 })
        );
        assert_eq!(
            a.try_deallocate_4kib(small(0x30_0000)),
            Err(DeallocError::NotUsable { addr: 0x30_0000 })
        );
        assert_eq!(
            a.try_deallocate_4kib(small(0x40_1000)),
            Err(DeallocError::PartOfHugeFrame { addr: 0x40_1000 })
        );
        assert_eq!(
            a.try_deallocate_2mib(huge(0x20_0000)),
            Err(DeallocError::NotUsable { addr: 0x20_0000 })
        );
        assert_eq!(
            a.try_deallocate_2mib(huge(0x60_0000)),
            Err(DeallocError::OutsideRange { addr: 0x60_0000 })
        );
    }
    assert_eq!(a.free_frames(), 1023 - 512 - 1);
    // SAFETY: neither frame was used.
    unsafe {
        assert_eq!(a.try_deallocate_4kib(f), Ok(()));
        assert_eq!(
            a.try_deallocate_4kib(f),
            Err(DeallocError::AlreadyFree {
                addr: f.start_address().as_u64()
            })
        );
        assert_eq!(a.try_deallocate_2mib(h), Ok(()));
        assert_eq!(
            a.try_deallocate_2mib(h),
            Err(DeallocError::AlreadyFree { addr: 0x40_0000 })
        );
    }
    assert_eq!(a.free_frames(), 1023);
    assert_eq!(a.free_2mib_frames(), 1);

    // Allocated 4 KiB by 4 KiB, a chunk is not a 2 MiB frame.
    let pieces: Vec<_> = std::iter::from_fn(|| a.allocate_4kib()).collect();
    assert_eq!(pieces.len(), 1023);
    // SAFETY: refused (checked), so nothing changes.
    let refused = unsafe { a.try_deallocate_2mib(huge(0x40_0000)) };
    assert_eq!(
        refused,
        Err(DeallocError::NotAllocatedAsHugeFrame { addr: 0x40_0000 })
    );
}

#[test]
fn trait_deallocation_counts_refusals_without_changing_state() {
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 0x20_0000, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = AtomicBitmapAllocator::new(&storage);
    // SAFETY: the map describes no real memory; nothing else manages it.
    unsafe { a.load_map(&map) }.unwrap();
    assert_eq!(a.last_rejected(), None);
    let f: PhysFrame<Size4KiB> = SharedFrameAllocator::allocate_frame(&a).unwrap();
    // SAFETY: the frame is unused; the second free and the foreign frame are
    // refused and change nothing.
    unsafe {
        SharedFrameDeallocator::deallocate_frame(&a, f);
        SharedFrameDeallocator::deallocate_frame(&a, f);
        SharedFrameDeallocator::<Size2MiB>::deallocate_frame(&a, huge(0x80_0000));
    }
    assert_eq!(a.rejected_deallocations(), 2);
    assert_eq!(
        a.last_rejected(),
        Some(DeallocError::OutsideRange { addr: 0x80_0000 })
    );
    assert_eq!(a.free_frames(), 512);
}

#[test]
fn batches_take_whole_words_and_stop_when_empty() {
    // 512 + 3 frames: a full chunk and three frames of the next.
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, M2 + 3 * K, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = AtomicBitmapAllocator::new(&storage);
    // SAFETY: the map describes no real memory; nothing else manages it.
    unsafe { a.load_map(&map) }.unwrap();
    let mut out = [MaybeUninit::uninit(); 100];
    let mut seen = BTreeSet::new();
    loop {
        let n = a.allocate_4kib_batch(&mut out);
        for slot in &out[..n] {
            // SAFETY: the first `n` were written.
            let f = unsafe { slot.assume_init() };
            assert!(seen.insert(f.start_address().as_u64()), "twice");
        }
        if n < out.len() {
            break;
        }
    }
    assert_eq!(seen.len(), 515);
    assert_eq!(a.allocate_4kib_batch(&mut out), 0);
    assert_eq!(a.free_frames(), 0);
}

/// The default `allocate_frames` (one call per frame) and the `&A` impl.
#[test]
fn default_batch_and_reference_impls() {
    struct Counter(AtomicU64);
    // SAFETY: every call returns a new frame (the counter only grows).
    unsafe impl SharedFrameAllocator for Counter {
        fn allocate_frame(&self) -> Option<PhysFrame> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (n < 5).then(|| small(0x1000 * (n + 1)))
        }
    }
    let counter = Counter(AtomicU64::new(0));
    let by_ref = &counter;
    let mut out = [MaybeUninit::uninit(); 8];
    assert_eq!(by_ref.allocate_frames(&mut out), 5);
    // SAFETY: 5 were written.
    assert_eq!(unsafe { out[4].assume_init() }, small(0x5000));
    assert_eq!(SharedView::new(&counter).allocate_frame(), None);
}

/// `SharedView` is what `x86_64`'s `map_to` takes; two views of one
/// allocator never hand out the same frame.
#[test]
fn views_are_frame_allocators_for_both_sizes() {
    fn take<S: PageSize>(frames: &mut impl FrameAllocator<S>) -> PhysFrame<S> {
        frames.allocate_frame().unwrap()
    }
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 2 * M2, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = storage_for(&map);
    let a = AtomicBitmapAllocator::new(&storage);
    // SAFETY: the map describes no real memory; nothing else manages it.
    unsafe { a.load_map(&map) }.unwrap();
    let mut one = a.view();
    let mut two = one; // Copy
    let x: PhysFrame<Size4KiB> = take(&mut one);
    let y: PhysFrame<Size4KiB> = take(&mut two);
    assert_ne!(x, y);
    let h: PhysFrame<Size2MiB> = take(&mut two);
    assert_eq!(h.start_address().as_u64() % M2, 0);
    // SAFETY: the frames are unused.
    unsafe {
        one.deallocate_frame(x);
        two.deallocate_frame(y);
        FrameDeallocator::<Size2MiB>::deallocate_frame(&mut one, h);
    }
    assert_eq!(a.free_frames(), 1024);
    assert_eq!(a.rejected_deallocations(), 0);
}

// ---- property test against a sequential model ----------------------------

#[derive(Clone, Debug)]
enum Op {
    Small,
    Batch(usize),
    BatchNear(usize, usize),
    Huge,
    FreeSmall(usize),
    FreeHuge(usize),
    DoubleFree(usize),
    FreeHugeAsSmall(usize, u64),
    Foreign(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Small),
        2 => (1..100usize).prop_map(Op::Batch),
        2 => (1..100usize, any::<usize>()).prop_map(|(n, c)| Op::BatchNear(n, c)),
        2 => Just(Op::Huge),
        6 => any::<usize>().prop_map(Op::FreeSmall),
        2 => any::<usize>().prop_map(Op::FreeHuge),
        1 => any::<usize>().prop_map(Op::DoubleFree),
        1 => (any::<usize>(), 0..512u64).prop_map(|(i, k)| Op::FreeHugeAsSmall(i, k)),
        1 => (0..0x200_0000u64).prop_map(Op::Foreign),
    ]
}

/// Random firmware maps within 24 MiB, unaligned and overlapping.
fn firmware() -> impl Strategy<Value = Vec<FirmwareRegion>> {
    let kind = prop_oneof![4 => Just(Usable), 1 => Just(Reserved), 1 => Just(Kernel)];
    prop::collection::vec(
        (0x10_0000..0x180_0000u64, 0..0x80_0000u64, kind)
            .prop_map(|(b, l, k)| FirmwareRegion::new(b, l, k)),
        1..6,
    )
}

/// The model: which usable frames are free, and what was handed out how.
struct Model {
    usable: BTreeSet<u64>,
    free: BTreeSet<u64>,
    small: Vec<u64>,
    huge: Vec<u64>,
    freed: Vec<u64>,
}

impl Model {
    fn chunk_free(&self, c: u64) -> bool {
        (c..c + M2)
            .step_by(K as usize)
            .all(|f| self.free.contains(&f))
    }
    fn free_chunks(&self) -> u64 {
        let chunks: BTreeSet<u64> = self.usable.iter().map(|f| f / M2 * M2).collect();
        chunks.into_iter().filter(|&c| self.chunk_free(c)).count() as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn atomic_bitmap_matches_the_model(firmware in firmware(), ops in prop::collection::vec(op(), 0..120)) {
        let regions = normalized(&firmware);
        let map = MemoryMap::from_regions(&regions).unwrap();
        let storage = storage_for(&map);
        let a = AtomicBitmapAllocator::new(&storage);
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        unsafe { a.load_map(&map) }.unwrap();
        let usable: BTreeSet<u64> = map.usable_frames().collect();
        let mut m = Model { free: usable.clone(), usable, small: vec![], huge: vec![], freed: vec![] };
        prop_assert_eq!(a.free_frames(), m.free.len() as u64);
        prop_assert_eq!(a.usable_frames(), m.usable.len() as u64);
        prop_assert_eq!(a.free_2mib_frames(), m.free_chunks());

        for op in ops {
            match op {
                Op::Small => match a.allocate_4kib() {
                    Some(f) => {
                        let f = f.start_address().as_u64();
                        prop_assert!(m.free.remove(&f), "{:#x} was not free", f);
                        m.small.push(f);
                    }
                    None => prop_assert!(m.free.is_empty()),
                },
                Op::Batch(n) => {
                    let mut out = vec![MaybeUninit::uninit(); n];
                    let got = a.allocate_4kib_batch(&mut out);
                    prop_assert_eq!(got, n.min(m.free.len()));
                    for slot in &out[..got] {
                        // SAFETY: the first `got` were written.
                        let f = unsafe { slot.assume_init() }.start_address().as_u64();
                        prop_assert!(m.free.remove(&f), "{:#x} was not free", f);
                        m.small.push(f);
                    }
                }
                Op::BatchNear(n, mut cursor) => {
                    let mut out = vec![MaybeUninit::uninit(); n];
                    let got = a.allocate_4kib_batch_near(&mut cursor, &mut out);
                    prop_assert_eq!(got, n.min(m.free.len()));
                    for slot in &out[..got] {
                        // SAFETY: the first `got` were written.
                        let f = unsafe { slot.assume_init() }.start_address().as_u64();
                        prop_assert!(m.free.remove(&f), "{:#x} was not free", f);
                        m.small.push(f);
                    }
                }
                Op::Huge => if let Some(h) = a.allocate_2mib() {
                        let h = h.start_address().as_u64();
                        prop_assert_eq!(h % M2, 0);
                        prop_assert!(m.chunk_free(h), "chunk {:#x} was not free", h);
                        for f in (h..h + M2).step_by(K as usize) {
                            m.free.remove(&f);
                        }
                        m.huge.push(h);
                    } else {
                        prop_assert_eq!(m.free_chunks(), 0);
                    },
                Op::FreeSmall(i) if !m.small.is_empty() => {
                    let f = m.small.swap_remove(i % m.small.len());
                    // SAFETY: the frame is not in use.
                    prop_assert_eq!(unsafe { a.try_deallocate_4kib(small(f)) }, Ok(()));
                    m.free.insert(f);
                    m.freed.push(f);
                }
                Op::FreeHuge(i) if !m.huge.is_empty() => {
                    let h = m.huge.swap_remove(i % m.huge.len());
                    // SAFETY: the frame is not in use.
                    prop_assert_eq!(unsafe { a.try_deallocate_2mib(huge(h)) }, Ok(()));
                    m.free.extend((h..h + M2).step_by(K as usize));
                    m.freed.push(h);
                }
                Op::DoubleFree(i) if !m.freed.is_empty() => {
                    let f = m.freed[i % m.freed.len()];
                    if m.free.contains(&f) {
                        // SAFETY: refused (checked below), so nothing happens.
                        let r = unsafe { a.try_deallocate_4kib(small(f)) };
                        prop_assert_eq!(r, Err(DeallocError::AlreadyFree { addr: f }));
                    }
                }
                Op::FreeHugeAsSmall(i, k) if !m.huge.is_empty() => {
                    let f = m.huge[i % m.huge.len()] + k * K;
                    // SAFETY: refused (checked below), so nothing happens.
                    let r = unsafe { a.try_deallocate_4kib(small(f)) };
                    prop_assert_eq!(r, Err(DeallocError::PartOfHugeFrame { addr: f }));
                }
                Op::Foreign(addr) => {
                    let f = addr & !(K - 1);
                    if !m.usable.contains(&f) {
                        // SAFETY: refused (checked below), so nothing happens.
                        let r = unsafe { a.try_deallocate_4kib(small(f)) };
                        prop_assert!(matches!(r, Err(DeallocError::OutsideRange { .. } | DeallocError::NotUsable { .. })), "{:?}", r);
                    }
                }
                _ => {}
            }
            prop_assert_eq!(a.free_frames(), m.free.len() as u64);
        }
        prop_assert_eq!(a.free_2mib_frames(), m.free_chunks());
        for f in m.usable.iter().step_by(7) {
            prop_assert_eq!(a.is_free(*f), m.free.contains(f));
        }

        // Everything freed comes back: free all, then exactly the usable
        // frames can be allocated again, each once.
        for h in m.huge.drain(..) {
            // SAFETY: the frame is not in use.
            prop_assert_eq!(unsafe { a.try_deallocate_2mib(huge(h)) }, Ok(()));
            m.free.extend((h..h + M2).step_by(K as usize));
        }
        for f in m.small.drain(..) {
            // SAFETY: the frame is not in use.
            prop_assert_eq!(unsafe { a.try_deallocate_4kib(small(f)) }, Ok(()));
            m.free.insert(f);
        }
        prop_assert_eq!(&m.free, &m.usable);
        prop_assert_eq!(a.free_frames(), a.usable_frames());
        prop_assert_eq!(a.free_2mib_frames(), m.free_chunks());
        // Every free chunk can be had as a 2 MiB frame (the hints were kept).
        let mut chunks = 0;
        while a.allocate_2mib().is_some() {
            chunks += 1;
        }
        prop_assert_eq!(chunks, m.free_chunks());
    }
}
