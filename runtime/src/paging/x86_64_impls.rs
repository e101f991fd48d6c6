//! `x86_64`'s `Mapper`, `Translate` and `CleanUp` for [`RecursivePageTable`],
//! so it drops into code written against `x86_64`.
//!
//! `Mapper` is implemented over the hardware backend only: its
//! `MapperFlush::flush` executes `invlpg` directly, which only means
//! something on the real MMU. It is implemented for
//! [`NoFlushMmu`](super::NoFlushMmu) too, so the very same impls can be run
//! in user space over an `mmap`ed window (`runtime/tests/paging_hardware.rs`
//! does); there, call `MapperFlush::ignore`, never `flush` (`invlpg` is a
//! privileged instruction and faults outside ring 0), and the `Flush`
//! decisions of the native API are no-ops anyway. `Translate` and `CleanUp` do not hand out flush
//! tokens (`CleanUp` invalidates through the backend itself) and are
//! implemented for every backend.
//!
//! `set_flags_p4_entry`/`p3`/`p2` go through
//! [`RecursivePageTable::set_parent_flags`], which invalidates the TLB
//! itself, global entries included (a CR3 reload, all `MapperFlushAll`
//! performs, would keep them); the `MapperFlushAll` they return is then
//! redundant, and flushing or ignoring it are both correct.

use x86_64::VirtAddr;
use x86_64::structures::paging::mapper::{
    CleanUp, FlagUpdateError, MapToError, Mapper, MapperFlush, MapperFlushAll, Translate,
    TranslateError, TranslateResult, UnmapError,
};
use x86_64::structures::paging::page::PageRangeInclusive;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};

use super::{Backend, Mmu, RecursivePageTable};

macro_rules! mapper_impl {
    ($size:ty, $p3_ok:expr, $p2_ok:expr) => {
        impl<const FLUSH: bool> Mapper<$size> for RecursivePageTable<Mmu<FLUSH>> {
            #[inline]
            unsafe fn map_to_with_table_flags<A>(
                &mut self,
                page: Page<$size>,
                frame: PhysFrame<$size>,
                flags: PageTableFlags,
                parent_table_flags: PageTableFlags,
                frame_allocator: &mut A,
            ) -> Result<MapperFlush<$size>, MapToError<$size>>
            where
                Self: Sized,
                A: FrameAllocator<Size4KiB> + ?Sized,
            {
                // SAFETY: forwarded contract.
                let flush = unsafe {
                    RecursivePageTable::map_to_with_table_flags(
                        self,
                        page,
                        frame,
                        flags,
                        parent_table_flags,
                        frame_allocator,
                    )
                }?;
                flush.ignore();
                Ok(MapperFlush::new(page))
            }

            #[inline]
            fn unmap(
                &mut self,
                page: Page<$size>,
            ) -> Result<(PhysFrame<$size>, MapperFlush<$size>), UnmapError> {
                let (frame, flush) = RecursivePageTable::unmap(self, page)?;
                flush.ignore();
                Ok((frame, MapperFlush::new(page)))
            }

            #[inline]
            unsafe fn update_flags(
                &mut self,
                page: Page<$size>,
                flags: PageTableFlags,
            ) -> Result<MapperFlush<$size>, FlagUpdateError> {
                // SAFETY: forwarded contract.
                unsafe { RecursivePageTable::update_flags(self, page, flags) }?.ignore();
                Ok(MapperFlush::new(page))
            }

            unsafe fn set_flags_p4_entry(
                &mut self,
                page: Page<$size>,
                flags: PageTableFlags,
            ) -> Result<MapperFlushAll, FlagUpdateError> {
                self.set_parent_entry(4, page.start_address().as_u64(), flags.bits())?;
                Ok(MapperFlushAll::new())
            }

            unsafe fn set_flags_p3_entry(
                &mut self,
                page: Page<$size>,
                flags: PageTableFlags,
            ) -> Result<MapperFlushAll, FlagUpdateError> {
                if !$p3_ok {
                    return Err(FlagUpdateError::ParentEntryHugePage);
                }
                self.set_parent_entry(3, page.start_address().as_u64(), flags.bits())?;
                Ok(MapperFlushAll::new())
            }

            unsafe fn set_flags_p2_entry(
                &mut self,
                page: Page<$size>,
                flags: PageTableFlags,
            ) -> Result<MapperFlushAll, FlagUpdateError> {
                if !$p2_ok {
                    return Err(FlagUpdateError::ParentEntryHugePage);
                }
                self.set_parent_entry(2, page.start_address().as_u64(), flags.bits())?;
                Ok(MapperFlushAll::new())
            }

            #[inline]
            fn translate_page(
                &self,
                page: Page<$size>,
            ) -> Result<PhysFrame<$size>, TranslateError> {
                RecursivePageTable::translate_page(self, page)
            }
        }
    };
}

mapper_impl!(Size4KiB, true, true);
mapper_impl!(Size2MiB, true, false);
mapper_impl!(Size1GiB, false, false);

impl<B: Backend> Translate for RecursivePageTable<B> {
    #[inline]
    fn translate(&self, addr: VirtAddr) -> TranslateResult {
        RecursivePageTable::translate(self, addr)
    }
}

impl<B: Backend> CleanUp for RecursivePageTable<B> {
    unsafe fn clean_up<D>(&mut self, frame_deallocator: &mut D)
    where
        D: FrameDeallocator<Size4KiB>,
    {
        // SAFETY: forwarded contract.
        unsafe { RecursivePageTable::clean_up(self, frame_deallocator) };
    }

    unsafe fn clean_up_addr_range<D>(
        &mut self,
        range: PageRangeInclusive,
        frame_deallocator: &mut D,
    ) where
        D: FrameDeallocator<Size4KiB>,
    {
        // SAFETY: forwarded contract.
        unsafe { RecursivePageTable::clean_up_addr_range(self, range, frame_deallocator) };
    }
}
