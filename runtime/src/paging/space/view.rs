//! The view of an inactive space through the slot.

use core::fmt;
use core::ops::{Deref, DerefMut};

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

use super::super::{Backend, RecursivePageTable};
use super::{HUGE, SlotAddresses};

/// The backend of an [`InactiveSpace`]: the active backend, borrowed,
/// reporting the inactive space's level-4 frame, with the space's own
/// recursive entry shown as a huge entry (see the module docs).
pub struct SlotBackend<'a, B: Backend> {
    pub(super) active: &'a mut B,
    pub(super) level_4: PhysFrame,
    /// `B[r]` through the slot.
    pub(super) hidden: VirtAddr,
    pub(super) at: SlotAddresses,
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
    pub(super) table: RecursivePageTable<SlotBackend<'a, B>>,
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
