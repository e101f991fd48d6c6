//! Hand-built page tables on an emulated machine, shared by the `emu_*` tests.
#![allow(dead_code, unreachable_pub)]

use framealloc::emu::{LeafSize, Machine};
use framealloc::x86_64::structures::paging::{
    FrameAllocator, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

/// Frame of the level-4 table.
pub const L4: u64 = 0x1000;
/// Recursive index used by [`Tables::new`].
pub const RECURSIVE: u64 = 510;
/// Flags of every intermediate entry created by [`Tables`].
pub const TABLE: F = F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE);

/// A machine plus a bump allocator for table frames.
pub struct Tables {
    pub machine: Machine,
    next_table: u64,
}

pub fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

/// Index of `virt` at `level` (4..=1).
pub fn index(virt: u64, level: u8) -> u64 {
    (virt >> (12 + 9 * u32::from(level - 1))) & 0x1ff
}

/// Recursive address of the table at `level` (4..=1) on the walk for `virt`,
/// with recursive index `r`.
pub fn table_address(r: u64, virt: u64, level: u8) -> u64 {
    let mut indices = vec![r; usize::from(level)];
    indices.extend((level + 1..=4).rev().map(|l| index(virt, l)));
    let raw = indices.iter().fold(0, |acc, i| (acc << 9) | i) << 12;
    VirtAddr::new_truncate(raw).as_u64()
}

impl Tables {
    /// Level-4 table at [`L4`], recursive through [`RECURSIVE`]; further
    /// tables from `0x10_0000` up.
    pub fn new() -> Self {
        Self::with(RECURSIVE as u16, L4, 0x10_0000)
    }

    /// Any index, 0 and 511 included (which `Machine::with_recursive_table`
    /// refuses, as `RecursivePageTable` does): the walk itself handles them.
    pub fn with(recursive: u16, l4: u64, first_table: u64) -> Self {
        let mut machine = Machine::new(frame(l4));
        let entry = l4 | (F::PRESENT | F::WRITABLE).bits();
        machine
            .memory_mut()
            .write_entry(frame(l4), PageTableIndex::new(recursive), entry);
        Self {
            machine,
            next_table: first_table,
        }
    }

    /// Physical address of the entry for `virt` at `level`, creating missing
    /// tables above it with [`TABLE`] flags.
    pub fn entry(&mut self, virt: u64, level: u8) -> PhysAddr {
        let mut table = self.machine.cr3().start_address().as_u64();
        for l in (level + 1..=4).rev() {
            let at = PhysAddr::new(table + index(virt, l) * 8);
            let mut entry = self.machine.memory().read_u64(at).unwrap();
            if entry & F::PRESENT.bits() == 0 {
                entry = self.next_table | TABLE.bits();
                self.next_table += 0x1000;
                self.machine.memory_mut().write_u64(at, entry).unwrap();
            }
            table = entry & 0x000f_ffff_ffff_f000;
        }
        PhysAddr::new(table + index(virt, level) * 8)
    }

    /// The entry for `virt` at `level`, read physically.
    pub fn get(&mut self, virt: u64, level: u8) -> u64 {
        let at = self.entry(virt, level);
        self.machine.memory().read_u64(at).unwrap()
    }

    /// Writes `value` into the entry for `virt` at `level` (physically, so
    /// no TLB entry is touched).
    pub fn set(&mut self, virt: u64, level: u8, value: u64) {
        let at = self.entry(virt, level);
        self.machine.memory_mut().write_u64(at, value).unwrap();
    }

    /// Sets the flags (keeping the address) of the entry for `virt` at `level`.
    pub fn set_flags(&mut self, virt: u64, level: u8, flags: F) {
        let at = self.entry(virt, level);
        let old = self.machine.memory().read_u64(at).unwrap();
        let value = (old & 0x000f_ffff_ffff_f000) | flags.bits();
        self.machine.memory_mut().write_u64(at, value).unwrap();
    }

    /// Maps the page of `size` at `virt` to `phys` with leaf `flags`
    /// (`PRESENT` and, for huge pages, `HUGE_PAGE` added).
    pub fn map(&mut self, virt: u64, phys: u64, size: LeafSize, flags: F) {
        let mut flags = flags | F::PRESENT;
        if size != LeafSize::Size4KiB {
            flags |= F::HUGE_PAGE;
        }
        self.set(virt, size.level(), phys | flags.bits());
    }
}

/// Hands out consecutive 4 KiB frames (for page tables) from a start address.
pub struct TableBump(u64);

impl TableBump {
    pub fn new(first: u64) -> Self {
        Self(first)
    }
}

// SAFETY: every frame is handed out once, and the tests place no data there.
unsafe impl FrameAllocator<Size4KiB> for TableBump {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = frame(self.0);
        self.0 += 0x1000;
        Some(frame)
    }
}
