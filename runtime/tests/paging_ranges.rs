//! Range operations on the emulator: partial failure, flush decisions,
//! map-with-allocation, freeing with reclaim, and the dump.

mod paging_support;

use framealloc::emu::Machine;
use framealloc::paging::{FLUSH_ALL_THRESHOLD, FlushScope, MaxPageSize, RangeError};
use framealloc::x86_64::structures::paging::frame::PhysFrameRange;
use framealloc::x86_64::structures::paging::mapper::Translate;
use framealloc::x86_64::structures::paging::mapper::{MapToError, UnmapError};
use framealloc::x86_64::structures::paging::page::PageRange;
use framealloc::x86_64::structures::paging::page_table::PageTableLevel;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageSize, PageTableFlags as F, PhysFrame, Size2MiB,
    Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use paging_support::{DATA_START, TableFrames, frame, table_at};

const RW: F = F::PRESENT.union(F::WRITABLE);

fn pages(start: u64, count: u64) -> PageRange {
    let first = Page::containing_address(VirtAddr::new(start));
    Page::range(first, first + count)
}

fn frames(start: u64, count: u64) -> PhysFrameRange {
    let first = frame(start);
    PhysFrame::range(first, first + count)
}

/// Data frames for 4 KiB and 2 MiB pages (kept apart from table frames),
/// table frames from `TableFrames`; frees data frames into a list.
struct Data {
    tables: TableFrames,
    next: u64,
    budget: usize,
    freed: Vec<u64>,
}

// SAFETY: data frames come from a counter, tables from TableFrames.
unsafe impl<S: PageSize> FrameAllocator<S> for Data {
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        if self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let addr = self.next.next_multiple_of(S::SIZE);
        self.next = addr + S::SIZE;
        Some(PhysFrame::containing_address(PhysAddr::new(addr)))
    }
}

impl<S: PageSize> FrameDeallocator<S> for Data {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        let addr = frame.start_address().as_u64();
        if addr >= DATA_START {
            self.freed.push(addr);
        } else {
            // SAFETY: forwarded contract.
            unsafe {
                self.tables
                    .deallocate_frame(PhysFrame::containing_address(frame.start_address()));
            };
        }
    }
}

// 2 MiB pages: tables come from the TableFrames inside (4 KiB requests
// are table requests here because the data are 2 MiB).
struct Split<'a>(&'a mut Data);
// SAFETY: forwards to the two sources.
unsafe impl FrameAllocator<Size2MiB> for Split<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size2MiB>> {
        FrameAllocator::<Size2MiB>::allocate_frame(self.0)
    }
}
// SAFETY: forwards to TableFrames.
unsafe impl FrameAllocator<Size4KiB> for Split<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.0.tables.allocate_frame()
    }
}

#[test]
fn map_range_stops_at_an_already_mapped_page_and_reports_how_far_it_got() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    // SAFETY: emulated memory.
    unsafe {
        table.map_to(
            Page::containing_address(VirtAddr::new(0x40_5000)),
            frame(DATA_START + 0x10_0000),
            RW,
            &mut tables,
        )
    }
    .unwrap()
    .flush();
    for i in 0..8 {
        table
            .backend_mut()
            .memory_mut()
            .write_u64(PhysAddr::new(DATA_START + i * 4096), 100 + i)
            .unwrap();
    }
    // SAFETY: emulated memory.
    let err =
        unsafe { table.map_range(pages(0x40_0000, 8), frames(DATA_START, 8), RW, &mut tables) }
            .unwrap_err();
    assert_eq!(err.done(), 5);
    assert!(
        matches!(err.into_error().unwrap(), MapToError::PageAlreadyMapped(f) if f == frame(DATA_START + 5 * 4096))
    );
    // The five pages done are mapped and already flushed; page 5 is untouched.
    for i in 0..5 {
        assert_eq!(
            table
                .backend()
                .read_u64(VirtAddr::new(0x40_0000 + i * 4096))
                .unwrap(),
            100 + i
        );
    }
    assert_eq!(
        table.translate_addr(VirtAddr::new(0x40_5000)),
        Some(PhysAddr::new(DATA_START + 0x10_0000))
    );
    assert!(table.translate_addr(VirtAddr::new(0x40_6000)).is_none());
}

#[test]
fn allocator_running_dry_mid_range_builds_no_half_path() {
    let mut table = table_at(510);
    // Three tables for the first 2 MiB region, none for the second.
    let mut tables = TableFrames::with_budget(3);
    // SAFETY: emulated memory.
    let err =
        unsafe { table.map_range(pages(0x1f_e000, 4), frames(DATA_START, 4), RW, &mut tables) }
            .unwrap_err();
    assert_eq!(err.done(), 2);
    assert!(matches!(
        err.into_error().unwrap(),
        MapToError::FrameAllocationFailed
    ));
    assert_eq!(tables.out.len(), 3);
    assert_eq!(table.spare_frames(), 0);
    assert!(table.translate_addr(VirtAddr::new(0x20_0000)).is_none());
    // SAFETY: the tables belong to this hierarchy only.
    unsafe {
        table.unmap_range_and_free(
            pages(0x1f_e000, 2),
            &mut Data {
                tables,
                next: 0,
                budget: 0,
                freed: Vec::new(),
            },
            true,
        )
    }
    .unwrap();
}

#[test]
fn one_flush_decision_per_range() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    let small = FLUSH_ALL_THRESHOLD;
    let before = table.backend().counters();
    let tables_before = tables.out.len();
    // SAFETY: emulated memory.
    let flush = unsafe {
        table.map_range(
            pages(0x4000_0000, small),
            frames(DATA_START, small),
            RW,
            &mut tables,
        )
    }
    .unwrap();
    // Only unused entries were filled: nothing can be cached for them.
    assert_eq!(flush.scope(), FlushScope::Nothing);
    flush.flush();
    let after = table.backend().counters();
    // One invlpg per table created (before zeroing it), nothing else.
    let created = (tables.out.len() - tables_before) as u64;
    assert_eq!(created, 3);
    assert_eq!(
        (
            after.invlpg - before.invlpg,
            after.full_flushes - before.full_flushes
        ),
        (created, 0)
    );
    for i in 0..small {
        let va = VirtAddr::new(0x4000_0000 + i * 4096);
        assert_eq!(
            table.backend().read_u64(va).unwrap(),
            0,
            "fresh page readable"
        );
    }

    // Above the threshold a fresh map still needs no flush at all (it used
    // to reload CR3 for nothing).
    let before = table.backend().counters();
    // SAFETY: emulated memory.
    let flush = unsafe {
        table.map_range(
            pages(0x8000_0000, small + 1),
            frames(DATA_START + 0x100_0000, small + 1),
            RW,
            &mut tables,
        )
    }
    .unwrap();
    assert_eq!(flush.scope(), FlushScope::Nothing);
    flush.flush();
    let after = table.backend().counters();
    assert_eq!(after.full_flushes, before.full_flushes);

    // Unmapping: one invlpg per page up to the threshold, one full flush above.
    let flush = table.unmap_range(pages(0x4000_0000, small), drop).unwrap();
    assert_eq!(
        flush.scope(),
        FlushScope::Pages {
            start: VirtAddr::new(0x4000_0000),
            count: small,
            page_size: 4096
        }
    );
    flush.flush();
    assert_eq!(table.backend().counters().invlpg - after.invlpg, small);
    let flush = table
        .unmap_range(pages(0x8000_0000, small + 1), drop)
        .unwrap();
    assert_eq!(flush.scope(), FlushScope::All);
    flush.flush();
    assert_eq!(
        table.backend().counters().full_flushes - after.full_flushes,
        1
    );

    // Mixed sizes: four fresh entries (4 KiB, 2 MiB, 2 MiB, 4 KiB), no flush.
    let n = 1 + 1024 + 1;
    let before = table.backend().counters().invlpg;
    let tables_before = tables.out.len();
    // SAFETY: emulated memory.
    let flush = unsafe {
        table.map_range_mixed(
            pages(0x10_3fff_f000, n),
            frames(0x400_3fff_f000, n),
            RW,
            MaxPageSize::Size1GiB,
            &mut tables,
        )
    }
    .unwrap();
    assert_eq!(flush.scope(), FlushScope::Nothing);
    flush.flush();
    // One invlpg for each table created before zeroing it.
    let created = (tables.out.len() - tables_before) as u64;
    assert_eq!(table.backend().counters().invlpg - before, created);
    let sizes: Vec<u64> = table
        .mappings()
        .filter(|m| m.start.as_u64() >= 0x10_0000_0000)
        .map(|m| m.size)
        .collect();
    assert_eq!(sizes, [4096, 2 << 20, 2 << 20, 4096]);
}

#[test]
fn map_range_allocated_and_unmap_range_and_free_account_for_every_frame() {
    let mut table = table_at(510);
    let mut data = Data {
        tables: TableFrames::new(),
        next: DATA_START,
        budget: 5,
        freed: Vec::new(),
    };
    let start = Page::<Size2MiB>::containing_address(VirtAddr::new(0x4000_0000));
    // SAFETY: emulated memory.
    let err = unsafe {
        table.map_range_allocated(Page::range(start, start + 8), RW, &mut Split(&mut data))
    }
    .unwrap_err();
    assert_eq!(err.done(), 5, "five data frames in the budget");
    assert!(matches!(
        err.into_error().unwrap(),
        MapToError::FrameAllocationFailed
    ));
    let mapped: Vec<u64> = table.mappings().map(|m| m.frame.as_u64()).collect();
    assert_eq!(mapped.len(), 5);
    assert_eq!(data.tables.out.len(), 2, "level-3 and level-2 tables");

    // Free the five pages and reclaim: every frame comes back.
    // SAFETY: the frames are owned by these mappings; tables by this hierarchy.
    let freed =
        unsafe { table.unmap_range_and_free(Page::range(start, start + 5), &mut data, true) }
            .unwrap();
    assert_eq!(freed, 2);
    assert_eq!(data.freed, mapped);
    assert!(data.tables.out.is_empty());
    assert!(
        table
            .backend()
            .read_u64(VirtAddr::new(0x4000_0000))
            .is_err(),
        "invalidated before freeing"
    );

    // Unmapping what is not mapped reports where it stopped.
    let err = table
        .unmap_range(Page::range(start, start + 2), |_| {})
        .unwrap_err();
    assert_eq!(
        (err.done(), format!("{:?}", err.into_error().unwrap())),
        (0, format!("{:?}", UnmapError::PageNotMapped))
    );
}

#[test]
fn dump_merges_contiguous_runs() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    // SAFETY: emulated memory.
    unsafe {
        table
            .map_range(
                pages(0x40_0000, 3),
                frames(0x10_0000_0000, 3),
                RW,
                &mut tables,
            )
            .unwrap()
            .flush();
        table
            .map_range(
                pages(0x40_3000, 2),
                frames(0x20_0000_0000, 2),
                RW | F::NO_EXECUTE,
                &mut tables,
            )
            .unwrap()
            .flush();
        table
            .map_range_mixed(
                pages(0xffff_8000_0000_0000, 1 << 19),
                frames(0, 1 << 19),
                RW | F::GLOBAL,
                MaxPageSize::Size1GiB,
                &mut tables,
            )
            .unwrap()
            .flush();
    }
    let dump = table.dump().to_string();
    assert_eq!(
        format!("{:?}", table.dump()),
        "Dump { recursive_index: PageTableIndex(510), .. }"
    );
    assert!(
        format!("{:?}", table.mappings())
            .starts_with("Mappings { recursive_index: PageTableIndex(510), next_offset: 0x0")
    );
    let expected = "\
virtual start       virtual end           physical start  size   pages  flags
0x0000000000400000  0x0000000000403000 -> 0x001000000000    4K       3  rwx kernel
0x0000000000403000  0x0000000000405000 -> 0x002000000000    4K       2  rw- kernel
0xffff800000000000  0xffff800080000000 -> 0x000000000000    1G       2  rwx kernel global
";
    assert_eq!(dump, expected, "\n{dump}");
}

const GLOBAL_RW: F = F::PRESENT.union(F::WRITABLE).union(F::GLOBAL);

/// Maps `n` global pages from `0x4000_0000` and reads each, so the TLB holds
/// every translation.
fn map_global_and_read(n: u64) -> (framealloc::RecursivePageTable<Machine>, TableFrames) {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    // SAFETY: emulated memory.
    unsafe {
        table.map_range(
            pages(0x4000_0000, n),
            frames(DATA_START, n),
            GLOBAL_RW,
            &mut tables,
        )
    }
    .unwrap()
    .flush();
    for i in 0..n {
        table
            .backend()
            .read_u64(VirtAddr::new(0x4000_0000 + i * 4096))
            .unwrap();
    }
    assert!(table.backend().cached(VirtAddr::new(0x4000_0000)).is_some());
    (table, tables)
}

#[test]
fn unmapping_many_global_pages_invalidates_each_one() {
    let n = FLUSH_ALL_THRESHOLD + 8;
    let (mut table, _tables) = map_global_and_read(n);
    let flush = table.unmap_range(pages(0x4000_0000, n), drop).unwrap();
    // A CR3 reload would keep global translations: one invlpg per page.
    assert_eq!(
        flush.scope(),
        FlushScope::Pages {
            start: VirtAddr::new(0x4000_0000),
            count: n,
            page_size: 4096
        }
    );
    flush.flush();
    for i in 0..n {
        let va = VirtAddr::new(0x4000_0000 + i * 4096);
        assert!(table.backend().cached(va).is_none(), "{va:?} still cached");
        assert!(
            table.backend().read_u64(va).is_err(),
            "{va:?} still readable"
        );
    }
}

#[test]
fn freeing_many_global_pages_leaves_no_stale_translation() {
    let n = FLUSH_ALL_THRESHOLD + 8;
    let (mut table, tables) = map_global_and_read(n);
    let mut data = Data {
        tables,
        next: DATA_START,
        budget: 0,
        freed: Vec::new(),
    };
    // SAFETY: the frames belong to the mapping; tables to this hierarchy.
    unsafe { table.unmap_range_and_free(pages(0x4000_0000, n), &mut data, true) }.unwrap();
    assert_eq!(data.freed.len() as u64, n);
    for i in 0..n {
        let va = VirtAddr::new(0x4000_0000 + i * 4096);
        assert!(table.backend().cached(va).is_none(), "{va:?} still cached");
    }
}

#[test]
fn write_protecting_many_global_pages_takes_effect() {
    let n = FLUSH_ALL_THRESHOLD + 8;
    let (mut table, _tables) = map_global_and_read(n);
    for i in 0..n {
        // Cache writable translations.
        table
            .backend_mut()
            .write_u64(VirtAddr::new(0x4000_0000 + i * 4096), i)
            .unwrap();
    }
    // SAFETY: emulated memory.
    unsafe { table.update_flags_range(pages(0x4000_0000, n), F::PRESENT | F::GLOBAL) }
        .unwrap()
        .flush();
    for i in 0..n {
        let va = VirtAddr::new(0x4000_0000 + i * 4096);
        assert!(
            table.backend_mut().write_u64(va, 7).is_err(),
            "{va:?} still writable"
        );
        assert_eq!(table.backend().read_u64(va).unwrap(), i);
    }
}

/// Clears `WRITABLE` in the parent entry at `level` on `va`'s path, behind
/// the table's back, then flushes the whole TLB.
fn write_protect_parent(
    table: &mut framealloc::RecursivePageTable<Machine>,
    level: PageTableLevel,
    va: u64,
) {
    let addr = VirtAddr::new(va);
    let parent = table.table_address(level, addr);
    let index = match level {
        PageTableLevel::Two => addr.p2_index(),
        PageTableLevel::Three => addr.p3_index(),
        _ => addr.p4_index(),
    };
    let machine = table.backend_mut();
    let entry = machine.read_entry(parent, usize::from(index));
    machine.write_entry(parent, usize::from(index), entry & !F::WRITABLE.bits());
    machine.flush_global();
}

fn map_one(
    table: &mut framealloc::RecursivePageTable<Machine>,
    tables: &mut TableFrames,
    va: u64,
    phys: u64,
) {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, frame(phys), RW, tables) }
        .unwrap()
        .flush();
}

#[test]
fn adding_writable_to_a_level_2_entry_invalidates_its_child_table() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    map_one(&mut table, &mut tables, 0x4000_0000, DATA_START);
    write_protect_parent(&mut table, PageTableLevel::Two, 0x4000_0000);
    // Reading the level-1 table caches a read-only translation of it.
    assert!(table.translate_addr(VirtAddr::new(0x4000_0000)).is_some());
    // Mapping a writable neighbour adds WRITABLE to the level-2 entry, then
    // writes the level-1 table: it must not go through the stale entry.
    map_one(&mut table, &mut tables, 0x4000_1000, DATA_START + 0x1000);
    assert_eq!(
        table.translate_addr(VirtAddr::new(0x4000_1000)),
        Some(PhysAddr::new(DATA_START + 0x1000))
    );
}

#[test]
fn adding_writable_to_a_level_2_entry_drops_read_only_data_translations_below() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    map_one(&mut table, &mut tables, 0x4000_0000, DATA_START);
    write_protect_parent(&mut table, PageTableLevel::Two, 0x4000_0000);
    // Reading the data page caches a read-only translation of it (the
    // effective rights are the AND over every level).
    let page = VirtAddr::new(0x4000_0000);
    assert_eq!(table.backend().read_u64(page), Ok(0));
    assert!(table.backend().cached(page).is_some());
    // A writable neighbour under the same level-2 entry upgrades it.
    map_one(&mut table, &mut tables, 0x4000_1000, DATA_START + 0x1000);
    // The first page is writable again: no fault through a stale entry.
    table
        .backend_mut()
        .write_u64(page, 0x1234_5678)
        .expect("write after the parent upgrade");
    assert_eq!(table.backend().read_u64(page), Ok(0x1234_5678));
    assert_eq!(
        table.backend().memory().read_u64(PhysAddr::new(DATA_START)),
        Ok(0x1234_5678)
    );
}

#[test]
fn adding_writable_to_a_level_2_entry_drops_read_only_global_translations_below() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, frame(DATA_START), RW | F::GLOBAL, &mut tables) }
        .unwrap()
        .flush();
    write_protect_parent(&mut table, PageTableLevel::Two, 0x4000_0000);
    // Reading the page caches a read-only translation that is GLOBAL, so a
    // CR3 reload alone would keep it.
    let addr = page.start_address();
    assert_eq!(table.backend().read_u64(addr), Ok(0));
    let cached = table.backend().cached(addr).expect("cached by the read");
    assert!(cached.flags.contains(F::GLOBAL));
    assert!(!cached.flags.contains(F::WRITABLE));
    table.backend_mut().reset_counters();
    // A writable neighbour under the same level-2 entry upgrades it.
    map_one(&mut table, &mut tables, 0x4000_1000, DATA_START + 0x1000);
    assert_eq!(table.backend().counters().full_flushes, 1);
    table
        .backend_mut()
        .write_u64(addr, 0x1234_5678)
        .expect("write to a global page after the parent upgrade");
    assert_eq!(
        table.backend().memory().read_u64(PhysAddr::new(DATA_START)),
        Ok(0x1234_5678)
    );
}

#[test]
fn flush_global_through_a_forwarding_backend_drops_global_entries() {
    use framealloc::paging::Backend;
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, frame(DATA_START), RW | F::GLOBAL, &mut tables) }
        .unwrap()
        .flush();
    let addr = page.start_address();
    assert_eq!(table.backend().read_u64(addr), Ok(0));
    let mut machine = table.backend_mut();
    Backend::flush_all(&mut machine);
    assert!(machine.cached(addr).is_some(), "a CR3 reload keeps it");
    machine.reset_counters();
    Backend::flush_global(&mut machine);
    assert!(machine.cached(addr).is_none(), "flush_global drops it");
    assert_eq!(machine.counters().full_flushes, 1);
    assert_eq!(machine.counters().invlpg, 0);
}

#[test]
fn adding_writable_to_a_level_3_entry_invalidates_every_table_below() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    // Two level-1 tables under one level-3 entry.
    map_one(&mut table, &mut tables, 0x4000_0000, DATA_START);
    map_one(&mut table, &mut tables, 0x4020_0000, DATA_START + 0x1000);
    write_protect_parent(&mut table, PageTableLevel::Three, 0x4000_0000);
    assert!(table.translate_addr(VirtAddr::new(0x4000_0000)).is_some());
    assert!(table.translate_addr(VirtAddr::new(0x4020_0000)).is_some());
    // The first map upgrades the level-3 entry; the second writes the other
    // level-1 table, whose read-only translation was cached too.
    map_one(&mut table, &mut tables, 0x4000_1000, DATA_START + 0x2000);
    map_one(&mut table, &mut tables, 0x4020_1000, DATA_START + 0x3000);
    assert_eq!(
        table.translate_addr(VirtAddr::new(0x4020_1000)),
        Some(PhysAddr::new(DATA_START + 0x3000))
    );
}

#[test]
fn a_range_across_the_canonical_hole_is_rejected_up_front() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    let start = Page::<Size4KiB>::containing_address(VirtAddr::new(0x7fff_ffff_e000));
    let end = Page::<Size4KiB>::containing_address(VirtAddr::new(0xffff_8000_0000_2000));
    let range = Page::range(start, end);
    let hole = |err: &dyn core::fmt::Debug| {
        assert_eq!(
            format!("{err:?}"),
            format!(
                "{:?}",
                RangeError::<()>::CrossesCanonicalHole {
                    start: start.start_address(),
                    end: end.start_address(),
                }
            )
        );
    };
    let before = table.backend().memory().clone();
    // SAFETY: emulated memory.
    let err =
        unsafe { table.map_range(range, frames(DATA_START, 4), RW, &mut tables) }.unwrap_err();
    hole(&err);
    assert_eq!(err.done(), 0);
    assert!(table.backend().memory() == &before, "nothing was written");
    hole(&table.unmap_range(range, drop).unwrap_err());
    // SAFETY: emulated memory.
    let err = unsafe { table.update_flags_range(range, RW) }.unwrap_err();
    hole(&err);
    // SAFETY: emulated memory.
    let err = unsafe {
        table.map_range_mixed(
            range,
            frames(DATA_START, 4),
            RW,
            MaxPageSize::Size1GiB,
            &mut tables,
        )
    }
    .unwrap_err();
    hole(&err);
    assert!(table.backend().memory() == &before, "nothing was written");
    // The two halves, mapped separately, are fine.
    // (A `PageRange` cannot end at the hole itself: map one low page.)
    let low = Page::range(start, start + 1);
    // SAFETY: emulated memory.
    unsafe { table.map_range(low, frames(DATA_START, 1), RW, &mut tables) }
        .unwrap()
        .flush();
    let high_start = Page::<Size4KiB>::containing_address(VirtAddr::new(0xffff_8000_0000_0000));
    // SAFETY: emulated memory.
    unsafe {
        table.map_range(
            Page::range(high_start, end),
            frames(DATA_START + 0x2000, 2),
            RW,
            &mut tables,
        )
    }
    .unwrap()
    .flush();
    let starts: Vec<u64> = table.mappings().map(|m| m.start.as_u64()).collect();
    assert_eq!(
        starts,
        [
            0x7fff_ffff_e000,
            0xffff_8000_0000_0000,
            0xffff_8000_0000_1000
        ]
    );
}

/// Moved from the unit tests of `runtime/src/paging/runs.rs` (the range
/// walker): runs stop at the exact failing entry.
mod run_edges {
    use framealloc::emu::Machine;
    use framealloc::paging::{RangeError, RecursivePageTable};
    use framealloc::x86_64::structures::paging::PageTableIndex;
    use framealloc::x86_64::structures::paging::mapper::Translate;
    use framealloc::x86_64::structures::paging::mapper::{FlagUpdateError, MapToError, UnmapError};
    use framealloc::x86_64::structures::paging::{
        FrameAllocator, Page, PageSize, PageTableFlags, PhysFrame, Size2MiB, Size4KiB,
    };
    use framealloc::x86_64::{PhysAddr, VirtAddr};

    const HUGE: u64 = PageTableFlags::HUGE_PAGE.bits();

    const RW: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

    fn setup() -> (RecursivePageTable<Machine>, impl FrameAllocator<Size4KiB>) {
        let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
        let machine = Machine::with_recursive_table(PageTableIndex::new(510), l4).unwrap();
        let table = RecursivePageTable::new(machine, PageTableIndex::new(510)).unwrap();
        let mut next = 0x10_0000u64;
        // SAFETY: every call yields a fresh frame below the data frames.
        let tables = unsafe {
            framealloc::from_fn(move || {
                next += 4096;
                Some(PhysFrame::containing_address(PhysAddr::new(next)))
            })
        };
        (table, tables)
    }

    fn page<S: PageSize>(addr: u64) -> Page<S> {
        Page::containing_address(VirtAddr::new(addr))
    }

    fn frame<S: PageSize>(addr: u64) -> PhysFrame<S> {
        PhysFrame::containing_address(PhysAddr::new(addr))
    }

    /// 2 MiB range operations over a run whose third entry points to a
    /// 4 KiB table stop there, leave that table linked, and count exactly.
    #[test]
    fn huge_runs_stop_at_a_table_pointer() {
        let (mut table, mut tables) = setup();
        let base = 0x4000_0000u64;
        let big = page::<Size2MiB>(base);
        // SAFETY: emulated memory.
        unsafe {
            table
                .map_range(
                    Page::range(big, big + 2),
                    PhysFrame::range(frame(0x4000_0000), frame(0x4000_0000) + 2),
                    RW,
                    &mut tables,
                )
                .unwrap()
                .flush();
            table
                .map_range(
                    Page::range(
                        page::<Size4KiB>(base + (4 << 20)),
                        page(base + (4 << 20)) + 1,
                    ),
                    PhysFrame::range(frame(0x800_0000), frame(0x800_0000) + 1),
                    RW,
                    &mut tables,
                )
                .unwrap()
                .flush();
            table
                .map_range(
                    Page::range(big + 3, big + 4),
                    PhysFrame::range(frame(0x4060_0000), frame(0x4060_0000) + 1),
                    RW,
                    &mut tables,
                )
                .unwrap()
                .flush();
        }
        // SAFETY: emulated memory.
        let update =
            unsafe { table.update_flags_range(Page::range(big, big + 4), PageTableFlags::PRESENT) };
        assert!(matches!(
            update.err(),
            Some(RangeError::Stopped {
                done: 2,
                error: FlagUpdateError::ParentEntryHugePage
            })
        ));
        let mut seen = Vec::new();
        let unmap = table.unmap_range(Page::range(big, big + 4), |f: PhysFrame<Size2MiB>| {
            seen.push(f.start_address().as_u64());
        });
        assert!(matches!(
            unmap.err(),
            Some(RangeError::Stopped {
                done: 2,
                error: UnmapError::ParentEntryHugePage
            })
        ));
        assert_eq!(seen, [0x4000_0000, 0x4020_0000]);
        // The 4 KiB mapping and the 2 MiB page after it are intact.
        assert_eq!(
            table.translate_addr(VirtAddr::new(base + (4 << 20) + 5)),
            Some(PhysAddr::new(0x800_0005))
        );
        assert_eq!(
            table.translate_addr(VirtAddr::new(base + (3 << 20) * 2)),
            Some(PhysAddr::new(0x4060_0000))
        );
        assert_eq!(table.translate_addr(VirtAddr::new(base)), None);
    }

    /// A 4 KiB run with bit 7 (PAT) set in one entry, or an entry that is
    /// not present, stops there as the single-page `unmap` would.
    #[test]
    fn small_runs_stop_at_the_exact_failing_entry() {
        let (mut table, mut tables) = setup();
        let start = page::<Size4KiB>(0x7000_0000);
        let first = frame::<Size4KiB>(0x900_0000);
        // SAFETY: emulated memory.
        unsafe {
            table
                .map_range(
                    Page::range(start, start + 600),
                    PhysFrame::range(first, first + 600),
                    RW,
                    &mut tables,
                )
                .unwrap()
                .flush();
        }
        // Bit 7 (PAT) set by other code: this table refuses to write it.
        let odd = (start + 520).start_address();
        let l1 = table.table_address(
            x86_64::structures::paging::page_table::PageTableLevel::One,
            odd,
        );
        let index = usize::from(odd.p1_index());
        let entry = table.backend().read_entry(l1, index);
        table.backend_mut().write_entry(l1, index, entry | HUGE);
        table.backend_mut().invlpg(odd);
        let mut count = 0;
        let unmap = table.unmap_range(Page::range(start, start + 600), |_| count += 1);
        assert!(matches!(
            unmap.err(),
            Some(RangeError::Stopped {
                done: 520,
                error: UnmapError::ParentEntryHugePage
            })
        ));
        assert_eq!(count, 520);
        assert!(
            table
                .translate_addr((start + 519).start_address())
                .is_none()
        );
        assert!(
            table
                .translate_addr((start + 521).start_address())
                .is_some()
        );
        // Mapping over the range stops at the first entry still in use.
        // SAFETY: emulated memory.
        let map = unsafe {
            table.map_range(
                Page::range(start + 10, start + 600),
                PhysFrame::range(first, first + 590),
                RW,
                &mut tables,
            )
        };
        assert!(matches!(
            map.err(),
            Some(RangeError::Stopped { done: 510, error: MapToError::PageAlreadyMapped(f) }) if f == first + 510
        ));
        assert!(
            table
                .translate_addr((start + 519).start_address())
                .is_some()
        );
        let mut count = 0;
        table
            .unmap_range(Page::range(start + 10, start + 520), |_| count += 1)
            .unwrap()
            .flush();
        assert_eq!(count, 510);
    }
}
