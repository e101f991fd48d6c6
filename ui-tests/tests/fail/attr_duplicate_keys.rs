use framealloc::{FrameAllocator, PhysFrame};

#[derive(FrameAllocator)]
#[frame_allocator(crate = ::framealloc)]
#[frame_allocator(crate = ::framealloc)]
struct A(framealloc::NoAllocator);

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = alloc, tag = u8, tag = u16, sizes(Size4KiB, Size4KiB)))]
struct B;

impl B {
    fn alloc(&mut self, _: u8) -> Option<PhysFrame> {
        None
    }
}

#[derive(FrameAllocator)]
struct C(#[frame_allocator] #[frame_allocator] framealloc::NoAllocator);

fn main() {}
