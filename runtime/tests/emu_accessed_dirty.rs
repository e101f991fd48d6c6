//! Accessed and dirty bits: set by walks that fill the TLB, as the CPU sets
//! them (Intel SDM vol. 3, 4.8), and never by a TLB hit.

mod emu_support;

use emu_support::{L4, RECURSIVE, Tables, frame, table_address};
use framealloc::emu::{Access, CpuConfig, FaultCause, LeafSize, Machine};
use framealloc::paging::RecursivePageTable;
use framealloc::x86_64::structures::paging::mapper::TranslateResult;
use framealloc::x86_64::structures::paging::{
    Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

const A: u64 = F::ACCESSED.bits();
const D: u64 = F::DIRTY.bits();

fn virt(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// The entries for `addr` at levels 4, 3, 2 and 1, read physically.
fn path(t: &mut Tables, addr: u64) -> [u64; 4] {
    [
        t.get(addr, 4),
        t.get(addr, 3),
        t.get(addr, 2),
        t.get(addr, 1),
    ]
}

#[test]
fn a_read_sets_accessed_at_every_level_and_a_write_sets_dirty_in_the_leaf() {
    let mut t = Tables::new();
    let addr = 0x0000_1234_5678_9000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    assert!(path(&mut t, addr).iter().all(|e| e & (A | D) == 0));

    t.machine.read_u64(virt(addr + 8)).unwrap();
    let after_read = path(&mut t, addr);
    assert!(after_read.iter().all(|e| e & A == A), "{after_read:x?}");
    assert!(after_read.iter().all(|e| e & D == 0), "{after_read:x?}");

    t.machine.write_u64(virt(addr + 8), 5).unwrap();
    let after_write = path(&mut t, addr);
    assert_eq!(after_write[3], after_read[3] | D, "dirty in the leaf");
    assert_eq!(after_write[..3], after_read[..3], "no dirty bit above it");
}

#[test]
fn a_huge_leaf_gets_its_bits_at_its_own_level() {
    let mut t = Tables::new();
    let addr = 0x0000_0040_0020_0000;
    t.map(addr, 0x20_0000, LeafSize::Size2MiB, F::WRITABLE);
    t.machine.write_u64(virt(addr + 0x1_2340), 1).unwrap();
    assert_eq!(t.get(addr, 2) & (A | D), A | D);
    assert_eq!(t.get(addr, 3) & (A | D), A);
    assert_eq!(t.get(addr, 4) & (A | D), A);
}

#[test]
fn a_tlb_hit_sets_nothing_and_a_new_walk_sets_the_bits_again() {
    let mut t = Tables::new();
    let addr = 0x7000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.machine.write_u64(virt(addr), 1).unwrap();
    // Software clears the bits (as a page-reclaim scan does) without
    // invalidating: the cached translation keeps being used, and the CPU
    // does not set the bits again.
    let leaf = t.get(addr, 1);
    t.set(addr, 1, leaf & !(A | D));
    t.machine.read_u64(virt(addr)).unwrap();
    t.machine.write_u64(virt(addr), 2).unwrap();
    assert_eq!(t.get(addr, 1) & (A | D), 0, "TLB hits leave memory alone");
    assert_eq!(t.machine.counters().tlb_hits, 2);

    t.machine.invlpg(virt(addr));
    t.machine.read_u64(virt(addr)).unwrap();
    assert_eq!(t.get(addr, 1) & (A | D), A);
}

#[test]
fn a_write_through_a_clean_cached_translation_walks_again() {
    let mut t = Tables::new();
    let addr = 0x0000_0002_0000_0000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.machine.read_u64(virt(addr)).unwrap();
    let cached = t.machine.cached(virt(addr)).unwrap();
    assert!(cached.flags.contains(F::ACCESSED) && !cached.flags.contains(F::DIRTY));
    t.machine.reset_counters();

    t.machine.write_u64(virt(addr), 1).unwrap();
    assert_eq!(t.get(addr, 1) & D, D);
    assert!(
        t.machine
            .cached(virt(addr))
            .unwrap()
            .flags
            .contains(F::DIRTY)
    );
    let counters = t.machine.reset_counters();
    assert_eq!((counters.tlb_hits, counters.tlb_misses), (0, 1));
    // Now dirty: the next write is a plain hit.
    t.machine.write_u64(virt(addr), 2).unwrap();
    let counters = t.machine.reset_counters();
    assert_eq!((counters.tlb_hits, counters.tlb_misses), (1, 0));
}

/// The walk again sees the tables as they are now: a write that a stale,
/// clean translation would allow faults if the page has become read-only,
/// while a dirty cached translation keeps allowing it until invalidated.
#[test]
fn the_dirty_walk_sees_a_changed_entry() {
    let mut t = Tables::new();
    let (clean, dirty) = (0x1000, 0x2000);
    t.map(clean, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.map(dirty, 0xa000, LeafSize::Size4KiB, F::WRITABLE);
    t.machine.read_u64(virt(clean)).unwrap();
    t.machine.write_u64(virt(dirty), 1).unwrap();
    t.set_flags(clean, 1, F::PRESENT | F::ACCESSED);
    t.set_flags(dirty, 1, F::PRESENT | F::ACCESSED | F::DIRTY);

    let fault = t.machine.write_u64(virt(clean), 1).unwrap_err();
    assert_eq!((fault.level, fault.cause), (1, FaultCause::ReadOnly));
    t.machine.write_u64(virt(dirty), 2).unwrap();
    assert_eq!(t.machine.memory().read_u64(PhysAddr::new(0xa000)), Ok(2));
}

#[test]
fn faulting_walks_set_no_bits() {
    let mut t = Tables::new();
    let addr = 0x0000_0003_0000_0000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::empty());
    t.set(addr + 0x1000, 1, 0); // level-1 entry of the next page: not present
    let before = t.machine.memory().clone();
    let fault = t.machine.read_u64(virt(addr + 0x1000)).unwrap_err();
    assert_eq!((fault.level, fault.cause), (1, FaultCause::NotPresent));
    let fault = t.machine.write_u64(virt(addr), 1).unwrap_err();
    assert_eq!((fault.level, fault.cause), (1, FaultCause::ReadOnly));
    assert!(t.machine.memory() == &before, "no bit was set");
}

#[test]
fn machine_walk_reports_the_bits_without_storing_them() {
    let mut t = Tables::new();
    let addr = 0x5000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    let before = t.machine.memory().clone();
    let read = t.machine.walk(virt(addr), Access::KERNEL_READ).unwrap();
    let write = t.machine.walk(virt(addr), Access::KERNEL_WRITE).unwrap();
    assert_eq!(read.flags & (F::ACCESSED | F::DIRTY), F::ACCESSED);
    assert_eq!(
        write.flags & (F::ACCESSED | F::DIRTY),
        F::ACCESSED | F::DIRTY
    );
    assert!(t.machine.memory() == &before);
    // The real access stores what the walk reported.
    let used = t
        .machine
        .translation(virt(addr), Access::KERNEL_WRITE)
        .unwrap();
    assert_eq!(used, write);
    assert_eq!(t.get(addr, 1) & (A | D), A | D);
}

#[test]
fn accessed_and_dirty_bits_can_be_switched_off() {
    let mut t = Tables::new();
    t.machine
        .set_config(CpuConfig::DEFAULT.with_accessed_dirty(false));
    let addr = 0x5000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    let before = t.machine.memory().clone();
    t.machine.read_u64(virt(addr)).unwrap();
    t.machine.write_u64(virt(addr), 0).unwrap(); // zero: memory unchanged
    assert!(t.machine.memory() == &before);
    let cached = t.machine.cached(virt(addr)).unwrap();
    assert!(!cached.flags.intersects(F::ACCESSED | F::DIRTY));
}

/// The recursive entry is the leaf of the level-4 table's recursive address:
/// writing the level-4 table through it makes it dirty, as on hardware.
#[test]
fn writing_a_table_through_the_recursive_mapping_dirties_the_entry_that_maps_it() {
    let mut t = Tables::new();
    let l4 = table_address(RECURSIVE, 0, 4);
    let entry_3 = virt(l4 + 3 * 8);
    t.machine.write_u64(entry_3, 0).unwrap();
    let recursive = t
        .machine
        .memory()
        .read_entry(frame(L4), PageTableIndex::new(RECURSIVE as u16));
    assert_eq!(recursive, L4 | (F::PRESENT | F::WRITABLE).bits() | A | D);
}

fn table() -> (RecursivePageTable<Machine>, emu_support::TableBump) {
    let machine = Tables::new().machine;
    let table = RecursivePageTable::new(machine, PageTableIndex::new(RECURSIVE as u16)).unwrap();
    (table, emu_support::TableBump::new(0x10_0000))
}

/// The page-table code reads the bits the CPU set, as `x86_64`'s does on
/// hardware.
#[test]
fn translate_reports_the_bits_the_cpu_set() {
    let (mut table, mut tables) = table();
    let page = Page::<Size4KiB>::containing_address(virt(0x40_0000));
    let data = PhysFrame::containing_address(PhysAddr::new(0x100_0000));
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, data, F::PRESENT | F::WRITABLE, &mut tables) }
        .unwrap()
        .flush();
    let flags = |table: &RecursivePageTable<Machine>| match table.translate(page.start_address()) {
        TranslateResult::Mapped { flags, .. } => flags,
        other => panic!("{other:?}"),
    };
    assert_eq!(flags(&table), F::PRESENT | F::WRITABLE);
    table.backend().read_u64(page.start_address()).unwrap();
    assert_eq!(flags(&table), F::PRESENT | F::WRITABLE | F::ACCESSED);
    table
        .backend_mut()
        .write_u64(page.start_address(), 1)
        .unwrap();
    assert_eq!(
        flags(&table),
        F::PRESENT | F::WRITABLE | F::ACCESSED | F::DIRTY
    );
}

/// Regression: the dump merged only pages with identical leaf flags, so on a
/// CPU that sets accessed and dirty bits a run split wherever one page had
/// been touched, into lines that print the same flags.
#[test]
fn dump_merges_pages_that_differ_only_in_accessed_and_dirty_bits() {
    let (mut table, mut tables) = table();
    for i in 0..3 {
        let page = Page::<Size4KiB>::containing_address(virt(0x40_0000 + i * 0x1000));
        let data = PhysFrame::containing_address(PhysAddr::new(0x100_0000 + i * 0x1000));
        // SAFETY: emulated memory.
        unsafe { table.map_to(page, data, F::PRESENT | F::WRITABLE, &mut tables) }
            .unwrap()
            .flush();
    }
    table.backend().read_u64(virt(0x40_1000)).unwrap();
    table.backend_mut().write_u64(virt(0x40_2000), 1).unwrap();
    let dump = table.dump().to_string();
    let expected = "\
virtual start       virtual end           physical start  size   pages  flags
0x0000000000400000  0x0000000000403000 -> 0x000001000000    4K       3  rwx kernel
";
    assert_eq!(dump, expected, "\n{dump}");
}
