// The derive's generated names do not capture the user's: a type named like
// the page-size parameter (`__S`, `__S1`) or like a probe trait in a field
// type, and lowercase constants named like the generated locals and
// parameters, all in scope of the derived impls.
#![allow(non_camel_case_types, non_upper_case_globals, dead_code)]

use core::marker::PhantomData;
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FramePool, PhysFrame, Size4KiB, TaggedFrameAllocator};

struct __S;
struct __S1;
struct Probe4KiB;
struct ProbeNone;
struct FieldProbe;

const frame: u8 = 1;
const allocator: u8 = 2;
const tag: u8 = 3;
const probe: u8 = 4;
const verdict: u8 = 5;

#[derive(FrameAllocator)]
struct Marked<T> {
    #[frame_allocator]
    pool: FramePool<Size4KiB, 2>,
    marker: PhantomData<T>,
}

// A concrete field type (checked by the probe) that names every one of them.
#[derive(FrameAllocator)]
struct Named {
    inner: Marked<(__S, __S1, Probe4KiB, ProbeNone, FieldProbe)>,
}

// A generic parameter `__S` and a field type naming the user's `__S1`.
#[derive(FrameAllocator)]
struct Generic<__S> {
    #[frame_allocator]
    inner: Marked<__S1>,
    own: PhantomData<__S>,
}

#[derive(FrameAllocator)]
enum Either {
    Left(Marked<__S>),
    Right(Marked<Probe4KiB>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Purpose(u8);

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate, tag = Purpose, default = Purpose(tag)))]
struct Tagged {
    next: u64,
    seen: Vec<Purpose>,
}

impl Tagged {
    fn allocate(&mut self, purpose: Purpose) -> Option<PhysFrame> {
        self.seen.push(purpose);
        self.next += 4096;
        Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
    }
}

fn marked<T>() -> Marked<T> {
    Marked { pool: FramePool::new(), marker: PhantomData }
}

fn main() {
    let mut named = Named { inner: marked() };
    assert_eq!(named.allocate_frame(), None);
    let mut generic: Generic<u8> = Generic { inner: marked(), own: PhantomData };
    assert_eq!(generic.allocate_frame(), None);
    let mut either = Either::Right(marked());
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut either), None);
    let _ = Either::Left(marked());

    let mut tagged = Tagged { next: 0, seen: Vec::new() };
    assert_eq!(FrameAllocator::allocate_frame(&mut tagged).unwrap().start_address().as_u64(), 0x1000);
    assert_eq!(tagged.allocate_tagged(Purpose(allocator)).unwrap().start_address().as_u64(), 0x2000);
    assert_eq!(tagged.seen, [Purpose(tag), Purpose(allocator)]);
    assert_eq!((frame, probe, verdict), (1, 4, 5));
}
