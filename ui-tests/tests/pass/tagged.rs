use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, TaggedFrameAllocator};

#[derive(Clone, Copy, Debug, PartialEq)]
enum MemoryRegionType {
    PageTable,
    Kernel,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(
    method = allocate_frame,
    tag = MemoryRegionType,
    default = MemoryRegionType::PageTable,
))]
struct BootAllocator {
    next: u64,
    log: Vec<(u64, MemoryRegionType)>,
}

impl BootAllocator {
    fn allocate_frame(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame> {
        let frame = PhysFrame::containing_address(PhysAddr::new(self.next));
        self.log.push((self.next, region_type));
        self.next += 4096;
        Some(frame)
    }
}

fn main() {
    let mut boot = BootAllocator { next: 0x1000, log: Vec::new() };
    let a = FrameAllocator::allocate_frame(&mut boot).unwrap();
    let b = boot.tagged(MemoryRegionType::Kernel).allocate_frame().unwrap();
    let c = boot.allocate_frame(MemoryRegionType::Kernel).unwrap();
    assert_eq!(a.start_address().as_u64(), 0x1000);
    assert_eq!(b.start_address().as_u64(), 0x2000);
    assert_eq!(c.start_address().as_u64(), 0x3000);
    assert_eq!(
        boot.log,
        [
            (0x1000, MemoryRegionType::PageTable),
            (0x2000, MemoryRegionType::Kernel),
            (0x3000, MemoryRegionType::Kernel),
        ]
    );
}
