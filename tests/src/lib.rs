//! Support code for framealloc's integration tests.
//!
//! [`Arena`] is host memory that plays physical memory for `x86_64`'s
//! [`OffsetPageTable`]: physical address `p` lives at `arena_base + p`, so
//! page tables built by `x86_64` itself can be walked and checked on the host.

use framealloc::x86_64::structures::paging::{OffsetPageTable, PageTable, PhysFrame, Size4KiB};
use framealloc::x86_64::{PhysAddr, VirtAddr};

/// Host memory standing in for the first `len` physical frames.
///
/// Frame 0 holds the level-4 table of [`Arena::mapper`]; frames `1..len` are
/// free for page tables.
pub struct Arena {
    frames: Box<[PageTable]>,
}

impl Arena {
    /// An arena of `len` zeroed frames (`len >= 1`).
    ///
    /// # Panics
    ///
    /// If `len` is 0.
    #[must_use]
    pub fn new(len: usize) -> Self {
        assert!(len >= 1, "an arena needs at least the level-4 frame");
        let frames = (0..len).map(|_| PageTable::new()).collect();
        Arena { frames }
    }

    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the arena has no frame (never: `new` demands one).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The virtual address at which physical address 0 appears.
    #[must_use]
    pub fn physical_memory_offset(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.frames.as_ptr())
    }

    /// Physical frame number `index` of the arena.
    ///
    /// # Panics
    ///
    /// If `index` is out of the arena.
    #[must_use]
    pub fn frame(&self, index: usize) -> PhysFrame<Size4KiB> {
        assert!(
            index < self.frames.len(),
            "frame {index} is outside the arena"
        );
        PhysFrame::containing_address(PhysAddr::new(index as u64 * 4096))
    }

    /// Every frame except frame 0 (the level-4 table), in ascending order:
    /// the frames that page tables may be allocated from.
    pub fn table_frames(&self) -> impl Iterator<Item = PhysFrame<Size4KiB>> + use<> {
        (1..self.frames.len() as u64)
            .map(|i| PhysFrame::containing_address(PhysAddr::new(i * 4096)))
    }

    /// Whether `frame` lies inside the arena.
    #[must_use]
    pub fn contains(&self, frame: PhysFrame<Size4KiB>) -> bool {
        frame.start_address().as_u64() / 4096 < self.frames.len() as u64
    }

    /// Frames of every page table reachable from the level-4 table in frame 0
    /// (level 4 included), in walk order. A frame reachable twice appears
    /// twice, so callers can check that tables are not shared by mistake.
    #[must_use]
    pub fn reachable_tables(&self) -> Vec<PhysFrame<Size4KiB>> {
        use framealloc::x86_64::structures::paging::PageTableFlags;
        let mut found = vec![self.frame(0)];
        let mut stack = vec![(0usize, 4u8)];
        while let Some((index, level)) = stack.pop() {
            if level == 1 {
                continue;
            }
            for entry in self.frames[index].iter() {
                let flags = entry.flags();
                if !flags.contains(PageTableFlags::PRESENT)
                    || flags.contains(PageTableFlags::HUGE_PAGE)
                {
                    continue;
                }
                let frame = PhysFrame::containing_address(entry.addr());
                found.push(frame);
                if self.contains(frame) {
                    stack.push(((frame.start_address().as_u64() / 4096) as usize, level - 1));
                }
            }
        }
        found
    }

    /// `x86_64`'s `OffsetPageTable` with frame 0 as its level-4 table.
    pub fn mapper(&mut self) -> OffsetPageTable<'_> {
        let offset = self.physical_memory_offset();
        let level_4 = &mut self.frames[0];
        // SAFETY: every physical address the mapper will dereference is a
        // page-table frame handed to it by the tests, all of which come from
        // `table_frames`, i.e. lie inside `self.frames`, which is mapped at
        // `offset` and borrowed mutably for the mapper's lifetime.
        unsafe { OffsetPageTable::new(level_4, offset) }
    }

    /// Entry `index` of the table in `frame` (which must lie in the arena).
    ///
    /// # Panics
    ///
    /// If `frame` is outside the arena or `index >= 512`.
    #[must_use]
    pub fn entry(&self, frame: PhysFrame<Size4KiB>, index: usize) -> u64 {
        let table = &self.frames[(frame.start_address().as_u64() / 4096) as usize];
        table[index].addr().as_u64() | table[index].flags().bits()
    }
}

/// Hands out the frames `first, first + 4 KiB, …` and takes freed frames back
/// (last freed, first reused), recording every deallocation; two instances
/// fed the same calls hand out the same frames.
#[derive(Debug, Default, Clone)]
pub struct SequentialFrames {
    next: u64,
    free: Vec<u64>,
    /// Frames handed to `deallocate_frame`, in order.
    pub freed: Vec<u64>,
}

impl SequentialFrames {
    /// Starts handing out at physical address `first`.
    #[must_use]
    pub fn new(first: u64) -> Self {
        SequentialFrames {
            next: first,
            ..Self::default()
        }
    }
}

// SAFETY: a frame is handed out again only after it was deallocated.
unsafe impl framealloc::FrameAllocator<Size4KiB> for SequentialFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let addr = self.free.pop().unwrap_or_else(|| {
            self.next += 4096;
            self.next - 4096
        });
        Some(PhysFrame::containing_address(PhysAddr::new(addr)))
    }
}

impl framealloc::FrameDeallocator<Size4KiB> for SequentialFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        let addr = frame.start_address().as_u64();
        self.freed.push(addr);
        self.free.push(addr);
    }
}
