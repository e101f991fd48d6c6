// Field forwarding: single unmarked field, a marked field among others, a
// tuple struct; `FrameDeallocator` forwards too, for every size the field has.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, FramePool, NoAllocator, PhysFrame, Size2MiB, Size4KiB};

#[derive(FrameAllocator)]
struct Single<A> {
    inner: A,
}

#[derive(FrameAllocator)]
struct Counted {
    hits: u64,
    #[frame_allocator]
    pool: FramePool<Size4KiB, 4>,
    name: &'static str,
}

#[derive(FrameAllocator)]
struct Huge(u8, #[frame_allocator] FramePool<Size2MiB, 2>);

fn frame<S: framealloc::PageSize>(address: u64) -> PhysFrame<S> {
    PhysFrame::from_start_address(PhysAddr::new(address)).unwrap()
}

fn main() {
    let mut never = Single { inner: NoAllocator };
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut never), None);
    assert_eq!(FrameAllocator::<Size2MiB>::allocate_frame(&mut never), None);

    let mut counted = Counted { hits: 0, pool: FramePool::new(), name: "tables" };
    unsafe { counted.deallocate_frame(frame(0x5000)) };
    unsafe { counted.deallocate_frame(frame(0x6000)) };
    assert_eq!(counted.allocate_frame(), Some(frame(0x6000)));
    assert_eq!(counted.allocate_frame(), Some(frame(0x5000)));
    assert_eq!(counted.allocate_frame(), None);
    counted.hits += 1;
    assert_eq!((counted.hits, counted.name), (1, "tables"));

    let mut huge = Huge(7, FramePool::new());
    unsafe { huge.deallocate_frame(frame(0x20_0000)) };
    assert_eq!(huge.allocate_frame(), Some(frame::<Size2MiB>(0x20_0000)));
    assert_eq!(huge.0, 7);
}
