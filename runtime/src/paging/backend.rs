//! The one seam between page-table logic and the machine: every entry access
//! and TLB invalidation of [`RecursivePageTable`](super) goes through a
//! [`Backend`], at the tables' recursive virtual addresses as the CPU sees
//! them, so an emulated MMU also models a stale TLB entry for a table. The
//! backends are the hardware [`Mmu`](super::Mmu) and the emulator's
//! (`framealloc::emu`, feature `emu`).

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

/// Access to the page tables of the active address space, and to its TLB.
///
/// The entry accessors are `unsafe`: on the hardware backend they are raw
/// memory accesses at whatever address they are given, so only code that
/// knows the address is the recursive address of an existing page table
/// (such as [`RecursivePageTable`](super::RecursivePageTable)) may call them.
/// The invalidations are safe (`invlpg` and a CR3 reload never break memory
/// safety, they only cost time).
///
/// # Safety
///
/// Implementers guarantee that `read_entry`/`write_entry` (and the `_at`
/// forms, for the entry at that address) read and write the 8-byte entry
/// `index` of the 4 KiB page that the address space's *current
/// translation* (including any stale TLB entry) maps at `table`; that
/// `zero_table` zeroes that page (and `zero_entries` the named entries of
/// it); and that `flush_page`/`flush_all`/`flush_global` remove the named
/// translations from every TLB the page-table code relies on. Page-table
/// code trusts these facts to uphold memory safety.
///
/// They also guarantee that, for any recursive index `r` a
/// [`RecursivePageTable`](super::RecursivePageTable) is created with over
/// this value, reading entry `r` of the table at the level-4 recursive address
/// of `r` is memory-safe even before it is known to be recursive (the
/// checking read of `RecursivePageTable::new`): the hardware backend's
/// constructors demand that the recursive window is mapped, and on the
/// emulator every access is safe. An implementation of
/// [`read_level_4_entry`](Backend::read_level_4_entry) returns entry `index`
/// of the active level-4 table whenever that entry is recursive (the
/// default, which reads through the window, can promise no more; one that
/// reads physical memory returns it whatever it holds).
pub unsafe trait Backend {
    /// The frame of the active level-4 table (what CR3 points to).
    fn level_4_frame(&self) -> PhysFrame;

    /// Reads entry `index` of the table at recursive address `table`.
    ///
    /// # Safety
    ///
    /// `table` is the recursive virtual address of an existing page table of
    /// the active hierarchy (every entry on the recursive path to it is a
    /// present table pointer), and `index < 512`.
    unsafe fn read_entry(&self, table: VirtAddr, index: usize) -> u64;

    /// Writes entry `index` of the table at recursive address `table`.
    ///
    /// # Safety
    ///
    /// As [`read_entry`](Self::read_entry), the path to the table is
    /// writable, and the new value does not break memory safety (it maps no
    /// frame that is in use elsewhere in a conflicting way, and unlinks no
    /// table that is still needed).
    unsafe fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64);

    /// Reads the entry at recursive address `entry` (8-byte aligned; the
    /// table is `entry` rounded down to 4 KiB, the index its offset / 8).
    ///
    /// The default splits the address and calls
    /// [`read_entry`](Self::read_entry); a backend that addresses memory
    /// directly can read in one step.
    ///
    /// # Safety
    ///
    /// `entry` is 8-byte aligned and, rounded down to 4 KiB, meets the
    /// conditions of [`read_entry`](Self::read_entry).
    #[inline]
    unsafe fn read_entry_at(&self, entry: VirtAddr) -> u64 {
        let addr = entry.as_u64();
        // SAFETY: the caller's contract, with the index below 512 by
        // construction.
        unsafe {
            self.read_entry(
                VirtAddr::new_truncate(addr & !0xfff),
                ((addr & 0xfff) >> 3) as usize,
            )
        }
    }

    /// Writes the entry at recursive address `entry`; see
    /// [`read_entry_at`](Self::read_entry_at).
    ///
    /// # Safety
    ///
    /// `entry` is 8-byte aligned and, rounded down to 4 KiB, meets the
    /// conditions of [`write_entry`](Self::write_entry).
    #[inline]
    unsafe fn write_entry_at(&mut self, entry: VirtAddr, value: u64) {
        let addr = entry.as_u64();
        // SAFETY: the caller's contract, with the index below 512 by
        // construction.
        unsafe {
            self.write_entry(
                VirtAddr::new_truncate(addr & !0xfff),
                ((addr & 0xfff) >> 3) as usize,
                value,
            );
        }
    }

    /// Zeroes the whole table at recursive address `table`.
    ///
    /// # Safety
    ///
    /// As [`write_entry`](Self::write_entry) for every index: `table` is
    /// the recursive address of a table (typically one just linked in) whose
    /// entries may all be cleared.
    unsafe fn zero_table(&mut self, table: VirtAddr) {
        for index in 0..512 {
            // SAFETY: the caller's contract, `index < 512`.
            unsafe { self.write_entry(table, index, 0) };
        }
    }

    /// Clears entries `start..start + len` of the table at recursive address
    /// `table`.
    ///
    /// The default writes 0 to each entry with
    /// [`write_entry`](Self::write_entry); a backend that addresses memory
    /// directly can clear the run in one step.
    ///
    /// # Safety
    ///
    /// As [`write_entry`](Self::write_entry) with the value 0 for every index
    /// of the run, and `start + len <= 512`.
    #[inline]
    unsafe fn zero_entries(&mut self, table: VirtAddr, start: usize, len: usize) {
        for index in start..start + len {
            // SAFETY: the caller's contract, `index < 512`.
            unsafe { self.write_entry(table, index, 0) };
        }
    }

    /// Reads entry `index` of the active level-4 table: the check of
    /// [`RecursivePageTable::new`](super::RecursivePageTable::new), made
    /// before anything is known about the recursive mapping.
    ///
    /// The default reads through the address at which the level-4 table
    /// would be mapped if entry `index` were recursive (`index` four times).
    /// On hardware that is all there is: if the entry is not recursive, that
    /// read faults or returns whatever the window maps, which is why the
    /// hardware backend's constructors demand a recursive mapping. A backend
    /// that reaches physical memory (the emulator) overrides it with a read
    /// by physical address, which works whatever the entry holds.
    ///
    /// # Safety
    ///
    /// `index < 512`, and `index` is the recursive index a
    /// [`RecursivePageTable`](super::RecursivePageTable) is being created
    /// with over this value (the read the trait's contract makes
    /// memory-safe).
    #[inline]
    unsafe fn read_level_4_entry(&self, index: usize) -> u64 {
        let r = index as u64 & 511;
        let addr = (r << 39) | (r << 30) | (r << 21) | (r << 12);
        let table = VirtAddr::new_truncate(super::addr::sign_extend(addr));
        // SAFETY: the caller's contract and the trait's: reading entry `r`
        // of the level-4 table at its recursive address for `r`.
        unsafe { self.read_entry(table, index) }
    }

    /// Invalidates any TLB entry for the page containing `addr` (`invlpg`),
    /// global or not.
    fn flush_page(&mut self, addr: VirtAddr);

    /// Invalidates every non-global TLB entry (a CR3 reload). Entries of
    /// `GLOBAL` pages survive, as on hardware with CR4.PGE set; see
    /// [`flush_global`](Self::flush_global).
    fn flush_all(&mut self);

    /// Invalidates every TLB entry, global ones included.
    ///
    /// On hardware with CR4.PGE set this toggles PGE off and on; with PGE
    /// clear a CR3 reload already drops everything. There is no default
    /// body: only the backend knows how its TLB keeps global entries.
    fn flush_global(&mut self);
}

// SAFETY: forwards every call to `B`, which upholds the contract.
unsafe impl<B: Backend + ?Sized> Backend for &mut B {
    #[inline]
    fn level_4_frame(&self) -> PhysFrame {
        (**self).level_4_frame()
    }
    #[inline]
    unsafe fn read_entry(&self, table: VirtAddr, index: usize) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { (**self).read_entry(table, index) }
    }
    #[inline]
    unsafe fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64) {
        // SAFETY: forwarded contract.
        unsafe { (**self).write_entry(table, index, value) };
    }
    #[inline]
    unsafe fn read_entry_at(&self, entry: VirtAddr) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { (**self).read_entry_at(entry) }
    }
    #[inline]
    unsafe fn write_entry_at(&mut self, entry: VirtAddr, value: u64) {
        // SAFETY: forwarded contract.
        unsafe { (**self).write_entry_at(entry, value) };
    }
    #[inline]
    unsafe fn zero_table(&mut self, table: VirtAddr) {
        // SAFETY: forwarded contract.
        unsafe { (**self).zero_table(table) };
    }
    #[inline]
    unsafe fn zero_entries(&mut self, table: VirtAddr, start: usize, len: usize) {
        // SAFETY: forwarded contract.
        unsafe { (**self).zero_entries(table, start, len) };
    }
    #[inline]
    unsafe fn read_level_4_entry(&self, index: usize) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { (**self).read_level_4_entry(index) }
    }
    #[inline]
    fn flush_page(&mut self, addr: VirtAddr) {
        (**self).flush_page(addr);
    }
    #[inline]
    fn flush_all(&mut self) {
        (**self).flush_all();
    }
    #[inline]
    fn flush_global(&mut self) {
        (**self).flush_global();
    }
}
