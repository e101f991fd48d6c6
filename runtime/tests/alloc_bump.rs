//! The tagged bump allocator: unit tests and a property test against a model.

use std::collections::BTreeMap;

use framealloc::alloc::{
    BumpAllocator, BumpError, FRAME_SIZE, FirmwareRegion, MapError, MemoryMap, MemoryRegion,
    NormalizeOptions, RegionKind, RegionKind::*, normalize,
};
use framealloc::{FrameAllocator, PageSize, PhysFrame, Size2MiB, Size4KiB, TaggedFrameAllocator};
use proptest::prelude::*;

const K: u64 = FRAME_SIZE;
const M2: u64 = Size2MiB::SIZE;

fn normalized(firmware: &[FirmwareRegion]) -> Vec<MemoryRegion> {
    let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
    let (map, _) = normalize(firmware, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

#[test]
fn allocates_upward_and_skips_non_usable_regions() {
    let regions = normalized(&[
        FirmwareRegion::new(0x1000, 2 * K, Usable),
        FirmwareRegion::new(0x3000, K, Reserved),
        FirmwareRegion::new(0x4000, K, Usable),
    ]);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot = unsafe { BumpAllocator::new(map, &mut runs) };
    let got: Vec<u64> = std::iter::from_fn(|| boot.allocate_tagged(Kernel))
        .map(|f| f.start_address().as_u64())
        .collect();
    assert_eq!(got, [0x1000, 0x2000, 0x4000]);
    assert_eq!(
        boot.try_allocate::<Size4KiB>(Kernel),
        Err(BumpError::OutOfFrames)
    );
}

#[test]
fn usable_is_not_a_purpose() {
    let regions = normalized(&[FirmwareRegion::new(0x1000, 2 * K, Usable)]);
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    assert_eq!(
        boot.try_allocate::<Size4KiB>(Usable),
        Err(BumpError::UsableIsNoPurpose)
    );
    assert!(boot.tagged(Usable).allocate_frame().is_none());
    // Nothing was consumed.
    assert_eq!(
        boot.allocate_tagged(Kernel)
            .unwrap()
            .start_address()
            .as_u64(),
        0x1000
    );
}

#[test]
fn a_full_run_log_fails_without_consuming_a_frame() {
    let regions = normalized(&[FirmwareRegion::new(0x1000, 8 * K, Usable)]);
    let mut runs = [MemoryRegion::default(); 1];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    assert!(boot.allocate_tagged(Kernel).is_some());
    assert!(
        boot.allocate_tagged(Kernel).is_some(),
        "same purpose extends the run"
    );
    assert_eq!(
        boot.try_allocate::<Size4KiB>(PageTable),
        Err(BumpError::RunLogFull)
    );
    assert_eq!(
        boot.allocate_tagged(Kernel)
            .unwrap()
            .start_address()
            .as_u64(),
        0x3000
    );
}

#[test]
fn two_mib_frames_are_aligned_and_skipped_frames_stay_usable() {
    let regions = normalized(&[FirmwareRegion::new(0x10_0000, 0x50_0000, Usable)]);
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    let small = boot.allocate_tagged(Kernel).unwrap();
    let huge: PhysFrame<Size2MiB> = boot.try_allocate(Custom(1)).unwrap();
    assert_eq!(small.start_address().as_u64(), 0x10_0000);
    assert_eq!(huge.start_address().as_u64(), 0x20_0000);
    let mut out = [MemoryRegion::default(); 8];
    let hand_off = boot.hand_off(&mut out).unwrap();
    let got: Vec<_> = hand_off
        .regions()
        .iter()
        .map(|r| (r.start, r.end, r.kind))
        .collect();
    assert_eq!(
        got,
        [
            (0x10_0000, 0x10_1000, Kernel),
            (0x10_1000, 0x20_0000, Usable),
            (0x20_0000, 0x40_0000, Custom(1)),
            (0x40_0000, 0x60_0000, Usable),
        ]
    );
    assert_eq!(boot.frames_used_by(Custom(1)), 512);
}

#[test]
fn hand_off_merges_runs_with_equal_neighbours() {
    let regions = normalized(&[
        FirmwareRegion::new(0x1000, 4 * K, Kernel),
        FirmwareRegion::new(0x5000, 4 * K, Usable),
    ]);
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    boot.allocate_tagged(Kernel).unwrap();
    let mut out = [MemoryRegion::default(); 4];
    let map = boot.hand_off(&mut out).unwrap();
    assert_eq!(
        map.regions(),
        [
            MemoryRegion::new(0x1000, 0x6000, Kernel),
            MemoryRegion::new(0x6000, 0x9000, Usable)
        ]
    );
    let mut small = [MemoryRegion::default(); 1];
    assert_eq!(
        boot.hand_off(&mut small),
        Err(MapError::StorageTooSmall {
            needed: 2,
            available: 1
        })
    );
}

// ---- property test --------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Small(RegionKind),
    Huge(RegionKind),
}

fn purpose() -> impl Strategy<Value = RegionKind> {
    prop_oneof![
        Just(Kernel),
        Just(PageTable),
        Just(Bootloader),
        (0u32..2).prop_map(Custom)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![8 => purpose().prop_map(Op::Small), 1 => purpose().prop_map(Op::Huge)]
}

/// `regions` with some usable regions cut in two adjacent usable regions
/// (legal through `MemoryMap::from_regions`), at frames chosen by `splits`.
fn split_usable(regions: &[MemoryRegion], splits: &[u64]) -> Vec<MemoryRegion> {
    let mut out = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let choice = splits[i % splits.len()];
        if r.kind == Usable && r.frames() >= 2 && choice.is_multiple_of(2) {
            let at = r.start + (choice / 2 % (r.frames() - 1) + 1) * K;
            out.push(MemoryRegion::new(r.start, at, Usable));
            out.push(MemoryRegion::new(at, r.end, Usable));
        } else {
            out.push(*r);
        }
    }
    out
}

/// Random firmware maps within 16 MiB, unaligned and overlapping.
fn firmware() -> impl Strategy<Value = Vec<FirmwareRegion>> {
    let kind = prop_oneof![4 => Just(Usable), 1 => Just(Reserved), 1 => Just(AcpiNvs)];
    prop::collection::vec(
        (0..0x100_0000u64, 0..0x40_0000u64, kind)
            .prop_map(|(b, l, k)| FirmwareRegion::new(b, l, k)),
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bump_matches_the_model(
        firmware in firmware(),
        splits in prop::collection::vec(any::<u64>(), 8),
        ops in prop::collection::vec(op(), 0..400),
    ) {
        let regions = split_usable(&normalized(&firmware), &splits);
        let map = MemoryMap::from_regions(&regions).unwrap();
        let mut runs = vec![MemoryRegion::default(); 2 * ops.len()];
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        let mut boot = unsafe { BumpAllocator::new(map, &mut runs) };
        // Model: every allocated 4 KiB frame and its purpose.
        let mut used = BTreeMap::<u64, RegionKind>::new();
        // Each size's frames come in address order.
        let (mut last_small, mut last_huge) = (0, 0);
        for op in &ops {
            let (purpose, got) = match *op {
                Op::Small(p) => (p, boot.try_allocate::<Size4KiB>(p).map(|f| (f.start_address().as_u64(), K))),
                Op::Huge(p) => (p, boot.try_allocate::<Size2MiB>(p).map(|f| (f.start_address().as_u64(), M2))),
            };
            match got {
                Ok((start, size)) => {
                    prop_assert_eq!(start % size, 0, "aligned");
                    let last = if size == K { &mut last_small } else { &mut last_huge };
                    prop_assert!(start >= *last, "bump order within a size");
                    *last = start + size;
                    for f in (start..start + size).step_by(K as usize) {
                        prop_assert_eq!(map.kind_at(f), Some(Usable), "frame {:#x} is usable", f);
                        prop_assert!(used.insert(f, purpose).is_none(), "frame {:#x} handed out twice", f);
                    }
                }
                Err(BumpError::OutOfFrames) => {
                    if matches!(op, Op::Small(_)) {
                        // Nothing stranded, whatever 2 MiB requests came
                        // before: every usable frame is used.
                        prop_assert_eq!(used.len() as u64, map.bytes_of(Usable) / K);
                    }
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }
        // The hand-off map: purposes where frames were used, usable elsewhere,
        // non-usable regions unchanged.
        let mut out = vec![MemoryRegion::default(); boot.hand_off_len()];
        let hand_off = boot.hand_off(&mut out).unwrap();
        for pair in hand_off.regions().windows(2) {
            prop_assert!(!(pair[0].end == pair[1].start && pair[0].kind == pair[1].kind), "merged");
        }
        for r in map.regions() {
            for f in (r.start..r.end).step_by(K as usize) {
                let want = if r.kind == Usable { used.get(&f).copied().unwrap_or(Usable) } else { r.kind };
                prop_assert_eq!(hand_off.kind_at(f), Some(want), "frame {:#x}", f);
            }
        }
        let total = |m: &MemoryMap| m.regions().iter().map(MemoryRegion::frames).sum::<u64>();
        prop_assert_eq!(total(&hand_off), total(&map));
        for p in [Kernel, PageTable, Bootloader, Custom(0), Custom(1)] {
            prop_assert_eq!(boot.frames_used_by(p), used.values().filter(|&&q| q == p).count() as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Bootloader to kernel: the bitmap built from the hand-off map hands out
    /// exactly the usable frames the bump allocator did not use.
    #[test]
    fn hand_off_gives_the_kernel_exactly_the_unused_frames(
        firmware in firmware(),
        ops in prop::collection::vec(op(), 0..100),
    ) {
        let regions = normalized(&firmware);
        let map = MemoryMap::from_regions(&regions).unwrap();
        let mut runs = vec![MemoryRegion::default(); 2 * ops.len()];
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        let mut boot = unsafe { BumpAllocator::new(map, &mut runs) };
        let mut used = std::collections::BTreeSet::new();
        for op in &ops {
            let got = match *op {
                Op::Small(p) => boot.try_allocate::<Size4KiB>(p).map(|f| (f.start_address().as_u64(), K)),
                Op::Huge(p) => boot.try_allocate::<Size2MiB>(p).map(|f| (f.start_address().as_u64(), M2)),
            };
            if let Ok((start, size)) = got {
                used.extend((start..start + size).step_by(K as usize));
            }
        }
        let mut out = vec![MemoryRegion::default(); boot.hand_off_len()];
        let hand_off = boot.hand_off(&mut out).unwrap();
        let mut storage = vec![0u64; framealloc::BitmapAllocator::words_needed(&hand_off)];
        // SAFETY: the hand-off map describes no real memory: its frames are numbers
        // this test never accesses, and `boot` allocates nothing after the hand-off.
        let mut kernel = unsafe { framealloc::BitmapAllocator::from_map(&mut storage, &hand_off) }.unwrap();
        let mut given = std::collections::BTreeSet::new();
        while let Some(f) = kernel.allocate_4kib() {
            prop_assert!(given.insert(f.start_address().as_u64()));
        }
        let unused: std::collections::BTreeSet<u64> =
            map.usable_frames().filter(|f| !used.contains(f)).collect();
        prop_assert_eq!(given, unused);
    }
}

#[test]
fn a_run_across_adjacent_usable_regions_of_an_unmerged_map() {
    // `from_regions` accepts touching regions of one kind; a run may span them.
    let regions = [
        MemoryRegion::new(0x1000, 0x3000, Usable),
        MemoryRegion::new(0x3000, 0x5000, Usable),
    ];
    let mut runs = [MemoryRegion::default(); 2];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    for _ in 0..3 {
        boot.allocate_tagged(Kernel).unwrap();
    }
    assert!(boot.runs().eq([MemoryRegion::new(0x1000, 0x4000, Kernel)]));
    let mut out = vec![MemoryRegion::default(); boot.hand_off_len()];
    let map = boot.hand_off(&mut out).unwrap();
    assert_eq!(
        map.regions(),
        [
            MemoryRegion::new(0x1000, 0x4000, Kernel),
            MemoryRegion::new(0x4000, 0x5000, Usable)
        ]
    );
}

#[test]
fn a_failed_2_mib_request_leaves_the_4_kib_frames_available() {
    let regions = normalized(&[FirmwareRegion::new(0x10_0000, 0x8_0000, Usable)]);
    let mut runs = [MemoryRegion::default(); 2];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    assert_eq!(
        boot.try_allocate::<Size2MiB>(Kernel),
        Err(BumpError::OutOfFrames)
    );
    let frames = std::iter::from_fn(|| boot.allocate_tagged(Kernel)).count();
    assert_eq!(frames, 0x80);
}

// ---- mixed sizes: nothing stranded (#18.1, #12.10), neighbours (#18.2) -----

/// The E820 map QEMU gives a guest with 1150 MiB of RAM: 294,270 usable
/// frames once normalised (frame 0 withheld).
fn qemu_like() -> Vec<MemoryRegion> {
    let ram_end = 1150 << 20;
    normalized(&[
        FirmwareRegion::new(0, 0x9fc00, Usable),
        FirmwareRegion::new(0x9fc00, 0x400, Reserved),
        FirmwareRegion::new(0xf0000, 0x10000, Reserved),
        FirmwareRegion::new(0x10_0000, ram_end - 0x2_0000 - 0x10_0000, Usable),
        FirmwareRegion::new(ram_end - 0x2_0000, 0x2_0000, Reserved),
        FirmwareRegion::new(0xfeff_c000, 0x4000, Reserved),
        FirmwareRegion::new(0xfffc_0000, 0x4_0000, Reserved),
    ])
}

#[test]
fn mixed_sizes_strand_at_most_a_thousandth_of_a_qemu_like_map() {
    let regions = qemu_like();
    let map = MemoryMap::from_regions(&regions).unwrap();
    let usable = map.bytes_of(Usable) / K;
    assert_eq!(usable, 294_270);
    // Every `every`-th request is a 2 MiB one (0: none), until a 4 KiB
    // request fails.
    for (pattern, every) in [
        ("4 KiB only", 0u64),
        ("alternating", 2),
        ("10% 2 MiB", 10),
        ("1% 2 MiB", 100),
    ] {
        let mut runs = vec![MemoryRegion::default(); 1 << 12];
        // SAFETY: the map describes no real memory: its frames are numbers this
        // test never accesses, and no other allocator manages them.
        let mut boot = unsafe { BumpAllocator::new(map, &mut runs) };
        let (mut small, mut huge) = (0u64, 0u64);
        for i in 1.. {
            if every != 0 && i % every == 0 {
                match boot.try_allocate::<Size2MiB>(Custom(1)) {
                    Ok(_) => huge += 1,
                    Err(e) => assert_eq!(e, BumpError::OutOfFrames, "{pattern}"),
                }
            } else {
                match boot.try_allocate::<Size4KiB>(Kernel) {
                    Ok(_) => small += 1,
                    Err(e) => {
                        assert_eq!(e, BumpError::OutOfFrames, "{pattern}");
                        break;
                    }
                }
            }
        }
        let mut out = vec![MemoryRegion::default(); boot.hand_off_len()];
        let hand_off = boot.hand_off(&mut out).unwrap();
        let stranded = hand_off.bytes_of(Usable) / K;
        assert!(
            stranded * 1000 <= usable,
            "{pattern}: {stranded} of {usable} frames stranded ({} per mille)",
            stranded * 1000 / usable
        );
        // The hand-off map marks every frame handed out with its purpose.
        assert_eq!(hand_off.bytes_of(Kernel), small * K, "{pattern}");
        assert_eq!(hand_off.bytes_of(Custom(1)), huge * M2, "{pattern}");
        assert_eq!(stranded + small + 512 * huge, usable, "{pattern}");
    }
}

#[test]
fn a_2_mib_request_past_the_end_of_a_region_leaves_its_rest_to_4_kib_requests() {
    // Region A has no 2 MiB frame; the request takes one from region B.
    let regions = normalized(&[
        FirmwareRegion::new(0x1000, 0xf_f000, Usable),
        FirmwareRegion::new(0x20_0000, 0x20_0000, Usable),
    ]);
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    assert_eq!(
        boot.allocate_tagged(Kernel)
            .unwrap()
            .start_address()
            .as_u64(),
        0x1000
    );
    let huge: PhysFrame<Size2MiB> = boot.try_allocate(PageTable).unwrap();
    assert_eq!(huge.start_address().as_u64(), 0x20_0000);
    // The rest of region A is not abandoned.
    let next: Vec<u64> = std::iter::from_fn(|| boot.allocate_tagged(Kernel))
        .map(|f| f.start_address().as_u64())
        .collect();
    assert_eq!(next.len(), 0xfe);
    assert_eq!(next[0], 0x2000);
    assert_eq!(next[0xfd], 0xf_f000);
}

#[test]
fn a_2_mib_frame_that_skips_an_alignment_gap_leaves_the_gap_to_4_kib_requests() {
    let regions = normalized(&[FirmwareRegion::new(0x10_0000, 0x40_0000, Usable)]);
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    let huge: PhysFrame<Size2MiB> = boot.try_allocate(PageTable).unwrap();
    assert_eq!(huge.start_address().as_u64(), 0x20_0000);
    let small: Vec<u64> = std::iter::from_fn(|| boot.allocate_tagged(Kernel))
        .map(|f| f.start_address().as_u64())
        .collect();
    // The gap below the 2 MiB frame, then the rest above it.
    assert_eq!(small.len(), 256 + 256);
    assert_eq!(
        (small[0], small[255], small[256]),
        (0x10_0000, 0x1f_f000, 0x40_0000)
    );
    let mut out = [MemoryRegion::default(); 8];
    assert_eq!(
        boot.hand_off(&mut out).unwrap().regions(),
        [
            MemoryRegion::new(0x10_0000, 0x20_0000, Kernel),
            MemoryRegion::new(0x20_0000, 0x40_0000, PageTable),
            MemoryRegion::new(0x40_0000, 0x50_0000, Kernel),
        ]
    );
}

#[test]
fn a_2_mib_frame_spanning_two_adjacent_usable_regions_is_found() {
    let regions = [
        MemoryRegion::new(0x10_0000, 0x30_0000, Usable),
        MemoryRegion::new(0x30_0000, 0x50_0000, Usable),
    ];
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    let huge: PhysFrame<Size2MiB> = boot.try_allocate(Kernel).unwrap();
    assert_eq!(huge.start_address().as_u64(), 0x20_0000);
    let mut out = [MemoryRegion::default(); 8];
    assert_eq!(
        boot.hand_off(&mut out).unwrap().regions(),
        [
            MemoryRegion::new(0x10_0000, 0x20_0000, Usable),
            MemoryRegion::new(0x20_0000, 0x40_0000, Kernel),
            MemoryRegion::new(0x40_0000, 0x50_0000, Usable),
        ]
    );
}

#[test]
fn one_gib_and_2_mib_frames_come_from_the_large_cursor_in_order() {
    use framealloc::Size1GiB;
    let regions = normalized(&[FirmwareRegion::new(0x10_0000, 0xc000_0000, Usable)]);
    let mut runs = [MemoryRegion::default(); 8];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    let two: PhysFrame<Size2MiB> = boot.try_allocate(PageTable).unwrap();
    let one: PhysFrame<Size1GiB> = boot.try_allocate(Custom(3)).unwrap();
    let two_after: PhysFrame<Size2MiB> = boot.try_allocate(PageTable).unwrap();
    assert_eq!(two.start_address().as_u64(), 0x20_0000);
    assert_eq!(one.start_address().as_u64(), 0x4000_0000);
    // Large frames only go up: the 2 MiB frames between are left to 4 KiB requests.
    assert_eq!(two_after.start_address().as_u64(), 0x8000_0000);
    let small = boot.allocate_tagged(Kernel).unwrap();
    assert_eq!(small.start_address().as_u64(), 0x10_0000);
    let runs: Vec<_> = boot.runs().map(|r| (r.start, r.end, r.kind)).collect();
    assert_eq!(
        runs,
        [
            (0x10_0000, 0x10_1000, Kernel),
            (0x20_0000, 0x40_0000, PageTable),
            (0x4000_0000, 0x8000_0000, Custom(3)),
            (0x8000_0000, 0x8020_0000, PageTable),
        ]
    );
    assert_eq!(boot.frames_used_by(PageTable), 1024);
}

#[test]
fn small_and_large_runs_share_the_run_log() {
    let regions = normalized(&[FirmwareRegion::new(0x10_0000, 0x50_0000, Usable)]);
    let mut runs = [MemoryRegion::default(); 2];
    // SAFETY: the map describes no real memory: its frames are numbers this
    // test never accesses, and no other allocator manages them.
    let mut boot =
        unsafe { BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs) };
    boot.allocate_tagged(Kernel).unwrap();
    let huge: PhysFrame<Size2MiB> = boot.try_allocate(PageTable).unwrap();
    assert_eq!(huge.start_address().as_u64(), 0x20_0000);
    // Both slots taken: a new run of either size is refused, unchanged…
    assert_eq!(
        boot.try_allocate::<Size4KiB>(PageTable),
        Err(BumpError::RunLogFull)
    );
    assert_eq!(
        boot.try_allocate::<Size2MiB>(Kernel),
        Err(BumpError::RunLogFull)
    );
    // …while runs that grow still do.
    let next: PhysFrame<Size2MiB> = boot.try_allocate(PageTable).unwrap();
    assert_eq!(next.start_address().as_u64(), 0x40_0000);
    assert_eq!(
        boot.allocate_tagged(Kernel)
            .unwrap()
            .start_address()
            .as_u64(),
        0x10_1000
    );
    assert_eq!(boot.runs().len(), 2);
}
