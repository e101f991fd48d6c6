use framealloc::{FrameAllocator, NoAllocator, Size4KiB};

fn main() {
    let mut none = NoAllocator;
    assert!(FrameAllocator::<Size4KiB>::allocate_frame(&mut none).is_none());
}
