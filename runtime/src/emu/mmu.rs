//! The x86_64 four-level page walk, as the hardware performs it.

use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::config::CpuConfig;
use super::fault::{Access, AccessKind, FaultCause, PageFault, Privilege};
use super::memory::PhysMemory;
use super::psc::CachedTable;

/// Bits 12..52 of an entry: the physical address of a table or 4 KiB frame.
/// Same name and value as the paging code's mask, defined again here so the
/// emulated MMU stays an independent model of the hardware.
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
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
    /// that bit is PAT, and is dropped). `ACCESSED` and `DIRTY` are the
    /// leaf's after the walk that made the translation set them (with
    /// accessed and dirty bits modelled: `ACCESSED` always, `DIRTY` after a
    /// write or if the leaf was dirty already).
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

/// Walks the four-level tables rooted at `level_4` for `addr` as the default
/// CPU does ([`CpuConfig::DEFAULT`]: MAXPHYADDR 52, 1 GiB pages, EFER.NXE,
/// CR0.WP and CR4.PGE on; SMEP, SMAP, protection keys and 5-level paging
/// off), without any TLB or paging-structure cache.
///
/// The recursive entry needs no special case: a table entry met where the
/// walk expects a leaf is used as one, exactly as on hardware. `addr` is a raw
/// `u64` so that non-canonical addresses can be tried. Memory is not
/// changed: the translation's flags include `ACCESSED` (and `DIRTY` for a
/// write) as a real walk would leave them, but the bits are not stored.
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
    walk_with_config(memory, level_4, addr, access, CpuConfig::DEFAULT)
}

/// [`walk`] on a CPU described by `config`: its MAXPHYADDR, 1 GiB page
/// support and EFER.NXE decide which bits are reserved; with accessed and
/// dirty bits off, the translation's flags are the leaf's as they are.
///
/// # Errors
///
/// As [`walk`], with the reserved bits of `config` (see [`CpuConfig`]).
pub fn walk_with_config(
    memory: &PhysMemory,
    level_4: PhysFrame,
    addr: u64,
    access: Access,
    config: CpuConfig,
) -> Result<Translation, PageFault> {
    let start = WalkStart::root(level_4.start_address().as_u64());
    walk_from(memory, start, addr, access, config).map(|walk| walk.translation)
}

/// Where a walk begins: at the root, or below a cached non-leaf entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WalkStart {
    /// Level of the first entry to read (4..=1).
    pub(crate) level: u8,
    /// Physical address of the table holding it.
    pub(crate) table: u64,
    /// Rights of the levels above (`WRITABLE`, `USER_ACCESSIBLE`,
    /// `NO_EXECUTE` combined as in [`Translation::flags`]).
    pub(crate) rights: PageTableFlags,
}

impl WalkStart {
    pub(crate) const fn root(level_4: u64) -> Self {
        Self {
            level: 4,
            table: level_4,
            rights: PageTableFlags::WRITABLE.union(PageTableFlags::USER_ACCESSIBLE),
        }
    }
}

/// A successful walk and what it read, for the caller to apply the walk's
/// side effects (accessed and dirty bits, paging-structure caches).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walk {
    pub(crate) translation: Translation,
    /// Physical addresses of the entries read whose accessed bit was clear.
    unaccessed: [u64; 4],
    /// Number of valid `unaccessed` addresses.
    unaccessed_len: usize,
    /// Physical address of the leaf entry.
    pub(crate) leaf: u64,
    /// Whether the leaf's dirty bit was set.
    pub(crate) leaf_dirty: bool,
    /// Number of entries read.
    read: usize,
    /// The non-leaf entries read, as cacheable: (level, cached), in the
    /// order read.
    pub(crate) tables: [(u8, CachedTable); 3],
}

impl Walk {
    /// Physical addresses of the entries the walk read whose accessed bit
    /// was clear (an entry read at several levels may appear more than once).
    pub(crate) fn unaccessed(&self) -> &[u64] {
        &self.unaccessed[..self.unaccessed_len]
    }

    /// The non-leaf entries the walk read, with their levels.
    pub(crate) fn tables(&self) -> &[(u8, CachedTable)] {
        &self.tables[..self.read - 1]
    }
}

impl Walk {
    /// Nothing read yet.
    fn new(virt: VirtAddr) -> Self {
        let unused = CachedTable {
            table: 0,
            rights: PageTableFlags::empty(),
        };
        Self {
            translation: Translation {
                page: virt,
                frame: PhysAddr::zero(),
                size: LeafSize::Size4KiB,
                flags: PageTableFlags::empty(),
            },
            unaccessed: [0; 4],
            unaccessed_len: 0,
            leaf: 0,
            leaf_dirty: false,
            read: 0,
            tables: [(0, unused); 3],
        }
    }
}

/// The flags of a translation's leaf before the rights of all levels are
/// combined in: `HUGE_PAGE` for huge leaves only (bit 7 of a level-1 entry
/// is PAT), and the accessed and dirty bits the walk sets.
fn leaf_flags(
    flags: PageTableFlags,
    size: LeafSize,
    access: Access,
    config: CpuConfig,
) -> PageTableFlags {
    let mut leaf = flags;
    leaf.set(PageTableFlags::HUGE_PAGE, size != LeafSize::Size4KiB);
    leaf.remove(
        PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE | PageTableFlags::NO_EXECUTE,
    );
    if config.sets_accessed_dirty() {
        leaf |= PageTableFlags::ACCESSED;
        if access.kind == AccessKind::Write {
            leaf |= PageTableFlags::DIRTY;
        }
    }
    leaf
}

/// The walk itself, from `start`. Reads memory only.
pub(crate) fn walk_from(
    memory: &PhysMemory,
    start: WalkStart,
    addr: u64,
    access: Access,
    config: CpuConfig,
) -> Result<Walk, PageFault> {
    let fault = |level, cause| PageFault {
        addr,
        access,
        level,
        cause,
    };
    let Ok(virt) = VirtAddr::try_new(addr) else {
        return Err(fault(4, FaultCause::NonCanonical));
    };
    let reserved = config.reserved_mask();
    let rights_mask = if config.nxe() {
        PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE | PageTableFlags::NO_EXECUTE
    } else {
        PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE
    };
    let mut walk = Walk::new(virt);
    let WalkStart {
        mut level,
        mut table,
        rights: mut effective,
    } = start;
    loop {
        let shift = 12 + 9 * u32::from(level - 1);
        let at = table + ((addr >> shift) & 0x1ff) * 8;
        let entry = memory.load(at);
        walk.read += 1;
        let flags = PageTableFlags::from_bits_truncate(entry);
        if !flags.contains(PageTableFlags::ACCESSED) {
            walk.unaccessed[walk.unaccessed_len] = at;
            walk.unaccessed_len += 1;
        }
        if !flags.contains(PageTableFlags::PRESENT) {
            return Err(fault(level, FaultCause::NotPresent));
        }
        if entry & reserved != 0 {
            return Err(fault(level, FaultCause::ReservedBits));
        }
        effective &= flags | PageTableFlags::NO_EXECUTE;
        effective |= flags & PageTableFlags::NO_EXECUTE;
        effective &= rights_mask;
        let huge = flags.contains(PageTableFlags::HUGE_PAGE);
        let size = match (level, huge) {
            (4, true) => return Err(fault(4, FaultCause::ReservedBits)),
            (3, true) if !config.supports_1gib_pages() => {
                return Err(fault(3, FaultCause::ReservedBits));
            }
            (3, true) => LeafSize::Size1GiB,
            (2, true) => LeafSize::Size2MiB,
            (1, _) => LeafSize::Size4KiB,
            _ => {
                table = entry & ADDR_MASK;
                walk.tables[walk.read - 1] = (
                    level,
                    CachedTable {
                        table,
                        rights: effective,
                    },
                );
                level -= 1;
                continue;
            }
        };
        let offset_mask = size.bytes() - 1;
        if entry & ADDR_MASK & offset_mask & !HUGE_PAT != 0 {
            return Err(fault(level, FaultCause::ReservedBits));
        }
        walk.leaf = at;
        walk.leaf_dirty = flags.contains(PageTableFlags::DIRTY);
        walk.translation = Translation {
            page: virt.align_down(size.bytes()),
            frame: PhysAddr::new(entry & ADDR_MASK & !offset_mask),
            size,
            flags: leaf_flags(flags, size, access, config) | effective,
        };
        return match walk.translation.permits(access) {
            Ok(()) => Ok(walk),
            Err(cause) => Err(fault(level, cause)),
        };
    }
}
