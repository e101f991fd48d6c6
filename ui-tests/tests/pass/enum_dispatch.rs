// Enum dispatch without `dyn`: each variant forwards to its allocator.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, FramePool, NoAllocator, PhysFrame, Size4KiB};

#[derive(FrameAllocator)]
enum Source<A> {
    Never(NoAllocator),
    Pool(FramePool<Size4KiB, 4>),
    Custom {
        label: &'static str,
        #[frame_allocator]
        inner: A,
    },
}

#[derive(FrameAllocator)]
enum Pools {
    Small(FramePool<Size4KiB, 1>),
    Big(FramePool<Size4KiB, 8>),
}

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

fn main() {
    let mut never: Source<NoAllocator> = Source::Never(NoAllocator);
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut never), None);

    let mut pool = FramePool::new();
    unsafe { pool.try_push(frame(0x3000)).unwrap() };
    let mut pooled: Source<NoAllocator> = Source::Pool(pool);
    assert_eq!(pooled.allocate_frame(), Some(frame(0x3000)));
    assert_eq!(pooled.allocate_frame(), None);

    let mut custom = Source::Custom { label: "never", inner: NoAllocator };
    assert_eq!(FrameAllocator::<Size4KiB>::allocate_frame(&mut custom), None);
    if let Source::Custom { label, .. } = custom {
        assert_eq!(label, "never");
    }

    // `FrameDeallocator` is implemented when every variant's field is one
    // (`Source` has none: `NoAllocator` does not take frames back).
    let mut pools = Pools::Big(FramePool::new());
    unsafe { pools.deallocate_frame(frame(0x9000)) };
    assert_eq!(pools.allocate_frame(), Some(frame(0x9000)));
    let mut pools = Pools::Small(FramePool::new());
    unsafe { pools.deallocate_frame(frame(0xa000)) };
    assert_eq!(pools.allocate_frame(), Some(frame(0xa000)));
}
