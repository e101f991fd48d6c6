//! Shared by the paging tests: an emulated machine with a recursive level-4
//! table, and a page-table frame allocator that checks frame accounting.

#![allow(dead_code, unreachable_pub)]

pub mod generators;

use std::collections::BTreeSet;

use framealloc::emu::Machine;
use framealloc::paging::RecursivePageTable;
use framealloc::x86_64::PhysAddr;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTableIndex, PhysFrame, Size4KiB,
};

/// Physical frame of the level-4 table.
pub const LEVEL_4: u64 = 0x1000;
/// Page-table frames are handed out from here up.
pub const TABLES_START: u64 = 0x10_0000;
/// Data frames used by tests start here (far from table frames).
pub const DATA_START: u64 = 0x100_0000_0000;

pub fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

/// A machine and the table over it, recursive at `index`.
pub fn table_at(index: u16) -> RecursivePageTable<Machine> {
    let machine =
        Machine::with_recursive_table(PageTableIndex::new(index), frame(LEVEL_4)).unwrap();
    RecursivePageTable::new(machine, PageTableIndex::new(index)).unwrap()
}

/// Hands out 4 KiB frames for page tables, reusing freed ones first (most
/// recently freed first, so a freed table's frame comes straight back), and
/// checks that no frame is handed out twice or freed when not handed out.
#[derive(Debug, Default)]
pub struct TableFrames {
    next: u64,
    free: Vec<u64>,
    /// Frames currently handed out.
    pub out: BTreeSet<u64>,
    /// How many more frames may be handed out (`None`: unlimited).
    pub budget: Option<usize>,
    /// Total allocations and deallocations.
    pub allocated: usize,
    pub deallocated: usize,
}

impl TableFrames {
    pub fn new() -> Self {
        TableFrames {
            next: TABLES_START,
            ..Default::default()
        }
    }

    /// Hands out frames from `addr` up (for data frames kept apart from
    /// the tables).
    pub fn starting_at(addr: u64) -> Self {
        TableFrames {
            next: addr,
            ..Default::default()
        }
    }

    pub fn with_budget(budget: usize) -> Self {
        TableFrames {
            budget: Some(budget),
            ..Self::new()
        }
    }
}

// SAFETY: frames are handed out at most once until deallocated (checked).
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        if let Some(budget) = &mut self.budget {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
        }
        let addr = self.free.pop().unwrap_or_else(|| {
            let addr = self.next;
            self.next += 4096;
            addr
        });
        assert!(self.out.insert(addr), "frame {addr:#x} handed out twice");
        self.allocated += 1;
        Some(frame(addr))
    }
}

impl FrameDeallocator<Size4KiB> for TableFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        let addr = frame.start_address().as_u64();
        assert!(
            self.out.remove(&addr),
            "frame {addr:#x} freed but not handed out"
        );
        self.deallocated += 1;
        self.free.push(addr);
    }
}
