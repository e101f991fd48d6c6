//! Memory maps from boot protocols, normalised into a [`MemoryMap`].
//!
//! A kernel receives its memory map from whatever loaded it. Each submodule
//! reads one protocol's map, in that protocol crate's own types, and turns it
//! into [`FirmwareRegion`]s by one documented table of kinds; [`normalize`]
//! then makes the [`MemoryMap`] and reports what it changed. Every module is
//! `no_std` and behind a feature of its own:
//!
//! | module | feature | crate | map read |
//! |---|---|---|---|
//! | [`e820`] | (always) | none: the BIOS / PVH layout | E820 entries (QEMU's PVH `hvm_start_info`) |
//! | `bootloader_api` | `bootloader_api` | `bootloader_api` 0.11 | `BootInfo::memory_regions` |
//! | `bootloader09` | `bootloader09` | `bootloader` 0.9 (no default features) | `bootinfo::MemoryMap`, plus a region-typed allocator on it |
//! | `multiboot2` | `multiboot2` | `multiboot2` 0.28 | the memory-map tag and the EFI memory-map tag |
//! | `limine` | `limine` | `limine` 0.5 | `MemoryMapResponse::entries` |
//! | `uefi` | `uefi` | `uefi` 0.41 | `uefi::mem::memory_map::MemoryMap::entries` |
//!
//! # Kinds framealloc has no name for
//!
//! Each protocol's kinds map onto [`RegionKind`] by the table in its module.
//! A kind with no [`RegionKind`] of its own is kept, not folded into
//! `Reserved`: it becomes [`RegionKind::Custom`] carrying the protocol's own
//! number for it (the raw E820 or UEFI type, the Limine entry type, or the
//! constant named in the module), so the map still tells it apart. `Custom`
//! regions are never usable, so nothing is handed out from them.
//!
//! # Storage
//!
//! Nothing here uses a heap: the caller gives room for the converted entries
//! (`scratch`, one [`FirmwareRegion`] per protocol entry) and for the map
//! (`storage`, at most `4 * entries + 2` regions, see [`normalize`]).
//!
//! ```
//! use framealloc::alloc::protocol::{e820, normalize_entries};
//! use framealloc::alloc::{NormalizeOptions, RegionKind};
//!
//! // An E820 map as QEMU's firmware reports it for `-m 128M`.
//! let table = [
//!     e820::E820Entry::new(0x0, 0x9fc00, e820::USABLE),
//!     e820::E820Entry::new(0x9fc00, 0x400, e820::RESERVED),
//!     e820::E820Entry::new(0xf0000, 0x10000, e820::RESERVED),
//!     e820::E820Entry::new(0x10_0000, 0x7ee_0000, e820::USABLE),
//!     e820::E820Entry::new(0x7fe_0000, 0x2_0000, e820::RESERVED),
//! ];
//! let mut scratch = [Default::default(); 8];
//! let mut storage = [Default::default(); 24];
//! let (map, report) = normalize_entries(
//!     table.iter().map(e820::E820Entry::to_firmware),
//!     &mut scratch,
//!     &mut storage,
//!     NormalizeOptions::default(),
//! )
//! .unwrap();
//! assert_eq!(map.kind_at(0x10_0000), Some(RegionKind::Usable));
//! assert_eq!(map.kind_at(0x9f000), Some(RegionKind::Reserved)); // grown outward
//! assert_eq!(report.entries_in, 5);
//! ```

use core::fmt;

use super::memory_map::{
    FirmwareRegion, MapError, MemoryMap, MemoryRegion, NormalizeOptions, NormalizeReport,
    RegionKind, normalize,
};

#[cfg(feature = "bootloader09")]
pub mod bootloader09;
#[cfg(feature = "bootloader_api")]
pub mod bootloader_api;
pub mod e820;
#[cfg(feature = "limine")]
pub mod limine;
#[cfg(feature = "multiboot2")]
pub mod multiboot2;
#[cfg(feature = "uefi")]
pub mod uefi;

/// Why a protocol's memory map could not be normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The protocol map has more entries than `scratch` holds.
    ScratchTooSmall {
        /// The number of entries the protocol map has.
        needed: usize,
        /// The number of entries `scratch` holds.
        available: usize,
    },
    /// [`normalize`] refused (its output storage is too small).
    Map(MapError),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProtocolError::ScratchTooSmall { needed, available } => write!(
                f,
                "the boot protocol's map has {needed} entries but the scratch space holds {available}"
            ),
            ProtocolError::Map(error) => error.fmt(f),
        }
    }
}

impl core::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ProtocolError::Map(error) => Some(error),
            ProtocolError::ScratchTooSmall { .. } => None,
        }
    }
}

impl From<MapError> for ProtocolError {
    fn from(error: MapError) -> Self {
        ProtocolError::Map(error)
    }
}

/// Collects `entries` into `scratch` and [`normalize`]s them into `storage`.
///
/// Every protocol module's `normalize_*` function is this over its
/// conversion; call it directly to add entries of your own (the kernel image,
/// the boot information) before normalising: a non-usable entry wins over a
/// usable one where they overlap.
///
/// # Errors
///
/// [`ProtocolError::ScratchTooSmall`] (with the exact need) if `scratch`
/// cannot hold every entry; [`ProtocolError::Map`] if `storage` cannot hold
/// the map.
pub fn normalize_entries<'s, I>(
    entries: I,
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError>
where
    I: IntoIterator<Item = FirmwareRegion>,
{
    let mut count = 0;
    for entry in entries {
        if let Some(slot) = scratch.get_mut(count) {
            *slot = entry;
        }
        count += 1;
    }
    if count > scratch.len() {
        return Err(ProtocolError::ScratchTooSmall {
            needed: count,
            available: scratch.len(),
        });
    }
    Ok(normalize(&scratch[..count], storage, options)?)
}

/// The [`RegionKind`] of a UEFI memory type (`EFI_MEMORY_TYPE`), shared by
/// the `uefi`, `multiboot2` (EFI memory-map tag) and `bootloader_api`
/// (`UnknownUefi`) conversions.
///
/// | UEFI type | number | `RegionKind` |
/// |---|---|---|
/// | `EfiConventionalMemory` | 7 | `Usable` |
/// | `EfiBootServicesCode`, `EfiBootServicesData` | 3, 4 | `Usable` once boot services have exited, else `Custom(3)`, `Custom(4)` |
/// | `EfiLoaderCode`, `EfiLoaderData` | 1, 2 | `Bootloader` |
/// | `EfiReservedMemoryType` | 0 | `Reserved` |
/// | `EfiMemoryMappedIO`, `EfiMemoryMappedIOPortSpace` | 11, 12 | `Reserved` |
/// | `EfiUnusableMemory` | 8 | `BadMemory` |
/// | `EfiACPIReclaimMemory` | 9 | `AcpiReclaimable` |
/// | `EfiACPIMemoryNVS` | 10 | `AcpiNvs` |
/// | runtime services code and data, PAL code, persistent, unaccepted, OEM and OS-loader types, any other | 5, 6, 13, 14, 15, … | `Custom(number)` |
#[must_use]
pub const fn uefi_kind(memory_type: u32, boot_services: BootServices) -> RegionKind {
    match memory_type {
        7 => RegionKind::Usable,
        3 | 4 if matches!(boot_services, BootServices::Exited) => RegionKind::Usable,
        1 | 2 => RegionKind::Bootloader,
        0 | 11 | 12 => RegionKind::Reserved,
        8 => RegionKind::BadMemory,
        9 => RegionKind::AcpiReclaimable,
        10 => RegionKind::AcpiNvs,
        other => RegionKind::Custom(other),
    }
}

/// Whether UEFI boot services were still running when a UEFI memory map was
/// taken: their code and data become free memory only once they have exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootServices {
    /// Boot services still run (the map was read before `ExitBootServices`):
    /// their memory is kept as `Custom(3)` / `Custom(4)`.
    Running,
    /// `ExitBootServices` has been called: their memory is `Usable`.
    Exited,
}
