// Under `deny(unsafe_code)` too, and without a default (so the only impl is
// `TaggedFrameAllocator`), the promise is reported at the user's `unsafe`.
#![deny(unsafe_code)]

use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = MemoryRegionType, sizes(Size4KiB)))]
struct BootAllocator;

impl BootAllocator {
    fn allocate_frame(&mut self, _: MemoryRegionType) -> Option<PhysFrame> {
        None
    }
}

fn main() {
    let _ = BootAllocator.allocate_frame(MemoryRegionType::PageTable);
}
