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
///
/// It is deliberately neither `Clone` nor `Copy`: a copy of a closure that
/// yields "the next frame" would yield the same frames again.
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
#[must_use]
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
/// The two closures cannot both borrow the same state mutably; when they
/// share state (the usual case: a free list, a bitmap), use [`from_state`],
/// which passes the state to each closure, or a `RefCell`.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
/// use framealloc::{from_fns, FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
/// use framealloc::x86_64::PhysAddr;
///
/// // Allocate from a counter; send freed frames to a reclaim queue.
/// let (reclaim, freed) = mpsc::channel();
/// let mut next = 0x10_0000u64;
/// let mut alloc = unsafe {
///     // SAFETY: `next` only grows, so every frame is new.
///     from_fns(
///         || {
///             next += 4096;
///             Some(PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(next)))
///         },
///         |frame| reclaim.send(frame).unwrap(),
///     )
/// };
/// let frame = alloc.allocate_frame().unwrap();
/// // SAFETY: the frame was never used.
/// unsafe { alloc.deallocate_frame(frame) };
/// assert_eq!(freed.try_recv(), Ok(frame));
/// ```
#[inline]
#[must_use]
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

/// A frame allocator made of a state value and closures that take it.
///
/// Built by [`from_state`] or [`from_state_fns`]. Because each closure is
/// handed `&mut T`, allocation and deallocation can share one free list or
/// bitmap without a `RefCell`. Like [`FnAllocator`], it is not `Clone`.
pub struct StateAllocator<T, F, D = NoDealloc> {
    state: T,
    allocate: F,
    deallocate: D,
}

/// Turns a state value and an allocation closure taking `&mut state` into a
/// [`FrameAllocator`].
///
/// # Safety
///
/// As for [`from_fn`]: every frame `allocate` returns must be unused and must
/// not be returned again while it is in use.
///
/// # Examples
///
/// ```
/// use framealloc::{from_state, FrameAllocator, PhysFrame, Size4KiB};
/// use framealloc::x86_64::PhysAddr;
///
/// // SAFETY: the state only grows, so every frame is new.
/// let mut alloc = unsafe {
///     from_state(0x20_0000u64, |next| {
///         *next += 4096;
///         Some(PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(*next)))
///     })
/// };
/// assert_eq!(alloc.allocate_frame().unwrap().start_address().as_u64(), 0x20_1000);
/// assert_eq!(*alloc.state(), 0x20_1000);
/// ```
#[inline]
#[must_use]
pub unsafe fn from_state<S, T, F>(state: T, allocate: F) -> StateAllocator<T, F>
where
    S: PageSize,
    F: FnMut(&mut T) -> Option<PhysFrame<S>>,
{
    StateAllocator {
        state,
        allocate,
        deallocate: NoDealloc,
    }
}

/// Like [`from_state`], with a deallocation closure that also gets the state:
/// the result is a [`FrameAllocator`] and a [`FrameDeallocator`].
///
/// # Safety
///
/// As for [`from_fns`]: frames from `allocate` are unused and unique while in
/// use, and `deallocate` only makes frames available again that the
/// [`FrameDeallocator`] contract says are unused.
///
/// # Examples
///
/// ```
/// use framealloc::{from_state_fns, FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
/// use framealloc::x86_64::PhysAddr;
///
/// let free: Vec<PhysFrame<Size4KiB>> =
///     (1..=2).map(|i| PhysFrame::containing_address(PhysAddr::new(i * 4096))).collect();
/// // SAFETY: `free` holds distinct unused frames; freed frames go back to it.
/// let mut alloc = unsafe { from_state_fns(free, Vec::pop, Vec::push) };
/// let frame = alloc.allocate_frame().unwrap();
/// // SAFETY: the frame was never used.
/// unsafe { alloc.deallocate_frame(frame) };
/// assert_eq!(alloc.state().len(), 2);
/// assert_eq!(alloc.allocate_frame(), Some(frame));
/// ```
#[inline]
#[must_use]
pub unsafe fn from_state_fns<S, T, F, D>(
    state: T,
    allocate: F,
    deallocate: D,
) -> StateAllocator<T, F, D>
where
    S: PageSize,
    F: FnMut(&mut T) -> Option<PhysFrame<S>>,
    D: FnMut(&mut T, PhysFrame<S>),
{
    StateAllocator {
        state,
        allocate,
        deallocate,
    }
}

impl<T, F, D> StateAllocator<T, F, D> {
    /// The state the closures work on.
    pub fn state(&self) -> &T {
        &self.state
    }

    /// Returns the state, ending the allocator.
    pub fn into_state(self) -> T {
        self.state
    }
}

impl<T: fmt::Debug, F, D> fmt::Debug for StateAllocator<T, F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateAllocator")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

// SAFETY: built only by `from_state`/`from_state_fns`, whose callers promised
// that the closure returns unique, unused frames.
unsafe impl<S, T, F, D> FrameAllocator<S> for StateAllocator<T, F, D>
where
    S: PageSize,
    F: FnMut(&mut T) -> Option<PhysFrame<S>>,
{
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        (self.allocate)(&mut self.state)
    }
}

impl<S, T, F, D> FrameDeallocator<S> for StateAllocator<T, F, D>
where
    S: PageSize,
    D: FnMut(&mut T, PhysFrame<S>),
{
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        (self.deallocate)(&mut self.state, frame);
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
