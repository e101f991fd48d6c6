// The page size given explicitly (no import needed for it), or inferred from
// a closure that returns 2 MiB frames.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame};

fn main() {
    let mut next = 0x20_0000u64;
    let mut huge = unsafe {
        framealloc::frame_allocator!(
            || {
                let frame = PhysFrame::from_start_address(PhysAddr::new(next)).ok();
                next += 0x20_0000;
                frame
            },
            size = Size2MiB,
        )
    };
    let frame = huge.allocate_frame().unwrap();
    assert_eq!(frame.size(), 0x20_0000);
    assert_eq!(huge.allocate_frame().unwrap().start_address().as_u64(), 0x40_0000);

    let mut freed = Vec::new();
    let mut giant = unsafe {
        framealloc::frame_allocator!(size = framealloc::Size1GiB, || None, |frame| freed.push(frame))
    };
    assert!(giant.allocate_frame().is_none());
    unsafe { giant.deallocate_frame(PhysFrame::containing_address(PhysAddr::new(0x4000_0000))) };
    drop(giant);
    assert_eq!(freed[0].size(), 0x4000_0000);
}
