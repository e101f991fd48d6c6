// The tagged form without `default = …` is a `TaggedFrameAllocator` only:
// passing it where a `FrameAllocator` is needed is E0277. The derive's docs
// quote this error and its two fixes: add `default = …`, or pass
// `&mut boot.tagged(tag)`. An inherent `allocate_frame(tag)` also hides the
// trait method: `boot.allocate_frame()` is E0061; the trait's is
// `FrameAllocator::allocate_frame(&mut boot)`.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, Size4KiB};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = MemoryRegionType))]
struct BootFrameAllocator {
    next: u64,
}

impl BootFrameAllocator {
    fn allocate_frame(&mut self, _: MemoryRegionType) -> Option<PhysFrame> {
        self.next += 4096;
        Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
    }
}

fn map_to<A: FrameAllocator<Size4KiB>>(allocator: &mut A) -> Option<PhysFrame> {
    allocator.allocate_frame()
}

fn main() {
    let mut boot = BootFrameAllocator { next: 0 };
    let _ = map_to(&mut boot);
    let _ = boot.allocate_frame();
    let _ = boot.allocate_frame(MemoryRegionType::PageTable);
}
