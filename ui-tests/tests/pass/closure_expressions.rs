// More expressions of the families that once split wrongly: `<` and `>` as
// comparisons next to generic arguments and qualified paths, closures inside
// the closures, casts, labelled blocks.
use framealloc::x86_64::PhysAddr;
use framealloc::{frame_allocator, FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

fn main() {
    let (low, high) = (1i64, 2i64);
    let mut freed = Vec::new();
    let mut a = unsafe {
        frame_allocator!(
            || (low < high && high > low && low as i64 > -1 && <[u8]>::len(&[1, 2]) > 1)
                .then(|| frame(Vec::<u64>::new().pop().unwrap_or(0x1000))),
            |f| freed.push(<PhysFrame as Clone>::clone(&f)),
        )
    };
    assert_eq!(a.allocate_frame(), Some(frame(0x1000)));
    unsafe { a.deallocate_frame(frame(0x2000)) };
    drop(a);
    assert_eq!(freed, [frame(0x2000)]);

    let frames = [frame(0x3000), frame(0x4000)];
    let mut next = 0usize;
    let mut b = unsafe {
        frame_allocator!(
            || 'pick: {
                if next >= frames.len() { break 'pick None; }
                next += 1;
                frames.get(next - 1).copied().filter(|f| f.start_address().as_u64() > 0x2000)
            },
            size = Size4KiB,
        )
    };
    assert_eq!(b.allocate_frame(), Some(frame(0x3000)));
    assert_eq!(b.allocate_frame(), Some(frame(0x4000)));
    assert_eq!(b.allocate_frame(), None);

    let mut c = unsafe {
        frame_allocator!(
            state = (0u64, u64::MAX >> 1 < 1 << 62),
            |s| { s.0 += 0x1000; (!s.1 || s.0 < 0x3000).then(|| frame(s.0)) },
            |s, f: PhysFrame<Size4KiB>| s.0 = f.start_address().as_u64() - 0x1000,
        )
    };
    assert_eq!(c.allocate_frame(), Some(frame(0x1000)));
    unsafe { c.deallocate_frame(frame(0x1000)) };
    assert_eq!(c.allocate_frame(), Some(frame(0x1000)));
}
