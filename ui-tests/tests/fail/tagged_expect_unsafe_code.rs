// `#[expect(unsafe_code)]` on a tagged type cannot be fulfilled: the derived
// impls are items beside the type, outside the reach of its lint attributes,
// so the expectation would stay unfulfilled while the impls were reported.
// The derive says so, once, and points at `#[allow(unsafe_code)]`, which it
// carries to its impls.
#![deny(unsafe_code, warnings)]

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame};

#[expect(unsafe_code, reason = "the tagged method hands out each frame once")]
#[derive(FrameAllocator)]
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
