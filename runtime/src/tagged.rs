//! Allocators whose allocation takes an argument.
//!
//! A bootloader allocates frames *for a purpose* (`PageTable`, `Kernel`,
//! `Bootloader`…) and records it in the memory map it hands to the kernel; a
//! kernel may allocate from a zone or with GFP-like flags. Such an allocator
//! implements [`TaggedFrameAllocator`], and [`tagged`](TaggedFrameAllocator::tagged)
//! fixes the argument, giving a plain [`FrameAllocator`] that `map_to` accepts:
//!
//! ```
//! use framealloc::{FrameAllocator, PhysFrame, Size4KiB, TaggedFrameAllocator};
//! use framealloc::x86_64::PhysAddr;
//!
//! #[derive(Clone, Copy, Debug, PartialEq)]
//! enum Purpose { PageTable, Kernel }
//!
//! struct BootAllocator { next: u64, log: Vec<(u64, Purpose)> }
//!
//! // SAFETY: `next` only grows, so every frame is handed out once.
//! unsafe impl TaggedFrameAllocator for BootAllocator {
//!     type Tag = Purpose;
//!     fn allocate_tagged(&mut self, purpose: Purpose) -> Option<PhysFrame<Size4KiB>> {
//!         let frame = PhysFrame::containing_address(PhysAddr::new(self.next));
//!         self.log.push((self.next, purpose));
//!         self.next += 4096;
//!         Some(frame)
//!     }
//! }
//!
//! let mut boot = BootAllocator { next: 0x20_0000, log: Vec::new() };
//! // "Allocate page-table frames": one expression, no wrapper type.
//! let mut tables = boot.tagged(Purpose::PageTable);
//! let frame = tables.allocate_frame().unwrap();
//! assert_eq!(frame.start_address().as_u64(), 0x20_0000);
//! assert_eq!(boot.log, [(0x20_0000, Purpose::PageTable)]);
//! ```

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size4KiB};

/// An allocator whose allocation takes a tag: a region type, a zone, flags.
///
/// The page size defaults to 4 KiB. Implement it for each size your
/// allocator can hand out; [`tagged`](Self::tagged) then turns it into a
/// [`FrameAllocator`] for a fixed tag.
///
/// # Safety
///
/// The same promise as [`FrameAllocator`]: `allocate_tagged` returns only
/// unused frames, and never a frame that is still in use, whatever the tag.
pub unsafe trait TaggedFrameAllocator<S: PageSize = Size4KiB> {
    /// What an allocation is told: a region type, a zone, a set of flags.
    ///
    /// It is cloned for each allocation made through a [`Tagged`] view.
    type Tag: Clone;

    /// Allocates a frame for `tag`.
    fn allocate_tagged(&mut self, tag: Self::Tag) -> Option<PhysFrame<S>>;

    /// A [`FrameAllocator`] view that allocates every frame with `tag`.
    ///
    /// The view borrows `self` mutably for as long as it lives; lifetimes are
    /// inferred, so it can be passed straight to `map_to`:
    /// `table.map_to(page, frame, flags, &mut boot.tagged(Purpose::PageTable))`.
    ///
    /// If the type implements this trait for several page sizes, the call is
    /// ambiguous; write [`Tagged::new(&mut alloc, tag)`](Tagged::new) instead.
    #[inline]
    #[must_use]
    fn tagged(&mut self, tag: Self::Tag) -> Tagged<'_, Self, Self::Tag> {
        Tagged {
            allocator: self,
            tag,
        }
    }
}

/// A tagged allocator with its tag fixed: a [`FrameAllocator`] for every page
/// size `S` for which `A: TaggedFrameAllocator<S, Tag = T>`.
///
/// Made by [`TaggedFrameAllocator::tagged`] or [`Tagged::new`]. If `A` is also
/// a [`FrameDeallocator<S>`], so is the view (deallocation takes no tag).
#[derive(Debug)]
pub struct Tagged<'a, A: ?Sized, T> {
    allocator: &'a mut A,
    tag: T,
}

impl<'a, A: ?Sized, T> Tagged<'a, A, T> {
    /// A view of `allocator` that allocates every frame with `tag`.
    #[inline]
    #[must_use]
    pub fn new(allocator: &'a mut A, tag: T) -> Self {
        Tagged { allocator, tag }
    }

    /// The tag this view allocates with.
    #[inline]
    pub fn tag(&self) -> &T {
        &self.tag
    }

    /// Changes the tag for later allocations.
    #[inline]
    pub fn set_tag(&mut self, tag: T) {
        self.tag = tag;
    }

    /// The underlying allocator.
    #[inline]
    pub fn allocator(&mut self) -> &mut A {
        self.allocator
    }
}

// SAFETY: forwards to `A::allocate_tagged`, whose implementer made the
// `FrameAllocator` promise for every tag.
unsafe impl<S, A, T> FrameAllocator<S> for Tagged<'_, A, T>
where
    S: PageSize,
    A: TaggedFrameAllocator<S, Tag = T> + ?Sized,
    T: Clone,
{
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        self.allocator.allocate_tagged(self.tag.clone())
    }
}

impl<S, A, T> FrameDeallocator<S> for Tagged<'_, A, T>
where
    S: PageSize,
    A: FrameDeallocator<S> + ?Sized,
{
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        // SAFETY: the caller guarantees that `frame` is unused.
        unsafe { self.allocator.deallocate_frame(frame) }
    }
}
