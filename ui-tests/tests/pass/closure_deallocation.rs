// An allocation and a deallocation closure sharing state, and a turbofish
// with a comma inside the body.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use std::cell::RefCell;

fn pick<A, B: Into<A>>(b: B) -> A {
    b.into()
}

fn main() {
    let free = RefCell::new(vec![PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(0x7000))]);
    let mut alloc = unsafe {
        framealloc::frame_allocator!(
            || pick::<Option<PhysFrame>, Option<PhysFrame>>(free.borrow_mut().pop()),
            |frame| free.borrow_mut().push(frame),
        )
    };
    let frame = alloc.allocate_frame().unwrap();
    assert_eq!(alloc.allocate_frame(), None);
    unsafe { alloc.deallocate_frame(frame) };
    assert_eq!(alloc.allocate_frame(), Some(frame));
}
