use framealloc::FrameAllocator;

// Every problem of one attribute is reported at once.
#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(default = 3, sizes(Size4MiB)))]
struct Incomplete {
    #[frame_allocator]
    inner: framealloc::NoAllocator,
}

fn main() {}
