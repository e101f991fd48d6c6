// Forwarding takes `&mut` to the field, which a `#[repr(packed)]` struct
// cannot give (the field may be unaligned): the derive says so at `packed`.
use framealloc::{FrameAllocator, FramePool, Size4KiB};

#[derive(FrameAllocator)]
#[repr(C, packed)]
struct Packed {
    tag: u8,
    #[frame_allocator]
    pool: FramePool<Size4KiB, 2>,
}

#[derive(FrameAllocator)]
#[repr(packed(2))]
struct PackedTwo(FramePool<Size4KiB, 2>);

fn main() {
    let mut packed = Packed { tag: 0, pool: FramePool::new() };
    let _ = (packed.tag, FrameAllocator::allocate_frame(&mut packed));
}
