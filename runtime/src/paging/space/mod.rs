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

use x86_64::VirtAddr;

#[cfg(doc)]
use super::RecursivePageTable;
use x86_64::structures::paging::{PageTableIndex, PhysFrame};

mod ops;
mod switch;
mod view;

pub use switch::SwitchSpace;
pub use view::{InactiveSpace, SlotBackend};

use super::addr::{level_of, sign_extend};
use super::entry::{ADDR_MASK, GLOBAL, HUGE, PRESENT, USER, WRITABLE};

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
