use framealloc::{FrameAllocator, NoAllocator};

#[derive(FrameAllocator)]
struct KernelFrames {
    inner: NoAllocator,
    stats: u64,
}

fn main() {
    // No second error here: the derive emits a stand-in impl after an error.
    let _ = FrameAllocator::<framealloc::Size4KiB>::allocate_frame(&mut KernelFrames {
        inner: NoAllocator,
        stats: 0,
    });
}
