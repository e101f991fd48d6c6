// `shared` on a field whose type is no shared allocator (an allocator
// through `&mut self`, and a primitive): one error each, at the field;
// uses of the types through every impl the derive makes report nothing
// further.
use framealloc::x86_64::PhysAddr;
use framealloc::{
    FrameAllocator, FrameDeallocator, FramePool, PhysFrame, SharedFrameAllocator,
    SharedFrameDeallocator, SharedView, Size4KiB,
};

#[derive(FrameAllocator)]
struct Pooled {
    #[frame_allocator(shared)]
    pool: FramePool<Size4KiB, 4>,
}

#[derive(FrameAllocator)]
enum Counter {
    Count(#[frame_allocator(shared)] u64),
}

fn main() {
    let pooled = Pooled { pool: FramePool::new() };
    let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(0));
    let _: Option<PhysFrame> = pooled.allocate_frame();
    let _: Option<PhysFrame> = SharedView::new(&pooled).allocate_frame();
    let _: Option<PhysFrame> = FrameAllocator::allocate_frame(&mut &pooled);
    unsafe { FrameDeallocator::deallocate_frame(&mut &pooled, frame) };
    unsafe { SharedFrameDeallocator::deallocate_frame(&pooled, frame) };
    let counter = Counter::Count(0);
    let _: Option<PhysFrame> = SharedFrameAllocator::allocate_frame(&counter);
}
