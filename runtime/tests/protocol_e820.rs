//! E820 maps (the layout QEMU's PVH boot passes): the kind table and a messy
//! map through `normalize_entries`.

use framealloc::alloc::protocol::e820::{self, E820Entry, e820_kind};
use framealloc::alloc::protocol::{BootServices, ProtocolError, normalize_entries, uefi_kind};
use framealloc::alloc::{FirmwareRegion, NormalizeOptions, RegionKind};

#[test]
fn kind_table() {
    assert_eq!(e820_kind(e820::USABLE), RegionKind::Usable);
    assert_eq!(e820_kind(e820::RESERVED), RegionKind::Reserved);
    assert_eq!(
        e820_kind(e820::ACPI_RECLAIMABLE),
        RegionKind::AcpiReclaimable
    );
    assert_eq!(e820_kind(e820::ACPI_NVS), RegionKind::AcpiNvs);
    assert_eq!(e820_kind(e820::UNUSABLE), RegionKind::BadMemory);
    // Persistent memory (7) and the rest are kept under their own number.
    assert_eq!(e820_kind(7), RegionKind::Custom(7));
    assert_eq!(e820_kind(0), RegionKind::Custom(0));
    assert_eq!(e820_kind(u32::MAX), RegionKind::Custom(u32::MAX));
}

#[test]
fn uefi_kind_table() {
    use BootServices::{Exited, Running};
    assert_eq!(uefi_kind(7, Running), RegionKind::Usable);
    assert_eq!(uefi_kind(3, Running), RegionKind::Custom(3));
    assert_eq!(uefi_kind(4, Running), RegionKind::Custom(4));
    assert_eq!(uefi_kind(3, Exited), RegionKind::Usable);
    assert_eq!(uefi_kind(4, Exited), RegionKind::Usable);
    assert_eq!(uefi_kind(1, Exited), RegionKind::Bootloader);
    assert_eq!(uefi_kind(2, Exited), RegionKind::Bootloader);
    for reserved in [0, 11, 12] {
        assert_eq!(uefi_kind(reserved, Exited), RegionKind::Reserved);
    }
    assert_eq!(uefi_kind(8, Exited), RegionKind::BadMemory);
    assert_eq!(uefi_kind(9, Exited), RegionKind::AcpiReclaimable);
    assert_eq!(uefi_kind(10, Exited), RegionKind::AcpiNvs);
    for kept in [5, 6, 13, 14, 15, 0x7000_0001, 0x8000_0000] {
        assert_eq!(uefi_kind(kept, Exited), RegionKind::Custom(kept));
    }
}

#[test]
fn entry_layout_is_the_pvh_one() {
    assert_eq!(size_of::<E820Entry>(), 24);
    assert_eq!(core::mem::offset_of!(E820Entry, kind), 16);
}

#[test]
fn messy_map_normalises() {
    let table = [
        E820Entry::new(0x10_0000, 0x3ff0_0000, e820::USABLE),
        E820Entry::new(0x0, 0x9_fc00, e820::USABLE), // unsorted, ends mid-frame
        E820Entry::new(0x9_fc00, 0x400, e820::RESERVED), // starts mid-frame
        E820Entry::new(0x3000_0000, 0x1800, e820::RESERVED), // inside usable, ends mid-frame
        E820Entry::new(0x1_0000_0000, 0x4000_0000, e820::USABLE), // above 4 GiB
        E820Entry::new(0x2000_0000, 0, e820::RESERVED), // zero length
        E820Entry::new(0x1_2000_0000, 0x1000, 12),   // a kind without a name
    ];
    let mut scratch = [FirmwareRegion::default(); 7];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 30];
    let (map, report) = normalize_entries(
        table.iter().map(E820Entry::to_firmware),
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
            (0x10_0000, 0x3000_0000, RegionKind::Usable),
            (0x3000_0000, 0x3000_2000, RegionKind::Reserved),
            (0x3000_2000, 0x4000_0000, RegionKind::Usable),
            (0x1_0000_0000, 0x1_2000_0000, RegionKind::Usable),
            (0x1_2000_0000, 0x1_2000_1000, RegionKind::Custom(12)),
            (0x1_2000_1000, 0x1_4000_0000, RegionKind::Usable),
        ]
    );
    assert_eq!(report.entries_in, 7);
    assert_eq!(report.regions_out, 9);
    assert!(report.unsorted);
    assert_eq!(report.dropped_empty, 1);
    assert_eq!(report.usable_trimmed, 1);
    assert_eq!(report.non_usable_widened, 2);
    assert!(report.overlapping_pairs >= 2);
    assert!(report.frame_zero_withheld);
    assert_eq!(
        report.usable_bytes,
        (0x9_f000 - 0x1000) + (0x4000_0000 - 0x10_0000 - 0x2000) + 0x4000_0000 - 0x1000
    );
}

#[test]
fn too_little_room_is_an_error_not_a_panic() {
    let table = [E820Entry::new(0x1000, 0x1000, e820::USABLE); 3];
    let mut scratch = [FirmwareRegion::default(); 2];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 14];
    assert_eq!(
        normalize_entries(
            table.iter().map(E820Entry::to_firmware),
            &mut scratch,
            &mut storage,
            NormalizeOptions::default()
        )
        .unwrap_err(),
        ProtocolError::ScratchTooSmall {
            needed: 3,
            available: 2
        }
    );
    let table = [
        E820Entry::new(0x1000, 0x1000, e820::USABLE),
        E820Entry::new(0x3000, 0x1000, e820::USABLE),
    ];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 1];
    let error = normalize_entries(
        table.iter().map(E820Entry::to_firmware),
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(error, ProtocolError::Map(_)), "{error:?}");
}
