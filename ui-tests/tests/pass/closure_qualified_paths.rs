// Any Rust expression passes through `frame_allocator!`: qualified paths and
// generic arguments with commas inside them, comparisons, casts.
use std::collections::HashMap;

use framealloc::x86_64::PhysAddr;
use framealloc::{frame_allocator, FrameAllocator, FramePool, PhysFrame, Size4KiB};

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

fn main() {
    let mut pool = FramePool::<Size4KiB, 8>::new();
    unsafe { pool.try_push(frame(0x3000)) }.unwrap();
    let mut via_pool = unsafe {
        frame_allocator!(|| <FramePool<Size4KiB, 8> as FrameAllocator<Size4KiB>>::allocate_frame(&mut pool))
    };
    assert_eq!(via_pool.allocate_frame(), Some(frame(0x3000)));
    assert_eq!(via_pool.allocate_frame(), None);

    let mut keyed = unsafe {
        frame_allocator!(
            state = <HashMap<u8, PhysFrame> as Default>::default(),
            |map| map.remove(&<u8 as From<bool>>::from(true)),
            |map, frame| { map.insert(<u8 as TryFrom<u32>>::try_from(1u32).unwrap(), frame); },
        )
    };
    assert_eq!(keyed.allocate_frame(), None);
    unsafe { framealloc::FrameDeallocator::deallocate_frame(&mut keyed, frame(0x5000)) };
    assert_eq!(keyed.allocate_frame(), Some(frame(0x5000)));

    // A comparison and a cast at the top level: `<` is not a generic here.
    let (a, b, limit) = (1u64, 2u64, 0x9000u64);
    let mut next = 0x8000u64;
    let mut compared = unsafe {
        frame_allocator!(|| if a < b && next < limit as u64 { next += 4096; Some(frame(next)) } else { None }, size = Size4KiB)
    };
    assert_eq!(compared.allocate_frame(), Some(frame(0x9000)));
    assert_eq!(compared.allocate_frame(), None);
}
