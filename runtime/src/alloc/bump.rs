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

use super::memory_map::{MapError, MemoryMap, MemoryRegion, RegionKind, RegionWriter};
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
/// Each allocation takes O(1) amortised time: the cursor only moves up, and
/// each region is stepped over once. Allocations are logged as *runs* —
/// consecutive frames of one purpose merge into one run — in caller-provided
/// storage, so switching purposes often needs more runs; see
/// [`BumpError::RunLogFull`].
///
/// Frames skipped to align a 2 MiB allocation, or left at the end of a
/// region too small for one, stay usable in the hand-off map (the bump
/// allocator does not go back for them; the kernel's allocator will).
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
    runs: &'a mut [MemoryRegion],
    run_count: usize,
    /// Index of the next region to enter.
    region: usize,
    /// The lowest address not yet handed out in the current region.
    next: u64,
    /// The end of the current usable region (0 before the first).
    limit: u64,
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
            run_count: 0,
            region: 0,
            next: 0,
            limit: 0,
        }
    }

    /// Allocates a frame of size `S` (4 KiB or 2 MiB, aligned) for `purpose`.
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
        // Fast path: room left in the current region.
        let start = align_up::<S>(self.next);
        let end = start + S::SIZE;
        if end <= self.limit {
            self.log(start, end, purpose)?;
            self.next = end;
            return Ok(frame_at(start));
        }
        self.allocate_in_next_regions(purpose)
    }

    /// Moves the cursor through the following usable regions until one has
    /// room. On failure the cursor goes back where it was, so that a failed
    /// 2 MiB request does not strand the 4 KiB frames behind it.
    #[cold]
    fn allocate_in_next_regions<S: PageSize>(
        &mut self,
        purpose: RegionKind,
    ) -> Result<PhysFrame<S>, BumpError> {
        let regions = self.map.regions();
        let mut index = self.region;
        while let Some(region) = regions.get(index) {
            index += 1;
            if !region.kind.is_usable() {
                continue;
            }
            let start = align_up::<S>(region.start);
            let end = start + S::SIZE;
            if end <= region.end {
                self.log(start, end, purpose)?;
                self.region = index;
                self.next = end;
                self.limit = region.end;
                return Ok(frame_at(start));
            }
        }
        Err(BumpError::OutOfFrames)
    }

    /// Records `[start, end)` as used for `purpose`, extending the last run
    /// when it is adjacent and of the same purpose.
    #[inline]
    fn log(&mut self, start: u64, end: u64, purpose: RegionKind) -> Result<(), BumpError> {
        if let Some(last) = self
            .run_count
            .checked_sub(1)
            .and_then(|i| self.runs.get_mut(i))
            && last.kind == purpose
            && last.end == start
        {
            last.end = end;
            return Ok(());
        }
        let slot = self
            .runs
            .get_mut(self.run_count)
            .ok_or(BumpError::RunLogFull)?;
        *slot = MemoryRegion::new(start, end, purpose);
        self.run_count += 1;
        Ok(())
    }

    /// The runs allocated so far, in address order, each with its purpose.
    pub fn runs(&self) -> &[MemoryRegion] {
        &self.runs[..self.run_count]
    }

    /// The number of 4 KiB frames allocated so far for `purpose`.
    pub fn frames_used_by(&self, purpose: RegionKind) -> u64 {
        self.runs()
            .iter()
            .filter(|r| r.kind == purpose)
            .map(MemoryRegion::frames)
            .sum()
    }

    /// The map this allocator was built over.
    pub fn map(&self) -> MemoryMap<'a> {
        self.map
    }

    /// The number of regions [`hand_off`](Self::hand_off) needs at most.
    pub fn hand_off_len(&self) -> usize {
        2 * self.map.regions().len() + 2 * self.run_count
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
        let runs = self.runs();
        let mut next_run = 0;
        for region in self.map.regions() {
            if !region.kind.is_usable() {
                out.push(*region);
                continue;
            }
            let mut at = region.start;
            while let Some(run) = runs.get(next_run).filter(|run| run.start < region.end) {
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
                next_run += 1;
            }
            if at < region.end {
                out.push(MemoryRegion::new(at, region.end, RegionKind::Usable));
            }
        }
        MemoryMap::from_regions(out.finish()?)
    }
}

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

// SAFETY: the cursor only moves up through the usable regions of a
// normalised (sorted, disjoint) map, so this allocator never hands out a
// frame twice, and it hands out only frames of `Usable` regions. Those
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
