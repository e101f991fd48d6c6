// After an error in the derive, code using the type reports nothing further:
// not `allocate_frame`, `deallocate_frame`, `.tagged(…)` nor `allocate_tagged`.
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, TaggedFrameAllocator};
use framealloc::x86_64::PhysAddr;

#[derive(FrameAllocator)]
struct TwoFields {
    a: framealloc::NoAllocator,
    b: framealloc::NoAllocator,
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = u8, colour = 1))]
struct Tagged;

impl Tagged {
    fn allocate(&mut self, _: u8) -> Option<PhysFrame> { None }
}

fn main() {
    let frame: PhysFrame = PhysFrame::containing_address(PhysAddr::new(0));
    let mut two = TwoFields { a: framealloc::NoAllocator, b: framealloc::NoAllocator };
    let _: Option<PhysFrame> = two.allocate_frame();
    unsafe { two.deallocate_frame(frame) };
    let mut tagged = Tagged;
    let _ = FrameAllocator::<framealloc::Size4KiB>::allocate_frame(&mut tagged);
    let _ = tagged.allocate_tagged(3);
    let _ = tagged.tagged(3).allocate_frame();
}
