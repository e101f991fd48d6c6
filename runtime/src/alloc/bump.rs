//! [`BumpAllocator`]: a bootloader's tagged frame allocator over a memory map.
//!
//! It walks the usable regions of a [`MemoryMap`] upward, handing out each
//! frame once, and records what every frame was allocated for. At the end,
//! [`hand_off`](BumpAllocator::hand_off) writes the updated map — the map a
//! bootloader gives its kernel — in which every used run carries its purpose.
//!
//! ```
//! use framealloc::alloc::{normalize, BumpAllocator, FirmwareRegion, MemoryRegion, RegionKind::*};
//! use framealloc::{FrameAllocator, TaggedFrameAllocator};
//!
//! let firmware = [FirmwareRegion::new(0x10_0000, 0x10_0000, Usable)];
//! let mut map_storage = [MemoryRegion::default(); 8];
//! let (map, _) = normalize(&firmware, &mut map_storage, Default::default()).unwrap();
//!
//! let mut runs = [MemoryRegion::default(); 8];
//! // SAFETY: an example: no frame of the map is touched through the frames
//! // handed out, and no other allocator is built over the map.
//! let mut boot = unsafe { BumpAllocator::new(map, &mut runs) };
//! boot.allocate_tagged(Kernel).unwrap();
//! // `map_to(page, frame, flags, &mut boot.tagged(PageTable))` in real code:
//! let table = boot.tagged(PageTable).allocate_frame().unwrap();
//! assert_eq!(table.start_address().as_u64(), 0x10_1000);
//!
//! let mut hand_off = [MemoryRegion::default(); 8];
//! let kernel_map = boot.hand_off(&mut hand_off).unwrap();
//! let regions: Vec<_> = kernel_map.regions().iter().map(|r| (r.start, r.end, r.kind)).collect();
//! assert_eq!(regions, [
//!     (0x10_0000, 0x10_1000, Kernel),
//!     (0x10_1000, 0x10_2000, PageTable),
//!     (0x10_2000, 0x20_0000, Usable),
//! ]);
//! ```

use core::fmt;

use x86_64::PhysAddr;
use x86_64::structures::paging::{PageSize, PhysFrame, Size4KiB};

use super::memory_map::{FRAME_SIZE, MapError, MemoryMap, MemoryRegion, RegionKind, RegionWriter};
use crate::tagged::TaggedFrameAllocator;

/// Why a [`BumpAllocator`] could not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BumpError {
    /// No usable frame of the requested size is left.
    OutOfFrames,
    /// `Usable` was given as the purpose; a used frame must say what it is
    /// used for, or the hand-off map would call it free.
    UsableIsNoPurpose,
    /// The run log is full: this allocation would start a new run (a new
    /// purpose, or a gap) and the storage given to
    /// [`BumpAllocator::new`] has no room for it.
    RunLogFull,
}

impl fmt::Display for BumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BumpError::OutOfFrames => "no usable frame of the requested size is left",
            BumpError::UsableIsNoPurpose => {
                "`Usable` is not a purpose: allocate with the kind the frame is used for"
            }
            BumpError::RunLogFull => {
                "the run log is full; give the bump allocator more run storage"
            }
        })
    }
}

impl core::error::Error for BumpError {}

/// A tagged bump allocator over the usable regions of a [`MemoryMap`].
///
/// Two cursors move up through the usable regions, each only upward:
///
/// - 4 KiB frames come from the *small* cursor, which hands out every usable
///   frame in address order, stepping over the large frames already handed
///   out above it;
/// - 2 MiB and 1 GiB frames come from the *large* cursor, which takes the
///   lowest aligned frame of usable memory (adjacent usable regions count as
///   one stretch) above both the small cursor and the last large frame.
///
/// So a large request never strands memory: the frames it skips to align
/// (or at the end of a region too small for it) lie above the small cursor,
/// which hands them out later. Once a 4 KiB request fails with
/// [`BumpError::OutOfFrames`], every usable frame of the map has been handed
/// out, whatever mix of sizes came before. What a large request skips is
/// lost only to later *large* requests: they start above the last large
/// frame and above the small cursor.
///
/// Each allocation takes O(1) amortised time: the cursors only move up,
/// and each region and large run is stepped over a bounded number of times.
/// A request that fails scans the regions left once. Allocations are
/// logged as *runs* — consecutive frames of one size class and purpose
/// merge into one run — in caller-provided storage (4 KiB runs from its
/// front, large-frame runs from its back), so switching purposes often needs
/// more runs; see [`BumpError::RunLogFull`].
///
/// It is neither `Clone` nor `Copy`: a copy would hand out the same frames
/// again.
///
/// ```compile_fail
/// fn clonable<T: Clone>() {}
/// clonable::<framealloc::alloc::BumpAllocator<'static>>();
/// ```
#[derive(Debug)]
pub struct BumpAllocator<'a> {
    map: MemoryMap<'a>,
    /// The run log: 4 KiB runs at `[..small_runs]` in address order, large
    /// runs at `[len - large_runs..]` in *descending* address order (the
    /// lowest at the last index).
    runs: &'a mut [MemoryRegion],
    small_runs: usize,
    large_runs: usize,
    /// Small cursor: the lowest address not yet handed out or stepped over.
    next: u64,
    /// How far the small cursor may go without a look at the map: the end
    /// of its region or the start of the next large run, whichever is lower.
    limit: u64,
    /// The end of the small cursor's region (0 before the first).
    region_end: u64,
    /// Index of the next region the small cursor enters.
    region: usize,
    /// The number of large runs, in address order, the small cursor has
    /// stepped over.
    large_passed: usize,
    /// Large cursor: the end of the last large frame (0 before the first).
    large_next: u64,
    /// Index of the first region of the stretch of adjacent usable regions
    /// holding the last large frame.
    large_region: usize,
    /// The end of that stretch (0 before the first large frame).
    large_limit: u64,
}

impl<'a> BumpAllocator<'a> {
    /// An allocator over `map`'s usable regions, logging runs into `runs`.
    ///
    /// # Safety
    ///
    /// The allocator hands out every 4 KiB frame of `map`'s `Usable`
    /// regions as unused memory that its caller may own, so the caller of
    /// `new` must guarantee that each of those frames
    ///
    /// - is RAM that nothing uses now (no code, data, page table, stack,
    ///   DMA buffer or device memory lives there), and
    /// - is used by nothing else from now on except through a frame this
    ///   allocator hands out: no other allocator manages it — in particular
    ///   no second `BumpAllocator` or [`BitmapAllocator`](super::BitmapAllocator)
    ///   is built over this map (a [`MemoryMap`] is `Copy`, so the map itself
    ///   cannot prevent that) — and no code touches it behind the allocator's
    ///   back.
    ///
    /// A map from [`normalize`](super::normalize) of the firmware's memory
    /// map meets the first point when the firmware and the code already
    /// loaded (bootloader, kernel image) are described by non-usable
    /// entries; the second point is the caller's to keep. Passing the
    /// [`hand_off`](Self::hand_off) map on to a kernel allocator transfers
    /// the remaining usable frames: this allocator must not allocate again
    /// afterwards.
    pub unsafe fn new(map: MemoryMap<'a>, runs: &'a mut [MemoryRegion]) -> Self {
        BumpAllocator {
            map,
            runs,
            small_runs: 0,
            large_runs: 0,
            next: 0,
            limit: 0,
            region_end: 0,
            region: 0,
            large_passed: 0,
            large_next: 0,
            large_region: 0,
            large_limit: 0,
        }
    }

    /// Allocates a frame of size `S` (4 KiB, 2 MiB or 1 GiB, aligned) for
    /// `purpose`.
    ///
    /// # Errors
    ///
    /// [`BumpError::UsableIsNoPurpose`], [`BumpError::OutOfFrames`],
    /// [`BumpError::RunLogFull`]; the allocator is unchanged on error.
    #[inline]
    pub fn try_allocate<S: PageSize>(
        &mut self,
        purpose: RegionKind,
    ) -> Result<PhysFrame<S>, BumpError> {
        if purpose.is_usable() {
            return Err(BumpError::UsableIsNoPurpose);
        }
        if S::SIZE != Size4KiB::SIZE {
            return self.allocate_large(purpose);
        }
        // Fast path: room left below the small cursor's limit.
        let start = self.next;
        let end = start + FRAME_SIZE;
        if end <= self.limit {
            self.log_small(start, end, purpose)?;
            self.next = end;
            return Ok(frame_at(start));
        }
        self.allocate_small_slow(purpose)
    }

    /// The small cursor at the end of its stretch: steps over large runs
    /// and into the following usable regions until it finds a frame.
    #[cold]
    fn allocate_small_slow<S: PageSize>(
        &mut self,
        purpose: RegionKind,
    ) -> Result<PhysFrame<S>, BumpError> {
        let regions = self.map.regions();
        let (mut next, mut region, mut region_end) = (self.next, self.region, self.region_end);
        let mut passed = self.large_passed;
        loop {
            if let Some(run) = self.large_run(passed)
                && run.start <= next
            {
                next = next.max(run.end);
                passed += 1;
                continue;
            }
            if next < region_end {
                break;
            }
            let r = regions.get(region).ok_or(BumpError::OutOfFrames)?;
            region += 1;
            if r.kind.is_usable() && r.end > next {
                next = next.max(r.start);
                region_end = r.end;
            }
        }
        let limit = self
            .large_run(passed)
            .map_or(region_end, |run| run.start.min(region_end));
        // `next < limit`, both multiples of 4 KiB: one frame fits.
        let end = next + FRAME_SIZE;
        self.log_small(next, end, purpose)?;
        self.next = end;
        self.limit = limit;
        self.region = region;
        self.region_end = region_end;
        self.large_passed = passed;
        Ok(frame_at(next))
    }

    /// A 2 MiB or 1 GiB frame from the large cursor.
    #[inline]
    fn allocate_large<S: PageSize>(
        &mut self,
        purpose: RegionKind,
    ) -> Result<PhysFrame<S>, BumpError> {
        let start = align_up::<S>(self.next.max(self.large_next));
        let end = start + S::SIZE;
        if end <= self.large_limit {
            self.log_large(start, end, purpose)?;
            self.large_next = end;
            self.limit = self.limit.min(start);
            return Ok(frame_at(start));
        }
        self.allocate_large_slow(purpose)
    }

    /// Moves the large cursor through the following stretches of adjacent
    /// usable regions until one has room; on failure nothing moves.
    #[cold]
    fn allocate_large_slow<S: PageSize>(
        &mut self,
        purpose: RegionKind,
    ) -> Result<PhysFrame<S>, BumpError> {
        let regions = self.map.regions();
        let from = self.next.max(self.large_next);
        let mut first = self.large_region;
        while let Some(region) = regions.get(first) {
            if !region.kind.is_usable() {
                first += 1;
                continue;
            }
            let mut after = first + 1;
            let mut stretch_end = region.end;
            while let Some(r) = regions.get(after)
                && r.kind.is_usable()
                && r.start == stretch_end
            {
                stretch_end = r.end;
                after += 1;
            }
            let start = align_up::<S>(from.max(region.start));
            let end = start + S::SIZE;
            if end <= stretch_end {
                self.log_large(start, end, purpose)?;
                self.large_next = end;
                self.large_region = first;
                self.large_limit = stretch_end;
                self.limit = self.limit.min(start);
                return Ok(frame_at(start));
            }
            first = after;
        }
        Err(BumpError::OutOfFrames)
    }

    /// The large run `index`-th in address order, if any.
    #[inline]
    fn large_run(&self, index: usize) -> Option<MemoryRegion> {
        let at = self.runs.len().checked_sub(index + 1)?;
        (index < self.large_runs).then(|| self.runs[at])
    }

    /// Records `[start, end)` as used for `purpose` by the small cursor,
    /// extending the last 4 KiB run when it is adjacent and of the same
    /// purpose.
    #[inline]
    fn log_small(&mut self, start: u64, end: u64, purpose: RegionKind) -> Result<(), BumpError> {
        if let Some(last) = self
            .small_runs
            .checked_sub(1)
            .and_then(|i| self.runs.get_mut(i))
            && last.kind == purpose
            && last.end == start
        {
            last.end = end;
            return Ok(());
        }
        if self.small_runs + self.large_runs >= self.runs.len() {
            return Err(BumpError::RunLogFull);
        }
        self.runs[self.small_runs] = MemoryRegion::new(start, end, purpose);
        self.small_runs += 1;
        Ok(())
    }

    /// Records `[start, end)` as used for `purpose` by the large cursor,
    /// extending the last large run when it is adjacent, of the same purpose
    /// and not yet stepped over by the small cursor (which must see every
    /// large frame above it).
    fn log_large(&mut self, start: u64, end: u64, purpose: RegionKind) -> Result<(), BumpError> {
        let len = self.runs.len();
        if self.large_passed < self.large_runs
            && let Some(last) = self.runs.get_mut(len - self.large_runs)
            && last.kind == purpose
            && last.end == start
        {
            last.end = end;
            return Ok(());
        }
        if self.small_runs + self.large_runs >= len {
            return Err(BumpError::RunLogFull);
        }
        self.runs[len - 1 - self.large_runs] = MemoryRegion::new(start, end, purpose);
        self.large_runs += 1;
        Ok(())
    }

    /// The runs allocated so far, in address order, each with its purpose.
    pub fn runs(&self) -> Runs<'_> {
        Runs {
            small: &self.runs[..self.small_runs],
            large: &self.runs[self.runs.len() - self.large_runs..],
        }
    }

    /// The number of 4 KiB frames allocated so far for `purpose`.
    pub fn frames_used_by(&self, purpose: RegionKind) -> u64 {
        self.runs()
            .filter(|r| r.kind == purpose)
            .map(|r| r.frames())
            .sum()
    }

    /// The map this allocator was built over.
    pub fn map(&self) -> MemoryMap<'a> {
        self.map
    }

    /// The number of regions [`hand_off`](Self::hand_off) needs at most.
    pub fn hand_off_len(&self) -> usize {
        2 * self.map.regions().len() + 2 * (self.small_runs + self.large_runs)
    }

    /// Writes the hand-off map into `storage`: the original map with every
    /// used run marked with its purpose, adjacent regions of equal kind
    /// merged. The allocator stays usable; a later call includes later
    /// allocations.
    ///
    /// # Errors
    ///
    /// [`MapError::StorageTooSmall`] with the exact need.
    pub fn hand_off<'s>(&self, storage: &'s mut [MemoryRegion]) -> Result<MemoryMap<'s>, MapError> {
        let mut out = RegionWriter::new(storage);
        // Runs are sorted and lie in usable regions; one may span adjacent
        // usable regions of a map built by `MemoryMap::from_regions`.
        let mut runs = self.runs().peekable();
        for region in self.map.regions() {
            if !region.kind.is_usable() {
                out.push(*region);
                continue;
            }
            let mut at = region.start;
            while let Some(run) = runs.peek().filter(|run| run.start < region.end) {
                let start = run.start.max(region.start);
                let end = run.end.min(region.end);
                if start > at {
                    out.push(MemoryRegion::new(at, start, RegionKind::Usable));
                }
                out.push(MemoryRegion::new(start, end, run.kind));
                at = end;
                if run.end > region.end {
                    break;
                }
                runs.next();
            }
            if at < region.end {
                out.push(MemoryRegion::new(at, region.end, RegionKind::Usable));
            }
        }
        MemoryMap::from_regions(out.finish()?)
    }
}

/// The runs of a [`BumpAllocator`] in address order
/// ([`BumpAllocator::runs`]): 4 KiB runs and large-frame runs merged.
#[derive(Clone, Debug)]
pub struct Runs<'r> {
    small: &'r [MemoryRegion],
    /// In descending address order.
    large: &'r [MemoryRegion],
}

impl Iterator for Runs<'_> {
    type Item = MemoryRegion;

    fn next(&mut self) -> Option<MemoryRegion> {
        let take_small = match (self.small.first(), self.large.last()) {
            (Some(s), Some(l)) => s.start < l.start,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_small {
            let (first, rest) = self.small.split_first()?;
            self.small = rest;
            Some(*first)
        } else {
            let (last, rest) = self.large.split_last()?;
            self.large = rest;
            Some(*last)
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.small.len() + self.large.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Runs<'_> {}

/// `addr` rounded up to a multiple of `S::SIZE` (a power of two); `addr`
/// is below 2^52, so this cannot overflow.
#[inline]
fn align_up<S: PageSize>(addr: u64) -> u64 {
    (addr + S::SIZE - 1) & !(S::SIZE - 1)
}

/// The frame starting at `start`, a multiple of `S::SIZE` below 2^52.
#[inline]
fn frame_at<S: PageSize>(start: u64) -> PhysFrame<S> {
    // SAFETY: the callers pass aligned addresses inside a normalised map.
    unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_truncate(start)) }
}

// SAFETY: both cursors only move up through the usable regions of a sorted,
// disjoint map; a large frame is taken only above every frame the small
// cursor and earlier large frames handed out, and the small cursor steps
// over every large run it reaches (its limit never passes the next one). So
// this allocator never hands out a frame twice, and it hands out only frames
// of `Usable` regions. Those
// frames are unused and managed by nobody else: that is the promise made by
// the caller of the `unsafe` constructor `BumpAllocator::new`. The type is
// neither `Clone` nor `Copy`, so no copy can hand out the same frames again.
unsafe impl TaggedFrameAllocator<Size4KiB> for BumpAllocator<'_> {
    type Tag = RegionKind;

    /// Allocates a 4 KiB frame for `purpose`; `None` when out of frames, when
    /// the run log is full, or when `purpose` is `Usable` (see
    /// [`try_allocate`](BumpAllocator::try_allocate) for the reason).
    #[inline]
    fn allocate_tagged(&mut self, purpose: RegionKind) -> Option<PhysFrame<Size4KiB>> {
        self.try_allocate(purpose).ok()
    }
}
