//! `uefi` 0.41: a UEFI memory map (`boot::memory_map`, or the map returned by
//! `boot::exit_boot_services`) into a [`MemoryMap`], by the UEFI table of
//! [`uefi_kind`].
//!
//! Pass [`BootServices::Exited`] for the map `exit_boot_services` returns
//! (boot-services code and data are then free memory), and
//! [`BootServices::Running`] for a map read before it.
//!
//! ```
//! use framealloc::alloc::protocol::BootServices;
//! use framealloc::alloc::protocol::uefi::normalize_descriptors;
//! use framealloc::alloc::{NormalizeOptions, RegionKind};
//! use uefi::mem::memory_map::{MemoryDescriptor, MemoryType};
//!
//! let descriptors = [
//!     MemoryDescriptor { ty: MemoryType::CONVENTIONAL, phys_start: 0x10_0000, page_count: 0x700, ..Default::default() },
//!     MemoryDescriptor { ty: MemoryType::BOOT_SERVICES_DATA, phys_start: 0x80_0000, page_count: 0x10, ..Default::default() },
//! ];
//! // In a loader: `let map = unsafe { boot::exit_boot_services(None) };`
//! // and `normalize_descriptors(map.entries(), BootServices::Exited, …)`.
//! let mut scratch = [Default::default(); 16];
//! let mut storage = [Default::default(); 66];
//! let (map, _report) = normalize_descriptors(
//!     &descriptors,
//!     BootServices::Running,
//!     &mut scratch,
//!     &mut storage,
//!     NormalizeOptions::default(),
//! )?;
//! assert_eq!(map.kind_at(0x80_0000), Some(RegionKind::Custom(4))); // still in use
//! # Ok::<(), framealloc::alloc::protocol::ProtocolError>(())
//! ```

use uefi::mem::memory_map::{MemoryDescriptor, MemoryType};

use super::{BootServices, ProtocolError, normalize_entries, uefi_kind};
use crate::alloc::memory_map::{
    FRAME_SIZE, FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, NormalizeReport,
    RegionKind,
};

/// The [`RegionKind`] of a UEFI memory type, by the table of [`uefi_kind`].
#[must_use]
pub const fn region_kind(ty: MemoryType, boot_services: BootServices) -> RegionKind {
    uefi_kind(ty.0, boot_services)
}

/// One descriptor as a [`FirmwareRegion`] (`page_count` 4 KiB pages from
/// `phys_start`; a length past `u64::MAX` is clipped like any entry beyond
/// 2^52).
#[must_use]
pub const fn to_firmware(desc: &MemoryDescriptor, boot_services: BootServices) -> FirmwareRegion {
    FirmwareRegion::new(
        desc.phys_start,
        desc.page_count.saturating_mul(FRAME_SIZE),
        region_kind(desc.ty, boot_services),
    )
}

/// Normalises UEFI memory descriptors (`map.entries()` of any
/// `uefi::mem::memory_map::MemoryMap`, or a slice of them) through
/// [`normalize_entries`].
///
/// # Errors
///
/// As [`normalize_entries`]: `scratch` needs one entry per descriptor.
pub fn normalize_descriptors<'a, 's, I>(
    descriptors: I,
    boot_services: BootServices,
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError>
where
    I: IntoIterator<Item = &'a MemoryDescriptor>,
{
    normalize_entries(
        descriptors
            .into_iter()
            .map(|desc| to_firmware(desc, boot_services)),
        scratch,
        storage,
        options,
    )
}
