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
    // 3n regions suffice too (the documented bound).
    let mut tight = vec![MemoryRegion::default(); 3 * firmware.len()];
    let (tight_map, tight_report) =
        normalize(firmware, &mut tight, options).expect("3n regions suffice");
    assert_eq!((tight_map.regions(), tight_report), (map.regions(), report));
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
    // Both edges lie inside a frame.
    assert_eq!(report.usable_trimmed, 2);
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
    // 0x2000 and 0x3000 (usable neighbours), 0x4800 (reserved halves).
    assert_eq!(report.merged, 3);
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
fn storage_too_small_reports_the_need() {
    // Three entries kept (the empty one is not), a map of three regions.
    let firmware = [
        fw(0x1000, K, Usable),
        fw(0x3000, K, Reserved),
        fw(0x4000, 0, Reserved),
        fw(0x5000, K, Usable),
    ];
    // Too small for the working copy of the entries: the bound 3 × kept.
    let mut storage = [MemoryRegion::default(); 2];
    assert_eq!(
        normalize(&firmware, &mut storage, NormalizeOptions::new()),
        Err(MapError::StorageTooSmall {
            needed: 9,
            available: 2
        })
    );
    // Room for the entries but not for the map beside them: the exact need.
    let mut storage = [MemoryRegion::default(); 5];
    assert_eq!(
        normalize(&firmware, &mut storage, NormalizeOptions::new()),
        Err(MapError::StorageTooSmall {
            needed: 6,
            available: 5
        })
    );
    let mut storage = [MemoryRegion::default(); 6];
    assert_eq!(
        normalize(&firmware, &mut storage, NormalizeOptions::new())
            .unwrap()
            .0
            .regions()
            .len(),
        3
    );
}

// ---- each report counter, exactly as its one-sentence definition says ----

fn report(firmware: &[FirmwareRegion]) -> NormalizeReport {
    run(firmware, NormalizeOptions::new()).1
}

#[test]
fn merged_counts_neighbours_joined_not_split_points() {
    // One entry: nothing to merge, wherever frame 0 or the frame edges are.
    assert_eq!(report(&[fw(0, 0x5000, Reserved)]).merged, 0);
    assert_eq!(report(&[fw(0x1001, 0x5000, Kernel)]).merged, 0);
    assert_eq!(report(&[fw(0, 0x5000, Usable)]).merged, 0);
    // Neighbours of one kind, in one region.
    assert_eq!(
        report(&[fw(0x1000, K, Usable), fw(0x2000, K, Usable)]).merged,
        1
    );
    // Neighbours inside one frame.
    assert_eq!(
        report(&[fw(0x1000, 0x800, Usable), fw(0x1800, 0x800, Usable)]).merged,
        1
    );
    // Overlapping entries of one kind are not neighbours.
    assert_eq!(
        report(&[fw(0x1000, 2 * K, Usable), fw(0x2000, 2 * K, Usable)]).merged,
        0
    );
    // Neighbours kept apart by a more restrictive entry at their edge.
    assert_eq!(
        report(&[
            fw(0x1000, 2 * K, Usable),
            fw(0x3000, 2 * K, Usable),
            fw(0x2800, K, Reserved)
        ])
        .merged,
        0
    );
    // Neighbours at frame 0, which is withheld: not joined.
    assert_eq!(report(&[fw(0, K, Usable), fw(K, K, Usable)]).merged, 0);
}

#[test]
fn unsorted_looks_at_kept_entries_only() {
    assert!(!report(&[fw(0x5000, K, Usable), fw(0x1000, 0, Reserved)]).unsorted);
    assert!(!report(&[fw(PHYS_LIMIT, K, Usable), fw(0x1000, K, Usable)]).unsorted);
    assert!(report(&[fw(0x5000, K, Usable), fw(0x1000, K, Reserved)]).unsorted);
    // Equal bases are sorted.
    assert!(!report(&[fw(0x5000, K, Usable), fw(0x5000, 2 * K, Reserved)]).unsorted);
}

#[test]
fn usable_trimmed_counts_edges_of_usable_memory_inside_a_frame() {
    // Two halves of one frame cover it: nothing shrinks.
    assert_eq!(
        report(&[fw(0x1000, 0x800, Usable), fw(0x1800, 0x800, Usable)]).usable_trimmed,
        0
    );
    // Overlapping usable entries with unaligned inner edges: nothing shrinks.
    assert_eq!(
        report(&[fw(0x1000, 0x1800, Usable), fw(0x2400, 0x1c00, Usable)]).usable_trimmed,
        0
    );
    assert_eq!(report(&[fw(0x1010, 0x2000, Usable)]).usable_trimmed, 2);
    assert_eq!(report(&[fw(0x1000, 0x2010, Usable)]).usable_trimmed, 1);
    // Two stretches, each with one unaligned edge.
    assert_eq!(
        report(&[fw(0x1000, 0x1800, Usable), fw(0x4800, 0x800, Usable)]).usable_trimmed,
        2
    );
}

#[test]
fn non_usable_widened_counts_entries_with_an_edge_inside_a_frame() {
    assert_eq!(
        report(&[fw(0x1000, 0x800, Reserved), fw(0x1800, 0x800, Reserved)]).non_usable_widened,
        2
    );
    assert_eq!(report(&[fw(0x1000, K, Reserved)]).non_usable_widened, 0);
    assert_eq!(report(&[fw(0x1010, 0x10, AcpiNvs)]).non_usable_widened, 1);
    // Usable entries are never widened.
    assert_eq!(report(&[fw(0x1010, 0x10, Usable)]).non_usable_widened, 0);
}

#[test]
fn overlapping_pairs_counts_pairs_of_different_kinds_sharing_a_frame() {
    // Sharing a frame without sharing a byte counts.
    assert_eq!(
        report(&[fw(0x1000, 0x800, Usable), fw(0x1800, 0x800, Reserved)]).overlapping_pairs,
        1
    );
    // Touching at a frame boundary shares no frame.
    assert_eq!(
        report(&[fw(0x1000, K, Usable), fw(0x2000, K, Reserved)]).overlapping_pairs,
        0
    );
    // Equal kinds are not counted; different custom numbers are different kinds.
    assert_eq!(
        report(&[fw(0x1000, 2 * K, Custom(1)), fw(0x1000, 2 * K, Custom(1))]).overlapping_pairs,
        0
    );
    assert_eq!(
        report(&[fw(0x1000, 2 * K, Custom(1)), fw(0x1000, 2 * K, Custom(2))]).overlapping_pairs,
        1
    );
    // Every pair once: three kinds over one frame are three pairs.
    assert_eq!(
        report(&[
            fw(0x1000, K, Usable),
            fw(0x1000, K, Kernel),
            fw(0x1000, K, Reserved)
        ])
        .overlapping_pairs,
        3
    );
}

#[test]
fn limit_and_frame_zero_counters_are_exact() {
    let r = report(&[
        fw(0, 0, Usable),
        fw(PHYS_LIMIT, 0, Usable),
        fw(PHYS_LIMIT + K, K, Usable),
        fw(PHYS_LIMIT - K, 2 * K, Reserved),
        fw(PHYS_LIMIT - 4 * K, u64::MAX, Usable),
        fw(0, 0x800, Usable),
    ]);
    assert_eq!(r.entries_in, 6);
    assert_eq!(r.dropped_empty, 2);
    assert_eq!(r.dropped_beyond_limit, 1);
    assert_eq!(r.clipped_at_limit, 2);
    // Frame 0 only half covered by usable entries is a hole, not withheld.
    assert!(!r.frame_zero_withheld);
    assert_eq!(r.regions_out, 2);
    assert_eq!(r.usable_bytes, 3 * K);
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
    aligned_or_not_up_to(12)
}

fn aligned_or_not_up_to(entries: usize) -> impl Strategy<Value = Vec<FirmwareRegion>> {
    (
        prop::collection::vec(entry_strategy(), 0..entries),
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
        check_against_the_model(&firmware, allow_zero)?;
    }

    /// Many entries piled on few frames: deep overlaps for the sweep's heap.
    #[test]
    fn crowded_maps_match_the_frame_model(firmware in aligned_or_not_up_to(48), allow_zero: bool) {
        check_against_the_model(&firmware, allow_zero)?;
    }
}

fn check_against_the_model(
    firmware: &[FirmwareRegion],
    allow_zero: bool,
) -> Result<(), TestCaseError> {
    let options = NormalizeOptions::new().allow_frame_zero(allow_zero);
    let (out, report) = run(firmware, options);
    let map = MemoryMap::from_regions(&out).expect("output satisfies the map invariants");

    // Merged: no two touching regions share a kind.
    for pair in out.windows(2) {
        prop_assert!(
            !(pair[0].end == pair[1].start && pair[0].kind == pair[1].kind),
            "{pair:?}"
        );
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
        let want = model_kind(firmware, f, allow_zero);
        prop_assert_eq!(
            map.kind_at(f),
            want,
            "frame {:#x} of {:?} -> {:?}",
            f,
            firmware,
            out
        );
        model_frames += u64::from(want.is_some());
    }
    // …and the map holds nothing else.
    let in_windows = |r: &MemoryRegion| {
        let low = r.end.min(low_end).saturating_sub(r.start.min(low_end));
        let gap = r.end.clamp(low_end, HIGH_BASE) - r.start.clamp(low_end, HIGH_BASE);
        let high = r.end.max(HIGH_BASE) - r.start.max(HIGH_BASE);
        prop_assert!(
            gap == 0 || (r.start <= low_end && r.end >= HIGH_BASE),
            "edge in the gap: {:?}",
            r
        );
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
    prop_assert_eq!(
        report,
        model_report(firmware, &map, allow_zero),
        "{:?}",
        firmware
    );
    Ok(())
}

/// Every counter of the report from its one-sentence definition, by brute
/// force over the entries (and, for `merged`, the map's kinds).
fn model_report(firmware: &[FirmwareRegion], map: &MemoryMap, allow_zero: bool) -> NormalizeReport {
    let clip = |r: &FirmwareRegion| {
        let end = r.base.saturating_add(r.len).min(PHYS_LIMIT);
        (r.base < end).then_some((r.base, end, r.kind))
    };
    let kept: Vec<(u64, u64, RegionKind)> = firmware.iter().filter_map(clip).collect();
    let down = |a: u64| a & !(K - 1);
    let up = |a: u64| (a + K - 1) & !(K - 1);
    let mut want = NormalizeReport::default();
    want.entries_in = firmware.len();
    want.regions_out = map.regions().len();
    want.usable_bytes = map.bytes_of(Usable);
    want.unsorted = kept.windows(2).any(|w| w[1].0 < w[0].0);
    want.dropped_empty = firmware.iter().filter(|r| r.len == 0).count();
    want.dropped_beyond_limit = firmware
        .iter()
        .filter(|r| r.len != 0 && r.base >= PHYS_LIMIT)
        .count();
    want.clipped_at_limit = firmware
        .iter()
        .filter(|r| {
            r.len != 0
                && r.base < PHYS_LIMIT
                && r.base.checked_add(r.len).is_none_or(|e| e > PHYS_LIMIT)
        })
        .count();
    // The union of the usable entries, as sorted disjoint stretches.
    let mut usable: Vec<(u64, u64)> = kept
        .iter()
        .filter(|r| r.2 == Usable)
        .map(|r| (r.0, r.1))
        .collect();
    usable.sort_unstable();
    let mut stretches: Vec<(u64, u64)> = Vec::new();
    for (s, e) in usable {
        match stretches.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => stretches.push((s, e)),
        }
    }
    want.usable_trimmed = stretches
        .iter()
        .map(|&(s, e)| usize::from(s % K != 0) + usize::from(e % K != 0))
        .sum();
    want.non_usable_widened = kept
        .iter()
        .filter(|r| r.2 != Usable && (r.0 % K != 0 || r.1 % K != 0))
        .count();
    for (i, a) in kept.iter().enumerate() {
        for (j, b) in kept.iter().enumerate() {
            if i < j && a.2 != b.2 && down(a.0) < up(b.1) && down(b.0) < up(a.1) {
                want.overlapping_pairs += 1;
            }
            if i != j
                && a.2 == b.2
                && a.1 == b.0
                && map.kind_at(a.1 - 1) == Some(a.2)
                && map.kind_at(a.1) == Some(a.2)
            {
                want.merged += 1;
            }
        }
    }
    want.frame_zero_withheld = !allow_zero && model_kind(firmware, 0, true) == Some(Usable);
    want
}

#[test]
fn normalize_to_vec_matches_normalize() {
    // This package's tests run with `emu`, hence `std`.
    let firmware = [
        fw(0x1000, 3 * K, Usable),
        fw(0x2800, 0x100, AcpiNvs),
        fw(0x9000, K, Kernel),
    ];
    let (regions, report) = framealloc::alloc::normalize_to_vec(&firmware, NormalizeOptions::new());
    assert_eq!(regions, run(&firmware, NormalizeOptions::new()).0);
    assert_eq!(report.regions_out, regions.len());
    assert_eq!(regions.len(), 4);
}
