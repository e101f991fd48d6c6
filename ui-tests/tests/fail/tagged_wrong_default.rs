use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = MemoryRegionType, default = 0))]
struct BootAllocator;

impl BootAllocator {
    fn allocate_frame(&mut self, _: MemoryRegionType) -> Option<PhysFrame> {
        None
    }
}

fn main() {
    let _ = MemoryRegionType::PageTable;
}
