//! The shared allocators used the way a kernel uses them: a
//! `SharedView` of an `AtomicBitmapAllocator` and a per-CPU cache handle
//! handed to `x86_64`'s own `OffsetPageTable::map_to` (over host memory),
//! every mapping checked by `translate`, every table frame accounted for.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use framealloc::alloc::{
    AtomicBitmapAllocator, FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, PerCpuCaches,
    RegionKind, normalize,
};
use framealloc::x86_64::structures::paging::mapper::TranslateResult;
use framealloc::x86_64::structures::paging::{Mapper, Page, PageTableFlags, Translate};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{FrameAllocator, PhysFrame, Size4KiB};
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

fn map(
    mapper: &mut impl Mapper<Size4KiB>,
    frames: &mut impl FrameAllocator<Size4KiB>,
    pages: std::ops::Range<u64>,
) {
    for i in pages {
        // SAFETY: the data frames are never dereferenced; the page tables
        // come from the allocator, which manages only unused arena frames.
        unsafe { mapper.map_to(page(i), data_frame(i), FLAGS, frames) }
            .expect("map_to")
            .ignore();
    }
}

#[test]
fn shared_view_and_cpu_cache_feed_offset_page_table() {
    const ARENA: u64 = 128;
    let mut arena = Arena::new(ARENA as usize);
    // The arena's frames 1.. (frame 0 holds the level-4 table) are the map.
    let firmware = [FirmwareRegion::new(
        0x1000,
        (ARENA - 1) * 4096,
        RegionKind::Usable,
    )];
    let mut regions = [MemoryRegion::default(); 4];
    let (normalized, _) = normalize(&firmware, &mut regions, NormalizeOptions::new()).unwrap();
    let map_ = MemoryMap::from_regions(normalized.regions()).unwrap();
    let storage: Vec<AtomicU64> = (0..AtomicBitmapAllocator::words_needed(&map_))
        .map(|_| AtomicU64::new(0))
        .collect();
    let frames = AtomicBitmapAllocator::new(&storage);
    // SAFETY: frames 1.. of the arena are unused and managed by nothing
    // else; the storage is this allocator's alone.
    unsafe { frames.load_map(&map_) }.unwrap();
    let caches: PerCpuCaches<&AtomicBitmapAllocator<'_>, Size4KiB, 2, 8> =
        PerCpuCaches::new(&frames);

    let in_cache = {
        let mut mapper = arena.mapper();
        map(&mut mapper, &mut frames.view(), 0..6);
        let mut cache = caches.claim(1).unwrap();
        map(&mut mapper, &mut cache, 6..12);
        for i in 0..12 {
            match mapper.translate(page(i).start_address() + 0x123u64) {
                TranslateResult::Mapped { frame, offset, .. } => {
                    assert_eq!(frame.start_address(), data_frame(i).start_address());
                    assert_eq!(offset, 0x123);
                }
                other => panic!("page {i} not mapped: {other:?}"),
            }
        }
        // Frames the cache still holds are neither tables nor free.
        cache.len() as u64
    };
    assert_eq!(frames.rejected_deallocations(), 0);
    let tables = arena.reachable_tables();
    let unique: HashSet<_> = tables.iter().collect();
    assert_eq!(
        unique.len(),
        tables.len(),
        "a table frame was handed out twice"
    );
    assert!(tables.iter().all(|&t| arena.contains(t)));
    // Every table but the level-4 one came from the allocator.
    assert_eq!(
        tables.len() as u64 - 1,
        (ARENA - 1) - frames.free_frames() - in_cache
    );
}
