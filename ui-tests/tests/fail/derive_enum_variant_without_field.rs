use framealloc::{FrameAllocator, NoAllocator};

#[derive(FrameAllocator)]
enum Source {
    Nothing(NoAllocator),
    Empty,
}

fn main() {}
