//! `bootloader` 0.9 (the `blog_os` bootloader, `bootinfo` types only; depend on
//! it with `default-features = false`): its `bootinfo::MemoryMap` into a
//! [`MemoryMap`], and [`RegionTypeAllocator`], the region-typed allocator
//! that records its allocations in the `bootinfo::MemoryMap` itself.
//!
//! | `MemoryRegionType` | `RegionKind` |
//! |---|---|
//! | `Usable` | `Usable` |
//! | `Reserved`, `FrameZero` | `Reserved` |
//! | `AcpiReclaimable` | `AcpiReclaimable` |
//! | `AcpiNvs` | `AcpiNvs` |
//! | `BadMemory` | `BadMemory` |
//! | `Kernel` | `Kernel` |
//! | `PageTable` | `PageTable` |
//! | `Bootloader` | `Bootloader` |
//! | `InUse` | [`IN_USE`] = `Custom(1)` |
//! | `KernelStack` | [`KERNEL_STACK`] = `Custom(7)` |
//! | `BootInfo` | [`BOOT_INFO`] = `Custom(12)` |
//! | `Package` | [`PACKAGE`] = `Custom(13)` |
//! | `Empty` | the region is skipped |
//! | a type added by a later 0.9 release | `Reserved` |
//!
//! (The `Custom` numbers are the variants' discriminants in `bootloader` 0.9.)
//!
//! The seed case of this crate, with the real types:
//!
//! ```
//! use bootloader::bootinfo::{FrameRange, MemoryMap, MemoryRegion, MemoryRegionType};
//! use framealloc::alloc::protocol::bootloader09::RegionTypeAllocator;
//! use framealloc::{FrameAllocator, TaggedFrameAllocator};
//!
//! let mut memory_map = MemoryMap::new(); // in a kernel: `&mut boot_info.memory_map`'s twin
//! memory_map.add_region(MemoryRegion {
//!     range: FrameRange::new(0x10_0000, 0x80_0000),
//!     region_type: MemoryRegionType::Usable,
//! });
//! // SAFETY: the usable region is free RAM that nothing else hands out.
//! let mut frame_allocator = unsafe { RegionTypeAllocator::new(&mut memory_map) };
//! let kernel = frame_allocator.allocate_frame(MemoryRegionType::Kernel).unwrap();
//! // `map_to(page, frame, flags, &mut frame_allocator.tagged(MemoryRegionType::PageTable))`:
//! let table = frame_allocator.tagged(MemoryRegionType::PageTable).allocate_frame().unwrap();
//! assert_eq!(kernel.start_address().as_u64(), 0x10_0000);
//! assert_eq!(table.start_address().as_u64(), 0x10_1000);
//! let types: Vec<_> = memory_map.iter().map(|r| r.region_type).collect();
//! assert_eq!(types, [MemoryRegionType::Kernel, MemoryRegionType::PageTable, MemoryRegionType::Usable]);
//! ```

use bootloader::bootinfo::{
    FrameRange, MemoryMap as BootMap, MemoryRegion as BootRegion, MemoryRegionType,
};
use x86_64::PhysAddr;
use x86_64::structures::paging::{PhysFrame, Size4KiB};

use super::{ProtocolError, normalize_entries};
use crate::alloc::memory_map::{
    FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions, NormalizeReport, RegionKind,
};
use crate::tagged::TaggedFrameAllocator;

/// `MemoryRegionType::InUse` ("already in use"): `Custom(1)`.
pub const IN_USE: RegionKind = RegionKind::Custom(1);
/// `MemoryRegionType::KernelStack`: `Custom(7)`.
pub const KERNEL_STACK: RegionKind = RegionKind::Custom(7);
/// `MemoryRegionType::BootInfo`: `Custom(12)`.
pub const BOOT_INFO: RegionKind = RegionKind::Custom(12);
/// `MemoryRegionType::Package`: `Custom(13)`.
pub const PACKAGE: RegionKind = RegionKind::Custom(13);

/// The most entries a `bootinfo::MemoryMap` holds (`bootloader` 0.9 panics
/// when a 65th is added; [`RegionTypeAllocator`] refuses instead).
pub const MAX_REGIONS: usize = 64;

/// The [`RegionKind`] of a `bootloader` 0.9 region type, by the table of
/// [the module](self); `None` for `Empty`.
#[must_use]
pub const fn region_kind(region_type: MemoryRegionType) -> Option<RegionKind> {
    Some(match region_type {
        MemoryRegionType::Usable => RegionKind::Usable,
        MemoryRegionType::Empty => return None,
        MemoryRegionType::InUse => IN_USE,
        MemoryRegionType::AcpiReclaimable => RegionKind::AcpiReclaimable,
        MemoryRegionType::AcpiNvs => RegionKind::AcpiNvs,
        MemoryRegionType::BadMemory => RegionKind::BadMemory,
        MemoryRegionType::Kernel => RegionKind::Kernel,
        MemoryRegionType::KernelStack => KERNEL_STACK,
        MemoryRegionType::PageTable => RegionKind::PageTable,
        MemoryRegionType::Bootloader => RegionKind::Bootloader,
        MemoryRegionType::BootInfo => BOOT_INFO,
        MemoryRegionType::Package => PACKAGE,
        _ => RegionKind::Reserved,
    })
}

/// One region as a [`FirmwareRegion`]; `None` for an `Empty` region.
#[must_use]
pub const fn to_firmware(region: &BootRegion) -> Option<FirmwareRegion> {
    let start = region.range.start_frame_number.saturating_mul(4096);
    let end = region.range.end_frame_number.saturating_mul(4096);
    match region_kind(region.region_type) {
        Some(kind) => Some(FirmwareRegion::new(start, end.saturating_sub(start), kind)),
        None => None,
    }
}

/// Normalises a `bootinfo::MemoryMap` (`&boot_info.memory_map`) through
/// [`normalize_entries`].
///
/// # Errors
///
/// As [`normalize_entries`]: `scratch` needs one entry per region (at most
/// [`MAX_REGIONS`]).
pub fn normalize_memory_map<'s>(
    memory_map: &BootMap,
    scratch: &mut [FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), ProtocolError> {
    normalize_entries(
        memory_map.iter().filter_map(to_firmware),
        scratch,
        storage,
        options,
    )
}

/// A frame allocator over a `bootinfo::MemoryMap` whose allocation takes the
/// region type the frame is for, and records it in the map the way
/// `bootloader` 0.9 records its own allocations:
///
/// - if a region of that type is directly followed by a non-empty usable
///   region, the frame is the usable region's first; the typed region grows
///   by it and the usable one shrinks (the *merge*);
/// - otherwise the first frame of the first non-empty usable region (of the
///   *last* one for `PageTable`, which keeps page tables away from the
///   memory other allocations grow into) is split off into a new one-frame
///   region of that type, and the map is sorted again.
///
/// It differs from `bootloader` 0.9 only where that one would hand out a
/// wrong frame or panic: it never hands out frame 0 or a frame that another
/// region also covers (a map with overlapping entries), refuses
/// `Usable` and `Empty` as tags (recording a frame as usable would hand it
/// out again), and returns `None` rather than panicking when the map has no
/// room for another region ([`MAX_REGIONS`]).
///
/// It is a [`TaggedFrameAllocator`] with `Tag = MemoryRegionType`, so
/// `alloc.tagged(MemoryRegionType::PageTable)` is the [`FrameAllocator`]
/// that `map_to` takes, and `#[derive(FrameAllocator)]` with
/// `tagged(method = allocate_frame, tag = MemoryRegionType, …)` works on a
/// struct that wraps it.
///
/// [`FrameAllocator`]: x86_64::structures::paging::FrameAllocator
#[derive(Debug)]
pub struct RegionTypeAllocator<'m> {
    map: &'m mut BootMap,
}

impl<'m> RegionTypeAllocator<'m> {
    /// An allocator over `map`.
    ///
    /// # Safety
    ///
    /// Every frame of a `Usable` region of `map` is unused RAM that nothing
    /// but this allocator (and later users of the updated map, which records
    /// every allocation) hands out.
    pub const unsafe fn new(map: &'m mut BootMap) -> Self {
        RegionTypeAllocator { map }
    }

    /// The map, with every allocation so far recorded.
    #[must_use]
    pub fn memory_map(&self) -> &BootMap {
        self.map
    }

    /// Gives the map back.
    #[must_use]
    pub fn into_inner(self) -> &'m mut BootMap {
        self.map
    }

    /// Allocates a 4 KiB frame for `region_type` and records it in the map.
    ///
    /// `None` when no usable frame is left, when the map would need a 65th
    /// region, or when `region_type` is `Usable` or `Empty`.
    pub fn allocate_frame(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame<Size4KiB>> {
        if matches!(
            region_type,
            MemoryRegionType::Usable | MemoryRegionType::Empty
        ) {
            return None;
        }
        if let Some(frame) = self.grow(region_type) {
            return Some(frame);
        }
        self.split(region_type)
    }

    /// The merge: a `region_type` region followed directly by a usable one.
    fn grow(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame<Size4KiB>> {
        for i in 1..self.map.len() {
            let (typed, usable) = (self.map[i - 1], self.map[i]);
            if typed.region_type == region_type
                && usable.region_type == MemoryRegionType::Usable
                && !usable.range.is_empty()
                && usable.range.start_frame_number == typed.range.end_frame_number
                && self.may_hand_out(usable.range.start_frame_number, i)
            {
                let number = usable.range.start_frame_number;
                self.map[i - 1].range.end_frame_number += 1;
                self.map[i].range.start_frame_number += 1;
                return frame(number);
            }
        }
        None
    }

    /// The split: a new one-frame region cut from a usable one.
    fn split(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame<Size4KiB>> {
        if self.map.len() >= MAX_REGIONS {
            return None;
        }
        let candidate = |i: usize| {
            let r = self.map[i];
            r.region_type == MemoryRegionType::Usable
                && !r.range.is_empty()
                && self.may_hand_out(r.range.start_frame_number, i)
        };
        let index = if region_type == MemoryRegionType::PageTable {
            (0..self.map.len()).rev().find(|&i| candidate(i))
        } else {
            (0..self.map.len()).find(|&i| candidate(i))
        }?;
        let number = self.map[index].range.start_frame_number;
        let frame = frame(number)?;
        self.map[index].range.start_frame_number += 1;
        self.map.add_region(BootRegion {
            range: FrameRange {
                start_frame_number: number,
                end_frame_number: number + 1,
            },
            region_type,
        });
        Some(frame)
    }

    /// Whether frame `number` of usable region `index` may be handed out:
    /// not frame 0, and covered by no other region (of another type, or a
    /// second usable region that would hand it out again).
    fn may_hand_out(&self, number: u64, index: usize) -> bool {
        number != 0
            && self.map.iter().enumerate().all(|(j, r)| {
                j == index
                    || r.region_type == MemoryRegionType::Empty
                    || !(r.range.start_frame_number <= number && number < r.range.end_frame_number)
            })
    }
}

/// The frame of number `number`, if its address is a valid one.
fn frame(number: u64) -> Option<PhysFrame<Size4KiB>> {
    let addr = PhysAddr::try_new(number.checked_mul(4096)?).ok()?;
    Some(PhysFrame::containing_address(addr))
}

// SAFETY: frames come only from `Usable` regions (never frame 0, never one
// that a second region covers), and each is removed from its usable region and
// recorded under a non-usable type in the same step, so it is never handed
// out again; `Usable` and `Empty` are refused as tags. The constructor's
// caller promised that usable frames are unused.
unsafe impl TaggedFrameAllocator<Size4KiB> for RegionTypeAllocator<'_> {
    type Tag = MemoryRegionType;

    #[inline]
    fn allocate_tagged(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame<Size4KiB>> {
        self.allocate_frame(region_type)
    }
}
