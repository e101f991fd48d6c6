use framealloc::{FrameAllocator, FramePool, NoAllocator, Size4KiB};

#[derive(FrameAllocator)]
enum Source {
    Nothing(NoAllocator),
    Pool(FramePool<Size4KiB, 4>, u32),
    Named { pool: FramePool<Size4KiB, 8>, hits: u64 },
}

fn main() {}
