use framealloc::FrameAllocator;

#[derive(FrameAllocator)]
struct Nothing;

fn main() {}
