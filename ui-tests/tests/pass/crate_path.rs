// A crate that re-exports framealloc under another path.
mod kernel {
    pub use framealloc as frames;
}

use kernel::frames::{FrameAllocator, NoAllocator, PhysFrame, Size4KiB};

#[derive(FrameAllocator)]
#[frame_allocator(crate = crate::kernel::frames)]
struct Wrapped(NoAllocator);

#[derive(FrameAllocator)]
#[frame_allocator(crate = kernel::frames, unsafe tagged(method = alloc, tag = u8, default = 1))]
struct Tagged;

impl Tagged {
    fn alloc(&mut self, tag: u8) -> Option<PhysFrame> {
        (tag == 0).then(|| PhysFrame::containing_address(kernel::frames::x86_64::PhysAddr::zero()))
    }
}

fn main() {
    assert!(FrameAllocator::<Size4KiB>::allocate_frame(&mut Wrapped(NoAllocator)).is_none());
    assert!(FrameAllocator::<Size4KiB>::allocate_frame(&mut Tagged).is_none());
    assert!(Tagged.alloc(0).is_some());
    let mut alloc = unsafe { kernel::frames::frame_allocator!(crate = crate::kernel::frames, || None::<PhysFrame>) };
    assert!(alloc.allocate_frame().is_none());
}
