//! `uefi` 0.41: a UEFI memory map, read through `uefi`'s own `MemoryMapRef`.

use framealloc::alloc::protocol::BootServices;
use framealloc::alloc::protocol::uefi::{normalize_descriptors, region_kind};
use framealloc::alloc::{FirmwareRegion, NormalizeOptions, RegionKind};
use uefi::mem::memory_map::{
    MemoryDescriptor, MemoryMap, MemoryMapKey, MemoryMapMeta, MemoryMapRef, MemoryType,
};

/// Descriptors laid out as firmware lays them out: `desc_size` larger than
/// the descriptor (48 bytes here, as many firmwares report).
fn firmware_buffer(descs: &[MemoryDescriptor]) -> (Vec<u64>, MemoryMapMeta) {
    const DESC_SIZE: usize = 48;
    let mut words = vec![0u64; descs.len() * DESC_SIZE / 8];
    for (i, d) in descs.iter().enumerate() {
        let at = i * DESC_SIZE / 8;
        words[at] = u64::from(d.ty.0);
        words[at + 1] = d.phys_start;
        words[at + 2] = d.virt_start;
        words[at + 3] = d.page_count;
        words[at + 4] = d.att.bits();
    }
    let meta = MemoryMapMeta {
        map_size: descs.len() * DESC_SIZE,
        desc_size: DESC_SIZE,
        map_key: MemoryMapKey::default(),
        desc_version: MemoryDescriptor::VERSION,
    };
    (words, meta)
}

fn desc(ty: MemoryType, phys_start: u64, page_count: u64) -> MemoryDescriptor {
    MemoryDescriptor {
        ty,
        phys_start,
        page_count,
        ..MemoryDescriptor::default()
    }
}

#[test]
fn kind_table() {
    use BootServices::{Exited, Running};
    let table = [
        (MemoryType::CONVENTIONAL, Running, RegionKind::Usable),
        (
            MemoryType::BOOT_SERVICES_CODE,
            Running,
            RegionKind::Custom(3),
        ),
        (MemoryType::BOOT_SERVICES_CODE, Exited, RegionKind::Usable),
        (MemoryType::LOADER_DATA, Exited, RegionKind::Bootloader),
        (MemoryType::MMIO, Exited, RegionKind::Reserved),
        (MemoryType::UNUSABLE, Exited, RegionKind::BadMemory),
        (
            MemoryType::ACPI_RECLAIM,
            Exited,
            RegionKind::AcpiReclaimable,
        ),
        (MemoryType::ACPI_NON_VOLATILE, Exited, RegionKind::AcpiNvs),
        (
            MemoryType::RUNTIME_SERVICES_DATA,
            Exited,
            RegionKind::Custom(6),
        ),
        (
            MemoryType::PERSISTENT_MEMORY,
            Exited,
            RegionKind::Custom(14),
        ),
        (
            MemoryType::custom(0x8000_0001),
            Exited,
            RegionKind::Custom(0x8000_0001),
        ),
    ];
    for (ty, boot_services, kind) in table {
        assert_eq!(
            region_kind(ty, boot_services),
            kind,
            "{ty:?} {boot_services:?}"
        );
    }
}

#[test]
fn messy_firmware_map_normalises() {
    let descs = [
        desc(MemoryType::CONVENTIONAL, 0x10_0000, 0x3_ff00), // to 1 GiB
        desc(MemoryType::CONVENTIONAL, 0x0, 0x9f),           // unsorted; frame 0 usable
        desc(MemoryType::BOOT_SERVICES_DATA, 0x2000_0000, 0x100), // overlaps conventional
        desc(MemoryType::RUNTIME_SERVICES_CODE, 0x3000_0000, 0x10), // overlaps too
        desc(MemoryType::CONVENTIONAL, 0x1_0000_0000, 0x4_0000), // above 4 GiB
        desc(MemoryType::ACPI_RECLAIM, 0x4000_0000, 0),      // empty
        desc(MemoryType::MMIO, 0xfec0_0000, 0x1),
        desc(MemoryType::CONVENTIONAL, 0xf_ffff_ffff_f000, u64::MAX), // length overflows
    ];
    let (words, meta) = firmware_buffer(&descs);
    // SAFETY: reinterpreting initialised `u64`s as bytes.
    let bytes =
        unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) };
    let memory_map = MemoryMapRef::new(bytes, meta).expect("a well-formed buffer");
    assert_eq!(memory_map.len(), descs.len());

    let mut scratch = [FirmwareRegion::default(); 8];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 34];
    let (map, report) = normalize_descriptors(
        memory_map.entries(),
        BootServices::Running,
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
            (0x10_0000, 0x2000_0000, RegionKind::Usable),
            (0x2000_0000, 0x2010_0000, RegionKind::Custom(4)),
            (0x2010_0000, 0x3000_0000, RegionKind::Usable),
            (0x3000_0000, 0x3001_0000, RegionKind::Custom(5)),
            (0x3001_0000, 0x4000_0000, RegionKind::Usable),
            (0xfec0_0000, 0xfec0_1000, RegionKind::Reserved),
            (0x1_0000_0000, 0x1_4000_0000, RegionKind::Usable),
            (0xf_ffff_ffff_f000, 1 << 52, RegionKind::Usable),
        ]
    );
    assert_eq!(report.entries_in, 8);
    assert!(report.unsorted);
    assert_eq!(report.dropped_empty, 1);
    assert_eq!(report.clipped_at_limit, 1);
    assert!(report.frame_zero_withheld);
    assert!(report.overlapping_pairs >= 2);

    // After ExitBootServices the boot-services data is free memory.
    let (map, _) = normalize_descriptors(
        memory_map.entries(),
        BootServices::Exited,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap();
    assert_eq!(map.kind_at(0x2000_0000), Some(RegionKind::Usable));
    assert_eq!(map.kind_at(0x3000_0000), Some(RegionKind::Custom(5)));
}
