//! [`Platform`] over `x86_64`'s own `RecursivePageTable` (the reference the
//! differential scenarios compare against).

use framealloc::x86_64::VirtAddr;
use framealloc::x86_64::instructions::tlb;
use framealloc::x86_64::structures::paging::mapper::{CleanUp, Mapper, MapperFlush, Translate};
use framealloc::x86_64::structures::paging::page::{PageRange, PageRangeInclusive};
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageSize, PageTable, PageTableFlags, PhysFrame,
    RecursivePageTable, Size1GiB, Size2MiB, Size4KiB,
};
use scenarios::{Fault, PagingError, Platform, Translation};

use crate::probe;
use framealloc::x86_64::PhysAddr;
use framealloc::x86_64::registers::control::Cr3;

/// `x86_64::RecursivePageTable` over the live tables, flushing with `invlpg`.
pub struct X86Table {
    table: RecursivePageTable<'static>,
}

impl X86Table {
    /// The table of the running address space, through the recursive entry at `index`.
    ///
    /// # Safety
    ///
    /// Entry `index` of the active level-4 table points to that table, and
    /// nothing else modifies the tables while this value is used.
    pub unsafe fn new(index: u16) -> Self {
        let i = u64::from(index);
        let addr = 0xffff_0000_0000_0000 | (i << 39) | (i << 30) | (i << 21) | (i << 12);
        // SAFETY: with the recursive entry at `index`, `addr` is where the
        // level-4 table itself is mapped (caller's promise); it is used only
        // through this value.
        let level_4 = unsafe { &mut *(addr as *mut PageTable) };
        match RecursivePageTable::new(level_4) {
            Ok(table) => X86Table { table },
            Err(_) => panic!("the recursive entry does not point to the active level-4 table"),
        }
    }
}

/// What a page-table operation that page-faulted reports.
const PAGE_FAULT: &str = "page fault in x86_64's page-table code";

impl X86Table {
    fn map<S: PageSize, A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<MapperFlush<S>, PagingError>
    where
        RecursivePageTable<'static>: Mapper<S>,
    {
        // SAFETY: scenarios map frames of their own allocator (or alias
        // frames they own) into their own regions, never kernel memory.
        unsafe { self.table.map_to(page, frame, flags, tables) }.map_err(PagingError::from)
    }
}

impl Platform for X86Table {
    fn name(&self) -> &'static str {
        "qemu/x86_64"
    }

    fn read_u64(&mut self, addr: VirtAddr) -> Result<u64, Fault> {
        // SAFETY: scenarios only touch their own regions.
        unsafe { probe::read_u64(addr) }
    }

    fn write_u64(&mut self, addr: VirtAddr, value: u64) -> Result<(), Fault> {
        // SAFETY: scenarios only touch their own regions.
        unsafe { probe::write_u64(addr, value) }
    }

    fn map_4k<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        self.map(page, frame, flags, tables).map(MapperFlush::flush)
    }

    fn map_2m<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size2MiB>,
        frame: PhysFrame<Size2MiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        self.map(page, frame, flags, tables).map(MapperFlush::flush)
    }

    fn map_1g<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size1GiB>,
        frame: PhysFrame<Size1GiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        self.map(page, frame, flags, tables).map(MapperFlush::flush)
    }

    fn unmap_4k(&mut self, page: Page<Size4KiB>) -> Result<PhysFrame<Size4KiB>, PagingError> {
        // Under a parent entry without WRITABLE, `x86_64` faults writing
        // the level-1 table: caught and reported (scenario
        // `unmap_under_read_only_parent`).
        let (frame, flush) = probe::catch_page_fault(|| self.table.unmap(page))
            .map_err(|_| PagingError::Other(PAGE_FAULT))?
            .map_err(PagingError::from)?;
        flush.flush();
        Ok(frame)
    }

    fn unmap_2m(&mut self, page: Page<Size2MiB>) -> Result<PhysFrame<Size2MiB>, PagingError> {
        let (frame, flush) = self.table.unmap(page).map_err(PagingError::from)?;
        flush.flush();
        Ok(frame)
    }

    fn unmap_1g(&mut self, page: Page<Size1GiB>) -> Result<PhysFrame<Size1GiB>, PagingError> {
        let (frame, flush) = self.table.unmap(page).map_err(PagingError::from)?;
        flush.flush();
        Ok(frame)
    }

    fn update_flags_4k(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        // SAFETY: the page belongs to the scenario's own region.
        let flush = probe::catch_page_fault(|| unsafe { self.table.update_flags(page, flags) })
            .map_err(|_| PagingError::Other(PAGE_FAULT))?
            .map_err(PagingError::from)?;
        flush.flush();
        Ok(())
    }

    fn flush_all(&mut self) {
        tlb::flush_all();
    }

    fn map_4k_with_table_flags<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        parent_flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        // SAFETY: scenarios map frames they own into their own regions.
        unsafe {
            self.table
                .map_to_with_table_flags(page, frame, flags, parent_flags, tables)
        }
        .map(MapperFlush::flush)
        .map_err(PagingError::from)
    }

    fn set_flags_p2_entry(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        // SAFETY: the entry lies in the scenario's own region.
        let flush = unsafe { Mapper::<Size4KiB>::set_flags_p2_entry(&mut self.table, page, flags) }
            .map_err(PagingError::from)?;
        flush.flush_all();
        Ok(())
    }

    fn cr3(&mut self) -> PhysFrame {
        Cr3::read().0
    }

    fn set_cr3(&mut self, level_4: PhysFrame) {
        probe::set_cr3(level_4);
    }

    fn read_phys(&mut self, addr: PhysAddr) -> u64 {
        probe::read_phys(addr)
    }

    fn write_phys(&mut self, addr: PhysAddr, value: u64) {
        probe::write_phys(addr, value);
    }

    fn translate(&mut self, addr: VirtAddr) -> Translation {
        self.table.translate(addr).into()
    }

    fn map_range_4k<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        pages: PageRange<Size4KiB>,
        first: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        // `x86_64` has no range operation: one call per page, flushes
        // ignored, one full flush at the end.
        let mut result = Ok(());
        for (i, page) in (0u64..).zip(pages) {
            match self.map(page, first + i, flags, tables) {
                Ok(flush) => flush.ignore(),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        tlb::flush_all();
        result
    }

    fn unmap_range_4k(&mut self, pages: PageRange<Size4KiB>) -> Result<(), PagingError> {
        let mut result = Ok(());
        for page in pages {
            match self.table.unmap(page) {
                Ok((_, flush)) => flush.ignore(),
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        tlb::flush_all();
        result
    }

    fn update_range_4k(
        &mut self,
        pages: PageRange<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        let mut result = Ok(());
        for page in pages {
            // SAFETY: the pages belong to the scenario's own region.
            match unsafe { self.table.update_flags(page, flags) } {
                Ok(flush) => flush.ignore(),
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        tlb::flush_all();
        result
    }

    fn reclaim<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        pages: PageRangeInclusive<Size4KiB>,
        tables: &mut D,
    ) -> Result<(), PagingError> {
        // SAFETY: the scenario's region belongs to it alone; its tables are
        // not shared with another address space.
        unsafe { self.table.clean_up_addr_range(pages, tables) };
        Ok(())
    }
}
