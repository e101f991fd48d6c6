//! The single-page operations of [`RecursivePageTable`]: map, unmap,
//! update flags, set parent flags, translate.

use x86_64::structures::paging::mapper::{
    FlagUpdateError, MapToError, MappedFrame, TranslateError, TranslateResult, UnmapError,
};
use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{
    FrameAllocator, Page, PageSize, PageTableFlags, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::entry::{
    ADDR_MASK, Entry, HUGE, PARENT_IGNORED, PRESENT, WRITABLE, frame_of, leaf_bits,
    leaf_frame_for_unmap, not_a_page,
};
use super::map::{Allocated, DataFrames, MapFail, Split};
use super::walk::WalkFail;
use super::{Backend, EntrySize, Flush, RecursivePageTable};

impl<B: Backend> RecursivePageTable<B> {
    // ---------------------------------------------------------------- map

    /// Maps `page` to `frame` with `flags`, creating missing tables with
    /// frames from `allocator`. The `PRESENT`/`WRITABLE`/`USER_ACCESSIBLE`
    /// bits of `flags` are the parent flags, as in `x86_64`'s `Mapper::map_to`
    /// (see [`map_to_with_table_flags`](Self::map_to_with_table_flags)).
    ///
    /// # Errors
    ///
    /// As `x86_64`: `PageAlreadyMapped(frame)` if the page's entry is in use;
    /// `ParentEntryHugePage` if a parent maps a huge page or is in use but not
    /// present, `page` is in the recursive window, or `S` is 4 KiB and `flags`
    /// has `HUGE_PAGE`; `FrameAllocationFailed` if `allocator` had no table
    /// frame. On error nothing was written; table frames already taken are
    /// spares (used by the next table creation, handed back by
    /// [`clean_up`](Self::clean_up)).
    ///
    /// # Safety
    ///
    /// As `x86_64`'s `Mapper::map_to`: the new mapping must not break memory
    /// safety (no aliasing of `&mut` data, no invalid values appearing).
    #[inline]
    pub unsafe fn map_to<S: EntrySize, A>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<Flush<'_, B, S>, MapToError<S>>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let parent = flags
            & (PageTableFlags::PRESENT
                | PageTableFlags::WRITABLE
                | PageTableFlags::USER_ACCESSIBLE);
        // SAFETY: forwarded contract.
        unsafe { self.map_to_with_table_flags(page, frame, flags, parent, allocator) }
    }

    /// [`map_to`](Self::map_to) with explicit flags for parent entries.
    ///
    /// Every parent entry on the path, new or existing, gets
    /// `parent_table_flags | PRESENT | WRITABLE` added (unlike `x86_64`, also
    /// `WRITABLE` on existing entries), never `GLOBAL`, `HUGE_PAGE` or address
    /// bits (see the rules for flags on [`RecursivePageTable`]). Adding bits to
    /// an existing entry is followed by [`Backend::flush_global`].
    ///
    /// # Errors
    ///
    /// As [`map_to`](Self::map_to).
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to).
    #[inline]
    pub unsafe fn map_to_with_table_flags<S: EntrySize, A>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: PageTableFlags,
        parent_table_flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<Flush<'_, B, S>, MapToError<S>>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let v = page.start_address().as_u64();
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(MapToError::ParentEntryHugePage);
        };
        let leaf = frame.start_address().as_u64() | bits;
        let want = Self::parent_bits(parent_table_flags);
        match self.map_entry::<S, A>(v, leaf, want, allocator) {
            Ok(()) => Ok(Flush::new(&mut self.backend, page)),
            Err(fail) => Err(fail.into_error(|_| frame)),
        }
    }

    /// Maps `page` to a frame taken from `allocator` (which also supplies
    /// the page tables, taken first) and returns that frame.
    ///
    /// # Errors
    ///
    /// As [`map_to`](Self::map_to), but `PageAlreadyMapped` names the address
    /// in the used entry rounded down to `S` (for a huge `S` whose entry is a
    /// table pointer, that table's frame, not a mapped page), and
    /// `FrameAllocationFailed` also covers the page's own frame. On error
    /// nothing was written and no data frame was taken.
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to).
    #[allow(
        clippy::type_complexity,
        reason = "the frame and its flush token, as `unmap`"
    )]
    pub unsafe fn map_allocated<S: EntrySize, A>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
        allocator: &mut A,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), MapToError<S>>
    where
        A: FrameAllocator<S> + FrameAllocator<Size4KiB> + ?Sized,
    {
        self.map_allocated_from(page, flags, &mut Allocated { allocator })
    }

    /// [`map_allocated`](Self::map_allocated) with two allocators: the
    /// page's frame comes from `data`, page tables from `tables` (for example
    /// two [`tagged`](crate::TaggedFrameAllocator::tagged) views, or a pool
    /// reserved for tables).
    ///
    /// # Errors
    ///
    /// As [`map_allocated`](Self::map_allocated); `FrameAllocationFailed`
    /// when either allocator had no frame (tables are taken first).
    ///
    /// # Safety
    ///
    /// As [`map_to`](Self::map_to).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "emu")] {
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::RecursivePageTable;
    /// use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    ///
    /// let index = PageTableIndex::new(510);
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let mut table = RecursivePageTable::new(Machine::with_recursive_table(index, l4).unwrap(), index).unwrap();
    /// let (mut next_table, mut next_data) = (0x10_0000u64, 0x80_0000u64);
    /// // SAFETY: every call of each closure yields a fresh frame, and the
    /// // two ranges do not overlap.
    /// let (mut tables, mut data) = unsafe {
    ///     (
    ///         framealloc::from_fn(|| { next_table += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next_table))) }),
    ///         framealloc::from_fn(|| { next_data += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next_data))) }),
    ///     )
    /// };
    /// let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    /// // SAFETY: emulated memory.
    /// let (frame, flush) = unsafe { table.map_allocated_with(page, F::PRESENT | F::WRITABLE, &mut data, &mut tables) }.unwrap();
    /// flush.flush();
    /// assert_eq!(frame.start_address().as_u64(), 0x80_1000); // from `data`
    /// assert_eq!(table.page_tables().filter(|t| t.frame.start_address().as_u64() > 0x10_0000).count(), 3); // from `tables`
    /// # }
    /// ```
    #[allow(
        clippy::type_complexity,
        reason = "the frame and its flush token, as `unmap`"
    )]
    pub unsafe fn map_allocated_with<S: EntrySize, D, T>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
        data: &mut D,
        tables: &mut T,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), MapToError<S>>
    where
        D: FrameAllocator<S> + ?Sized,
        T: FrameAllocator<Size4KiB> + ?Sized,
    {
        self.map_allocated_from(page, flags, &mut Split { data, tables })
    }

    /// The body of the `map_allocated` forms.
    #[allow(
        clippy::type_complexity,
        reason = "the frame and its flush token, as `unmap`"
    )]
    fn map_allocated_from<S: EntrySize, D: DataFrames<S>>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
        source: &mut D,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), MapToError<S>> {
        let v = page.start_address().as_u64();
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(MapToError::ParentEntryHugePage);
        };
        let want = Self::parent_bits_for_leaf(flags);
        let plan = self
            .plan::<S>(v, want)
            .map_err(MapFail::into_error_existing)?;
        let count = plan.tables_needed::<S>();
        let tables = self
            .take_tables(count, source.tables())
            .map_err(MapFail::into_error_existing)?;
        let Some(frame) = source.data(0) else {
            self.return_tables(&tables[..count]);
            return Err(MapToError::FrameAllocationFailed);
        };
        self.commit::<S>(v, plan, &tables, want, frame | bits);
        // SAFETY: the allocator handed out a frame of size `S`, whose start
        // address is aligned to `S` and below 2^52.
        let frame = unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_unsafe(frame)) };
        Ok((frame, Flush::new(&mut self.backend, page)))
    }

    // --------------------------------------------------------- unmap

    /// Removes the mapping of `page` and returns the frame it mapped.
    ///
    /// No page table is freed (see [`clean_up`](Self::clean_up)).
    ///
    /// # Errors
    ///
    /// As `x86_64`: `PageNotMapped` if a parent or the entry is not present,
    /// `ParentEntryHugePage` if a parent maps a huge page or the entry's
    /// size is not `S` (or `page` lies in the recursive window),
    /// `InvalidFrameAddress` if a huge entry's address is not aligned to `S`.
    /// On error nothing was written.
    #[inline]
    pub fn unmap<S: EntrySize>(
        &mut self,
        page: Page<S>,
    ) -> Result<(PhysFrame<S>, Flush<'_, B, S>), UnmapError> {
        let v = page.start_address().as_u64();
        let frame = self.unmap_entry::<S>(v)?;
        Ok((frame, Flush::new(&mut self.backend, page)))
    }

    #[inline(always)]
    pub(crate) fn unmap_entry<S: EntrySize>(&mut self, v: u64) -> Result<PhysFrame<S>, UnmapError> {
        self.rewrite_leaf::<S, _, _>(v, |entry| Ok((0, leaf_frame_for_unmap::<S>(entry)?)))
    }

    /// Rewrites `v`'s level-`S` entry with what `new` makes of it, after the
    /// checks of the single-page operations: the window, the parents (given
    /// `WRITABLE` back if they lack it), then `new`'s own.
    #[inline(always)]
    fn rewrite_leaf<S: EntrySize, T, E: From<WalkFail>>(
        &mut self,
        v: u64,
        new: impl FnOnce(u64) -> Result<(u64, T), E>,
    ) -> Result<T, E> {
        if self.in_window(v) {
            return Err(WalkFail::Huge.into());
        }
        if !self.parents_writable::<S>(v) {
            return self.rewrite_leaf_slow::<S, T, E>(v, new);
        }
        let (value, out) = new(self.read(S::LEVEL, v))?;
        self.write(S::LEVEL, v, value);
        Ok(out)
    }

    /// [`Self::rewrite_leaf`] when some parent entry is not a present,
    /// writable table pointer: the errors, or `WRITABLE` given back.
    #[cold]
    #[inline(never)]
    fn rewrite_leaf_slow<S: EntrySize, T, E: From<WalkFail>>(
        &mut self,
        v: u64,
        new: impl FnOnce(u64) -> Result<(u64, T), E>,
    ) -> Result<T, E> {
        self.walk_parents::<S>(v)?;
        let (value, out) = new(self.read(S::LEVEL, v))?;
        self.make_writable_above(S::LEVEL, v);
        self.write(S::LEVEL, v, value);
        Ok(out)
    }

    // ---------------------------------------------------------- flags

    /// Replaces the flags of `page`'s mapping (keeping its frame; address
    /// bits of `flags` are ignored).
    ///
    /// # Errors
    ///
    /// `PageNotMapped` if a parent is not present or the entry is unused (or,
    /// for a huge `S`, a non-present table pointer); `ParentEntryHugePage` if
    /// a parent maps a huge page, `page` is in the recursive window, `S` is
    /// huge and the entry is a present table pointer (`x86_64` would turn the
    /// table into a huge page), or `S` is 4 KiB and `flags` has `HUGE_PAGE`.
    /// On error nothing was written.
    ///
    /// # Safety
    ///
    /// As `x86_64`'s `Mapper::update_flags`: the new flags must not break
    /// memory safety.
    #[inline]
    pub unsafe fn update_flags<S: EntrySize>(
        &mut self,
        page: Page<S>,
        flags: PageTableFlags,
    ) -> Result<Flush<'_, B, S>, FlagUpdateError> {
        let v = page.start_address().as_u64();
        let Some(bits) = leaf_bits::<S>(flags) else {
            return Err(FlagUpdateError::ParentEntryHugePage);
        };
        self.update_entry::<S>(v, bits)?;
        Ok(Flush::new(&mut self.backend, page))
    }

    /// Replaces the flags of `v`'s level-`S` entry with `bits` (leaf bits
    /// from [`leaf_bits`]).
    #[inline(always)]
    pub(crate) fn update_entry<S: EntrySize>(
        &mut self,
        v: u64,
        bits: u64,
    ) -> Result<(), FlagUpdateError> {
        self.rewrite_leaf::<S, _, _>(v, |entry| match not_a_page::<S>(entry) {
            Some(fail) => Err(fail.into()),
            None => Ok(((entry & ADDR_MASK) | bits, ())),
        })
    }

    /// Replaces the flags of the parent entry at `level` (2 to 4) on the
    /// path to `addr` (keeping the table it points to), as `x86_64`'s
    /// `Mapper::set_flags_p*_entry`.
    ///
    /// `GLOBAL`, `HUGE_PAGE` and address bits of `flags` are ignored, and
    /// entries above without `WRITABLE` get it back (the rules for flags on
    /// [`RecursivePageTable`]). The TLB is invalidated here with
    /// [`Backend::flush_global`], since the CR3 reload of `x86_64`'s
    /// `MapperFlushAll` keeps global translations with their old rights (so
    /// the `MapperFlushAll` of the `Mapper` impl may be flushed or ignored).
    ///
    /// # Errors
    ///
    /// `PageNotMapped` if an entry above it is not present or the entry is
    /// unused; `ParentEntryHugePage` if the entry or one above it maps a
    /// huge page, `addr` lies in the recursive window, or `level` is
    /// [`PageTableLevel::One`] (not a parent level).
    ///
    /// # Safety
    ///
    /// The new flags must not break memory safety.
    pub unsafe fn set_parent_flags(
        &mut self,
        level: PageTableLevel,
        addr: VirtAddr,
        flags: PageTableFlags,
    ) -> Result<(), FlagUpdateError> {
        if level == PageTableLevel::One {
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        self.set_parent_entry(level as usize, addr.as_u64(), flags.bits())
    }

    /// The body of [`Self::set_parent_flags`] (and `Mapper::set_flags_p*_entry`).
    pub(crate) fn set_parent_entry(
        &mut self,
        level: usize,
        v: u64,
        flags: u64,
    ) -> Result<(), FlagUpdateError> {
        if self.in_window(v) {
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        let mut all = !0;
        let mut upper = 4;
        while upper > level {
            let entry = self.read(upper, v);
            if !Entry(entry).is_table() {
                return Err(WalkFail::at(entry).into());
            }
            all &= entry;
            upper -= 1;
        }
        let entry = self.read(level, v);
        if entry == 0 {
            return Err(FlagUpdateError::PageNotMapped);
        }
        if entry & HUGE != 0 {
            // A huge page's own entry: not a parent (the flags written here
            // would turn the leaf into a pointer to a "table").
            return Err(FlagUpdateError::ParentEntryHugePage);
        }
        if all & WRITABLE == 0 {
            self.make_writable_above(level, v);
        }
        self.write(level, v, (entry & ADDR_MASK) | (flags & !PARENT_IGNORED));
        // Cached rights may be more or fewer than the new entry's (see above).
        self.backend.flush_global();
        Ok(())
    }

    // ------------------------------------------------------ translate

    /// The frame `page` is mapped to.
    ///
    /// # Errors
    ///
    /// `PageNotMapped` if a parent is not present, the entry is unused or
    /// (for a huge `S`) the entry is a non-present page-table pointer;
    /// `ParentEntryHugePage` if a parent maps a huge page or (for a huge `S`)
    /// the entry is a present page-table pointer; `InvalidFrameAddress` if a
    /// huge entry's address is not aligned to `S`. A non-present leaf that
    /// is not zero is a frame, as in [`translate`](Self::translate).
    #[inline]
    pub fn translate_page<S: EntrySize>(
        &self,
        page: Page<S>,
    ) -> Result<PhysFrame<S>, TranslateError> {
        let v = page.start_address().as_u64();
        self.walk_parents::<S>(v)?;
        let entry = self.read(S::LEVEL, v);
        if let Some(fail) = not_a_page::<S>(entry) {
            return Err(fail.into());
        }
        frame_of::<S>(entry & ADDR_MASK).map_err(TranslateError::InvalidFrameAddress)
    }

    /// What `addr` translates to (frame, offset, the leaf's flags) at every
    /// page size, as `x86_64`'s `Translate::translate`, which panics on a
    /// huge level-4 entry (here `NotMapped`).
    ///
    /// The leaf is the level-1 entry or a level-2/3 entry with `HUGE_PAGE`,
    /// and the entries above it must be present table pointers. A non-zero
    /// leaf is `Mapped` even when not present (its `flags` tell; the MMU maps
    /// only present leaves), as in [`translate_page`](Self::translate_page).
    #[inline]
    pub fn translate(&self, addr: VirtAddr) -> TranslateResult {
        let v = addr.as_u64();
        let l4 = self.read(4, v);
        if !Entry(l4).is_table() {
            return TranslateResult::NotMapped;
        }
        let l3 = self.read(3, v);
        if l3 & HUGE != 0 {
            return mapped::<Size1GiB>(l3, v, MappedFrame::Size1GiB);
        }
        if l3 & PRESENT == 0 {
            return TranslateResult::NotMapped;
        }
        let l2 = self.read(2, v);
        if l2 & HUGE != 0 {
            return mapped::<Size2MiB>(l2, v, MappedFrame::Size2MiB);
        }
        if l2 & PRESENT == 0 {
            return TranslateResult::NotMapped;
        }
        let l1 = self.read(1, v);
        if l1 == 0 {
            return TranslateResult::NotMapped;
        }
        mapped::<Size4KiB>(l1, v, MappedFrame::Size4KiB)
    }
}

/// `translate`'s result for the leaf `entry` of a page of size `S` at `v`.
#[inline(always)]
fn mapped<S: PageSize>(
    entry: u64,
    v: u64,
    frame: fn(PhysFrame<S>) -> MappedFrame,
) -> TranslateResult {
    TranslateResult::Mapped {
        frame: frame(PhysFrame::containing_address(PhysAddr::new(
            entry & ADDR_MASK,
        ))),
        offset: v & (S::SIZE - 1),
        flags: PageTableFlags::from_bits_truncate(entry),
    }
}
