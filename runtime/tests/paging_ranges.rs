//! Range operations on the emulator: partial failure, flush decisions,
//! map-with-allocation, freeing with reclaim, and the dump.

mod paging_support;

use framealloc::paging::{FLUSH_ALL_THRESHOLD, FlushScope, MaxPageSize};
use framealloc::x86_64::structures::paging::frame::PhysFrameRange;
use framealloc::x86_64::structures::paging::mapper::Translate;
use framealloc::x86_64::structures::paging::mapper::{MapToError, UnmapError};
use framealloc::x86_64::structures::paging::page::PageRange;
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
    assert_eq!(err.done, 5);
    assert!(
        matches!(err.error, MapToError::PageAlreadyMapped(f) if f == frame(DATA_START + 5 * 4096))
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
    assert_eq!(err.done, 2);
    assert!(matches!(err.error, MapToError::FrameAllocationFailed));
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
    assert_eq!(
        flush.scope(),
        FlushScope::Pages {
            start: VirtAddr::new(0x4000_0000),
            count: small,
            page_size: 4096
        }
    );
    flush.flush();
    let after = table.backend().counters();
    // One invlpg per page, plus one per table created (before zeroing it).
    let created = (tables.out.len() - tables_before) as u64;
    assert_eq!(created, 3);
    assert_eq!(
        (
            after.invlpg - before.invlpg,
            after.full_flushes - before.full_flushes
        ),
        (small + created, 0)
    );

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
    assert_eq!(flush.scope(), FlushScope::All);
    flush.flush();
    assert_eq!(
        table.backend().counters().full_flushes - after.full_flushes,
        1
    );

    // Mixed sizes: four entries (4 KiB, 2 MiB, 2 MiB, 4 KiB) → four invlpg.
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
    assert!(matches!(flush.scope(), FlushScope::Mixed { .. }));
    flush.flush();
    // Four entries, plus one invlpg for each table created before zeroing it.
    let created = (tables.out.len() - tables_before) as u64;
    assert_eq!(table.backend().counters().invlpg - before, 4 + created);
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
    assert_eq!(err.done, 5, "five data frames in the budget");
    assert!(matches!(err.error, MapToError::FrameAllocationFailed));
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
        (err.done, format!("{:?}", err.error)),
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
    let expected = "\
virtual start       virtual end           physical start  size   pages  flags
0x0000000000400000  0x0000000000403000 -> 0x001000000000    4K       3  rwx kernel
0x0000000000403000  0x0000000000405000 -> 0x002000000000    4K       2  rw- kernel
0xffff800000000000  0xffff800080000000 -> 0x000000000000    1G       2  rwx kernel global
";
    assert_eq!(dump, expected, "\n{dump}");
}
