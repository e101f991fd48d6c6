//! [`Platform`]: what differs between the QEMU kernel and the emulator.

use framealloc::paging::RangeError;
use framealloc::x86_64::structures::paging::PageSize;
use framealloc::x86_64::structures::paging::mapper::{
    FlagUpdateError, MapToError, MappedFrame, TranslateResult, UnmapError,
};
use framealloc::x86_64::structures::paging::page::{PageRange, PageRangeInclusive};
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

/// A page fault caught by a recoverable access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The faulting address (CR2).
    pub addr: VirtAddr,
    /// The page-fault error code (bit 0: protection violation, bit 1: write).
    pub error_code: u64,
}

impl Fault {
    /// Whether the page was present (a protection fault, not a missing page).
    pub const fn is_protection(&self) -> bool {
        self.error_code & 1 != 0
    }

    /// Whether the faulting access was a write.
    pub const fn is_write(&self) -> bool {
        self.error_code & 2 != 0
    }
}

/// A page-table operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingError {
    /// A page table was needed and the allocator returned none.
    FrameAllocationFailed,
    /// The page is already mapped.
    AlreadyMapped,
    /// The page is not mapped.
    NotMapped,
    /// A huge page is in the way (or the page is mapped with another size).
    HugePage,
    /// Anything else the implementation reports.
    Other(&'static str),
}

impl<S: PageSize> From<MapToError<S>> for PagingError {
    fn from(error: MapToError<S>) -> Self {
        match error {
            MapToError::FrameAllocationFailed => PagingError::FrameAllocationFailed,
            MapToError::ParentEntryHugePage => PagingError::HugePage,
            MapToError::PageAlreadyMapped(_) => PagingError::AlreadyMapped,
        }
    }
}

impl From<UnmapError> for PagingError {
    fn from(error: UnmapError) -> Self {
        match error {
            UnmapError::PageNotMapped => PagingError::NotMapped,
            UnmapError::ParentEntryHugePage => PagingError::HugePage,
            UnmapError::InvalidFrameAddress(_) => PagingError::Other("invalid frame address"),
        }
    }
}

impl From<FlagUpdateError> for PagingError {
    fn from(error: FlagUpdateError) -> Self {
        match error {
            FlagUpdateError::PageNotMapped => PagingError::NotMapped,
            FlagUpdateError::ParentEntryHugePage => PagingError::HugePage,
        }
    }
}

/// A range operation's error: the error of the page it stopped at, or
/// `Other` for a range that crosses the canonical hole.
impl<E: Into<PagingError>> From<RangeError<E>> for PagingError {
    fn from(error: RangeError<E>) -> Self {
        error.into_error().map_or(
            PagingError::Other("range crosses the canonical hole"),
            Into::into,
        )
    }
}

/// What `translate` found for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Mapped: the physical address, the flags of the final entry and the
    /// page size in bytes.
    Mapped {
        /// Physical address the virtual address translates to.
        addr: PhysAddr,
        /// Flags of the entry that maps the page.
        flags: PageTableFlags,
        /// 4 KiB, 2 MiB or 1 GiB.
        size: u64,
    },
    /// Not mapped.
    NotMapped,
}

/// `x86_64`'s translation result: an address that maps to an invalid frame
/// address counts as not mapped.
impl From<TranslateResult> for Translation {
    fn from(result: TranslateResult) -> Self {
        match result {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => {
                let (start, size) = match frame {
                    MappedFrame::Size4KiB(f) => (f.start_address(), f.size()),
                    MappedFrame::Size2MiB(f) => (f.start_address(), f.size()),
                    MappedFrame::Size1GiB(f) => (f.start_address(), f.size()),
                };
                Translation::Mapped {
                    addr: start + offset,
                    flags,
                    size,
                }
            }
            TranslateResult::NotMapped | TranslateResult::InvalidFrameAddress(_) => {
                Translation::NotMapped
            }
        }
    }
}

/// A page table on some machine, with accesses through that machine's MMU.
///
/// Every mapping operation here performs its TLB flushes before returning
/// (ranges: one flush decision per call). Accesses go through the machine's
/// MMU and TLB, so a missing flush is visible as stale data.
pub trait Platform {
    /// Short name of the machine and page-table implementation, e.g. `qemu/ours`.
    fn name(&self) -> &'static str;

    /// Reads a `u64` through the MMU.
    ///
    /// # Errors
    ///
    /// The page fault the access raised.
    fn read_u64(&mut self, addr: VirtAddr) -> Result<u64, Fault>;

    /// Writes a `u64` through the MMU.
    ///
    /// # Errors
    ///
    /// The page fault the access raised.
    fn write_u64(&mut self, addr: VirtAddr, value: u64) -> Result<(), Fault>;

    /// Maps a 4 KiB page (and flushes).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn map_4k<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError>;

    /// Maps a 2 MiB page (and flushes).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn map_2m<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size2MiB>,
        frame: PhysFrame<Size2MiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError>;

    /// Maps a 1 GiB page (and flushes).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn map_1g<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size1GiB>,
        frame: PhysFrame<Size1GiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError>;

    /// Unmaps a 4 KiB page (and flushes); returns its frame.
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn unmap_4k(&mut self, page: Page<Size4KiB>) -> Result<PhysFrame<Size4KiB>, PagingError>;

    /// Unmaps a 2 MiB page (and flushes); returns its frame.
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn unmap_2m(&mut self, page: Page<Size2MiB>) -> Result<PhysFrame<Size2MiB>, PagingError>;

    /// Unmaps a 1 GiB page (and flushes); returns its frame.
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn unmap_1g(&mut self, page: Page<Size1GiB>) -> Result<PhysFrame<Size1GiB>, PagingError>;

    /// Replaces the flags of a mapped 4 KiB page (and flushes).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn update_flags_4k(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError>;

    /// Drops every non-global TLB entry, as a CR3 reload does (what
    /// `x86_64`'s `MapperFlushAll` asks for after a parent-entry change).
    fn flush_all(&mut self);

    /// Maps a 4 KiB page with explicit flags for the parent entries (and
    /// flushes).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn map_4k_with_table_flags<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        parent_flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError>;

    /// Replaces the flags of the level-2 entry above `page` and performs
    /// the invalidation the implementation asks for (`x86_64`: the
    /// `MapperFlushAll` of `set_flags_p2_entry`, a CR3 reload).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn set_flags_p2_entry(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError>;

    /// The frame of the active level-4 table (CR3).
    fn cr3(&mut self) -> PhysFrame;

    /// Writes CR3: switches to the address space whose level-4 table is
    /// `level_4` (which must map the scenario code and data as the current
    /// one does, and be recursive at [`crate::RECURSIVE_INDEX`]). The page
    /// table follows the switch.
    fn set_cr3(&mut self, level_4: PhysFrame);

    /// Reads the `u64` at physical address `addr` (below 288 MiB).
    fn read_phys(&mut self, addr: PhysAddr) -> u64;

    /// Writes the `u64` at physical address `addr` (below 288 MiB).
    fn write_phys(&mut self, addr: PhysAddr, value: u64);

    /// Translates through the page table (not the TLB).
    fn translate(&mut self, addr: VirtAddr) -> Translation;

    /// Maps `pages[i]` to `first + i`, with one flush decision.
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn map_range_4k<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        pages: PageRange<Size4KiB>,
        first: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError>;

    /// Unmaps every page of `pages`, with one flush decision.
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn unmap_range_4k(&mut self, pages: PageRange<Size4KiB>) -> Result<(), PagingError>;

    /// Replaces the flags of every page of `pages`, with one flush decision.
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn update_range_4k(
        &mut self,
        pages: PageRange<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError>;

    /// Frees the page tables of `pages` that map nothing (and flushes what
    /// the implementation thinks needs flushing).
    ///
    /// # Errors
    ///
    /// What the page table reports.
    fn reclaim<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        pages: PageRangeInclusive<Size4KiB>,
        tables: &mut D,
    ) -> Result<(), PagingError>;

    /// framealloc's address-space operations, where the platform's table
    /// has them (`None`: the space scenarios fail there).
    fn spaces(&mut self) -> Option<&mut dyn crate::Spaces> {
        None
    }
}
