// A forwarded field of a type that exists but is no allocator: the derive's
// check reports it at the field; a use of the type reports it again (rustc
// cannot be told to stay silent), and says which field type is missing the
// trait, without the derive's generated names.
use framealloc::{FrameAllocator, PhysFrame};

#[derive(FrameAllocator)]
struct Frames {
    inner: Vec<u64>,
}

fn main() {
    let mut frames = Frames { inner: Vec::new() };
    let _: Option<PhysFrame> = frames.allocate_frame();
}
