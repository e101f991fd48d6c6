//! `bootloader_api` 0.11: `BootInfo::memory_regions` into a `MemoryMap`.

use bootloader_api::info::{MemoryRegion, MemoryRegionKind as K, MemoryRegions};
use framealloc::alloc::protocol::bootloader_api::{normalize_regions, region_kind};
use framealloc::alloc::{FirmwareRegion, NormalizeOptions, RegionKind};

#[test]
fn kind_table() {
    assert_eq!(region_kind(K::Usable), RegionKind::Usable);
    assert_eq!(region_kind(K::Bootloader), RegionKind::Bootloader);
    // BIOS boots: the E820 type.
    assert_eq!(region_kind(K::UnknownBios(2)), RegionKind::Reserved);
    assert_eq!(region_kind(K::UnknownBios(3)), RegionKind::AcpiReclaimable);
    assert_eq!(region_kind(K::UnknownBios(4)), RegionKind::AcpiNvs);
    assert_eq!(region_kind(K::UnknownBios(5)), RegionKind::BadMemory);
    assert_eq!(region_kind(K::UnknownBios(7)), RegionKind::Custom(7));
    // UEFI boots: the UEFI type, boot services exited.
    assert_eq!(region_kind(K::UnknownUefi(0)), RegionKind::Reserved);
    assert_eq!(region_kind(K::UnknownUefi(4)), RegionKind::Usable);
    assert_eq!(region_kind(K::UnknownUefi(6)), RegionKind::Custom(6));
    assert_eq!(region_kind(K::UnknownUefi(10)), RegionKind::AcpiNvs);
}

#[test]
fn messy_regions_normalise() {
    let regions: &'static mut [MemoryRegion] = Box::leak(Box::new([
        MemoryRegion {
            start: 0x10_0000,
            end: 0x4000_0000,
            kind: K::Usable,
        },
        MemoryRegion {
            start: 0x0,
            end: 0x9_fc00,
            kind: K::Usable,
        }, // unsorted, unaligned
        MemoryRegion {
            start: 0x9_fc00,
            end: 0xa_0000,
            kind: K::UnknownBios(2),
        },
        MemoryRegion {
            start: 0x20_0000,
            end: 0x20_0800,
            kind: K::Bootloader,
        }, // overlaps
        MemoryRegion {
            start: 0x1_0000_0000,
            end: 0x1_8000_0000,
            kind: K::Usable,
        }, // > 4 GiB
        MemoryRegion {
            start: 0x3000_0000,
            end: 0x3000_0000,
            kind: K::UnknownBios(2),
        }, // empty
        MemoryRegion {
            start: 0x5000,
            end: 0x4000,
            kind: K::UnknownBios(2),
        }, // backwards
        MemoryRegion {
            start: 0x1_8000_0000,
            end: 0x1_8000_1000,
            kind: K::UnknownUefi(14),
        },
    ]));
    // The type a kernel receives.
    let regions = MemoryRegions::from(regions);
    let mut scratch = [FirmwareRegion::default(); 8];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 34];
    let (map, report) = normalize_regions(
        &regions,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap();
    let got: Vec<_> = map
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
            (0x10_0000, 0x20_0000, RegionKind::Usable),
            (0x20_0000, 0x20_1000, RegionKind::Bootloader),
            (0x20_1000, 0x4000_0000, RegionKind::Usable),
            (0x1_0000_0000, 0x1_8000_0000, RegionKind::Usable),
            (0x1_8000_0000, 0x1_8000_1000, RegionKind::Custom(14)),
        ]
    );
    assert_eq!(report.entries_in, 8);
    assert!(report.unsorted);
    assert_eq!(report.dropped_empty, 2); // the empty and the backwards region
    assert_eq!(report.usable_trimmed, 1);
    assert_eq!(report.non_usable_widened, 2);
    assert!(report.frame_zero_withheld);
    assert_eq!(
        report.usable_bytes,
        0x9_e000 + (0x4000_0000 - 0x10_0000 - 0x1000) + 0x8000_0000
    );
}
