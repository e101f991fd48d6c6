//! Memory maps: firmware input, normalisation, and the normalised [`MemoryMap`].
//!
//! Firmware memory maps (E820, UEFI, multiboot) are messy: entries come
//! unsorted, overlap, start and end in the middle of frames, have zero length,
//! or reach past the 52-bit physical address limit. [`normalize`] turns such
//! input into a [`MemoryMap`]: sorted, disjoint, frame-aligned regions, with
//! adjacent regions of equal kind merged, and a [`NormalizeReport`] of what it
//! changed. No heap is used: the caller provides the output storage.
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
//! 5. **Frame 0 is withheld** (its usable part becomes `Reserved`) unless
//!    [`NormalizeOptions::allow_frame_zero`] is set: a null physical address
//!    is too easily mistaken for "no frame".
//! 6. **Holes stay holes.** Frames covered by no entry (or only partly by
//!    usable entries) appear in no region.
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
//! let mut storage = [Default::default(); 16];
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
//! assert_eq!(report.usable_trimmed, 1);
//! assert_eq!(report.non_usable_widened, 1);
//! assert_eq!(report.overlapping_pairs, 2); // frame 0x9f000, and the ACPI NVS frame
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NormalizeReport {
    /// Number of firmware entries read.
    pub entries_in: usize,
    /// Number of regions in the normalised map.
    pub regions_out: usize,
    /// Whether the entries were not sorted by base address.
    pub unsorted: bool,
    /// Entries of length zero, dropped (rule 1).
    pub dropped_empty: usize,
    /// Entries wholly at or above [`PHYS_LIMIT`], dropped (rule 1).
    pub dropped_beyond_limit: usize,
    /// Entries cut short at [`PHYS_LIMIT`] (rule 1).
    pub clipped_at_limit: usize,
    /// Usable entries with an edge inside a frame, shrunk inward (rule 3).
    pub usable_trimmed: usize,
    /// Non-usable entries with an edge inside a frame, grown outward (rule 2).
    pub non_usable_widened: usize,
    /// Pairs of entries of different kinds that share a frame (rule 4).
    pub overlapping_pairs: usize,
    /// Whether frame 0 was usable and has been withheld (rule 5).
    pub frame_zero_withheld: bool,
    /// Regions that absorbed a neighbour of the same kind (rule 7).
    pub merged: usize,
    /// Usable bytes in the normalised map.
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
    /// The output storage holds fewer regions than the map needs.
    StorageTooSmall {
        /// The number of regions the map needs.
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
/// `storage` needs at most `4 * firmware.len() + 2` regions; the exact need is
/// reported if it is too small. Runs in O(n²) for `n` entries (O(n³) in
/// pathological inputs with many overlapping usable entries), with no heap —
/// firmware maps hold tens to a few hundred entries.
///
/// # Errors
///
/// [`MapError::StorageTooSmall`] if `storage` cannot hold the map; `storage`
/// then holds a prefix of it.
pub fn normalize<'s>(
    firmware: &[FirmwareRegion],
    storage: &'s mut [MemoryRegion],
    options: NormalizeOptions,
) -> Result<(MemoryMap<'s>, NormalizeReport), MapError> {
    let mut report = count_input_changes(firmware);
    let mut out = RegionWriter::new(storage);

    // Walk the intervals between consecutive candidate boundaries; the kind
    // is constant on each (see `candidates`), so its first frame decides it.
    let mut next = next_boundary(firmware, 0, true);
    while let Some(start) = next {
        next = next_boundary(firmware, start, false);
        let Some(end) = next else { break };
        let Some(kind) = frame_kind(firmware, start) else {
            continue;
        };
        if start == 0 && kind.is_usable() && !options.allow_frame_zero {
            report.frame_zero_withheld = true;
            out.push(MemoryRegion::new(0, FRAME_SIZE, RegionKind::Reserved));
            if end > FRAME_SIZE {
                out.push(MemoryRegion::new(FRAME_SIZE, end, kind));
            }
        } else {
            out.push(MemoryRegion::new(start, end, kind));
        }
    }
    report.merged = out.merged;
    let regions = out.finish()?;
    report.regions_out = regions.len();
    report.usable_bytes = regions
        .iter()
        .filter(|r| r.kind.is_usable())
        .map(MemoryRegion::len)
        .sum();
    Ok((MemoryMap { regions }, report))
}

/// Writes regions into caller storage, merging touching regions of equal
/// kind and counting what does not fit.
pub(super) struct RegionWriter<'s> {
    storage: &'s mut [MemoryRegion],
    /// The region being extended, not yet written.
    open: Option<MemoryRegion>,
    /// Regions written (or that would have been, had they fitted).
    needed: usize,
    pub(super) merged: usize,
}

impl<'s> RegionWriter<'s> {
    pub(super) fn new(storage: &'s mut [MemoryRegion]) -> Self {
        RegionWriter {
            storage,
            open: None,
            needed: 0,
            merged: 0,
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
            self.merged += 1;
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
    // Below PHYS_LIMIT, so this cannot overflow.
    align_down(addr + FRAME_SIZE - 1)
}

/// The candidate boundaries of one entry: where the kind of a frame may
/// change because of it. A frame `f` is touched by `[s, e)` iff
/// `align_down(s) <= f < align_up(e)`, and an entry edge inside a frame makes
/// that frame an interval of its own; so between consecutive candidates every
/// frame has the same kind.
fn candidates(r: &FirmwareRegion) -> [u64; 4] {
    match r.clipped() {
        Some((s, e)) => [align_down(s), align_up(s), align_down(e), align_up(e)],
        None => [u64::MAX; 4],
    }
}

/// The smallest candidate boundary `>= at` (if `inclusive`) or `> at`, also
/// counting `FRAME_SIZE` (where frame 0 ends).
fn next_boundary(firmware: &[FirmwareRegion], at: u64, inclusive: bool) -> Option<u64> {
    let mut best = u64::MAX;
    let mut consider = |b: u64| {
        let ok = if inclusive { b >= at } else { b > at };
        if ok && b < best {
            best = b;
        }
    };
    consider(FRAME_SIZE);
    for r in firmware {
        for b in candidates(r) {
            if b != u64::MAX {
                consider(b);
            }
        }
    }
    (best != u64::MAX).then_some(best)
}

/// The kind of the frame at `f` by rules 2–4, or `None` for a hole.
fn frame_kind(firmware: &[FirmwareRegion], f: u64) -> Option<RegionKind> {
    let frame_end = f + FRAME_SIZE;
    let mut restrictive: Option<RegionKind> = None;
    for r in firmware {
        if r.kind.is_usable() {
            continue;
        }
        if let Some((s, e)) = r.clipped()
            && s < frame_end
            && e > f
        {
            restrictive = Some(match restrictive {
                Some(k) => k.more_restrictive(r.kind),
                None => r.kind,
            });
        }
    }
    if restrictive.is_some() {
        return restrictive;
    }
    // Usable only if usable entries cover every byte: extend `covered` as far
    // as entries starting at or before it reach.
    let mut covered = f;
    loop {
        let reach = firmware
            .iter()
            .filter(|r| r.kind.is_usable())
            .filter_map(FirmwareRegion::clipped)
            .filter(|&(s, e)| s <= covered && e > covered)
            .map(|(_, e)| e)
            .max();
        match reach {
            Some(e) if e >= frame_end => return Some(RegionKind::Usable),
            Some(e) => covered = e,
            None => return None,
        }
    }
}

/// The report fields that depend on the entries alone.
fn count_input_changes(firmware: &[FirmwareRegion]) -> NormalizeReport {
    let mut report = NormalizeReport {
        entries_in: firmware.len(),
        ..NormalizeReport::default()
    };
    let mut previous_base = 0;
    for (i, r) in firmware.iter().enumerate() {
        if i > 0 && r.base < previous_base {
            report.unsorted = true;
        }
        previous_base = r.base;
        if r.len == 0 {
            report.dropped_empty += 1;
            continue;
        }
        let Some((s, e)) = r.clipped() else {
            report.dropped_beyond_limit += 1;
            continue;
        };
        if r.base.checked_add(r.len).is_none_or(|end| end > PHYS_LIMIT) {
            report.clipped_at_limit += 1;
        }
        if s % FRAME_SIZE != 0 || e % FRAME_SIZE != 0 {
            if r.kind.is_usable() {
                report.usable_trimmed += 1;
            } else {
                report.non_usable_widened += 1;
            }
        }
        for other in &firmware[..i] {
            if other.kind == r.kind {
                continue;
            }
            if let Some((os, oe)) = other.clipped()
                && align_down(s) < align_up(oe)
                && align_down(os) < align_up(e)
            {
                report.overlapping_pairs += 1;
            }
        }
    }
    report
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
