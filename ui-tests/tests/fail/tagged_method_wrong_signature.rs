use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy)]
enum MemoryRegionType {
    PageTable,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = MemoryRegionType))]
struct NoTagArgument;

impl NoTagArgument {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        None
    }
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = MemoryRegionType))]
struct WrongTagType;

impl WrongTagType {
    fn allocate(&mut self, _: u32) -> Option<PhysFrame> {
        None
    }
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = MemoryRegionType))]
struct SharedReceiver;

impl SharedReceiver {
    fn allocate(&self, _: MemoryRegionType) -> Option<PhysFrame> {
        None
    }
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = MemoryRegionType))]
struct ReturnsAddress;

impl ReturnsAddress {
    fn allocate(&mut self, _: MemoryRegionType) -> Option<u64> {
        None
    }
}

fn main() {
    let _ = MemoryRegionType::PageTable;
}
