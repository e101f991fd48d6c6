// A forwarded field that is no allocator, written as a longer type: the
// error covers the whole type and speaks of the field, not of the derive's
// helper names.
use framealloc::FrameAllocator;

#[derive(FrameAllocator)]
struct Borrowed<'a> {
    inner: &'a mut Vec<u64>,
}

#[derive(FrameAllocator)]
struct Boxed {
    inner: Box<[u8; 4]>,
}

#[derive(FrameAllocator)]
struct Locked<'a> {
    #[frame_allocator(lock = borrow_mut)]
    inner: &'a core::cell::RefCell<Option<u8>>,
}

fn main() {}
