// Inside an `unsafe fn`, `frame_allocator!` is an unsafe operation like any
// other: edition 2024 warns about it (`unsafe_op_in_unsafe_fn`), here made an
// error, and asks for the `unsafe { … }` block that makes the promise.
#![deny(warnings)]

use framealloc::{frame_allocator, FrameAllocator, PhysFrame};

/// # Safety
/// None needed; the point is the missing block.
pub unsafe fn allocator_in_unsafe_fn() -> Option<PhysFrame> {
    let mut frames: Vec<PhysFrame> = Vec::new();
    let mut a = frame_allocator!(|| frames.pop());
    a.allocate_frame()
}

fn main() {}
