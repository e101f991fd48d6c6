// Under `#![deny(unsafe_code)]`, `#[allow(unsafe_code)]` on a tagged type
// accepts the promise of its `unsafe tagged(…)`: the derive carries the
// allowance to the impls, which rustc places beside the type.
#![deny(unsafe_code)]

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, TaggedFrameAllocator};

#[derive(Clone, Copy, Debug, PartialEq)]
enum MemoryRegionType {
    PageTable,
    Kernel,
}

#[allow(unsafe_code)]
#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(
    method = allocate_frame,
    tag = MemoryRegionType,
    default = MemoryRegionType::PageTable,
))]
struct BootAllocator {
    next: u64,
    log: Vec<MemoryRegionType>,
}

impl BootAllocator {
    fn allocate_frame(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame> {
        self.log.push(region_type);
        self.next += 4096;
        Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
    }
}

fn main() {
    let mut boot = BootAllocator { next: 0, log: Vec::new() };
    assert_eq!(FrameAllocator::allocate_frame(&mut boot).unwrap().start_address().as_u64(), 0x1000);
    assert_eq!(boot.allocate_tagged(MemoryRegionType::Kernel).unwrap().start_address().as_u64(), 0x2000);
    assert_eq!(boot.log, [MemoryRegionType::PageTable, MemoryRegionType::Kernel]);
}
