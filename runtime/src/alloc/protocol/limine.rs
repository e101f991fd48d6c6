//! `limine` 0.5 (the Limine boot protocol): `MemoryMapResponse::entries`
//! into a [`MemoryMap`].
//!
//! | Limine `EntryType` | number | `RegionKind` |
//! |---|---|---|
//! | `USABLE` | 0 | `Usable` |
//! | `RESERVED` | 1 | `Reserved` |
//! | `ACPI_RECLAIMABLE` | 2 | `AcpiReclaimable` |
//! | `ACPI_NVS` | 3 | `AcpiNvs` |
//! | `BAD_MEMORY` | 4 | `BadMemory` |
//! | `BOOTLOADER_RECLAIMABLE` | 5 | `Bootloader` |
//! | `EXECUTABLE_AND_MODULES` | 6 | `Kernel` |
//! | `FRAMEBUFFER` | 7 | `Framebuffer` |
//! | any other (newer protocol revisions) | n | `Custom(n)` (`Custom(u32::MAX)` past `u32::MAX`) |
//!
//! (`limine` 0.5 is the newest release that builds on stable Rust; 0.6
//! needs the nightly `ptr_metadata` feature.)
//!
//! ```
//! use framealloc::alloc::protocol::limine::normalize_entries;
//! use framealloc::alloc::{NormalizeOptions, RegionKind};
//! use limine::memory_map::{Entry, EntryType};
//!
//! let usable = Entry { base: 0x10_0000, length: 0x70_0000, entry_type: EntryType::USABLE };
//! let kernel = Entry { base: 0x80_0000, length: 0x2_0000, entry_type: EntryType::EXECUTABLE_AND_MODULES };
//! // In a kernel: `let entries = MEMMAP_REQUEST.get_response().unwrap().entries();`
//! let entries: [&Entry; 2] = [&usable, &kernel];
//! let mut scratch = [Default::default(); 16];
//! let mut storage = [Default::default(); 66];
//! let (map, _report) =
//!     normalize_entries(&entries, &mut scratch, &mut storage, NormalizeOptions::default())?;
//! assert_eq!(map.kind_at(0x80_0000), Some(RegionKind::Kernel));
//! # Ok::<(), framealloc::alloc::protocol::ProtocolError>(())
//! ```

use limine::memory_map::{Entry, EntryType};

use super::ProtocolError;
use crate::alloc::memory_map::{
    FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, NormalizeReport, RegionKind,
};

/// The raw number of an entry type.
fn raw(entry_type: EntryType) -> u64 {
    // SAFETY: `EntryType` is `#[repr(transparent)]` over a `u64` (the
    // protocol's `type` field), so both have the same size and every bit
    // pattern of it is a valid `u64`.
    unsafe { core::mem::transmute::<EntryType, u64>(entry_type) }
}

/// The [`RegionKind`] of a Limine entry type, by the table of
/// [the module](self).
#[must_use]
pub fn region_kind(entry_type: EntryType) -> RegionKind {
    match raw(entry_type) {
        0 => RegionKind::Usable,
        1 => RegionKind::Reserved,
        2 => RegionKind::AcpiReclaimable,
        3 => RegionKind::AcpiNvs,
        4 => RegionKind::BadMemory,
        5 => RegionKind::Bootloader,
        6 => RegionKind::Kernel,
        7 => RegionKind::Framebuffer,
        other => RegionKind::Custom(u32::try_from(other).unwrap_or(u32::MAX)),
    }
}

/// One entry as a [`FirmwareRegion`].
#[must_use]
pub fn to_firmware(entry: &Entry) -> FirmwareRegion {
    FirmwareRegion::new(entry.base, entry.length, region_kind(entry.entry_type))
}

/// Normalises Limine memory-map entries (`response.entries()`) through
/// [`normalize_entries`](super::normalize_entries).
///
/// # Errors
///
/// As [`normalize_entries`](super::normalize_entries): `scratch` needs one
/// entry per Limine entry.
pub fn normalize_entries<'s>(
    entries: &[&Entry],
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError> {
    super::normalize_entries(
        entries.iter().map(|entry| to_firmware(entry)),
        scratch,
        storage,
        options,
    )
}
