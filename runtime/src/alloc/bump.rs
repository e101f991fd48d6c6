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
//! let mut boot = BumpAllocator::new(map, &mut runs);
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
    pub fn new(map: MemoryMap<'a>, runs: &'a mut [MemoryRegion]) -> Self {
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
    pub fn try_allocate<S: PageSize>(
        &mut self,
        purpose: RegionKind,
    ) -> Result<PhysFrame<S>, BumpError> {
        if purpose.is_usable() {
            return Err(BumpError::UsableIsNoPurpose);
        }
        loop {
            // Fast path: room left in the current region.
            // Page sizes are powers of two; `next` is below 2^52.
            let start = (self.next + S::SIZE - 1) & !(S::SIZE - 1);
            let end = start + S::SIZE;
            if end <= self.limit {
                self.log(start, end, purpose)?;
                self.next = end;
                // SAFETY: `start` is a multiple of `S::SIZE` below 2^52.
                let frame = unsafe {
                    PhysFrame::from_start_address_unchecked(PhysAddr::new_truncate(start))
                };
                return Ok(frame);
            }
            // Enter the next usable region (each region is entered once).
            let region = loop {
                let region = self
                    .map
                    .regions()
                    .get(self.region)
                    .ok_or(BumpError::OutOfFrames)?;
                self.region += 1;
                if region.kind.is_usable() {
                    break region;
                }
            };
            self.next = region.start;
            self.limit = region.end;
        }
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
        self.map.regions().len() + 2 * self.run_count
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
        let mut runs = self.runs().iter().peekable();
        for region in self.map.regions() {
            if !region.kind.is_usable() {
                out.push(*region);
                continue;
            }
            let mut at = region.start;
            while let Some(run) = runs.next_if(|run| run.end <= region.end) {
                if run.start > at {
                    out.push(MemoryRegion::new(at, run.start, RegionKind::Usable));
                }
                out.push(*run);
                at = run.end;
            }
            if at < region.end {
                out.push(MemoryRegion::new(at, region.end, RegionKind::Usable));
            }
        }
        MemoryMap::from_regions(out.finish()?)
    }
}

// SAFETY: the cursor only moves up through the usable regions of a
// normalised (disjoint) map, so no frame is handed out twice, and only
// frames of `Usable` regions are handed out.
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
