//! The adapters used the way a kernel uses them: handed to `x86_64`'s own
//! `OffsetPageTable` (over host memory), with every mapping checked by
//! `translate`.

use std::collections::HashSet;

use framealloc::x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use framealloc::x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTableFlags, Size2MiB, Translate,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{
    FrameAllocator, FrameDeallocator, FramePool, NoAllocator, PhysFrame, PoolFull, Size4KiB,
    Tagged, TaggedFrameAllocator, from_fn, from_fns, from_state_fns,
};
use tests::Arena;

const FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

/// Data frames far above the arena: never dereferenced by the mapper.
fn data_frame(i: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new(0x1_0000_0000 + i * 4096))
}

fn page(i: u64) -> Page<Size4KiB> {
    // Spread pages over different level-1..3 tables so each map needs tables.
    Page::containing_address(VirtAddr::new(
        0x4000_0000 * (i % 7) + 0x20_0000 * i + 0x1000 * i,
    ))
}

/// Maps `count` pages through `alloc` and checks each with `translate`.
fn map_and_check<A: FrameAllocator<Size4KiB>>(
    mapper: &mut OffsetPageTable<'_>,
    alloc: &mut A,
    count: u64,
) {
    for i in 0..count {
        // SAFETY: the data frames are never dereferenced; the mapper only
        // writes page tables, which come from the arena.
        unsafe { mapper.map_to(page(i), data_frame(i), FLAGS, alloc) }
            .expect("map_to")
            .ignore();
    }
    for i in 0..count {
        match mapper.translate(page(i).start_address() + 0x123u64) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                assert_eq!(frame.start_address(), data_frame(i).start_address());
                assert_eq!(offset, 0x123);
                assert!(flags.contains(FLAGS));
            }
            other => panic!("page {i} not mapped: {other:?}"),
        }
    }
}

#[test]
fn closure_adapter_maps_pages() {
    let mut arena = Arena::new(64);
    let mut frames = arena.table_frames();
    let mut given = Vec::new();
    let mut mapper = arena.mapper();
    // SAFETY: `table_frames` yields each arena frame once; none is in use.
    let mut alloc = unsafe {
        from_fn(|| {
            let frame = frames.next();
            given.extend(frame);
            frame
        })
    };
    map_and_check(&mut mapper, &mut alloc, 10);
    // Three tables per page (level 3, 2, 1) at most; level-3 tables are shared.
    assert!(given.len() >= 10 && given.len() <= 30, "{}", given.len());
    let unique: HashSet<_> = given.iter().collect();
    assert_eq!(unique.len(), given.len(), "a frame was handed out twice");
}

#[test]
fn closure_adapter_with_deallocation_round_trips() {
    let arena = Arena::new(8);
    let mut free: Vec<_> = arena.table_frames().collect();
    let total = free.len();
    let returned = std::cell::RefCell::new(Vec::new());
    {
        // SAFETY: `free` holds distinct unused frames; returned ones are kept.
        let mut alloc = unsafe { from_fns(|| free.pop(), |f| returned.borrow_mut().push(f)) };
        let a = alloc.allocate_frame().unwrap();
        let b = alloc.allocate_frame().unwrap();
        assert_ne!(a, b);
        // SAFETY: neither frame was used.
        unsafe {
            alloc.deallocate_frame(a);
            alloc.deallocate_frame(b);
        }
    }
    assert_eq!(returned.borrow().len(), 2);
    assert_eq!(free.len() + 2, total);
}

#[test]
fn state_adapter_shares_a_free_list_between_both_closures() {
    let mut arena = Arena::new(32);
    let free: Vec<_> = arena.table_frames().collect();
    let total = free.len();
    // SAFETY: `free` holds distinct unused arena frames; freed ones go back.
    let mut alloc = unsafe { from_state_fns(free, Vec::pop, Vec::push) };
    let mut mapper = arena.mapper();
    map_and_check(&mut mapper, &mut alloc, 4);
    let used = total - alloc.state().len();
    assert!(used >= 4);
    let spare = alloc.allocate_frame().unwrap();
    // SAFETY: `spare` was never used.
    unsafe { alloc.deallocate_frame(spare) };
    assert_eq!(alloc.into_state().len(), total - used);
}

#[test]
fn closure_adapter_infers_huge_page_size() {
    let mut next = 0u64;
    // SAFETY: `next` only grows.
    let mut alloc = unsafe {
        from_fn(|| {
            next += 1;
            PhysFrame::<Size2MiB>::from_start_address(PhysAddr::new(next << 21)).ok()
        })
    };
    let frame = alloc.allocate_frame().unwrap();
    assert_eq!(frame.size(), 2 * 1024 * 1024);
}

#[test]
fn closure_adapter_running_dry_fails_map_to() {
    let mut arena = Arena::new(4);
    let mut mapper = arena.mapper();
    // SAFETY: yields nothing.
    let mut alloc = unsafe { from_fn(|| None::<PhysFrame<Size4KiB>>) };
    // SAFETY: see `map_and_check`.
    let result = unsafe { mapper.map_to(page(1), data_frame(1), FLAGS, &mut alloc) };
    assert!(matches!(result, Err(MapToError::FrameAllocationFailed)));
}

/// A bootloader-style allocator: allocation takes a region type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    PageTable,
    Kernel,
}

struct BootAllocator {
    free: Vec<PhysFrame<Size4KiB>>,
    log: Vec<(PhysFrame<Size4KiB>, Region)>,
}

// SAFETY: frames are popped from a list of distinct unused frames.
unsafe impl TaggedFrameAllocator for BootAllocator {
    type Tag = Region;
    fn allocate_tagged(&mut self, region: Region) -> Option<PhysFrame<Size4KiB>> {
        let frame = self.free.pop()?;
        self.log.push((frame, region));
        Some(frame)
    }
}

#[test]
fn tagged_view_passes_region_type_to_map_to() {
    let mut arena = Arena::new(32);
    let mut boot = BootAllocator {
        free: arena.table_frames().collect(),
        log: Vec::new(),
    };
    let mut mapper = arena.mapper();
    map_and_check(&mut mapper, &mut boot.tagged(Region::PageTable), 3);
    assert!(!boot.log.is_empty());
    assert!(boot.log.iter().all(|&(_, r)| r == Region::PageTable));
    let kernel = boot.tagged(Region::Kernel).allocate_frame().unwrap();
    assert_eq!(boot.log.last(), Some(&(kernel, Region::Kernel)));
}

#[test]
fn tagged_view_can_change_tag() {
    let arena = Arena::new(8);
    let mut boot = BootAllocator {
        free: arena.table_frames().collect(),
        log: Vec::new(),
    };
    let mut view = Tagged::new(&mut boot, Region::Kernel);
    assert_eq!(*view.tag(), Region::Kernel);
    view.allocate_frame().unwrap();
    view.set_tag(Region::PageTable);
    view.allocate_frame().unwrap();
    let regions: Vec<_> = boot.log.iter().map(|&(_, r)| r).collect();
    assert_eq!(regions, [Region::Kernel, Region::PageTable]);
}

#[test]
fn no_allocator_yields_frame_allocation_failed() {
    let mut arena = Arena::new(4);
    let mut mapper = arena.mapper();
    // SAFETY: see `map_and_check`.
    let result = unsafe { mapper.map_to(page(2), data_frame(2), FLAGS, &mut NoAllocator) };
    assert!(matches!(result, Err(MapToError::FrameAllocationFailed)));
    assert!(mapper.translate_addr(page(2).start_address()).is_none());
}

#[test]
fn no_allocator_suffices_when_tables_exist() {
    let mut arena = Arena::new(16);
    let mut frames = arena.table_frames();
    let mut mapper = arena.mapper();
    // SAFETY: each arena frame once.
    let mut alloc = unsafe { from_fn(|| frames.next()) };
    let first = Page::<Size4KiB>::containing_address(VirtAddr::new(0x7000_0000));
    // SAFETY: see `map_and_check`.
    unsafe { mapper.map_to(first, data_frame(0), FLAGS, &mut alloc) }
        .unwrap()
        .ignore();
    // The neighbouring page shares all its tables: no allocation needed.
    // SAFETY: as above.
    unsafe { mapper.map_to(first + 1, data_frame(1), FLAGS, &mut NoAllocator) }
        .unwrap()
        .ignore();
    assert_eq!(
        mapper.translate_addr((first + 1).start_address()),
        Some(data_frame(1).start_address())
    );
}

#[test]
fn pool_serves_map_to_and_runs_dry_cleanly() {
    let mut arena = Arena::new(16);
    let mut pool = FramePool::<Size4KiB, 3>::new();
    let mut source = arena.table_frames();
    // SAFETY: each arena frame once.
    let mut alloc = unsafe { from_fn(|| source.next()) };
    assert_eq!(pool.fill_from(&mut alloc), 3);
    assert!(pool.is_full());
    let mut mapper = arena.mapper();
    // One page needs exactly three new tables (levels 3, 2, 1).
    map_and_check(&mut mapper, &mut pool, 1);
    assert!(pool.is_empty());
    // A page in another level-4 slot needs tables the pool no longer has.
    let far = Page::<Size4KiB>::containing_address(VirtAddr::new(0x80_0000_0000));
    // SAFETY: see `map_and_check`.
    let result = unsafe { mapper.map_to(far, data_frame(9), FLAGS, &mut pool) };
    assert!(matches!(result, Err(MapToError::FrameAllocationFailed)));
}

#[test]
fn pool_full_returns_frame_instead_of_losing_it() {
    let mut pool = FramePool::<Size4KiB, 2>::new();
    // SAFETY: distinct, never-used frames.
    unsafe {
        pool.try_push(data_frame(0)).unwrap();
        pool.try_push(data_frame(1)).unwrap();
        assert_eq!(
            pool.try_deallocate(data_frame(2)),
            Err(PoolFull(data_frame(2)))
        );
    }
    assert_eq!(pool.frames(), [data_frame(0), data_frame(1)]);
}

#[test]
fn pool_deallocate_on_full_pool_counts_rejection_and_keeps_contents() {
    let mut pool = FramePool::<Size4KiB, 1>::new();
    // SAFETY: a never-used frame.
    unsafe { pool.try_push(data_frame(0)).unwrap() };
    // SAFETY: a never-used frame.
    unsafe { pool.deallocate_frame(data_frame(1)) };
    assert_eq!(pool.rejected(), 1);
    assert_eq!(pool.frames(), [data_frame(0)]);
}

#[test]
fn pool_refuses_a_frame_it_already_holds() {
    let mut pool = FramePool::<Size4KiB, 4>::new();
    // SAFETY: a never-used frame, given back twice by mistake.
    unsafe {
        pool.deallocate_frame(data_frame(3));
        pool.deallocate_frame(data_frame(3));
    }
    assert_eq!(pool.frames(), [data_frame(3)]);
    assert_eq!(pool.rejected(), 1);
    assert_eq!(pool.allocate_frame(), Some(data_frame(3)));
    assert_eq!(
        pool.allocate_frame(),
        None,
        "the frame must not come out twice"
    );
}

/// A deallocator that records what it receives.
#[derive(Default)]
struct Collect(Vec<PhysFrame<Size4KiB>>);

impl FrameDeallocator<Size4KiB> for Collect {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        self.0.push(frame);
    }
}

#[test]
fn pool_overflow_goes_to_fallback() {
    let mut pool = FramePool::<Size4KiB, 1>::new();
    let mut spill = Collect::default();
    {
        let mut view = pool.with_overflow(&mut spill);
        // SAFETY: never-used frames.
        unsafe {
            view.deallocate_frame(data_frame(0));
            view.deallocate_frame(data_frame(1));
            view.deallocate_frame(data_frame(2));
        }
        // A double free of a pooled frame is refused, not spilled.
        // SAFETY: the frame is unused (and already pooled, which is the point).
        unsafe { view.deallocate_frame(data_frame(0)) };
        assert_eq!(view.allocate_frame(), Some(data_frame(0)));
        assert_eq!(view.allocate_frame(), None);
    }
    assert_eq!(spill.0, [data_frame(1), data_frame(2)]);
    assert_eq!(pool.rejected(), 1);
}

#[test]
fn pool_is_lifo_and_drains() {
    // SAFETY: distinct, never-used frames.
    let mut pool = unsafe { FramePool::from_frames([data_frame(0), data_frame(1), data_frame(2)]) };
    assert_eq!(pool.allocate_frame(), Some(data_frame(2)));
    let mut sink = Collect::default();
    assert_eq!(pool.drain_into(&mut sink), 2);
    assert_eq!(sink.0, [data_frame(1), data_frame(0)]);
    assert!(pool.is_empty());
    assert_eq!(pool.allocate_frame(), None);
}

#[test]
fn pool_is_usable_in_a_static() {
    static POOL: std::sync::Mutex<FramePool<Size4KiB, 4>> = std::sync::Mutex::new(FramePool::new());
    let mut pool = POOL.lock().unwrap();
    assert_eq!(pool.capacity(), 4);
    // SAFETY: a never-used frame.
    unsafe { pool.try_push(data_frame(7)).unwrap() };
    assert_eq!(pool.allocate_frame(), Some(data_frame(7)));
}

#[test]
fn every_adapter_hands_out_unique_frames_through_one_mapper() {
    let mut arena = Arena::new(128);
    let all: Vec<_> = arena.table_frames().collect();
    let (pool_part, rest) = all.split_at(8);
    let (tag_part, closure_part) = rest.split_at(40);
    let mut pool = FramePool::<Size4KiB, 8>::new();
    for &f in pool_part {
        // SAFETY: each arena frame goes to exactly one adapter.
        unsafe { pool.try_push(f).unwrap() };
    }
    let mut boot = BootAllocator {
        free: tag_part.to_vec(),
        log: Vec::new(),
    };
    let mut closure_frames = closure_part.iter().copied();
    // SAFETY: each arena frame goes to exactly one adapter.
    let mut closure = unsafe { from_fn(|| closure_frames.next()) };
    let mut mapper = arena.mapper();
    for i in 0..12 {
        let p = page(i);
        // SAFETY: see `map_and_check`.
        let flush = unsafe {
            match i % 3 {
                0 => mapper.map_to(p, data_frame(i), FLAGS, &mut pool),
                1 => mapper.map_to(p, data_frame(i), FLAGS, &mut boot.tagged(Region::PageTable)),
                _ => mapper.map_to(p, data_frame(i), FLAGS, &mut closure),
            }
        };
        flush.unwrap().ignore();
        assert_eq!(
            mapper.translate_addr(p.start_address()),
            Some(data_frame(i).start_address())
        );
    }
    // Every frame taken from the three adapters is now exactly one page table.
    let taken = (8 - pool.len()) + boot.log.len() + (closure_part.len() - closure_frames.len());
    let tables = arena.reachable_tables();
    let unique: HashSet<_> = tables.iter().collect();
    assert_eq!(
        unique.len(),
        tables.len(),
        "a table frame is reachable twice"
    );
    assert_eq!(
        tables.len(),
        taken + 1,
        "level 4 plus one table per frame taken"
    );
}
