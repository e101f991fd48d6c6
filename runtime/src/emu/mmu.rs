//! The x86_64 four-level page walk, as the hardware performs it.

use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::fault::{Access, AccessKind, FaultCause, PageFault, Privilege};
use super::memory::PhysMemory;

/// Bits 12..52 of an entry: the physical address of a table or 4 KiB frame.
pub(crate) const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bit 12 of a 2 MiB or 1 GiB leaf selects the PAT entry; it is not address.
const HUGE_PAT: u64 = 1 << 12;

/// The size of the page a leaf entry maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeafSize {
    /// A 4 KiB page: leaf at level 1.
    Size4KiB,
    /// A 2 MiB page: level-2 entry with the huge-page bit.
    Size2MiB,
    /// A 1 GiB page: level-3 entry with the huge-page bit.
    Size1GiB,
}

impl LeafSize {
    /// All three sizes, smallest first.
    pub const ALL: [Self; 3] = [Self::Size4KiB, Self::Size2MiB, Self::Size1GiB];

    /// The page size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4KiB => 1 << 12,
            Self::Size2MiB => 1 << 21,
            Self::Size1GiB => 1 << 30,
        }
    }

    /// The level (1, 2 or 3) of the entry that maps a page of this size.
    pub const fn level(self) -> u8 {
        match self {
            Self::Size4KiB => 1,
            Self::Size2MiB => 2,
            Self::Size1GiB => 3,
        }
    }
}

/// A completed walk: one virtual page, the frame behind it and the effective
/// permissions. This is also what a TLB entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// First address of the virtual page.
    pub page: VirtAddr,
    /// First address of the physical frame.
    pub frame: PhysAddr,
    /// Size of page and frame.
    pub size: LeafSize,
    /// The leaf entry's flags, with `WRITABLE` and `USER_ACCESSIBLE` kept only
    /// if every level sets them and `NO_EXECUTE` set if any level does.
    /// `HUGE_PAGE` is set for 2 MiB and 1 GiB leaves only (in a level-1 entry
    /// that bit is PAT, and is dropped).
    pub flags: PageTableFlags,
}

impl Translation {
    /// Whether `addr` lies in this page.
    pub fn covers(&self, addr: VirtAddr) -> bool {
        addr.as_u64() & !(self.size.bytes() - 1) == self.page.as_u64()
    }

    /// The physical address `addr` (inside this page) translates to.
    pub fn phys(&self, addr: VirtAddr) -> PhysAddr {
        self.frame + (addr.as_u64() & (self.size.bytes() - 1))
    }

    /// Checks the effective permissions against `access`, in the order
    /// privilege, write, execute.
    ///
    /// # Errors
    ///
    /// The protection [`FaultCause`] that refuses the access.
    pub fn permits(&self, access: Access) -> Result<(), FaultCause> {
        let flags = self.flags;
        if access.privilege == Privilege::User && !flags.contains(PageTableFlags::USER_ACCESSIBLE) {
            Err(FaultCause::SupervisorOnly)
        } else if access.kind == AccessKind::Write && !flags.contains(PageTableFlags::WRITABLE) {
            Err(FaultCause::ReadOnly)
        } else if access.kind == AccessKind::Execute && flags.contains(PageTableFlags::NO_EXECUTE) {
            Err(FaultCause::NoExecute)
        } else {
            Ok(())
        }
    }
}

/// Walks the four-level tables rooted at `level_4` for `addr` as hardware
/// does (EFER.NXE, CR0.WP and CR4.PGE on; SMEP, SMAP, protection keys and
/// 5-level paging off), without any TLB.
///
/// The recursive entry needs no special case: a table entry met where the
/// walk expects a leaf is used as one, exactly as on hardware. `addr` is a raw
/// `u64` so that non-canonical addresses can be tried.
///
/// # Errors
///
/// The [`PageFault`] the CPU would raise: a non-present entry, a reserved bit
/// (huge-page bit at level 4, misaligned huge-page address), a protection
/// violation, or a non-canonical address.
pub fn walk(
    memory: &PhysMemory,
    level_4: PhysFrame,
    addr: u64,
    access: Access,
) -> Result<Translation, PageFault> {
    let fault = |level, cause| PageFault {
        addr,
        access,
        level,
        cause,
    };
    let Ok(virt) = VirtAddr::try_new(addr) else {
        return Err(fault(4, FaultCause::NonCanonical));
    };
    let mut table = level_4.start_address().as_u64();
    let mut effective = PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
    let mut level: u8 = 4;
    loop {
        let shift = 12 + 9 * u32::from(level - 1);
        let entry = memory.load(table + ((addr >> shift) & 0x1ff) * 8);
        let flags = PageTableFlags::from_bits_truncate(entry);
        if !flags.contains(PageTableFlags::PRESENT) {
            return Err(fault(level, FaultCause::NotPresent));
        }
        effective &= flags | PageTableFlags::NO_EXECUTE;
        effective |= flags & PageTableFlags::NO_EXECUTE;
        let huge = flags.contains(PageTableFlags::HUGE_PAGE);
        let size = match (level, huge) {
            (4, true) => return Err(fault(4, FaultCause::ReservedBits)),
            (3, true) => LeafSize::Size1GiB,
            (2, true) => LeafSize::Size2MiB,
            (1, _) => LeafSize::Size4KiB,
            _ => {
                table = entry & ADDRESS_MASK;
                level -= 1;
                continue;
            }
        };
        let offset_mask = size.bytes() - 1;
        if entry & ADDRESS_MASK & offset_mask & !HUGE_PAT != 0 {
            return Err(fault(level, FaultCause::ReservedBits));
        }
        let mut leaf_flags = flags;
        leaf_flags.set(PageTableFlags::HUGE_PAGE, size != LeafSize::Size4KiB);
        leaf_flags.remove(
            PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE | PageTableFlags::NO_EXECUTE,
        );
        let translation = Translation {
            page: virt.align_down(size.bytes()),
            frame: PhysAddr::new(entry & ADDRESS_MASK & !offset_mask),
            size,
            flags: leaf_flags | effective,
        };
        return match translation.permits(access) {
            Ok(()) => Ok(translation),
            Err(cause) => Err(fault(level, cause)),
        };
    }
}
