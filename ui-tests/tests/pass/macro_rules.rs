// The macros used from inside `macro_rules!`: the tagged method passed as
// `$m:ident`/`$m:path`, closures passed as `$c:expr` (which arrive in
// invisible groups), and state as `$s:expr`.
use framealloc::x86_64::PhysAddr;
use framealloc::{frame_allocator, FrameAllocator, FrameDeallocator, PhysFrame, TaggedFrameAllocator};

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

macro_rules! tagged_allocator {
    ($name:ident, $method:ident) => {
        #[derive(FrameAllocator)]
        #[frame_allocator(unsafe tagged(method = $method, tag = u8, default = 0))]
        struct $name {
            next: u64,
        }

        impl $name {
            fn $method(&mut self, tag: u8) -> Option<PhysFrame> {
                self.next += 4096 * (u64::from(tag) + 1);
                Some(frame(self.next))
            }
        }
    };
}

tagged_allocator!(Boot, allocate);

macro_rules! with_path {
    ($method:path) => {
        #[derive(FrameAllocator)]
        #[frame_allocator(unsafe tagged(method = $method, tag = u8))]
        struct ByPath(u64);
    };
}

fn by_path(this: &mut ByPath, tag: u8) -> Option<PhysFrame> {
    this.0 += u64::from(tag);
    Some(frame(this.0))
}

with_path!(crate::by_path);

macro_rules! alloc_from {
    ($c:expr) => {
        unsafe { frame_allocator!($c) }
    };
    ($c:expr, $d:expr) => {
        unsafe { frame_allocator!($c, $d) }
    };
    (state = $s:expr, $c:expr, $d:expr) => {
        unsafe { frame_allocator!(state = $s, $c, $d, size = Size4KiB) }
    };
}

fn main() {
    let mut boot = Boot { next: 0 };
    assert_eq!(FrameAllocator::allocate_frame(&mut boot), Some(frame(0x1000)));
    assert_eq!(boot.allocate_tagged(1), Some(frame(0x3000)));
    let mut by = ByPath(0x4000);
    assert_eq!(by.tagged(0).allocate_frame(), Some(frame(0x4000)));

    let mut frames = vec![frame(0x1000)];
    let mut a = alloc_from!(|| frames.pop());
    assert_eq!(a.allocate_frame(), Some(frame(0x1000)));
    assert_eq!(a.allocate_frame(), None);

    let mut freed = Vec::new();
    let mut b = alloc_from!(move || Some(frame(0x2000)), |f| freed.push(f));
    unsafe { b.deallocate_frame(frame(0x6000)) };
    assert_eq!(b.allocate_frame(), Some(frame(0x2000)));
    drop(b);
    assert_eq!(freed, [frame(0x6000)]);

    let mut c = alloc_from!(state = vec![frame(0x8000)], |s| s.pop(), |s, f| s.push(f));
    let f = c.allocate_frame().unwrap();
    unsafe { c.deallocate_frame(f) };
    assert_eq!(c.allocate_frame(), Some(frame(0x8000)));
}
