// The seed's case with a closure: capture a bootloader allocator by `&mut`
// and a region type by value; no lifetimes written anywhere.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame};

#[derive(Clone, Copy, Debug, PartialEq)]
enum MemoryRegionType {
    PageTable,
    Kernel,
}

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

fn take_two<A: FrameAllocator<framealloc::Size4KiB>>(alloc: &mut A) -> (PhysFrame, PhysFrame) {
    (alloc.allocate_frame().unwrap(), alloc.allocate_frame().unwrap())
}

fn main() {
    let mut boot = BootAllocator { next: 0, log: Vec::new() };
    let region = MemoryRegionType::PageTable;
    let (a, b) = take_two(&mut unsafe {
        framealloc::frame_allocator!(|| boot.allocate_frame(region))
    });
    assert_eq!((a.start_address().as_u64(), b.start_address().as_u64()), (0x1000, 0x2000));

    // `move`, a block body, and a return type written out.
    let mut kernel = unsafe {
        framealloc::frame_allocator!(move || -> Option<PhysFrame> {
            let frame = boot.allocate_frame(MemoryRegionType::Kernel)?;
            assert_eq!(boot.log.last(), Some(&MemoryRegionType::Kernel));
            Some(frame)
        })
    };
    assert_eq!(kernel.allocate_frame().unwrap().start_address().as_u64(), 0x3000);
}
