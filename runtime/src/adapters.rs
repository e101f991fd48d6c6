//! Closure adapters and [`NoAllocator`].
//!
//! `x86_64` once implemented `FrameAllocator` for every `FnMut() ->
//! Option<PhysFrame>` closure and removed it as unsound: a safe closure can
//! return the same frame twice. [`from_fn`] brings the convenience back with
//! the promise made explicit: it is an `unsafe fn`, so the caller's
//! `unsafe { … }` block is where "these frames are unique and unused" is
//! written down, once, at the place that knows it.

use core::fmt;

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PageSize, PhysFrame};

/// A frame allocator made of a closure, and optionally a deallocation closure.
///
/// Built by [`from_fn`] or [`from_fns`] (or the `frame_allocator!` macro).
/// It implements [`FrameAllocator<S>`] for the page size `S` that the
/// allocation closure returns, and [`FrameDeallocator<S>`] when it was built
/// with a deallocation closure. Both calls are direct calls of the closures:
/// once inlined, this type costs nothing over a hand-written impl.
#[derive(Clone, Copy)]
pub struct FnAllocator<F, D = NoDealloc> {
    allocate: F,
    deallocate: D,
}

/// The deallocation half of an [`FnAllocator`] built without one.
///
/// It does not implement [`FrameDeallocator`], so passing such an allocator
/// where deallocation is needed is a compile error rather than a leak.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDealloc;

/// Turns a closure into a [`FrameAllocator`].
///
/// The page size is inferred from the closure's return type
/// (`Option<PhysFrame<S>>`).
///
/// # Safety
///
/// Every frame the closure returns must be unused and must not be returned
/// again (by this closure or anything else) while it is in use. This is the
/// promise that [`FrameAllocator`]'s implementers make; by calling this
/// function you make it for your closure.
///
/// # Examples
///
/// A pool of preallocated frames, taken one by one:
///
/// ```
/// use framealloc::{from_fn, FrameAllocator, PhysFrame};
/// use framealloc::x86_64::PhysAddr;
///
/// let mut frames = [0x1000u64, 0x2000, 0x3000]
///     .map(|a| Some(PhysFrame::containing_address(PhysAddr::new(a))));
/// // SAFETY: the three frames are distinct, unused, and each is taken once.
/// let mut alloc = unsafe { from_fn(|| frames.iter_mut().find_map(Option::take)) };
/// let mut got = Vec::new();
/// while let Some(frame) = FrameAllocator::<framealloc::Size4KiB>::allocate_frame(&mut alloc) {
///     got.push(frame.start_address().as_u64());
/// }
/// assert_eq!(got, [0x1000, 0x2000, 0x3000]);
/// ```
#[inline]
pub unsafe fn from_fn<S, F>(allocate: F) -> FnAllocator<F>
where
    S: PageSize,
    F: FnMut() -> Option<PhysFrame<S>>,
{
    FnAllocator {
        allocate,
        deallocate: NoDealloc,
    }
}

/// Turns an allocation closure and a deallocation closure into a
/// [`FrameAllocator`] that is also a [`FrameDeallocator`].
///
/// # Safety
///
/// As for [`from_fn`]: every frame `allocate` returns must be unused and
/// unique while in use. In addition, a frame handed to `deallocate` may be
/// returned by `allocate` again, so `deallocate` must only make frames
/// available that the [`FrameDeallocator`] contract says are unused.
///
/// # Examples
///
/// ```
/// use framealloc::{from_fns, FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
/// use framealloc::x86_64::PhysAddr;
///
/// let mut free: Vec<PhysFrame<Size4KiB>> =
///     (1..=2).map(|i| PhysFrame::containing_address(PhysAddr::new(i * 4096))).collect();
/// let mut alloc = unsafe {
///     // SAFETY: `free` holds distinct unused frames; deallocated frames go back to it.
///     from_fns(|| free.pop(), |frame| free.push(frame))
/// };
/// let frame = alloc.allocate_frame().unwrap();
/// // SAFETY: the frame was never used.
/// unsafe { alloc.deallocate_frame(frame) };
/// assert_eq!(alloc.allocate_frame(), Some(frame));
/// ```
#[inline]
pub unsafe fn from_fns<S, F, D>(allocate: F, deallocate: D) -> FnAllocator<F, D>
where
    S: PageSize,
    F: FnMut() -> Option<PhysFrame<S>>,
    D: FnMut(PhysFrame<S>),
{
    FnAllocator {
        allocate,
        deallocate,
    }
}

impl<F, D> FnAllocator<F, D> {
    /// Returns the closures this allocator was built from.
    pub fn into_inner(self) -> (F, D) {
        (self.allocate, self.deallocate)
    }
}

impl<F, D> fmt::Debug for FnAllocator<F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAllocator").finish_non_exhaustive()
    }
}

// SAFETY: `FnAllocator` can only be built by `from_fn`/`from_fns`, whose
// callers promised that the closure returns unique, unused frames.
unsafe impl<S, F, D> FrameAllocator<S> for FnAllocator<F, D>
where
    S: PageSize,
    F: FnMut() -> Option<PhysFrame<S>>,
{
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        (self.allocate)()
    }
}

impl<S, F, D> FrameDeallocator<S> for FnAllocator<F, D>
where
    S: PageSize,
    D: FnMut(PhysFrame<S>),
{
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        (self.deallocate)(frame);
    }
}

/// A frame allocator that never hands out a frame.
///
/// For paths that must not allocate: reclaim code that must not recurse into
/// the allocator, memory-pressure handling, or a mapping call where every
/// page table is known to exist already. With it, `x86_64`'s `map_to` returns
/// `MapToError::FrameAllocationFailed` instead of allocating.
///
/// It implements [`FrameAllocator<S>`] for every page size. It deliberately
/// does not implement [`FrameDeallocator`]: a frame given to it would be lost.
///
/// ```
/// use framealloc::{FrameAllocator, NoAllocator, Size2MiB, Size4KiB};
///
/// let mut none = NoAllocator;
/// assert!(FrameAllocator::<Size4KiB>::allocate_frame(&mut none).is_none());
/// assert!(FrameAllocator::<Size2MiB>::allocate_frame(&mut none).is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NoAllocator;

// SAFETY: never returns a frame, so it never returns one twice.
unsafe impl<S: PageSize> FrameAllocator<S> for NoAllocator {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        None
    }
}
