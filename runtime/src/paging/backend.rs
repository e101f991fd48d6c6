//! The one seam between page-table logic and the machine.
//!
//! Every read or write of a page-table entry and every TLB invalidation made
//! by [`RecursivePageTable`](super) goes through a [`Backend`]. Tables are
//! addressed by their *recursive virtual address* (the address at which the
//! recursive entry makes a table visible), exactly as the CPU sees them, so
//! a backend that models the MMU also models what a stale TLB entry for a
//! table's recursive address does.
//!
//! Two backends exist: the hardware one (plain memory accesses at the
//! recursive addresses, `invlpg` and CR3 reloads), and the emulator's
//! (`framealloc::emu`, feature `emu`), which routes each access through an
//! emulated MMU and TLB.

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

/// Access to the page tables of the active address space, and to its TLB.
///
/// All methods are called with `table` set to the recursive virtual address
/// of a page table (4 KiB aligned) and `index < 512`.
///
/// # Safety
///
/// Implementers guarantee that `read_entry`/`write_entry` (and the `_at`
/// forms, for the entry at that address) read and write the 8-byte entry
/// `index` of the 4 KiB page that the address space's *current
/// translation* (including any stale TLB entry) maps at `table`; that
/// `zero_table` zeroes that page; and that `flush_page`/`flush_all` remove the
/// named translations from every TLB the page-table code relies on. Page-table
/// code trusts these facts to uphold memory safety.
pub unsafe trait Backend {
    /// The frame of the active level-4 table (what CR3 points to).
    fn level_4_frame(&self) -> PhysFrame;

    /// Reads entry `index` of the table at recursive address `table`.
    fn read_entry(&self, table: VirtAddr, index: usize) -> u64;

    /// Writes entry `index` of the table at recursive address `table`.
    fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64);

    /// Reads the entry at recursive address `entry` (8-byte aligned; the
    /// table is `entry` rounded down to 4 KiB, the index its offset / 8).
    ///
    /// The default splits the address and calls
    /// [`read_entry`](Self::read_entry); a backend that addresses memory
    /// directly can read in one step.
    #[inline]
    fn read_entry_at(&self, entry: VirtAddr) -> u64 {
        let addr = entry.as_u64();
        self.read_entry(
            VirtAddr::new_truncate(addr & !0xfff),
            ((addr & 0xfff) >> 3) as usize,
        )
    }

    /// Writes the entry at recursive address `entry`; see
    /// [`read_entry_at`](Self::read_entry_at).
    #[inline]
    fn write_entry_at(&mut self, entry: VirtAddr, value: u64) {
        let addr = entry.as_u64();
        self.write_entry(
            VirtAddr::new_truncate(addr & !0xfff),
            ((addr & 0xfff) >> 3) as usize,
            value,
        );
    }

    /// Zeroes the whole table at recursive address `table`.
    fn zero_table(&mut self, table: VirtAddr) {
        for index in 0..512 {
            self.write_entry(table, index, 0);
        }
    }

    /// Invalidates any TLB entry for the page containing `addr` (`invlpg`).
    fn flush_page(&mut self, addr: VirtAddr);

    /// Invalidates every non-global TLB entry (a CR3 reload).
    fn flush_all(&mut self);
}

// SAFETY: forwards every call to `B`, which upholds the contract.
unsafe impl<B: Backend + ?Sized> Backend for &mut B {
    #[inline]
    fn level_4_frame(&self) -> PhysFrame {
        (**self).level_4_frame()
    }
    #[inline]
    fn read_entry(&self, table: VirtAddr, index: usize) -> u64 {
        (**self).read_entry(table, index)
    }
    #[inline]
    fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64) {
        (**self).write_entry(table, index, value);
    }
    #[inline]
    fn read_entry_at(&self, entry: VirtAddr) -> u64 {
        (**self).read_entry_at(entry)
    }
    #[inline]
    fn write_entry_at(&mut self, entry: VirtAddr, value: u64) {
        (**self).write_entry_at(entry, value);
    }
    #[inline]
    fn zero_table(&mut self, table: VirtAddr) {
        (**self).zero_table(table);
    }
    #[inline]
    fn flush_page(&mut self, addr: VirtAddr) {
        (**self).flush_page(addr);
    }
    #[inline]
    fn flush_all(&mut self) {
        (**self).flush_all();
    }
}
