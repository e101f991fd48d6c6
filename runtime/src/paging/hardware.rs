//! The hardware backend: page tables at their recursive virtual addresses,
//! `invlpg` and CR3 reloads for the TLB.

use x86_64::VirtAddr;
use x86_64::instructions::interrupts;
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr3, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;

use core::fmt;

use super::Backend;

/// [`Mmu::new`] found CR4.PCIDE set.
///
/// With PCIDs on, the CR3 reload of `x86_64`'s `tlb::flush_all` (which the
/// flushes here and `MapperFlushAll` rely on) writes back only the frame and
/// two flag bits, so it switches to another PCID instead of flushing the
/// current one, whose TLB entries stay behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcidEnabled;

impl fmt::Display for PcidEnabled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "CR4.PCIDE is set: a CR3 reload would switch PCIDs instead of flushing; \
             the hardware backend supports PCIDE clear only",
        )
    }
}

impl core::error::Error for PcidEnabled {}

/// The real MMU of the CPU this code runs on.
///
/// Entries are read and written with plain loads and stores at the tables'
/// recursive virtual addresses (no `dyn`, no indirection: the accessors are
/// generic and inlined into the table code).
///
/// `Mmu` is neither `Clone` nor `Copy`: one `unsafe` constructor call yields
/// one value, so safe code cannot turn it into two tables changing the same
/// hierarchy (for instance on two threads):
///
/// ```compile_fail
/// use framealloc::paging::NoFlushMmu;
/// use framealloc::{PhysFrame, x86_64::PhysAddr};
///
/// // SAFETY: never used to access memory.
/// let mmu = unsafe { NoFlushMmu::without_flushes(PhysFrame::containing_address(PhysAddr::new(0))) };
/// let second = mmu.clone(); // error: `Mmu` is not `Clone`
/// ```
///
/// and its raw entry accessors need `unsafe`, since they write wherever they
/// are pointed:
///
/// ```compile_fail,E0133
/// use framealloc::paging::{Backend, NoFlushMmu};
/// use framealloc::{PhysFrame, x86_64::{PhysAddr, VirtAddr}};
///
/// // SAFETY: never used to access memory (the call below does not compile).
/// let mut mmu = unsafe { NoFlushMmu::without_flushes(PhysFrame::containing_address(PhysAddr::new(0))) };
/// mmu.zero_table(VirtAddr::new(0x1000)); // error: call to unsafe function
/// ```
///
/// With `FLUSH = true` (the default) invalidation is `invlpg`, a CR3 reload
/// and a CR4.PGE toggle, and the level-4 frame is read from CR3. With `false`
/// ([`Mmu::without_flushes`]) invalidation does nothing and the level-4 frame
/// is the one given: the same table code in user space over an `mmap`ed
/// window (benchmarks), where `MapperFlush` tokens must be ignored.
///
/// [`RecursivePageTable`]: super::RecursivePageTable
#[derive(Debug, PartialEq, Eq)]
pub struct Mmu<const FLUSH: bool = true> {
    level_4: PhysFrame,
}

/// The hardware backend with TLB invalidation turned into no-ops, for user-space benchmarks.
pub type NoFlushMmu = Mmu<false>;

impl Mmu<true> {
    /// The MMU of the running CPU, in the address space CR3 points to now.
    ///
    /// The value reads CR3 afresh on every use (it stores no frame), so it
    /// follows the CPU it is used on into whatever address space is active
    /// there: that is what the contract below is about.
    ///
    /// # Errors
    ///
    /// [`PcidEnabled`] if CR4.PCIDE is set (see there why it is refused).
    ///
    /// # Safety
    ///
    /// The caller runs at privilege level 0 with 4-level paging enabled, and
    /// guarantees, for as long as the returned value (or a table over it)
    /// is used, on whichever CPU and in whichever address space it is used
    /// (`Mmu` is `Send` and `Sync`, so safe code may move it to another
    /// CPU or keep using it across a CR3 write):
    ///
    /// - every page table of the active hierarchy is mapped at its recursive
    ///   address through the recursive entry of the level-4 table whose
    ///   index is given to
    ///   [`RecursivePageTable::new`](super::RecursivePageTable::new): every
    ///   address space it meets has a recursive entry at that same index;
    /// - nothing else changes those page tables while a `RecursivePageTable`
    ///   over the value uses them (another CPU included);
    /// - CR4.PCIDE stays clear (it is checked here, once).
    ///
    /// A value that could break this (an address space without the
    /// recursive entry, a CPU that edits the same tables concurrently) must
    /// not be sent or shared there. (The entry accessors of [`Backend`] are
    /// `unsafe` and state their own conditions on each call.)
    #[inline]
    pub unsafe fn new() -> Result<Self, PcidEnabled> {
        refuse_pcide(Cr4::read_raw())?;
        Ok(Mmu {
            level_4: Cr3::read().0,
        })
    }
}

impl Mmu<false> {
    /// The same backend with flushes that do nothing and a level-4 frame
    /// supplied by the caller, for running table code in user space.
    ///
    /// # Safety
    ///
    /// As for [`Mmu::new`], except that no privilege is needed: the caller
    /// guarantees that the recursive window (512 GiB at the recursive index)
    /// is readable and writable memory laid out as a recursively mapped
    /// hierarchy whose level-4 table has frame `level_4` in its recursive
    /// entry, and that no TLB needs invalidating for the code's correctness
    /// (as with a window backed by ordinary memory).
    ///
    /// ```
    /// use framealloc::paging::NoFlushMmu;
    /// use framealloc::{PhysFrame, x86_64::PhysAddr};
    ///
    /// let level_4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// // SAFETY: this backend is never used to access memory here.
    /// let mmu = unsafe { NoFlushMmu::without_flushes(level_4) };
    /// # let _ = mmu;
    /// ```
    #[inline]
    pub const unsafe fn without_flushes(level_4: PhysFrame) -> Self {
        Mmu { level_4 }
    }
}

/// The CR4 check of [`Mmu::new`], on a raw CR4 value.
#[inline]
fn refuse_pcide(cr4: u64) -> Result<(), PcidEnabled> {
    if cr4 & Cr4Flags::PCID.bits() == 0 {
        Ok(())
    } else {
        Err(PcidEnabled)
    }
}

// SAFETY: entries are read and written at `table + 8 * index`, which each
// accessor's contract makes the recursive address of an entry of an existing
// table, reached through the translation the CPU uses now; `invlpg` and CR3
// reloads are the architectural invalidations, and toggling CR4.PGE the one
// that also drops global entries (and with `FLUSH = false` the
// constructor's contract says none is needed).
unsafe impl<const FLUSH: bool> Backend for Mmu<FLUSH> {
    #[inline]
    fn level_4_frame(&self) -> PhysFrame {
        if FLUSH { Cr3::read().0 } else { self.level_4 }
    }

    #[inline(always)]
    unsafe fn read_entry(&self, table: VirtAddr, index: usize) -> u64 {
        // SAFETY: the caller guarantees that `table` is the recursive
        // address of an existing (hence mapped) page table and `index < 512`,
        // so the 8 bytes read lie inside that mapped, aligned table.
        unsafe { table.as_ptr::<u64>().add(index).read() }
    }

    #[inline(always)]
    unsafe fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64) {
        // SAFETY: as in `read_entry`; the caller guarantees the path is
        // writable and the value keeps memory safe.
        unsafe { table.as_mut_ptr::<u64>().add(index).write(value) }
    }

    #[inline(always)]
    unsafe fn read_entry_at(&self, entry: VirtAddr) -> u64 {
        // SAFETY: the caller guarantees that `entry` is an aligned entry of
        // an existing table at its recursive address.
        unsafe { entry.as_ptr::<u64>().read() }
    }

    #[inline(always)]
    unsafe fn write_entry_at(&mut self, entry: VirtAddr, value: u64) {
        // SAFETY: as in `read_entry_at`, with `write_entry`'s conditions.
        unsafe { entry.as_mut_ptr::<u64>().write(value) }
    }

    #[inline]
    unsafe fn zero_table(&mut self, table: VirtAddr) {
        // SAFETY: the caller guarantees that `table` is the recursive address
        // of a whole, writable 4 KiB table whose entries may all be cleared.
        unsafe { table.as_mut_ptr::<u8>().write_bytes(0, 4096) }
    }

    #[inline]
    unsafe fn zero_entries(&mut self, table: VirtAddr, start: usize, len: usize) {
        // SAFETY: the caller guarantees that `table` is the recursive address
        // of an existing, writable table and `start + len <= 512`, so the
        // `len` entries cleared lie inside it.
        unsafe { table.as_mut_ptr::<u64>().add(start).write_bytes(0, len) }
    }

    #[inline(always)]
    fn flush_page(&mut self, addr: VirtAddr) {
        if FLUSH {
            tlb::flush(addr);
        }
    }

    #[inline]
    fn flush_all(&mut self) {
        if FLUSH {
            tlb::flush_all();
        }
    }

    #[inline]
    fn flush_global(&mut self) {
        if FLUSH {
            // Interrupts stay off between the two CR4 writes, so no handler
            // runs with PGE clear or sees (and restores) the cleared value.
            interrupts::without_interrupts(|| {
                let cr4 = Cr4::read_raw();
                let pge = Cr4Flags::PAGE_GLOBAL.bits();
                if cr4 & pge == 0 {
                    // Without PGE no entry is global: a CR3 reload drops all.
                    tlb::flush_all();
                } else {
                    // SAFETY: the `Mmu<true>` constructor's contract puts us
                    // at privilege level 0 with paging on. Both writes keep
                    // every other CR4 bit as read (raw, reserved bits
                    // included); clearing PGE and setting it again only
                    // invalidates TLB entries (global ones included) and
                    // changes no translation, so memory safety is unaffected.
                    unsafe {
                        Cr4::write_raw(cr4 & !pge);
                        Cr4::write_raw(cr4);
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86_64::PhysAddr;

    /// A table-sized, table-aligned block of ordinary memory.
    #[repr(C, align(4096))]
    struct Table([u64; 512]);

    #[test]
    fn mmu_new_refuses_cr4_pcide() {
        let pge_pae = Cr4Flags::PAGE_GLOBAL | Cr4Flags::PHYSICAL_ADDRESS_EXTENSION;
        assert_eq!(refuse_pcide(pge_pae.bits()), Ok(()));
        assert_eq!(
            refuse_pcide((pge_pae | Cr4Flags::PCID).bits()),
            Err(PcidEnabled)
        );
    }

    #[test]
    fn zero_entries_clears_exactly_the_run() {
        let mut table = Table(core::array::from_fn(|i| i as u64 * 8 + 1));
        let addr = VirtAddr::from_ptr(table.0.as_mut_ptr());
        // SAFETY: the backend only touches the table below.
        let mut mmu =
            unsafe { Mmu::without_flushes(PhysFrame::containing_address(PhysAddr::new(0))) };
        // SAFETY: `addr` is a whole, writable, aligned 4 KiB block we own,
        // and 100 + 300 <= 512.
        unsafe { mmu.zero_entries(addr, 100, 300) };
        // SAFETY: as above, and 511 + 1 <= 512.
        unsafe { mmu.zero_entries(addr, 511, 1) };
        for (i, &entry) in table.0.iter().enumerate() {
            let cleared = (100..400).contains(&i) || i == 511;
            assert_eq!(
                entry,
                if cleared { 0 } else { i as u64 * 8 + 1 },
                "entry {i}"
            );
        }
        // SAFETY: as above, and an empty run writes nothing.
        unsafe { mmu.zero_entries(addr, 0, 0) };
        assert_eq!(table.0[0], 1);
    }
}
