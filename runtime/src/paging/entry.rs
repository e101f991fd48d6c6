//! One page-table entry: its bits, what it is ([`Entry`]) and the rules
//! that turn requested flags into entry bits.
//!
//! Every entry holds its frame in bits 12–51 ([`ADDR_MASK`]); bit 7
//! (`HUGE_PAGE`) makes a level-2 or level-3 entry a leaf, and is PAT in a
//! level-1 entry. A level-4 entry is always a table pointer.

use x86_64::PhysAddr;
use x86_64::structures::paging::mapper::UnmapError;
use x86_64::structures::paging::{PageSize, PageTableFlags, PhysFrame};

use super::EntrySize;
use super::walk::WalkFail;

pub(crate) const PRESENT: u64 = 1;
pub(crate) const WRITABLE: u64 = 1 << 1;
pub(crate) const USER: u64 = 1 << 2;
pub(crate) const HUGE: u64 = 1 << 7;
pub(crate) const GLOBAL: u64 = 1 << 8;
/// The frame bits of an entry (the emulator's `ADDR_MASK` is the same mask,
/// defined again there as an independent model).
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Bits of requested parent flags that never reach a parent entry (the
/// rules for flags on [`RecursivePageTable`](super::RecursivePageTable)).
pub(crate) const PARENT_IGNORED: u64 = HUGE | GLOBAL | ADDR_MASK;

/// A page-table entry's value.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry(pub(crate) u64);

impl Entry {
    /// Zero: neither a page nor a table, not even a non-present one.
    #[inline(always)]
    pub(crate) const fn is_unused(self) -> bool {
        self.0 == 0
    }

    #[inline(always)]
    pub(crate) const fn is_present(self) -> bool {
        self.0 & PRESENT != 0
    }

    #[inline(always)]
    pub(crate) const fn is_huge(self) -> bool {
        self.0 & HUGE != 0
    }

    /// A present pointer to a table (at level 2 or above).
    #[inline(always)]
    pub(crate) const fn is_table(self) -> bool {
        self.0 & (PRESENT | HUGE) == PRESENT
    }

    /// A present table pointer with `WRITABLE`: one a write below may pass.
    #[inline(always)]
    pub(crate) const fn is_writable_table(self) -> bool {
        self.0 & (PRESENT | HUGE | WRITABLE) == PRESENT | WRITABLE
    }

    /// Whether an entry in use at level `S::LEVEL` maps a page of size `S`:
    /// every level-1 entry does; above, one with `HUGE_PAGE`.
    #[inline(always)]
    pub(crate) const fn leaf<S: EntrySize>(self) -> bool {
        S::LEVEL == 1 || self.is_huge()
    }

    /// The frame address.
    #[inline(always)]
    pub(crate) const fn addr(self) -> u64 {
        self.0 & ADDR_MASK
    }
}

/// The bits `flags` contribute to a leaf entry of size `S`: without address
/// bits, with `HUGE_PAGE` for a huge size; `None` if `flags` has `HUGE_PAGE`
/// and `S` is 4 KiB (bit 7 is PAT there, and the entry could not be unmapped
/// or reclaimed as a 4 KiB page).
#[inline(always)]
pub(crate) fn leaf_bits<S: EntrySize>(flags: PageTableFlags) -> Option<u64> {
    let bits = flags.bits();
    if S::LEVEL == 1 && bits & HUGE != 0 {
        None
    } else {
        Some((bits & !ADDR_MASK) | S::HUGE_BIT)
    }
}

/// Why `entry`, at level `S::LEVEL`, does not map a page of size `S`: unused
/// or an absent table (`NotMapped`), or a present table (`Huge`, as
/// `x86_64`'s `ParentEntryHugePage`). The rule of
/// [`RecursivePageTable::translate`](super::RecursivePageTable::translate).
#[inline(always)]
pub(crate) const fn not_a_page<S: EntrySize>(entry: u64) -> Option<WalkFail> {
    let entry = Entry(entry);
    if entry.is_unused() {
        Some(WalkFail::NotMapped)
    } else if entry.leaf::<S>() {
        None
    } else {
        Some(WalkFail::at(entry.0))
    }
}

/// The frame of a leaf entry being unmapped, with `x86_64`'s checks.
#[inline(always)]
pub(crate) fn leaf_frame_for_unmap<S: EntrySize>(entry: u64) -> Result<PhysFrame<S>, UnmapError> {
    let entry = Entry(entry);
    if !entry.is_present() {
        return Err(UnmapError::PageNotMapped);
    }
    if entry.is_huge() != (S::LEVEL > 1) {
        return Err(UnmapError::ParentEntryHugePage);
    }
    frame_of::<S>(entry.addr()).map_err(UnmapError::InvalidFrameAddress)
}

/// The frame at `addr` (an entry's address bits), or `addr` when it is not
/// aligned to `S`.
#[inline(always)]
pub(crate) fn frame_of<S: PageSize>(addr: u64) -> Result<PhysFrame<S>, PhysAddr> {
    if addr & (S::SIZE - 1) != 0 {
        return Err(PhysAddr::new(addr));
    }
    // SAFETY: `addr` is aligned to `S` and below 2^52 (an entry's address bits).
    Ok(unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_unsafe(addr)) })
}
