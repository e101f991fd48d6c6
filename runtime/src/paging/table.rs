//! [`RecursivePageTable`]: the type, its construction and its entry
//! accessors. The operations live in sibling modules: single pages
//! (`single`), map planning (`map`), parent walks (`walk`), ranges (`range`,
//! `runs`), reclaim (`reclaim`), and the address arithmetic (`addr`).

use core::fmt;

use x86_64::VirtAddr;
use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{PageTableIndex, PhysFrame};

use super::Backend;
use super::addr::recursive_bases;
use super::entry::{Entry, USER, WRITABLE};
use super::map::SpareFrames;

/// A 4-level page table reached through a recursive entry of its level-4
/// table, over a [`Backend`] (the real MMU or an emulated one).
///
/// With recursive index `r`, the level-1 table covering `v` is visible at
/// the *recursive address* `r:p4(v):p3(v):p2(v)`, the level-2 table at
/// `r:r:p4(v):p3(v)`, and so on, so an operation reads one entry per level.
///
/// Beyond `x86_64::structures::paging::RecursivePageTable`:
///
/// - generic over the [`Backend`]: the CPU ([`Mmu`](super::Mmu)) or an
///   emulated MMU and TLB, with flush tokens ([`Flush`](super::Flush)) that
///   go through it;
/// - a new table's recursive address is invalidated before the table is
///   zeroed through it, and [`clean_up`](Self::clean_up) invalidates a freed
///   table's before handing its frame back;
/// - a failed operation leaves the tables as they were and never panics;
/// - range operations, map-with-allocation and a mapping dump.
///
/// The methods mirror `x86_64`'s `Mapper`/`Translate`, with the same error
/// types and meanings. `Translate` and `CleanUp` are implemented on every
/// backend, `Mapper<Size4KiB | Size2MiB | Size1GiB>` only on
/// [`Mmu`](super::Mmu) and [`NoFlushMmu`](super::NoFlushMmu): its
/// `MapperFlush::flush` runs `invlpg` itself, which an emulated TLB never
/// sees. On the host, code written against those traits can use `x86_64`'s
/// `OffsetPageTable` over ordinary memory, as `runtime/examples/tour.rs` does.
///
/// # Rules for flags
///
/// - Leaf flags: address bits in `flags` are ignored. `HUGE_PAGE` is implied
///   for 2 MiB and 1 GiB pages and refused for 4 KiB pages with
///   `ParentEntryHugePage` (bit 7 of a level-1 entry is PAT; `x86_64` panics).
/// - Parent flags: `GLOBAL` (with CR4.PGE it would keep a space's tables
///   reachable through their recursive addresses after a switch),
///   `HUGE_PAGE` and address bits never reach a parent entry.
/// - `WRITABLE` on parents: tables are written through their recursive
///   address, whose rights are the AND of the entries above, so every
///   operation that writes below a parent without `WRITABLE` adds it back
///   first, then flushes everything ([`Backend::flush_global`]): a parent's
///   missing `WRITABLE` does not survive the next change below it, so
///   write-protect memory in the leaves.
/// - The recursive entry must be present, writable and supervisor-only
///   (checked by [`new`](Self::new)).
///
/// The recursive window itself (level-4 index = recursive index) holds the
/// page tables: mapping, unmapping or changing flags there fails with
/// `ParentEntryHugePage`.
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
    pub(super) backend: B,
    pub(super) recursive_index: u64,
    /// `bases[l - 1]`: the recursive address of the level-`l` tables with all
    /// non-recursive indices zero.
    pub(super) bases: [u64; 4],
    /// Recursive address of the recursive entry itself: the level-4 entry
    /// address of every page in the recursive window.
    pub(super) window_entry: u64,
    pub(super) spare: SpareFrames,
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

impl<B: Backend> RecursivePageTable<B> {
    /// The table of `backend`'s active address space, reached through entry
    /// `recursive_index` of its level-4 table.
    ///
    /// Checks that the index is neither 0 nor 511 and that the entry, read
    /// with [`Backend::read_level_4_entry`], points present, writable,
    /// supervisor-only and not huge to [`Backend::level_4_frame`]. The
    /// emulator reads it by physical address, so any table can be checked;
    /// the hardware backend reads through the recursive window, which
    /// [`Mmu::new`](super::Mmu::new)'s contract requires to be mapped (if it
    /// is not, the read faults).
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
        if !Entry(entry).is_table() || Entry(entry).addr() != level_4.start_address().as_u64() {
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
        let (bases, window_entry) = recursive_bases(r);
        RecursivePageTable {
            backend,
            recursive_index: r,
            bases,
            window_entry,
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

    // Invariant of the crate-private accessors below: an entry at `level` is
    // accessed only after every entry above it on `v`'s path was read as a
    // present table pointer, and nothing else changes the tables meanwhile
    // (the constructors' contracts), as `Backend`'s accessors require.

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

    /// Whether every entry of the level-`level` table on `v`'s path is 0.
    pub(crate) fn table_is_empty(&self, level: usize, v: u64) -> bool {
        let table = self.table(level, v);
        (0..512).all(|i| self.read_in(table, i) == 0)
    }
}

impl<B: Backend + fmt::Debug> fmt::Debug for RecursivePageTable<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecursivePageTable")
            .field("backend", &self.backend)
            .field("recursive_index", &self.recursive_index)
            .field("spare_frames", &self.spare_frames())
            .finish_non_exhaustive()
    }
}
