// Edition 2021 with `unsafe_op_in_unsafe_fn` denied (as this workspace does):
// `frame_allocator!` in an `unsafe fn` needs its own `unsafe { … }`.
#![deny(unsafe_op_in_unsafe_fn)]

use framealloc::{frame_allocator, FrameAllocator, PhysFrame};

/// # Safety
/// None needed; the point is the missing block.
pub unsafe fn allocator_in_unsafe_fn() -> Option<PhysFrame> {
    let mut frames: Vec<PhysFrame> = Vec::new();
    let mut a = frame_allocator!(|| frames.pop());
    a.allocate_frame()
}

/// The same with deallocation and state: every form is an unsafe call.
pub unsafe fn stateful_in_unsafe_fn() {
    let _a = frame_allocator!(
        state = Vec::<PhysFrame>::new(),
        |free| free.pop(),
        |free, frame| free.push(frame),
    );
}

fn main() {}
