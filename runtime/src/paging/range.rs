//! Range operations: one walk per table, one flush decision per range.
//!
//! Every range operation behaves exactly like a loop of the single-page
//! operation over the range that stops at the first error, but reads each
//! parent entry once per table instead of once per page and fills
//! consecutive entries of a table in one pass.
//!
//! # Partial failure
//!
//! When page `k` of the range fails, pages `0..k` stay done, page `k` and
//! the rest are untouched, and the error is a [`RangeError`] with
//! `done = k` and the error the single-page operation would have returned
//! for page `k`. No entry is half-written, and no page-table frame leaks:
//! tables are created only for a page that is then mapped (frames taken
//! before an allocator ran dry become spares, see
//! [`spare_frames`](RecursivePageTable::spare_frames)). The TLB
//! invalidation the done part needs has already been performed when the
//! error is returned, so an error carries no flush token.

use core::fmt;

use x86_64::structures::paging::frame::PhysFrameRange;
use x86_64::structures::paging::mapper::{FlagUpdateError, MapToError, UnmapError};
use x86_64::structures::paging::page::PageRange;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageSize, PageTableFlags, PhysFrame, Size1GiB,
    Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::addr::{HOLE, LOW_48, sign_extend};
use super::entry::{ADDR_MASK, GLOBAL, HUGE, leaf_bits};
use super::flush::{FlushScope, RangeFlush};
use super::map::{Allocated, Consecutive, DataFrames, MapFail, MaxPageSize, Split, pieces};
use super::{Backend, EntrySize, RecursivePageTable};

/// Why a range operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError<E> {
    /// The range starts in the lower half of the address space and ends in
    /// the upper half, so it contains the non-canonical addresses between
    /// them, which are not pages. Nothing was done.
    CrossesCanonicalHole {
        /// Start of the range.
        start: VirtAddr,
        /// End of the range (exclusive).
        end: VirtAddr,
    },
    /// The operation stopped at a page: `done` pages from the start of the
    /// range were processed (and stay so), page `done` failed with `error`,
    /// the rest were not touched.
    Stopped {
        /// Pages processed before the failing one (4 KiB pages for
        /// [`map_range_mixed`](RecursivePageTable::map_range_mixed)).
        done: u64,
        /// What the single-page operation returned for page `done`.
        error: E,
    },
}

impl<E> RangeError<E> {
    /// Pages processed before the failure (0 for
    /// [`CrossesCanonicalHole`](Self::CrossesCanonicalHole)).
    pub fn done(&self) -> u64 {
        match self {
            RangeError::CrossesCanonicalHole { .. } => 0,
            RangeError::Stopped { done, .. } => *done,
        }
    }

    /// The single-page error of a [`Stopped`](Self::Stopped) operation.
    pub fn into_error(self) -> Option<E> {
        match self {
            RangeError::CrossesCanonicalHole { .. } => None,
            RangeError::Stopped { error, .. } => Some(error),
        }
    }
}

impl<E: fmt::Debug> fmt::Display for RangeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::CrossesCanonicalHole { start, end } => write!(
                f,
                "range {:#x}..{:#x} crosses the non-canonical hole",
                start.as_u64(),
                end.as_u64()
            ),
            RangeError::Stopped { done, error } => {
                write!(f, "range operation stopped after {done} pages: {error:?}")
            }
        }
    }
}

impl<E: fmt::Debug> core::error::Error for RangeError<E> {}

/// Start (as a 48-bit offset) and length in pages of a page range, or the
/// error for a range that crosses the canonical hole.
#[inline]
fn span<S: PageSize, E>(pages: PageRange<S>) -> Result<(u64, u64), RangeError<E>> {
    let start = pages.start.start_address().as_u64();
    let end = pages.end.start_address().as_u64();
    if end <= start {
        return Ok((start & LOW_48, 0));
    }
    if start < HOLE && end > HOLE {
        return Err(RangeError::CrossesCanonicalHole {
            start: pages.start.start_address(),
            end: pages.end.start_address(),
        });
    }
    let count = ((end & LOW_48) - (start & LOW_48)) / S::SIZE;
    Ok((start & LOW_48, count))
}

/// The frame named by a used entry (for `PageAlreadyMapped`).
fn in_entry<S: PageSize>(_: u64, entry: u64) -> PhysFrame<S> {
    PhysFrame::containing_address(PhysAddr::new(entry & ADDR_MASK))
}

/// Refuses, before any change, a frame range shorter than `count` pages.
#[inline]
fn enough_frames<S: PageSize>(
    frames: PhysFrameRange<S>,
    count: u64,
) -> Result<(), RangeError<MapToError<S>>> {
    let frame_count = if frames.end > frames.start {
        (frames.end.start_address() - frames.start.start_address()) / S::SIZE
    } else {
        0
    };
    if frame_count < count {
        return Err(RangeError::Stopped {
            done: 0,
            error: MapToError::FrameAllocationFailed,
        });
    }
    Ok(())
}

impl<B: Backend> RecursivePageTable<B> {
    /// Maps each page of `pages` to the frame at the same position of
    /// `frames`, with `flags` (parents as in [`map_to`](Self::map_to)),
    /// creating tables with `allocator`. The [`RangeFlush`] is one decision
    /// for the range (see [`FLUSH_ALL_THRESHOLD`](super::FLUSH_ALL_THRESHOLD)).
    ///
    /// # Errors
    ///
    /// [`RangeError`] with the number of pages mapped and the error
    /// [`map_to`](Self::map_to) gave for the next page (see the module
    /// docs for partial failure). If `frames` is shorter than `pages`,
    /// nothing is mapped and the error is `FrameAllocationFailed`.
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to), for every page.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "emu")] {
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::RecursivePageTable;
    /// use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    ///
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let machine = Machine::with_recursive_table(PageTableIndex::new(510), l4).unwrap();
    /// let mut table = RecursivePageTable::new(machine, PageTableIndex::new(510)).unwrap();
    /// let mut next = 0x10_0000u64; // page-table frames
    /// // SAFETY: every call yields a fresh frame.
    /// let mut tables = unsafe { framealloc::from_fn(|| { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) }) };
    ///
    /// let start = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    /// let first = PhysFrame::containing_address(PhysAddr::new(0x800_0000));
    /// let frames = PhysFrame::range(first, first + 1000);
    /// // SAFETY: emulated memory.
    /// let flush = unsafe { table.map_range(Page::range(start, start + 1000), frames, F::PRESENT | F::WRITABLE, &mut tables) }.unwrap();
    /// flush.flush(); // fresh entries: nothing to invalidate
    /// assert_eq!(table.translate_page(start + 999).ok(), Some(first + 999));
    /// # }
    /// ```
    pub unsafe fn map_range<S: EntrySize, A>(
        &mut self,
        pages: PageRange<S>,
        frames: PhysFrameRange<S>,
        flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<RangeFlush<'_, B>, RangeError<MapToError<S>>>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let (start48, count) = span(pages)?;
        enough_frames(frames, count)?;
        let first = frames.start.start_address().as_u64();
        let mut source = Consecutive {
            first,
            tables: allocator,
        };
        self.finish_map::<S, _>(start48, count, flags, &mut source, |done, _| {
            PhysFrame::containing_address(PhysAddr::new(first + done * S::SIZE))
        })
    }

    /// Maps each page of `pages` to a frame taken from `allocator` (which
    /// also supplies page tables); [`mappings`](Self::mappings) reads them back.
    ///
    /// # Errors
    ///
    /// As [`map_range`](Self::map_range); `FrameAllocationFailed` also when a
    /// page's own frame could not be allocated, and `PageAlreadyMapped`
    /// names the frame the page is already mapped to.
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to), for every page.
    pub unsafe fn map_range_allocated<S: EntrySize, A>(
        &mut self,
        pages: PageRange<S>,
        flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<RangeFlush<'_, B>, RangeError<MapToError<S>>>
    where
        A: FrameAllocator<S> + FrameAllocator<Size4KiB> + ?Sized,
    {
        let (start48, count) = span(pages)?;
        let mut source = Allocated { allocator };
        self.finish_map::<S, _>(start48, count, flags, &mut source, in_entry)
    }

    /// [`map_range_allocated`](Self::map_range_allocated) with two
    /// allocators: every page's frame comes from `data`, page tables from
    /// `tables` (see [`map_allocated_with`](Self::map_allocated_with)).
    ///
    /// # Errors
    ///
    /// As [`map_range_allocated`](Self::map_range_allocated).
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to), for every page.
    pub unsafe fn map_range_allocated_with<S: EntrySize, D, T>(
        &mut self,
        pages: PageRange<S>,
        flags: PageTableFlags,
        data: &mut D,
        tables: &mut T,
    ) -> Result<RangeFlush<'_, B>, RangeError<MapToError<S>>>
    where
        D: FrameAllocator<S> + ?Sized,
        T: FrameAllocator<Size4KiB> + ?Sized,
    {
        let (start48, count) = span(pages)?;
        let mut source = Split { data, tables };
        self.finish_map::<S, _>(start48, count, flags, &mut source, in_entry)
    }

    /// Runs a map and turns its outcome into a token or an error.
    fn finish_map<S: EntrySize, D: DataFrames<S>>(
        &mut self,
        start48: u64,
        count: u64,
        flags: PageTableFlags,
        source: &mut D,
        already_mapped: impl FnOnce(u64, u64) -> PhysFrame<S>,
    ) -> Result<RangeFlush<'_, B>, RangeError<MapToError<S>>> {
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(RangeError::Stopped {
                done: 0,
                error: MapToError::ParentEntryHugePage,
            });
        };
        let want = Self::parent_bits_for_leaf(flags);
        match self.map_run::<S, D>(start48, count, bits, want, source) {
            // Only unused entries were filled: nothing cached can be stale
            // (parent upgrades were invalidated as they were made).
            Ok(()) => Ok(RangeFlush::new(self.backend_mut(), FlushScope::Nothing)),
            Err((done, fail)) => {
                let error = match fail {
                    MapFail::Huge => MapToError::ParentEntryHugePage,
                    MapFail::NoFrame => MapToError::FrameAllocationFailed,
                    MapFail::AlreadyMapped(entry) => {
                        MapToError::PageAlreadyMapped(already_mapped(done, entry))
                    }
                };
                Err(RangeError::Stopped { done, error })
            }
        }
    }

    /// Maps `pages` to `frames` with the largest pages up to `largest`: a
    /// 1 GiB (else 2 MiB, else 4 KiB) page wherever the virtual and physical
    /// addresses are both aligned to it and that much remains.
    ///
    /// # Errors
    ///
    /// As [`map_range`](Self::map_range), with `done` counted in 4 KiB pages
    /// and the error typed for 4 KiB pages whatever the failing page's size:
    /// `PageAlreadyMapped` names its first frame (`frames.start + done`).
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to), for every page.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "emu")] {
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::{MaxPageSize, RecursivePageTable};
    /// use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    ///
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let mut table = RecursivePageTable::new(Machine::with_recursive_table(PageTableIndex::new(510), l4).unwrap(), PageTableIndex::new(510)).unwrap();
    /// let mut next = 0x10_0000u64;
    /// // SAFETY: every call yields a fresh frame.
    /// let mut tables = unsafe { framealloc::from_fn(|| { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) }) };
    ///
    /// // 4 MiB + 8 KiB from 0x3ff000: one 4 KiB page, two 2 MiB pages, one 4 KiB page.
    /// let start = Page::containing_address(VirtAddr::new(0x3f_f000));
    /// let first = PhysFrame::containing_address(PhysAddr::new(0x1f_f000));
    /// let n = 1 + 1024 + 1;
    /// // SAFETY: emulated memory.
    /// unsafe { table.map_range_mixed(Page::range(start, start + n), PhysFrame::range(first, first + n), F::PRESENT | F::WRITABLE, MaxPageSize::Size1GiB, &mut tables) }
    ///     .unwrap()
    ///     .flush(); // fresh entries: nothing to invalidate
    /// assert_eq!(table.mappings().map(|m| m.size).collect::<Vec<_>>(), [4096, 2 << 20, 2 << 20, 4096]);
    /// # }
    /// ```
    pub unsafe fn map_range_mixed<A>(
        &mut self,
        pages: PageRange<Size4KiB>,
        frames: PhysFrameRange<Size4KiB>,
        flags: PageTableFlags,
        largest: MaxPageSize,
        allocator: &mut A,
    ) -> Result<RangeFlush<'_, B>, RangeError<MapToError<Size4KiB>>>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let (start48, count) = span(pages)?;
        enough_frames(frames, count)?;
        if flags.contains(PageTableFlags::HUGE_PAGE) {
            return Err(RangeError::Stopped {
                done: 0,
                error: MapToError::ParentEntryHugePage,
            });
        }
        let bits = flags.bits() & !ADDR_MASK;
        let start = pages.start.start_address();
        let end = VirtAddr::new_truncate(sign_extend(start48 + count * Size4KiB::SIZE));
        let phys = frames.start.start_address();
        let want = Self::parent_bits_for_leaf(flags);
        let mut done4k = 0;
        let mut failure = None;
        for (addr, level, n) in pieces(start, end, phys, largest) {
            let pos48 = addr.as_u64() & LOW_48;
            let first = phys.as_u64() + (pos48 - start48);
            let result = self.map_piece(level, pos48, n, first, bits, want, allocator);
            let per = 1u64 << (9 * (level as u64 - 1));
            match result {
                Ok(()) => done4k += n * per,
                Err((done, fail)) => {
                    done4k += done * per;
                    failure = Some(fail);
                    break;
                }
            }
        }
        match failure {
            // Only unused entries were filled: nothing to invalidate.
            None => Ok(RangeFlush::new(self.backend_mut(), FlushScope::Nothing)),
            Some(fail) => Err(RangeError::Stopped {
                done: done4k,
                error: fail
                    .into_error(|_| PhysFrame::containing_address(phys + done4k * Size4KiB::SIZE)),
            }),
        }
    }

    /// One piece of a mixed map: `n` pages at `level` from `pos48`.
    #[allow(
        clippy::too_many_arguments,
        reason = "private helper of map_range_mixed"
    )]
    fn map_piece<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        level: usize,
        pos48: u64,
        n: u64,
        first: u64,
        bits: u64,
        want: u64,
        allocator: &mut A,
    ) -> Result<(), (u64, MapFail)> {
        let mut source = Consecutive {
            first,
            tables: allocator,
        };
        match level {
            3 => self.map_run::<Size1GiB, _>(pos48, n, bits | HUGE, want, &mut source),
            2 => self.map_run::<Size2MiB, _>(pos48, n, bits | HUGE, want, &mut source),
            _ => self.map_run::<Size4KiB, _>(pos48, n, bits, want, &mut source),
        }
    }

    // ------------------------------------------------------------ unmap

    /// Unmaps every page of `pages`, passing each frame to `on_frame`. The
    /// frames stay reachable through the TLB until the token is flushed (or
    /// use [`unmap_range_and_free`](Self::unmap_range_and_free)).
    ///
    /// # Errors
    ///
    /// [`RangeError`] with the pages unmapped and the error
    /// [`unmap`](Self::unmap) gave for the next page; the unmapped part has
    /// been flushed already.
    pub fn unmap_range<S: EntrySize>(
        &mut self,
        pages: PageRange<S>,
        mut on_frame: impl FnMut(PhysFrame<S>),
    ) -> Result<RangeFlush<'_, B>, RangeError<UnmapError>> {
        let (start48, count) = span(pages)?;
        let start = VirtAddr::new_truncate(sign_extend(start48));
        let mut global = false;
        let result = self.unmap_run::<S>(start48, count, false, &mut global, &mut on_frame);
        self.finish_rewrite::<S, _>(start, count, global, result)
    }

    /// Unmaps every page of `pages`, invalidates the TLB, then hands every
    /// frame to `deallocator` (so no stale translation reaches a frame with a
    /// new owner); with `reclaim`, also frees the tables that became empty,
    /// as [`clean_up_addr_range`](Self::clean_up_addr_range). Returns the
    /// number of tables freed.
    ///
    /// # Errors
    ///
    /// As [`unmap_range`](Self::unmap_range); the frames of the pages done
    /// are freed (and tables reclaimed) before the error is returned.
    ///
    /// # Safety
    ///
    /// The frames mapped in the range are owned by the mapping and not used
    /// through any other mapping; with `reclaim`, as
    /// [`clean_up`](Self::clean_up).
    pub unsafe fn unmap_range_and_free<S: EntrySize, D>(
        &mut self,
        pages: PageRange<S>,
        deallocator: &mut D,
        reclaim: bool,
    ) -> Result<usize, RangeError<UnmapError>>
    where
        D: FrameDeallocator<S> + FrameDeallocator<Size4KiB> + ?Sized,
    {
        let (start48, count) = span(pages)?;
        let start = VirtAddr::new_truncate(sign_extend(start48));
        let mut global = false;
        let result = self.unmap_run::<S>(start48, count, true, &mut global, &mut |_| {});
        let done = match result {
            Ok(()) => count,
            Err((done, _)) => done,
        };
        FlushScope::for_pages(start, done, S::SIZE, global).perform(self.backend_mut());
        self.clear_runs::<S>(start48, done, &mut |frame| {
            // SAFETY: the page was unmapped and invalidated; the caller owns
            // the frame.
            unsafe { FrameDeallocator::<S>::deallocate_frame(deallocator, frame) };
        });
        let mut freed = 0;
        if reclaim && done > 0 {
            let first = Page::<Size4KiB>::containing_address(start);
            let last = Page::<Size4KiB>::containing_address(VirtAddr::new_truncate(sign_extend(
                start48 + done * S::SIZE - 1,
            )));
            // SAFETY: forwarded contract.
            freed = unsafe {
                self.clean_up_addr_range(
                    Page::range_inclusive(first, last),
                    &mut ReclaimTo(deallocator),
                )
            };
        }
        match result {
            Ok(()) => Ok(freed),
            Err((done, error)) => Err(RangeError::Stopped { done, error }),
        }
    }

    // ------------------------------------------------------------ flags

    /// Replaces the flags of every page of `pages`, as
    /// [`update_flags`](Self::update_flags) page by page.
    ///
    /// # Errors
    ///
    /// [`RangeError`] with the pages updated and the error `update_flags`
    /// gave for the next page; the updated part has been flushed already.
    ///
    /// # Safety
    ///
    /// As [`update_flags`](Self::update_flags), for every page.
    pub unsafe fn update_flags_range<S: EntrySize>(
        &mut self,
        pages: PageRange<S>,
        flags: PageTableFlags,
    ) -> Result<RangeFlush<'_, B>, RangeError<FlagUpdateError>> {
        let (start48, count) = span(pages)?;
        let start = VirtAddr::new_truncate(sign_extend(start48));
        let Some(new) = leaf_bits::<S>(flags) else {
            return Err(RangeError::Stopped {
                done: 0,
                error: FlagUpdateError::ParentEntryHugePage,
            });
        };
        let mut global = new & GLOBAL != 0;
        let result = self.update_run::<S>(start48, count, new, &mut global);
        self.finish_rewrite::<S, _>(start, count, global, result)
    }

    /// The token for the whole range, or the done part flushed and the error.
    fn finish_rewrite<S: EntrySize, E>(
        &mut self,
        start: VirtAddr,
        count: u64,
        global: bool,
        result: Result<(), (u64, E)>,
    ) -> Result<RangeFlush<'_, B>, RangeError<E>> {
        match result {
            Ok(()) => Ok(RangeFlush::new(
                self.backend_mut(),
                FlushScope::for_pages(start, count, S::SIZE, global),
            )),
            Err((done, error)) => {
                FlushScope::for_pages(start, done, S::SIZE, global).perform(self.backend_mut());
                Err(RangeError::Stopped { done, error })
            }
        }
    }
}

/// A `FrameDeallocator<S> + FrameDeallocator<Size4KiB>` seen as the latter,
/// for reclaiming tables.
struct ReclaimTo<'a, D: ?Sized>(&'a mut D);

impl<D: FrameDeallocator<Size4KiB> + ?Sized> FrameDeallocator<Size4KiB> for ReclaimTo<'_, D> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: forwarded contract.
        unsafe { self.0.deallocate_frame(frame) }
    }
}
