//! The emulated TLB: stale until invalidated, like hardware, and counted.

mod emu_support;

use emu_support::{Tables, frame};
use framealloc::emu::{Access, Counters, FaultCause, LeafSize, Privilege};
use framealloc::x86_64::structures::paging::PageTableFlags as F;
use framealloc::x86_64::{PhysAddr, VirtAddr};

fn virt(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// A machine with the value `n` stored at the start of frame `n << 16`
/// (`n` in 1..=4), so a read shows which frame a page reaches.
fn tagged() -> Tables {
    let mut t = Tables::new();
    for tag in 1..=4u64 {
        t.machine
            .memory_mut()
            .write_u64(PhysAddr::new(tag << 16), tag)
            .unwrap();
    }
    t
}

#[test]
fn a_remapped_page_reads_stale_data_until_invlpg() {
    let mut t = tagged();
    let page = 0x0000_5555_0000_0000;
    t.map(page, 0x1_0000, LeafSize::Size4KiB, F::WRITABLE);
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1));
    // A write caches the translation with its dirty bit set.
    t.machine.write_u64(virt(page + 8), 10).unwrap();
    t.map(page, 0x2_0000, LeafSize::Size4KiB, F::WRITABLE);
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1), "stale read");
    // Writes go to the stale frame too (the cached translation is dirty, so
    // nothing walks the tables again).
    t.machine.write_u64(virt(page + 8), 11).unwrap();
    assert_eq!(t.machine.memory().read_u64(PhysAddr::new(0x1_0008)), Ok(11));
    // invlpg of another page changes nothing; of any address in the page, everything.
    t.machine.invlpg(virt(page + 0x1000));
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1));
    t.machine.invlpg(virt(page + 0xfff));
    assert_eq!(t.machine.read_u64(virt(page)), Ok(2));
}

#[test]
fn an_unmapped_page_stays_readable_until_invlpg() {
    let mut t = tagged();
    let page = 0x7000_0000;
    t.map(page, 0x3_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(page)), Ok(3));
    t.set(page, 1, 0);
    assert_eq!(t.machine.read_u64(virt(page)), Ok(3));
    t.machine.invlpg(virt(page));
    let fault = t.machine.read_u64(virt(page)).unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::NotPresent, 1));
}

#[test]
fn not_present_results_are_not_cached() {
    let mut t = tagged();
    let page = 0x6000_0000;
    t.entry(page, 1);
    assert!(t.machine.read_u64(virt(page)).is_err());
    assert_eq!(t.machine.tlb_len(), 0);
    t.map(page, 0x4_0000, LeafSize::Size4KiB, F::empty());
    // No invlpg needed after mapping a page that was not present.
    assert_eq!(t.machine.read_u64(virt(page)), Ok(4));
    assert_eq!(t.machine.counters().tlb_misses, 2);
}

#[test]
fn invlpg_inside_a_huge_page_drops_the_whole_entry() {
    for size in [LeafSize::Size2MiB, LeafSize::Size1GiB] {
        let mut t = tagged();
        let page = 0x0000_0040_0000_0000;
        let inside = page + size.bytes() - 0x1000;
        t.map(page, 0x4000_0000, size, F::WRITABLE);
        t.machine.write_u64(virt(inside), 77).unwrap();
        assert_eq!(t.machine.cached(virt(page)).map(|c| c.size), Some(size));
        t.map(page, 0x8000_0000, size, F::WRITABLE);
        // Any address of the page hits the one stale entry.
        assert_eq!(t.machine.read_u64(virt(inside)), Ok(77));
        t.machine.invlpg(virt(page + 0x1234_5000 % size.bytes()));
        assert_eq!(t.machine.cached(virt(page)), None);
        assert_eq!(t.machine.tlb_len(), 0);
        assert_eq!(t.machine.read_u64(virt(inside)), Ok(0));
    }
}

#[test]
fn a_stale_small_entry_survives_replacement_by_a_huge_page() {
    let mut t = tagged();
    let page = 0x20_0000;
    t.map(page + 0x5000, 0x1_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(page + 0x5000)), Ok(1));
    t.map(page, 0x20_0000, LeafSize::Size2MiB, F::empty());
    assert_eq!(
        t.machine.read_u64(virt(page + 0x5000)),
        Ok(1),
        "stale 4 KiB entry"
    );
    // The walk for an uncached address of the same 2 MiB region starts below
    // the cached level-2 entry, which still points at the old level-1 table:
    // it faults there, and the fault drops the cached entry.
    let fault = t.machine.read_u64(virt(page)).unwrap_err();
    assert_eq!((fault.level, fault.cause), (1, FaultCause::NotPresent));
    assert_eq!(t.machine.read_u64(virt(page)), Ok(0), "fresh 2 MiB walk");
    t.machine.invlpg(virt(page + 0x5000));
    assert_eq!(t.machine.cached(virt(page + 0x5000)), None);
    assert_eq!(t.machine.read_u64(virt(page + 0x5000)), Ok(0));
    assert_eq!(
        t.machine.cached(virt(page + 0x5000)).map(|c| c.size),
        Some(LeafSize::Size2MiB)
    );
}

#[test]
fn a_cr3_write_switches_tables_and_flushes() {
    let mut t = tagged();
    let page = 0x1000_0000;
    let other_l4 = frame(0x50_0000);
    t.map(page, 0x1_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1));
    t.machine.reset_counters();
    // The other address space is empty: the cached translation must be gone.
    t.machine.set_cr3(other_l4);
    assert_eq!(t.machine.cr3(), other_l4);
    let fault = t.machine.read_u64(virt(page)).unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::NotPresent, 4));
    t.map(page, 0x2_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(page)), Ok(2));
    t.machine.set_cr3(frame(emu_support::L4));
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1));
    // Writing CR3 with the same value flushes as well.
    t.map(page, 0x3_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1), "stale");
    t.machine.set_cr3(t.machine.cr3());
    assert_eq!(t.machine.read_u64(virt(page)), Ok(3));
    let counters = t.machine.counters();
    assert_eq!((counters.full_flushes, counters.invlpg), (3, 0));
}

#[test]
fn global_pages_survive_cr3_writes_but_not_invlpg() {
    let mut t = tagged();
    let (global, local) = (0xffff_8000_0000_0000, 0x1000);
    t.map(global, 0x1_0000, LeafSize::Size4KiB, F::GLOBAL);
    t.map(local, 0x2_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(global)), Ok(1));
    assert_eq!(t.machine.read_u64(virt(local)), Ok(2));
    t.map(global, 0x3_0000, LeafSize::Size4KiB, F::GLOBAL);
    t.map(local, 0x4_0000, LeafSize::Size4KiB, F::empty());
    t.machine.set_cr3(t.machine.cr3());
    assert_eq!(t.machine.read_u64(virt(global)), Ok(1), "global entry kept");
    assert_eq!(t.machine.read_u64(virt(local)), Ok(4));
    t.machine.flush_all();
    assert_eq!(t.machine.read_u64(virt(global)), Ok(1), "global entry kept");
    t.machine.flush_global();
    assert_eq!(t.machine.read_u64(virt(global)), Ok(3));
    t.map(global, 0x1_0000, LeafSize::Size4KiB, F::GLOBAL);
    t.machine.invlpg(virt(global));
    assert_eq!(t.machine.read_u64(virt(global)), Ok(1));
}

#[test]
fn a_stale_read_only_entry_faults_once_then_is_refetched() {
    let mut t = tagged();
    let page = 0x4000;
    t.map(page, 0x1_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(page)), Ok(1));
    t.map(page, 0x1_0000, LeafSize::Size4KiB, F::WRITABLE);
    // The cached entry still says read-only; the fault drops it ...
    let fault = t.machine.write_u64(virt(page), 5).unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::ReadOnly, 1));
    assert_eq!(
        t.machine
            .walk(virt(page), Access::KERNEL_WRITE)
            .map(|w| w.frame),
        Ok(PhysAddr::new(0x1_0000))
    );
    assert_eq!(t.machine.cached(virt(page)), None);
    // ... so the retry walks the new tables and succeeds.
    t.machine.write_u64(virt(page), 5).unwrap();
    assert_eq!(t.machine.read_u64(virt(page)), Ok(5));
}

#[test]
fn user_accesses_go_through_the_same_tlb() {
    let mut t = tagged();
    let page = 0x0000_0010_0000_0000;
    t.map(
        page,
        0,
        LeafSize::Size2MiB,
        F::USER_ACCESSIBLE | F::WRITABLE,
    );
    let mut buf = [0; 8];
    t.machine
        .read(virt(page + 0x1_0000), &mut buf, Privilege::User)
        .unwrap();
    assert_eq!(u64::from_le_bytes(buf), 1);
    t.machine
        .write(virt(page + 0x1_0008), &[9], Privilege::User)
        .unwrap();
    assert_eq!(t.machine.memory().read_u64(PhysAddr::new(0x1_0008)), Ok(9));
    t.map(page, 0, LeafSize::Size2MiB, F::WRITABLE);
    // Stale: the user bit was revoked without invlpg.
    assert!(
        t.machine
            .read(virt(page + 0x1_0000), &mut buf, Privilege::User)
            .is_ok()
    );
    t.machine.invlpg(virt(page + 0x1_0000));
    let fault = t
        .machine
        .read(virt(page + 0x1_0000), &mut buf, Privilege::User)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::SupervisorOnly, 2));
    assert_eq!(
        t.machine
            .translate(virt(page + 0x1_0008), Access::KERNEL_READ),
        Ok(PhysAddr::new(0x1_0008))
    );
}

#[test]
fn a_faulting_write_across_pages_writes_nothing() {
    let mut t = tagged();
    t.map(0x1000, 0x1_0000, LeafSize::Size4KiB, F::WRITABLE);
    t.map(0x2000, 0x2_0000, LeafSize::Size4KiB, F::empty());
    let fault = t.machine.write_bytes(virt(0x1ffc), &[0xff; 8]).unwrap_err();
    assert_eq!((fault.addr, fault.cause), (0x2000, FaultCause::ReadOnly));
    assert_eq!(t.machine.memory().read_u64(PhysAddr::new(0x1_0ff8)), Ok(0));
    // Reads across the same boundary work, from both frames.
    t.machine
        .memory_mut()
        .write_bytes(PhysAddr::new(0x1_0ffc), &[1, 2, 3, 4])
        .unwrap();
    assert_eq!(
        t.machine.read_u64(virt(0x1ffc)),
        Ok(u64::from_le_bytes([1, 2, 3, 4, 2, 0, 0, 0]))
    );
}

#[test]
fn counters_count_hits_misses_and_flushes() {
    let mut t = tagged();
    t.map(0x20_0000, 0x20_0000, LeafSize::Size2MiB, F::WRITABLE);
    t.map(0x1000, 0x1_0000, LeafSize::Size4KiB, F::WRITABLE);
    assert_eq!(t.machine.counters(), Counters::default());
    t.machine.read_u64(virt(0x20_0000)).unwrap(); // miss
    t.machine.read_u64(virt(0x3f_f000)).unwrap(); // hit: same 2 MiB page
    t.machine.write_u64(virt(0x1ffc), 1).unwrap_err(); // miss (0x1000), miss (0x2000) faults
    let _ = t.machine.write_u64(virt(0x1ffc), 1); // hit, miss again
    t.machine.walk(virt(0x1000), Access::KERNEL_READ).unwrap(); // not counted
    t.machine.cached(virt(0x1000)).unwrap(); // not counted
    t.machine.invlpg(virt(0x1000));
    t.machine.invlpg(virt(0x5000)); // counted even when nothing is cached
    t.machine.flush_all();
    let expected = Counters {
        tlb_hits: 2,
        tlb_misses: 4,
        // The walk for 0x1000 starts below the cached level-3 entry, the one
        // for 0x2000 below the level-2 entry that walk cached; the fault at
        // 0x2000 then drops them, so the last walk starts at CR3.
        psc_hits: 2,
        invlpg: 2,
        full_flushes: 1,
    };
    assert_eq!(t.machine.counters(), expected);
    assert_eq!(t.machine.reset_counters(), expected);
    assert_eq!(t.machine.counters(), Counters::default());
}

#[test]
fn changed_table_entries_reach_uncached_addresses_only_without_paging_structure_caches() {
    for caches in [true, false] {
        changed_table_entry(caches);
    }
}

fn changed_table_entry(paging_structure_caches: bool) {
    let mut t = tagged();
    t.machine
        .set_paging_structure_caches(paging_structure_caches);
    t.map(0x1000, 0x1_0000, LeafSize::Size4KiB, F::empty());
    t.map(0x2000, 0x2_0000, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(0x1000)), Ok(1));
    // Point the level-2 entry at a fresh level-1 table mapping both pages elsewhere.
    let new_l1 = 0x70_0000;
    let flags = (F::PRESENT | F::WRITABLE).bits();
    t.machine
        .memory_mut()
        .write_u64(PhysAddr::new(new_l1 + 8), 0x3_0000 | flags)
        .unwrap();
    t.machine
        .memory_mut()
        .write_u64(PhysAddr::new(new_l1 + 16), 0x4_0000 | flags)
        .unwrap();
    t.set(0x1000, 2, new_l1 | emu_support::TABLE.bits());
    assert_eq!(
        t.machine.read_u64(virt(0x1000)),
        Ok(1),
        "cached leaf is stale"
    );
    // With the caches, the walk for 0x2000 uses the cached level-2 entry and
    // reaches the old level-1 table; without them it reads the new entry.
    let expected = if paging_structure_caches { 2 } else { 4 };
    assert_eq!(
        t.machine.read_u64(virt(0x2000)),
        Ok(expected),
        "uncached address, paging-structure caches {paging_structure_caches}"
    );
    // Any invlpg drops every cached table entry.
    t.machine.invlpg(virt(0x7fff_0000_0000));
    t.machine.invlpg(virt(0x1000));
    t.machine.invlpg(virt(0x2000));
    assert_eq!(t.machine.read_u64(virt(0x1000)), Ok(3));
    assert_eq!(t.machine.read_u64(virt(0x2000)), Ok(4));
}

#[test]
fn translation_reports_the_flags_the_cpu_uses() {
    let mut t = tagged();
    let page = 0x0000_0200_0000_0000;
    t.map(
        page,
        0x4000_0000,
        LeafSize::Size1GiB,
        F::WRITABLE | F::NO_CACHE,
    );
    let used = t
        .machine
        .translation(virt(page + 0x1234), Access::KERNEL_READ)
        .unwrap();
    assert_eq!((used.page, used.size), (virt(page), LeafSize::Size1GiB));
    assert!(
        used.flags
            .contains(F::NO_CACHE | F::WRITABLE | F::HUGE_PAGE)
    );
    t.map(page, 0x4000_0000, LeafSize::Size1GiB, F::NO_EXECUTE);
    let stale = t
        .machine
        .translation(virt(page), Access::KERNEL_READ)
        .unwrap();
    assert_eq!(stale, used);
    t.machine.invlpg(virt(page + 0x3fff_f000));
    let fresh = t
        .machine
        .translation(virt(page), Access::KERNEL_READ)
        .unwrap();
    assert_eq!(
        fresh.flags,
        F::PRESENT | F::ACCESSED | F::HUGE_PAGE | F::NO_EXECUTE
    );
    assert_eq!(Ok(fresh), t.machine.walk(virt(page), Access::KERNEL_READ));
}
