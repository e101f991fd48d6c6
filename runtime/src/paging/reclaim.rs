//! Reclaim of empty page tables, with the TLB invalidation `x86_64` omits.
//!
//! The scan does not go through the range walker of `runs`: that walker
//! cuts a range into runs of leaf entries of one level, while reclaim is a
//! post-order walk of the tree (levels 4 to 2 at once) whose answer for a
//! child table, "now empty", decides whether its parent entry is cleared.
//! Each visited table's entries within the range are already one run, so the
//! walker would add a `Run` per table and save no code. The recursion is
//! const-generic per level, so no per-entry level test remains.

use x86_64::PhysAddr;
use x86_64::structures::paging::page::PageRangeInclusive;
use x86_64::structures::paging::{FrameDeallocator, PhysFrame, Size4KiB};

use super::addr::{LOW_48, sign_extend};
use super::entry::{ADDR_MASK, Entry};
use super::{Backend, RecursivePageTable};

impl<B: Backend> RecursivePageTable<B> {
    /// Frees every empty level-1, -2 and -3 table, handing its frame to
    /// `deallocator`, and returns how many were freed. Spare frames kept
    /// from failed maps are handed back too (and not counted).
    ///
    /// A freed table's recursive address is invalidated before its frame is
    /// deallocated (`x86_64`'s `CleanUp` skips that), so no stale translation
    /// reaches the frame or a table later created at that address.
    ///
    /// # Safety
    ///
    /// As `x86_64`'s `CleanUp::clean_up`: every page-table frame is used
    /// once, by this hierarchy only (no table shared with another address
    /// space or mapped at two places).
    pub unsafe fn clean_up<D>(&mut self, deallocator: &mut D) -> usize
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        // SAFETY: forwarded contract.
        unsafe { self.clean_up_range(0, LOW_48, deallocator) }
    }

    /// [`clean_up`](Self::clean_up) restricted to the tables reached from
    /// entries that cover `range` (a table is freed when all its entries are
    /// unused, even if it also covers addresses outside `range`, as in
    /// `x86_64`).
    ///
    /// # Safety
    ///
    /// As [`clean_up`](Self::clean_up).
    pub unsafe fn clean_up_addr_range<D>(
        &mut self,
        range: PageRangeInclusive<Size4KiB>,
        deallocator: &mut D,
    ) -> usize
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        if range.is_empty() {
            return 0;
        }
        let lo = range.start.start_address().as_u64() & LOW_48;
        let hi = range.end.start_address().as_u64() & LOW_48 | 0xfff;
        // SAFETY: forwarded contract.
        unsafe { self.clean_up_range(lo, hi, deallocator) }
    }

    unsafe fn clean_up_range<D>(&mut self, lo: u64, hi: u64, deallocator: &mut D) -> usize
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        let mut freed = 0;
        // SAFETY: forwarded contract.
        unsafe { self.clean_level(4, lo, hi, deallocator, &mut freed) };
        while let Some(frame) = self.take_spare() {
            // SAFETY: spare frames came from an allocator and are unused.
            unsafe { deallocator.deallocate_frame(frame) };
        }
        freed
    }

    /// Visits the entries of the level-`level` table covering the 48-bit
    /// offsets `lo..=hi` (which lie within that one table), frees empty
    /// child tables, and returns whether the table is now empty.
    unsafe fn clean_level<D>(
        &mut self,
        level: usize,
        lo: u64,
        hi: u64,
        deallocator: &mut D,
        freed: &mut usize,
    ) -> bool
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        // SAFETY: forwarded contract.
        unsafe {
            match level {
                4 => self.clean_table::<4, D>(lo, hi, deallocator, freed),
                3 => self.clean_table::<3, D>(lo, hi, deallocator, freed),
                _ => self.clean_table::<2, D>(lo, hi, deallocator, freed),
            }
        }
    }

    /// [`Self::clean_level`] for the level-`LEVEL` table.
    unsafe fn clean_table<const LEVEL: usize, D>(
        &mut self,
        lo: u64,
        hi: u64,
        deallocator: &mut D,
        freed: &mut usize,
    ) -> bool
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        let shift = 12 + 9 * (LEVEL - 1) as u64;
        let entry_span = 1u64 << shift;
        let table_start = lo & !((entry_span << 9) - 1);
        for i in (lo >> shift) & 511..=(hi >> shift) & 511 {
            if LEVEL == 4 && i == u64::from(u16::from(self.recursive_index())) {
                continue;
            }
            let start = table_start | i << shift;
            let v = sign_extend(start);
            let entry = self.read(LEVEL, v);
            if !Entry(entry).is_table() {
                continue;
            }
            let child_empty = if LEVEL > 2 {
                let child_lo = lo.max(start);
                let child_hi = hi.min(start + (entry_span - 1));
                // SAFETY: forwarded contract.
                unsafe { self.clean_level(LEVEL - 1, child_lo, child_hi, deallocator, freed) }
            } else {
                self.table_is_empty(1, v)
            };
            if child_empty {
                // SAFETY: forwarded contract; the child is empty.
                unsafe { self.free_child(LEVEL, v, entry, deallocator) };
                *freed += 1;
            }
        }
        LEVEL != 4 && self.table_is_empty(LEVEL, sign_extend(lo))
    }

    /// Unlinks and frees the empty table that `v`'s level-`level` entry
    /// (`entry`) points to (cold: the scan visits far more than it frees).
    #[cold]
    #[inline(never)]
    unsafe fn free_child<D>(&mut self, level: usize, v: u64, entry: u64, deallocator: &mut D)
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        self.make_writable_above(level, v);
        self.write(level, v, 0);
        let child = self.table(level - 1, v);
        self.backend_mut().flush_page(child);
        let frame = PhysFrame::containing_address(PhysAddr::new(entry & ADDR_MASK));
        // SAFETY: the frame held a table of this hierarchy only (the
        // caller's contract), which is now unlinked and no longer reachable
        // through the TLB.
        unsafe { deallocator.deallocate_frame(frame) };
    }
}
