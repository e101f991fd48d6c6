//! One item for every form of the macros, compiled under the workspace's
//! strictest lints (see the crate root). Nothing here runs; the run-time
//! behaviour is checked by the trybuild pass cases.

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FramePool, NoAllocator, PhysFrame, Size2MiB, Size4KiB, Tagged};

/// A single field needs no marker; a generic field gets a `where` bound.
#[derive(FrameAllocator)]
pub struct Single<A> {
    /// The allocator.
    pub inner: A,
}

/// The first snippet, with public fields.
#[derive(FrameAllocator)]
pub struct KernelFrames {
    /// The allocator.
    #[frame_allocator]
    pub inner: NoAllocator,
    /// Not an allocator.
    pub stats: u64,
}

/// A tuple struct; forwards `FrameDeallocator` too, for 2 MiB frames.
#[derive(FrameAllocator)]
pub struct HugePool(#[frame_allocator] pub FramePool<Size2MiB, 4>, pub u32);

/// Lifetimes: a concrete field type that borrows.
#[derive(FrameAllocator)]
pub struct PageTables<'a> {
    /// A tagged view.
    pub view: Tagged<'a, Boot, Purpose>,
}

/// Const generics, `where` clauses, a defaulted parameter, and a parameter
/// named like the derive's own page-size parameter.
#[derive(FrameAllocator)]
pub struct Pooled<'a, __S, const N: usize, B = NoAllocator>
where
    __S: Copy,
{
    /// The allocator.
    #[frame_allocator]
    pub pool: FramePool<Size4KiB, N>,
    /// Not an allocator.
    pub label: &'a str,
    /// Not an allocator.
    pub extra: (__S, B),
}

/// Enum dispatch: concrete, generic and marked fields; tuple and struct variants.
#[derive(FrameAllocator)]
pub enum AnyAllocator<'a, A> {
    /// Never allocates.
    Never(NoAllocator),
    /// A pool.
    Pool(FramePool<Size4KiB, 8>),
    /// Anything else.
    Other {
        /// The allocator.
        #[frame_allocator]
        inner: A,
        /// Not an allocator.
        label: &'a str,
    },
}

/// An enum without variants cannot be built; its impls are `match *self {}`.
#[derive(FrameAllocator)]
pub enum Uninhabited {}

/// What a [`Boot`] allocation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Page tables.
    PageTable,
    /// The kernel image.
    Kernel,
}

/// A bootloader-style allocator, with the seed's method.
#[derive(FrameAllocator)]
// SAFETY: `allocate_frame` only moves `next` upwards: each frame once.
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = Purpose, default = Purpose::PageTable))]
pub struct Boot {
    next: u64,
}

impl Boot {
    /// A new allocator, handing out frames from `start` upwards.
    #[must_use]
    pub const fn new(start: u64) -> Self {
        Self { next: start }
    }

    /// Allocates a frame for `purpose`.
    pub fn allocate_frame(&mut self, purpose: Purpose) -> Option<PhysFrame> {
        let _ = purpose;
        let frame = PhysFrame::from_start_address(PhysAddr::new(self.next)).ok()?;
        self.next += 4096;
        Some(frame)
    }
}

/// A tagged allocator for two sizes, with lifetimes and a generic method.
#[derive(FrameAllocator)]
// SAFETY: `take` moves each zone's base upwards: each frame once.
#[frame_allocator(unsafe tagged(method = take, tag = usize, sizes(Size4KiB, framealloc::Size2MiB)))]
pub struct Zones<'a> {
    bases: &'a mut [u64],
}

impl Zones<'_> {
    fn take<S: framealloc::PageSize>(&mut self, zone: usize) -> Option<PhysFrame<S>> {
        let base = self.bases.get_mut(zone)?;
        let frame = PhysFrame::from_start_address(PhysAddr::new(*base)).ok()?;
        *base += S::SIZE;
        Some(frame)
    }
}

/// The crate reached through another path, as a re-exporting crate would.
pub mod reexported {
    pub use framealloc as renamed;

    /// Forwards through `crate::forms::reexported::renamed`.
    #[derive(renamed::FrameAllocator)]
    #[frame_allocator(crate = crate::forms::reexported::renamed)]
    pub struct Renamed(pub renamed::NoAllocator);

    /// `frame_allocator!` with the same path.
    #[must_use]
    pub fn from_closure() -> impl renamed::FrameAllocator<renamed::Size4KiB> {
        // SAFETY: the closure never returns a frame.
        unsafe { renamed::frame_allocator!(|| None, crate = crate::forms::reexported::renamed) }
    }
}

/// `frame_allocator!` over a borrowed slice of frames.
pub fn from_slice(frames: &mut [Option<PhysFrame>]) -> impl FrameAllocator<Size4KiB> + '_ {
    // SAFETY: each slot is taken once; the caller owns the frames.
    unsafe { framealloc::frame_allocator!(|| frames.iter_mut().find_map(Option::take)) }
}

/// `frame_allocator!` with deallocation and an explicit size.
pub fn with_deallocation(
    pool: &mut FramePool<Size2MiB, 4>,
) -> impl framealloc::FrameDeallocator<Size2MiB> + FrameAllocator<Size2MiB> + '_ {
    let pool = core::cell::RefCell::new(pool);
    // SAFETY: frames come from and go back to the pool, which holds unused frames.
    unsafe {
        framealloc::frame_allocator!(
            move || pool.borrow_mut().allocate_frame(),
            |frame| {
                let _ = frame;
            },
            size = Size2MiB,
        )
    }
}

/// The holders kernels use: a `dyn` reference, a generic reference, boxes.
pub mod holders {
    use alloc::boxed::Box;
    use core::cell::RefCell;

    use framealloc::{FrameAllocator, FramePool, Size4KiB};

    /// Forwards through `&mut dyn FrameAllocator`.
    #[derive(FrameAllocator)]
    pub struct ByDyn<'a> {
        /// The allocator.
        pub inner: &'a mut dyn FrameAllocator<Size4KiB>,
    }

    /// Forwards through `&mut A`.
    #[derive(FrameAllocator)]
    pub struct ByRef<'a, A> {
        /// The allocator.
        pub inner: &'a mut A,
    }

    /// Forwards through `Box<dyn …>` and `Box<A>`, in an enum.
    #[derive(FrameAllocator)]
    pub enum Boxed {
        /// Any allocator.
        Dyn(Box<dyn FrameAllocator<Size4KiB> + Send>),
        /// A pool.
        Pool(Box<FramePool<Size4KiB, 4>>),
    }

    /// Locks a `RefCell` per call (the method form).
    #[derive(FrameAllocator)]
    pub struct Locked<'a> {
        /// The allocator, shared.
        #[frame_allocator(lock = borrow_mut)]
        pub inner: &'a RefCell<FramePool<Size4KiB, 4>>,
    }

    /// Locks an owned `RefCell` per call (the function form).
    #[derive(FrameAllocator)]
    pub struct LockedOwned<A> {
        /// The allocator.
        #[frame_allocator(lock = RefCell::borrow_mut)]
        pub inner: RefCell<A>,
        /// Not an allocator.
        pub label: &'static str,
    }
}

/// Forms with expressions the derive passes through untouched, and with
/// arguments from `macro_rules!`.
pub mod passed_through {
    use framealloc::x86_64::PhysAddr;
    use framealloc::{FrameAllocator, FramePool, PhysFrame, Size4KiB};

    const BIG: bool = false;

    /// A block as a const generic argument, an `if` as an array length.
    // Skipped: rustfmt's 2021 and 2024 styles (this file is compiled by both
    // packages) disagree on how to lay out the block argument.
    #[rustfmt::skip]
    #[derive(FrameAllocator)]
    pub struct Sized {
        /// The allocator.
        #[frame_allocator]
        pub pool: FramePool<Size4KiB, { if BIG { 64 } else { 8 } }>,
        /// Not an allocator.
        pub pad: [u8; if BIG { 64 } else { 8 }],
    }

    macro_rules! tagged_allocator {
        ($name:ident, $method:ident) => {
            /// Tagged, with the method named through `macro_rules!` and an
            /// `if` as the default tag.
            #[derive(FrameAllocator)]
            // SAFETY: the method moves `next` upwards: each frame once.
            #[frame_allocator(unsafe tagged(method = $method, tag = u8, default = if BIG { 1 } else { 0 }))]
            pub struct $name {
                next: u64,
            }

            impl $name {
                fn $method(&mut self, tag: u8) -> Option<PhysFrame> {
                    self.next += 4096 * (u64::from(tag) + 1);
                    PhysFrame::from_start_address(PhysAddr::new(self.next)).ok()
                }
            }
        };
    }

    tagged_allocator!(ByMacro, allocate);

    macro_rules! alloc_from {
        ($c:expr) => {
            // SAFETY: the caller's closure hands out each frame once.
            unsafe { framealloc::frame_allocator!($c) }
        };
    }

    /// A closure through `macro_rules!`, with a qualified path in it.
    pub fn qualified(pool: &mut FramePool<Size4KiB, 8>) -> impl FrameAllocator<Size4KiB> + '_ {
        alloc_from!(|| <FramePool<Size4KiB, 8> as FrameAllocator<Size4KiB>>::allocate_frame(pool))
    }
}

/// Fields marked `#[frame_allocator(shared)]`: `SharedFrameAllocator` and
/// `SharedFrameDeallocator` for the type, `FrameAllocator` and
/// `FrameDeallocator` for a shared reference to it.
pub mod shared {
    use framealloc::alloc::AtomicBitmapAllocator;
    use framealloc::{
        FrameAllocator, FrameDeallocator, PhysFrame, SharedFrameAllocator, SharedFrameDeallocator,
        SharedView, Size4KiB,
    };

    /// A concrete shared allocator beside other fields.
    #[derive(FrameAllocator)]
    pub struct Frames<'a> {
        /// The allocator.
        #[frame_allocator(shared)]
        pub bitmap: AtomicBitmapAllocator<'a>,
        /// Not an allocator.
        pub cpus: u32,
    }

    /// A generic one, in a tuple struct, with a `where` clause.
    #[derive(FrameAllocator)]
    pub struct Generic<A>(#[frame_allocator(shared)] pub A, pub u8)
    where
        A: Sync;

    /// A shared reference to a shared allocator, and a trait object.
    #[derive(FrameAllocator)]
    pub enum Either<'a, A: ?Sized> {
        /// Borrowed.
        Borrowed(#[frame_allocator(shared)] &'a A),
        /// A trait object.
        Object {
            /// The allocator.
            #[frame_allocator(shared)]
            allocator: &'a dyn SharedFrameAllocator<Size4KiB>,
        },
    }

    /// An enum with no variants.
    #[derive(FrameAllocator)]
    pub enum Never {}

    /// Every way to use the impls.
    pub fn uses(frames: &Frames<'_>, generic: &Generic<&Frames<'_>>) -> Option<PhysFrame> {
        let first: Option<PhysFrame> = frames.allocate_frame();
        let mut by_reference = frames;
        let second: Option<PhysFrame> = FrameAllocator::allocate_frame(&mut by_reference);
        let third: Option<PhysFrame> = SharedView::new(generic).allocate_frame();
        for frame in [first, second, third].into_iter().flatten() {
            // SAFETY: the frames were just allocated and are not used.
            unsafe { FrameDeallocator::deallocate_frame(&mut by_reference, frame) };
        }
        let mut out = [core::mem::MaybeUninit::<PhysFrame>::uninit(); 2];
        let taken = SharedFrameAllocator::<Size4KiB>::allocate_frames(generic, &mut out);
        let mut cursor = 0;
        let near =
            SharedFrameAllocator::<Size4KiB>::allocate_frames_near(frames, &mut cursor, &mut out);
        let _ = (taken, near);
        // SAFETY: no frames given back.
        unsafe { SharedFrameDeallocator::<Size4KiB>::deallocate_frames(frames, &[]) };
        frames.allocate_frame()
    }
}
