use framealloc::{FrameAllocator, PhysFrame};

fn main() {
    let mut frames: Vec<PhysFrame> = Vec::new();
    let mut alloc = unsafe { framealloc::frame_allocator!(frames.pop()) };
    let _ = alloc.allocate_frame();
}
