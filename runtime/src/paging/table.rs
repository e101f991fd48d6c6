//! [`RecursivePageTable`]: construction, recursive addresses and the
//! single-page operations.

use core::fmt;

use x86_64::structures::paging::mapper::{
    FlagUpdateError, MapToError, MappedFrame, TranslateError, TranslateResult, UnmapError,
};
use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{
    FrameAllocator, Page, PageSize, PageTableFlags, PageTableIndex, PhysFrame, Size1GiB, Size2MiB,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::range::{Allocated, DataFrames, Split};
use super::{Backend, EntrySize, Flush};

pub(crate) const PRESENT: u64 = 1;
pub(crate) const WRITABLE: u64 = 1 << 1;
pub(crate) const USER: u64 = 1 << 2;
pub(crate) const HUGE: u64 = 1 << 7;
pub(crate) const GLOBAL: u64 = 1 << 8;
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Sign-extends a 48-bit address to a canonical one.
#[inline(always)]
pub(crate) const fn sign_extend(addr: u64) -> u64 {
    ((addr << 16).cast_signed() >> 16).cast_unsigned()
}

/// A 4-level page table reached through a recursive entry of its level-4
/// table, over a [`Backend`] (the real MMU or an emulated one).
///
/// Every page table of the hierarchy is visible at a *recursive address*:
/// with recursive index `r`, the level-1 table covering address `v` sits at
/// `r:p4(v):p3(v):p2(v)`, the level-2 table at `r:r:p4(v):p3(v)`, and so on.
/// These addresses are computed directly from the page number, so an
/// operation reads one entry per level and no other memory.
///
/// Beyond `x86_64::structures::paging::RecursivePageTable`:
///
/// - generic over the [`Backend`], so the same code runs on the CPU
///   ([`Mmu`](super::Mmu)) and on the host under an emulated MMU and TLB;
/// - flush tokens ([`Flush`]) that go through the backend;
/// - a newly created table's recursive address is invalidated before the
///   table is zeroed through it, and [`clean_up`](Self::clean_up) invalidates
///   the recursive address of every table it frees *before* handing the
///   frame to the deallocator, so no stale translation survives a reclaim;
/// - failed operations leave the tables exactly as they were (`x86_64` may
///   leave parent flags changed or half-built paths behind), and never panic;
/// - range operations, map-with-allocation and a mapping dump.
///
/// The native methods below mirror `x86_64`'s `Mapper`/`Translate` and return
/// the same error types with the same meaning. On the hardware backend
/// ([`Mmu`](super::Mmu) and [`NoFlushMmu`](super::NoFlushMmu)) the table
/// also implements `x86_64`'s `Mapper<Size4KiB | Size2MiB | Size1GiB>`, so
/// it drops into kernel code written for `x86_64`; `Translate` and
/// `CleanUp` are implemented on every backend. `Mapper` is not implemented
/// over the emulator: its `MapperFlush::flush` executes `invlpg` itself,
/// which the emulated TLB would never see (and which faults outside ring
/// 0). To run code written against `x86_64`'s traits on the host, use
/// `x86_64`'s own `OffsetPageTable` over ordinary memory, as
/// `runtime/examples/tour.rs` does, and `.ignore()` its flushes.
///
/// # Rules for flags
///
/// - Leaf flags: bits 12–51 are the frame in every entry, so address bits
///   in `flags` are ignored. `HUGE_PAGE` is implied for 2 MiB and 1 GiB
///   pages and refused for 4 KiB pages with `ParentEntryHugePage` (bit 7 of
///   a level-1 entry is PAT; such an entry could not be unmapped or
///   reclaimed as a 4 KiB page; `x86_64` panics there).
/// - Parent flags: `GLOBAL`, `HUGE_PAGE` and address bits never reach a
///   parent entry (see
///   [`map_to_with_table_flags`](Self::map_to_with_table_flags) for why
///   `GLOBAL` would leak page tables across address spaces).
/// - `WRITABLE` on parents: every table is written through its recursive
///   address, whose rights are the AND of the entries above it, so every
///   operation that writes below a parent entry without `WRITABLE` (map,
///   unmap, flag updates, ranges, [`clean_up`](Self::clean_up),
///   [`set_parent_flags`](Self::set_parent_flags) of a lower level) adds
///   `WRITABLE` back to it first, followed by a full flush that drops
///   global entries too, instead of faulting. Write-protect memory in the
///   leaves; a parent entry's missing `WRITABLE` does not survive the next
///   change below it.
/// - The recursive entry must be present, writable and supervisor-only
///   (checked by [`new`](Self::new)).
///
/// Addresses inside the recursive window itself (level-4 index equal to the
/// recursive index) are page tables: mapping, unmapping or changing flags
/// there fails with `ParentEntryHugePage`, since the recursive entry maps the
/// whole window like one huge page.
///
/// # Examples
///
/// On the emulator (feature `emu`); on the CPU use [`Mmu`](super::Mmu) as
/// the backend instead:
///
/// ```
/// # #[cfg(feature = "emu")] {
/// use framealloc::emu::Machine;
/// use framealloc::RecursivePageTable;
/// use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB};
/// use framealloc::x86_64::{PhysAddr, VirtAddr};
///
/// let level_4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
/// let machine = Machine::with_recursive_table(PageTableIndex::new(510), level_4).unwrap();
/// let mut table = RecursivePageTable::new(machine, PageTableIndex::new(510)).unwrap();
/// let mut next = 0x10_0000u64;
/// // SAFETY: every call yields a fresh frame.
/// let mut frames = unsafe {
///     framealloc::from_fn(|| { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) })
/// };
///
/// let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
/// let frame = PhysFrame::containing_address(PhysAddr::new(0x80_0000));
/// table.backend_mut().memory_mut().write_u64(frame.start_address(), 42).unwrap();
/// // SAFETY: emulated memory.
/// unsafe { table.map_to(page, frame, F::PRESENT | F::WRITABLE, &mut frames) }.unwrap().flush();
/// assert_eq!(table.backend().read_u64(page.start_address()).unwrap(), 42); // through the TLB
///
/// let (unmapped, flush) = table.unmap(page).unwrap();
/// assert_eq!(unmapped, frame);
/// flush.flush();
/// assert!(table.backend().read_u64(page.start_address()).is_err()); // a page fault
/// # }
/// ```
pub struct RecursivePageTable<B: Backend> {
    backend: B,
    recursive_index: u64,
    /// `bases[l - 1]`: the recursive address of the level-`l` tables with all
    /// non-recursive indices zero.
    bases: [u64; 4],
    /// Recursive address of the recursive entry itself: the level-4 entry
    /// address of every page in the recursive window.
    window_entry: u64,
    spare: SpareFrames,
}

/// Why [`RecursivePageTable::new`] rejected a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidRecursiveTable {
    /// Index 0 puts the level-4 table (and other tables) at virtual address
    /// 0, the null pointer, which Rust code may never dereference.
    IndexZero,
    /// Index 511 puts the level-4 table in the last page of the address
    /// space. A Rust object there would end past the last address, which the
    /// language forbids (`x86_64` 0.15 documents its own
    /// `RecursivePageTable::new` with index 511 as unsound for this reason).
    /// Choose another index, e.g. 510.
    IndexLast,
    /// The entry at the recursive index does not point to the active level-4
    /// frame as a present, non-huge table entry.
    NotRecursive {
        /// The entry found at the recursive index.
        entry: u64,
        /// The frame the backend reports as the active level-4 table.
        level_4: PhysFrame,
    },
    /// The recursive entry is not writable, so no table could be changed
    /// through it.
    ReadOnly,
    /// The recursive entry has `USER_ACCESSIBLE` set, which would let code
    /// in ring 3 read and write every page table through the recursive
    /// window.
    UserAccessible {
        /// The recursive entry found.
        entry: u64,
    },
}

impl fmt::Display for InvalidRecursiveTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexZero => {
                f.write_str("recursive index 0 would place the level-4 table at the null address")
            }
            Self::IndexLast => f.write_str(
                "recursive index 511 would place the level-4 table in the last page of the \
                 address space, where no Rust object may live",
            ),
            Self::NotRecursive { entry, level_4 } => write!(
                f,
                "entry {entry:#x} at the recursive index does not point to the active \
                 level-4 table {:#x}",
                level_4.start_address().as_u64()
            ),
            Self::ReadOnly => f.write_str("the recursive entry is not writable"),
            Self::UserAccessible { entry } => write!(
                f,
                "recursive entry {entry:#x} is user-accessible: ring 3 could rewrite every \
                 page table through it"
            ),
        }
    }
}

impl core::error::Error for InvalidRecursiveTable {}

/// The rule for a recursive index, shared by [`RecursivePageTable::new`]
/// and the emulator's `Machine::with_recursive_table`: anything but 0 and
/// 511 (see [`InvalidRecursiveTable`] for why).
#[inline]
pub(crate) fn check_recursive_index(index: PageTableIndex) -> Result<(), InvalidRecursiveTable> {
    match u16::from(index) {
        0 => Err(InvalidRecursiveTable::IndexZero),
        511 => Err(InvalidRecursiveTable::IndexLast),
        _ => Ok(()),
    }
}

/// Page-table frames taken from an allocator by an operation that then
/// failed; used first by the next table creation, handed back by
/// `clean_up`. At most 3 (one path of new tables).
#[derive(Clone, Copy, Default)]
struct SpareFrames {
    frames: [u64; 3],
    len: usize,
}

impl SpareFrames {
    #[inline]
    fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            None
        } else {
            self.len -= 1;
            Some(self.frames[self.len])
        }
    }

    fn push(&mut self, frame: u64) {
        // The capacity argument: an operation pops up to `n <= 3` frames and
        // pushes back at most the `n` it holds, so `len` never exceeds 3.
        if let Some(slot) = self.frames.get_mut(self.len) {
            *slot = frame;
            self.len += 1;
        }
    }
}

/// Why a single-page map could not proceed (before any change was made).
#[derive(Clone, Copy)]
pub(crate) enum MapFail {
    Huge,
    AlreadyMapped(u64),
    NoFrame,
}

impl MapFail {
    #[cold]
    pub(crate) fn into_error<S: PageSize>(self, frame: PhysFrame<S>) -> MapToError<S> {
        match self {
            MapFail::Huge => MapToError::ParentEntryHugePage,
            MapFail::AlreadyMapped(_) => MapToError::PageAlreadyMapped(frame),
            MapFail::NoFrame => MapToError::FrameAllocationFailed,
        }
    }

    #[cold]
    fn into_error_existing<S: PageSize>(self) -> MapToError<S> {
        match self {
            MapFail::Huge => MapToError::ParentEntryHugePage,
            MapFail::AlreadyMapped(entry) => MapToError::PageAlreadyMapped(
                PhysFrame::containing_address(PhysAddr::new(entry & ADDR_MASK)),
            ),
            MapFail::NoFrame => MapToError::FrameAllocationFailed,
        }
    }
}

/// The outcome of the read-only part of a map: which parent entries need
/// flags added, and from which level new tables are needed.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    /// Level of the first unused parent entry (tables are created from the
    /// level below it down to the leaf's table); 0 if every table exists.
    create_level: usize,
    /// Bit `l` set: the existing parent entry at level `l` lacks flags.
    or_levels: u32,
}

/// Why a walk to a leaf stopped at a parent entry.
#[derive(Clone, Copy)]
pub(crate) enum WalkFail {
    NotMapped,
    Huge,
}

impl From<WalkFail> for UnmapError {
    #[inline]
    fn from(fail: WalkFail) -> Self {
        match fail {
            WalkFail::NotMapped => UnmapError::PageNotMapped,
            WalkFail::Huge => UnmapError::ParentEntryHugePage,
        }
    }
}

impl From<WalkFail> for FlagUpdateError {
    #[inline]
    fn from(fail: WalkFail) -> Self {
        match fail {
            WalkFail::NotMapped => FlagUpdateError::PageNotMapped,
            WalkFail::Huge => FlagUpdateError::ParentEntryHugePage,
        }
    }
}

impl From<WalkFail> for TranslateError {
    #[inline]
    fn from(fail: WalkFail) -> Self {
        match fail {
            WalkFail::NotMapped => TranslateError::PageNotMapped,
            WalkFail::Huge => TranslateError::ParentEntryHugePage,
        }
    }
}

impl<B: Backend> RecursivePageTable<B> {
    /// The table of `backend`'s active address space, reached through entry
    /// `recursive_index` of its level-4 table.
    ///
    /// Checks that the index is usable (not 0, not 511: see
    /// [`InvalidRecursiveTable`]) and that the entry points, present,
    /// writable, supervisor-only and not huge, to
    /// [`Backend::level_4_frame`]. The entry is read with
    /// [`Backend::read_level_4_entry`]:
    ///
    /// - on the emulator by physical address, so any table can be checked,
    ///   and a table that is not recursive at the index is reported as
    ///   [`InvalidRecursiveTable::NotRecursive`];
    /// - on the hardware backend through the recursive window of the index,
    ///   the only way the CPU can reach it. What this checks: given that the
    ///   window is mapped (the constructor contract of
    ///   [`Mmu::new`](super::Mmu::new)), that the entry read there is the
    ///   recursive one with the right bits. What it cannot check: whether the
    ///   window is mapped at all (if not, the read faults), and that the
    ///   tables stay recursive afterwards.
    ///
    /// # Errors
    ///
    /// [`InvalidRecursiveTable`] says which check failed.
    ///
    /// # Examples
    ///
    /// On the emulator (feature `emu`), see `runtime/examples/address_space.rs`;
    /// index 511 is always refused:
    ///
    /// ```
    /// use framealloc::paging::{InvalidRecursiveTable, NoFlushMmu, RecursivePageTable};
    /// use framealloc::x86_64::{PhysAddr, structures::paging::PageTableIndex};
    /// use framealloc::PhysFrame;
    ///
    /// // SAFETY: the index is rejected before any memory is accessed.
    /// let mmu = unsafe { NoFlushMmu::without_flushes(PhysFrame::containing_address(PhysAddr::new(0))) };
    /// let err = RecursivePageTable::new(mmu, PageTableIndex::new(511)).unwrap_err();
    /// assert_eq!(err, InvalidRecursiveTable::IndexLast);
    /// ```
    pub fn new(backend: B, recursive_index: PageTableIndex) -> Result<Self, InvalidRecursiveTable> {
        check_recursive_index(recursive_index)?;
        let table = Self::with_index(backend, recursive_index);
        let r = table.recursive_index;
        // SAFETY: `r < 512`, and this is the check of `new` for the index the
        // table is created with, which the `Backend` contract makes
        // memory-safe; nothing else is accessed before the checks below
        // succeed.
        let entry = unsafe { table.backend.read_level_4_entry(r as usize) };
        let level_4 = table.backend.level_4_frame();
        if entry & (PRESENT | HUGE) != PRESENT
            || entry & ADDR_MASK != level_4.start_address().as_u64()
        {
            return Err(InvalidRecursiveTable::NotRecursive { entry, level_4 });
        }
        if entry & WRITABLE == 0 {
            return Err(InvalidRecursiveTable::ReadOnly);
        }
        if entry & USER != 0 {
            return Err(InvalidRecursiveTable::UserAccessible { entry });
        }
        Ok(table)
    }

    /// The table reached through entry `recursive_index`, without checks.
    ///
    /// # Safety
    ///
    /// Entry `recursive_index` (neither 0 nor 511) of the backend's active
    /// level-4 table is present, writable and points to that table itself,
    /// and nothing else changes the tables while this value uses them.
    #[inline]
    pub unsafe fn new_unchecked(backend: B, recursive_index: PageTableIndex) -> Self {
        Self::with_index(backend, recursive_index)
    }

    /// Builds the value (addresses only, no table access).
    #[inline]
    fn with_index(backend: B, recursive_index: PageTableIndex) -> Self {
        let r = u64::from(u16::from(recursive_index));
        let l1 = r << 39;
        let l2 = l1 | r << 30;
        let l3 = l2 | r << 21;
        let l4 = l3 | r << 12;
        RecursivePageTable {
            backend,
            recursive_index: r,
            bases: [
                sign_extend(l1),
                sign_extend(l2),
                sign_extend(l3),
                sign_extend(l4),
            ],
            window_entry: sign_extend(l4 | r << 3),
            spare: SpareFrames::default(),
        }
    }

    /// The recursive index.
    #[inline]
    pub fn recursive_index(&self) -> PageTableIndex {
        PageTableIndex::new_truncate(self.recursive_index as u16)
    }

    /// The backend.
    #[inline]
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (for instance to access emulated memory).
    #[inline]
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Gives the backend back.
    #[inline]
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// The recursive virtual address of the table at `level` on the path to
    /// `addr` (level 4: the level-4 table itself).
    ///
    /// ```
    /// use framealloc::paging::{NoFlushMmu, RecursivePageTable};
    /// use framealloc::x86_64::structures::paging::{PageTableIndex, page_table::PageTableLevel};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    /// use framealloc::PhysFrame;
    ///
    /// // SAFETY: only addresses are computed; no memory is accessed.
    /// let table = unsafe {
    ///     let mmu = NoFlushMmu::without_flushes(PhysFrame::containing_address(PhysAddr::new(0)));
    ///     RecursivePageTable::new_unchecked(mmu, PageTableIndex::new(510))
    /// };
    /// let addr = VirtAddr::new(0x4000_1234);
    /// assert_eq!(table.table_address(PageTableLevel::Four, addr).as_u64(), 0xffff_ff7f_bfdf_e000);
    /// assert_eq!(table.table_address(PageTableLevel::One, addr).as_u64(), 0xffff_ff00_0020_0000);
    /// ```
    #[inline]
    pub fn table_address(&self, level: PageTableLevel, addr: VirtAddr) -> VirtAddr {
        self.table(level as usize, addr.as_u64())
    }

    /// Recursive address of the level-`level` table on the path to `v`.
    #[inline(always)]
    pub(crate) fn table(&self, level: usize, v: u64) -> VirtAddr {
        let bits = 9 * (4 - level);
        let mask = (1u64 << bits) - 1;
        let addr = self.bases[level - 1] | (((v >> (12 + 9 * level)) & mask) << 12);
        // SAFETY: `bases` are sign-extended and the bits or-ed in lie below
        // bit 39 (level 1) or below the recursive index's bits, so the
        // address is canonical.
        unsafe { VirtAddr::new_unsafe(addr) }
    }

    /// Index of `v`'s entry in its level-`level` table.
    #[inline(always)]
    pub(crate) const fn index(level: usize, v: u64) -> usize {
        ((v >> (3 + 9 * level)) & 511) as usize
    }

    /// Recursive address of `v`'s entry in its level-`level` table: the
    /// table's address and the index times 8, in one shift and mask.
    #[inline(always)]
    pub(crate) fn entry_address(&self, level: usize, v: u64) -> VirtAddr {
        let mask = ((1u64 << (9 * (5 - level))) - 1) << 3;
        let addr = self.bases[level - 1] | ((v >> (9 * level)) & mask);
        // SAFETY: canonical, as in `table`.
        unsafe { VirtAddr::new_unsafe(addr) }
    }

    // The entry accessors below are crate-private and safe to call, under
    // an invariant every caller in `paging` keeps: an entry at `level` is
    // accessed only after every entry above it on `v`'s path was read as a
    // present table pointer (level 4 needs nothing), and the tables are not
    // changed by anything else meanwhile (the constructors' contracts). So
    // the address is the recursive address of an entry of an existing table,
    // as `Backend`'s accessors require. Writes only store values this module
    // tree computed under the public methods' contracts.

    /// Reads `v`'s entry at `level` (see the invariant above).
    #[inline(always)]
    pub(crate) fn read(&self, level: usize, v: u64) -> u64 {
        // SAFETY: the invariant above: the table exists, the address is an
        // aligned entry of it.
        unsafe { self.backend.read_entry_at(self.entry_address(level, v)) }
    }

    /// Writes `v`'s entry at `level` (see the invariant above).
    #[inline(always)]
    pub(crate) fn write(&mut self, level: usize, v: u64, value: u64) {
        let entry = self.entry_address(level, v);
        // SAFETY: as in `read`; the recursive entry is writable (checked or
        // promised at construction) and every parent on the path carries
        // `WRITABLE` (see `parent_bits`).
        unsafe { self.backend.write_entry_at(entry, value) };
    }

    /// Reads entry `index` of the table at recursive address `table`, which
    /// was computed by [`Self::table`] for an existing table (invariant above).
    #[inline(always)]
    pub(crate) fn read_in(&self, table: VirtAddr, index: usize) -> u64 {
        debug_assert!(index < 512);
        // SAFETY: the invariant above, `index < 512` at every call site.
        unsafe { self.backend.read_entry(table, index) }
    }

    /// Writes entry `index` of the table at recursive address `table` (see
    /// [`Self::read_in`]).
    #[inline(always)]
    pub(crate) fn write_in(&mut self, table: VirtAddr, index: usize, value: u64) {
        debug_assert!(index < 512);
        // SAFETY: as in `read_in` and `write`.
        unsafe { self.backend.write_entry(table, index, value) };
    }

    /// Whether `v` lies in the recursive window.
    #[inline(always)]
    pub(crate) fn in_window(&self, v: u64) -> bool {
        (v >> 39) & 511 == self.recursive_index
    }

    /// Whether every entry of the level-`level` table on `v`'s path is 0.
    pub(crate) fn table_is_empty(&self, level: usize, v: u64) -> bool {
        let table = self.table(level, v);
        (0..512).all(|i| self.read_in(table, i) == 0)
    }

    // ---------------------------------------------------------------- map

    /// Maps `page` to `frame` with `flags`, creating missing tables with
    /// frames from `allocator`.
    ///
    /// Parent entries: the `PRESENT`/`WRITABLE`/`USER_ACCESSIBLE` bits of
    /// `flags` are the requested parent flags, as in `x86_64`'s
    /// `Mapper::map_to`; see
    /// [`map_to_with_table_flags`](Self::map_to_with_table_flags) for exactly
    /// what is added to new and existing parent entries.
    ///
    /// # Errors
    ///
    /// As `x86_64`: `PageAlreadyMapped(frame)` if the page's entry is in use,
    /// `ParentEntryHugePage` if a parent entry maps a huge page (or is in use
    /// but not present, or `page` lies in the recursive window, or `S` is
    /// 4 KiB and `flags` has `HUGE_PAGE`: see the rules for flags on
    /// [`RecursivePageTable`]), `FrameAllocationFailed` if a table was
    /// needed and `allocator` had none. On error nothing was written; table frames taken before the
    /// allocator ran dry are kept and used by the next table creation, or
    /// handed back by [`clean_up`](Self::clean_up).
    ///
    /// # Safety
    ///
    /// As `x86_64`'s `Mapper::map_to`: the new mapping must not break memory
    /// safety (no aliasing of `&mut` data, no invalid values appearing).
    #[inline]
    pub unsafe fn map_to<S: EntrySize, A>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<Flush<'_, B, S>, MapToError<S>>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let parent = flags
            & (PageTableFlags::PRESENT
                | PageTableFlags::WRITABLE
                | PageTableFlags::USER_ACCESSIBLE);
        // SAFETY: forwarded contract.
        unsafe { self.map_to_with_table_flags(page, frame, flags, parent, allocator) }
    }

    /// [`map_to`](Self::map_to) with explicit flags for parent entries.
    ///
    /// Every parent entry on the path, new or existing, ends up with
    /// `parent_table_flags | PRESENT | WRITABLE` set (other bits of an
    /// existing entry are kept; `GLOBAL`, `HUGE_PAGE` and address bits of
    /// `parent_table_flags` are ignored).
    ///
    /// `GLOBAL` is stripped because in a recursive hierarchy every parent
    /// entry is also the leaf entry of a page table's recursive address:
    /// with CR4.PGE, a `GLOBAL` parent would make the recursive translations
    /// of the tables below it global, they would survive the CR3 write of an
    /// address-space switch, and the next address space's table code would
    /// read and write the old space's tables through them. (The CPU ignores
    /// `GLOBAL` in an entry that points to a table, so nothing is lost.)
    ///
    /// For new entries this is what
    /// `x86_64` does. For existing entries `x86_64` adds only
    /// `parent_table_flags`; this table also adds `WRITABLE`, because it
    /// writes the child table through the recursive mapping, whose last
    /// level is that very parent entry: without `WRITABLE` there the write
    /// would fault (on hardware with CR0.WP set, as the emulator models).
    /// Adding bits to an existing entry is followed by a full flush that
    /// drops global entries too ([`Backend::flush_global`]), at any level:
    /// the tables and data pages below it, `GLOBAL` ones included, may have
    /// translations cached with the old, fewer rights.
    ///
    /// # Errors
    ///
    /// As [`map_to`](Self::map_to).
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to).
    #[inline]
    pub unsafe fn map_to_with_table_flags<S: EntrySize, A>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: PageTableFlags,
        parent_table_flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<Flush<'_, B, S>, MapToError<S>>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let v = page.start_address().as_u64();
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(MapToError::ParentEntryHugePage);
        };
        let leaf = frame.start_address().as_u64() | bits;
        let want = Self::parent_bits(parent_table_flags);
        match self.map_entry::<S, A>(v, leaf, want, allocator) {
            Ok(()) => Ok(Flush::new(&mut self.backend, page)),
            Err(fail) => Err(fail.into_error(frame)),
        }
    }

    /// Maps `page` to a frame taken from `allocator` (which also supplies
    /// any page tables needed) and returns that frame.
    ///
    /// Tables are allocated first, the page's frame last, so no frame is
    /// taken when the mapping cannot be made.
    ///
    /// # Errors
    ///
    /// As [`map_to`](Self::map_to), except for `PageAlreadyMapped` and
    /// `FrameAllocationFailed`. `x86_64`'s `map_to` names in
    /// `PageAlreadyMapped` the frame it was asked to map; here no frame is
    /// taken before the checks, so it names the address found in the used
    /// entry instead, rounded down to `S`: the frame the page is mapped to
    /// when the entry maps a page of size `S`, but, for a huge `S` whose
    /// entry points to a page table (smaller pages are mapped there), that
    /// table's frame rounded down, which is not a mapped page.
    /// `FrameAllocationFailed` also covers the page's own frame. On error
    /// nothing was written.
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to).
    #[allow(
        clippy::type_complexity,
        reason = "the frame and its flush token, as `unmap`"
    )]
    pub unsafe fn map_allocated<S: EntrySize, A>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), MapToError<S>>
    where
        A: FrameAllocator<S> + FrameAllocator<Size4KiB> + ?Sized,
    {
        self.map_allocated_from(page, flags, &mut Allocated { allocator })
    }

    /// [`map_allocated`](Self::map_allocated) with two allocators: the
    /// page's frame comes from `data`, page tables from `tables`.
    ///
    /// For allocators that tell frames apart by purpose, such as a
    /// region-typed one viewed twice with
    /// [`tagged`](crate::TaggedFrameAllocator::tagged) (data frames tagged
    /// one way, tables another), or a pool reserved for page tables.
    ///
    /// # Errors
    ///
    /// As [`map_allocated`](Self::map_allocated); `FrameAllocationFailed`
    /// when either allocator had no frame (tables are taken first).
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "emu")] {
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::RecursivePageTable;
    /// use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    ///
    /// let index = PageTableIndex::new(510);
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let mut table = RecursivePageTable::new(Machine::with_recursive_table(index, l4).unwrap(), index).unwrap();
    /// let (mut next_table, mut next_data) = (0x10_0000u64, 0x80_0000u64);
    /// // SAFETY: every call of each closure yields a fresh frame, and the
    /// // two ranges do not overlap.
    /// let (mut tables, mut data) = unsafe {
    ///     (
    ///         framealloc::from_fn(|| { next_table += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next_table))) }),
    ///         framealloc::from_fn(|| { next_data += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next_data))) }),
    ///     )
    /// };
    /// let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    /// // SAFETY: emulated memory.
    /// let (frame, flush) = unsafe { table.map_allocated_with(page, F::PRESENT | F::WRITABLE, &mut data, &mut tables) }.unwrap();
    /// flush.flush();
    /// assert_eq!(frame.start_address().as_u64(), 0x80_1000); // from `data`
    /// assert_eq!(table.page_tables().filter(|t| t.frame.start_address().as_u64() > 0x10_0000).count(), 3); // from `tables`
    /// # }
    /// ```
    #[allow(
        clippy::type_complexity,
        reason = "the frame and its flush token, as `unmap`"
    )]
    pub unsafe fn map_allocated_with<S: EntrySize, D, T>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
        data: &mut D,
        tables: &mut T,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), MapToError<S>>
    where
        D: FrameAllocator<S> + ?Sized,
        T: FrameAllocator<Size4KiB> + ?Sized,
    {
        self.map_allocated_from(page, flags, &mut Split { data, tables })
    }

    /// The body of the `map_allocated` forms.
    #[allow(
        clippy::type_complexity,
        reason = "the frame and its flush token, as `unmap`"
    )]
    fn map_allocated_from<S: EntrySize, D: DataFrames<S>>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
        source: &mut D,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), MapToError<S>> {
        let v = page.start_address().as_u64();
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(MapToError::ParentEntryHugePage);
        };
        let want = Self::parent_bits_for_leaf(flags);
        let plan = self
            .plan::<S>(v, want)
            .map_err(MapFail::into_error_existing)?;
        let count = plan.tables_needed::<S>();
        let tables = self
            .take_tables(count, source.tables())
            .map_err(MapFail::into_error_existing)?;
        let Some(frame) = source.data(0) else {
            self.return_tables(&tables[..count]);
            return Err(MapToError::FrameAllocationFailed);
        };
        self.commit::<S>(v, plan, &tables, want, frame | bits);
        // SAFETY: the allocator handed out a frame of size `S`, whose start
        // address is aligned to `S` and below 2^52.
        let frame = unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_unsafe(frame)) };
        Ok((frame, Flush::new(&mut self.backend, page)))
    }

    /// The bits every parent entry on a mapped path must carry: the
    /// requested ones plus `PRESENT | WRITABLE` (see
    /// [`map_to_with_table_flags`](Self::map_to_with_table_flags) for why
    /// `WRITABLE`).
    #[inline(always)]
    pub(crate) fn parent_bits(flags: PageTableFlags) -> u64 {
        (flags.bits() & !PARENT_IGNORED) | PRESENT | WRITABLE
    }

    /// The parent bits a map without explicit table flags asks for: the
    /// leaf's `PRESENT`, `WRITABLE` and `USER_ACCESSIBLE`, as `x86_64` derives
    /// them, through [`Self::parent_bits`].
    #[inline(always)]
    pub(crate) fn parent_bits_for_leaf(flags: PageTableFlags) -> u64 {
        Self::parent_bits(
            flags
                & (PageTableFlags::PRESENT
                    | PageTableFlags::WRITABLE
                    | PageTableFlags::USER_ACCESSIBLE),
        )
    }

    /// The fast path of a single-page map: all parents present with the
    /// wanted flags. Everything else goes to [`Self::map_slow`].
    #[inline(always)]
    pub(crate) fn map_entry<S: EntrySize, A>(
        &mut self,
        v: u64,
        leaf: u64,
        want: u64,
        allocator: &mut A,
    ) -> Result<(), MapFail>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        // The window test compares the level-4 entry address, which the
        // walk computes anyway, with the recursive entry's address: the
        // same test as `in_window`, with three instructions fewer per page.
        let top = self.entry_address(4, v);
        debug_assert_eq!(top.as_u64() == self.window_entry, self.in_window(v));
        if top.as_u64() == self.window_entry {
            return Err(MapFail::Huge);
        }
        let check = want | HUGE;
        // SAFETY: `top` is the address of `v`'s level-4 entry (the invariant
        // of `read`: level 4 needs nothing above it).
        if unsafe { self.backend.read_entry_at(top) } & check != want {
            return self.map_slow::<S, A>(v, leaf, want, allocator);
        }
        let mut level = 3;
        while level > S::LEVEL {
            if self.read(level, v) & check != want {
                return self.map_slow::<S, A>(v, leaf, want, allocator);
            }
            level -= 1;
        }
        let old = self.read(S::LEVEL, v);
        if old != 0 {
            return Err(MapFail::AlreadyMapped(old));
        }
        self.write(S::LEVEL, v, leaf);
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn map_slow<S: EntrySize, A>(
        &mut self,
        v: u64,
        leaf: u64,
        want: u64,
        allocator: &mut A,
    ) -> Result<(), MapFail>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let plan = self.plan::<S>(v, want)?;
        let tables = self.take_tables(plan.tables_needed::<S>(), allocator)?;
        self.commit::<S>(v, plan, &tables, want, leaf);
        Ok(())
    }

    /// Read-only walk: finds every reason the map would fail, and what it
    /// has to change.
    pub(crate) fn plan<S: EntrySize>(&self, v: u64, want: u64) -> Result<Plan, MapFail> {
        let plan = self.plan_parents::<S>(v, want)?;
        if plan.create_level == 0 {
            let old = self.read(S::LEVEL, v);
            if old != 0 {
                return Err(MapFail::AlreadyMapped(old));
            }
        }
        Ok(plan)
    }

    /// The parent part of [`Self::plan`]: errors above the leaf, missing
    /// tables and missing flags.
    pub(crate) fn plan_parents<S: EntrySize>(&self, v: u64, want: u64) -> Result<Plan, MapFail> {
        if self.in_window(v) {
            return Err(MapFail::Huge);
        }
        let mut or_levels = 0;
        let mut level = 4;
        while level > S::LEVEL {
            let entry = self.read(level, v);
            if entry == 0 {
                return Ok(Plan {
                    create_level: level,
                    or_levels,
                });
            }
            if entry & (PRESENT | HUGE) != PRESENT {
                return Err(MapFail::Huge);
            }
            if entry & want != want {
                or_levels |= 1 << level;
            }
            level -= 1;
        }
        Ok(Plan {
            create_level: 0,
            or_levels,
        })
    }

    /// Takes `count` table frames (spare ones first). On failure the frames
    /// taken so far become spares, and nothing else changed.
    pub(crate) fn take_tables<A>(
        &mut self,
        count: usize,
        allocator: &mut A,
    ) -> Result<[u64; 3], MapFail>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let mut tables = [0; 3];
        for i in 0..count {
            let frame = if let Some(frame) = self.spare.pop() {
                frame
            } else if let Some(frame) = allocator.allocate_frame() {
                frame.start_address().as_u64()
            } else {
                self.return_tables(&tables[..i]);
                return Err(MapFail::NoFrame);
            };
            tables[i] = frame;
        }
        Ok(tables)
    }

    /// Writes a planned map: adds parent flags, links and zeroes new tables
    /// (invalidating each one's recursive address first, so no stale
    /// translation from a freed table can redirect the zeroing), then writes
    /// the leaf.
    pub(crate) fn commit<S: EntrySize>(
        &mut self,
        v: u64,
        plan: Plan,
        tables: &[u64; 3],
        want: u64,
        leaf: u64,
    ) {
        self.commit_parents::<S>(v, plan, tables, want);
        self.write(S::LEVEL, v, leaf);
    }

    /// The parent part of [`Self::commit`].
    pub(crate) fn commit_parents<S: EntrySize>(
        &mut self,
        v: u64,
        plan: Plan,
        tables: &[u64; 3],
        want: u64,
    ) {
        let mut level = 4;
        while level > S::LEVEL && level != plan.create_level {
            if plan.or_levels & (1 << level) != 0 {
                let entry = self.read(level, v);
                self.write(level, v, entry | want);
                self.flush_upgraded();
            }
            level -= 1;
        }
        let mut next = 0;
        while level > S::LEVEL {
            self.write(level, v, tables[next] | want);
            next += 1;
            let child = self.table(level - 1, v);
            self.backend.flush_page(child);
            // SAFETY: `child` is the recursive address of the table just
            // linked in (the entry above was written as a present, writable
            // table pointer, and its stale translation invalidated); it is
            // new, so clearing all its entries is what it needs.
            unsafe { self.backend.zero_table(child) };
            level -= 1;
        }
    }

    /// Invalidates what caches the old value of the parent entry on `v`'s
    /// path after bits were added to it (`plan` only marks entries that
    /// lacked some): one full flush of every TLB entry, global ones
    /// included, whatever the level.
    ///
    /// Effective rights are the AND over every level of a walk, so a TLB
    /// entry cached through the old parent value keeps the old, fewer
    /// rights, and the next access that needs the new ones would take a
    /// spurious page fault. Two kinds of entries are affected: the
    /// recursive translations of the page tables below the entry (the next
    /// write to a child table through them would fault once `WRITABLE` was
    /// added), and the translations of every data page below it (up to 512
    /// pages under a level-2 entry, 512² or 512³ under levels 3 and 4). An
    /// `invlpg` per present page below would cost up to 512 reads and
    /// invalidations even for a level-2 entry and is unbounded in practice
    /// above it; upgrading an existing parent is rare (it happens only when
    /// a map asks for rights its parent entries lack), so one CR3 reload per
    /// upgraded entry is both the simplest and the cheapest bound.
    ///
    /// A CR3 reload would keep `GLOBAL` translations (CR4.PGE), so a
    /// `GLOBAL` page accessed while a parent entry lacked a right would keep
    /// its reduced rights; [`Backend::flush_global`] drops those too.
    fn flush_upgraded(&mut self) {
        self.backend.flush_global();
    }

    /// Makes `frames` spare page-table frames again (after a later step of
    /// the same operation failed).
    pub(crate) fn return_tables(&mut self, tables: &[u64]) {
        for &table in tables {
            self.spare.push(table);
        }
    }

    // ---------------------------------------------------------- walk

    /// Checks the parent entries of `v`'s level-`S` entry: all must be
    /// present table pointers.
    #[inline(always)]
    pub(crate) fn walk_parents<S: EntrySize>(&self, v: u64) -> Result<(), WalkFail> {
        let mut level = 4;
        while level > S::LEVEL {
            let entry = self.read(level, v);
            if entry & (PRESENT | HUGE) != PRESENT {
                return Err(if entry & PRESENT == 0 {
                    WalkFail::NotMapped
                } else {
                    WalkFail::Huge
                });
            }
            level -= 1;
        }
        Ok(())
    }

    /// Whether every parent entry of `v`'s level-`S` entry is a present,
    /// writable table pointer: the fast-path test of the single-page write
    /// operations, one comparison per level as in [`Self::walk_parents`].
    #[inline(always)]
    pub(crate) fn parents_writable<S: EntrySize>(&self, v: u64) -> bool {
        let mut level = 4;
        while level > S::LEVEL {
            if self.read(level, v) & (PRESENT | HUGE | WRITABLE) != PRESENT | WRITABLE {
                return false;
            }
            level -= 1;
        }
        true
    }

    /// [`Self::walk_parents`] for an operation that then writes the level-`S`
    /// table: also says whether every parent entry carries `WRITABLE`
    /// (`false`: see [`Self::make_writable_above`]). The fast path tests all
    /// three bits in the one comparison per level `walk_parents` makes.
    #[inline(always)]
    pub(crate) fn walk_parents_for_write<S: EntrySize>(&self, v: u64) -> Result<bool, WalkFail> {
        let mut level = 4;
        while level > S::LEVEL {
            if self.read(level, v) & (PRESENT | HUGE | WRITABLE) != PRESENT | WRITABLE {
                return self.walk_parents_for_write_slow::<S>(v);
            }
            level -= 1;
        }
        Ok(true)
    }

    /// The slow path of [`Self::walk_parents_for_write`]: some parent entry
    /// is not a present, writable table pointer.
    #[cold]
    #[inline(never)]
    fn walk_parents_for_write_slow<S: EntrySize>(&self, v: u64) -> Result<bool, WalkFail> {
        self.walk_parents::<S>(v)?;
        let mut writable = true;
        let mut level = 4;
        while level > S::LEVEL {
            writable &= self.read(level, v) & WRITABLE != 0;
            level -= 1;
        }
        Ok(writable)
    }

    /// Adds `WRITABLE` to every entry above `level` on `v`'s path that lacks
    /// it (all of them are present table pointers: the caller walked them),
    /// top down, each followed by a full flush, global entries included.
    ///
    /// The table code writes a level-`level` table through its recursive
    /// address, whose translation is the AND of the entries above it, so
    /// without `WRITABLE` on each the write would fault (CR0.WP). Like a
    /// map upgrading a parent (see [`Self::flush_upgraded`]), the new right
    /// must not be shadowed by a translation cached with the old one, for
    /// the next table's recursive address as for the data below.
    #[inline(never)]
    pub(crate) fn make_writable_above(&mut self, level: usize, v: u64) {
        let mut upper = 4;
        while upper > level {
            let entry = self.read(upper, v);
            if entry & WRITABLE == 0 {
                self.write(upper, v, entry | WRITABLE);
                self.flush_upgraded();
            }
            upper -= 1;
        }
    }

    // --------------------------------------------------------- unmap

    /// Removes the mapping of `page` and returns the frame it mapped.
    ///
    /// No page table is freed (see [`clean_up`](Self::clean_up)).
    ///
    /// # Errors
    ///
    /// As `x86_64`: `PageNotMapped` if a parent or the entry is not present,
    /// `ParentEntryHugePage` if a parent maps a huge page or the entry's
    /// size is not `S` (or `page` lies in the recursive window),
    /// `InvalidFrameAddress` if a huge entry's address is not aligned to `S`.
    /// On error nothing was written.
    #[inline]
    pub fn unmap<S: EntrySize>(
        &mut self,
        page: Page<S>,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), UnmapError> {
        let v = page.start_address().as_u64();
        let frame = self.unmap_entry::<S>(v)?;
        Ok((frame, Flush::new(&mut self.backend, page)))
    }

    #[inline(always)]
    pub(crate) fn unmap_entry<S: EntrySize>(&mut self, v: u64) -> Result<PhysFrame<S>, UnmapError> {
        if self.in_window(v) {
            return Err(UnmapError::ParentEntryHugePage);
        }
        if !self.parents_writable::<S>(v) {
            return self.unmap_entry_slow::<S>(v);
        }
        let entry = self.read(S::LEVEL, v);
        let frame = leaf_frame_for_unmap::<S>(entry)?;
        self.write(S::LEVEL, v, 0);
        Ok(frame)
    }

    /// [`Self::unmap_entry`] when some parent entry is not a present,
    /// writable table pointer: the errors, or `WRITABLE` given back.
    #[cold]
    #[inline(never)]
    fn unmap_entry_slow<S: EntrySize>(&mut self, v: u64) -> Result<PhysFrame<S>, UnmapError> {
        self.walk_parents::<S>(v)?;
        let entry = self.read(S::LEVEL, v);
        let frame = leaf_frame_for_unmap::<S>(entry)?;
        self.make_writable_above(S::LEVEL, v);
        self.write(S::LEVEL, v, 0);
        Ok(frame)
    }

    // ---------------------------------------------------------- flags

    /// Replaces the flags of `page`'s mapping (keeping its frame).
    ///
    /// # Errors
    ///
    /// `PageNotMapped` if a parent is not present or the entry is unused;
    /// `ParentEntryHugePage` if a parent maps a huge page, if `page` lies in
    /// the recursive window, if `S` is a huge size and the entry is a
    /// present page-table pointer (where `x86_64` would turn that table into
    /// a huge mapping of it), or if `S` is 4 KiB and `flags` has
    /// `HUGE_PAGE`; `PageNotMapped` also if `S` is a huge size and the entry
    /// is a non-present table pointer (no `HUGE_PAGE`). Address bits of
    /// `flags` are ignored. On error nothing was written.
    ///
    /// # Safety
    ///
    /// As `x86_64`'s `Mapper::update_flags`: the new flags must not break
    /// memory safety.
    #[inline]
    pub unsafe fn update_flags<S: EntrySize>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
    ) -> Result<Flush<'_, B, S>, FlagUpdateError> {
        let v = page.start_address().as_u64();
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(FlagUpdateError::ParentEntryHugePage);
        };
        self.update_entry::<S>(v, bits)?;
        Ok(Flush::new(&mut self.backend, page))
    }

    /// Replaces the flags of `v`'s level-`S` entry with `bits` (leaf bits
    /// from [`leaf_bits`]: `HUGE_PAGE` as the size needs, no address bits).
    #[inline(always)]
    pub(crate) fn update_entry<S: EntrySize>(
        &mut self,
        v: u64,
        bits: u64,
    ) -> Result<(), FlagUpdateError> {
        if self.in_window(v) {
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        if !self.parents_writable::<S>(v) {
            return self.update_entry_slow::<S>(v, bits);
        }
        let entry = self.read(S::LEVEL, v);
        if entry == 0 {
            return Err(FlagUpdateError::PageNotMapped);
        }
        if let Some(error) = not_a_leaf::<S>(entry) {
            return Err(error);
        }
        self.write(S::LEVEL, v, (entry & ADDR_MASK) | bits);
        Ok(())
    }

    /// [`Self::update_entry`] when some parent entry is not a present,
    /// writable table pointer: the errors, or `WRITABLE` given back.
    #[cold]
    #[inline(never)]
    fn update_entry_slow<S: EntrySize>(
        &mut self,
        v: u64,
        bits: u64,
    ) -> Result<(), FlagUpdateError> {
        self.walk_parents::<S>(v)?;
        let entry = self.read(S::LEVEL, v);
        if entry == 0 {
            return Err(FlagUpdateError::PageNotMapped);
        }
        if let Some(error) = not_a_leaf::<S>(entry) {
            return Err(error);
        }
        self.make_writable_above(S::LEVEL, v);
        self.write(S::LEVEL, v, (entry & ADDR_MASK) | bits);
        Ok(())
    }

    /// Replaces the flags of the parent entry at `level` (2 to 4) on the
    /// path to `addr` (keeping the table it points to), as `x86_64`'s
    /// `Mapper::set_flags_p*_entry`.
    ///
    /// `GLOBAL`, `HUGE_PAGE` and address bits of `flags` are ignored (the
    /// rule for parent flags, see [`RecursivePageTable`]); entries above it
    /// without `WRITABLE` get it back first. The TLB is invalidated here,
    /// global entries included ([`Backend::flush_global`]): a CR3 reload,
    /// which is what `x86_64`'s `MapperFlushAll` performs, would keep the
    /// `GLOBAL` translations cached through the old entry, with its old
    /// rights. (The `MapperFlushAll` the `Mapper` impl returns is therefore
    /// redundant; flushing or ignoring it are both correct.)
    ///
    /// # Errors
    ///
    /// `PageNotMapped` if an entry above it is not present or the entry is
    /// unused; `ParentEntryHugePage` if the entry or one above it maps a
    /// huge page, `addr` lies in the recursive window, or `level` is
    /// [`PageTableLevel::One`] (not a parent level).
    ///
    /// # Safety
    ///
    /// The new flags must not break memory safety.
    pub unsafe fn set_parent_flags(
        &mut self,
        level: PageTableLevel,
        addr: VirtAddr,
        flags: PageTableFlags,
    ) -> Result<(), FlagUpdateError> {
        if level == PageTableLevel::One {
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        self.set_parent_entry(level as usize, addr.as_u64(), flags.bits())
    }

    /// The body of [`Self::set_parent_flags`] (and `Mapper::set_flags_p*_entry`).
    pub(crate) fn set_parent_entry(
        &mut self,
        level: usize,
        v: u64,
        flags: u64,
    ) -> Result<(), FlagUpdateError> {
        if self.in_window(v) {
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        let mut all = !0;
        let mut upper = 4;
        while upper > level {
            let entry = self.read(upper, v);
            if entry & (PRESENT | HUGE) != PRESENT {
                return Err(if entry & PRESENT == 0 {
                    FlagUpdateError::PageNotMapped
                } else {
                    FlagUpdateError::ParentEntryHugePage
                });
            }
            all &= entry;
            upper -= 1;
        }
        let entry = self.read(level, v);
        if entry == 0 {
            return Err(FlagUpdateError::PageNotMapped);
        }
        if entry & HUGE != 0 {
            // A huge page's own entry: not a parent (the flags written here
            // would turn the leaf into a pointer to a "table").
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        if all & WRITABLE == 0 {
            self.make_writable_above(level, v);
        }
        self.write(level, v, (entry & ADDR_MASK) | (flags & !PARENT_IGNORED));
        // Translations cached through the old entry may have more rights
        // than it now grants, or fewer; global ones (data pages with
        // `GLOBAL`) survive the CR3 reload of `x86_64`'s `MapperFlushAll`,
        // so drop everything here.
        self.backend.flush_global();
        Ok(())
    }

    // ------------------------------------------------------ translate

    /// The frame `page` is mapped to.
    ///
    /// # Errors
    ///
    /// `PageNotMapped` if a parent is not present, the entry is unused or
    /// (for a huge `S`) the entry is a non-present page-table pointer;
    /// `ParentEntryHugePage` if a parent maps a huge page or (for a huge `S`)
    /// the entry is a present page-table pointer; `InvalidFrameAddress` if a
    /// huge entry's address is not aligned to `S`. A non-present leaf that
    /// is not zero is a frame, as in [`translate`](Self::translate).
    #[inline]
    pub fn translate_page<S: EntrySize>(
        &self,
        page: Page<S>,
    ) -> Result<PhysFrame<S>, TranslateError> {
        let v = page.start_address().as_u64();
        self.walk_parents::<S>(v)?;
        let entry = self.read(S::LEVEL, v);
        if entry == 0 {
            return Err(TranslateError::PageNotMapped);
        }
        if let Some(error) = not_a_leaf::<S>(entry) {
            return Err(match error {
                FlagUpdateError::PageNotMapped => TranslateError::PageNotMapped,
                FlagUpdateError::ParentEntryHugePage => TranslateError::ParentEntryHugePage,
            });
        }
        let addr = entry & ADDR_MASK;
        if addr & (S::SIZE - 1) != 0 {
            return Err(TranslateError::InvalidFrameAddress(PhysAddr::new(addr)));
        }
        // SAFETY: `addr` is aligned to `S` and below 2^52.
        Ok(unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_unsafe(addr)) })
    }

    /// What `addr` translates to: frame, offset in it and the leaf entry's
    /// flags, for pages of every size, as `x86_64`'s `Translate::translate`
    /// (which panics on a huge level-4 entry; this reports it as not mapped).
    ///
    /// One rule at every size, the one of [`translate_page`](Self::translate_page),
    /// [`update_flags`](Self::update_flags) and `x86_64`: the leaf is the
    /// level-1 entry, or a level-2 or level-3 entry with `HUGE_PAGE`; a leaf
    /// that is not zero is `Mapped`, present or not (its `flags` say which:
    /// a non-present entry may hold a frame its owner parked there); the
    /// entries above the leaf must be present table pointers, or the
    /// address is `NotMapped`. The MMU itself maps only present leaves.
    #[inline]
    pub fn translate(&self, addr: VirtAddr) -> TranslateResult {
        let v = addr.as_u64();
        let l4 = self.read(4, v);
        if l4 & (PRESENT | HUGE) != PRESENT {
            return TranslateResult::NotMapped;
        }
        let l3 = self.read(3, v);
        if l3 & HUGE != 0 {
            return TranslateResult::Mapped {
                frame: MappedFrame::Size1GiB(PhysFrame::<Size1GiB>::containing_address(
                    PhysAddr::new(l3 & ADDR_MASK),
                )),
                offset: v & (Size1GiB::SIZE - 1),
                flags: PageTableFlags::from_bits_truncate(l3),
            };
        }
        if l3 & PRESENT == 0 {
            return TranslateResult::NotMapped;
        }
        let l2 = self.read(2, v);
        if l2 & HUGE != 0 {
            return TranslateResult::Mapped {
                frame: MappedFrame::Size2MiB(PhysFrame::<Size2MiB>::containing_address(
                    PhysAddr::new(l2 & ADDR_MASK),
                )),
                offset: v & (Size2MiB::SIZE - 1),
                flags: PageTableFlags::from_bits_truncate(l2),
            };
        }
        if l2 & PRESENT == 0 {
            return TranslateResult::NotMapped;
        }
        let l1 = self.read(1, v);
        if l1 == 0 {
            return TranslateResult::NotMapped;
        }
        TranslateResult::Mapped {
            frame: MappedFrame::Size4KiB(PhysFrame::containing_address(PhysAddr::new(
                l1 & ADDR_MASK,
            ))),
            offset: v & 0xfff,
            flags: PageTableFlags::from_bits_truncate(l1),
        }
    }

    // --------------------------------------------------------- spares

    pub(crate) fn take_spare(&mut self) -> Option<PhysFrame> {
        self.spare
            .pop()
            .map(|addr| PhysFrame::containing_address(PhysAddr::new(addr)))
    }

    /// Number of page-table frames held after a map failed for lack of
    /// frames (at most 3; used by the next table creation, handed back by
    /// [`clean_up`](Self::clean_up)).
    ///
    /// Spare frames are only ever handed back by `clean_up` (and the
    /// `clean_up_*` variants and `unmap_range_and_free` with reclaim), to
    /// the deallocator given there, which need not be the allocator they came
    /// from: pass one that accepts them. Dropping the table (or calling
    /// [`into_backend`](Self::into_backend)) while it holds spares loses
    /// those frames; call `clean_up` first if they matter.
    pub fn spare_frames(&self) -> usize {
        self.spare.len
    }
}

impl Plan {
    /// Whether an existing parent entry needs flags added.
    #[inline]
    pub(crate) fn has_flags_to_add(self) -> bool {
        self.or_levels != 0
    }

    #[inline]
    pub(crate) fn tables_needed<S: EntrySize>(self) -> usize {
        if self.create_level == 0 {
            0
        } else {
            self.create_level - S::LEVEL
        }
    }
}

/// Bits of requested parent flags that never reach a parent entry:
/// `HUGE_PAGE` (a parent points to a table), `GLOBAL` (see
/// [`RecursivePageTable::map_to_with_table_flags`]) and the address bits.
pub(crate) const PARENT_IGNORED: u64 = HUGE | GLOBAL | ADDR_MASK;

/// The bits `flags` contribute to a leaf entry of size `S`: without address
/// bits (bits 12–51 hold the frame in every entry), with `HUGE_PAGE` for a
/// huge size; `None` if `flags` has `HUGE_PAGE` and `S` is 4 KiB, where bit
/// 7 is PAT and the entry could not be unmapped or reclaimed as a 4 KiB
/// page. Computed once per call, outside any per-page loop.
#[inline(always)]
pub(crate) fn leaf_bits<S: EntrySize>(flags: PageTableFlags) -> Option<u64> {
    let bits = flags.bits();
    if S::LEVEL == 1 && bits & HUGE != 0 {
        None
    } else {
        Some((bits & !ADDR_MASK) | S::HUGE_BIT)
    }
}

/// Why an entry in use at level `S::LEVEL` is not a leaf of size `S`: at
/// level 1 every entry is; above, a leaf has `HUGE_PAGE`. A present entry
/// without it points to a table (`ParentEntryHugePage`, as in `x86_64`); a
/// non-present one without it is an absent table, not a page
/// (`PageNotMapped`). The same rule as [`RecursivePageTable::translate`].
#[inline(always)]
pub(crate) fn not_a_leaf<S: EntrySize>(entry: u64) -> Option<FlagUpdateError> {
    if S::LEVEL == 1 || entry & HUGE != 0 {
        None
    } else if entry & PRESENT != 0 {
        Some(FlagUpdateError::ParentEntryHugePage)
    } else {
        Some(FlagUpdateError::PageNotMapped)
    }
}

/// The frame of a leaf entry being unmapped, with `x86_64`'s checks.
#[inline(always)]
pub(crate) fn leaf_frame_for_unmap<S: EntrySize>(entry: u64) -> Result<PhysFrame<S>, UnmapError> {
    if entry & PRESENT == 0 {
        return Err(UnmapError::PageNotMapped);
    }
    if (entry & HUGE != 0) != (S::LEVEL > 1) {
        return Err(UnmapError::ParentEntryHugePage);
    }
    let addr = entry & ADDR_MASK;
    if addr & (S::SIZE - 1) != 0 {
        return Err(UnmapError::InvalidFrameAddress(PhysAddr::new(addr)));
    }
    // SAFETY: `addr` is aligned to `S` and below 2^52.
    Ok(unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_unsafe(addr)) })
}

impl<B: Backend + fmt::Debug> fmt::Debug for RecursivePageTable<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecursivePageTable")
            .field("backend", &self.backend)
            .field("recursive_index", &self.recursive_index)
            .field("spare_frames", &self.spare.len)
            .finish_non_exhaustive()
    }
}
