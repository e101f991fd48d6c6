//! Memory-map normalisation: one named test per rule, and a property test
//! against a frame-by-frame model on random messy maps.

use framealloc::alloc::{
    FRAME_SIZE, FirmwareRegion, MapError, MemoryMap, MemoryRegion, NormalizeOptions,
    NormalizeReport, PHYS_LIMIT, RegionKind, RegionKind::*, normalize,
};
use proptest::prelude::*;

const K: u64 = FRAME_SIZE;

fn run(
    firmware: &[FirmwareRegion],
    options: NormalizeOptions,
) -> (Vec<MemoryRegion>, NormalizeReport) {
    let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
    let (map, report) = normalize(firmware, &mut storage, options).expect("4n + 2 regions suffice");
    (map.regions().to_vec(), report)
}

fn regions(firmware: &[FirmwareRegion]) -> Vec<(u64, u64, RegionKind)> {
    let options = NormalizeOptions::new().allow_frame_zero(true);
    run(firmware, options)
        .0
        .iter()
        .map(|r| (r.start, r.end, r.kind))
        .collect()
}

fn fw(base: u64, len: u64, kind: RegionKind) -> FirmwareRegion {
    FirmwareRegion::new(base, len, kind)
}

#[test]
fn rule_limit_drops_empty_entries() {
    let (out, report) = run(
        &[fw(0x1000, 0, Reserved), fw(0x2000, K, Usable)],
        NormalizeOptions::new(),
    );
    assert_eq!(out, [MemoryRegion::new(0x2000, 0x3000, Usable)]);
    assert_eq!(report.dropped_empty, 1);
}

#[test]
fn rule_limit_drops_entries_beyond_2_pow_52() {
    let (out, report) = run(
        &[
            fw(PHYS_LIMIT, 16 * K, Usable),
            fw(u64::MAX - 5, 100, Reserved),
            fw(K, K, Usable),
        ],
        NormalizeOptions::new(),
    );
    assert_eq!(out, [MemoryRegion::new(K, 2 * K, Usable)]);
    assert_eq!(report.dropped_beyond_limit, 2);
}

#[test]
fn rule_limit_clips_entries_at_2_pow_52_including_overflowing_ones() {
    let below = PHYS_LIMIT - 2 * K;
    let r = regions(&[
        fw(below, 8 * K, Usable),
        fw(below - 4 * K, u64::MAX, Reserved),
    ]);
    assert_eq!(r, [(below - 4 * K, PHYS_LIMIT, Reserved)]);
    let (_, report) = run(
        &[
            fw(below, 8 * K, Usable),
            fw(below - 4 * K, u64::MAX, Reserved),
        ],
        NormalizeOptions::new(),
    );
    assert_eq!(report.clipped_at_limit, 2);
    let r = regions(&[fw(below, 8 * K, Usable)]);
    assert_eq!(r, [(below, PHYS_LIMIT, Usable)]);
}

#[test]
fn rule_non_usable_grows_outward() {
    let (out, report) = run(&[fw(0x10_0800, 0x100, Reserved)], NormalizeOptions::new());
    assert_eq!(out, [MemoryRegion::new(0x10_0000, 0x10_1000, Reserved)]);
    assert_eq!(report.non_usable_widened, 1);
}

#[test]
fn rule_non_usable_claims_every_frame_it_touches_from_usable() {
    let r = regions(&[fw(0x10_0000, 0x10_0000, Usable), fw(0x15_0fff, 2, AcpiNvs)]);
    assert_eq!(
        r,
        [
            (0x10_0000, 0x15_0000, Usable),
            (0x15_0000, 0x15_2000, AcpiNvs),
            (0x15_2000, 0x20_0000, Usable),
        ]
    );
}

#[test]
fn rule_usable_shrinks_inward() {
    let (out, report) = run(&[fw(0x10_0010, 0x3000, Usable)], NormalizeOptions::new());
    assert_eq!(out, [MemoryRegion::new(0x10_1000, 0x10_3000, Usable)]);
    assert_eq!(report.usable_trimmed, 1);
}

#[test]
fn rule_usable_smaller_than_a_frame_vanishes() {
    let (out, _) = run(
        &[fw(0x10_0010, 0xfff, Usable), fw(0x20_0800, 0x1000, Usable)],
        NormalizeOptions::new(),
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn rule_usable_entries_may_cover_a_frame_together() {
    // Neither entry covers frame 0x11000 alone; together they do.
    let r = regions(&[fw(0x10_000, 0x1800, Usable), fw(0x11_800, 0x1800, Usable)]);
    assert_eq!(r, [(0x10_000, 0x13_000, Usable)]);
}

#[test]
fn rule_overlap_resolves_to_the_more_restrictive_kind() {
    let r = regions(&[
        fw(0, 0x10_000, Kernel),
        fw(0x4000, 0x4000, Reserved),
        fw(0x6000, 0x1000, AcpiReclaimable),
    ]);
    assert_eq!(
        r,
        [
            (0, 0x4000, Kernel),
            (0x4000, 0x8000, Reserved),
            (0x8000, 0x10_000, Kernel)
        ]
    );
    let (_, report) = run(
        &[
            fw(0, 0x10_000, Kernel),
            fw(0x4000, 0x4000, Reserved),
            fw(0x6000, 0x1000, AcpiReclaimable),
        ],
        NormalizeOptions::new(),
    );
    assert_eq!(report.overlapping_pairs, 3);
}

#[test]
fn rule_overlap_order_is_the_documented_one() {
    let order = [
        Usable,
        AcpiReclaimable,
        Custom(0),
        Custom(7),
        Bootloader,
        Kernel,
        PageTable,
        Framebuffer,
        Reserved,
        AcpiNvs,
        BadMemory,
    ];
    for (i, &low) in order.iter().enumerate() {
        for &high in &order[i + 1..] {
            assert_eq!(low.more_restrictive(high), high, "{low:?} vs {high:?}");
            assert_eq!(high.more_restrictive(low), high, "{high:?} vs {low:?}");
            // And normalisation applies it, whichever entry comes first.
            for firmware in [
                [fw(0, 4 * K, low), fw(K, K, high)],
                [fw(K, K, high), fw(0, 4 * K, low)],
            ] {
                assert_eq!(regions(&firmware)[1], (K, 2 * K, high));
            }
        }
    }
}

#[test]
fn rule_frame_zero_is_withheld_by_default() {
    let (out, report) = run(&[fw(0, 0x9fc00, Usable)], NormalizeOptions::default());
    assert_eq!(
        out,
        [
            MemoryRegion::new(0, K, Reserved),
            MemoryRegion::new(K, 0x9f000, Usable)
        ]
    );
    assert!(report.frame_zero_withheld);
}

#[test]
fn rule_frame_zero_is_usable_when_asked() {
    let (out, report) = run(
        &[fw(0, 0x9fc00, Usable)],
        NormalizeOptions::new().allow_frame_zero(true),
    );
    assert_eq!(out, [MemoryRegion::new(0, 0x9f000, Usable)]);
    assert!(!report.frame_zero_withheld);
}

#[test]
fn rule_holes_stay_holes() {
    let r = regions(&[fw(0x1000, 0x1000, Usable), fw(0x8000, 0x1000, Usable)]);
    assert_eq!(r, [(0x1000, 0x2000, Usable), (0x8000, 0x9000, Usable)]);
}

#[test]
fn rule_adjacent_equal_kinds_merge() {
    let (out, report) = run(
        &[
            fw(0x3000, K, Usable),
            fw(0x1000, K, Usable),
            fw(0x2000, K, Usable),
            fw(0x4000, 0x800, Reserved),
            fw(0x4800, 0x800, Reserved),
        ],
        NormalizeOptions::new(),
    );
    assert_eq!(
        out,
        [
            MemoryRegion::new(0x1000, 0x4000, Usable),
            MemoryRegion::new(0x4000, 0x5000, Reserved)
        ]
    );
    assert!(report.merged >= 2);
    assert!(report.unsorted);
}

#[test]
fn rule_unsorted_input_comes_out_sorted() {
    let r = regions(&[
        fw(0x9000, K, Kernel),
        fw(0x1000, K, Usable),
        fw(0x5000, K, Reserved),
    ]);
    assert_eq!(
        r,
        [
            (0x1000, 0x2000, Usable),
            (0x5000, 0x6000, Reserved),
            (0x9000, 0xa000, Kernel)
        ]
    );
}

#[test]
fn storage_too_small_reports_the_exact_need() {
    let firmware = [
        fw(0x1000, K, Usable),
        fw(0x3000, K, Reserved),
        fw(0x5000, K, Usable),
    ];
    let mut storage = [MemoryRegion::default(); 2];
    assert_eq!(
        normalize(&firmware, &mut storage, NormalizeOptions::new()),
        Err(MapError::StorageTooSmall {
            needed: 3,
            available: 2
        })
    );
    let mut storage = [MemoryRegion::default(); 3];
    assert_eq!(
        normalize(&firmware, &mut storage, NormalizeOptions::new())
            .unwrap()
            .0
            .regions()
            .len(),
        3
    );
}

#[test]
fn from_regions_checks_the_invariants() {
    let ok = [
        MemoryRegion::new(0, K, Reserved),
        MemoryRegion::new(K, 4 * K, Usable),
    ];
    assert!(MemoryMap::from_regions(&ok).is_ok());
    let unaligned = [MemoryRegion::new(0, 10, Usable)];
    assert_eq!(
        MemoryMap::from_regions(&unaligned),
        Err(MapError::InvalidRegion { index: 0 })
    );
    let empty = [
        MemoryRegion::new(0, K, Usable),
        MemoryRegion::new(2 * K, 2 * K, Usable),
    ];
    assert_eq!(
        MemoryMap::from_regions(&empty),
        Err(MapError::InvalidRegion { index: 1 })
    );
    let overlapping = [
        MemoryRegion::new(0, 2 * K, Usable),
        MemoryRegion::new(K, 3 * K, Kernel),
    ];
    assert_eq!(
        MemoryMap::from_regions(&overlapping),
        Err(MapError::Unsorted { index: 1 })
    );
    let beyond = [MemoryRegion::new(PHYS_LIMIT, PHYS_LIMIT + K, Usable)];
    assert_eq!(
        MemoryMap::from_regions(&beyond),
        Err(MapError::InvalidRegion { index: 0 })
    );
}

#[test]
fn map_queries() {
    let (out, _) = run(
        &[fw(0x1000, 3 * K, Usable), fw(0x4000, K, Kernel)],
        NormalizeOptions::new(),
    );
    let map = MemoryMap::from_regions(&out).unwrap();
    assert_eq!(map.kind_at(0x1fff), Some(Usable));
    assert_eq!(map.kind_at(0x4000), Some(Kernel));
    assert_eq!(map.kind_at(0x5000), None);
    assert_eq!(map.kind_at(0), None);
    assert_eq!(
        map.usable_frames().collect::<Vec<_>>(),
        [0x1000, 0x2000, 0x3000]
    );
    assert_eq!(map.bytes_of(Usable), 3 * K);
}

// ---- property test against a frame-by-frame model -------------------------

/// The two windows random entries live in: low memory, and just below 2^52.
const LOW_FRAMES: u64 = 48;
const HIGH_BASE: u64 = PHYS_LIMIT - 8 * K;

/// The kind of frame `f` as the rules define it, computed independently of
/// the implementation: touching non-usable entries, else byte coverage by
/// usable entries.
fn model_kind(firmware: &[FirmwareRegion], f: u64, allow_zero: bool) -> Option<RegionKind> {
    let clip = |r: &FirmwareRegion| {
        let end = r.base.saturating_add(r.len).min(PHYS_LIMIT);
        (r.base < end).then_some((r.base, end))
    };
    let mut kind = None::<RegionKind>;
    for r in firmware.iter().filter(|r| r.kind != Usable) {
        if let Some((s, e)) = clip(r)
            && s < f + K
            && e > f
        {
            kind = Some(kind.map_or(r.kind, |k| k.more_restrictive(r.kind)));
        }
    }
    if kind.is_some() {
        return kind;
    }
    let mut pieces: Vec<(u64, u64)> = firmware
        .iter()
        .filter(|r| r.kind == Usable)
        .filter_map(clip)
        .map(|(s, e)| (s.max(f), e.min(f + K)))
        .filter(|(s, e)| s < e)
        .collect();
    pieces.sort_unstable();
    let mut covered = f;
    for (s, e) in pieces {
        if s > covered {
            return None;
        }
        covered = covered.max(e);
    }
    if covered < f + K {
        return None;
    }
    Some(if f == 0 && !allow_zero {
        Reserved
    } else {
        Usable
    })
}

fn kind_strategy() -> impl Strategy<Value = RegionKind> {
    prop_oneof![
        4 => Just(Usable),
        1 => Just(Reserved),
        1 => Just(AcpiReclaimable),
        1 => Just(AcpiNvs),
        1 => Just(Kernel),
        1 => (0u32..3).prop_map(Custom),
    ]
}

fn entry_strategy() -> impl Strategy<Value = FirmwareRegion> {
    let low = (0..LOW_FRAMES * K, 0..12 * K, kind_strategy());
    let high = (HIGH_BASE..HIGH_BASE + 12 * K, 0..8 * K, kind_strategy());
    let odd = (
        prop_oneof![Just(0u64), Just(LOW_FRAMES * K - 1)],
        prop_oneof![Just(0u64), Just(u64::MAX)],
        kind_strategy(),
    );
    prop_oneof![6 => low, 2 => high, 1 => odd].prop_map(|(base, len, kind)| {
        // Half the time, frame-aligned edges, so that exact fits get tested too.
        FirmwareRegion::new(base, len, kind)
    })
}

fn aligned_or_not() -> impl Strategy<Value = Vec<FirmwareRegion>> {
    (
        prop::collection::vec(entry_strategy(), 0..12),
        any::<bool>(),
    )
        .prop_map(|(mut v, align)| {
            if align {
                for r in &mut v {
                    r.base &= !(K - 1);
                    if r.len != u64::MAX {
                        r.len &= !(K - 1);
                    }
                }
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalisation_matches_the_frame_model(firmware in aligned_or_not(), allow_zero: bool) {
        let options = NormalizeOptions::new().allow_frame_zero(allow_zero);
        let (out, report) = run(&firmware, options);
        let map = MemoryMap::from_regions(&out).expect("output satisfies the map invariants");

        // Merged: no two touching regions share a kind.
        for pair in out.windows(2) {
            prop_assert!(!(pair[0].end == pair[1].start && pair[0].kind == pair[1].kind), "{pair:?}");
        }
        // Every frame in both windows has the model's kind…
        // (Between the windows no entry has an edge, so one sample frame
        // stands for the whole gap.)
        let low_end = (LOW_FRAMES + 16) * K;
        let frames = (0..LOW_FRAMES + 16)
            .map(|i| i * K)
            .chain([1 << 40])
            .chain((0..8).map(|i| HIGH_BASE + i * K));
        let mut model_frames = 0;
        for f in frames {
            let want = model_kind(&firmware, f, allow_zero);
            prop_assert_eq!(map.kind_at(f), want, "frame {:#x} of {:?} -> {:?}", f, firmware, out);
            model_frames += u64::from(want.is_some());
        }
        // …and the map holds nothing else.
        let in_windows = |r: &MemoryRegion| {
            let low = r.end.min(low_end).saturating_sub(r.start.min(low_end));
            let gap = r.end.clamp(low_end, HIGH_BASE) - r.start.clamp(low_end, HIGH_BASE);
            let high = r.end.max(HIGH_BASE) - r.start.max(HIGH_BASE);
            prop_assert!(gap == 0 || (r.start <= low_end && r.end >= HIGH_BASE), "edge in the gap: {:?}", r);
            Ok((low + high) / K + u64::from(gap > 0))
        };
        let mut total = 0;
        for r in &out {
            total += in_windows(r)?;
        }
        prop_assert_eq!(total, model_frames);
        prop_assert_eq!(report.regions_out, out.len());
        prop_assert_eq!(report.usable_bytes, map.bytes_of(Usable));
        prop_assert_eq!(report.entries_in, firmware.len());
    }
}
