// A crate that forbids clippy's `undocumented_unsafe_blocks` can still derive
// the tagged form: the derive generates no `#[allow]` that the `forbid`
// would reject (E0453). (The `ui-tests` library checks the same under
// clippy itself: it forbids the lint and derives the tagged forms.)
#![forbid(clippy::undocumented_unsafe_blocks, clippy::pedantic)]

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame};

#[derive(FrameAllocator)]
// SAFETY: `allocate` hands out each frame once (`next` only grows).
#[frame_allocator(unsafe tagged(method = allocate, tag = u8, default = 0))]
struct Boot {
    next: u64,
}

impl Boot {
    fn allocate(&mut self, _: u8) -> Option<PhysFrame> {
        self.next += 4096;
        Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
    }
}

fn main() {
    let mut boot = Boot { next: 0 };
    assert!(FrameAllocator::allocate_frame(&mut boot).is_some());
}
