//! `#[derive(FrameAllocator)]` with a field marked
//! `#[frame_allocator(shared)]`: frames come from the shared allocator in
//! the field, through `SharedView::new(&wrapper)` and through `&wrapper`
//! directly, from two threads at once; `x86_64`'s `map_to` takes both; the
//! batch methods reach the field's own batch code.

use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use framealloc::alloc::{
    AtomicBitmapAllocator, FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, RegionKind,
    normalize,
};
use framealloc::x86_64::structures::paging::mapper::TranslateResult;
use framealloc::x86_64::structures::paging::{Mapper, Page, PageTableFlags, Translate};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{
    FrameAllocator, FrameDeallocator, PhysFrame, SharedFrameAllocator, SharedFrameDeallocator,
    SharedView, Size4KiB,
};
use tests::Arena;

/// What a kernel shares between its CPUs: the allocator and other state.
#[derive(FrameAllocator)]
struct Kernel<'a> {
    #[frame_allocator(shared)]
    frames: AtomicBitmapAllocator<'a>,
    cpus: usize,
}

/// A shared allocator by reference, or the kernel's.
#[derive(FrameAllocator)]
enum Source<'a, 'k> {
    Direct(#[frame_allocator(shared)] &'a AtomicBitmapAllocator<'a>),
    Kernel {
        #[frame_allocator(shared)]
        kernel: &'k Kernel<'a>,
        _label: &'static str,
    },
}

/// A generic wrapper around any shared allocator.
#[derive(FrameAllocator)]
struct Counted<A> {
    #[frame_allocator(shared)]
    inner: A,
}

fn bitmap_storage(frames: u64, regions: &mut [MemoryRegion; 4]) -> (MemoryMap<'_>, Vec<AtomicU64>) {
    let firmware = [FirmwareRegion::new(
        0x1000,
        frames * 4096,
        RegionKind::Usable,
    )];
    let (normalized, _) = normalize(&firmware, regions, NormalizeOptions::new()).unwrap();
    let map = MemoryMap::from_regions(normalized.regions()).unwrap();
    let storage = (0..AtomicBitmapAllocator::words_needed(&map))
        .map(|_| AtomicU64::new(0))
        .collect();
    (map, storage)
}

#[test]
fn two_threads_take_every_frame_once_through_the_derived_impls() {
    const FRAMES: u64 = 4000;
    let mut regions = [MemoryRegion::default(); 4];
    let (map, storage) = bitmap_storage(FRAMES, &mut regions);
    let kernel = Kernel {
        frames: AtomicBitmapAllocator::new(&storage),
        cpus: 2,
    };
    // SAFETY: the frames are never touched and managed by nothing else.
    unsafe { kernel.frames.load_map(&map) }.unwrap();
    let start = Barrier::new(kernel.cpus);
    let taken: Vec<Vec<PhysFrame>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..kernel.cpus)
            .map(|cpu| {
                let (kernel, start) = (&kernel, &start);
                scope.spawn(move || {
                    start.wait();
                    let mut mine = Vec::new();
                    let mut view = SharedView::new(kernel);
                    let mut by_reference = kernel;
                    loop {
                        // Alternate the two ways in; each CPU also batches.
                        let frame = match mine.len() % 3 {
                            0 => view.allocate_frame(),
                            1 => FrameAllocator::allocate_frame(&mut by_reference),
                            _ => {
                                let mut out = [MaybeUninit::uninit(); 5];
                                let mut cursor = cpu * 1000;
                                let n = kernel.allocate_frames_near(&mut cursor, &mut out);
                                // SAFETY: the first `n` slots are initialised.
                                mine.extend(out[..n].iter().map(|f| unsafe { f.assume_init() }));
                                if n == 0 { None } else { continue }
                            }
                        };
                        match frame {
                            Some(frame) => mine.push(frame),
                            None => break mine,
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<PhysFrame> = taken.iter().flatten().copied().collect();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a frame was handed out twice");
    assert_eq!(all.len() as u64, FRAMES, "frames were lost");
    assert_eq!(kernel.frames.free_frames(), 0);

    // Back through the derived deallocators: the enum's batch, the
    // reference's single frees.
    let source = Source::Kernel {
        kernel: &kernel,
        _label: "kernel",
    };
    // SAFETY: every frame was allocated above and is unused.
    unsafe { SharedFrameDeallocator::deallocate_frames(&source, &taken[0]) };
    for &frame in &taken[1] {
        // SAFETY: as above.
        unsafe { FrameDeallocator::deallocate_frame(&mut &kernel, frame) };
    }
    assert_eq!(kernel.frames.rejected_deallocations(), 0);
    assert_eq!(kernel.frames.free_frames(), FRAMES);
    // A second free of one of them is refused by the bitmap in the field.
    // SAFETY: a double free, which the atomic bitmap detects and refuses.
    unsafe { SharedFrameDeallocator::deallocate_frame(&Source::Direct(&kernel.frames), all[0]) };
    assert_eq!(kernel.frames.rejected_deallocations(), 1);
}

const FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

fn page(i: u64) -> Page<Size4KiB> {
    Page::containing_address(VirtAddr::new(0x4000_0000 * (i % 5) + 0x20_1000 * i))
}

#[test]
fn map_to_takes_a_view_and_a_reference_of_the_derived_type() {
    const ARENA: u64 = 96;
    let mut arena = Arena::new(ARENA as usize);
    let mut regions = [MemoryRegion::default(); 4];
    let (map, storage) = bitmap_storage(ARENA - 1, &mut regions);
    let kernel = Kernel {
        frames: AtomicBitmapAllocator::new(&storage),
        cpus: 1,
    };
    // SAFETY: arena frames 1.. are unused and managed by nothing else.
    unsafe { kernel.frames.load_map(&map) }.unwrap();
    {
        let mut mapper = arena.mapper();
        for i in 0..8 {
            let data = PhysFrame::containing_address(PhysAddr::new(0x1_0000_0000 + i * 4096));
            let flush = if i % 2 == 0 {
                // SAFETY: data frames are never dereferenced; tables come
                // from the allocator, which hands out unused arena frames.
                unsafe { mapper.map_to(page(i), data, FLAGS, &mut SharedView::new(&kernel)) }
            } else {
                // SAFETY: as above.
                unsafe { mapper.map_to(page(i), data, FLAGS, &mut &kernel) }
            };
            flush.expect("map_to").ignore();
        }
        for i in 0..8 {
            assert!(matches!(
                mapper.translate(page(i).start_address()),
                TranslateResult::Mapped { frame, .. }
                    if frame.start_address() == PhysAddr::new(0x1_0000_0000 + i * 4096)
            ));
        }
    }
    let tables = arena.reachable_tables();
    assert_eq!(tables.iter().collect::<HashSet<_>>().len(), tables.len());
    assert_eq!(
        tables.len() as u64 - 1,
        (ARENA - 1) - kernel.frames.free_frames()
    );
}

/// Counts which methods the derived impls call.
#[derive(Default)]
struct Probe {
    singles: AtomicUsize,
    batches: AtomicUsize,
    near: AtomicUsize,
    freed: AtomicUsize,
    freed_batches: AtomicUsize,
}

// SAFETY: hands out no frame at all.
unsafe impl SharedFrameAllocator<Size4KiB> for Probe {
    fn allocate_frame(&self) -> Option<PhysFrame> {
        self.singles.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn allocate_frames(&self, _: &mut [MaybeUninit<PhysFrame>]) -> usize {
        self.batches.fetch_add(1, Ordering::Relaxed);
        0
    }

    fn allocate_frames_near(&self, cursor: &mut usize, _: &mut [MaybeUninit<PhysFrame>]) -> usize {
        *cursor += 7;
        self.near.fetch_add(1, Ordering::Relaxed);
        0
    }
}

impl SharedFrameDeallocator<Size4KiB> for Probe {
    unsafe fn deallocate_frame(&self, _: PhysFrame) {
        self.freed.fetch_add(1, Ordering::Relaxed);
    }

    unsafe fn deallocate_frames(&self, _: &[PhysFrame]) {
        self.freed_batches.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_method_reaches_the_field_s_own() {
    let probe = Probe::default();
    let wrapped = Counted { inner: &probe };
    let twice = Counted { inner: &wrapped };
    let mut out = [MaybeUninit::uninit(); 4];
    let mut cursor = 0;
    assert_eq!(twice.allocate_frame(), None);
    assert_eq!(twice.allocate_frames(&mut out), 0);
    assert_eq!(twice.allocate_frames_near(&mut cursor, &mut out), 0);
    let frame = PhysFrame::containing_address(PhysAddr::new(0x1000));
    // SAFETY: the probe does nothing with frames.
    unsafe {
        twice.deallocate_frame(frame);
        twice.deallocate_frames(&[frame, frame]);
    }
    assert_eq!(cursor, 7, "the cursor is the caller's, passed through");
    let counts = [
        &probe.singles,
        &probe.batches,
        &probe.near,
        &probe.freed,
        &probe.freed_batches,
    ]
    .map(|count| count.load(Ordering::Relaxed));
    // One call each: no batch fell back to the per-frame defaults.
    assert_eq!(counts, [1, 1, 1, 1, 1]);
}
