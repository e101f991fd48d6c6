//! Allocators shared by several CPUs: allocation through `&self`.
//!
//! `x86_64`'s [`FrameAllocator`] takes `&mut self`: one owner at a time. A
//! kernel with several CPUs shares one allocator between them, and until now
//! that meant a lock around it (`spin::Mutex<Allocator>`) that every page
//! fault contends on. A [`SharedFrameAllocator`] allocates through `&self`,
//! synchronising inside (atomics, as in
//! [`AtomicBitmapAllocator`](super::AtomicBitmapAllocator)), so a
//! `static` of it is usable from every CPU at once.
//!
//! `map_to` and the rest of `x86_64` still want a `&mut impl
//! FrameAllocator<S>`. A [`SharedView`] is that: a copyable `&A` wrapper
//! (no lock; a plain reference at run time) that implements
//! [`FrameAllocator<S>`] and [`FrameDeallocator<S>`] for every page size `A`
//! supports. It is this crate's own type, so the user needs no impl of a
//! foreign trait for a foreign type (the orphan rule forbids the blanket
//! `impl FrameAllocator<S> for &A` that would otherwise be wanted).
//!
//! ```
//! use framealloc::alloc::{AtomicBitmapAllocator, FirmwareRegion, MemoryRegion,
//!     RegionKind::Usable, normalize};
//! use framealloc::alloc::shared::{SharedFrameAllocator, SharedView};
//! use framealloc::{FrameAllocator, PhysFrame, Size4KiB};
//! use core::sync::atomic::AtomicU64;
//!
//! // A `static` allocator, built empty at compile time, loaded at boot.
//! static STORAGE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
//! static FRAMES: AtomicBitmapAllocator<'static> = AtomicBitmapAllocator::new(&STORAGE);
//!
//! let firmware = [FirmwareRegion::new(0x20_0000, 0x40_0000, Usable)];
//! let mut regions = [MemoryRegion::default(); 4];
//! let (map, _) = normalize(&firmware, &mut regions, Default::default()).unwrap();
//! // SAFETY: an example: the frames are never touched, and nothing else
//! // manages them.
//! unsafe { FRAMES.load_map(&map) }.unwrap();
//!
//! // From any CPU, through `&self`:
//! let a: PhysFrame<Size4KiB> = FRAMES.allocate_frame().unwrap();
//! // Where x86_64 wants `&mut impl FrameAllocator<S>`:
//! let mut view = FRAMES.view();
//! let b: PhysFrame<Size4KiB> = view.allocate_frame().unwrap();
//! assert_ne!(a, b);
//! // Any shared allocator works the same way:
//! fn takes_frames(frames: &mut impl FrameAllocator<Size4KiB>) -> bool {
//!     frames.allocate_frame().is_some()
//! }
//! assert!(takes_frames(&mut SharedView::new(&FRAMES)));
//! ```
//!
//! ## For derives and wrappers
//!
//! A type that holds a shared allocator gets the forwarding impls from
//! `#[derive(FrameAllocator)]` with `#[frame_allocator(shared)]` on that
//! field: [`SharedFrameAllocator`] and [`SharedFrameDeallocator`] for the
//! type (batch methods included) and `FrameAllocator`/`FrameDeallocator`
//! for `&Type`. Written by hand, the impl is calls on the field, as the `&T`
//! impl below is for references. Either way the type gets its
//! [`SharedView`] for free: the view needs nothing beyond the trait.

use core::fmt;
use core::mem::MaybeUninit;

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size4KiB};

/// A frame allocator that allocates through a shared reference, so that
/// several CPUs can use it at once.
///
/// The `&self` counterpart of [`FrameAllocator`]. Implement it for every page
/// size the allocator hands out; [`SharedView`] then makes a
/// [`FrameAllocator`] of a `&Self`.
///
/// # Safety
///
/// The implementer promises what [`FrameAllocator`] asks for, under
/// concurrency: `allocate_frame` and `allocate_frames` return only unused
/// frames, and no frame is handed out twice — not to two callers racing on
/// different CPUs, not to one caller twice — unless it was deallocated in
/// between. `allocate_frames` initialises `out[..n]` for the `n` it returns
/// (`n <= out.len()`) and nothing else; so does `allocate_frames_near`.
pub unsafe trait SharedFrameAllocator<S: PageSize = Size4KiB> {
    /// Allocates a frame, or returns `None` if none is free.
    fn allocate_frame(&self) -> Option<PhysFrame<S>>;

    /// Allocates up to `out.len()` frames into `out[..n]` and returns `n`;
    /// fewer than asked only when the allocator runs out.
    ///
    /// The default calls [`allocate_frame`](Self::allocate_frame) once per
    /// frame; an allocator that can hand out a batch more cheaply (one
    /// atomic operation for a whole bitmap word) overrides it. Per-CPU
    /// caches refill through it.
    fn allocate_frames(&self, out: &mut [MaybeUninit<PhysFrame<S>>]) -> usize {
        let mut n = 0;
        for slot in out.iter_mut() {
            let Some(frame) = self.allocate_frame() else {
                break;
            };
            slot.write(frame);
            n += 1;
        }
        n
    }

    /// As [`allocate_frames`](Self::allocate_frames), for a caller that
    /// keeps a position of its own (one per CPU): an allocator that
    /// searches may start at `*cursor` and leave it where it stopped, so
    /// that callers with different cursors work on different memory and do
    /// not contend. The value means what the allocator makes of it (any
    /// `usize` must be accepted). The default ignores it; the atomic bitmap
    /// uses it; per-CPU caches refill through it.
    fn allocate_frames_near(
        &self,
        cursor: &mut usize,
        out: &mut [MaybeUninit<PhysFrame<S>>],
    ) -> usize {
        let _ = cursor;
        self.allocate_frames(out)
    }
}

/// The `&self` counterpart of [`FrameDeallocator`].
pub trait SharedFrameDeallocator<S: PageSize = Size4KiB> {
    /// Gives a frame back.
    ///
    /// An allocator that can tell a double free or a foreign frame refuses
    /// it without panicking and says so in its own way (a counter, an error
    /// method of its own).
    ///
    /// # Safety
    ///
    /// The frame must be unused: after the call it may be handed out again,
    /// to any CPU.
    unsafe fn deallocate_frame(&self, frame: PhysFrame<S>);

    /// Gives several frames back. The default calls
    /// [`deallocate_frame`](Self::deallocate_frame) once per frame;
    /// per-CPU caches drain through it.
    ///
    /// # Safety
    ///
    /// Every frame must be unused.
    unsafe fn deallocate_frames(&self, frames: &[PhysFrame<S>]) {
        for &frame in frames {
            // SAFETY: the caller guarantees every frame is unused.
            unsafe { self.deallocate_frame(frame) };
        }
    }
}

// SAFETY: forwards to `A`, whose implementer made the promise.
unsafe impl<S: PageSize, A: SharedFrameAllocator<S> + ?Sized> SharedFrameAllocator<S> for &A {
    #[inline]
    fn allocate_frame(&self) -> Option<PhysFrame<S>> {
        (**self).allocate_frame()
    }

    #[inline]
    fn allocate_frames(&self, out: &mut [MaybeUninit<PhysFrame<S>>]) -> usize {
        (**self).allocate_frames(out)
    }

    #[inline]
    fn allocate_frames_near(
        &self,
        cursor: &mut usize,
        out: &mut [MaybeUninit<PhysFrame<S>>],
    ) -> usize {
        (**self).allocate_frames_near(cursor, out)
    }
}

impl<S: PageSize, A: SharedFrameDeallocator<S> + ?Sized> SharedFrameDeallocator<S> for &A {
    #[inline]
    unsafe fn deallocate_frame(&self, frame: PhysFrame<S>) {
        // SAFETY: the caller guarantees the frame is unused.
        unsafe { (**self).deallocate_frame(frame) }
    }

    #[inline]
    unsafe fn deallocate_frames(&self, frames: &[PhysFrame<S>]) {
        // SAFETY: the caller guarantees every frame is unused.
        unsafe { (**self).deallocate_frames(frames) }
    }
}

/// A shared allocator seen as a [`FrameAllocator`]: what `map_to` and the
/// rest of `x86_64` accept.
///
/// A `&A` and nothing else: `Copy`, so every CPU (every call) makes its
/// own, and every method is an `#[inline]` forward to `A`. It implements [`FrameAllocator<S>`] for every
/// `S` with `A: SharedFrameAllocator<S>` and [`FrameDeallocator<S>`] for
/// every `S` with `A: SharedFrameDeallocator<S>`.
///
/// Being `Copy` does not let two views hand out one frame twice: every
/// allocation goes to the one shared allocator, which synchronises.
pub struct SharedView<'a, A: ?Sized> {
    allocator: &'a A,
}

impl<'a, A: ?Sized> SharedView<'a, A> {
    /// A [`FrameAllocator`] view of `allocator`.
    #[inline]
    #[must_use]
    pub const fn new(allocator: &'a A) -> Self {
        SharedView { allocator }
    }

    /// The shared allocator.
    #[inline]
    pub const fn allocator(self) -> &'a A {
        self.allocator
    }
}

impl<A: ?Sized> Clone for SharedView<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: ?Sized> Copy for SharedView<'_, A> {}

impl<A: ?Sized + fmt::Debug> fmt::Debug for SharedView<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedView").field(&self.allocator).finish()
    }
}

impl<'a, A: ?Sized> From<&'a A> for SharedView<'a, A> {
    fn from(allocator: &'a A) -> Self {
        SharedView::new(allocator)
    }
}

// SAFETY: forwards to `A::allocate_frame`, whose implementer promised unique,
// unused frames even when called through many references at once.
unsafe impl<S: PageSize, A: SharedFrameAllocator<S> + ?Sized> FrameAllocator<S>
    for SharedView<'_, A>
{
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        self.allocator.allocate_frame()
    }
}

impl<S: PageSize, A: SharedFrameDeallocator<S> + ?Sized> FrameDeallocator<S> for SharedView<'_, A> {
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        // SAFETY: the caller guarantees the frame is unused.
        unsafe { self.allocator.deallocate_frame(frame) }
    }
}
