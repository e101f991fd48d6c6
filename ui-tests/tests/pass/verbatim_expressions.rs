// Expressions the derive does not need to understand pass through as they
// are: a block as a const generic argument, an `if` as an array length, an
// `if` as the default tag.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FramePool, PhysFrame, Size4KiB, TaggedFrameAllocator};

const BIG: bool = false;

#[derive(FrameAllocator)]
struct Sized {
    #[frame_allocator]
    pool: FramePool<Size4KiB, { if cfg!(debug_assertions) { 64 } else { 8 } }>,
    pad: [u8; if BIG { 64 } else { 8 }],
}

#[derive(FrameAllocator)]
enum Either {
    Pool(FramePool<Size4KiB, { 2 + if BIG { 1 } else { 0 } }>),
    Other { #[frame_allocator] inner: framealloc::NoAllocator, pad: [u8; match 3 { 3 => 1, _ => 2 }] },
}

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = u8, default = if BIG { 1 } else { 2 }))]
struct Boot(u64);

impl Boot {
    fn allocate(&mut self, tag: u8) -> Option<PhysFrame> {
        self.0 += 4096 * u64::from(tag);
        Some(PhysFrame::containing_address(PhysAddr::new(self.0)))
    }
}

fn main() {
    let mut sized = Sized { pool: FramePool::new(), pad: [0; 8] };
    assert_eq!(sized.allocate_frame(), None);
    assert_eq!(sized.pad.len(), 8);
    let mut either = Either::Pool(FramePool::new());
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut either), None);
    let _ = Either::Other { inner: framealloc::NoAllocator, pad: [0] };
    let mut boot = Boot(0);
    assert_eq!(FrameAllocator::allocate_frame(&mut boot).unwrap().start_address().as_u64(), 0x2000);
    assert_eq!(boot.allocate_tagged(1).unwrap().start_address().as_u64(), 0x3000);
}
