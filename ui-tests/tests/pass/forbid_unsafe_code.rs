// A crate that forbids unsafe code can still derive the forwarding forms:
// field forwarding and enum dispatch make no promise of their own (the
// field's impl does), so their impls are not reported by `unsafe_code`.
#![forbid(unsafe_code)]

use framealloc::{FrameAllocator, FrameDeallocator, FramePool, NoAllocator, Size4KiB};

#[derive(FrameAllocator)]
struct KernelFrames {
    #[frame_allocator]
    inner: FramePool<Size4KiB, 2>,
    stats: u64,
}

#[derive(FrameAllocator)]
struct Single(FramePool<Size4KiB, 1>);

#[derive(FrameAllocator)]
enum Source {
    Never(NoAllocator),
    Pool { #[frame_allocator] pool: FramePool<Size4KiB, 2>, label: &'static str },
}

// Filling a pool takes `unsafe`, so the pools here stay empty: what this
// case checks is that the derives compile under `forbid(unsafe_code)`.
fn main() {
    let mut kernel = KernelFrames { inner: FramePool::new(), stats: 0 };
    assert_eq!(kernel.allocate_frame(), None);
    kernel.stats += 1;
    assert_eq!(kernel.stats, 1);

    let mut single = Single(FramePool::new());
    assert_eq!(single.allocate_frame(), None);

    let mut never = Source::Never(NoAllocator);
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut never), None);
    let mut pooled = Source::Pool { pool: FramePool::new(), label: "p" };
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut pooled), None);
    if let Source::Pool { label, .. } = pooled {
        assert_eq!(label, "p");
    }
    // Deallocation is an `unsafe fn`, which this crate cannot call; that the
    // impl exists is checked by naming it.
    fn takes_back<A: FrameDeallocator<Size4KiB>>(_: &A) {}
    takes_back(&KernelFrames { inner: FramePool::new(), stats: 0 });
}
