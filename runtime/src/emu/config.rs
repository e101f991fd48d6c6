//! The features of the emulated CPU, and the parts of the model that can be
//! switched off.

use core::fmt;

/// What the emulated CPU supports and which of its caches are modelled.
///
/// The default is a CPU with 52 physical address bits, 1 GiB pages and
/// EFER.NXE set, that sets accessed and dirty bits and has paging-structure
/// caches. Narrow it to ask whether page-table code works on a smaller CPU:
///
/// ```
/// use framealloc::emu::{CpuConfig, FaultCause, Machine};
/// use framealloc::x86_64::{PhysAddr, VirtAddr, structures::paging::PhysFrame};
///
/// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
/// let small = CpuConfig::default().with_max_phys_addr(39)?.with_1gib_pages(false);
/// let mut machine = Machine::new(l4).with_config(small);
/// // A 1 GiB leaf in entry 0 of the level-3 table at 0x2000: reserved here.
/// let memory = machine.memory_mut();
/// memory.write_u64(PhysAddr::new(0x1000), 0x2003)?;
/// memory.write_u64(PhysAddr::new(0x2000), 0x4000_0083)?;
/// let fault = machine.read_u64(VirtAddr::new(0x1234)).unwrap_err();
/// assert_eq!((fault.cause, fault.level), (FaultCause::ReservedBits, 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(clippy::struct_excessive_bools, reason = "independent CPU features")]
pub struct CpuConfig {
    max_phys_addr: u8,
    gib_pages: bool,
    nxe: bool,
    accessed_dirty: bool,
    paging_structure_caches: bool,
}

/// A MAXPHYADDR outside `32..=52`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidMaxPhysAddr(pub u8);

impl fmt::Display for InvalidMaxPhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} physical address bits: an x86_64 CPU has between 32 and 52",
            self.0
        )
    }
}

impl core::error::Error for InvalidMaxPhysAddr {}

impl Default for CpuConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl CpuConfig {
    /// The default model: MAXPHYADDR 52, 1 GiB pages, EFER.NXE, accessed and
    /// dirty bits, paging-structure caches.
    pub const DEFAULT: Self = Self {
        max_phys_addr: 52,
        gib_pages: true,
        nxe: true,
        accessed_dirty: true,
        paging_structure_caches: true,
    };

    /// With `bits` physical address bits (bits 7:0 of EAX from CPUID leaf `0x8000_0008`; typical
    /// values are 36, 39, 46 and 52). A present entry whose address has a bit
    /// at or above `bits` set faults with
    /// [`ReservedBits`](super::FaultCause::ReservedBits) at its level.
    ///
    /// # Errors
    ///
    /// [`InvalidMaxPhysAddr`] unless `32 <= bits <= 52`.
    pub const fn with_max_phys_addr(self, bits: u8) -> Result<Self, InvalidMaxPhysAddr> {
        if bits < 32 || bits > 52 {
            return Err(InvalidMaxPhysAddr(bits));
        }
        Ok(Self {
            max_phys_addr: bits,
            ..self
        })
    }

    /// With or without 1 GiB pages (CPUID.80000001H:EDX.Page1GB). Without
    /// them, the huge-page bit in a present level-3 entry is reserved.
    #[must_use]
    pub const fn with_1gib_pages(self, supported: bool) -> Self {
        Self {
            gib_pages: supported,
            ..self
        }
    }

    /// With EFER.NXE set or clear. When clear, bit 63 (`NO_EXECUTE`) of a
    /// present entry at any level is reserved and no page is no-execute;
    /// when set, an instruction fetch from a page that is no-execute at any
    /// level faults.
    #[must_use]
    pub const fn with_nxe(self, enabled: bool) -> Self {
        Self {
            nxe: enabled,
            ..self
        }
    }

    /// Whether walks set accessed and dirty bits in memory (on by default,
    /// as on every x86_64 CPU). Turning it off keeps tables byte-for-byte as
    /// software wrote them, which a test comparing memory snapshots may want.
    #[must_use]
    pub const fn with_accessed_dirty(self, enabled: bool) -> Self {
        Self {
            accessed_dirty: enabled,
            ..self
        }
    }

    /// Whether non-leaf entries are cached in paging-structure caches (on by
    /// default). See [`Machine`](super::Machine) for what they hold and what
    /// invalidates them.
    #[must_use]
    pub const fn with_paging_structure_caches(self, enabled: bool) -> Self {
        Self {
            paging_structure_caches: enabled,
            ..self
        }
    }

    /// The number of physical address bits (MAXPHYADDR).
    pub const fn max_phys_addr(self) -> u8 {
        self.max_phys_addr
    }

    /// Whether 1 GiB pages are supported.
    pub const fn supports_1gib_pages(self) -> bool {
        self.gib_pages
    }

    /// Whether EFER.NXE is set.
    pub const fn nxe(self) -> bool {
        self.nxe
    }

    /// Whether walks set accessed and dirty bits.
    pub const fn sets_accessed_dirty(self) -> bool {
        self.accessed_dirty
    }

    /// Whether paging-structure caches are modelled.
    pub const fn has_paging_structure_caches(self) -> bool {
        self.paging_structure_caches
    }

    /// The bits of an entry that must be clear in a present entry at any
    /// level: address bits from MAXPHYADDR up to bit 51, and bit 63 without
    /// EFER.NXE.
    pub(crate) const fn reserved_mask(self) -> u64 {
        let address = ((1u64 << 52) - 1) & !((1u64 << self.max_phys_addr) - 1);
        if self.nxe { address } else { address | 1 << 63 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_mask_covers_high_address_bits_and_nx_without_nxe() {
        assert_eq!(CpuConfig::DEFAULT.reserved_mask(), 0);
        let narrow = CpuConfig::DEFAULT.with_max_phys_addr(39).unwrap();
        assert_eq!(narrow.reserved_mask(), 0x000f_ff80_0000_0000);
        assert_eq!(
            narrow.with_nxe(false).reserved_mask(),
            0x800f_ff80_0000_0000
        );
        assert_eq!(
            CpuConfig::DEFAULT.with_max_phys_addr(53),
            Err(InvalidMaxPhysAddr(53))
        );
        assert_eq!(
            CpuConfig::DEFAULT.with_max_phys_addr(31),
            Err(InvalidMaxPhysAddr(31))
        );
    }
}
