use framealloc::{FrameAllocator, NoAllocator};

#[derive(FrameAllocator)]
struct Two {
    #[frame_allocator]
    first: NoAllocator,
    #[frame_allocator]
    second: NoAllocator,
}

fn main() {}
