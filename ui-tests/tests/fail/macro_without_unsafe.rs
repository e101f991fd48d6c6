use framealloc::PhysFrame;

fn main() {
    let mut frames: Vec<PhysFrame> = Vec::new();
    let _alloc = framealloc::frame_allocator!(|| frames.pop());
}
