//! `Machine` as a paging `Backend`: table access at recursive addresses,
//! through the emulated TLB.

mod emu_support;

use emu_support::{L4, RECURSIVE, TABLE, Tables, frame, index, table_address};
use framealloc::emu::{Counters, LeafSize, Machine};
use framealloc::paging::Backend;
use framealloc::x86_64::structures::paging::{PageTableFlags as F, PageTableIndex};
use framealloc::x86_64::{PhysAddr, VirtAddr};

fn virt(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// Generic code, as the page-table code will be.
///
/// # Safety
///
/// As [`Backend::read_entry`].
unsafe fn read_through<B: Backend>(backend: &B, table: VirtAddr, index: usize) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { backend.read_entry(table, index) }
}

#[test]
fn entries_are_read_and_written_at_recursive_addresses() {
    let mut t = Tables::new();
    let addr = 0x0000_1234_5600_0000;
    t.map(addr, 0x40_0000, LeafSize::Size2MiB, F::WRITABLE);
    assert_eq!(t.machine.level_4_frame(), frame(L4));
    let l4 = virt(table_address(RECURSIVE, addr, 4));
    let l2 = virt(table_address(RECURSIVE, addr, 2));
    // SAFETY: `l4` is the level-4 table's recursive address.
    let recursive = unsafe { read_through(&t.machine, l4, RECURSIVE as usize) };
    // The walk to the level-4 table's recursive address used the recursive
    // entry (as every level's entry and as the leaf) and set its accessed bit.
    assert_eq!(
        recursive,
        L4 | (F::PRESENT | F::WRITABLE | F::ACCESSED).bits()
    );
    let leaf = t.machine.read_entry(l2, index(addr, 2) as usize);
    assert_eq!(
        leaf,
        0x40_0000 | (F::PRESENT | F::WRITABLE | F::HUGE_PAGE).bits()
    );

    // Writing the leaf through the backend changes the physical table.
    let moved = 0x80_0000 | (F::PRESENT | F::HUGE_PAGE).bits();
    t.machine.write_entry(l2, index(addr, 2) as usize, moved);
    assert_eq!(t.get(addr, 2), moved);
    t.machine.flush_page(virt(addr));
    assert_eq!(
        t.machine
            .translate(virt(addr), framealloc::emu::Access::KERNEL_READ),
        Ok(PhysAddr::new(0x80_0000))
    );
}

#[test]
fn zero_table_clears_the_frame_behind_the_recursive_address() {
    let mut t = Tables::new();
    let addr = 0x0000_0001_0000_0000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::empty());
    t.map(addr + 0x1000, 0xa000, LeafSize::Size4KiB, F::empty());
    let l1_frame = PhysAddr::new(t.entry(addr, 1).as_u64() & !0xfff);
    t.machine
        .zero_table(virt(table_address(RECURSIVE, addr, 1)));
    let mut table = vec![0xff; 4096];
    t.machine.memory().read_bytes(l1_frame, &mut table).unwrap();
    assert!(table.iter().all(|&b| b == 0));
    // The level-2 entry pointing at it is untouched.
    assert_ne!(t.get(addr, 2), 0);
}

/// The bug the emulator exists to catch: a page table freed and replaced
/// while its recursive address stays cached. Writes meant for the new table
/// land in the old frame until the recursive address is invalidated.
#[test]
fn a_stale_recursive_translation_reaches_the_old_table() {
    let mut t = Tables::new();
    let addr = 0x0000_0003_0000_0000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::empty());
    let l1 = virt(table_address(RECURSIVE, addr, 1));
    let old_l1 = t.get(addr, 2) & !0xfff;
    let entry = t.machine.read_entry(l1, index(addr, 1) as usize);
    assert_eq!(entry & !0xfff, 0x9000);
    // Write it back: the cached translation of `l1` is now dirty, so later
    // writes use it without walking again (a write through a clean cached
    // translation walks again to set the dirty bit, and would find the new
    // table).
    t.machine.write_entry(l1, index(addr, 1) as usize, entry);

    // Replace the level-1 table by a fresh frame, without flushing its recursive address.
    let new_l1 = 0x77_7000;
    t.set(addr, 2, new_l1 | TABLE.bits());
    t.machine.write_entry(l1, 0, 0xb000 | F::PRESENT.bits());
    assert_eq!(
        t.machine.memory().read_u64(PhysAddr::new(old_l1)),
        Ok(0xb001),
        "went to the old table"
    );
    assert_eq!(t.machine.memory().read_u64(PhysAddr::new(new_l1)), Ok(0));

    t.machine.flush_page(l1);
    t.machine.write_entry(l1, 0, 0xc000 | F::PRESENT.bits());
    assert_eq!(
        t.machine.memory().read_u64(PhysAddr::new(new_l1)),
        Ok(0xc001)
    );
    assert_eq!(t.machine.counters().invlpg, 1);
}

#[test]
fn backend_accesses_are_counted_and_flushes_forwarded() {
    let mut t = Tables::new();
    let l4 = virt(table_address(RECURSIVE, 0, 4));
    t.machine.reset_counters();
    let mut backend = &mut t.machine;
    for i in 0..512 {
        // SAFETY: `l4` is the level-4 table's recursive address, `i < 512`.
        let _ = unsafe { <&mut Machine as Backend>::read_entry(&backend, l4, i) };
    }
    backend.write_entry(l4, 3, 0);
    backend.flush_page(l4);
    Backend::flush_all(&mut backend);
    // The first write through the translation cached by the reads walks
    // again to set the dirty bit (a miss), starting below the cached
    // level-2 entry.
    let expected = Counters {
        tlb_hits: 511,
        tlb_misses: 2,
        psc_hits: 1,
        invlpg: 1,
        full_flushes: 1,
    };
    assert_eq!(t.machine.counters(), expected);
}

#[test]
#[should_panic(
    expected = "page-table code faulted on a recursive address: page fault: supervisor read at 0xffffff0000000000: level-3 entry not present"
)]
fn touching_an_unmapped_recursive_address_panics_with_the_fault() {
    let machine =
        Machine::with_recursive_table(PageTableIndex::new(RECURSIVE as u16), frame(L4)).unwrap();
    // The level-1 table for address 0 does not exist: level-4 entry 0 is empty,
    // which the walk of its recursive address meets at level 3.
    let _ = machine.read_entry(virt(table_address(RECURSIVE, 0, 1)), 0);
}

#[test]
#[should_panic(expected = "page-table access outside a table: index 512")]
fn an_index_past_the_table_panics() {
    let machine =
        Machine::with_recursive_table(PageTableIndex::new(RECURSIVE as u16), frame(L4)).unwrap();
    let _ = machine.read_entry(virt(table_address(RECURSIVE, 0, 4)), 512);
}

#[test]
fn physical_entry_helpers_match_backend_view() {
    let mut t = Tables::new();
    let l4 = virt(table_address(RECURSIVE, 0, 4));
    t.machine
        .memory_mut()
        .write_entry(frame(L4), PageTableIndex::new(7), 0x1234_5000);
    assert_eq!(t.machine.read_entry(l4, 7), 0x1234_5000);
}
