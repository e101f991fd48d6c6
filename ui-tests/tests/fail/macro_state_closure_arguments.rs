fn main() {
    // With `state = …` the closures take the state first.
    let _a = unsafe {
        framealloc::frame_allocator!(state = Vec::<framealloc::PhysFrame>::new(), || None, |frame| drop(frame))
    };
    // Without it, the deallocation closure takes the frame alone.
    let _b = unsafe { framealloc::frame_allocator!(|| None, |free: &mut Vec<u8>, frame| drop(frame)) };
}
