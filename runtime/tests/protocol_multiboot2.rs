//! `multiboot2` 0.28: the memory-map and EFI memory-map tags of a boot
//! information structure built with `multiboot2`'s own builder.

use framealloc::alloc::protocol::BootServices;
use framealloc::alloc::protocol::multiboot2::{
    normalize_efi_memory_map_tag, normalize_memory_map_tag, region_kind,
};
use framealloc::alloc::{FirmwareRegion, NormalizeOptions, RegionKind};
use multiboot2::{
    BootInformation, Builder, EFIMemoryDesc, EFIMemoryMapTag, MaybeDynSized, MemoryArea,
    MemoryAreaType, MemoryMapTag,
};
use uefi_raw_types::{MemoryType, PhysicalAddress};

/// The UEFI types `multiboot2` re-exports for its EFI tag.
mod uefi_raw_types {
    pub(crate) use multiboot2::EFIMemoryAreaType as MemoryType;
    pub(crate) type PhysicalAddress = u64;
}

#[test]
fn kind_table() {
    let table = [
        (MemoryAreaType::Available, RegionKind::Usable),
        (MemoryAreaType::Reserved, RegionKind::Reserved),
        (MemoryAreaType::AcpiAvailable, RegionKind::AcpiReclaimable),
        (MemoryAreaType::ReservedHibernate, RegionKind::AcpiNvs),
        (MemoryAreaType::Defective, RegionKind::BadMemory),
        (MemoryAreaType::Custom(7), RegionKind::Custom(7)),
        (MemoryAreaType::Custom(0xdead), RegionKind::Custom(0xdead)),
    ];
    for (typ, kind) in table {
        assert_eq!(region_kind(typ), kind, "{typ:?}");
    }
}

fn desc(ty: MemoryType, phys_start: PhysicalAddress, page_count: u64) -> EFIMemoryDesc {
    EFIMemoryDesc {
        ty,
        phys_start,
        page_count,
        ..EFIMemoryDesc::default()
    }
}

#[test]
fn messy_memory_map_of_a_built_mbi_normalises() {
    let mbi = Builder::new()
        .mmap(MemoryMapTag::new(&[
            MemoryArea::new(0x10_0000, 0x7ef_0000, MemoryAreaType::Available),
            MemoryArea::new(0x0, 0x9_fc00, MemoryAreaType::Available), // unsorted, unaligned
            MemoryArea::new(0x9_fc00, 0x400, MemoryAreaType::Reserved),
            MemoryArea::new(0x7fe_0000, 0x2_0000, MemoryAreaType::AcpiAvailable), // overlaps
            MemoryArea::new(0xfffc_0000, 0x4_0000, MemoryAreaType::Reserved),
            MemoryArea::new(0x1_0000_0000, 0xc000_0000, MemoryAreaType::Available), // > 4 GiB
            MemoryArea::new(0x5000_0000, 0, MemoryAreaType::Defective),             // empty
            MemoryArea::new(0x1_c000_0000, 0x1000, MemoryAreaType::Custom(12)),
        ]))
        .build();
    // SAFETY: `mbi` is a complete boot information structure, alive and
    // unchanged while `info` is used.
    let info = unsafe { BootInformation::load(MaybeDynSized::as_ptr(&*mbi)) }
        .expect("the builder's structure loads");
    let tag = info.memory_map_tag().expect("the builder wrote the tag");
    let mut scratch = [FirmwareRegion::default(); 8];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 34];
    let (map, report) =
        normalize_memory_map_tag(tag, &mut scratch, &mut storage, NormalizeOptions::default())
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
            (0x10_0000, 0x7fe_0000, RegionKind::Usable),
            (0x7fe_0000, 0x800_0000, RegionKind::AcpiReclaimable),
            (0xfffc_0000, 0x1_0000_0000, RegionKind::Reserved),
            (0x1_0000_0000, 0x1_c000_0000, RegionKind::Usable),
            (0x1_c000_0000, 0x1_c000_1000, RegionKind::Custom(12)),
        ]
    );
    assert_eq!(report.entries_in, 8);
    assert!(report.unsorted);
    assert_eq!(report.dropped_empty, 1);
    assert_eq!(report.usable_trimmed, 1);
    assert_eq!(report.non_usable_widened, 1);
    assert!(report.overlapping_pairs >= 2);
    assert!(report.frame_zero_withheld);
    assert_eq!(
        report.usable_bytes,
        0x9_e000 + (0x7fe_0000 - 0x10_0000) + 0xc000_0000
    );
}

#[test]
fn efi_memory_map_tag_normalises() {
    let descs = [
        desc(MemoryType::CONVENTIONAL, 0x10_0000, 0x700),
        desc(MemoryType::BOOT_SERVICES_DATA, 0x80_0000, 0x10),
        desc(MemoryType::LOADER_CODE, 0x1000, 0x10),
        desc(MemoryType::RUNTIME_SERVICES_CODE, 0x1_0000_0000, 0x1),
        desc(MemoryType::CONVENTIONAL, 0x90_0000, 0),
    ];
    let tag = EFIMemoryMapTag::new_from_descs(&descs);
    let mut scratch = [FirmwareRegion::default(); 5];
    let mut storage = [framealloc::alloc::MemoryRegion::default(); 22];
    let (map, report) = normalize_efi_memory_map_tag(
        &tag,
        BootServices::Exited,
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
            (0x1000, 0x1_1000, RegionKind::Bootloader),
            (0x10_0000, 0x81_0000, RegionKind::Usable), // boot services data merged in
            (0x1_0000_0000, 0x1_0000_1000, RegionKind::Custom(5)),
        ]
    );
    assert!(report.unsorted);
    assert_eq!(report.dropped_empty, 1);

    let (map, _) = normalize_efi_memory_map_tag(
        &tag,
        BootServices::Running,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    )
    .unwrap();
    assert_eq!(map.kind_at(0x80_0000), Some(RegionKind::Custom(4)));
}
