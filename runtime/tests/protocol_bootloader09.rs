//! `bootloader` 0.9: its `bootinfo::MemoryMap` into a `MemoryMap`, and the
//! region-typed allocator that records allocations in that map.

use bootloader::bootinfo::{FrameRange, MemoryMap, MemoryRegion, MemoryRegionType as T};
use framealloc::alloc::protocol::bootloader09::{
    BOOT_INFO, IN_USE, KERNEL_STACK, MAX_REGIONS, PACKAGE, RegionTypeAllocator,
    normalize_memory_map, region_kind,
};
use framealloc::alloc::{FirmwareRegion, NormalizeOptions, RegionKind};
use framealloc::{FrameAllocator, PhysFrame, TaggedFrameAllocator};
use std::collections::HashSet;

fn region(start: u64, end: u64, region_type: T) -> MemoryRegion {
    MemoryRegion {
        range: FrameRange::new(start, end),
        region_type,
    }
}

fn map_of(regions: &[MemoryRegion]) -> MemoryMap {
    let mut map = MemoryMap::new();
    for r in regions {
        map.add_region(*r);
    }
    map
}

/// `(start, end, type)` of every region, in the map's order.
fn entries(map: &MemoryMap) -> Vec<(u64, u64, T)> {
    map.iter()
        .map(|r| (r.range.start_addr(), r.range.end_addr(), r.region_type))
        .collect()
}

fn addr(frame: PhysFrame) -> u64 {
    frame.start_address().as_u64()
}

#[test]
fn every_region_type_has_its_kind() {
    let table = [
        (T::Usable, Some(RegionKind::Usable)),
        (T::InUse, Some(IN_USE)),
        (T::Reserved, Some(RegionKind::Reserved)),
        (T::AcpiReclaimable, Some(RegionKind::AcpiReclaimable)),
        (T::AcpiNvs, Some(RegionKind::AcpiNvs)),
        (T::BadMemory, Some(RegionKind::BadMemory)),
        (T::Kernel, Some(RegionKind::Kernel)),
        (T::KernelStack, Some(KERNEL_STACK)),
        (T::PageTable, Some(RegionKind::PageTable)),
        (T::Bootloader, Some(RegionKind::Bootloader)),
        (T::FrameZero, Some(RegionKind::Reserved)),
        (T::Empty, None),
        (T::BootInfo, Some(BOOT_INFO)),
        (T::Package, Some(PACKAGE)),
    ];
    for (region_type, kind) in table {
        assert_eq!(region_kind(region_type), kind, "{region_type:?}");
    }
    // The kinds framealloc has no name for stay distinct.
    let kept: HashSet<_> = [IN_USE, KERNEL_STACK, BOOT_INFO, PACKAGE].into();
    assert_eq!(kept.len(), 4);
}

#[test]
fn messy_map_normalises() {
    // What bootloader 0.9 hands a kernel, plus the messy cases its frame
    // numbers allow: a region above 4 GiB, overlapping regions, an empty
    // region, and (through `DerefMut`) an unsorted order.
    let mut map = map_of(&[
        region(0x0, 0x1000, T::FrameZero),
        region(0x1000, 0x9_f000, T::Usable),
        region(0x9_f000, 0xa_0000, T::Reserved),
        region(0x10_0000, 0x40_0000, T::Kernel),
        region(0x40_0000, 0x800_0000, T::Usable),
        region(0x700_0000, 0x700_2000, T::BootInfo), // inside usable memory
        region(0x1_0000_0000, 0x1_4000_0000, T::Usable), // above 4 GiB
    ]);
    map.swap(0, 6);
    map.swap(1, 4);
    assert_eq!(map.len(), 7);
    let mut scratch = [FirmwareRegion::default(); MAX_REGIONS];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 4 * MAX_REGIONS + 2];
    let (normal, report) = normalize_memory_map(
        &map,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap();
    let got: Vec<_> = normal
        .regions()
        .iter()
        .map(|r| (r.start, r.end, r.kind))
        .collect();
    assert_eq!(
        got,
        [
            (0x0, 0x1000, RegionKind::Reserved),
            (0x1000, 0x9_f000, RegionKind::Usable),
            (0x9_f000, 0xa_0000, RegionKind::Reserved),
            (0x10_0000, 0x40_0000, RegionKind::Kernel),
            (0x40_0000, 0x700_0000, RegionKind::Usable),
            (0x700_0000, 0x700_2000, BOOT_INFO),
            (0x700_2000, 0x800_0000, RegionKind::Usable),
            (0x1_0000_0000, 0x1_4000_0000, RegionKind::Usable),
        ]
    );
    assert_eq!(report.entries_in, 7);
    assert!(report.unsorted);
    assert!(report.overlapping_pairs >= 1);
    assert!(!report.frame_zero_withheld); // frame 0 was never usable
    assert_eq!(
        report.usable_bytes,
        (0x9_f000 - 0x1000) + (0x800_0000 - 0x40_0000 - 0x2000) + 0x4000_0000
    );
}

#[test]
fn empty_regions_are_skipped_and_too_little_scratch_is_reported() {
    let mut map = map_of(&[
        region(0x1000, 0x2000, T::Usable),
        region(0x2000, 0x3000, T::Reserved),
    ]);
    // An `Empty`-typed region with frames in it: skipped, as the table says.
    map[1].region_type = T::Empty;
    let mut scratch = [FirmwareRegion::default(); 1];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 8];
    let (normal, report) = normalize_memory_map(
        &map,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap();
    assert_eq!(normal.regions().len(), 1);
    assert_eq!(report.entries_in, 1);

    map[1].region_type = T::Reserved;
    let error = normalize_memory_map(
        &map,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error,
        framealloc::alloc::protocol::ProtocolError::ScratchTooSmall {
            needed: 2,
            available: 1
        }
    );
}

#[test]
fn allocations_split_and_merge_as_bootloader_09_records_them() {
    let mut map = map_of(&[
        region(0x0, 0x1000, T::FrameZero),
        region(0x1000, 0x9_f000, T::Usable),
        region(0x10_0000, 0x20_0000, T::Kernel),
        region(0x20_0000, 0x80_0000, T::Usable),
    ]);
    // SAFETY: a map of made-up memory; the frames are only compared.
    let mut boot = unsafe { RegionTypeAllocator::new(&mut map) };

    // A kernel frame: the Kernel region is followed by a usable one, so it
    // grows (the merge).
    assert_eq!(addr(boot.allocate_frame(T::Kernel).unwrap()), 0x20_0000);
    // A page table: split off the start of the *last* usable region.
    assert_eq!(addr(boot.allocate_frame(T::PageTable).unwrap()), 0x20_1000);
    // The next one grows that PageTable region.
    assert_eq!(addr(boot.allocate_frame(T::PageTable).unwrap()), 0x20_2000);
    // A boot-info frame: split off the start of the *first* usable region.
    assert_eq!(addr(boot.allocate_frame(T::BootInfo).unwrap()), 0x1000);
    // The Kernel region is no longer followed by usable memory: split.
    assert_eq!(addr(boot.allocate_frame(T::Kernel).unwrap()), 0x2000);

    assert_eq!(
        entries(boot.memory_map()),
        [
            (0x0, 0x1000, T::FrameZero),
            (0x1000, 0x2000, T::BootInfo),
            (0x2000, 0x3000, T::Kernel),
            (0x3000, 0x9_f000, T::Usable),
            (0x10_0000, 0x20_1000, T::Kernel),
            (0x20_1000, 0x20_3000, T::PageTable),
            (0x20_3000, 0x80_0000, T::Usable),
        ]
    );
}

#[test]
fn every_usable_frame_once_then_none() {
    let mut map = map_of(&[
        region(0x1000, 0x5000, T::Usable),
        region(0x8000, 0xa000, T::Usable),
    ]);
    // SAFETY: made-up memory, only compared.
    let mut boot = unsafe { RegionTypeAllocator::new(&mut map) };
    let mut seen = HashSet::new();
    let tags = [T::Kernel, T::PageTable, T::KernelStack, T::Bootloader];
    for i in 0.. {
        let Some(frame) = boot.allocate_frame(tags[i % tags.len()]) else {
            break;
        };
        assert!(seen.insert(addr(frame)), "{frame:?} handed out twice");
    }
    let expected: HashSet<u64> = (1..5).chain(8..10).map(|f| f * 0x1000).collect();
    assert_eq!(seen, expected);
    // As in bootloader 0.9, a usable region emptied by a merge stays (empty)
    // until the next split sorts the map.
    assert!(
        boot.memory_map()
            .iter()
            .all(|r| r.region_type != T::Usable || r.range.is_empty())
    );
}

#[test]
fn usable_and_empty_are_refused_as_tags() {
    let mut map = map_of(&[region(0x1000, 0x3000, T::Usable)]);
    // SAFETY: made-up memory, only compared.
    let mut boot = unsafe { RegionTypeAllocator::new(&mut map) };
    assert_eq!(boot.allocate_frame(T::Usable), None);
    assert_eq!(boot.allocate_frame(T::Empty), None);
    assert_eq!(entries(boot.memory_map()), [(0x1000, 0x3000, T::Usable)]);
}

#[test]
fn frames_that_another_region_covers_are_never_handed_out() {
    // Frame zero inside a usable region, a reserved frame overlapping one,
    // and two overlapping usable regions.
    let mut map = MemoryMap::new();
    map.add_region(region(0x0, 0x3000, T::Usable));
    map.add_region(region(0x2000, 0x3000, T::Reserved));
    map.add_region(region(0x10_0000, 0x10_3000, T::Usable));
    map.add_region(region(0x10_1000, 0x10_4000, T::Usable));
    // SAFETY: made-up memory, only compared.
    let mut boot = unsafe { RegionTypeAllocator::new(&mut map) };
    let mut got = Vec::new();
    while let Some(frame) = boot.allocate_frame(T::Bootloader) {
        got.push(addr(frame));
    }
    // Never frame 0 or the reserved frame; the overlap of the two usable
    // regions is handed out at most once.
    assert!(!got.contains(&0x0) && !got.contains(&0x2000), "{got:x?}");
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "{got:x?}");
    assert!(got.contains(&0x10_0000));
}

#[test]
fn a_full_map_refuses_a_split_but_still_merges() {
    let mut map = MemoryMap::new();
    for i in 0..MAX_REGIONS as u64 {
        let region_type = if i == 0 { T::Kernel } else { T::Usable };
        map.add_region(region(
            0x1000 * (2 * i + 1),
            0x1000 * (2 * i + 2),
            region_type,
        ));
    }
    map[1].range.start_frame_number = 2; // directly after the Kernel region
    assert_eq!(map.len(), MAX_REGIONS);
    // SAFETY: made-up memory, only compared.
    let mut boot = unsafe { RegionTypeAllocator::new(&mut map) };
    // bootloader 0.9 would panic in `add_region`; this returns `None`.
    assert_eq!(boot.allocate_frame(T::PageTable), None);
    assert_eq!(addr(boot.allocate_frame(T::Kernel).unwrap()), 0x2000);
}

/// The seed case with the real types: a kernel's own allocator derives
/// `FrameAllocator` from its `allocate_frame(MemoryRegionType)`.
#[derive(framealloc::FrameAllocator)]
#[frame_allocator(unsafe tagged(
    method = allocate_frame,
    tag = T,
    default = T::PageTable,
))]
struct BootFrameAllocator<'m> {
    inner: RegionTypeAllocator<'m>,
}

impl BootFrameAllocator<'_> {
    fn allocate_frame(&mut self, region_type: T) -> Option<PhysFrame> {
        self.inner.allocate_frame(region_type)
    }
}

#[test]
fn derive_and_tagged_with_the_real_region_type() {
    let mut map = map_of(&[region(0x10_0000, 0x10_4000, T::Usable)]);
    // SAFETY: made-up memory, only compared.
    let inner = unsafe { RegionTypeAllocator::new(&mut map) };
    let mut boot = BootFrameAllocator { inner };
    // The default tag: what `map_to(page, frame, flags, &mut boot)` asks for.
    let table = FrameAllocator::<framealloc::Size4KiB>::allocate_frame(&mut boot).unwrap();
    let kernel = boot.tagged(T::Kernel).allocate_frame().unwrap();
    let stack = boot.inner.tagged(T::KernelStack).allocate_frame().unwrap();
    assert_eq!(
        [addr(table), addr(kernel), addr(stack)],
        [0x10_0000, 0x10_1000, 0x10_2000]
    );
    assert_eq!(
        entries(boot.inner.memory_map()),
        [
            (0x10_0000, 0x10_1000, T::PageTable),
            (0x10_1000, 0x10_2000, T::Kernel),
            (0x10_2000, 0x10_3000, T::KernelStack),
            (0x10_3000, 0x10_4000, T::Usable),
        ]
    );
}

/// `bootloader` 0.9's own allocation, restated as a model over a plain list
/// of `(start frame, end frame, type)`, kept sorted with empty entries
/// dropped whenever an entry is added (as `MemoryMap::add_region` does).
mod model {
    use super::T;

    pub(super) type Entry = (u64, u64, T);

    pub(super) fn allocate(map: &mut Vec<Entry>, tag: T) -> Option<u64> {
        // Grow an entry of `tag` that a non-empty usable entry follows.
        for i in 1..map.len() {
            let (typed, usable) = (map[i - 1], map[i]);
            if typed.2 == tag && usable.2 == T::Usable && usable.0 < usable.1 && usable.0 == typed.1
            {
                map[i - 1].1 += 1;
                map[i].0 += 1;
                return Some(usable.0);
            }
        }
        // Split the first frame off the first (page tables: last) usable entry.
        let usable = |e: &Entry| e.2 == T::Usable && e.0 < e.1;
        let index = if tag == T::PageTable {
            map.iter().rposition(usable)
        } else {
            map.iter().position(usable)
        }?;
        let frame = map[index].0;
        map[index].0 += 1;
        map.push((frame, frame + 1, tag));
        map.retain(|e| e.0 < e.1);
        map.sort_by_key(|e| (e.0, e.1));
        Some(frame)
    }
}

proptest::proptest! {
    /// On well-formed maps (sorted, disjoint, frame 0 not usable, room to
    /// spare) the allocator hands out the same frames as bootloader 0.9 and
    /// leaves the same map.
    #[test]
    fn allocates_and_records_as_bootloader_09(
        layout in proptest::collection::vec((0u64..4, 1u64..6, 0usize..6), 1..12),
        tags in proptest::collection::vec(0usize..5, 0..60),
    ) {
        const TYPES: [T; 6] = [T::Usable, T::Usable, T::Kernel, T::PageTable, T::Reserved, T::Bootloader];
        const TAGS: [T; 5] = [T::Kernel, T::PageTable, T::Bootloader, T::KernelStack, T::BootInfo];
        let mut map = MemoryMap::new();
        let mut expected = Vec::new();
        let mut next = 1; // frame 0 is never in a region
        for (gap, len, ty) in layout {
            let start = next + gap;
            next = start + len;
            map.add_region(region(start * 0x1000, next * 0x1000, TYPES[ty]));
            expected.push((start, next, TYPES[ty]));
        }
        // SAFETY: made-up memory, only compared.
        let mut boot = unsafe { RegionTypeAllocator::new(&mut map) };
        for tag in tags {
            let got = boot.allocate_frame(TAGS[tag]).map(|f| addr(f) / 0x1000);
            let want = model::allocate(&mut expected, TAGS[tag]);
            proptest::prop_assert_eq!(got, want, "allocating for {:?}", TAGS[tag]);
        }
        let got: Vec<model::Entry> = boot
            .memory_map()
            .iter()
            .map(|r| (r.range.start_frame_number, r.range.end_frame_number, r.region_type))
            .collect();
        proptest::prop_assert_eq!(got, expected);
    }
}
