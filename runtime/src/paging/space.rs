//! Address spaces: create a hierarchy, edit it while it is not active,
//! switch CR3 to it, destroy it.
//!
//! # The slot
//!
//! A [`RecursivePageTable`] reaches the active hierarchy through its
//! recursive index `r`. To reach an inactive hierarchy `B` (level-4 frame
//! `B`), a second level-4 index `s` of the *active* table `A`, the **slot**,
//! is pointed at `B`. Then:
//!
//! - at `r:r:r:s` the CPU walks `A[r] → A`, `A[r] → A`, `A[r] → A` and uses
//!   `A[s]` as the leaf: `B`'s level-4 table is a plain data page there,
//!   whatever `B` holds. That is how a fresh frame is zeroed and how `B`'s
//!   recursive entry is checked before anything trusts it;
//! - once `B[s] = B` as well, `B` is recursive at `s` *through* `A[s]`:
//!   `s:s:s:s` is `B`'s level-4 table, `s:s:s:i` its level-3 table `i`, and
//!   so on. A [`RecursivePageTable`] with recursive index `s` over the same
//!   backend (whose level-4 frame is reported as `B`) therefore runs the
//!   whole existing API on `B`: that is [`InactiveSpace`].
//!
//! `B` keeps its own recursive entry `B[r] = B` (it needs it when it becomes
//! active). Seen through the view, index `r` of `B` would look like an
//! ordinary level-3 pointer into `B` itself; the view's backend
//! ([`SlotBackend`]) therefore shows that one entry with `HUGE_PAGE` added,
//! which every operation of the table code treats as the recursive window
//! itself: mapping, unmapping and flag changes there fail with
//! `ParentEntryHugePage`, `mappings`, `page_tables` and `clean_up` skip it,
//! `translate` reports it as not mapped; writes to it are dropped.
//!
//! # TLB consequences
//!
//! Every address of the slot's 512 GiB window (`s:*:*:*`), and the page
//! `r:r:r:s`, is translated through `A[s]`: when `A[s]` changes, each of
//! them may be cached with the old target, in the TLB and in the
//! paging-structure caches. None of them is global: `A[s]` is written
//! without `GLOBAL`, `B[s]` too, and the table code never writes `GLOBAL`
//! into a parent entry (the check of [`AddressSpace`] operations refuses an
//! active recursive entry with `GLOBAL`). So a non-global flush
//! ([`Backend::flush_all`], a CR3 reload) after every write of `A[s]`
//! invalidates all of them; it is made when the slot is opened (pointing
//! it at `B`) and when it is closed (clearing it). The close flush also
//! drops what edits through the view left stale in `A`'s own translations:
//! a table shared between `A` and `B` (the kernel half) freed or created
//! through the view is reached in `A` through a recursive address `r:…`
//! that the view's own invalidations (at `s:…`) do not name. Data pages are
//! invalidated by the view's flush tokens at their own addresses, which is
//! exactly right for shared pages and harmless for the others.
//!
//! # Lifetimes instead of rules
//!
//! [`InactiveSpace`] borrows the active table mutably: while it exists the
//! active table cannot be used (nor the slot re-pointed), and once it is
//! dropped (which closes the slot) safe code cannot reach it any more.
//!
//! # Kernel half
//!
//! [`RecursivePageTable::create_space`] copies chosen level-4 entries of the
//! active table (the kernel half): both hierarchies then share those
//! level-3 tables, so everything mapped below them later is seen by both.
//! A level-4 entry added to the active table *after* a space was created
//! would not be; [`RecursivePageTable::prepare_shared`] therefore creates
//! (empty) level-3 tables for every entry of the kernel half up front, and
//! `create_space` refuses to share an entry that is not present. Shared
//! level-3 tables must stay: do not run `clean_up` over a shared range
//! (use [`RecursivePageTable::clean_up_unshared`], or `clean_up_addr_range`
//! over the unshared part); the flags of a shared level-4 entry are copied
//! at creation, not propagated.
//!
//! # Example
//!
//! On the emulator (feature `emu`); `runtime/examples/address_space.rs`
//! builds a kernel space and two processes.
//!
//! ```
//! # #[cfg(feature = "emu")] {
//! use framealloc::emu::Machine;
//! use framealloc::paging::{EntrySet, RecursivePageTable};
//! use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB};
//! use framealloc::x86_64::{PhysAddr, VirtAddr};
//!
//! let (r, slot) = (PageTableIndex::new(510), PageTableIndex::new(509));
//! let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
//! let mut table = RecursivePageTable::new(Machine::with_recursive_table(r, l4).unwrap(), r).unwrap();
//! let mut next = 0x10_0000u64;
//! let mut freed_frames = 0;
//! // SAFETY: every call yields a fresh frame (freed ones are only counted).
//! let mut frames = unsafe {
//!     framealloc::from_fns(
//!         || { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) },
//!         |_| freed_frames += 1,
//!     )
//! };
//! let kernel_half = EntrySet::range(PageTableIndex::new(256), PageTableIndex::new(300));
//! // SAFETY: the entries are the kernel table's own.
//! unsafe { table.prepare_shared(&kernel_half, &mut frames) }.unwrap();
//! let process = table.create_space(slot, &kernel_half, &mut frames).unwrap();
//!
//! // Load a page into the process while the kernel space is active.
//! let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x40_0000));
//! let frame = PhysFrame::containing_address(PhysAddr::new(0x80_0000));
//! table.backend_mut().memory_mut().write_u64(frame.start_address(), 7).unwrap();
//! {
//!     let mut view = table.edit(&process).unwrap();
//!     // SAFETY: emulated memory.
//!     unsafe { view.map_to(page, frame, F::PRESENT | F::USER_ACCESSIBLE, &mut frames) }.unwrap().flush();
//! } // the slot is closed here
//! assert!(table.backend().read_u64(page.start_address()).is_err()); // not in the kernel space
//!
//! // SAFETY: the emulated machine; the process shares the kernel half.
//! let kernel = unsafe { table.switch_to(process) }.unwrap();
//! assert_eq!(table.backend().read_u64(page.start_address()).unwrap(), 7);
//! // SAFETY: as above.
//! let process = unsafe { table.switch_to(kernel) }.unwrap();
//! // SAFETY: the process's own tables belong to it alone.
//! let freed = unsafe { table.destroy_space(process, &mut frames, |_, _| ()) }.unwrap();
//! assert_eq!(freed, 4); // its level-4, -3, -2 and -1 tables
//! drop(frames);
//! assert_eq!(freed_frames, 4);
//! # }
//! ```

use core::fmt;
use core::ops::{Deref, DerefMut};

use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTableFlags, PageTableIndex, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::{Backend, Mapping, RecursivePageTable};

// Entry bits (the module reads and writes raw entries through `Backend`).
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Sign-extends a 48-bit address to a canonical one.
const fn sign_extend(addr: u64) -> u64 {
    ((addr << 16).cast_signed() >> 16).cast_unsigned()
}

/// The `PageTableLevel` of a level number in `1..=4`.
const fn level_of(level: usize) -> PageTableLevel {
    match level {
        1 => PageTableLevel::One,
        2 => PageTableLevel::Two,
        3 => PageTableLevel::Three,
        _ => PageTableLevel::Four,
    }
}
/// A set of level-4 indices (the entries an [`AddressSpace`] shares with
/// the space it was created from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntrySet {
    bits: [u64; 8],
}

impl EntrySet {
    /// The empty set.
    #[must_use]
    pub const fn new() -> Self {
        EntrySet { bits: [0; 8] }
    }

    /// The indices `first..=last` (empty if `first > last`).
    #[must_use]
    pub fn range(first: PageTableIndex, last: PageTableIndex) -> Self {
        let mut set = Self::new();
        for i in u16::from(first)..=u16::from(last) {
            set.insert(PageTableIndex::new(i));
        }
        set
    }

    /// Adds `index`.
    pub fn insert(&mut self, index: PageTableIndex) {
        let i = usize::from(u16::from(index));
        self.bits[i / 64] |= 1 << (i % 64);
    }

    /// Removes `index`.
    pub fn remove(&mut self, index: PageTableIndex) {
        let i = usize::from(u16::from(index));
        self.bits[i / 64] &= !(1 << (i % 64));
    }

    /// Whether `index` is in the set.
    #[must_use]
    pub fn contains(&self, index: PageTableIndex) -> bool {
        let i = usize::from(u16::from(index));
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// Number of indices in the set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bits == [0; 8]
    }

    /// The indices, ascending.
    pub fn iter(&self) -> impl Iterator<Item = PageTableIndex> + '_ {
        (0..512u16)
            .map(PageTableIndex::new)
            .filter(|&i| self.contains(i))
    }
}

/// An inactive address space: the frame of its level-4 table, the level-4
/// entries it shares with other spaces, and the slot index through which it
/// is edited.
///
/// Made by [`RecursivePageTable::create_space`], consumed by
/// [`RecursivePageTable::switch_to`] (which hands back the space it left)
/// and [`RecursivePageTable::destroy_space`]. Not `Clone`: one value per
/// hierarchy, so it cannot be destroyed twice by safe code.
#[derive(Debug, PartialEq, Eq)]
pub struct AddressSpace {
    level_4: PhysFrame,
    shared: EntrySet,
    slot: PageTableIndex,
}

impl AddressSpace {
    /// The frame of the space's level-4 table (what CR3 holds while it is
    /// active).
    #[must_use]
    pub fn level_4_frame(&self) -> PhysFrame {
        self.level_4
    }

    /// The level-4 entries shared with other spaces: their tables are never
    /// freed by [`RecursivePageTable::destroy_space`].
    #[must_use]
    pub fn shared(&self) -> &EntrySet {
        &self.shared
    }

    /// The level-4 index of the active table through which this space is
    /// reached while inactive.
    #[must_use]
    pub fn slot(&self) -> PageTableIndex {
        self.slot
    }
}

/// Why an address-space operation refused to run. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceError {
    /// The slot index is 0, 511 or the active table's recursive index.
    SlotInvalid {
        /// The slot index given.
        slot: u16,
    },
    /// The active table's entry at the slot index is in use.
    SlotInUse {
        /// The entry found there.
        entry: u64,
    },
    /// The active table's recursive entry has `GLOBAL` set, so a CR3 reload
    /// would not drop the translations through the slot.
    RecursiveEntryGlobal {
        /// The recursive entry found.
        entry: u64,
    },
    /// A level-4 entry to share is not present (or is a huge entry), or is
    /// the recursive entry or the slot.
    SharedNotPresent {
        /// The index asked for.
        index: u16,
        /// The active table's entry there.
        entry: u64,
    },
    /// The allocator gave no frame for the new level-4 (or level-3) table.
    OutOfFrames,
    /// The space is the active one (it cannot be edited through the slot,
    /// nor destroyed).
    Active,
    /// The space's entry at the recursive index does not point to its own
    /// level-4 table as a present, writable, supervisor-only, non-global
    /// table entry, so it could not be used once active.
    NotRecursive {
        /// The entry found.
        entry: u64,
    },
    /// The space's entry at the slot index is not empty (it would be a
    /// second, unexpected mapping once the space is active).
    SlotNotEmpty {
        /// The entry found.
        entry: u64,
    },
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SlotInvalid { slot } => write!(
                f,
                "slot index {slot} is 0, 511 or the recursive index; choose a free level-4 index"
            ),
            Self::SlotInUse { entry } => {
                write!(
                    f,
                    "the active level-4 entry at the slot is in use ({entry:#x})"
                )
            }
            Self::RecursiveEntryGlobal { entry } => write!(
                f,
                "the recursive entry {entry:#x} is global: a CR3 reload would keep stale \
                 translations of the slot"
            ),
            Self::SharedNotPresent { index, entry } => write!(
                f,
                "level-4 entry {index} ({entry:#x}) cannot be shared: not a present table \
                 pointer, or the recursive entry or the slot"
            ),
            Self::OutOfFrames => f.write_str("the allocator has no frame for a page table"),
            Self::Active => f.write_str("the address space is the active one"),
            Self::NotRecursive { entry } => write!(
                f,
                "the space's recursive entry {entry:#x} does not point to its own level-4 \
                 table (present, writable, supervisor-only, not global)"
            ),
            Self::SlotNotEmpty { entry } => {
                write!(f, "the space's entry at the slot is not empty ({entry:#x})")
            }
        }
    }
}

impl core::error::Error for SpaceError {}

/// The value of a level-4 entry pointing at table `frame` (present,
/// writable, supervisor-only, never global).
fn table_entry(frame: PhysFrame) -> u64 {
    frame.start_address().as_u64() | PRESENT | WRITABLE
}

/// `i:j:k:l` as a canonical address.
fn recursive_address(i: u64, j: u64, k: u64, l: u64) -> VirtAddr {
    VirtAddr::new_truncate(sign_extend(i << 39 | j << 30 | k << 21 | l << 12))
}

/// Where things are for one use of the slot.
#[derive(Debug, Clone, Copy)]
struct SlotAddresses {
    /// The active level-4 table (`r:r:r:r`).
    active_l4: VirtAddr,
    /// The slot's target as a data page (`r:r:r:s`).
    target_page: VirtAddr,
    /// The target's level-4 table through the slot (`s:s:s:s`).
    view_l4: VirtAddr,
    r: usize,
    s: usize,
}

impl SlotAddresses {
    fn new(r: u64, s: u64) -> Self {
        SlotAddresses {
            active_l4: recursive_address(r, r, r, r),
            target_page: recursive_address(r, r, r, s),
            view_l4: recursive_address(s, s, s, s),
            r: r as usize,
            s: s as usize,
        }
    }
}

impl<B: Backend> RecursivePageTable<B> {
    /// Reads entry `index` of the active level-4 table.
    fn active_l4_entry(&self, index: usize) -> u64 {
        let l4 = self.table_address(PageTableLevel::Four, VirtAddr::zero());
        // SAFETY: `l4` is the recursive address of the active level-4 table,
        // which exists (the table's construction contract), and index < 512.
        unsafe { self.backend().read_entry(l4, index & 511) }
    }

    /// Checks that `slot` can be used by the active table and is free.
    fn slot_addresses(&self, slot: PageTableIndex) -> Result<SlotAddresses, SpaceError> {
        let r = u64::from(u16::from(self.recursive_index()));
        let s = u64::from(u16::from(slot));
        if s == 0 || s == 511 || s == r {
            return Err(SpaceError::SlotInvalid { slot: s as u16 });
        }
        let recursive = self.active_l4_entry(r as usize);
        if recursive & GLOBAL != 0 {
            return Err(SpaceError::RecursiveEntryGlobal { entry: recursive });
        }
        let entry = self.active_l4_entry(s as usize);
        if entry != 0 {
            return Err(SpaceError::SlotInUse { entry });
        }
        Ok(SlotAddresses::new(r, s))
    }

    /// Writes the active table's slot entry and drops every translation
    /// that went through its old value (see the module docs).
    ///
    /// # Safety
    ///
    /// `value` is 0 or [`table_entry`] of a frame holding a level-4 table
    /// (or a frame about to be zeroed through the slot) that nothing else
    /// uses as data.
    unsafe fn set_slot(&mut self, at: SlotAddresses, value: u64) {
        // SAFETY: `active_l4` is the active level-4 table's recursive
        // address and `s < 512`; the caller vouches for the value, and the
        // slot entry is used by nothing but this module.
        unsafe { self.backend_mut().write_entry(at.active_l4, at.s, value) };
        self.backend_mut().flush_all();
    }

    /// Reads entry `index` of the slot's target as a data page.
    fn target_entry(&self, at: SlotAddresses, index: usize) -> u64 {
        // SAFETY: the slot is open (`A[s]` points at a level-4 frame), so
        // `r:r:r:s` maps that frame as a page: a mapped, 4 KiB table.
        unsafe { self.backend().read_entry(at.target_page, index & 511) }
    }

    /// Writes entry `index` of the slot's target as a data page.
    ///
    /// # Safety
    ///
    /// The slot is open, and the value keeps the target a valid hierarchy.
    unsafe fn write_target_entry(&mut self, at: SlotAddresses, index: usize, value: u64) {
        // SAFETY: as in `target_entry`; the caller vouches for the value.
        unsafe {
            self.backend_mut()
                .write_entry(at.target_page, index & 511, value);
        }
    }

    /// Creates level-3 tables (empty, present, writable, supervisor-only)
    /// for every entry of `entries` that is not present in the active
    /// level-4 table, so that spaces created later share them (see the
    /// module docs, "Kernel half"). The recursive index is skipped. Returns
    /// how many tables were created.
    ///
    /// # Errors
    ///
    /// [`SpaceError::OutOfFrames`] if the allocator runs dry; the tables
    /// created before stay (they are valid, empty tables), and calling
    /// again continues.
    ///
    /// # Safety
    ///
    /// The allocator yields unused frames; the entries of `entries` are not
    /// in use by anything but this table (no slot of an open view, no
    /// foreign mapping).
    pub unsafe fn prepare_shared<A>(
        &mut self,
        entries: &EntrySet,
        allocator: &mut A,
    ) -> Result<usize, SpaceError>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let r = u64::from(u16::from(self.recursive_index()));
        let l4 = recursive_address(r, r, r, r);
        let mut created = 0;
        for index in entries.iter() {
            let i = u64::from(u16::from(index));
            if i == r || self.active_l4_entry(i as usize) != 0 {
                continue;
            }
            let frame = allocator.allocate_frame().ok_or(SpaceError::OutOfFrames)?;
            let table = recursive_address(r, r, r, i);
            // SAFETY: entry `i` of the active level-4 table was empty and is
            // ours (the caller's contract); it now points at a fresh frame,
            // whose recursive address is invalidated before it is zeroed
            // through it, as for any new table.
            unsafe {
                self.backend_mut()
                    .write_entry(l4, i as usize, table_entry(frame));
                self.backend_mut().flush_page(table);
                self.backend_mut().zero_table(table);
            }
            created += 1;
        }
        Ok(created)
    }

    /// [`clean_up`](Self::clean_up) restricted to the level-4 entries not
    /// in `shared`: frees the empty tables of the unshared part (and hands
    /// back spare frames), never a shared table, not even an empty one
    /// (`clean_up` would free an empty level-3 table that
    /// [`prepare_shared`](Self::prepare_shared) made for the kernel half,
    /// which every space still points to). Returns how many tables were
    /// freed.
    ///
    /// # Safety
    ///
    /// As [`clean_up`](Self::clean_up) for the tables below the entries
    /// not in `shared`.
    pub unsafe fn clean_up_unshared<D>(&mut self, shared: &EntrySet, deallocator: &mut D) -> usize
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        let r = self.recursive_index();
        let mut freed = 0;
        for i in 0..512u16 {
            let index = PageTableIndex::new(i);
            if index == r || shared.contains(index) {
                continue;
            }
            let start = sign_extend(u64::from(i) << 39);
            let range = x86_64::structures::paging::Page::range_inclusive(
                x86_64::structures::paging::Page::containing_address(VirtAddr::new_truncate(start)),
                x86_64::structures::paging::Page::containing_address(VirtAddr::new_truncate(
                    start + ((1 << 39) - 1),
                )),
            );
            // SAFETY: the caller's contract; the range covers one unshared
            // level-4 entry.
            freed += unsafe { self.clean_up_addr_range(range, deallocator) };
        }
        freed
    }

    /// Creates an address space: a level-4 table in a frame from
    /// `allocator`, zeroed through the slot, with its own recursive entry at
    /// this table's recursive index and a copy of the active table's entries
    /// in `shared` (the kernel half; see
    /// [`prepare_shared`](Self::prepare_shared)).
    ///
    /// `slot` is a level-4 index that the active table does not use; the
    /// new space is edited through it later ([`edit`](Self::edit)) and
    /// keeps it empty itself.
    ///
    /// # Errors
    ///
    /// [`SpaceError`]: an unusable or busy slot, a shared entry that is not
    /// a present table pointer (or is the recursive entry or the slot), no
    /// frame. Nothing is changed (no frame is taken) on error.
    pub fn create_space<A>(
        &mut self,
        slot: PageTableIndex,
        shared: &EntrySet,
        allocator: &mut A,
    ) -> Result<AddressSpace, SpaceError>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let at = self.slot_addresses(slot)?;
        for index in shared.iter() {
            let i = usize::from(u16::from(index));
            let entry = self.active_l4_entry(i);
            if i == at.r || i == at.s || entry & (PRESENT | HUGE) != PRESENT {
                return Err(SpaceError::SharedNotPresent {
                    index: i as u16,
                    entry,
                });
            }
        }
        let frame = allocator.allocate_frame().ok_or(SpaceError::OutOfFrames)?;
        // SAFETY: the frame is fresh (the allocator's contract) and about to
        // be zeroed through the slot; the slot was free.
        unsafe { self.set_slot(at, table_entry(frame)) };
        // SAFETY: the slot is open; `r:r:r:s` maps the new frame.
        unsafe { self.backend_mut().zero_table(at.target_page) };
        for index in shared.iter() {
            let i = usize::from(u16::from(index));
            let entry = self.active_l4_entry(i);
            // SAFETY: the slot is open; the entry is a present table pointer
            // of the active hierarchy, now shared.
            unsafe { self.write_target_entry(at, i, entry) };
        }
        // SAFETY: the slot is open; the new table's own recursive entry.
        unsafe { self.write_target_entry(at, at.r, table_entry(frame)) };
        // SAFETY: clearing the slot.
        unsafe { self.set_slot(at, 0) };
        Ok(AddressSpace {
            level_4: frame,
            shared: *shared,
            slot,
        })
    }

    /// Opens `space` for editing through its slot: the returned view runs
    /// the whole [`RecursivePageTable`] API on it (it dereferences to a
    /// table whose recursive index is the slot). Dropping the view closes
    /// the slot.
    ///
    /// The view's flush tokens invalidate the active TLB (the only one
    /// there is); see the module docs for why that is right.
    ///
    /// # Errors
    ///
    /// [`SpaceError`]: an unusable or busy slot, the active space itself,
    /// or a space whose recursive entry is not its own (nothing changed).
    pub fn edit(&mut self, space: &AddressSpace) -> Result<InactiveSpace<'_, B>, SpaceError> {
        let at = self.open(space)?;
        // SAFETY: the slot is open; `B[s] = B` makes `B` recursive at `s`
        // through the slot, and `B[s]` was checked empty by `open`.
        unsafe { self.write_target_entry(at, at.s, table_entry(space.level_4)) };
        // `B[s]` was empty, so nothing was cached through it; the slot's
        // flush in `open` dropped everything cached through `A[s]`.
        let backend = SlotBackend {
            active: self.backend_mut(),
            level_4: space.level_4,
            hidden: at.view_l4 + at.r as u64 * 8,
            at,
        };
        // SAFETY: `B`'s entry `s` is present, writable and points to `B`
        // through the active slot `A[s] = B`, the backend reports `B` as its
        // level-4 frame, and the borrow of the active table keeps anything
        // else from changing the tables while the view lives.
        let table = unsafe { RecursivePageTable::new_unchecked(backend, space.slot) };
        Ok(InactiveSpace { table })
    }

    /// Checks `space` and points the slot at it; on error the slot is
    /// closed again.
    fn open(&mut self, space: &AddressSpace) -> Result<SlotAddresses, SpaceError> {
        let at = self.slot_addresses(space.slot)?;
        if space.level_4 == self.backend().level_4_frame() {
            return Err(SpaceError::Active);
        }
        // SAFETY: the space's frame holds a level-4 table (the value was made
        // by `create_space`).
        unsafe { self.set_slot(at, table_entry(space.level_4)) };
        if let Err(error) = self.check_target(at, space.level_4) {
            // SAFETY: closing the slot.
            unsafe { self.set_slot(at, 0) };
            return Err(error);
        }
        Ok(at)
    }

    /// The checks of a space's own entries, read through the open slot.
    fn check_target(&self, at: SlotAddresses, level_4: PhysFrame) -> Result<(), SpaceError> {
        let entry = self.target_entry(at, at.r);
        if entry & (PRESENT | WRITABLE | USER | HUGE | GLOBAL | ADDR_MASK)
            != level_4.start_address().as_u64() | PRESENT | WRITABLE
        {
            return Err(SpaceError::NotRecursive { entry });
        }
        let entry = self.target_entry(at, at.s);
        if entry != 0 {
            return Err(SpaceError::SlotNotEmpty { entry });
        }
        Ok(())
    }

    /// Destroys `space`: hands every page table of it that is not reached
    /// through a shared level-4 entry to `deallocator` (children before
    /// parents, the level-4 table last), after invalidating its address
    /// through the slot, and reports every present leaf outside the shared
    /// entries to `leaves` (to free its frame, or ignore it). Returns how
    /// many tables were freed.
    ///
    /// # Errors
    ///
    /// As [`edit`](Self::edit) ([`SpaceError::Active`] for the active
    /// space); the space is handed back with the error, unchanged.
    ///
    /// # Safety
    ///
    /// The space's page tables are used by it alone, apart from the tables
    /// below its shared entries (which are never freed); the deallocator
    /// takes the frames back.
    pub unsafe fn destroy_space<D, L>(
        &mut self,
        space: AddressSpace,
        deallocator: &mut D,
        mut leaves: L,
    ) -> Result<usize, (AddressSpace, SpaceError)>
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
        L: FnMut(Mapping, &mut D),
    {
        let at = match self.open(&space) {
            Ok(at) => at,
            Err(error) => return Err((space, error)),
        };
        // `B[s]` is empty (checked), so the space is reached only at
        // `r:r:r:s`; its tables are walked through a view made just for the
        // walk (the same one `edit` makes), then freed.
        // SAFETY: as in `edit`.
        unsafe { self.write_target_entry(at, at.s, table_entry(space.level_4)) };
        let mut freed = 0;
        {
            let backend = SlotBackend {
                active: self.backend_mut(),
                level_4: space.level_4,
                hidden: at.view_l4 + at.r as u64 * 8,
                at,
            };
            // SAFETY: as in `edit`.
            let mut view = unsafe { RecursivePageTable::new_unchecked(backend, space.slot) };
            for i in 0..512u64 {
                let index = PageTableIndex::new(i as u16);
                if i as usize == at.r || i as usize == at.s || space.shared.contains(index) {
                    continue;
                }
                // SAFETY: the caller's contract: these tables are the
                // space's own.
                freed += unsafe {
                    free_below(&mut view, 4, sign_extend(i << 39), deallocator, &mut leaves)
                };
            }
        }
        // SAFETY: closing the slot (which also drops `B[s]`'s translations).
        unsafe { self.set_slot(at, 0) };
        // SAFETY: the level-4 table is unreachable now (the slot is closed
        // and flushed, the space is not active); the caller's contract.
        unsafe { deallocator.deallocate_frame(space.level_4) };
        Ok(freed + 1)
    }
}

/// Frees the table `v`'s level-`level` entry points to (if it is a present
/// table pointer) and everything below it; reports leaves. Returns the
/// number of tables freed.
///
/// # Safety
///
/// As [`RecursivePageTable::destroy_space`].
unsafe fn free_below<B, D, L>(
    view: &mut RecursivePageTable<B>,
    level: usize,
    v: u64,
    deallocator: &mut D,
    leaves: &mut L,
) -> usize
where
    B: Backend,
    D: FrameDeallocator<Size4KiB> + ?Sized,
    L: FnMut(Mapping, &mut D),
{
    let table = view.table_address(level_of(level), VirtAddr::new_truncate(v));
    let index = ((v >> (12 + 9 * (level - 1))) & 511) as usize;
    // SAFETY: the table on `v`'s path at `level` exists: every entry above
    // it was read as a present table pointer by the callers (level 4 needs
    // nothing), and the view's slot is open.
    let entry = unsafe { view.backend().read_entry(table, index) };
    if entry & PRESENT == 0 {
        return 0;
    }
    if level == 1 || entry & HUGE != 0 {
        if level < 4 {
            let size = 1u64 << (12 + 9 * (level - 1));
            leaves(
                Mapping {
                    start: VirtAddr::new_truncate(v),
                    frame: PhysAddr::new(entry & ADDR_MASK & !(size - 1)),
                    size,
                    flags: PageTableFlags::from_bits_truncate(entry),
                },
                deallocator,
            );
        }
        return 0;
    }
    let child = level - 1;
    let span = 1u64 << (12 + 9 * (child - 1));
    let base = v & 0xffff_ffff_ffff & !((span << 9) - 1);
    let mut freed = 0;
    for j in 0..512u64 {
        // SAFETY: forwarded contract; `v`'s entry at `level` is a present
        // table pointer, so the child's entries may be read.
        freed += unsafe {
            free_below(
                view,
                child,
                sign_extend(base + j * span),
                deallocator,
                leaves,
            )
        };
    }
    let table = view.table_address(level_of(child), VirtAddr::new_truncate(v));
    view.backend_mut().flush_page(table);
    let frame = PhysFrame::containing_address(PhysAddr::new(entry & ADDR_MASK));
    // SAFETY: the caller's contract; the table was read for the last time
    // above, and its address through the slot is invalidated.
    unsafe { deallocator.deallocate_frame(frame) };
    freed + 1
}

/// A backend that can switch address spaces (write CR3).
///
/// # Safety
///
/// Implementers guarantee that [`write_cr3`](Self::write_cr3) makes
/// `level_4` the active level-4 table with the hardware's invalidation
/// (every non-global translation and paging-structure-cache entry dropped)
/// and that [`Backend::level_4_frame`] reports it afterwards.
pub unsafe trait SwitchSpace: Backend {
    /// Loads `level_4` into CR3.
    ///
    /// # Safety
    ///
    /// `level_4` holds a level-4 table that maps everything the running code
    /// needs (its code, stack, data, and the page tables through the
    /// recursive entry).
    unsafe fn write_cr3(&mut self, level_4: PhysFrame);
}

// SAFETY: `Cr3::write` is the architectural switch; `Mmu<true>` reads CR3
// afresh for its level-4 frame.
unsafe impl SwitchSpace for super::Mmu<true> {
    #[inline]
    unsafe fn write_cr3(&mut self, level_4: PhysFrame) {
        let (_, flags) = x86_64::registers::control::Cr3::read();
        // SAFETY: the caller's contract.
        unsafe { x86_64::registers::control::Cr3::write(level_4, flags) };
    }
}

#[cfg(feature = "emu")]
// SAFETY: `Machine::set_cr3` switches with the hardware's semantics and
// `cr3` (its level-4 frame) reports the new value.
unsafe impl SwitchSpace for crate::emu::Machine {
    unsafe fn write_cr3(&mut self, level_4: PhysFrame) {
        self.set_cr3(level_4);
    }
}

impl<B: SwitchSpace> RecursivePageTable<B> {
    /// Switches to `space` (a CR3 write) and returns the space that was
    /// active, with `space`'s shared entries and slot (the entries the two
    /// share). The table keeps working, now on `space`, through the same
    /// recursive index.
    ///
    /// Checked first, through the slot: the space is not the active one,
    /// its recursive entry points to itself (present, writable,
    /// supervisor-only, not global) and its slot entry is empty.
    ///
    /// # Errors
    ///
    /// [`SpaceError`], with the space handed back; nothing changed.
    ///
    /// # Safety
    ///
    /// `space` maps everything the running code needs: its code, stack and
    /// data (typically through the shared kernel half); see
    /// [`SwitchSpace::write_cr3`].
    pub unsafe fn switch_to(
        &mut self,
        space: AddressSpace,
    ) -> Result<AddressSpace, (AddressSpace, SpaceError)> {
        let at = match self.open(&space) {
            Ok(at) => at,
            Err(error) => return Err((space, error)),
        };
        // SAFETY: closing the slot.
        unsafe { self.set_slot(at, 0) };
        let previous = self.backend().level_4_frame();
        // SAFETY: the caller's contract; the recursive entry was checked.
        unsafe { self.backend_mut().write_cr3(space.level_4) };
        Ok(AddressSpace {
            level_4: previous,
            shared: space.shared,
            slot: space.slot,
        })
    }
}

/// The backend of an [`InactiveSpace`]: the active backend, borrowed,
/// reporting the inactive space's level-4 frame, with the space's own
/// recursive entry shown as a huge entry (see the module docs).
pub struct SlotBackend<'a, B: Backend> {
    active: &'a mut B,
    level_4: PhysFrame,
    /// `B[r]` through the slot.
    hidden: VirtAddr,
    at: SlotAddresses,
}

impl<B: Backend> SlotBackend<'_, B> {
    /// The active backend (for instance the emulated machine, to read
    /// memory through the active space's TLB).
    pub fn active(&self) -> &B {
        self.active
    }
}

impl<B: Backend> fmt::Debug for SlotBackend<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotBackend")
            .field("level_4", &self.level_4)
            .field("slot", &self.at.s)
            .finish_non_exhaustive()
    }
}

// SAFETY: forwards every access to the active backend, at the same address:
// through the open slot these are the inactive space's tables, which the
// view's table code addresses recursively through the slot. The one entry
// changed (`B[r]`, read with `HUGE` added, writes dropped) is never followed
// by the table code, which treats it as a huge entry. `level_4_frame` is the
// inactive space's frame, the table the slot reaches recursively.
unsafe impl<B: Backend> Backend for SlotBackend<'_, B> {
    fn level_4_frame(&self) -> PhysFrame {
        self.level_4
    }

    unsafe fn read_entry(&self, table: VirtAddr, index: usize) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { self.read_entry_at(table + index as u64 * 8) }
    }

    unsafe fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64) {
        // SAFETY: forwarded contract.
        unsafe { self.write_entry_at(table + index as u64 * 8, value) };
    }

    unsafe fn read_entry_at(&self, entry: VirtAddr) -> u64 {
        // SAFETY: forwarded contract.
        let value = unsafe { self.active.read_entry_at(entry) };
        if entry == self.hidden {
            value | HUGE
        } else {
            value
        }
    }

    unsafe fn write_entry_at(&mut self, entry: VirtAddr, value: u64) {
        if entry != self.hidden {
            // SAFETY: forwarded contract.
            unsafe { self.active.write_entry_at(entry, value) };
        }
    }

    unsafe fn zero_table(&mut self, table: VirtAddr) {
        if table == self.at.view_l4 {
            // Never done by the table code; keep the recursive entry.
            for index in (0..512).filter(|&i| i != self.at.r) {
                // SAFETY: forwarded contract.
                unsafe { self.active.write_entry(table, index, 0) };
            }
        } else {
            // SAFETY: forwarded contract.
            unsafe { self.active.zero_table(table) };
        }
    }

    unsafe fn zero_entries(&mut self, table: VirtAddr, start: usize, len: usize) {
        for index in start..start + len {
            // SAFETY: forwarded contract (through the filtering write).
            unsafe { self.write_entry(table, index, 0) };
        }
    }

    fn flush_page(&mut self, addr: VirtAddr) {
        self.active.flush_page(addr);
    }

    fn flush_all(&mut self) {
        self.active.flush_all();
    }

    fn flush_global(&mut self) {
        self.active.flush_global();
    }
}

/// An inactive address space opened for editing: dereferences to a
/// [`RecursivePageTable`] on it (recursive index: the slot), and closes
/// the slot when dropped.
///
/// Frames that a failed map took from the allocator and kept as spares
/// (see [`RecursivePageTable::spare_frames`]) belong to the view: hand them
/// back with `clean_up_addr_range` over a non-empty range before the view
/// is dropped, or they are lost.
///
/// It borrows the active table mutably, so the active table cannot be used
/// while it lives, and it cannot be used once the slot is closed:
///
/// ```compile_fail,E0499
/// # use framealloc::emu::Machine;
/// # use framealloc::paging::{EntrySet, RecursivePageTable};
/// # use framealloc::x86_64::structures::paging::{PageTableIndex, PhysFrame};
/// # use framealloc::x86_64::PhysAddr;
/// # let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
/// # let mut table = RecursivePageTable::new(Machine::with_recursive_table(PageTableIndex::new(510), l4).unwrap(), PageTableIndex::new(510)).unwrap();
/// # let mut next = 0x10_0000u64;
/// # let mut frames = unsafe { framealloc::from_fn(|| { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) }) };
/// let space = table.create_space(PageTableIndex::new(509), &EntrySet::new(), &mut frames).unwrap();
/// let view = table.edit(&space).unwrap();
/// let other = table.edit(&space); // error: the table is borrowed by `view`
/// drop(view);
/// ```
pub struct InactiveSpace<'a, B: Backend> {
    table: RecursivePageTable<SlotBackend<'a, B>>,
}

impl<B: Backend> InactiveSpace<'_, B> {
    /// Closes the slot (the same as dropping the view).
    pub fn close(self) {}
}

impl<'a, B: Backend> Deref for InactiveSpace<'a, B> {
    type Target = RecursivePageTable<SlotBackend<'a, B>>;
    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

impl<B: Backend> DerefMut for InactiveSpace<'_, B> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.table
    }
}

impl<B: Backend> fmt::Debug for InactiveSpace<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InactiveSpace")
            .field("backend", self.table.backend())
            .finish()
    }
}

impl<B: Backend> Drop for InactiveSpace<'_, B> {
    fn drop(&mut self) {
        let backend = self.table.backend_mut();
        let at = backend.at;
        // SAFETY: the slot is open: `B[s]` through `r:r:r:s` and `A[s]` at
        // the active level-4 table are entries of existing tables; clearing
        // them unlinks only the slot.
        unsafe {
            backend.active.write_entry(at.target_page, at.s, 0);
            backend.active.write_entry(at.active_l4, at.s, 0);
        }
        backend.active.flush_all();
    }
}
