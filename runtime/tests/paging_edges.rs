//! Regression tests for the edges a real kernel meets: flags the other
//! suites never generate (`GLOBAL` and address bits, `HUGE_PAGE` on 4 KiB
//! leaves), parent entries without WRITABLE under every writing operation,
//! constructors given tables that are not recursive, and a switch between
//! two address spaces. Each test is named after the rule it checks.

mod paging_support;

use framealloc::emu::{FaultCause, Machine};
use framealloc::paging::{InvalidRecursiveTable, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{
    FlagUpdateError, MapToError, MappedFrame, TranslateError, TranslateResult, UnmapError,
};
use framealloc::x86_64::structures::paging::page_table::PageTableLevel;
use framealloc::x86_64::structures::paging::{
    Page, PageSize, PageTableFlags as F, PageTableIndex, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
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
const INDEX: u16 = 510;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

fn page<S: PageSize>(addr: u64) -> Page<S> {
    Page::from_start_address(VirtAddr::new(addr)).unwrap()
}

fn index() -> PageTableIndex {
    PageTableIndex::new(INDEX)
}

/// The entries on `addr`'s path, level 4 first, read by physical address
/// (stops at the first entry that is not a present table pointer).
fn path(machine: &Machine, addr: u64) -> Vec<u64> {
    let addr = VirtAddr::new(addr);
    let indices = [
        addr.p4_index(),
        addr.p3_index(),
        addr.p2_index(),
        addr.p1_index(),
    ];
    let mut table = machine.cr3();
    let mut out = Vec::new();
    for (level, i) in (1..=4).rev().zip(indices) {
        let entry = machine.memory().read_entry(table, i);
        out.push(entry);
        if level == 1 || entry & 1 == 0 || entry & 0x80 != 0 {
            break;
        }
        table = frame(entry & ADDR_MASK);
    }
    out
}

/// Sets (by physical address) the flags of the level-`level` entry on
/// `addr`'s path, then flushes the whole TLB, global entries included: the
/// state "other code" leaves behind.
fn set_entry_flags(machine: &mut Machine, addr: u64, level: usize, flags: F) {
    let v = VirtAddr::new(addr);
    let indices = [v.p4_index(), v.p3_index(), v.p2_index(), v.p1_index()];
    let mut table = machine.cr3();
    for i in indices.iter().take(4 - level) {
        table = frame(machine.memory().read_entry(table, *i) & ADDR_MASK);
    }
    let i = indices[4 - level];
    let old = machine.memory().read_entry(table, i);
    machine
        .memory_mut()
        .write_entry(table, i, (old & ADDR_MASK) | flags.bits());
    machine.flush_global();
}

// ------------------------------------------------------------ defect 1

#[test]
fn global_parent_flags_do_not_leak_tables_into_another_address_space() {
    let mut a = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size4KiB>(0x4000_0000);
    let data = frame(DATA_START);
    let flags = RW | F::GLOBAL;
    // SAFETY: emulated memory.
    unsafe { a.map_to_with_table_flags(p, data, flags, flags, &mut tables) }
        .unwrap()
        .flush();
    a.backend_mut().write_u64(p.start_address(), 0xa).unwrap();
    assert_eq!(a.translate_page(p).ok(), Some(data));
    let entries = path(a.backend(), 0x4000_0000);
    assert_eq!(entries.len(), 4);
    for (level, entry) in (2..=4).rev().zip(&entries) {
        assert_eq!(
            entry & F::GLOBAL.bits(),
            0,
            "level-{level} entry {entry:#x}"
        );
    }
    assert_ne!(entries[3] & F::GLOBAL.bits(), 0, "the leaf keeps GLOBAL");
    let a_leaf = entries[3];

    // Address space B: a level-4 table recursive at the same index, with
    // an empty level-3 table of its own where A has its page, then a CR3
    // write (which keeps global translations).
    let mut machine = a.into_backend();
    let b = frame(0x2000);
    machine
        .memory_mut()
        .write_entry(b, index(), b.start_address().as_u64() | RW.bits());
    let p4 = p.start_address().p4_index();
    machine.memory_mut().write_entry(b, p4, 0x3000 | RW.bits());
    machine.set_cr3(b);
    let mut b_table = RecursivePageTable::new(machine, index()).unwrap();
    same!(
        b_table.translate_page(p),
        Err::<(), _>(TranslateError::PageNotMapped)
    );
    same!(
        b_table.unmap(p).map(|(f, t)| {
            t.ignore();
            f
        }),
        Err::<(), _>(UnmapError::PageNotMapped)
    );
    // A's level-1 entry is intact.
    b_table.backend_mut().set_cr3(frame(LEVEL_4));
    assert_eq!(path(b_table.backend(), 0x4000_0000)[3], a_leaf);
}

#[test]
fn global_is_stripped_from_parent_flags_of_every_map() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    // map_to derives parent flags from the leaf (GLOBAL is not among them).
    // SAFETY: emulated memory.
    unsafe {
        table
            .map_to_with_table_flags(
                page::<Size2MiB>(0x8000_0000),
                PhysFrame::containing_address(PhysAddr::new(DATA_START)),
                RW | F::GLOBAL,
                RW | F::GLOBAL | F::NO_EXECUTE,
                &mut tables,
            )
            .unwrap()
            .flush();
    }
    let entries = path(table.backend(), 0x8000_0000);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0] & F::GLOBAL.bits(), 0);
    assert_eq!(entries[1] & F::GLOBAL.bits(), 0);
    // Other requested bits do reach the parents.
    assert_ne!(entries[0] & F::NO_EXECUTE.bits(), 0);
}

// ------------------------------------------------------------ defect 2

#[test]
fn set_parent_flags_drops_global_translations() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size4KiB>(0x4000_0000);
    // SAFETY: emulated memory.
    unsafe { table.map_to(p, frame(DATA_START), RW | F::GLOBAL, &mut tables) }
        .unwrap()
        .flush();
    table.backend_mut().write_u64(p.start_address(), 1).unwrap();
    // SAFETY: only removes rights.
    unsafe {
        table
            .set_parent_flags(PageTableLevel::Two, p.start_address(), F::PRESENT)
            .unwrap();
    }
    let walk = table
        .backend()
        .walk(p.start_address(), framealloc::emu::Access::KERNEL_WRITE);
    assert_eq!(walk.unwrap_err().cause, FaultCause::ReadOnly);
    // Through the TLB too: the cached global translation is gone.
    let fault = table
        .backend_mut()
        .write_u64(p.start_address(), 2)
        .unwrap_err();
    assert_eq!(fault.cause, FaultCause::ReadOnly);
    assert_eq!(table.backend().read_u64(p.start_address()).unwrap(), 1);
}

#[test]
fn set_parent_flags_strips_global_and_huge_page() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size4KiB>(0x4000_0000);
    // SAFETY: emulated memory.
    unsafe { table.map_to(p, frame(DATA_START), RW, &mut tables) }
        .unwrap()
        .flush();
    // SAFETY: keeps the same rights.
    unsafe {
        table
            .set_parent_flags(
                PageTableLevel::Two,
                p.start_address(),
                RW | F::GLOBAL | F::HUGE_PAGE,
            )
            .unwrap();
    }
    let entries = path(table.backend(), 0x4000_0000);
    assert_eq!(
        entries.len(),
        4,
        "the level-2 entry still points to a table"
    );
    assert_eq!(entries[2] & (F::GLOBAL | F::HUGE_PAGE).bits(), 0);
    assert_eq!(table.translate_page(p).ok(), Some(frame(DATA_START)));
}

// ------------------------------------------------------------ defect 3

/// A table with one 4 KiB page mapped at `addr` (and its neighbour), whose
/// level-`level` parent entry was then made read-only by other code.
fn read_only_parent(addr: u64, level: usize) -> (RecursivePageTable<Machine>, TableFrames) {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let first = page::<Size4KiB>(addr);
    let frames = PhysFrame::range(frame(DATA_START), frame(DATA_START) + 2);
    // SAFETY: emulated memory.
    unsafe { table.map_range(Page::range(first, first + 2), frames, RW, &mut tables) }
        .unwrap()
        .flush();
    for i in 0..2 {
        table
            .backend_mut()
            .write_u64((first + i).start_address(), i)
            .unwrap();
    }
    set_entry_flags(table.backend_mut(), addr, level, F::PRESENT);
    // Cache read-only translations of the data and the tables below.
    table.backend().read_u64(first.start_address()).unwrap();
    assert!(table.translate_page(first).is_ok());
    (table, tables)
}

#[test]
fn unmap_under_a_read_only_parent_restores_writable_instead_of_faulting() {
    for level in 2..=4 {
        let (mut table, _) = read_only_parent(0x4000_0000, level);
        let p = page::<Size4KiB>(0x4000_0000);
        let (f, flush) = table.unmap(p).unwrap();
        flush.flush();
        assert_eq!(f, frame(DATA_START));
        assert!(table.backend().read_u64(p.start_address()).is_err());
        let entries = path(table.backend(), 0x4000_0000);
        assert_ne!(entries[4 - level] & F::WRITABLE.bits(), 0, "level {level}");
        // The neighbour takes writes through the TLB now.
        table
            .backend_mut()
            .write_u64((p + 1).start_address(), 9)
            .unwrap();
    }
}

#[test]
fn update_flags_under_a_read_only_parent_restores_writable_instead_of_faulting() {
    for level in 2..=4 {
        let (mut table, _) = read_only_parent(0x4000_0000, level);
        let p = page::<Size4KiB>(0x4000_0000);
        // SAFETY: emulated memory.
        unsafe { table.update_flags(p, RW | F::NO_EXECUTE) }
            .unwrap()
            .flush();
        table.backend_mut().write_u64(p.start_address(), 5).unwrap();
        assert_eq!(table.backend().read_u64(p.start_address()).unwrap(), 5);
    }
}

#[test]
fn range_operations_under_a_read_only_parent_restore_writable_instead_of_faulting() {
    for level in 2..=4 {
        let (mut table, _) = read_only_parent(0x4000_0000, level);
        let first = page::<Size4KiB>(0x4000_0000);
        let pages = Page::range(first, first + 2);
        // SAFETY: emulated memory.
        unsafe { table.update_flags_range(pages, RW) }
            .unwrap()
            .flush();
        table
            .backend_mut()
            .write_u64(first.start_address(), 3)
            .unwrap();
        let mut seen = 0;
        table.unmap_range(pages, |_| seen += 1).unwrap().flush();
        assert_eq!(seen, 2);
        assert!(table.backend().read_u64(first.start_address()).is_err());

        let (mut table, mut tables) = read_only_parent(0x4000_0000, level);
        let mut data = TableFrames::new();
        // SAFETY: the data frames are not used elsewhere; the tables were
        // allocated from `tables` only.
        let freed = unsafe { table.unmap_range_and_free(pages, &mut Forget(&mut data), true) };
        // The data frames are not from `tables`: the deallocator above
        // forgets them; the three tables go back to `tables`.
        let _ = &mut tables;
        assert_eq!(freed.unwrap(), 3);
    }
}

/// A deallocator that accepts any frame.
struct Forget<'a>(&'a mut TableFrames);

impl framealloc::FrameDeallocator<Size4KiB> for Forget<'_> {
    unsafe fn deallocate_frame(&mut self, _: PhysFrame) {
        self.0.deallocated += 1;
    }
}

#[test]
fn clean_up_under_a_read_only_parent_frees_without_faulting() {
    for level in 2..=4 {
        let (mut table, mut tables) = read_only_parent(0x4000_0000, level);
        let first = page::<Size4KiB>(0x4000_0000);
        for i in 0..2 {
            let (_, flush) = table.unmap(first + i).unwrap();
            flush.flush();
        }
        set_entry_flags(table.backend_mut(), 0x4000_0000, level, F::PRESENT);
        // SAFETY: the tables belong to this hierarchy only.
        let freed = unsafe { table.clean_up(&mut tables) };
        assert_eq!(freed, 3, "level {level}");
        assert!(tables.out.is_empty());
    }
}

#[test]
fn set_parent_flags_under_a_read_only_upper_parent_does_not_fault() {
    let (mut table, _) = read_only_parent(0x4000_0000, 3);
    let p = page::<Size4KiB>(0x4000_0000);
    // SAFETY: emulated memory; the rights stay as they were.
    unsafe {
        table
            .set_parent_flags(PageTableLevel::Two, p.start_address(), RW)
            .unwrap();
    }
    table.backend_mut().write_u64(p.start_address(), 4).unwrap();
}

// ------------------------------------------------------------ defect 4

#[test]
fn huge_page_flag_on_a_4kib_leaf_is_refused_and_writes_nothing() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size4KiB>(0x4000_0000);
    let bad = RW | F::HUGE_PAGE;
    let before = table.backend().memory().clone();
    // SAFETY: emulated memory.
    let result = unsafe { table.map_to(p, frame(DATA_START), bad, &mut tables) };
    same!(
        result.map(drop),
        Err::<(), _>(MapToError::<Size4KiB>::ParentEntryHugePage)
    );
    // SAFETY: emulated memory.
    let result = unsafe { table.map_allocated::<Size4KiB, _>(p, bad, &mut tables) };
    same!(
        result.map(|(_, t)| t.ignore()),
        Err::<(), _>(MapToError::<Size4KiB>::ParentEntryHugePage)
    );
    let pages = Page::range(p, p + 4);
    let frames = PhysFrame::range(frame(DATA_START), frame(DATA_START) + 4);
    // SAFETY: emulated memory.
    let result = unsafe { table.map_range(pages, frames, bad, &mut tables) };
    assert_eq!(result.unwrap_err().done(), 0);
    // SAFETY: emulated memory.
    let result = unsafe { table.map_range_allocated(pages, bad, &mut tables) };
    same!(
        result.map(drop).unwrap_err().into_error(),
        Some(MapToError::<Size4KiB>::ParentEntryHugePage)
    );
    // SAFETY: emulated memory.
    let result = unsafe {
        table.map_range_mixed(
            pages,
            frames,
            bad,
            framealloc::paging::MaxPageSize::Size1GiB,
            &mut tables,
        )
    };
    same!(
        result.map(drop).unwrap_err().into_error(),
        Some(MapToError::<Size4KiB>::ParentEntryHugePage)
    );
    assert!(
        table
            .backend()
            .memory()
            .differing_frames(&before)
            .is_empty()
    );
    assert_eq!(tables.allocated, 0);

    // On an existing 4 KiB mapping, update_flags refuses it too.
    // SAFETY: emulated memory.
    unsafe { table.map_to(p, frame(DATA_START), RW, &mut tables) }
        .unwrap()
        .flush();
    // SAFETY: emulated memory.
    let result = unsafe { table.update_flags(p, bad) };
    same!(
        result.map(drop),
        Err::<(), _>(FlagUpdateError::ParentEntryHugePage)
    );
    // SAFETY: emulated memory.
    let result = unsafe { table.update_flags_range(Page::range(p, p + 1), bad) };
    same!(
        result.map(drop).unwrap_err().into_error(),
        Some(FlagUpdateError::ParentEntryHugePage)
    );
    // The mapping is intact and can be removed, tables and all.
    let (f, flush) = table.unmap(p).unwrap();
    flush.flush();
    assert_eq!(f, frame(DATA_START));
    // SAFETY: the tables belong to this hierarchy only.
    assert_eq!(unsafe { table.clean_up(&mut tables) }, 3);
}

#[test]
fn huge_page_flag_on_a_huge_leaf_is_accepted() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size2MiB>(0x4000_0000);
    let f = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(DATA_START));
    // SAFETY: emulated memory.
    unsafe { table.map_to(p, f, RW | F::HUGE_PAGE, &mut tables) }
        .unwrap()
        .flush();
    assert_eq!(table.translate_page(p).ok(), Some(f));
}

// ------------------------------------------------------------ defect 5

#[test]
fn address_bits_in_leaf_flags_are_masked_out() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size4KiB>(0x4000_0000);
    let bad = F::from_bits_retain(RW.bits() | 0x1000 | (1 << 40));
    // SAFETY: emulated memory.
    unsafe { table.map_to(p, frame(DATA_START), bad, &mut tables) }
        .unwrap()
        .flush();
    assert_eq!(table.translate_page(p).ok(), Some(frame(DATA_START)));
    // SAFETY: emulated memory.
    unsafe { table.update_flags(p, bad) }.unwrap().flush();
    assert_eq!(table.translate_page(p).ok(), Some(frame(DATA_START)));
    let pages = Page::range(p + 1, p + 3);
    // SAFETY: emulated memory.
    unsafe {
        table.map_range(
            pages,
            PhysFrame::range(frame(DATA_START + 0x1000), frame(DATA_START + 0x3000)),
            bad,
            &mut tables,
        )
    }
    .unwrap()
    .flush();
    // SAFETY: emulated memory.
    unsafe { table.update_flags_range(pages, bad) }
        .unwrap()
        .flush();
    assert_eq!(
        table.translate_page(p + 2).ok(),
        Some(frame(DATA_START + 0x2000))
    );
    // SAFETY: emulated memory.
    let (f, flush) =
        unsafe { table.map_allocated::<Size4KiB, _>(p + 5, bad, &mut tables) }.unwrap();
    flush.flush();
    assert_eq!(table.translate_page(p + 5).ok(), Some(f));
    let big = page::<Size2MiB>(0x8000_0000);
    let big_frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(DATA_START));
    // SAFETY: emulated memory.
    unsafe { table.map_to(big, big_frame, bad, &mut tables) }
        .unwrap()
        .flush();
    assert_eq!(table.translate_page(big).ok(), Some(big_frame));
}

// ------------------------------------------------------------ defect 6

#[test]
fn user_accessible_recursive_entry_is_refused() {
    let mut machine = Machine::new(frame(LEVEL_4));
    let entry = LEVEL_4 | (RW | F::USER_ACCESSIBLE).bits();
    machine
        .memory_mut()
        .write_entry(frame(LEVEL_4), index(), entry);
    let error = RecursivePageTable::new(machine, index()).unwrap_err();
    assert_eq!(error, InvalidRecursiveTable::UserAccessible { entry });
    assert!(error.to_string().contains("user"));
}

// ------------------------------------------------------------ defect 7

#[test]
fn new_on_the_emulator_reports_not_recursive_instead_of_panicking() {
    // No recursive entry at all.
    let machine = Machine::new(frame(LEVEL_4));
    let error = RecursivePageTable::new(machine, index()).unwrap_err();
    assert_eq!(
        error,
        InvalidRecursiveTable::NotRecursive {
            entry: 0,
            level_4: frame(LEVEL_4)
        }
    );
    // A recursive entry, but at another index.
    let machine = Machine::with_recursive_table(index(), frame(LEVEL_4)).unwrap();
    let error = RecursivePageTable::new(machine.clone(), PageTableIndex::new(300)).unwrap_err();
    assert!(matches!(
        error,
        InvalidRecursiveTable::NotRecursive { entry: 0, .. }
    ));
    // An entry pointing to another frame which is not a table of this
    // hierarchy.
    let mut machine = Machine::new(frame(LEVEL_4));
    machine
        .memory_mut()
        .write_entry(frame(LEVEL_4), index(), 0x5000 | RW.bits());
    let error = RecursivePageTable::new(machine, index()).unwrap_err();
    assert!(matches!(
        error,
        InvalidRecursiveTable::NotRecursive { entry: 0x5003, .. }
    ));
}

// ------------------------------------------------------------ defect 8

#[test]
fn mmu_is_send_and_sync_under_its_constructor_contract() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<framealloc::paging::Mmu>();
    send_sync::<framealloc::paging::NoFlushMmu>();
    send_sync::<RecursivePageTable<framealloc::paging::Mmu>>();
}

// ------------------------------------------------------------ defect 9

#[test]
fn translate_reports_non_present_leaves_alike_at_every_size() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let small = page::<Size4KiB>(0x4000_0000);
    let mid = page::<Size2MiB>(0x8000_0000);
    let big = page::<Size1GiB>(0x80_0000_0000);
    // SAFETY: emulated memory.
    unsafe {
        table
            .map_to(small, frame(DATA_START), RW, &mut tables)
            .unwrap()
            .flush();
        table
            .map_to(
                mid,
                PhysFrame::containing_address(PhysAddr::new(DATA_START)),
                RW,
                &mut tables,
            )
            .unwrap()
            .flush();
        table
            .map_to(
                big,
                PhysFrame::containing_address(PhysAddr::new(DATA_START)),
                RW,
                &mut tables,
            )
            .unwrap()
            .flush();
        table.update_flags(small, F::WRITABLE).unwrap().flush();
        table.update_flags(mid, F::WRITABLE).unwrap().flush();
        table.update_flags(big, F::WRITABLE).unwrap().flush();
    }
    let sizes = [
        (small.start_address(), 4096u64),
        (mid.start_address(), 2 << 20),
        (big.start_address(), 1 << 30),
    ];
    for (addr, size) in sizes {
        match table.translate(addr + 0x123u64) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                let got = match frame {
                    MappedFrame::Size4KiB(f) => (f.start_address(), f.size()),
                    MappedFrame::Size2MiB(f) => (f.start_address(), f.size()),
                    MappedFrame::Size1GiB(f) => (f.start_address(), f.size()),
                };
                assert_eq!(got, (PhysAddr::new(DATA_START), size));
                assert_eq!(offset, 0x123);
                assert!(!flags.contains(F::PRESENT) && flags.contains(F::WRITABLE));
            }
            other => panic!("{size:#x}: {other:?}"),
        }
        // The MMU does not map it.
        assert!(table.backend().read_u64(addr).is_err());
    }
}

/// `set_parent_flags` at the level of a huge page's own entry would turn
/// the leaf into a pointer to a "table" in the data frame: refused.
#[test]
fn set_parent_flags_refuses_a_huge_leaf() {
    let mut table = table_at(INDEX);
    let mut tables = TableFrames::new();
    let p = page::<Size2MiB>(0x4000_0000);
    let f = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(DATA_START));
    // SAFETY: emulated memory.
    unsafe { table.map_to(p, f, RW, &mut tables) }
        .unwrap()
        .flush();
    let before = table.backend().memory().clone();
    // SAFETY: refused before any change.
    let result = unsafe { table.set_parent_flags(PageTableLevel::Two, p.start_address(), RW) };
    same!(result, Err::<(), _>(FlagUpdateError::ParentEntryHugePage));
    assert!(
        table
            .backend()
            .memory()
            .differing_frames(&before)
            .is_empty()
    );
    assert_eq!(table.translate_page(p).ok(), Some(f));
}
