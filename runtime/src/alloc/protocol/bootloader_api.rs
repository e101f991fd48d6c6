//! `bootloader_api` 0.11 (the `bootloader` 0.11 crate's kernel side):
//! `BootInfo::memory_regions` into a [`MemoryMap`].
//!
//! | `MemoryRegionKind` | `RegionKind` |
//! |---|---|
//! | `Usable` | `Usable` |
//! | `Bootloader` | `Bootloader` |
//! | `UnknownBios(t)` | by the E820 table, [`e820_kind`]`(t)` (so `Custom(t)` for types it has no name for) |
//! | `UnknownUefi(t)` | by the UEFI table, [`uefi_kind`]`(t, BootServices::Exited)` (the kernel runs after the loader exited boot services) |
//! | a kind added by a later `bootloader_api` | `Reserved` (it carries no number to keep) |
//!
//! ```
//! use bootloader_api::info::{MemoryRegion, MemoryRegionKind};
//! use framealloc::alloc::protocol::bootloader_api::normalize_regions;
//! use framealloc::alloc::{NormalizeOptions, RegionKind};
//!
//! # let regions = [
//! #     MemoryRegion { start: 0x1000, end: 0x9_f000, kind: MemoryRegionKind::Usable },
//! #     MemoryRegion { start: 0x10_0000, end: 0x40_0000, kind: MemoryRegionKind::Bootloader },
//! # ];
//! // In a kernel: `let regions = &*boot_info.memory_regions;`
//! let mut scratch = [Default::default(); 64];
//! let mut storage = [Default::default(); 258];
//! let (map, report) =
//!     normalize_regions(&regions, &mut scratch, &mut storage, NormalizeOptions::default())?;
//! assert_eq!(map.kind_at(0x20_0000), Some(RegionKind::Bootloader));
//! assert_eq!(report.usable_bytes, 0x9_e000);
//! # Ok::<(), framealloc::alloc::protocol::ProtocolError>(())
//! ```
//!
//! [`e820_kind`]: super::e820::e820_kind
//! [`uefi_kind`]: super::uefi_kind

use bootloader_api::info::{MemoryRegion as BootRegion, MemoryRegionKind};

use super::e820::e820_kind;
use super::{BootServices, ProtocolError, normalize_entries, uefi_kind};
use crate::alloc::memory_map::{
    FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, NormalizeReport, RegionKind,
};

/// The [`RegionKind`] of a `bootloader_api` region kind, by the table of
/// [the module](self).
#[must_use]
pub const fn region_kind(kind: MemoryRegionKind) -> RegionKind {
    match kind {
        MemoryRegionKind::Usable => RegionKind::Usable,
        MemoryRegionKind::Bootloader => RegionKind::Bootloader,
        MemoryRegionKind::UnknownBios(t) => e820_kind(t),
        MemoryRegionKind::UnknownUefi(t) => uefi_kind(t, BootServices::Exited),
        _ => RegionKind::Reserved,
    }
}

/// One region as a [`FirmwareRegion`] (`end < start` becomes an empty entry,
/// which [`normalize`](crate::alloc::normalize) drops and counts).
#[must_use]
pub const fn to_firmware(region: &BootRegion) -> FirmwareRegion {
    FirmwareRegion::new(
        region.start,
        region.end.saturating_sub(region.start),
        region_kind(region.kind),
    )
}

/// Normalises `bootloader_api` memory regions (`&*boot_info.memory_regions`)
/// through [`normalize_entries`].
///
/// # Errors
///
/// As [`normalize_entries`]: `scratch` needs one entry per region.
pub fn normalize_regions<'s>(
    regions: &[BootRegion],
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError> {
    normalize_entries(regions.iter().map(to_firmware), scratch, storage, options)
}
