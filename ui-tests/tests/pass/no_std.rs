// Every form in a `#![no_std]` crate: the generated code needs nothing from
// `std` or its prelude. (`std` is linked only for the test's `main`.)
#![no_std]

extern crate std;

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FramePool, NoAllocator, PhysFrame, Size4KiB};

#[derive(FrameAllocator)]
struct Forward {
    #[frame_allocator]
    pool: FramePool<Size4KiB, 2>,
    misses: u32,
}

#[derive(FrameAllocator)]
enum Choice {
    None(NoAllocator),
    Pool(FramePool<Size4KiB, 2>),
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = alloc, tag = bool, default = true))]
struct Flagged(u64);

impl Flagged {
    fn alloc(&mut self, zeroed: bool) -> Option<PhysFrame> {
        self.0 += if zeroed { 1 } else { 2 };
        Some(PhysFrame::containing_address(PhysAddr::new(self.0 * 4096)))
    }
}

fn main() {
    let mut forward = Forward { pool: FramePool::new(), misses: 0 };
    if forward.allocate_frame().is_none() {
        forward.misses += 1;
    }
    assert_eq!(forward.misses, 1);
    assert!(Choice::None(NoAllocator).allocate_frame().is_none());
    assert!(Choice::Pool(FramePool::new()).allocate_frame().is_none());
    let mut flagged = Flagged(0);
    assert_eq!(FrameAllocator::allocate_frame(&mut flagged).unwrap().start_address().as_u64(), 4096);
    let frames = [PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(0x1000))];
    let mut iter = frames.iter().copied();
    let mut alloc = unsafe { framealloc::frame_allocator!(|| iter.next()) };
    assert!(alloc.allocate_frame().is_some());
    assert!(alloc.allocate_frame().is_none());
}
