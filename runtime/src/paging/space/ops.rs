//! Creating, editing, destroying and cleaning up address spaces.

use x86_64::structures::paging::page_table::PageTableLevel;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageTableFlags, PageTableIndex, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::super::{Backend, Mapping, RecursivePageTable};
use super::view::{InactiveSpace, SlotBackend};
use super::{
    ADDR_MASK, AddressSpace, EntrySet, GLOBAL, HUGE, PRESENT, SlotAddresses, SpaceError, USER,
    WRITABLE, level_of, recursive_address, sign_extend, table_entry,
};

impl<B: Backend> RecursivePageTable<B> {
    /// Reads entry `index` of the active level-4 table.
    pub(super) fn active_l4_entry(&self, index: usize) -> u64 {
        let l4 = self.table_address(PageTableLevel::Four, VirtAddr::zero());
        // SAFETY: `l4` is the recursive address of the active level-4 table,
        // which exists (the table's construction contract), and index < 512.
        unsafe { self.backend().read_entry(l4, index & 511) }
    }

    /// Checks that `slot` can be used by the active table and is free.
    pub(super) fn slot_addresses(&self, slot: PageTableIndex) -> Result<SlotAddresses, SpaceError> {
        let r = u64::from(u16::from(self.recursive_index()));
        let s = u64::from(u16::from(slot));
        if s == 0 || s == 511 || s == r {
            return Err(SpaceError::SlotInvalid { slot: s as u16 });
        }
        let recursive = self.active_l4_entry(r as usize);
        if recursive & GLOBAL != 0 {
            return Err(SpaceError::RecursiveEntryGlobal { entry: recursive });
        }
        let entry = self.active_l4_entry(s as usize);
        if entry != 0 {
            return Err(SpaceError::SlotInUse { entry });
        }
        Ok(SlotAddresses::new(r, s))
    }

    /// Writes the active table's slot entry and drops every translation
    /// that went through its old value (see the module docs).
    ///
    /// # Safety
    ///
    /// `value` is 0 or [`table_entry`] of a frame holding a level-4 table
    /// (or a frame about to be zeroed through the slot) that nothing else
    /// uses as data.
    pub(super) unsafe fn set_slot(&mut self, at: SlotAddresses, value: u64) {
        // SAFETY: `active_l4` is the active level-4 table's recursive
        // address and `s < 512`; the caller vouches for the value, and the
        // slot entry is used by nothing but this module.
        unsafe { self.backend_mut().write_entry(at.active_l4, at.s, value) };
        self.backend_mut().flush_all();
    }

    /// Reads entry `index` of the slot's target as a data page.
    pub(super) fn target_entry(&self, at: SlotAddresses, index: usize) -> u64 {
        // SAFETY: the slot is open (`A[s]` points at a level-4 frame), so
        // `r:r:r:s` maps that frame as a page: a mapped, 4 KiB table.
        unsafe { self.backend().read_entry(at.target_page, index & 511) }
    }

    /// Writes entry `index` of the slot's target as a data page.
    ///
    /// # Safety
    ///
    /// The slot is open, and the value keeps the target a valid hierarchy.
    pub(super) unsafe fn write_target_entry(
        &mut self,
        at: SlotAddresses,
        index: usize,
        value: u64,
    ) {
        // SAFETY: as in `target_entry`; the caller vouches for the value.
        unsafe {
            self.backend_mut()
                .write_entry(at.target_page, index & 511, value);
        }
    }

    /// Creates level-3 tables (empty, present, writable, supervisor-only)
    /// for every entry of `entries` that is not present in the active
    /// level-4 table, so that spaces created later share them (see the
    /// module docs, "Kernel half"). The recursive index is skipped. Returns
    /// how many tables were created.
    ///
    /// # Errors
    ///
    /// [`SpaceError::OutOfFrames`] if the allocator runs dry; the tables
    /// created before stay (they are valid, empty tables), and calling
    /// again continues.
    ///
    /// # Safety
    ///
    /// The allocator yields unused frames; the entries of `entries` are not
    /// in use by anything but this table (no slot of an open view, no
    /// foreign mapping).
    pub unsafe fn prepare_shared<A>(
        &mut self,
        entries: &EntrySet,
        allocator: &mut A,
    ) -> Result<usize, SpaceError>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let r = u64::from(u16::from(self.recursive_index()));
        let l4 = recursive_address(r, r, r, r);
        let mut created = 0;
        for index in entries.iter() {
            let i = u64::from(u16::from(index));
            if i == r || self.active_l4_entry(i as usize) != 0 {
                continue;
            }
            let frame = allocator.allocate_frame().ok_or(SpaceError::OutOfFrames)?;
            let table = recursive_address(r, r, r, i);
            // SAFETY: entry `i` of the active level-4 table was empty and is
            // ours (the caller's contract); it now points at a fresh frame,
            // whose recursive address is invalidated before it is zeroed
            // through it, as for any new table.
            unsafe {
                self.backend_mut()
                    .write_entry(l4, i as usize, table_entry(frame));
                self.backend_mut().flush_page(table);
                self.backend_mut().zero_table(table);
            }
            created += 1;
        }
        Ok(created)
    }

    /// [`clean_up`](Self::clean_up) restricted to the level-4 entries not
    /// in `shared`: frees the empty tables of the unshared part (and hands
    /// back spare frames), never a shared table, not even an empty one
    /// (`clean_up` would free an empty level-3 table that
    /// [`prepare_shared`](Self::prepare_shared) made for the kernel half,
    /// which every space still points to). Returns how many tables were
    /// freed.
    ///
    /// # Safety
    ///
    /// As [`clean_up`](Self::clean_up) for the tables below the entries
    /// not in `shared`.
    pub unsafe fn clean_up_unshared<D>(&mut self, shared: &EntrySet, deallocator: &mut D) -> usize
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
    {
        let r = self.recursive_index();
        let mut freed = 0;
        for i in 0..512u16 {
            let index = PageTableIndex::new(i);
            if index == r || shared.contains(index) {
                continue;
            }
            let start = sign_extend(u64::from(i) << 39);
            let range = x86_64::structures::paging::Page::range_inclusive(
                x86_64::structures::paging::Page::containing_address(VirtAddr::new_truncate(start)),
                x86_64::structures::paging::Page::containing_address(VirtAddr::new_truncate(
                    start + ((1 << 39) - 1),
                )),
            );
            // SAFETY: the caller's contract; the range covers one unshared
            // level-4 entry.
            freed += unsafe { self.clean_up_addr_range(range, deallocator) };
        }
        freed
    }

    /// Creates an address space: a level-4 table in a frame from
    /// `allocator`, zeroed through the slot, with its own recursive entry at
    /// this table's recursive index and a copy of the active table's entries
    /// in `shared` (the kernel half; see
    /// [`prepare_shared`](Self::prepare_shared)).
    ///
    /// `slot` is a level-4 index that the active table does not use; the
    /// new space is edited through it later ([`edit`](Self::edit)) and
    /// keeps it empty itself.
    ///
    /// # Errors
    ///
    /// [`SpaceError`]: an unusable or busy slot, a shared entry that is not
    /// a present table pointer (or is the recursive entry or the slot), no
    /// frame. Nothing is changed (no frame is taken) on error.
    pub fn create_space<A>(
        &mut self,
        slot: PageTableIndex,
        shared: &EntrySet,
        allocator: &mut A,
    ) -> Result<AddressSpace, SpaceError>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let at = self.slot_addresses(slot)?;
        for index in shared.iter() {
            let i = usize::from(u16::from(index));
            let entry = self.active_l4_entry(i);
            if i == at.r || i == at.s || entry & (PRESENT | HUGE) != PRESENT {
                return Err(SpaceError::SharedNotPresent {
                    index: i as u16,
                    entry,
                });
            }
        }
        let frame = allocator.allocate_frame().ok_or(SpaceError::OutOfFrames)?;
        // SAFETY: the frame is fresh (the allocator's contract) and about to
        // be zeroed through the slot; the slot was free.
        unsafe { self.set_slot(at, table_entry(frame)) };
        // SAFETY: the slot is open; `r:r:r:s` maps the new frame.
        unsafe { self.backend_mut().zero_table(at.target_page) };
        for index in shared.iter() {
            let i = usize::from(u16::from(index));
            let entry = self.active_l4_entry(i);
            // SAFETY: the slot is open; the entry is a present table pointer
            // of the active hierarchy, now shared.
            unsafe { self.write_target_entry(at, i, entry) };
        }
        // SAFETY: the slot is open; the new table's own recursive entry.
        unsafe { self.write_target_entry(at, at.r, table_entry(frame)) };
        // SAFETY: clearing the slot.
        unsafe { self.set_slot(at, 0) };
        Ok(AddressSpace {
            level_4: frame,
            shared: *shared,
            slot,
        })
    }

    /// Opens `space` for editing through its slot: the returned view runs
    /// the whole [`RecursivePageTable`] API on it (it dereferences to a
    /// table whose recursive index is the slot). Dropping the view closes
    /// the slot.
    ///
    /// The view's flush tokens invalidate the active TLB (the only one
    /// there is); see the module docs for why that is right.
    ///
    /// # Errors
    ///
    /// [`SpaceError`]: an unusable or busy slot, the active space itself,
    /// or a space whose recursive entry is not its own (nothing changed).
    pub fn edit(&mut self, space: &AddressSpace) -> Result<InactiveSpace<'_, B>, SpaceError> {
        let at = self.open(space)?;
        // SAFETY: the slot is open; `B[s] = B` makes `B` recursive at `s`
        // through the slot, and `B[s]` was checked empty by `open`.
        unsafe { self.write_target_entry(at, at.s, table_entry(space.level_4)) };
        // `B[s]` was empty, so nothing was cached through it; the slot's
        // flush in `open` dropped everything cached through `A[s]`.
        let backend = SlotBackend {
            active: self.backend_mut(),
            level_4: space.level_4,
            hidden: at.view_l4 + at.r as u64 * 8,
            at,
        };
        // SAFETY: `B`'s entry `s` is present, writable and points to `B`
        // through the active slot `A[s] = B`, the backend reports `B` as its
        // level-4 frame, and the borrow of the active table keeps anything
        // else from changing the tables while the view lives.
        let table = unsafe { RecursivePageTable::new_unchecked(backend, space.slot) };
        Ok(InactiveSpace { table })
    }

    /// Checks `space` and points the slot at it; on error the slot is
    /// closed again.
    pub(super) fn open(&mut self, space: &AddressSpace) -> Result<SlotAddresses, SpaceError> {
        let at = self.slot_addresses(space.slot)?;
        if space.level_4 == self.backend().level_4_frame() {
            return Err(SpaceError::Active);
        }
        // SAFETY: the space's frame holds a level-4 table (the value was made
        // by `create_space`).
        unsafe { self.set_slot(at, table_entry(space.level_4)) };
        if let Err(error) = self.check_target(at, space.level_4) {
            // SAFETY: closing the slot.
            unsafe { self.set_slot(at, 0) };
            return Err(error);
        }
        Ok(at)
    }

    /// The checks of a space's own entries, read through the open slot.
    pub(super) fn check_target(
        &self,
        at: SlotAddresses,
        level_4: PhysFrame,
    ) -> Result<(), SpaceError> {
        let entry = self.target_entry(at, at.r);
        if entry & (PRESENT | WRITABLE | USER | HUGE | GLOBAL | ADDR_MASK)
            != level_4.start_address().as_u64() | PRESENT | WRITABLE
        {
            return Err(SpaceError::NotRecursive { entry });
        }
        let entry = self.target_entry(at, at.s);
        if entry != 0 {
            return Err(SpaceError::SlotNotEmpty { entry });
        }
        Ok(())
    }

    /// Destroys `space`: hands every page table of it that is not reached
    /// through a shared level-4 entry to `deallocator` (children before
    /// parents, the level-4 table last), after invalidating its address
    /// through the slot, and reports every present leaf outside the shared
    /// entries to `leaves` (to free its frame, or ignore it). Returns how
    /// many tables were freed.
    ///
    /// # Errors
    ///
    /// As [`edit`](Self::edit) ([`SpaceError::Active`] for the active
    /// space); the space is handed back with the error, unchanged.
    ///
    /// # Safety
    ///
    /// The space's page tables are used by it alone, apart from the tables
    /// below its shared entries (which are never freed); the deallocator
    /// takes the frames back.
    pub unsafe fn destroy_space<D, L>(
        &mut self,
        space: AddressSpace,
        deallocator: &mut D,
        mut leaves: L,
    ) -> Result<usize, (AddressSpace, SpaceError)>
    where
        D: FrameDeallocator<Size4KiB> + ?Sized,
        L: FnMut(Mapping, &mut D),
    {
        let at = match self.open(&space) {
            Ok(at) => at,
            Err(error) => return Err((space, error)),
        };
        // `B[s]` is empty (checked), so the space is reached only at
        // `r:r:r:s`; its tables are walked through a view made just for the
        // walk (the same one `edit` makes), then freed.
        // SAFETY: as in `edit`.
        unsafe { self.write_target_entry(at, at.s, table_entry(space.level_4)) };
        let mut freed = 0;
        {
            let backend = SlotBackend {
                active: self.backend_mut(),
                level_4: space.level_4,
                hidden: at.view_l4 + at.r as u64 * 8,
                at,
            };
            // SAFETY: as in `edit`.
            let mut view = unsafe { RecursivePageTable::new_unchecked(backend, space.slot) };
            for i in 0..512u64 {
                let index = PageTableIndex::new(i as u16);
                if i as usize == at.r || i as usize == at.s || space.shared.contains(index) {
                    continue;
                }
                // SAFETY: the caller's contract: these tables are the
                // space's own.
                freed += unsafe {
                    free_below(&mut view, 4, sign_extend(i << 39), deallocator, &mut leaves)
                };
            }
        }
        // SAFETY: closing the slot (which also drops `B[s]`'s translations).
        unsafe { self.set_slot(at, 0) };
        // SAFETY: the level-4 table is unreachable now (the slot is closed
        // and flushed, the space is not active); the caller's contract.
        unsafe { deallocator.deallocate_frame(space.level_4) };
        Ok(freed + 1)
    }
}

/// Frees the table `v`'s level-`level` entry points to (if it is a present
/// table pointer) and everything below it; reports leaves. Returns the
/// number of tables freed.
///
/// # Safety
///
/// As [`RecursivePageTable::destroy_space`].
unsafe fn free_below<B, D, L>(
    view: &mut RecursivePageTable<B>,
    level: usize,
    v: u64,
    deallocator: &mut D,
    leaves: &mut L,
) -> usize
where
    B: Backend,
    D: FrameDeallocator<Size4KiB> + ?Sized,
    L: FnMut(Mapping, &mut D),
{
    let table = view.table_address(level_of(level), VirtAddr::new_truncate(v));
    let index = ((v >> (12 + 9 * (level - 1))) & 511) as usize;
    // SAFETY: the table on `v`'s path at `level` exists: every entry above
    // it was read as a present table pointer by the callers (level 4 needs
    // nothing), and the view's slot is open.
    let entry = unsafe { view.backend().read_entry(table, index) };
    if entry & PRESENT == 0 {
        return 0;
    }
    if level == 1 || entry & HUGE != 0 {
        if level < 4 {
            let size = 1u64 << (12 + 9 * (level - 1));
            leaves(
                Mapping {
                    start: VirtAddr::new_truncate(v),
                    frame: PhysAddr::new(entry & ADDR_MASK & !(size - 1)),
                    size,
                    flags: PageTableFlags::from_bits_truncate(entry),
                },
                deallocator,
            );
        }
        return 0;
    }
    let child = level - 1;
    let span = 1u64 << (12 + 9 * (child - 1));
    let base = v & 0xffff_ffff_ffff & !((span << 9) - 1);
    let mut freed = 0;
    for j in 0..512u64 {
        // SAFETY: forwarded contract; `v`'s entry at `level` is a present
        // table pointer, so the child's entries may be read.
        freed += unsafe {
            free_below(
                view,
                child,
                sign_extend(base + j * span),
                deallocator,
                leaves,
            )
        };
    }
    let table = view.table_address(level_of(child), VirtAddr::new_truncate(v));
    view.backend_mut().flush_page(table);
    let frame = PhysFrame::containing_address(PhysAddr::new(entry & ADDR_MASK));
    // SAFETY: the caller's contract; the table was read for the last time
    // above, and its address through the slot is invalidated.
    unsafe { deallocator.deallocate_frame(frame) };
    freed + 1
}
