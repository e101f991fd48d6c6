//! `x86_64`'s `Mapper`, `Translate` and `CleanUp` for [`RecursivePageTable`],
//! so it drops into code written against `x86_64`.
//!
//! `Mapper` is implemented over the hardware backend only, since its
//! `MapperFlush::flush` executes `invlpg` itself; over
//! [`NoFlushMmu`](super::NoFlushMmu) in user space (as
//! `runtime/tests/paging_hardware.rs` does) call `MapperFlush::ignore`, never
//! `flush`. `set_flags_p*_entry` invalidate the TLB themselves (see
//! [`RecursivePageTable::set_parent_flags`]). `Translate` and `CleanUp` hand
//! out no tokens and are implemented for every backend.

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
                set_flags(self, true, 4, page.start_address(), flags)
            }

            unsafe fn set_flags_p3_entry(
                &mut self,
                page: Page<$size>,
                flags: PageTableFlags,
            ) -> Result<MapperFlushAll, FlagUpdateError> {
                set_flags(self, $p3_ok, 3, page.start_address(), flags)
            }

            unsafe fn set_flags_p2_entry(
                &mut self,
                page: Page<$size>,
                flags: PageTableFlags,
            ) -> Result<MapperFlushAll, FlagUpdateError> {
                set_flags(self, $p2_ok, 2, page.start_address(), flags)
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

/// The body of `set_flags_p*_entry`: `ok` is false where the level is not
/// a parent of pages of the impl's size.
fn set_flags<const FLUSH: bool>(
    table: &mut RecursivePageTable<Mmu<FLUSH>>,
    ok: bool,
    level: usize,
    addr: VirtAddr,
    flags: PageTableFlags,
) -> Result<MapperFlushAll, FlagUpdateError> {
    if !ok {
        return Err(FlagUpdateError::ParentEntryHugePage);
    }
    table.set_parent_entry(level, addr.as_u64(), flags.bits())?;
    Ok(MapperFlushAll::new())
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
