//! E820 memory maps: the BIOS `INT 15h, AX=E820h` layout, which QEMU's PVH
//! boot passes in `hvm_start_info` (`memmap_paddr`, `memmap_entries`) and
//! which Multiboot2 and `bootloader` 0.11 reuse for their kinds.
//!
//! No crate is needed for it, so this module has no feature.
//!
//! | E820 type | number | `RegionKind` |
//! |---|---|---|
//! | usable RAM | 1 | `Usable` |
//! | reserved | 2 | `Reserved` |
//! | ACPI reclaimable | 3 | `AcpiReclaimable` |
//! | ACPI NVS | 4 | `AcpiNvs` |
//! | unusable (bad memory) | 5 | `BadMemory` |
//! | any other (disabled 6, persistent 7, PRAM 12, …) | n | `Custom(n)` |

use crate::alloc::memory_map::{FirmwareRegion, RegionKind};

/// E820 type 1: usable RAM.
pub const USABLE: u32 = 1;
/// E820 type 2: reserved.
pub const RESERVED: u32 = 2;
/// E820 type 3: ACPI tables, reclaimable once read.
pub const ACPI_RECLAIMABLE: u32 = 3;
/// E820 type 4: ACPI non-volatile storage.
pub const ACPI_NVS: u32 = 4;
/// E820 type 5: unusable (faulty) memory.
pub const UNUSABLE: u32 = 5;

/// One E820 entry, laid out as the BIOS and the PVH `hvm_memmap_table_entry`
/// lay it out (24 bytes: base, length, type, then a field that PVH reserves
/// and ACPI 3.0 uses for extended attributes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct E820Entry {
    /// The first byte.
    pub base: u64,
    /// The length in bytes.
    pub len: u64,
    /// The E820 type ([`USABLE`], [`RESERVED`], …).
    pub kind: u32,
    /// Reserved (PVH) or ACPI extended attributes (BIOS).
    pub reserved: u32,
}

impl E820Entry {
    /// An entry of `len` bytes at `base` of E820 type `kind`.
    #[must_use]
    pub const fn new(base: u64, len: u64, kind: u32) -> Self {
        E820Entry {
            base,
            len,
            kind,
            reserved: 0,
        }
    }

    /// The entry as a [`FirmwareRegion`], its type mapped by [`e820_kind`].
    #[must_use]
    pub const fn to_firmware(&self) -> FirmwareRegion {
        FirmwareRegion::new(self.base, self.len, e820_kind(self.kind))
    }
}

/// The [`RegionKind`] of an E820 type, by the table of [the module](self).
#[must_use]
pub const fn e820_kind(kind: u32) -> RegionKind {
    match kind {
        USABLE => RegionKind::Usable,
        RESERVED => RegionKind::Reserved,
        ACPI_RECLAIMABLE => RegionKind::AcpiReclaimable,
        ACPI_NVS => RegionKind::AcpiNvs,
        UNUSABLE => RegionKind::BadMemory,
        other => RegionKind::Custom(other),
    }
}
