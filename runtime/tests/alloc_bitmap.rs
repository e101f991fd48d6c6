//! The bitmap allocator: unit tests and a property test against a model.

use std::collections::BTreeSet;

use framealloc::alloc::{
    BitmapAllocator, BitmapError, BumpAllocator, DeallocError, FRAME_SIZE, FirmwareRegion,
    MemoryMap, MemoryRegion, NormalizeOptions, RegionKind::*, normalize,
};
use framealloc::x86_64::PhysAddr;
use framealloc::{
    FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size2MiB, Size4KiB, TaggedFrameAllocator,
};
use proptest::prelude::*;

const K: u64 = FRAME_SIZE;
const M2: u64 = Size2MiB::SIZE;

fn normalized(firmware: &[FirmwareRegion]) -> Vec<MemoryRegion> {
    let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
    let (map, _) = normalize(firmware, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

fn small(addr: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

fn huge(addr: u64) -> PhysFrame<Size2MiB> {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

#[test]
fn storage_too_small_is_an_error() {
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 0x20_0000, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let needed = BitmapAllocator::words_needed(&map);
    let mut storage = vec![0u64; needed - 1];
    assert_eq!(
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        unsafe { BitmapAllocator::from_map(&mut storage, &map).err() },
        Some(BitmapError::StorageTooSmall {
            needed,
            available: needed - 1
        })
    );
}

#[test]
fn errors_for_foreign_frames_double_frees_and_mixed_sizes() {
    let regions = normalized(&[
        FirmwareRegion::new(0x20_0000, 0x40_0000, Usable),
        FirmwareRegion::new(0x30_0000, K, Reserved),
    ]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut a = unsafe { BitmapAllocator::from_map(&mut storage, &map) }.unwrap();
    assert_eq!(a.free_frames(), 1023);
    assert_eq!(
        a.free_2mib_frames(),
        1,
        "the chunk with the reserved frame is not free"
    );
    // SAFETY: every frame freed here is unused; the refused ones are the
    // point of the test.
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
            a.try_deallocate_4kib(small(0x20_0000)),
            Err(DeallocError::AlreadyFree { addr: 0x20_0000 })
        );
        assert_eq!(
            a.try_deallocate_2mib(huge(0x20_0000)),
            Err(DeallocError::NotUsable { addr: 0x20_0000 })
        );
        assert_eq!(
            a.try_deallocate_2mib(huge(0x40_0000)),
            Err(DeallocError::AlreadyFree { addr: 0x40_0000 })
        );

        let h = a.allocate_2mib().unwrap();
        assert_eq!(h.start_address().as_u64(), 0x40_0000);
        assert_eq!(
            a.try_deallocate_4kib(small(0x40_1000)),
            Err(DeallocError::PartOfHugeFrame { addr: 0x40_1000 })
        );
        a.try_deallocate_2mib(h).unwrap();
        assert_eq!(
            a.try_deallocate_2mib(h),
            Err(DeallocError::AlreadyFree { addr: 0x40_0000 })
        );

        // A chunk holding a reserved frame is foreign as a 2 MiB frame.
        let s = a.allocate_4kib().unwrap();
        assert_eq!(s.start_address().as_u64(), 0x20_0000);
        assert_eq!(
            a.try_deallocate_2mib(huge(0x20_0000)),
            Err(DeallocError::NotUsable { addr: 0x20_0000 })
        );
    }
    assert_eq!(a.free_frames(), 1022);

    // 4 KiB pieces of a whole usable chunk are not a 2 MiB frame.
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 0x20_0000, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut a = unsafe { BitmapAllocator::from_map(&mut storage, &map) }.unwrap();
    a.allocate_4kib().unwrap();
    // SAFETY: refused, so nothing is freed.
    let r = unsafe { a.try_deallocate_2mib(huge(0x20_0000)) };
    assert_eq!(
        r,
        Err(DeallocError::NotAllocatedAsHugeFrame { addr: 0x20_0000 })
    );
    assert_eq!(a.free_frames(), 511);
}

#[test]
fn trait_deallocation_refuses_bad_input_without_changing_state() {
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 0x20_0000, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut a = unsafe { BitmapAllocator::from_map(&mut storage, &map) }.unwrap();
    let f: PhysFrame<Size4KiB> = a.allocate_frame().unwrap();
    unsafe {
        // SAFETY: `f` is unused; the second call is a deliberate double free.
        a.deallocate_frame(f);
        a.deallocate_frame(f);
        // SAFETY: a foreign frame, refused.
        FrameDeallocator::<Size2MiB>::deallocate_frame(&mut a, huge(0x80_0000));
    }
    assert_eq!(a.rejected_deallocations(), 2);
    assert_eq!(
        a.last_rejected(),
        Some(DeallocError::OutsideRange { addr: 0x80_0000 })
    );
    assert_eq!(a.free_frames(), 512);
    assert_eq!(a.free_2mib_frames(), 1);
    let all: Vec<u64> = std::iter::from_fn(|| a.allocate_4kib())
        .map(|f| f.start_address().as_u64())
        .collect();
    assert_eq!(all.len(), 512);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 512);
}

#[test]
fn const_construction_and_late_loading() {
    const fn empty(storage: &mut [u64]) -> BitmapAllocator<'_> {
        BitmapAllocator::new(storage)
    }
    let regions = normalized(&[FirmwareRegion::new(0x20_0000, 0x20_0000, Usable)]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let mut storage = [0u64; 64];
    let mut a = empty(&mut storage);
    assert!(FrameAllocator::<Size4KiB>::allocate_frame(&mut a).is_none());
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses; `a` had handed out nothing it could forget.
    unsafe { a.load_map(&map) }.unwrap();
    assert_eq!(a.free_frames(), 512);
    assert!(FrameAllocator::<Size2MiB>::allocate_frame(&mut a).is_some());
}

#[test]
fn built_from_a_bump_allocators_hand_off_map() {
    let regions = normalized(&[FirmwareRegion::new(0x10_0000, 0x30_0000, Usable)]);
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    let used: Vec<_> = (0..3)
        .map(|_| boot.allocate_tagged(PageTable).unwrap())
        .collect();
    let mut out = [MemoryRegion::default(); 4];
    let hand_off = boot.hand_off(&mut out).unwrap();
    let mut storage = vec![0u64; BitmapAllocator::words_needed(&hand_off)];
    // SAFETY: the hand-off map describes no real memory: its frames are numbers
    // this test never accesses, and `boot` allocates nothing after the hand-off.
    let mut kernel = unsafe { BitmapAllocator::from_map(&mut storage, &hand_off) }.unwrap();
    assert_eq!(kernel.free_frames(), 0x300 - 3);
    for f in &used {
        assert!(!kernel.is_free(f.start_address().as_u64()));
        // SAFETY: refused: the frame is a page table per the hand-off map.
        let refused = unsafe { kernel.try_deallocate_4kib(*f) };
        assert_eq!(
            refused,
            Err(DeallocError::NotUsable {
                addr: f.start_address().as_u64()
            })
        );
    }
}

// ---- property test --------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Small,
    Huge,
    FreeSmall(usize),
    FreeHuge(usize),
    DoubleFree(usize),
    Foreign(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Small),
        2 => Just(Op::Huge),
        5 => any::<usize>().prop_map(Op::FreeSmall),
        2 => any::<usize>().prop_map(Op::FreeHuge),
        1 => any::<usize>().prop_map(Op::DoubleFree),
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

/// Model: free frames; frames handed out as 4 KiB and as 2 MiB.
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
    fn bitmap_matches_the_model(firmware in firmware(), ops in prop::collection::vec(op(), 0..120)) {
        let regions = normalized(&firmware);
        let map = MemoryMap::from_regions(&regions).unwrap();
        let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        let mut a = unsafe { BitmapAllocator::from_map(&mut storage, &map) }.unwrap();
        let usable: BTreeSet<u64> = map.usable_frames().collect();
        let mut m = Model { free: usable.clone(), usable, small: vec![], huge: vec![], freed: vec![] };
        prop_assert_eq!(a.free_frames(), m.free.len() as u64);
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
        let mut again = BTreeSet::new();
        while let Some(f) = a.allocate_4kib() {
            prop_assert!(again.insert(f.start_address().as_u64()), "twice");
        }
        prop_assert_eq!(again, m.usable);
    }
}

#[test]
fn storage_for_common_spans_is_two_bits_per_frame_plus_about_one_percent() {
    const GIB: u64 = 1 << 30;
    // Usable in a constant.
    const STATIC_WORDS: usize = BitmapAllocator::words_for_span(4 * GIB);
    assert_eq!(STATIC_WORDS, 33_088);
    // The figures of the `BitmapAllocator` docs.
    for (span, words) in [
        (128 << 20, 1034),
        (GIB, 8272),
        (4 * GIB, 33_088),
        (64 * GIB, 529_408),
        (1024 * GIB, 8_470_528),
    ] {
        assert_eq!(BitmapAllocator::words_for_span(span), words, "{span:#x}");
        // Two bits per 4 KiB frame, and the summaries at most 1% more.
        let bitmaps = 2 * span / K / 64;
        assert!((words as u64 - bitmaps) * 100 <= bitmaps, "{span:#x}");
        // The same as a map of one usable region of that span needs.
        let regions = [MemoryRegion::new(0, span, Usable)];
        let map = MemoryMap::from_regions(&regions).unwrap();
        assert_eq!(BitmapAllocator::words_needed(&map), words);
    }
    // Rounded up to whole 2 MiB chunks.
    assert_eq!(
        BitmapAllocator::words_for_span(K),
        BitmapAllocator::words_for_span(M2)
    );
    assert_eq!(BitmapAllocator::words_for_span(0), 0);
}
