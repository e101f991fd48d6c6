// `unsafe tagged(…)` is a promise the crate makes; a crate that forbids
// unsafe code is told so at the `unsafe` it wrote.
#![forbid(unsafe_code)]

use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

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
