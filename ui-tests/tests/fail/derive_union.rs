use framealloc::{FrameAllocator, NoAllocator};

#[derive(FrameAllocator)]
union Either {
    a: NoAllocator,
    b: u64,
}

fn main() {}
