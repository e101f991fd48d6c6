use framealloc::FrameAllocator;

#[derive(FrameAllocator)]
struct Counter {
    #[frame_allocator]
    count: u64,
    name: &'static str,
}

fn main() {}
