use framealloc::PhysFrame;

fn main() {
    let mut frames: Vec<PhysFrame> = Vec::new();
    let _alloc = unsafe { framealloc::frame_allocator!(|count: usize| frames.pop()) };
}
