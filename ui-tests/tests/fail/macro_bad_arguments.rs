use framealloc::PhysFrame;

fn main() {
    let mut frames: Vec<PhysFrame> = Vec::new();
    let _a = unsafe { framealloc::frame_allocator!() };
    let _b = unsafe { framealloc::frame_allocator!(|| frames.pop(), || (), |f| drop(f)) };
    let _c = unsafe { framealloc::frame_allocator!(|| None, size = Size3MiB, colour = red) };
}
