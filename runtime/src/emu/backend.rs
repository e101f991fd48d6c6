//! The emulator as a [`Backend`]: page-table code runs against emulated memory.

use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

use super::fault::{Access, PageFault};
use super::machine::Machine;
use crate::paging::Backend;

impl Machine {
    /// Translates the address of entry `index` of the table at recursive
    /// address `table`, through the TLB, as the page-table code's own access
    /// would be.
    fn entry_address(&self, table: VirtAddr, index: usize, access: Access) -> PhysAddr {
        assert!(
            index < 512 && table.is_aligned(4096u64),
            "page-table access outside a table: index {index} of {:#x}",
            table.as_u64()
        );
        self.translate(table + index as u64 * 8, access)
            .unwrap_or_else(|fault| crash(&fault))
    }
}

#[cold]
fn crash(fault: &PageFault) -> ! {
    panic!("page-table code faulted on a recursive address: {fault}")
}

/// Safe forms of the [`Backend`] entry accessors: on the emulator an access
/// to any address is memory-safe (it goes through the emulated MMU), so
/// tests may call these freely.
impl Machine {
    /// Reads entry `index` of the table at recursive address `table`,
    /// through the TLB, as a supervisor read.
    ///
    /// # Panics
    ///
    /// If the access page-faults, if `index >= 512` or if `table` is not
    /// 4 KiB aligned (see the [`Backend`] implementation).
    pub fn read_entry(&self, table: VirtAddr, index: usize) -> u64 {
        let phys = self.entry_address(table, index, Access::KERNEL_READ);
        self.memory().load(phys.as_u64())
    }

    /// Writes entry `index` of the table at recursive address `table`,
    /// through the TLB, as a supervisor write.
    ///
    /// # Panics
    ///
    /// As [`read_entry`](Self::read_entry).
    pub fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64) {
        let phys = self.entry_address(table, index, Access::KERNEL_WRITE);
        self.memory_mut().store(phys.as_u64(), value);
    }

    /// Zeroes the frame the TLB/MMU map at recursive address `table`.
    ///
    /// # Panics
    ///
    /// As [`read_entry`](Self::read_entry).
    pub fn zero_table(&mut self, table: VirtAddr) {
        let phys = self.entry_address(table, 0, Access::KERNEL_WRITE);
        self.memory_mut()
            .zero_frame(PhysFrame::containing_address(phys));
    }
}

/// Table accesses go through the TLB as supervisor reads and writes at the
/// tables' recursive addresses, so a stale translation of a recursive address
/// reaches the stale frame, as it would on hardware.
///
/// # Panics
///
/// Every method that touches a table panics if the access page-faults (the
/// message ends with the [`PageFault`]'s `Display` text): the page-table code
/// used a recursive address that is not mapped, which would crash a kernel.
/// It also panics if `index >= 512` or `table` is not 4 KiB aligned, which
/// the [`Backend`] contract rules out.
// SAFETY: each access reads or writes the entry at the physical address the
// emulated TLB/MMU translate `table + 8 * index` to, i.e. the page the current
// translation maps at `table`; flushes act on the emulated TLB that every
// translation goes through. Emulated memory is plain host memory behind safe
// code, so there is no host memory-safety obligation beyond that.
unsafe impl Backend for Machine {
    fn level_4_frame(&self) -> PhysFrame {
        self.cr3()
    }

    unsafe fn read_entry(&self, table: VirtAddr, index: usize) -> u64 {
        Machine::read_entry(self, table, index)
    }

    unsafe fn write_entry(&mut self, table: VirtAddr, index: usize, value: u64) {
        Machine::write_entry(self, table, index, value);
    }

    unsafe fn zero_table(&mut self, table: VirtAddr) {
        Machine::zero_table(self, table);
    }

    /// By physical address (CR3 plus 8 × `index`), not through the
    /// recursive window: whatever the entry holds, the read succeeds, so
    /// `RecursivePageTable::new` reports a table that is not recursive at
    /// `index` as `NotRecursive` instead of faulting.
    unsafe fn read_level_4_entry(&self, index: usize) -> u64 {
        let entry = self.cr3().start_address().as_u64() + (index as u64 & 511) * 8;
        self.memory().load(entry)
    }

    fn flush_page(&mut self, addr: VirtAddr) {
        self.invlpg(addr);
    }

    fn flush_all(&mut self) {
        Machine::flush_all(self);
    }

    fn flush_global(&mut self) {
        Machine::flush_global(self);
    }
}
