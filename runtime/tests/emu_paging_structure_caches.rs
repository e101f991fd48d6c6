//! Paging-structure caches (Intel SDM vol. 3, 4.10.3): cached non-leaf
//! entries used by walks until `invlpg` (any address), a CR3 write, a flush
//! or a page fault for the address drops them.

mod emu_support;

use emu_support::{RECURSIVE, TABLE, TableBump, Tables, frame};
use framealloc::emu::{FaultCause, LeafSize};
use framealloc::paging::RecursivePageTable;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags as F, PageTableIndex, PhysFrame,
    Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

fn virt(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// Copies the table at `from` to `to` (physically).
fn copy_table(t: &mut Tables, from: u64, to: u64) {
    let mut bytes = vec![0; 4096];
    let memory = t.machine.memory_mut();
    memory.read_bytes(PhysAddr::new(from), &mut bytes).unwrap();
    memory.write_bytes(PhysAddr::new(to), &bytes).unwrap();
}

/// A user's own page-table code (the kind the emulator should referee): to
/// map `page` next to `neighbour` in the same 2 MiB region, it builds a new
/// level-1 table (a copy of the old one plus the new entry) in `new_table`
/// and swaps it into the level-2 entry. It forgets every invalidation
/// unless `invalidate` is set; the level-2 entry was present before, so
/// hardware may keep walking through the old one.
fn user_swaps_in_a_new_level_1_table(
    t: &mut Tables,
    page: u64,
    frame: u64,
    new_table: u64,
    invalidate: bool,
) {
    let old_table = t.get(page, 2) & ADDRESS;
    copy_table(t, old_table, new_table);
    let entry = new_table + ((page >> 12) & 0x1ff) * 8;
    let value = frame | (F::PRESENT | F::WRITABLE).bits();
    t.machine
        .memory_mut()
        .write_u64(PhysAddr::new(entry), value)
        .unwrap();
    let old = t.get(page, 2);
    t.set(page, 2, (old & !ADDRESS) | new_table);
    if invalidate {
        // The new page was not mapped before, so no TLB entry needs to go;
        // the one invlpg is for the paging-structure caches.
        t.machine.invlpg(virt(page));
    }
}

/// The user's test: after using `neighbour`, map `page` and read it back.
fn users_test_passes(paging_structure_caches: bool, invalidate: bool) -> bool {
    let mut t = Tables::new();
    t.machine
        .set_paging_structure_caches(paging_structure_caches);
    let (neighbour, page) = (0x0000_0012_3440_0000, 0x0000_0012_3440_1000);
    t.map(neighbour, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.machine.write_u64(virt(neighbour), 1).unwrap();
    t.machine
        .memory_mut()
        .write_u64(PhysAddr::new(0xa000), 0x5eed)
        .unwrap();
    user_swaps_in_a_new_level_1_table(&mut t, page, 0xa000, 0x70_0000, invalidate);
    t.machine.read_u64(virt(neighbour)) == Ok(1) && t.machine.read_u64(virt(page)) == Ok(0x5eed)
}

/// The point of the model: user code that changes a present non-leaf entry
/// without any invalidation passes on an emulator without
/// paging-structure caches, and fails with them, as it may on hardware.
#[test]
fn changing_a_non_leaf_entry_without_invalidation_is_caught() {
    assert!(users_test_passes(false, false), "passes without the model");
    assert!(!users_test_passes(true, false), "fails with it");
    assert!(users_test_passes(true, true), "the fix: one invlpg");
    // What the failure looks like: the walk for the new page went through
    // the cached level-2 entry to the old level-1 table.
    let mut t = Tables::new();
    let (neighbour, page) = (0x0000_0012_3440_0000, 0x0000_0012_3440_1000);
    t.map(neighbour, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.machine.read_u64(virt(neighbour)).unwrap();
    user_swaps_in_a_new_level_1_table(&mut t, page, 0xa000, 0x70_0000, false);
    let fault = t.machine.read_u64(virt(page)).unwrap_err();
    assert_eq!((fault.level, fault.cause), (1, FaultCause::NotPresent));
    assert_eq!(t.machine.counters().psc_hits, 1);
}

/// Each cache level is used: a changed entry at level 4, 3 or 2 is not seen
/// by a walk for an uncached address under a cached copy of it.
#[test]
fn every_level_of_non_leaf_entry_is_cached() {
    for level in [4u8, 3, 2] {
        let mut t = Tables::new();
        let first = 0x0000_0012_0000_0000;
        // An address that shares the entry at `level` (and above) with `first`.
        let second = first + (1 << (12 + 9 * u32::from(level - 2)));
        t.map(first, 0x9000, LeafSize::Size4KiB, F::empty());
        t.map(second, 0xa000, LeafSize::Size4KiB, F::empty());
        assert_eq!(t.get(first, level), t.get(second, level));
        t.machine.read_u64(virt(first)).unwrap();
        assert!(
            t.machine
                .paging_structure_cache_len()
                .iter()
                .all(|&n| n == 1)
        );

        // Point the shared entry at a copy of its table, in which the path
        // for `second` leads to frame 0xb000.
        let mut next = 0x80_0000;
        let mut copy = |t: &mut Tables, at: u8| {
            let old = t.get(second, at);
            copy_table(t, old & ADDRESS, next);
            t.set(second, at, (old & !ADDRESS) | next);
            next += 0x1000;
        };
        for at in (2..=level).rev() {
            copy(&mut t, at);
        }
        t.set(second, 1, 0xb000 | F::PRESENT.bits());
        t.machine
            .memory_mut()
            .write_u64(PhysAddr::new(0xb000), 0xb)
            .unwrap();
        t.machine
            .memory_mut()
            .write_u64(PhysAddr::new(0xa000), 0xa)
            .unwrap();
        assert_eq!(
            t.machine.read_u64(virt(second)),
            Ok(0xa),
            "level {level}: cached"
        );
        t.machine.invlpg(virt(0x1000)); // any address
        t.machine.invlpg(virt(second));
        assert_eq!(
            t.machine.read_u64(virt(second)),
            Ok(0xb),
            "level {level}: fresh"
        );
    }
}

#[test]
fn invlpg_cr3_writes_and_flushes_drop_every_cached_entry() {
    let mut t = Tables::new();
    let addrs = [0x1000, 0x0000_0080_0000_0000, 0x0000_7fff_ffe0_0000];
    for &addr in &addrs {
        t.map(addr, 0x9000, LeafSize::Size4KiB, F::GLOBAL);
    }
    let warm = |t: &mut Tables| {
        for &addr in &addrs {
            t.machine.invlpg(virt(addr));
        }
        for &addr in &addrs {
            t.machine.read_u64(virt(addr)).unwrap();
        }
        assert_eq!(t.machine.paging_structure_cache_len(), [3, 3, 3]);
    };
    warm(&mut t);
    t.machine.invlpg(virt(0xffff_ffff_ffff_f000)); // maps nothing
    assert_eq!(t.machine.paging_structure_cache_len(), [0, 0, 0]);
    assert_eq!(
        t.machine.tlb_len(),
        3,
        "invlpg of another page keeps the TLB"
    );
    warm(&mut t);
    t.machine.flush_all();
    assert_eq!(t.machine.paging_structure_cache_len(), [0, 0, 0]);
    assert_eq!(t.machine.tlb_len(), 3, "global translations stay");
    warm(&mut t);
    let cr3 = t.machine.cr3();
    t.machine.set_cr3(cr3);
    assert_eq!(t.machine.paging_structure_cache_len(), [0, 0, 0]);
    warm(&mut t);
    t.machine.flush_global();
    assert_eq!(t.machine.paging_structure_cache_len(), [0, 0, 0]);
    assert_eq!(t.machine.tlb_len(), 0);
}

/// Rights are cached with the entries: a parent entry that gains
/// `WRITABLE` without an invalidation still refuses writes to addresses
/// walked through the cached copy (the reason `RecursivePageTable` flushes
/// after upgrading a parent). The fault drops the cached entries for the
/// address, so the retried write succeeds, as on hardware.
#[test]
fn cached_rights_are_used_until_invalidated_or_faulted() {
    let mut t = Tables::new();
    let (a, b) = (0x0000_0033_0000_0000, 0x0000_0033_0000_1000);
    t.map(a, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.map(b, 0xa000, LeafSize::Size4KiB, F::WRITABLE);
    t.set_flags(a, 3, F::PRESENT); // read-only level-3 entry
    t.machine.read_u64(virt(a)).unwrap();
    t.set_flags(a, 3, TABLE); // upgraded, no invalidation
    let fault = t.machine.write_u64(virt(b), 1).unwrap_err();
    assert_eq!((fault.level, fault.cause), (1, FaultCause::ReadOnly));
    assert_eq!(t.machine.write_u64(virt(b), 1), Ok(()), "retried");
    // Without the caches the first write would have succeeded.
    let mut t = Tables::new();
    t.machine.set_paging_structure_caches(false);
    t.map(a, 0x9000, LeafSize::Size4KiB, F::WRITABLE);
    t.map(b, 0xa000, LeafSize::Size4KiB, F::WRITABLE);
    t.set_flags(a, 3, F::PRESENT);
    t.machine.read_u64(virt(a)).unwrap();
    t.set_flags(a, 3, TABLE);
    assert_eq!(t.machine.write_u64(virt(b), 1), Ok(()));
}

#[test]
fn a_page_fault_drops_the_cached_entries_for_its_address_only() {
    let mut t = Tables::new();
    let (a, missing, other) = (0x1000, 0x2000, 0x0000_0080_0000_0000);
    t.map(a, 0x9000, LeafSize::Size4KiB, F::empty());
    t.map(other, 0xa000, LeafSize::Size4KiB, F::empty());
    t.machine.read_u64(virt(a)).unwrap();
    t.machine.read_u64(virt(other)).unwrap();
    assert_eq!(t.machine.paging_structure_cache_len(), [2, 2, 2]);
    t.machine.read_u64(virt(missing)).unwrap_err();
    assert_eq!(t.machine.paging_structure_cache_len(), [1, 1, 1]);
    assert_eq!(
        t.machine.cached(virt(a)).map(|c| c.frame.as_u64()),
        Some(0x9000)
    );
}

/// CR3 switch between two address spaces sharing a global kernel page:
/// non-global translations and every cached table entry of A are gone,
/// A's global translation stays (even where B maps the page elsewhere).
#[test]
fn a_cr3_switch_keeps_global_translations_only() {
    let mut t = Tables::new();
    let (kernel, user, user_2) = (0xffff_8000_0000_0000, 0x40_0000, 0x40_1000);
    t.map(kernel, 0x9000, LeafSize::Size4KiB, F::GLOBAL);
    t.map(user, 0xa000, LeafSize::Size4KiB, F::empty());
    t.map(user_2, 0xa000, LeafSize::Size4KiB, F::empty());
    let a = t.machine.cr3();
    // Address space B: its own level-4 table at 0x50_0000; the kernel page
    // maps frame 0xb000 there (a different frame, to make a stale global
    // translation visible), the user pages map 0xc000.
    let mut b = Tables::with(RECURSIVE as u16, 0x50_0000, 0x60_0000);
    b.map(kernel, 0xb000, LeafSize::Size4KiB, F::GLOBAL);
    b.map(user, 0xc000, LeafSize::Size4KiB, F::empty());
    b.map(user_2, 0xc000, LeafSize::Size4KiB, F::empty());
    let tables = b.machine.memory().clone();
    for (addr, value) in [(0x9000, 9), (0xa000, 0xa), (0xb000, 0xb), (0xc000, 0xc)] {
        t.machine
            .memory_mut()
            .write_u64(PhysAddr::new(addr), value)
            .unwrap();
    }
    for f in tables.differing_frames(&framealloc::emu::PhysMemory::new()) {
        let mut bytes = vec![0; 4096];
        tables.read_bytes(f.start_address(), &mut bytes).unwrap();
        t.machine
            .memory_mut()
            .write_bytes(f.start_address(), &bytes)
            .unwrap();
    }

    assert_eq!(t.machine.read_u64(virt(kernel)), Ok(9));
    assert_eq!(t.machine.read_u64(virt(user)), Ok(0xa));
    t.machine.set_cr3(frame(0x50_0000));
    assert_eq!(t.machine.paging_structure_cache_len(), [0, 0, 0]);
    t.machine.reset_counters();
    assert_eq!(t.machine.read_u64(virt(user)), Ok(0xc), "B's user page");
    assert_eq!(t.machine.read_u64(virt(user_2)), Ok(0xc));
    assert_eq!(
        t.machine.read_u64(virt(kernel)),
        Ok(9),
        "A's global translation"
    );
    let counters = t.machine.counters();
    assert_eq!(
        (counters.tlb_hits, counters.tlb_misses, counters.psc_hits),
        (1, 2, 1)
    );
    // Back to A: the same again the other way round.
    t.machine.set_cr3(a);
    assert_eq!(t.machine.read_u64(virt(user_2)), Ok(0xa));
    assert_eq!(t.machine.read_u64(virt(kernel)), Ok(9));
    t.machine.flush_global();
    t.machine.set_cr3(frame(0x50_0000));
    assert_eq!(
        t.machine.read_u64(virt(kernel)),
        Ok(0xb),
        "B's own kernel page"
    );
}

/// `RecursivePageTable` on a machine with the caches (the default): a
/// level-1 table freed by `clean_up` and a new one created in its place,
/// with the paging-structure caches warm, and every page still reads its
/// own frame.
#[test]
fn recursive_page_table_invalidates_what_the_caches_hold() {
    struct Frames(TableBump, Vec<PhysFrame>);
    // SAFETY: frames come from the bump allocator or were freed to us.
    unsafe impl FrameAllocator<Size4KiB> for Frames {
        fn allocate_frame(&mut self) -> Option<PhysFrame> {
            self.1.pop().or_else(|| self.0.allocate_frame())
        }
    }
    impl FrameDeallocator<Size4KiB> for Frames {
        unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
            self.1.push(frame);
        }
    }
    let machine = Tables::new().machine;
    let mut table =
        RecursivePageTable::new(machine, PageTableIndex::new(RECURSIVE as u16)).unwrap();
    let mut frames = Frames(TableBump::new(0x10_0000), Vec::new());
    let page = |addr| Page::<Size4KiB>::containing_address(virt(addr));
    let data = |addr| PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(addr));
    let rw = F::PRESENT | F::WRITABLE;
    for round in 0..3u64 {
        let (a, b) = (
            0x0000_0044_0000_0000 + round * 0x1000,
            0x0000_0044_0020_0000,
        );
        // SAFETY: emulated memory.
        unsafe { table.map_to(page(a), data(0x100_0000 + round * 0x1000), rw, &mut frames) }
            .unwrap()
            .flush();
        // SAFETY: emulated memory.
        unsafe { table.map_to(page(b), data(0x200_0000), rw, &mut frames) }
            .unwrap()
            .flush();
        let machine = table.backend_mut();
        machine.write_u64(virt(a), round).unwrap();
        machine.write_u64(virt(b), 100 + round).unwrap();
        assert_eq!(machine.read_u64(virt(a)), Ok(round));
        let (_, flush) = table.unmap(page(a)).unwrap();
        flush.flush();
        let (_, flush) = table.unmap(page(b)).unwrap();
        flush.flush();
        // SAFETY: the tables are ours and nothing else uses them.
        let freed = unsafe { table.clean_up(&mut frames) };
        assert_eq!(freed, 4, "round {round}");
        assert!(table.backend().read_u64(virt(a)).is_err());
    }
    assert!(table.backend().counters().psc_hits > 0);
}
