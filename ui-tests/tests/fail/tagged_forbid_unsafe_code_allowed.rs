// `forbid` cannot be lifted: `#[allow(unsafe_code)]` on the type is itself
// an error, and the promise is still reported at the user's `unsafe`.
#![forbid(unsafe_code)]

use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

#[allow(unsafe_code)]
#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = MemoryRegionType, default = MemoryRegionType::PageTable))]
struct BootAllocator;

impl BootAllocator {
    fn allocate_frame(&mut self, _: MemoryRegionType) -> Option<PhysFrame> {
        None
    }
}

fn main() {
    let _ = BootAllocator.allocate_frame(MemoryRegionType::PageTable);
}
