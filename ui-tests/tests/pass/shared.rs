//! `#[frame_allocator(shared)]`: a struct, an enum, generics and `&A`
//! fields implement `SharedFrameAllocator`/`SharedFrameDeallocator`, and a
//! shared reference to them `FrameAllocator`/`FrameDeallocator`, under
//! strict lints.
#![deny(warnings, missing_docs, unsafe_op_in_unsafe_fn, unused_qualifications, unused_results)]
#![deny(rust_2018_idioms, unreachable_pub, missing_debug_implementations)]

use core::sync::atomic::AtomicU64;

use framealloc::alloc::{AtomicBitmapAllocator, FirmwareRegion, MemoryRegion, RegionKind, normalize};
use framealloc::{
    FrameAllocator, FrameDeallocator, PhysFrame, SharedFrameAllocator, SharedFrameDeallocator,
    SharedView, Size2MiB, Size4KiB,
};

/// The derives, in a module that forbids unsafe code: the forwarding
/// impls' promise is the field's.
#[forbid(unsafe_code)]
pub mod derived {
    use framealloc::alloc::AtomicBitmapAllocator;
    use framealloc::FrameAllocator;

    /// A concrete shared allocator beside other state.
    #[derive(Debug, FrameAllocator)]
    pub struct Kernel<'a> {
        /// The allocator.
        #[frame_allocator(shared)]
        pub frames: AtomicBitmapAllocator<'a>,
        /// Not an allocator.
        pub cpus: u32,
    }

    /// Generic, with the marker on the only field.
    #[derive(Debug, FrameAllocator)]
    pub struct Wrap<A: ?Sized>(#[frame_allocator(shared)] pub A);

    /// Borrowed shared allocators, one per variant.
    #[derive(Debug, FrameAllocator)]
    pub enum Source<'a, A> {
        /// A reference to the kernel's.
        Kernel(#[frame_allocator(shared)] &'a Kernel<'a>),
        /// Another one.
        Other {
            /// The allocator.
            #[frame_allocator(shared)]
            allocator: A,
            /// Not an allocator.
            name: &'static str,
        },
    }
}

use derived::{Kernel, Source, Wrap};

fn takes(frames: &mut impl FrameAllocator<Size4KiB>) -> Option<PhysFrame> {
    frames.allocate_frame()
}

fn main() {
    static STORAGE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
    let firmware = [FirmwareRegion::new(0x20_0000, 0x40_0000, RegionKind::Usable)];
    let mut regions = [MemoryRegion::default(); 4];
    let (map, _) = normalize(&firmware, &mut regions, Default::default()).unwrap();
    let kernel = Kernel { frames: AtomicBitmapAllocator::new(&STORAGE), cpus: 1 };
    // SAFETY: the frames are never touched and managed by nothing else.
    unsafe { kernel.frames.load_map(&map) }.unwrap();
    let wrap = Wrap(&kernel);
    let source = Source::Other { allocator: &wrap, name: "wrap" };

    let a = takes(&mut SharedView::new(&kernel)).unwrap();
    let b = takes(&mut &kernel).unwrap();
    let c = takes(&mut &source).unwrap();
    let d = takes(&mut SharedView::new(&Source::<&Kernel<'_>>::Kernel(&kernel))).unwrap();
    let huge: PhysFrame<Size2MiB> = SharedFrameAllocator::allocate_frame(&wrap).unwrap();
    let frames = [a, b, c, d];
    for (i, x) in frames.iter().enumerate() {
        assert!(frames[i + 1..].iter().all(|y| x != y));
    }
    assert_eq!(kernel.frames.free_frames(), 1024 - 4 - 512);
    // Unsized: a trait object behind the generic field.
    let object: &Wrap<dyn SharedFrameAllocator<Size4KiB>> = &Wrap(&kernel);
    let mut object = object;
    let e = takes(&mut object).unwrap();
    assert!(!frames.contains(&e));
    // Back through the derived deallocators.
    // SAFETY: the frames were allocated above and are unused.
    unsafe {
        SharedFrameDeallocator::deallocate_frames(&source, &frames);
        FrameDeallocator::deallocate_frame(&mut &wrap, huge);
        SharedFrameDeallocator::<Size4KiB>::deallocate_frame(&kernel, e);
    }
    assert_eq!(kernel.frames.free_frames(), 1024);
    assert_eq!(kernel.frames.rejected_deallocations(), 0);
    if let Source::Other { name, .. } = source {
        assert_eq!(name, "wrap");
    }
    assert_eq!(kernel.cpus, 1);
}
