// Allocation and deallocation sharing one free list: `state = …` hands each
// closure `&mut` state, where two closures capturing it would not borrow-check.
use framealloc::x86_64::PhysAddr;
use framealloc::{frame_allocator, FrameAllocator, FrameDeallocator, PhysFrame};

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

fn main() {
    let mut alloc = unsafe {
        frame_allocator!(
            state = vec![frame(0x1000), frame(0x2000)],
            |free| free.pop(),
            |free, frame| free.push(frame),
        )
    };
    let first = alloc.allocate_frame().unwrap();
    assert_eq!(first, frame(0x2000));
    unsafe { alloc.deallocate_frame(first) };
    assert_eq!(alloc.allocate_frame(), Some(frame(0x2000)));
    assert_eq!(alloc.allocate_frame(), Some(frame(0x1000)));
    assert_eq!(alloc.allocate_frame(), None);

    // Allocation only, 2 MiB frames, state given last.
    let mut huge = unsafe {
        frame_allocator!(
            |next| {
                *next += 0x20_0000;
                PhysFrame::from_start_address(PhysAddr::new(*next)).ok()
            },
            size = Size2MiB,
            state = 0u64,
        )
    };
    assert_eq!(huge.allocate_frame().unwrap().start_address().as_u64(), 0x20_0000);
}
