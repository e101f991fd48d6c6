// A forwarded field of a type that exists but is no allocator: the derive's
// check reports it at the field, once; uses of the type report nothing
// further (the impls' bounds go through the check, which rustc then treats
// as already reported).
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, Size2MiB};

#[derive(FrameAllocator)]
struct Frames {
    inner: Vec<u64>,
}

fn main() {
    let mut frames = Frames { inner: Vec::new() };
    let _: Option<PhysFrame> = frames.allocate_frame();
    unsafe { frames.deallocate_frame(PhysFrame::containing_address(PhysAddr::new(0))) };
    let _ = FrameAllocator::<Size2MiB>::allocate_frame(&mut frames);
}
