//! `multiboot2` 0.28 (GRUB and other Multiboot2 loaders): the memory-map tag
//! and the EFI memory-map tag into a [`MemoryMap`].
//!
//! The memory-map tag's types are E820's, so it follows the E820 table:
//!
//! | `MemoryAreaType` | number | `RegionKind` |
//! |---|---|---|
//! | `Available` | 1 | `Usable` |
//! | `Reserved` | 2 | `Reserved` |
//! | `AcpiAvailable` | 3 | `AcpiReclaimable` |
//! | `ReservedHibernate` | 4 | `AcpiNvs` |
//! | `Defective` | 5 | `BadMemory` |
//! | `Custom(n)` | n | `Custom(n)` |
//!
//! The EFI memory-map tag holds UEFI descriptors and follows the UEFI table
//! of [`uefi_kind`].
//!
//! ```
//! use framealloc::alloc::protocol::multiboot2::normalize_memory_map_tag;
//! use framealloc::alloc::{NormalizeOptions, RegionKind};
//! use multiboot2::{MemoryArea, MemoryAreaType, MemoryMapTag};
//!
//! let tag = MemoryMapTag::new(&[
//!     MemoryArea::new(0x0, 0x9_fc00, MemoryAreaType::Available),
//!     MemoryArea::new(0x10_0000, 0x7f0_0000, MemoryAreaType::Available),
//! ]);
//! // In a kernel: `let tag = boot_info.memory_map_tag().unwrap();`
//! let mut scratch = [Default::default(); 32];
//! let mut storage = [Default::default(); 130];
//! let (map, report) =
//!     normalize_memory_map_tag(&tag, &mut scratch, &mut storage, NormalizeOptions::default())?;
//! assert_eq!(map.kind_at(0x10_0000), Some(RegionKind::Usable));
//! assert!(report.frame_zero_withheld);
//! # Ok::<(), framealloc::alloc::protocol::ProtocolError>(())
//! ```

use multiboot2::{EFIMemoryDesc, EFIMemoryMapTag, MemoryArea, MemoryAreaType, MemoryMapTag};

use super::e820::e820_kind;
use super::{BootServices, ProtocolError, normalize_entries, uefi_kind};
use crate::alloc::memory_map::{
    FRAME_SIZE, FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, NormalizeReport,
    RegionKind,
};

/// The [`RegionKind`] of a Multiboot2 memory-area type, by the table of
/// [the module](self).
#[must_use]
pub const fn region_kind(typ: MemoryAreaType) -> RegionKind {
    e820_kind(typ.val())
}

/// One memory area as a [`FirmwareRegion`].
#[must_use]
pub const fn to_firmware(area: &MemoryArea) -> FirmwareRegion {
    FirmwareRegion::new(area.start_address(), area.size(), region_kind(area.typ()))
}

/// One EFI descriptor of the EFI memory-map tag as a [`FirmwareRegion`].
#[must_use]
pub const fn efi_to_firmware(desc: &EFIMemoryDesc, boot_services: BootServices) -> FirmwareRegion {
    FirmwareRegion::new(
        desc.phys_start,
        desc.page_count.saturating_mul(FRAME_SIZE),
        uefi_kind(desc.ty.0, boot_services),
    )
}

/// Normalises the memory-map tag (`boot_info.memory_map_tag()`) through
/// [`normalize_entries`].
///
/// # Errors
///
/// As [`normalize_entries`]: `scratch` needs one entry per memory area.
pub fn normalize_memory_map_tag<'s>(
    tag: &MemoryMapTag,
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError> {
    normalize_entries(
        tag.memory_areas().iter().map(to_firmware),
        scratch,
        storage,
        options,
    )
}

/// Normalises the EFI memory-map tag (`boot_info.efi_memory_map_tag()`,
/// which `multiboot2` returns only once boot services have exited: pass
/// [`BootServices::Exited`] for it) through [`normalize_entries`].
///
/// # Errors
///
/// As [`normalize_entries`]: `scratch` needs one entry per descriptor.
pub fn normalize_efi_memory_map_tag<'s>(
    tag: &EFIMemoryMapTag,
    boot_services: BootServices,
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError> {
    normalize_entries(
        tag.memory_areas()
            .map(|desc| efi_to_firmware(desc, boot_services)),
        scratch,
        storage,
        options,
    )
}
