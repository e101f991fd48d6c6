//! [`FramePool`]: a fixed-capacity stack of preallocated frames.
//!
//! A pool is filled ahead of time (typically from a real allocator, while
//! allocating is still allowed) and then serves paths that must not call the
//! real allocator: an interrupt handler, a reclaim path, a mapping made while
//! the allocator's lock is held. It needs no heap, is `const`-constructible,
//! and takes frames back as a [`FrameDeallocator`].
//!
//! ## When the pool is full
//!
//! A pool of capacity `N` cannot hold an `N + 1`-th frame, and
//! [`FrameDeallocator::deallocate_frame`] cannot hand one back. Losing the
//! frame silently is not an option, so there are three ways to give frames
//! back, each explicit about it:
//!
//! - [`FramePool::try_deallocate`] returns [`PoolFull`] with the frame in it;
//! - [`FramePool::with_overflow`] gives a view whose deallocation sends
//!   the frames that do not fit to a fallback [`FrameDeallocator`];
//! - the plain [`FrameDeallocator`] impl, which cannot report anything,
//!   leaves the pool unchanged, does not panic (it may run inside
//!   `CleanUp` in a kernel), and counts the frame in
//!   [`FramePool::rejected`], so a frame the pool could not keep is never lost
//!   silently.
//!
//! A frame given back that is *already* in the pool (a double free) is
//! refused the same way: storing it twice would hand it out twice.

use core::fmt;

use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PageSize, PhysFrame};

/// A fixed-capacity, heap-free stack of unused frames of size `S`.
///
/// Allocation pops the most recently added frame in O(1); `try_push` and
/// `try_deallocate` push in O(1); deallocation through [`FrameDeallocator`]
/// is O(N), because it first checks that the frame is not pooled already.
///
/// # Examples
///
/// ```
/// use framealloc::{FrameAllocator, FramePool, NoAllocator, PhysFrame, Size4KiB};
/// use framealloc::x86_64::PhysAddr;
///
/// // Preallocate from a real allocator while that is allowed…
/// let mut next = 0x40_0000u64;
/// let mut real = unsafe {
///     // SAFETY: `next` only grows, so every frame is new.
///     framealloc::from_fn(|| {
///         next += 4096;
///         Some(PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(next)))
///     })
/// };
/// let mut pool = FramePool::<Size4KiB, 4>::new();
/// assert_eq!(pool.fill_from(&mut real), 4);
///
/// // …then allocate from the pool where the real allocator must not be called.
/// let frame = pool.allocate_frame().unwrap();
/// assert_eq!(pool.len(), 3);
/// unsafe {
///     // SAFETY: `frame` was never used.
///     pool.try_deallocate(frame).unwrap();
/// }
/// assert!(pool.is_full());
/// ```
///
/// A `static` pool:
///
/// ```
/// use framealloc::{FramePool, Size2MiB};
/// static EMPTY: FramePool<Size2MiB, 16> = FramePool::new();
/// assert_eq!(EMPTY.capacity(), 16);
/// ```
///
/// The pool is deliberately not `Clone`: a copy would hand out the same
/// frames again.
pub struct FramePool<S: PageSize, const N: usize> {
    /// `frames[..len]` are the pooled frames; the rest are placeholders.
    frames: [PhysFrame<S>; N],
    len: usize,
    /// Frames given back through `FrameDeallocator` that were not taken.
    rejected: usize,
}

/// The error of [`FramePool::try_deallocate`] and [`FramePool::try_push`]:
/// the pool is full. The frame that did not fit is returned in it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PoolFull<S: PageSize>(pub PhysFrame<S>);

impl<S: PageSize> fmt::Display for PoolFull<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame pool is full; frame at {:#x} was not taken",
            self.0.start_address().as_u64()
        )
    }
}

impl<S: PageSize> fmt::Debug for PoolFull<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolFull").field(&self.0).finish()
    }
}

impl<S: PageSize> core::error::Error for PoolFull<S> {}

impl<S: PageSize, const N: usize> FramePool<S, N> {
    /// The value of unused slots; never handed out.
    const PLACEHOLDER: PhysFrame<S> = match PhysFrame::from_start_address(PhysAddr::zero()) {
        Ok(frame) => frame,
        Err(_) => panic!("address 0 is aligned to every page size"),
    };

    /// An empty pool.
    #[must_use]
    pub const fn new() -> Self {
        FramePool {
            frames: [Self::PLACEHOLDER; N],
            len: 0,
            rejected: 0,
        }
    }

    /// A full pool holding `frames`. The last frame is allocated first.
    ///
    /// # Safety
    ///
    /// The frames must be distinct and unused, and stay unused until the pool
    /// hands them out: the pool will give them to whoever allocates from it.
    #[must_use]
    pub const unsafe fn from_frames(frames: [PhysFrame<S>; N]) -> Self {
        FramePool {
            frames,
            len: N,
            rejected: 0,
        }
    }

    /// How many frames the pool holds now.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the pool holds no frame.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the pool holds `N` frames.
    pub const fn is_full(&self) -> bool {
        self.len == N
    }

    /// The most frames the pool can hold: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// How many frames given back through [`FrameDeallocator`] the pool did
    /// not take, because it was full or already held the frame.
    ///
    /// A non-zero value after a reclaim means the pool was sized too small
    /// (those frames are no longer tracked by anyone) or a frame was freed
    /// twice. Use [`FramePool::with_overflow`] to route such frames elsewhere.
    pub const fn rejected(&self) -> usize {
        self.rejected
    }

    /// The frames in the pool, in the order they were added.
    pub fn frames(&self) -> &[PhysFrame<S>] {
        &self.frames[..self.len]
    }

    /// Adds a frame.
    ///
    /// # Errors
    ///
    /// Returns [`PoolFull`] with the frame if the pool is full; the pool is
    /// unchanged.
    ///
    /// # Safety
    ///
    /// The frame must be unused, not already in the pool, and must not be
    /// used until the pool hands it out.
    pub unsafe fn try_push(&mut self, frame: PhysFrame<S>) -> Result<(), PoolFull<S>> {
        match self.frames.get_mut(self.len) {
            Some(slot) => {
                *slot = frame;
                self.len += 1;
                Ok(())
            }
            None => Err(PoolFull(frame)),
        }
    }

    /// Gives a frame back to the pool, like
    /// [`FrameDeallocator::deallocate_frame`] but without panicking.
    ///
    /// # Errors
    ///
    /// Returns [`PoolFull`] with the frame if the pool is full.
    ///
    /// # Safety
    ///
    /// The frame must be unused (the [`FrameDeallocator`] contract) and not
    /// already in the pool.
    pub unsafe fn try_deallocate(&mut self, frame: PhysFrame<S>) -> Result<(), PoolFull<S>> {
        // SAFETY: the caller's promise is the one `try_push` asks for.
        unsafe { self.try_push(frame) }
    }

    /// Tops the pool up from `allocator` until it is full or the allocator
    /// runs dry. Returns how many frames were added.
    ///
    /// This is safe: a [`FrameAllocator`] only returns unused, unique frames.
    pub fn fill_from<A>(&mut self, allocator: &mut A) -> usize
    where
        A: FrameAllocator<S> + ?Sized,
    {
        let before = self.len;
        while self.len < N {
            match allocator.allocate_frame() {
                Some(frame) => {
                    self.frames[self.len] = frame;
                    self.len += 1;
                }
                None => break,
            }
        }
        self.len - before
    }

    /// Hands every pooled frame to `deallocator`, leaving the pool empty.
    /// Returns how many frames were handed over.
    pub fn drain_into<D>(&mut self, deallocator: &mut D) -> usize
    where
        D: FrameDeallocator<S> + ?Sized,
    {
        let count = self.len;
        while let Some(frame) = self.pop() {
            // SAFETY: frames in the pool are unused (the pool's invariant,
            // established by every way of putting a frame in).
            unsafe { deallocator.deallocate_frame(frame) };
        }
        count
    }

    /// A view that allocates from this pool and, when the pool is full,
    /// sends deallocated frames to `overflow` instead of panicking.
    #[must_use]
    pub fn with_overflow<'a, D>(&'a mut self, overflow: &'a mut D) -> WithOverflow<'a, S, N, D>
    where
        D: FrameDeallocator<S> + ?Sized,
    {
        WithOverflow {
            pool: self,
            overflow,
        }
    }

    /// Takes a frame given back through [`FrameDeallocator`]: refuses a
    /// frame already in the pool (`Ok(false)`), returns it when full.
    fn give_back(&mut self, frame: PhysFrame<S>) -> Result<bool, PoolFull<S>> {
        if self.frames().contains(&frame) {
            return Ok(false);
        }
        // SAFETY: the frame is unused (the `FrameDeallocator` contract the
        // caller of `give_back` holds) and, as just checked, not in the pool.
        unsafe { self.try_push(frame) }.map(|()| true)
    }

    #[inline]
    fn pop(&mut self) -> Option<PhysFrame<S>> {
        let new_len = self.len.checked_sub(1)?;
        self.len = new_len;
        Some(core::mem::replace(
            &mut self.frames[new_len],
            Self::PLACEHOLDER,
        ))
    }
}

impl<S: PageSize, const N: usize> Default for FramePool<S, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[expect(
    clippy::missing_fields_in_debug,
    reason = "`len` is the length of `frames`; placeholders are not shown"
)]
impl<S: PageSize, const N: usize> fmt::Debug for FramePool<S, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("capacity", &N)
            .field("frames", &self.frames())
            .field("rejected", &self.rejected)
            .finish()
    }
}

// SAFETY: every frame enters the pool through an unsafe constructor or push
// whose caller promised it unused and unique, or from a `FrameAllocator`; a
// popped frame leaves the pool, so it is handed out once.
unsafe impl<S: PageSize, const N: usize> FrameAllocator<S> for FramePool<S, N> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        self.pop()
    }
}

impl<S: PageSize, const N: usize> FrameDeallocator<S> for FramePool<S, N> {
    /// Puts the frame back into the pool, in O(N) (it checks that the frame
    /// is not pooled already).
    ///
    /// If the pool is full, or already holds the frame, the pool is left
    /// unchanged and [`FramePool::rejected`] goes up by one; this never
    /// panics. Use [`FramePool::try_deallocate`] or
    /// [`FramePool::with_overflow`] where more frames may come back than the
    /// pool holds.
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        if !matches!(self.give_back(frame), Ok(true)) {
            self.rejected += 1;
        }
    }
}

/// A [`FramePool`] with a fallback for frames that do not fit.
///
/// Made by [`FramePool::with_overflow`]. Allocates from the pool only;
/// deallocates into the pool, or into the fallback when the pool is full.
pub struct WithOverflow<'a, S: PageSize, const N: usize, D: ?Sized> {
    pool: &'a mut FramePool<S, N>,
    overflow: &'a mut D,
}

impl<S: PageSize, const N: usize, D: ?Sized> fmt::Debug for WithOverflow<'_, S, N, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithOverflow")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

// SAFETY: allocation is the pool's own.
unsafe impl<S: PageSize, const N: usize, D: ?Sized> FrameAllocator<S>
    for WithOverflow<'_, S, N, D>
{
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        self.pool.pop()
    }
}

impl<S: PageSize, const N: usize, D> FrameDeallocator<S> for WithOverflow<'_, S, N, D>
where
    D: FrameDeallocator<S> + ?Sized,
{
    /// Puts the frame into the pool, or, if the pool is full, hands it to the
    /// fallback. A frame already in the pool (a double free) is counted in
    /// [`FramePool::rejected`] and goes nowhere.
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        match self.pool.give_back(frame) {
            Ok(true) => {}
            Ok(false) => self.pool.rejected += 1,
            // SAFETY: `frame` is unused, as the caller guaranteed.
            Err(PoolFull(frame)) => unsafe { self.overflow.deallocate_frame(frame) },
        }
    }
}
