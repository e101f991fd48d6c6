//! The user-space recursive window.
//!
//! A recursive page table reaches its tables through the virtual addresses
//! that its recursive level-4 entry creates. In user space nothing creates
//! them, so we make them: level-4 index [`RECURSIVE`] addresses a 512 GiB
//! window, which we `mmap` (lazily zero-filled, no swap reservation). The
//! level-4 table lives at the window's recursive address `(r, r, r, r)` and
//! its entry `r` is set, so every table of the tree is at exactly the address
//! where the MMU would show it. Code that walks recursive addresses —
//! `x86_64`'s `RecursivePageTable`, our hardware backend, a hand-written
//! walk — then runs unchanged, with the same memory-access pattern as in a
//! kernel. Physical frames are numbers from a counter: nothing dereferences
//! them.
//!
//! Mapped pages live in level-4 entry [`REGION`] of the emulated tree; no
//! benchmark touches them, they are only entries.

use std::sync::atomic::{AtomicBool, Ordering};

use framealloc::x86_64::PhysAddr;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTable, PageTableIndex, PhysFrame, Size4KiB,
};

/// The recursive level-4 index (lower half, so the window is user memory).
pub(crate) const RECURSIVE: u64 = 1;
/// The level-4 index of the region the benchmarks map pages into.
pub(crate) const REGION: u64 = 2;
/// Virtual address of the first page of the region.
pub(crate) const REGION_START: u64 = REGION << 39;
/// The fake physical frame that holds the level-4 table.
pub(crate) const LEVEL_4_FRAME: u64 = 0x1000;
/// First fake physical address handed out for page tables.
pub(crate) const TABLE_FRAMES_START: u64 = 1 << 45;
/// First fake physical address of mapped data frames.
pub(crate) const DATA_FRAMES_START: u64 = 1 << 40;

/// Entry bits used by the hand-written walks.
pub(crate) const PRESENT: u64 = 1;
/// Writable bit.
pub(crate) const WRITABLE: u64 = 1 << 1;
/// Huge-page bit (level 2 and 3 entries).
pub(crate) const HUGE: u64 = 1 << 7;
/// The physical-address bits of an entry.
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const WINDOW_START: u64 = RECURSIVE << 39;
const WINDOW_LEN: usize = 1 << 39;

/// Recursive virtual address made of four level-4..level-1 indices.
#[inline(always)]
pub(crate) const fn recursive(i4: u64, i3: u64, i2: u64, i1: u64) -> u64 {
    (i4 << 39) | (i3 << 30) | (i2 << 21) | (i1 << 12)
}

/// The level-4 table.
#[inline(always)]
pub(crate) const fn level_4() -> *mut u64 {
    recursive(RECURSIVE, RECURSIVE, RECURSIVE, RECURSIVE) as *mut u64
}

/// The level-3 table under level-4 entry `i4`.
#[inline(always)]
pub(crate) const fn level_3(i4: u64) -> *mut u64 {
    recursive(RECURSIVE, RECURSIVE, RECURSIVE, i4) as *mut u64
}

/// The level-2 table under entries `i4`, `i3`.
#[inline(always)]
pub(crate) const fn level_2(i4: u64, i3: u64) -> *mut u64 {
    recursive(RECURSIVE, RECURSIVE, i4, i3) as *mut u64
}

/// The level-1 table under entries `i4`, `i3`, `i2`.
#[inline(always)]
pub(crate) const fn level_1(i4: u64, i3: u64, i2: u64) -> *mut u64 {
    recursive(RECURSIVE, i4, i3, i2) as *mut u64
}

static OPEN: AtomicBool = AtomicBool::new(false);

/// The mapped window. At most one exists per process; borrowing it mutably
/// is what gives a page-table subject exclusive use of the tables.
pub(crate) struct Window {
    _private: (),
}

impl Window {
    /// Maps the window and installs the level-4 table with its recursive entry.
    ///
    /// # Panics
    ///
    /// If a window is already open or the kernel refuses the mapping.
    pub(crate) fn open() -> Window {
        assert!(
            !OPEN.swap(true, Ordering::SeqCst),
            "the recursive window is already open"
        );
        // SAFETY: an anonymous private mapping at a fixed address that the
        // kernel refuses (MAP_FIXED_NOREPLACE) if anything is mapped there,
        // so no existing memory is replaced.
        let at = unsafe {
            libc::mmap(
                WINDOW_START as *mut libc::c_void,
                WINDOW_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert!(
            at as u64 == WINDOW_START,
            "cannot map the 512 GiB recursive window at {WINDOW_START:#x}: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the level-4 table is inside the window just mapped.
        unsafe {
            level_4()
                .add(RECURSIVE as usize)
                .write(LEVEL_4_FRAME | PRESENT | WRITABLE);
        }
        Window { _private: () }
    }

    /// The level-4 table, at its recursive address.
    #[allow(
        clippy::unused_self,
        reason = "the borrow of `self` is the exclusivity proof"
    )]
    #[allow(
        clippy::cast_ptr_alignment,
        reason = "recursive addresses are 4 KiB aligned"
    )]
    pub(crate) fn level_4_table(&mut self) -> &mut PageTable {
        // SAFETY: the table is mapped for the window's lifetime, 4 KiB aligned,
        // and the `&mut self` borrow makes this the only reference to it.
        unsafe { &mut *level_4().cast::<PageTable>() }
    }

    /// The recursive index, as `x86_64` wants it.
    pub(crate) fn recursive_index() -> PageTableIndex {
        PageTableIndex::new(RECURSIVE as u16)
    }

    /// Forgets the whole region: its level-4 entry is cleared. The table
    /// pages stay touched (warm).
    #[allow(
        clippy::unused_self,
        reason = "the borrow of `self` is the exclusivity proof"
    )]
    pub(crate) fn clear_region(&mut self) {
        // SAFETY: the level-4 table is mapped; `&mut self` is exclusive access.
        unsafe { level_4().add(REGION as usize).write(0) };
    }

    /// Clears the region and returns all its table pages to the kernel, so
    /// that the next use of them is a first touch (a page fault each).
    pub(crate) fn make_cold(&mut self) {
        self.clear_region();
        // SAFETY: `&mut self` proves no reference into the window is alive.
        unsafe { discard_region_tables() };
    }
}

/// Returns the region's table pages (not the level-4 table) to the kernel;
/// they read as zeroes afterwards and fault in again on first touch.
///
/// # Safety
///
/// The window is open and no reference into the region's tables is alive.
pub(crate) unsafe fn discard_region_tables() {
    {
        let ranges = [
            (level_3(REGION) as usize, 1usize << 12),
            (level_2(REGION, 0) as usize, 1 << 21),
            (level_1(REGION, 0, 0) as usize, 1 << 30),
        ];
        for (start, len) in ranges {
            // SAFETY: the range lies inside the window, which is private
            // anonymous memory; after DONTNEED it reads as zeroes again.
            let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
            assert_eq!(rc, 0, "madvise: {}", std::io::Error::last_os_error());
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made by `open`; every borrow of
        // it ended with `self`'s.
        unsafe { libc::munmap(WINDOW_START as *mut libc::c_void, WINDOW_LEN) };
        OPEN.store(false, Ordering::SeqCst);
    }
}

/// Fake physical frames for page tables: a counter that never fails.
#[derive(Debug)]
pub(crate) struct FakeFrames {
    next: u64,
    /// Frames given back (by reclaim).
    pub(crate) freed: u64,
}

impl FakeFrames {
    /// A counter starting at [`TABLE_FRAMES_START`].
    pub(crate) const fn new() -> Self {
        FakeFrames {
            next: TABLE_FRAMES_START,
            freed: 0,
        }
    }

    /// Starts counting again.
    pub(crate) fn reset(&mut self) {
        *self = FakeFrames::new();
    }

    /// Number of frames handed out since the last reset.
    pub(crate) fn allocated(&self) -> u64 {
        (self.next - TABLE_FRAMES_START) >> 12
    }

    /// The next frame's physical address.
    #[inline(always)]
    pub(crate) fn next_address(&mut self) -> u64 {
        let at = self.next;
        self.next += 4096;
        at
    }
}

// SAFETY: the counter only grows, so each frame is handed out once per
// reset; the frames are never dereferenced by anything.
unsafe impl FrameAllocator<Size4KiB> for FakeFrames {
    #[inline(always)]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        Some(PhysFrame::containing_address(PhysAddr::new_truncate(
            self.next_address(),
        )))
    }
}

impl FrameDeallocator<Size4KiB> for FakeFrames {
    #[inline(always)]
    unsafe fn deallocate_frame(&mut self, _frame: PhysFrame<Size4KiB>) {
        self.freed += 1;
    }
}
