// A crate depending on `framealloc` as `fa` (trybuild writes the dependency
// as a `[dependencies.fa]` table with `package = "framealloc"`): the derive
// on a struct and an enum, and the closure macro, with no `crate = fa`.
use fa::x86_64::PhysAddr;
use fa::{frame_allocator, FrameAllocator, FrameDeallocator, FramePool, PhysFrame, Size4KiB};

#[derive(FrameAllocator)]
struct Forward<A> {
    inner: A,
}

#[derive(FrameAllocator)]
enum Either {
    Small(FramePool<Size4KiB, 2>),
    Big(FramePool<Size4KiB, 8>),
}

fn main() {
    let mut forward = Forward { inner: FramePool::<Size4KiB, 2>::new() };
    let frame = PhysFrame::containing_address(PhysAddr::new(0x7000));
    unsafe { forward.deallocate_frame(frame) };
    assert_eq!(forward.allocate_frame(), Some(frame));

    let mut either = Either::Small(FramePool::new());
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut either), None);
    let mut big = Either::Big(FramePool::new());
    unsafe { big.deallocate_frame(frame) };
    assert_eq!(big.allocate_frame(), Some(frame));

    let mut once = unsafe { frame_allocator!(state = Some(frame), |f| f.take()) };
    assert_eq!(once.allocate_frame(), Some(frame));
    assert_eq!(once.allocate_frame(), None);
}
