//! Recursive-address arithmetic: where every table and entry of the
//! hierarchy appears through the recursive entry.
//!
//! With recursive index `r`, the level-1 table covering address `v` sits at
//! `r:p4(v):p3(v):p2(v)`, the level-2 table at `r:r:p4(v):p3(v)`, and so on:
//! `bases[l - 1]` is the address of the level-`l` tables with every
//! non-recursive index zero, and the indices of `v` are or-ed into it.
//! Range and scan code works on 48-bit offsets (`v & LOW_48`), which grow
//! across the canonical hole without a jump, and [`sign_extend`]s them back.

use x86_64::VirtAddr;
use x86_64::structures::paging::page_table::PageTableLevel;

use super::{Backend, RecursivePageTable};

/// The canonical address space as 48-bit offsets.
pub(crate) const LOW_48: u64 = (1 << 48) - 1;

/// The first non-canonical address (the first offset of the upper half).
pub(crate) const HOLE: u64 = 1 << 47;

/// Sign-extends a 48-bit offset to a canonical address.
#[inline(always)]
pub(crate) const fn sign_extend(addr: u64) -> u64 {
    ((addr << 16).cast_signed() >> 16).cast_unsigned()
}

/// `bases` for recursive index `r`, and the address of the recursive entry
/// itself (the level-4 entry address of every page in the window).
pub(crate) const fn recursive_bases(r: u64) -> ([u64; 4], u64) {
    let l1 = r << 39;
    let l2 = l1 | r << 30;
    let l3 = l2 | r << 21;
    let l4 = l3 | r << 12;
    let bases = [
        sign_extend(l1),
        sign_extend(l2),
        sign_extend(l3),
        sign_extend(l4),
    ];
    (bases, sign_extend(l4 | r << 3))
}

/// Index of `v`'s entry in its level-`level` table.
#[inline(always)]
pub(crate) const fn index(level: usize, v: u64) -> usize {
    ((v >> (3 + 9 * level)) & 511) as usize
}

/// Recursive address of the level-`level` table on the path to `v`, from
/// `base`, the table's `bases` entry.
#[inline(always)]
pub(crate) fn table_address(base: u64, level: usize, v: u64) -> VirtAddr {
    let mask = (1u64 << (9 * (4 - level))) - 1;
    let addr = base | (((v >> (12 + 9 * level)) & mask) << 12);
    // SAFETY: `bases` are sign-extended and the bits or-ed in lie below
    // bit 39 (level 1) or below the recursive index's bits, so the address
    // is canonical.
    unsafe { VirtAddr::new_unsafe(addr) }
}

impl<B: Backend> RecursivePageTable<B> {
    /// Recursive address of the level-`level` table on the path to `v`.
    #[inline(always)]
    pub(crate) fn table(&self, level: usize, v: u64) -> VirtAddr {
        table_address(self.bases[level - 1], level, v)
    }

    /// Recursive address of `v`'s entry in its level-`level` table: the
    /// table's address and the index times 8, in one shift and mask.
    #[inline(always)]
    pub(crate) fn entry_address(&self, level: usize, v: u64) -> VirtAddr {
        let mask = ((1u64 << (9 * (5 - level))) - 1) << 3;
        let addr = self.bases[level - 1] | ((v >> (9 * level)) & mask);
        // SAFETY: canonical, as in `table`.
        unsafe { VirtAddr::new_unsafe(addr) }
    }

    /// Whether `v` lies in the recursive window (its level-4 index is the
    /// recursive one): its level-4 entry is the recursive entry. Comparing
    /// the entry address, which every walk computes anyway, costs three
    /// instructions fewer than extracting the index.
    #[inline(always)]
    pub(crate) fn in_window(&self, v: u64) -> bool {
        self.entry_address(4, v).as_u64() == self.window_entry
    }
}

/// The `PageTableLevel` of a level number in `1..=4`.
pub(crate) const fn level_of(level: usize) -> PageTableLevel {
    match level {
        1 => PageTableLevel::One,
        2 => PageTableLevel::Two,
        3 => PageTableLevel::Three,
        _ => PageTableLevel::Four,
    }
}

#[cfg(test)]
mod tests {
    use x86_64::PhysAddr;
    use x86_64::structures::paging::{PageTableIndex, PhysFrame};

    use super::sign_extend;
    use crate::paging::{NoFlushMmu, RecursivePageTable};

    /// The entry-address window test agrees with the level-4 index, in both
    /// halves and at the window's edges.
    #[test]
    fn in_window_is_the_level_4_index() {
        for r in [1u16, 2, 255, 256, 300, 510] {
            // SAFETY: only addresses are computed; no memory is accessed.
            let table = unsafe {
                let mmu =
                    NoFlushMmu::without_flushes(PhysFrame::containing_address(PhysAddr::new(0)));
                RecursivePageTable::new_unchecked(mmu, PageTableIndex::new(r))
            };
            for i4 in [0, 1, u64::from(r) - 1, u64::from(r), u64::from(r) + 1, 511] {
                for low in [0, 0x1000, (1 << 39) - 1, 0x12_3456_7000] {
                    let v = sign_extend((i4 << 39) | low);
                    assert_eq!(table.in_window(v), i4 == u64::from(r), "r {r}, v {v:#x}");
                }
            }
        }
    }
}
