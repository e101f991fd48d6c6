//! `RecursivePageTable` on the emulator: every operation and error of the
//! single-page API, checked through the emulated TLB.

mod paging_support;

use framealloc::emu::Machine;
use framealloc::paging::{InvalidRecursiveTable, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{
    CleanUp, FlagUpdateError, MapToError, MappedFrame, Translate, TranslateError, TranslateResult,
    UnmapError,
};
use framealloc::x86_64::structures::paging::page_table::PageTableLevel;
use framealloc::x86_64::structures::paging::{
    Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use paging_support::{DATA_START, LEVEL_4, TableFrames, frame, table_at};

/// Compares values whose types (x86_64's errors) lack `PartialEq`.
macro_rules! same {
    ($a:expr, $b:expr $(,)?) => {
        assert_eq!(format!("{:?}", $a), format!("{:?}", $b))
    };
}

const RW: F = F::PRESENT.union(F::WRITABLE);

fn page4k(addr: u64) -> Page<Size4KiB> {
    Page::from_start_address(VirtAddr::new(addr)).unwrap()
}

/// Every table entry reachable from the level-4 table, by physical address,
/// to prove an operation changed nothing.
fn snapshot(table: &RecursivePageTable<Machine>) -> Vec<(u64, u64)> {
    fn visit(m: &Machine, table: u64, level: u8, out: &mut Vec<(u64, u64)>) {
        for i in 0..512u16 {
            let entry = m.memory().read_entry(frame(table), PageTableIndex::new(i));
            if entry != 0 {
                // Accessed and dirty bits are set by the (emulated) CPU's
                // walks, not written by the page-table code.
                out.push((table + u64::from(i) * 8, entry & !0x60));
                let is_table = entry & 1 == 1 && entry & 0x80 == 0 && level > 1;
                let next = entry & 0x000f_ffff_ffff_f000;
                if is_table && next != table {
                    visit(m, next, level - 1, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    visit(table.backend(), LEVEL_4, 4, &mut out);
    out
}

#[test]
fn constructor_checks_index_and_recursive_entry() {
    let machine = Machine::with_recursive_table(PageTableIndex::new(510), frame(LEVEL_4)).unwrap();
    let err = RecursivePageTable::new(machine.clone(), PageTableIndex::new(0));
    assert!(matches!(err, Err(InvalidRecursiveTable::IndexZero)));
    let err = RecursivePageTable::new(machine.clone(), PageTableIndex::new(511)).unwrap_err();
    assert_eq!(err, InvalidRecursiveTable::IndexLast);
    assert!(err.to_string().contains("last page of the address space"));
    // Entry 509 does not exist: reading level 4 through it... would fault, so
    // use a machine where 509 points at another frame instead.
    let mut other = machine.clone();
    other
        .memory_mut()
        .write_entry(frame(LEVEL_4), PageTableIndex::new(509), 0x5000 | 3);
    other
        .memory_mut()
        .write_entry(frame(0x5000), PageTableIndex::new(509), 0x5000 | 3);
    // Through 509 four times: 0x5000 maps itself, not CR3's frame. (A
    // checking read through the recursive address sets the entry's accessed
    // bit, 0x20.)
    let err = RecursivePageTable::new(other, PageTableIndex::new(509)).unwrap_err();
    assert!(matches!(
        err,
        InvalidRecursiveTable::NotRecursive { entry, .. } if entry & !0x20 == 0x5003
    ));
    // A read-only recursive entry.
    let mut read_only = machine.clone();
    read_only
        .memory_mut()
        .write_entry(frame(LEVEL_4), PageTableIndex::new(510), LEVEL_4 | 1);
    let err = RecursivePageTable::new(read_only, PageTableIndex::new(510)).unwrap_err();
    assert_eq!(err, InvalidRecursiveTable::ReadOnly);
    assert!(RecursivePageTable::new(machine, PageTableIndex::new(510)).is_ok());
}

#[test]
fn map_read_unmap_4k_through_the_tlb() {
    let mut table = table_at(510);
    let mut frames = TableFrames::new();
    let page = page4k(0x4000_0000);
    let data = frame(DATA_START);
    table
        .backend_mut()
        .memory_mut()
        .write_u64(data.start_address(), 42)
        .unwrap();
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, data, RW, &mut frames) }
        .unwrap()
        .flush();
    assert_eq!(frames.out.len(), 3, "level 3, 2 and 1 tables created");
    assert_eq!(table.backend().read_u64(page.start_address()).unwrap(), 42);
    same!(table.translate_page(page), Ok::<_, TranslateError>(data));
    assert_eq!(
        table.translate_addr(page.start_address() + 8u64),
        Some(data.start_address() + 8u64)
    );

    let (got, flush) = table.unmap(page).unwrap();
    assert_eq!(got, data);
    flush.flush();
    assert!(table.backend().read_u64(page.start_address()).is_err());
    same!(
        table.translate_page(page),
        Err::<PhysFrame, _>(TranslateError::PageNotMapped)
    );
    assert!(matches!(
        table.translate(page.start_address()),
        TranslateResult::NotMapped
    ));
}

#[test]
fn huge_pages_map_translate_and_refuse_mismatched_sizes() {
    let mut table = table_at(510);
    let mut frames = TableFrames::new();
    let big = Page::<Size2MiB>::from_start_address(VirtAddr::new(0x20_0000)).unwrap();
    let big_frame = PhysFrame::<Size2MiB>::from_start_address(PhysAddr::new(DATA_START)).unwrap();
    let giant = Page::<Size1GiB>::from_start_address(VirtAddr::new(0x80_0000_0000)).unwrap();
    let giant_frame =
        PhysFrame::<Size1GiB>::from_start_address(PhysAddr::new(0x200_0000_0000)).unwrap();
    let memory = table.backend_mut().memory_mut();
    memory
        .write_u64(PhysAddr::new(DATA_START + 0x1_2340), 7)
        .unwrap();
    memory
        .write_u64(PhysAddr::new(0x200_0000_0000 + 0x1234_5678), 9)
        .unwrap();
    // SAFETY: emulated memory.
    unsafe {
        table
            .map_to(big, big_frame, RW, &mut frames)
            .unwrap()
            .flush();
        table
            .map_to(giant, giant_frame, RW, &mut frames)
            .unwrap()
            .flush();
    }
    let m = table.backend();
    assert_eq!(m.read_u64(VirtAddr::new(0x20_0000 + 0x1_2340)).unwrap(), 7);
    assert_eq!(
        m.read_u64(VirtAddr::new(0x80_0000_0000 + 0x1234_5678))
            .unwrap(),
        9
    );
    assert!(matches!(
        table.translate(VirtAddr::new(0x20_1000)),
        TranslateResult::Mapped { frame: MappedFrame::Size2MiB(f), offset: 0x1000, .. } if f == big_frame
    ));

    // Below a huge page: 4 KiB ops see a huge parent.
    let inside = page4k(0x20_1000);
    // SAFETY: emulated memory; the call fails.
    let err = unsafe { table.map_to(inside, frame(DATA_START + 0x40_0000), RW, &mut frames) }
        .unwrap_err();
    assert!(matches!(err, MapToError::ParentEntryHugePage));
    same!(
        table.unmap(inside).unwrap_err(),
        UnmapError::ParentEntryHugePage
    );
    same!(
        // SAFETY: emulated memory; the call fails.
        unsafe { table.update_flags(inside, RW) }.unwrap_err(),
        FlagUpdateError::ParentEntryHugePage
    );
    same!(
        table.translate_page(inside),
        Err::<PhysFrame, _>(TranslateError::ParentEntryHugePage)
    );
    // A 2 MiB page where a level-1 table exists is "already mapped".
    let small = page4k(0x60_0000);
    // SAFETY: emulated memory.
    unsafe { table.map_to(small, frame(DATA_START + 0x80_0000), RW, &mut frames) }
        .unwrap()
        .flush();
    let over = Page::<Size2MiB>::containing_address(VirtAddr::new(0x60_0000));
    // SAFETY: fails.
    let err = unsafe { table.map_to(over, big_frame, RW, &mut frames) }.unwrap_err();
    assert!(matches!(err, MapToError::PageAlreadyMapped(f) if f == big_frame));
    same!(
        table.unmap(over).unwrap_err(),
        UnmapError::ParentEntryHugePage
    );
    same!(
        table.translate_page(over),
        Err::<PhysFrame<Size2MiB>, _>(TranslateError::ParentEntryHugePage)
    );

    let (f, flush) = table.unmap(giant).unwrap();
    flush.flush();
    assert_eq!(f, giant_frame);
    assert!(
        table
            .backend()
            .read_u64(VirtAddr::new(0x80_0000_0000))
            .is_err()
    );
}

#[test]
fn failed_operations_change_nothing() {
    let mut table = table_at(510);
    let mut frames = TableFrames::new();
    let page = page4k(0x1234_5000);
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, frame(DATA_START), RW, &mut frames) }
        .unwrap()
        .flush();
    let before = snapshot(&table);
    // Mapped again, with USER asked for the parents: x86_64 would add USER to
    // the parents before failing; we change nothing.
    // SAFETY: fails.
    let err = unsafe {
        table.map_to(
            page,
            frame(DATA_START + 0x1000),
            RW | F::USER_ACCESSIBLE,
            &mut frames,
        )
    }
    .unwrap_err();
    assert!(matches!(err, MapToError::PageAlreadyMapped(f) if f == frame(DATA_START + 0x1000)));
    assert_eq!(snapshot(&table), before);
    same!(
        table.unmap(page4k(0x1234_6000)).unwrap_err(),
        UnmapError::PageNotMapped
    );
    same!(
        table.unmap(page4k(0x7000_0000_0000)).unwrap_err(),
        UnmapError::PageNotMapped
    );
    same!(
        // SAFETY: emulated memory; the call fails.
        unsafe { table.update_flags(page4k(0x1234_6000), RW) }.unwrap_err(),
        FlagUpdateError::PageNotMapped
    );
    // Inside the recursive window (index 510).
    let window = page4k(0xffff_ff00_0000_0000);
    // SAFETY: fails.
    let err = unsafe { table.map_to(window, frame(DATA_START), RW, &mut frames) }.unwrap_err();
    assert!(matches!(err, MapToError::ParentEntryHugePage));
    same!(
        table.unmap(window).unwrap_err(),
        UnmapError::ParentEntryHugePage
    );
    assert_eq!(snapshot(&table), before);
    assert_eq!(frames.out.len(), 3);
}

#[test]
fn allocator_running_dry_leaks_nothing_and_writes_nothing() {
    let mut table = table_at(510);
    let mut frames = TableFrames::with_budget(2);
    let before = snapshot(&table);
    let page = page4k(0x5555_5000);
    // SAFETY: fails.
    let err = unsafe { table.map_to(page, frame(DATA_START), RW, &mut frames) }.unwrap_err();
    assert!(matches!(err, MapToError::FrameAllocationFailed));
    assert_eq!(snapshot(&table), before, "no half-built path");
    assert_eq!(frames.out.len(), 2);
    assert_eq!(table.spare_frames(), 2, "both frames kept for the next try");
    // With one more frame the map succeeds, using the two spares first.
    frames.budget = Some(1);
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, frame(DATA_START), RW, &mut frames) }
        .unwrap()
        .flush();
    assert_eq!((frames.out.len(), table.spare_frames()), (3, 0));
    // Unmap and reclaim: all three come back.
    table.unmap(page).unwrap().1.flush();
    // SAFETY: the tables belong to this hierarchy only.
    assert_eq!(unsafe { table.clean_up(&mut frames) }, 3);
    assert!(frames.out.is_empty());

    // Spares left over are handed back by clean_up too.
    frames.budget = Some(1);
    // SAFETY: fails.
    let _ = unsafe { table.map_to(page, frame(DATA_START), RW, &mut frames) }.unwrap_err();
    assert_eq!(table.spare_frames(), 1);
    // SAFETY: as above.
    assert_eq!(unsafe { table.clean_up(&mut frames) }, 0);
    assert_eq!((table.spare_frames(), frames.out.len()), (0, 0));
}

#[test]
fn map_allocated_returns_the_frame_and_takes_nothing_on_failure() {
    struct Both(TableFrames, u64);
    // SAFETY: data frames come from a counter, table frames from TableFrames.
    unsafe impl framealloc::FrameAllocator<Size2MiB> for Both {
        fn allocate_frame(&mut self) -> Option<PhysFrame<Size2MiB>> {
            let addr = self.1;
            self.1 += 0x20_0000;
            Some(PhysFrame::containing_address(PhysAddr::new(addr)))
        }
    }
    // SAFETY: forwards to TableFrames.
    unsafe impl framealloc::FrameAllocator<Size4KiB> for Both {
        fn allocate_frame(&mut self) -> Option<PhysFrame> {
            self.0.allocate_frame()
        }
    }
    let mut table = table_at(510);
    let mut both = Both(TableFrames::new(), DATA_START);
    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(0x4000_0000));
    // SAFETY: emulated memory.
    let (got, flush) = unsafe { table.map_allocated(page, RW, &mut both) }.unwrap();
    flush.flush();
    assert_eq!(got.start_address().as_u64(), DATA_START);
    same!(table.translate_page(page), Ok::<_, TranslateError>(got));
    // Already mapped: the error names the existing frame, and no frame is taken.
    // SAFETY: fails.
    let err = unsafe { table.map_allocated(page, RW, &mut both) }.unwrap_err();
    assert!(matches!(err, MapToError::PageAlreadyMapped(f) if f == got));
    assert_eq!(both.1, DATA_START + 0x20_0000);
}

/// The stale recursive-address case: reclaim frees a level-1 table whose
/// recursive address the TLB has cached; the next table created at that
/// address must be written to its new frame, and data must read back right.
#[test]
fn reclaim_then_remap_in_the_same_region_reads_correct_data() {
    let mut table = table_at(510);
    let mut frames = TableFrames::new();
    let page = page4k(0x40_0000);
    let l1_addr = table.table_address(PageTableLevel::One, page.start_address());
    for round in 0..3u64 {
        let data = frame(DATA_START + round * 0x1000);
        table
            .backend_mut()
            .memory_mut()
            .write_u64(data.start_address(), 100 + round)
            .unwrap();
        // SAFETY: emulated memory.
        unsafe { table.map_to(page, data, RW, &mut frames) }
            .unwrap()
            .flush();
        assert_eq!(
            table.backend().read_u64(page.start_address()).unwrap(),
            100 + round
        );
        assert!(
            table.backend().cached(l1_addr).is_some(),
            "the table's address is in the TLB"
        );
        table.unmap(page).unwrap().1.flush();
        // SAFETY: the tables belong to this hierarchy only.
        assert_eq!(unsafe { table.clean_up(&mut frames) }, 3);
        assert!(
            table.backend().cached(l1_addr).is_none(),
            "clean_up invalidated it"
        );
        // Take one freed frame so the next tables land on shifted frames: the
        // old level-1 frame becomes the new level-2 table.
        let _hold = framealloc::FrameAllocator::<Size4KiB>::allocate_frame(&mut frames);
    }
}

/// The emulator makes a forgotten flush visible: remapping a page and
/// ignoring the token leaves the old translation in use.
#[test]
fn the_emulator_catches_an_omitted_flush() {
    let mut table = table_at(510);
    let mut frames = TableFrames::new();
    let page = page4k(0x7000);
    let (a, b) = (frame(DATA_START), frame(DATA_START + 0x1000));
    let memory = table.backend_mut().memory_mut();
    memory.write_u64(a.start_address(), 1).unwrap();
    memory.write_u64(b.start_address(), 2).unwrap();
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, a, RW, &mut frames) }
        .unwrap()
        .flush();
    assert_eq!(table.backend().read_u64(page.start_address()).unwrap(), 1);
    table.unmap(page).unwrap().1.ignore(); // the bug
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, b, RW, &mut frames) }
        .unwrap()
        .ignore(); // and again
    assert_eq!(
        table.backend().read_u64(page.start_address()).unwrap(),
        1,
        "stale data"
    );
    // SAFETY: emulated memory.
    unsafe { table.update_flags(page, RW) }.unwrap().flush();
    assert_eq!(table.backend().read_u64(page.start_address()).unwrap(), 2);
}

#[test]
fn clean_up_trait_and_counts() {
    let mut table = table_at(1);
    let mut frames = TableFrames::new();
    for i in 0..4u64 {
        // SAFETY: emulated memory.
        unsafe {
            table.map_to(
                page4k(0x80_0000_0000 * 2 + i * 0x20_0000),
                frame(DATA_START + i * 0x1000),
                RW,
                &mut frames,
            )
        }
        .unwrap()
        .flush();
    }
    assert_eq!(frames.out.len(), 1 + 1 + 4);
    table.unmap(page4k(0x80_0000_0000 * 2)).unwrap().1.flush();
    let before = table.backend().counters().invlpg;
    // SAFETY: the tables belong to this hierarchy only.
    unsafe { CleanUp::clean_up(&mut table, &mut frames) };
    assert_eq!(frames.out.len(), 1 + 1 + 3);
    assert_eq!(
        table.backend().counters().invlpg - before,
        1,
        "one invlpg per freed table"
    );
    let _ = Translate::translate(&table, VirtAddr::new(0));
}

/// The frames `page_tables` lists are exactly the tables allocated (plus
/// the level-4 table), each under the parent entry that points to it and
/// covering the range its level implies.
#[test]
fn page_tables_lists_every_table_of_the_hierarchy() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    let data = frame(DATA_START);
    // SAFETY: emulated memory.
    unsafe {
        for addr in [
            0x1000,
            0x4000_0000,
            0x4000_0000 + (3 << 20),
            0xffff_8000_0000_0000,
        ] {
            table
                .map_to(page4k(addr), data, RW, &mut tables)
                .unwrap()
                .flush();
        }
        let huge = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(DATA_START));
        table
            .map_to(
                Page::containing_address(VirtAddr::new(0x8000_0000)),
                huge,
                RW,
                &mut tables,
            )
            .unwrap()
            .flush();
        let giant = PhysFrame::<Size1GiB>::containing_address(PhysAddr::new(DATA_START));
        table
            .map_to(
                Page::containing_address(VirtAddr::new(0x80_0000_0000)),
                giant,
                RW,
                &mut tables,
            )
            .unwrap()
            .flush();
    }
    let listed: Vec<_> = table.page_tables().collect();
    assert_eq!(listed[0].level, PageTableLevel::Four);
    assert_eq!(listed[0].frame, frame(LEVEL_4));
    let mut frames: Vec<u64> = listed[1..]
        .iter()
        .map(|t| t.frame.start_address().as_u64())
        .collect();
    frames.sort_unstable();
    assert_eq!(frames, tables.out.iter().copied().collect::<Vec<_>>());
    let m = table.backend();
    for t in &listed[1..] {
        let parent_level = t.level as u64 + 1;
        assert_eq!(t.size, 1 << (12 + 9 * (parent_level - 1)));
        assert_eq!(t.start.as_u64() % t.size, 0);
        // Walk by physical address to the parent entry covering `start`.
        let mut at = LEVEL_4;
        let mut level = 4;
        loop {
            let shift = 12 + 9 * (level - 1);
            let i = (t.start.as_u64() >> shift) & 511;
            let entry = m
                .memory()
                .read_entry(frame(at), PageTableIndex::new(i as u16));
            at = entry & 0x000f_ffff_ffff_f000;
            if level == parent_level {
                assert_eq!(at, t.frame.start_address().as_u64(), "{t:?}");
                break;
            }
            level -= 1;
        }
    }
    // Parents come before their children, in ascending virtual order (as
    // 48-bit offsets: a parent and its first child start at the same one).
    let low48 = |t: &framealloc::paging::PageTableFrame| t.start.as_u64() & ((1 << 48) - 1);
    assert!(listed.windows(2).all(|w| low48(&w[0]) <= low48(&w[1])));
    assert_eq!(listed.len(), 1 + 11);

    for addr in [
        0x1000,
        0x4000_0000,
        0x4000_0000 + (3 << 20),
        0xffff_8000_0000_0000,
    ] {
        table.unmap(page4k(addr)).unwrap().1.flush();
    }
    table
        .unmap(Page::<Size2MiB>::containing_address(VirtAddr::new(
            0x8000_0000,
        )))
        .unwrap()
        .1
        .flush();
    table
        .unmap(Page::<Size1GiB>::containing_address(VirtAddr::new(
            0x80_0000_0000,
        )))
        .unwrap()
        .1
        .flush();
    // SAFETY: the tables belong to this hierarchy only.
    unsafe { table.clean_up(&mut tables) };
    assert_eq!(table.page_tables().count(), 1);
}

/// The two-allocator forms take page tables from one allocator and data
/// frames from the other; when data runs out, nothing is mapped.
#[test]
fn map_allocated_with_takes_tables_and_data_from_their_own_allocators() {
    let mut table = table_at(510);
    let mut tables = TableFrames::new();
    // Data frames far from the table frames.
    let mut data = TableFrames::starting_at(DATA_START);
    data.budget = Some(601);
    let p = page4k(0x4000_0000);
    // SAFETY: emulated memory.
    let (f, flush) = unsafe { table.map_allocated_with(p, RW, &mut data, &mut tables) }.unwrap();
    flush.flush();
    assert_eq!((tables.allocated, data.allocated), (3, 1));
    assert!(data.out.contains(&f.start_address().as_u64()));
    let pages = Page::range(p + 1, p + 601);
    // SAFETY: emulated memory.
    unsafe { table.map_range_allocated_with(pages, RW, &mut data, &mut tables) }
        .unwrap()
        .flush();
    // 600 pages from 0x4000_1000 span two level-1 tables.
    assert_eq!((tables.allocated, data.allocated), (4, 601));
    assert_eq!(table.mappings().map(|m| m.size / 4096).sum::<u64>(), 601);
    // Data exhausted: an error, and no page or table is added.
    let far = page4k(0x80_0000_0000);
    // SAFETY: emulated memory.
    let error = unsafe { table.map_allocated_with(far, RW, &mut data, &mut tables) };
    same!(
        error.map(|(f, t)| {
            t.ignore();
            f
        }),
        Err::<(), _>(MapToError::<Size4KiB>::FrameAllocationFailed)
    );
    assert!(table.translate_addr(far.start_address()).is_none());
    assert_eq!(table.page_tables().count(), 5);
}
