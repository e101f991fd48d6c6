//! `limine` 0.5: `MemoryMapResponse::entries` into a `MemoryMap`.

use framealloc::alloc::protocol::limine::{normalize_entries, region_kind};
use framealloc::alloc::{FirmwareRegion, NormalizeOptions, RegionKind};
use limine::memory_map::{Entry, EntryType};

fn entry(base: u64, length: u64, entry_type: EntryType) -> Entry {
    Entry {
        base,
        length,
        entry_type,
    }
}

/// An entry type this `limine` release has no constant for, as a newer
/// loader would write it (the `type` field is a plain `u64` in memory).
fn unknown_type(raw: u64) -> EntryType {
    let entries = [0u64, 0, raw];
    // SAFETY: `Entry` is `#[repr(C)]` { u64, u64, `EntryType` }, and
    // `EntryType` is `#[repr(transparent)]` over `u64`: any three `u64`s
    // are a valid `Entry`, as in a loader's memory map.
    let entry: Entry = unsafe { core::mem::transmute(entries) };
    entry.entry_type
}

#[test]
fn kind_table() {
    let table = [
        (EntryType::USABLE, RegionKind::Usable),
        (EntryType::RESERVED, RegionKind::Reserved),
        (EntryType::ACPI_RECLAIMABLE, RegionKind::AcpiReclaimable),
        (EntryType::ACPI_NVS, RegionKind::AcpiNvs),
        (EntryType::BAD_MEMORY, RegionKind::BadMemory),
        (EntryType::BOOTLOADER_RECLAIMABLE, RegionKind::Bootloader),
        (EntryType::EXECUTABLE_AND_MODULES, RegionKind::Kernel),
        (EntryType::FRAMEBUFFER, RegionKind::Framebuffer),
        (unknown_type(8), RegionKind::Custom(8)),
        (unknown_type(u64::MAX), RegionKind::Custom(u32::MAX)),
    ];
    for (i, (entry_type, kind)) in table.into_iter().enumerate() {
        assert_eq!(region_kind(entry_type), kind, "table row {i}");
    }
}

#[test]
fn messy_entries_normalise() {
    let entries = [
        entry(0x10_0000, 0x3ff0_0000, EntryType::USABLE),
        entry(0x1000, 0x9_e800, EntryType::USABLE), // unsorted, ends mid-frame
        entry(0x80_0000, 0x10_0000, EntryType::EXECUTABLE_AND_MODULES), // overlaps
        entry(0xfd00_0000, 0x30_0000, EntryType::FRAMEBUFFER),
        entry(0x1_0000_0000, 0x4000_0000, EntryType::USABLE), // above 4 GiB
        entry(0x1_0000_0000, 0, EntryType::RESERVED),         // zero length
        entry(0x2000_0000, 0x1000, unknown_type(9)),
    ];
    let refs: Vec<&Entry> = entries.iter().collect();
    let mut scratch = [FirmwareRegion::default(); 7];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 30];
    let (map, report) = normalize_entries(
        &refs,
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
            (0x1000, 0x9_f000, RegionKind::Usable),
            (0x10_0000, 0x80_0000, RegionKind::Usable),
            (0x80_0000, 0x90_0000, RegionKind::Kernel),
            (0x90_0000, 0x2000_0000, RegionKind::Usable),
            (0x2000_0000, 0x2000_1000, RegionKind::Custom(9)),
            (0x2000_1000, 0x4000_0000, RegionKind::Usable),
            (0xfd00_0000, 0xfd30_0000, RegionKind::Framebuffer),
            (0x1_0000_0000, 0x1_4000_0000, RegionKind::Usable),
        ]
    );
    assert_eq!(report.entries_in, 7);
    assert!(report.unsorted);
    assert_eq!(report.dropped_empty, 1);
    assert_eq!(report.usable_trimmed, 1);
    assert!(!report.frame_zero_withheld); // frame 0 is in no entry
    assert_eq!(
        report.usable_bytes,
        0x9_e000 + (0x4000_0000 - 0x10_0000 - 0x10_0000 - 0x1000) + 0x4000_0000
    );
}
