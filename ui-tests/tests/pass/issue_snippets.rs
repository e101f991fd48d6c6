// The two snippets of the issue, exactly as written, in a crate that
// depends on `framealloc` alone.
use framealloc::FrameAllocator;

#[derive(FrameAllocator)]
struct KernelFrames { #[frame_allocator] inner: framealloc::NoAllocator, stats: u64 }

fn main() {
    let mut frames: Vec<framealloc::PhysFrame> = Vec::new();
    let mut alloc = unsafe { framealloc::frame_allocator!(|| frames.pop()) };
    assert_eq!(alloc.allocate_frame(), None);

    let mut kernel = KernelFrames { inner: framealloc::NoAllocator, stats: 0 };
    assert_eq!(FrameAllocator::<framealloc::Size4KiB>::allocate_frame(&mut kernel), None);
    kernel.stats += 1;
    assert_eq!(kernel.stats, 1);
}
