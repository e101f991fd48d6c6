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
    let mut boot = BumpAllocator::new(map, &mut runs);
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
    let mut boot = BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs);
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
    let mut boot = BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs);
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
    let mut boot = BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs);
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
    let mut boot = BumpAllocator::new(MemoryMap::from_regions(&regions).unwrap(), &mut runs);
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
    fn bump_matches_the_model(firmware in firmware(), ops in prop::collection::vec(op(), 0..200)) {
        let regions = normalized(&firmware);
        let map = MemoryMap::from_regions(&regions).unwrap();
        let mut runs = vec![MemoryRegion::default(); ops.len()];
        let mut boot = BumpAllocator::new(map, &mut runs);
        // Model: every allocated 4 KiB frame and its purpose.
        let mut used = BTreeMap::<u64, RegionKind>::new();
        let mut any_huge = false;
        let mut last_end = 0;
        for op in &ops {
            let (purpose, got) = match *op {
                Op::Small(p) => (p, boot.try_allocate::<Size4KiB>(p).map(|f| (f.start_address().as_u64(), K))),
                Op::Huge(p) => {
                    any_huge = true;
                    (p, boot.try_allocate::<Size2MiB>(p).map(|f| (f.start_address().as_u64(), M2)))
                }
            };
            match got {
                Ok((start, size)) => {
                    prop_assert_eq!(start % size, 0, "aligned");
                    prop_assert!(start >= last_end, "bump order");
                    last_end = start + size;
                    for f in (start..start + size).step_by(K as usize) {
                        prop_assert_eq!(map.kind_at(f), Some(Usable), "frame {:#x} is usable", f);
                        prop_assert!(used.insert(f, purpose).is_none(), "frame {:#x} handed out twice", f);
                    }
                }
                Err(BumpError::OutOfFrames) => {
                    if matches!(op, Op::Small(_)) && !any_huge {
                        // Nothing skipped: every usable frame is used.
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
