// The forwarding bounds go through the field check. A field that is an
// allocator for one size only, used at another size, is still reported at
// the use, naming the field type; an enum with a non-allocator variant field
// is reported once per such field and nowhere else.
use framealloc::{FrameAllocator, FramePool, PhysFrame, Size2MiB, Size4KiB};

#[derive(FrameAllocator)]
struct Huge {
    pool: FramePool<Size2MiB, 2>,
}

#[derive(FrameAllocator)]
enum Mixed {
    Pool(FramePool<Size4KiB, 2>),
    Numbers(Vec<u64>),
    More(Vec<u64>),
}

fn main() {
    let mut huge = Huge { pool: FramePool::new() };
    let _: Option<PhysFrame<Size4KiB>> = huge.allocate_frame();
    let _ = FrameAllocator::<Size4KiB>::allocate_frame(&mut huge);
    let mut mixed = Mixed::Numbers(Vec::new());
    let _: Option<PhysFrame> = mixed.allocate_frame();
}
