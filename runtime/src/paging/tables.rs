//! The page tables of a hierarchy, as a list: for accounting, hand-off maps
//! and freeing a whole address space.

use core::iter::FusedIterator;

use x86_64::structures::paging::PhysFrame;
use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::{PhysAddr, VirtAddr};

use super::addr::{level_of, sign_extend};
use super::entry::{ADDR_MASK, Entry};
use super::{Backend, RecursivePageTable};

/// The size of the canonical address space (2^48 bytes), which the level-4
/// table covers.
const SPACE: u64 = 1 << 48;

/// One page table of a hierarchy, listed by
/// [`RecursivePageTable::page_tables`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageTableFrame {
    /// The table's level (4: the level-4 table itself).
    pub level: PageTableLevel,
    /// The frame holding the table.
    pub frame: PhysFrame,
    /// The first virtual address the table's entries cover.
    pub start: VirtAddr,
    /// How many bytes of virtual addresses its entries cover: 2 MiB for a
    /// level-1 table, 1 GiB, 512 GiB, and 2^48 for the level-4 table.
    pub size: u64,
}

/// Iterator over the page tables of a hierarchy; see
/// [`RecursivePageTable::page_tables`].
pub struct PageTables<'a, B: Backend> {
    table: &'a RecursivePageTable<B>,
    /// Level of the table being scanned (5: the level-4 table not yet
    /// reported; 0: finished).
    level: usize,
    /// 48-bit offset of the next entry to read in the table being scanned.
    next: u64,
    /// `ends[l]`: the end (48-bit offset, exclusive) of the level-`l` table
    /// being scanned.
    ends: [u64; 5],
}

impl<B: Backend> RecursivePageTable<B> {
    /// Every page table of the hierarchy, each parent before its children,
    /// in ascending virtual order. Not listed: the recursive entry's target
    /// again, tables behind non-present entries, and
    /// [`spare_frames`](Self::spare_frames).
    ///
    /// ```
    /// # #[cfg(feature = "emu")] {
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::RecursivePageTable;
    /// use framealloc::x86_64::structures::paging::{page_table::PageTableLevel, Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    ///
    /// let index = PageTableIndex::new(510);
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let mut table = RecursivePageTable::new(Machine::with_recursive_table(index, l4).unwrap(), index).unwrap();
    /// let mut next = 0x10_0000u64;
    /// // SAFETY: every call yields a fresh frame.
    /// let mut frames = unsafe { framealloc::from_fn(|| { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) }) };
    /// let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    /// // SAFETY: emulated memory.
    /// unsafe { table.map_to(page, PhysFrame::containing_address(PhysAddr::new(0x80_0000)), F::PRESENT | F::WRITABLE, &mut frames) }
    ///     .unwrap()
    ///     .flush();
    ///
    /// let tables: Vec<_> = table.page_tables().map(|t| (t.level, t.frame.start_address().as_u64(), t.start.as_u64(), t.size)).collect();
    /// assert_eq!(tables, [
    ///     (PageTableLevel::Four, 0x1000, 0, 1 << 48),
    ///     (PageTableLevel::Three, 0x10_1000, 0, 512 << 30),
    ///     (PageTableLevel::Two, 0x10_2000, 0x4000_0000, 1 << 30),
    ///     (PageTableLevel::One, 0x10_3000, 0x4000_0000, 2 << 20),
    /// ]);
    /// # }
    /// ```
    pub fn page_tables(&self) -> PageTables<'_, B> {
        PageTables {
            table: self,
            level: 5,
            next: 0,
            ends: [0, 0, 0, 0, SPACE],
        }
    }
}

impl<B: Backend> Iterator for PageTables<'_, B> {
    type Item = PageTableFrame;

    fn next(&mut self) -> Option<PageTableFrame> {
        if self.level == 5 {
            self.level = 4;
            return Some(PageTableFrame {
                level: PageTableLevel::Four,
                frame: self.table.backend().level_4_frame(),
                start: VirtAddr::zero(),
                size: SPACE,
            });
        }
        while self.level >= 2 {
            let level = self.level;
            if self.next >= self.ends[level] {
                // This table is done; its parent continues at the same
                // offset (the entry after the one that led here).
                self.level += 1;
                if self.level > 4 {
                    self.level = 0;
                }
                continue;
            }
            let span = 1u64 << (12 + 9 * (level - 1));
            let here = self.next;
            self.next += span;
            let v = sign_extend(here);
            if level == 4 && self.table.in_window(v) {
                continue;
            }
            // The walk descended through present table pointers (invariant).
            let entry = self.table.read(level, v);
            if !Entry(entry).is_table() {
                continue;
            }
            let child = level - 1;
            if child >= 2 {
                self.level = child;
                self.ends[child] = here + span;
                self.next = here;
            }
            return Some(PageTableFrame {
                level: level_of(child),
                frame: PhysFrame::containing_address(PhysAddr::new(entry & ADDR_MASK)),
                start: VirtAddr::new_truncate(v),
                size: span,
            });
        }
        self.level = 0;
        None
    }
}

impl<B: Backend> FusedIterator for PageTables<'_, B> {}
