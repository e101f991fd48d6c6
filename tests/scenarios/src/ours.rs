//! [`Platform`] over framealloc's own `RecursivePageTable`, on any backend.

use core::marker::PhantomData;

use framealloc::paging::{
    AddressSpace, Backend, EntrySet, EntrySize, Mapping, RecursivePageTable, SpaceError,
    SwitchSpace,
};
use framealloc::x86_64::structures::paging::page::{PageRange, PageRangeInclusive};
use framealloc::x86_64::structures::paging::page_table::PageTableLevel;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags, PageTableIndex, PhysFrame, Size1GiB,
    Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

use crate::{Fault, Frames, PagingError, Platform, Spaces, Translation};

/// How a machine performs recoverable accesses through its MMU.
pub trait Memory<B> {
    /// Reads a `u64` at `addr` through `backend`'s MMU.
    ///
    /// # Errors
    ///
    /// The page fault the access raised.
    fn read_u64(backend: &mut B, addr: VirtAddr) -> Result<u64, Fault>;

    /// Writes a `u64` at `addr` through `backend`'s MMU.
    ///
    /// # Errors
    ///
    /// The page fault the access raised.
    fn write_u64(backend: &mut B, addr: VirtAddr, value: u64) -> Result<(), Fault>;

    /// Writes CR3 (the machine's, through `backend` where it has one).
    fn set_cr3(backend: &mut B, level_4: PhysFrame);

    /// Reads physical memory.
    fn read_phys(backend: &mut B, addr: PhysAddr) -> u64;

    /// Writes physical memory.
    fn write_phys(backend: &mut B, addr: PhysAddr, value: u64);
}

/// framealloc's `RecursivePageTable` on backend `B`, with memory accesses
/// made by `M`.
pub struct Ours<B: Backend, M: Memory<B>> {
    table: RecursivePageTable<B>,
    name: &'static str,
    memory: PhantomData<M>,
}

impl<B: Backend, M: Memory<B>> Ours<B, M> {
    /// The platform named `name` (e.g. `emu/ours`) over `table`.
    pub fn new(table: RecursivePageTable<B>, name: &'static str) -> Self {
        Ours {
            table,
            name,
            memory: PhantomData,
        }
    }

    /// The page table.
    pub fn table(&mut self) -> &mut RecursivePageTable<B> {
        &mut self.table
    }

    fn map<S: EntrySize, A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        // SAFETY: scenarios map frames they own into their own regions.
        match unsafe { self.table.map_to(page, frame, flags, tables) } {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn unmap<S: EntrySize>(&mut self, page: Page<S>) -> Result<PhysFrame<S>, PagingError> {
        let (frame, flush) = self.table.unmap(page).map_err(PagingError::from)?;
        flush.flush();
        Ok(frame)
    }
}

impl<B: SwitchSpace, M: Memory<B>> Platform for Ours<B, M> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn read_u64(&mut self, addr: VirtAddr) -> Result<u64, Fault> {
        M::read_u64(self.table.backend_mut(), addr)
    }

    fn write_u64(&mut self, addr: VirtAddr, value: u64) -> Result<(), Fault> {
        M::write_u64(self.table.backend_mut(), addr, value)
    }

    fn map_4k<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        self.map(page, frame, flags, tables)
    }

    fn map_2m<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size2MiB>,
        frame: PhysFrame<Size2MiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        self.map(page, frame, flags, tables)
    }

    fn map_1g<A: FrameAllocator<Size4KiB> + ?Sized>(
        &mut self,
        page: Page<Size1GiB>,
        frame: PhysFrame<Size1GiB>,
        flags: PageTableFlags,
        tables: &mut A,
    ) -> Result<(), PagingError> {
        self.map(page, frame, flags, tables)
    }

    fn unmap_4k(&mut self, page: Page<Size4KiB>) -> Result<PhysFrame<Size4KiB>, PagingError> {
        self.unmap(page)
    }

    fn unmap_2m(&mut self, page: Page<Size2MiB>) -> Result<PhysFrame<Size2MiB>, PagingError> {
        self.unmap(page)
    }

    fn unmap_1g(&mut self, page: Page<Size1GiB>) -> Result<PhysFrame<Size1GiB>, PagingError> {
        self.unmap(page)
    }

    fn update_flags_4k(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        // SAFETY: the page belongs to the scenario's own region.
        let flush = unsafe { self.table.update_flags(page, flags) }.map_err(PagingError::from)?;
        flush.flush();
        Ok(())
    }

    fn flush_all(&mut self) {
        self.table.backend_mut().flush_all();
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
        match unsafe {
            self.table
                .map_to_with_table_flags(page, frame, flags, parent_flags, tables)
        } {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn set_flags_p2_entry(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        // SAFETY: the entry lies in the scenario's own region. The call
        // performs its own invalidation (global entries included).
        unsafe {
            self.table
                .set_parent_flags(PageTableLevel::Two, page.start_address(), flags)
        }
        .map_err(PagingError::from)
    }

    fn cr3(&mut self) -> PhysFrame {
        self.table.backend().level_4_frame()
    }

    fn set_cr3(&mut self, level_4: PhysFrame) {
        M::set_cr3(self.table.backend_mut(), level_4);
    }

    fn read_phys(&mut self, addr: PhysAddr) -> u64 {
        M::read_phys(self.table.backend_mut(), addr)
    }

    fn write_phys(&mut self, addr: PhysAddr, value: u64) {
        M::write_phys(self.table.backend_mut(), addr, value);
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
        let count = pages.end - pages.start;
        let frames = PhysFrame::range(first, first + count);
        // SAFETY: scenarios map frames they own into their own regions.
        match unsafe { self.table.map_range(pages, frames, flags, tables) } {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn unmap_range_4k(&mut self, pages: PageRange<Size4KiB>) -> Result<(), PagingError> {
        match self.table.unmap_range(pages, drop) {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn update_range_4k(
        &mut self,
        pages: PageRange<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        // SAFETY: the pages belong to the scenario's own region.
        match unsafe { self.table.update_flags_range(pages, flags) } {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn reclaim<D: FrameDeallocator<Size4KiB>>(
        &mut self,
        pages: PageRangeInclusive<Size4KiB>,
        tables: &mut D,
    ) -> Result<(), PagingError> {
        // SAFETY: the scenario's region and its tables belong to it alone.
        unsafe { self.table.clean_up_addr_range(pages, tables) };
        Ok(())
    }

    fn spaces(&mut self) -> Option<&mut dyn Spaces> {
        Some(self)
    }
}

impl<B: SwitchSpace, M: Memory<B>> Spaces for Ours<B, M> {
    fn prepare_shared(
        &mut self,
        shared: &EntrySet,
        frames: &mut Frames,
    ) -> Result<usize, SpaceError> {
        // SAFETY: the shared entries are the scenario's region and the
        // kernel's entry 0, used by this table only.
        unsafe { self.table.prepare_shared(shared, frames) }
    }

    fn create(
        &mut self,
        shared: &EntrySet,
        frames: &mut Frames,
    ) -> Result<AddressSpace, SpaceError> {
        self.table
            .create_space(PageTableIndex::new(crate::SLOT), shared, frames)
    }

    fn map_inactive(
        &mut self,
        space: &AddressSpace,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        frames: &mut Frames,
    ) -> Result<(), PagingError> {
        let mut view = self
            .table
            .edit(space)
            .map_err(|_| PagingError::Other("the space could not be opened"))?;
        // SAFETY: scenarios map frames they own into their own spaces.
        match unsafe { view.map_to(page, frame, flags, frames) } {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn translate_inactive(
        &mut self,
        space: &AddressSpace,
        addr: VirtAddr,
    ) -> Result<Translation, SpaceError> {
        let view = self.table.edit(space)?;
        Ok(view.translate(addr).into())
    }

    fn switch(&mut self, space: AddressSpace) -> Result<AddressSpace, (AddressSpace, SpaceError)> {
        // SAFETY: every space the scenarios create shares the kernel's
        // entry 0 (its code, stack and data under QEMU).
        unsafe { self.table.switch_to(space) }
    }

    fn destroy(
        &mut self,
        space: AddressSpace,
        frames: &mut Frames,
        leaves: &mut dyn FnMut(Mapping),
    ) -> Result<usize, (AddressSpace, SpaceError)> {
        // SAFETY: the space's own tables belong to it alone.
        unsafe { self.table.destroy_space(space, frames, |m, _| leaves(m)) }
    }
}
