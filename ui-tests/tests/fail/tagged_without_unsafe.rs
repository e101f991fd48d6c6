use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

#[derive(FrameAllocator)]
#[frame_allocator(tagged(method = allocate_frame, tag = MemoryRegionType))]
struct BootAllocator;

impl BootAllocator {
    fn allocate_frame(&mut self, _: MemoryRegionType) -> Option<PhysFrame> {
        None
    }
}

fn main() {
    let _ = BootAllocator.allocate_frame(MemoryRegionType::PageTable);
}
