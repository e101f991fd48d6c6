//! Memory maps: firmware input, normalisation, and the normalised [`MemoryMap`].
//!
//! Firmware memory maps (E820, UEFI, multiboot) are messy: entries come
//! unsorted, overlap, start and end in the middle of frames, have zero length,
//! or reach past the 52-bit physical address limit. [`normalize`] turns such
//! input into a [`MemoryMap`]: sorted, disjoint, frame-aligned regions, with
//! adjacent regions of equal kind merged, and a [`NormalizeReport`] of what it
//! changed. No heap is used: the caller provides the storage, in which the
//! entries are sorted (O(n log n) for `n` entries).
//!
//! # The rules
//!
//! Normalisation decides the kind of every 4 KiB frame on its own, then merges:
//!
//! 1. **Limit.** Entries are clipped at [`PHYS_LIMIT`] (2^52, the largest
//!    physical address x86_64 can form); entries wholly above it, and entries
//!    of length zero, are dropped. `base + len` overflowing `u64` is clipped
//!    like any other entry beyond the limit.
//! 2. **Non-usable space grows outward.** A frame that *any* byte of a
//!    non-usable entry touches is not usable: a reserved entry covering
//!    `0x9fc00..0xa0000` claims the whole frame `0x9f000..0xa0000`.
//! 3. **Usable space shrinks inward.** A frame is usable only if every one of
//!    its 4096 bytes lies in usable entries (possibly several adjacent or
//!    overlapping ones) and rule 2 does not claim it.
//! 4. **Overlaps resolve to the more restrictive kind**, in the order of
//!    [`RegionKind::restrictiveness`]: `Usable` < `AcpiReclaimable` <
//!    `Custom(_)` (higher numbers more restrictive) < `Bootloader` < `Kernel`
//!    < `PageTable` < `Framebuffer` < `Reserved` < `AcpiNvs` < `BadMemory`.
//!    A frame touched by several non-usable entries takes the most restrictive
//!    of their kinds.
//! 5. **Frame 0 is withheld**: if rules 2–4 make it usable, it becomes
//!    `Reserved` unless [`NormalizeOptions::allow_frame_zero`] is set (a
//!    null physical address is too easily mistaken for "no frame"). A frame
//!    0 that usable entries cover only in part is not usable by rule 3, so
//!    rule 6 makes it a hole, not `Reserved`, like any other partly covered
//!    frame.
//! 6. **Holes stay holes.** Frames covered by no entry (or only partly by
//!    usable entries, and touched by no other entry) appear in no region.
//! 7. **Adjacent equal kinds merge** into one region.
//!
//! Allocators built on a [`MemoryMap`] hand out only frames of `Usable`
//! regions, so they never hand out a frame that a non-usable entry touched.
//!
//! ```
//! use framealloc::alloc::{normalize, FirmwareRegion, NormalizeOptions, RegionKind::*};
//!
//! let firmware = [
//!     FirmwareRegion::new(0x10_0000, 0x7f0_0000, Usable),
//!     FirmwareRegion::new(0x0, 0x9fc00, Usable),          // ends mid-frame
//!     FirmwareRegion::new(0x9fc00, 0x400, Reserved),      // starts mid-frame
//!     FirmwareRegion::new(0x50_0000, 0x1000, AcpiNvs),    // inside usable memory
//!     FirmwareRegion::new(0x20_0000, 0, Reserved),        // empty
//! ];
//! let mut storage = [Default::default(); 3 * 5]; // 3 × entries always suffice
//! let (map, report) = normalize(&firmware, &mut storage, NormalizeOptions::default()).unwrap();
//! let regions: Vec<_> = map.regions().iter().map(|r| (r.start, r.end, r.kind)).collect();
//! assert_eq!(regions, [
//!     (0x0, 0x1000, Reserved),          // frame 0 withheld
//!     (0x1000, 0x9f000, Usable),        // shrunk inward
//!     (0x9f000, 0xa0000, Reserved),     // grown outward
//!     (0x10_0000, 0x50_0000, Usable),
//!     (0x50_0000, 0x50_1000, AcpiNvs),  // the more restrictive kind wins
//!     (0x50_1000, 0x800_0000, Usable),
//! ]);
//! assert_eq!(report.dropped_empty, 1);
//! assert_eq!(report.usable_trimmed, 1);           // 0x9fc00, the end of low memory
//! assert_eq!(report.non_usable_widened, 1);
//! assert_eq!(report.overlapping_pairs, 2); // frame 0x9f000, and the ACPI NVS frame
//! assert_eq!(report.merged, 0);                   // no two entries of one kind touch
//! assert!(report.unsorted && report.frame_zero_withheld);
//! ```

use core::fmt;

/// The size of the frames a memory map is aligned to: 4 KiB.
pub const FRAME_SIZE: u64 = 4096;

/// One past the highest physical address x86_64 can form: 2^52.
pub const PHYS_LIMIT: u64 = 1 << 52;

/// What a region of physical memory holds or is for.
///
/// The same type names firmware kinds (`Usable`, `Reserved`, ACPI…) and the
/// purposes a bootloader allocates for (`Kernel`, `PageTable`…), so the map a
/// bootloader hands to its kernel says both what was there and what it put
/// there. `Custom` covers anything else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegionKind {
    /// Free RAM.
    #[default]
    Usable,
    /// Not to be used (firmware, MMIO, or simply unknown).
    Reserved,
    /// ACPI tables; usable once the kernel has read them.
    AcpiReclaimable,
    /// ACPI non-volatile storage; never to be used.
    AcpiNvs,
    /// RAM reported as faulty.
    BadMemory,
    /// Used by the bootloader itself (its code, data, boot information).
    Bootloader,
    /// The kernel image.
    Kernel,
    /// Page tables.
    PageTable,
    /// A linear framebuffer.
    Framebuffer,
    /// A kind of your own, for example a kernel stack or heap.
    Custom(u32),
}

impl RegionKind {
    /// The rank used to resolve overlaps: the higher rank wins.
    ///
    /// `Usable` (0) < `AcpiReclaimable` (1) < `Custom(_)` (2) < `Bootloader`
    /// (3) < `Kernel` (4) < `PageTable` (5) < `Framebuffer` (6) < `Reserved`
    /// (7) < `AcpiNvs` (8) < `BadMemory` (9). Between two `Custom` kinds the
    /// higher number wins (see [`more_restrictive`](Self::more_restrictive)).
    #[must_use]
    pub const fn restrictiveness(self) -> u8 {
        match self {
            RegionKind::Usable => 0,
            RegionKind::AcpiReclaimable => 1,
            RegionKind::Custom(_) => 2,
            RegionKind::Bootloader => 3,
            RegionKind::Kernel => 4,
            RegionKind::PageTable => 5,
            RegionKind::Framebuffer => 6,
            RegionKind::Reserved => 7,
            RegionKind::AcpiNvs => 8,
            RegionKind::BadMemory => 9,
        }
    }

    /// The more restrictive of two kinds (rule 4 of [the module](self)).
    #[must_use]
    pub const fn more_restrictive(self, other: RegionKind) -> RegionKind {
        let (a, b) = (self.restrictiveness(), other.restrictiveness());
        if a > b {
            return self;
        }
        if b > a {
            return other;
        }
        match (self, other) {
            (RegionKind::Custom(x), RegionKind::Custom(y)) if y > x => other,
            _ => self,
        }
    }

    /// Whether this is [`RegionKind::Usable`].
    #[must_use]
    pub const fn is_usable(self) -> bool {
        matches!(self, RegionKind::Usable)
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionKind::Usable => f.write_str("usable"),
            RegionKind::Reserved => f.write_str("reserved"),
            RegionKind::AcpiReclaimable => f.write_str("ACPI reclaimable"),
            RegionKind::AcpiNvs => f.write_str("ACPI NVS"),
            RegionKind::BadMemory => f.write_str("bad memory"),
            RegionKind::Bootloader => f.write_str("bootloader"),
            RegionKind::Kernel => f.write_str("kernel"),
            RegionKind::PageTable => f.write_str("page table"),
            RegionKind::Framebuffer => f.write_str("framebuffer"),
            RegionKind::Custom(n) => write!(f, "custom {n}"),
        }
    }
}

/// A memory-map entry as firmware reports it: a base, a length in bytes, and
/// a kind. Any values are accepted; [`normalize`] sorts them out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FirmwareRegion {
    /// The first byte.
    pub base: u64,
    /// The length in bytes (may be zero, may overflow `base + len`).
    pub len: u64,
    /// What the firmware says the memory is.
    pub kind: RegionKind,
}

impl FirmwareRegion {
    /// An entry of `len` bytes at `base`.
    #[must_use]
    pub const fn new(base: u64, len: u64, kind: RegionKind) -> Self {
        FirmwareRegion { base, len, kind }
    }

    /// `[start, end)` clipped at [`PHYS_LIMIT`]; `None` if that is empty.
    const fn clipped(&self) -> Option<(u64, u64)> {
        let end = self.base.saturating_add(self.len);
        let end = if end > PHYS_LIMIT { PHYS_LIMIT } else { end };
        if self.base < end {
            Some((self.base, end))
        } else {
            None
        }
    }
}

/// A region of a normalised memory map: `[start, end)`, frame-aligned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemoryRegion {
    /// The first byte (a multiple of 4096).
    pub start: u64,
    /// One past the last byte (a multiple of 4096, greater than `start`).
    pub end: u64,
    /// What the region holds.
    pub kind: RegionKind,
}

impl MemoryRegion {
    /// The region `[start, end)`.
    #[must_use]
    pub const fn new(start: u64, end: u64, kind: RegionKind) -> Self {
        MemoryRegion { start, end, kind }
    }

    /// Its length in bytes.
    #[must_use]
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no byte.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Its number of 4 KiB frames.
    #[must_use]
    pub const fn frames(&self) -> u64 {
        self.len() / FRAME_SIZE
    }
}

/// Options of [`normalize`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NormalizeOptions {
    /// Keep frame 0 usable if the firmware says it is (rule 5). Off by default.
    pub allow_frame_zero: bool,
}

impl NormalizeOptions {
    /// The defaults: frame 0 is withheld.
    #[must_use]
    pub const fn new() -> Self {
        NormalizeOptions {
            allow_frame_zero: false,
        }
    }

    /// These options with frame 0 allowed (or not).
    #[must_use]
    pub const fn allow_frame_zero(mut self, allow: bool) -> Self {
        self.allow_frame_zero = allow;
        self
    }
}

/// What [`normalize`] changed, counted per rule of [the module](self).
///
/// An entry is *kept* unless rule 1 drops it; "its frames" are the frames
/// any byte of the (clipped) entry lies in. Each field's first sentence is
/// its exact definition, and the tests check it against a brute-force count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NormalizeReport {
    /// The number of firmware entries, dropped ones included.
    pub entries_in: usize,
    /// The number of regions in the normalised map.
    pub regions_out: usize,
    /// Whether some kept entry has a lower base than a kept entry before it
    /// (dropped entries are not looked at; equal bases are in order).
    pub unsorted: bool,
    /// The number of entries of length zero, dropped (rule 1).
    pub dropped_empty: usize,
    /// The number of entries of non-zero length with a base at or above
    /// [`PHYS_LIMIT`], dropped (rule 1).
    pub dropped_beyond_limit: usize,
    /// The number of entries with a base below [`PHYS_LIMIT`] whose end
    /// (`base + len`, or an overflow of it) lies above it, cut at the limit
    /// (rule 1).
    pub clipped_at_limit: usize,
    /// The number of edges (starts and ends) of the union of all usable
    /// entries that are not multiples of 4096: at each, rule 3 drops the
    /// partly covered frame. Two usable entries that together cover a frame
    /// exactly leave no such edge.
    pub usable_trimmed: usize,
    /// The number of kept non-usable entries with a start or end that is
    /// not a multiple of 4096, which rule 2 grows to whole frames.
    pub non_usable_widened: usize,
    /// The number of pairs of kept entries of different kinds that have at
    /// least one frame in common (rule 4), each pair counted once. Usable
    /// entries count; sharing a frame is enough, sharing a byte is not
    /// needed; `Custom(1)` and `Custom(2)` are different kinds.
    pub overlapping_pairs: usize,
    /// Whether frame 0 was usable by rules 2–4 and has been made
    /// [`Reserved`](RegionKind::Reserved) (rule 5).
    pub frame_zero_withheld: bool,
    /// The number of ordered pairs of kept entries of equal kind where one
    /// ends exactly where the other starts (in bytes) and the frames on both
    /// sides of that address lie in one region of that kind (rule 7).
    /// Overlapping entries of one kind are not counted, nor neighbours kept
    /// apart by a more restrictive entry at their edge.
    pub merged: usize,
    /// The number of usable bytes in the normalised map.
    pub usable_bytes: u64,
}

impl fmt::Display for NormalizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries in, {} regions out; {}; dropped {} empty and {} beyond 2^52; \
             clipped {} at 2^52; shrank {} usable and widened {} non-usable to frame \
             boundaries; resolved {} overlapping pairs; merged {}; frame 0 {}",
            self.entries_in,
            self.regions_out,
            if self.unsorted { "unsorted" } else { "sorted" },
            self.dropped_empty,
            self.dropped_beyond_limit,
            self.clipped_at_limit,
            self.usable_trimmed,
            self.non_usable_widened,
            self.overlapping_pairs,
            self.merged,
            if self.frame_zero_withheld {
                "withheld"
            } else {
                "not withheld"
            },
        )
    }
}

/// Why a memory map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The output storage holds fewer regions than needed: for a hand-off
    /// map, the map's length; for [`normalize`], the map and a working copy
    /// of the entries (see there).
    StorageTooSmall {
        /// The number of regions of storage needed.
        needed: usize,
        /// The number of regions the storage holds.
        available: usize,
    },
    /// Region `index` is empty, unaligned or reaches past [`PHYS_LIMIT`].
    InvalidRegion {
        /// The index of the offending region.
        index: usize,
    },
    /// Region `index` overlaps or precedes region `index - 1`.
    Unsorted {
        /// The index of the offending region.
        index: usize,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::StorageTooSmall { needed, available } => write!(
                f,
                "memory map needs {needed} regions but the storage holds {available}"
            ),
            MapError::InvalidRegion { index } => write!(
                f,
                "region {index} is empty, not 4 KiB aligned, or reaches past 2^52"
            ),
            MapError::Unsorted { index } => {
                write!(
                    f,
                    "region {index} overlaps or precedes the region before it"
                )
            }
        }
    }
}

impl core::error::Error for MapError {}

/// A normalised memory map: sorted, disjoint, 4 KiB-aligned regions below
/// [`PHYS_LIMIT`], none empty. Adjacent regions may share a kind only when a
/// map is built by [`MemoryMap::from_regions`] from such input.
///
/// Made by [`normalize`], by [`MemoryMap::from_regions`] (which checks the
/// invariants), or as a bootloader's hand-off map by
/// [`BumpAllocator::hand_off`](super::BumpAllocator::hand_off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMap<'a> {
    regions: &'a [MemoryRegion],
}

impl<'a> MemoryMap<'a> {
    /// Checks that `regions` form a normalised map and wraps them.
    ///
    /// The regions are taken as they are: unlike [`normalize`], this does
    /// not withhold frame 0, so a usable region starting at 0 hands it out.
    ///
    /// # Errors
    ///
    /// [`MapError::InvalidRegion`] for an empty, unaligned or out-of-range
    /// region, [`MapError::Unsorted`] for one that overlaps or precedes its
    /// predecessor.
    pub fn from_regions(regions: &'a [MemoryRegion]) -> Result<Self, MapError> {
        let mut previous_end = 0;
        for (index, r) in regions.iter().enumerate() {
            if r.start >= r.end
                || r.end > PHYS_LIMIT
                || r.start % FRAME_SIZE != 0
                || r.end % FRAME_SIZE != 0
            {
                return Err(MapError::InvalidRegion { index });
            }
            if index > 0 && r.start < previous_end {
                return Err(MapError::Unsorted { index });
            }
            previous_end = r.end;
        }
        Ok(MemoryMap { regions })
    }

    /// The regions, sorted by address.
    #[must_use]
    pub const fn regions(&self) -> &'a [MemoryRegion] {
        self.regions
    }

    /// The usable regions.
    pub fn usable(&self) -> impl Iterator<Item = &'a MemoryRegion> + 'a {
        self.regions.iter().filter(|r| r.kind.is_usable())
    }

    /// Every usable 4 KiB frame's start address, in order.
    ///
    /// Allocating the `n`-th frame as `usable_frames().nth(n)` (the way a
    /// well-known tutorial does, with a `map` to `PhysFrame` that stops `nth`
    /// from skipping ahead) costs O(n) per frame;
    /// [`BumpAllocator`](super::BumpAllocator) is the O(1) alternative.
    pub fn usable_frames(&self) -> impl Iterator<Item = u64> + 'a {
        self.usable()
            .flat_map(|r| (r.start..r.end).step_by(FRAME_SIZE as usize))
    }

    /// The kind of the region containing `addr`, if any (binary search).
    #[must_use]
    pub fn kind_at(&self, addr: u64) -> Option<RegionKind> {
        let i = self.regions.partition_point(|r| r.end <= addr);
        self.regions
            .get(i)
            .filter(|r| r.start <= addr)
            .map(|r| r.kind)
    }

    /// The number of bytes in regions of `kind`.
    #[must_use]
    pub fn bytes_of(&self, kind: RegionKind) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.kind == kind)
            .map(MemoryRegion::len)
            .sum()
    }
}

/// Normalises a firmware memory map into `storage` by the rules of [the
/// module](self) and reports what changed.
///
/// Runs in O(n log n) for `n` entries, with no heap: `storage` holds a
/// working copy of the entries (at its end, sorted there) beside the map
/// being written (at its start). It needs `kept + len` regions, where
/// `kept` is the number of entries not dropped by rule 1 and `len` the
/// length of the map; as `len <= 2 * kept`, `3 * firmware.len()` regions
/// always suffice. On success the map is a prefix of `storage`; the rest
/// of `storage` is left with unspecified contents.
///
/// # Errors
///
/// [`MapError::StorageTooSmall`] if `storage` cannot hold the working copy
/// and the map; `needed` is then the exact need if `storage` held the
/// working copy, else the bound `3 * kept`. `storage` then has unspecified
/// contents.
pub fn normalize<'s>(
    firmware: &[FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), MapError> {
    let mut report = count_entries(firmware);
    let kept = firmware.len() - report.dropped_empty - report.dropped_beyond_limit;
    let available = storage.len();
    let Some(out_len) = available.checked_sub(kept) else {
        return Err(MapError::StorageTooSmall {
            needed: kept.saturating_mul(3),
            available,
        });
    };
    let (out_storage, scratch) = storage.split_at_mut(out_len);

    // The entries, usable ones first, each group sorted by start.
    copy_kept(firmware, scratch);
    scratch.sort_unstable_by_key(|r| (!r.kind.is_usable(), r.start));
    let usable_entries = scratch.partition_point(|r| r.kind.is_usable());
    let (usable, non_usable) = scratch.split_at_mut(usable_entries);
    // Rule 3: the union of the usable entries, shrunk to whole frames.
    let (stretches, trimmed) = usable_stretches(usable);
    report.usable_trimmed = trimmed;
    // Rule 2: non-usable entries grown to whole frames (order kept).
    for r in non_usable.iter_mut() {
        *r = MemoryRegion::new(align_down(r.start), align_up(r.end), r.kind);
    }

    let mut out = RegionWriter::new(out_storage);
    sweep(&usable[..stretches], non_usable, |start, end, kind| {
        if start == 0 && kind.is_usable() && !options.allow_frame_zero {
            report.frame_zero_withheld = true;
            out.push(MemoryRegion::new(0, FRAME_SIZE, RegionKind::Reserved));
            if end > FRAME_SIZE {
                out.push(MemoryRegion::new(FRAME_SIZE, end, kind));
            }
        } else {
            out.push(MemoryRegion::new(start, end, kind));
        }
    });
    let regions = match out.finish() {
        Ok(regions) => regions,
        Err(MapError::StorageTooSmall { needed, .. }) => {
            return Err(MapError::StorageTooSmall {
                needed: needed + kept,
                available,
            });
        }
        Err(other) => return Err(other),
    };
    let map = MemoryMap { regions };
    report.regions_out = regions.len();
    report.usable_bytes = map.bytes_of(RegionKind::Usable);
    // The pair counts, from a fresh copy of the entries.
    copy_kept(firmware, scratch);
    count_pairs(scratch, &map, &mut report);
    Ok((map, report))
}

/// Copies the entries rule 1 keeps, clipped, into `scratch` (which has
/// exactly their number of slots).
fn copy_kept(firmware: &[FirmwareRegion], scratch: &mut [MemoryRegion]) {
    let kept = firmware
        .iter()
        .filter_map(|r| r.clipped().map(|(s, e)| MemoryRegion::new(s, e, r.kind)));
    for (slot, r) in scratch.iter_mut().zip(kept) {
        *slot = r;
    }
}

/// Merges usable entries sorted by start into the stretches of their
/// union, shrunk to whole frames, in place at the front of `usable`;
/// returns how many there are and how many edges of the union lay inside a
/// frame.
fn usable_stretches(usable: &mut [MemoryRegion]) -> (usize, usize) {
    let mut unions = 0;
    for i in 0..usable.len() {
        let r = usable[i];
        if unions > 0 && r.start <= usable[unions - 1].end {
            let last = &mut usable[unions - 1];
            last.end = last.end.max(r.end);
        } else {
            usable[unions] = r;
            unions += 1;
        }
    }
    let mut trimmed = 0;
    let mut kept = 0;
    for i in 0..unions {
        let r = usable[i];
        trimmed += usize::from(!r.start.is_multiple_of(FRAME_SIZE))
            + usize::from(!r.end.is_multiple_of(FRAME_SIZE));
        let (start, end) = (align_up(r.start), align_down(r.end));
        if start < end {
            usable[kept] = MemoryRegion::new(start, end, RegionKind::Usable);
            kept += 1;
        }
    }
    (kept, trimmed)
}

/// The rank of a kind in rule 4's order (a total order: `Custom` kinds by
/// their number).
const fn rank(kind: RegionKind) -> u64 {
    let custom = match kind {
        RegionKind::Custom(n) => n as u64,
        _ => 0,
    };
    ((kind.restrictiveness() as u64) << 32) | custom
}

/// Walks the frame-aligned pieces on which the kind is constant, in order,
/// calling `emit(start, end, kind)` for each that is not a hole (rules 2–4
/// and 6): the most restrictive non-usable entry covering a piece decides
/// its kind, else it is usable if a usable stretch covers it.
///
/// `usable`: disjoint stretches sorted by start; `non_usable`: widened
/// entries sorted by start. The entries covering the current position live
/// in a max-heap (by [`rank`]) built in the part of `non_usable` already
/// read; entries that ended are dropped when they reach the top.
fn sweep(
    usable: &[MemoryRegion],
    non_usable: &mut [MemoryRegion],
    mut emit: impl FnMut(u64, u64, RegionKind),
) {
    let (mut read, mut heap, mut stretch) = (0, 0, 0);
    let mut at = match (usable.first(), non_usable.first()) {
        (Some(u), Some(n)) => u.start.min(n.start),
        (Some(u), None) => u.start,
        (None, Some(n)) => n.start,
        (None, None) => return,
    };
    loop {
        while let Some(&r) = non_usable.get(read)
            && r.start <= at
        {
            read += 1;
            if r.end > at {
                heap_push(non_usable, &mut heap, r);
            }
        }
        while heap > 0 && non_usable[0].end <= at {
            heap_pop(non_usable, &mut heap);
        }
        while usable.get(stretch).is_some_and(|u| u.end <= at) {
            stretch += 1;
        }
        let in_usable = usable.get(stretch).filter(|u| u.start <= at);
        let mut next = u64::MAX;
        if let Some(r) = non_usable.get(read) {
            next = r.start;
        }
        if heap > 0 {
            next = next.min(non_usable[0].end);
        }
        if let Some(u) = usable.get(stretch) {
            next = next.min(if u.start <= at { u.end } else { u.start });
        }
        if next == u64::MAX {
            return;
        }
        if heap > 0 {
            emit(at, next, non_usable[0].kind);
        } else if in_usable.is_some() {
            emit(at, next, RegionKind::Usable);
        }
        at = next;
    }
}

/// Adds `r` to the max-heap `v[..*len]` (by [`rank`] of the kind).
fn heap_push(v: &mut [MemoryRegion], len: &mut usize, r: MemoryRegion) {
    let mut i = *len;
    v[i] = r;
    *len += 1;
    while i > 0 {
        let parent = (i - 1) / 2;
        if rank(v[parent].kind) >= rank(v[i].kind) {
            break;
        }
        v.swap(parent, i);
        i = parent;
    }
}

/// Removes the top of the max-heap `v[..*len]` (`*len > 0`).
fn heap_pop(v: &mut [MemoryRegion], len: &mut usize) {
    *len -= 1;
    v.swap(0, *len);
    let n = *len;
    let mut i = 0;
    loop {
        let (left, right) = (2 * i + 1, 2 * i + 2);
        let mut top = i;
        if left < n && rank(v[left].kind) > rank(v[top].kind) {
            top = left;
        }
        if right < n && rank(v[right].kind) > rank(v[top].kind) {
            top = right;
        }
        if top == i {
            return;
        }
        v.swap(i, top);
        i = top;
    }
}

/// The report fields that depend on the entries one by one.
fn count_entries(firmware: &[FirmwareRegion]) -> NormalizeReport {
    let mut report = NormalizeReport {
        entries_in: firmware.len(),
        ..NormalizeReport::default()
    };
    let mut previous_base = None;
    for r in firmware {
        if r.len == 0 {
            report.dropped_empty += 1;
            continue;
        }
        let Some((s, e)) = r.clipped() else {
            report.dropped_beyond_limit += 1;
            continue;
        };
        if previous_base.is_some_and(|previous| r.base < previous) {
            report.unsorted = true;
        }
        previous_base = Some(r.base);
        if r.base.checked_add(r.len).is_none_or(|end| end > PHYS_LIMIT) {
            report.clipped_at_limit += 1;
        }
        if !r.kind.is_usable() && (s % FRAME_SIZE != 0 || e % FRAME_SIZE != 0) {
            report.non_usable_widened += 1;
        }
    }
    report
}

/// `overlapping_pairs` and `merged`, in O(n log n): `entries` are the kept
/// entries (clipped), in any order; `map` is the normalised map.
fn count_pairs(entries: &mut [MemoryRegion], map: &MemoryMap<'_>, report: &mut NormalizeReport) {
    // Pairs sharing a frame: for each entry, the later ones (by start) that
    // start before the end of its last frame.
    let sharing = |group: &[MemoryRegion]| -> usize {
        let mut pairs = 0usize;
        for (i, r) in group.iter().enumerate() {
            let reach = align_up(r.end);
            let ahead = group.partition_point(|o| align_down(o.start) < reach);
            pairs = pairs.saturating_add(ahead - i - 1);
        }
        pairs
    };
    entries.sort_unstable_by_key(|r| r.start);
    let mut pairs = sharing(entries);
    entries.sort_unstable_by_key(|r| (r.kind, r.start));
    let mut merged = 0usize;
    let mut rest = &*entries;
    while let Some(first) = rest.first() {
        let kind = first.kind;
        let (group, after) = rest.split_at(rest.partition_point(|r| r.kind == kind));
        pairs = pairs.saturating_sub(sharing(group));
        for r in group {
            let from = group.partition_point(|o| o.start < r.end);
            let to = group.partition_point(|o| o.start <= r.end);
            if to > from && map.kind_at(r.end - 1) == Some(kind) && map.kind_at(r.end) == Some(kind)
            {
                merged = merged.saturating_add(to - from);
            }
        }
        rest = after;
    }
    report.overlapping_pairs = pairs;
    report.merged = merged;
}

/// Writes regions into caller storage, merging touching regions of equal
/// kind and counting what does not fit.
pub(super) struct RegionWriter<'s> {
    storage: &'s mut [MemoryRegion],
    /// The region being extended, not yet written.
    open: Option<MemoryRegion>,
    /// Regions written (or that would have been, had they fitted).
    needed: usize,
}

impl<'s> RegionWriter<'s> {
    pub(super) fn new(storage: &'s mut [MemoryRegion]) -> Self {
        RegionWriter {
            storage,
            open: None,
            needed: 0,
        }
    }

    /// The regions written, or the exact need if they did not fit.
    pub(super) fn finish(mut self) -> Result<&'s [MemoryRegion], MapError> {
        self.flush();
        if self.needed > self.storage.len() {
            return Err(MapError::StorageTooSmall {
                needed: self.needed,
                available: self.storage.len(),
            });
        }
        let needed = self.needed;
        let storage: &'s mut [MemoryRegion] = self.storage;
        Ok(&storage[..needed])
    }

    pub(super) fn push(&mut self, region: MemoryRegion) {
        if let Some(open) = &mut self.open
            && open.kind == region.kind
            && open.end == region.start
        {
            open.end = region.end;
            return;
        }
        self.flush();
        self.open = Some(region);
    }

    fn flush(&mut self) {
        if let Some(region) = self.open.take() {
            if let Some(slot) = self.storage.get_mut(self.needed) {
                *slot = region;
            }
            self.needed += 1;
        }
    }
}

const fn align_down(addr: u64) -> u64 {
    addr & !(FRAME_SIZE - 1)
}

const fn align_up(addr: u64) -> u64 {
    // At most PHYS_LIMIT, so this cannot overflow.
    align_down(addr + FRAME_SIZE - 1)
}

#[cfg(feature = "std")]
mod hosted {
    use super::{FirmwareRegion, MapError, MemoryRegion, NormalizeOptions, NormalizeReport};
    use std::vec::Vec;

    /// [`normalize`](super::normalize) into a `Vec` of exactly the needed
    /// size. Hosted convenience (feature `std`).
    #[must_use]
    pub fn normalize_to_vec(
        firmware: &[FirmwareRegion],
        options: NormalizeOptions,
    ) -> (Vec<MemoryRegion>, NormalizeReport) {
        let mut storage = Vec::new();
        loop {
            match super::normalize(firmware, &mut storage, options) {
                Ok((map, report)) => {
                    let len = map.regions().len();
                    storage.truncate(len);
                    return (storage, report);
                }
                Err(MapError::StorageTooSmall { needed, .. }) => {
                    storage.resize(needed, MemoryRegion::default());
                }
                // `normalize` reports no other error; try with more room.
                Err(_) => storage.resize(storage.len() * 2 + 1, MemoryRegion::default()),
            }
        }
    }
}

#[cfg(feature = "std")]
pub use hosted::normalize_to_vec;
