use framealloc::{FrameAllocator, PhysFrame};

#[derive(FrameAllocator)]
#[frame_allocator(krate = framealloc)]
struct A(framealloc::NoAllocator);

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = alloc, tag = u8, fallback = 0))]
struct B;

impl B {
    fn alloc(&mut self, _: u8) -> Option<PhysFrame> {
        None
    }
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe crate = framealloc)]
struct C(framealloc::NoAllocator);

fn main() {}
