//! Planning and committing a map: the read-only [`Plan`] that finds every
//! reason a map would fail before anything is written, the table frames it
//! takes ([`SpareFrames`] when a later step fails), and the writes.
//!
//! # Parent flags
//!
//! Every parent entry on a mapped path ends up with the requested parent
//! flags plus `PRESENT | WRITABLE`, never `GLOBAL`, `HUGE_PAGE` or address
//! bits. `GLOBAL` is stripped because in a recursive hierarchy every parent
//! entry is also the leaf entry of a page table's recursive address: with
//! CR4.PGE, a `GLOBAL` parent would make the recursive translations of the
//! tables below it survive the CR3 write of an address-space switch, and the
//! next address space's table code would reach the old space's tables
//! through them (the CPU ignores `GLOBAL` in a table pointer, so nothing is
//! lost). `WRITABLE` is added even to existing entries, unlike `x86_64`,
//! because the child table is written through the recursive mapping, whose
//! last level is that very entry: without it the write would fault (CR0.WP).
//!
//! # The flush after an upgrade
//!
//! Adding bits to an existing parent entry is followed by one full flush,
//! global entries included ([`Backend::flush_global`]), whatever the level.
//! Effective rights are the AND over every level of a walk, so a TLB entry
//! cached through the old parent value keeps the old, fewer rights, and the
//! next access that needs the new ones would take a spurious page fault:
//! the recursive translations of the tables below the entry (the next write
//! to a child table would fault once `WRITABLE` was added) and the
//! translations of every data page below it (up to 512 under a level-2
//! entry, 512² or 512³ under levels 3 and 4). An `invlpg` per present page
//! below would cost up to 512 reads and invalidations even for a level-2
//! entry and is unbounded above it; upgrades are rare (a map that asks for
//! rights its parents lack), so one full flush per upgraded entry is both the
//! simplest and the cheapest bound. A CR3 reload would keep `GLOBAL`
//! translations, so a `GLOBAL` page accessed while a parent lacked a right
//! would keep its reduced rights; `flush_global` drops those too.

use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    FrameAllocator, PageSize, PageTableFlags, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::addr::{LOW_48, sign_extend};
use super::entry::{Entry, HUGE, PARENT_IGNORED, PRESENT, WRITABLE};
use super::{Backend, EntrySize, RecursivePageTable};

/// Page-table frames taken from an allocator by an operation that then
/// failed; used first by the next table creation, handed back by
/// `clean_up`. At most 3 (one path of new tables).
#[derive(Clone, Copy, Default)]
pub(crate) struct SpareFrames {
    frames: [u64; 3],
    len: usize,
}

impl SpareFrames {
    #[inline]
    fn pop(&mut self) -> Option<u64> {
        if self.len == 0 {
            None
        } else {
            self.len -= 1;
            Some(self.frames[self.len])
        }
    }

    fn push(&mut self, frame: u64) {
        // The capacity argument: an operation pops up to `n <= 3` frames and
        // pushes back at most the `n` it holds, so `len` never exceeds 3.
        if let Some(slot) = self.frames.get_mut(self.len) {
            *slot = frame;
            self.len += 1;
        }
    }
}

/// Why a single-page map could not proceed (before any change was made).
#[derive(Clone, Copy)]
pub(crate) enum MapFail {
    Huge,
    AlreadyMapped(u64),
    NoFrame,
}

impl MapFail {
    /// The `x86_64` error; `already` names the frame of `PageAlreadyMapped`
    /// from the entry found in use.
    #[cold]
    pub(crate) fn into_error<S: PageSize>(
        self,
        already: impl FnOnce(u64) -> PhysFrame<S>,
    ) -> MapToError<S> {
        match self {
            MapFail::Huge => MapToError::ParentEntryHugePage,
            MapFail::AlreadyMapped(entry) => MapToError::PageAlreadyMapped(already(entry)),
            MapFail::NoFrame => MapToError::FrameAllocationFailed,
        }
    }

    /// [`Self::into_error`] naming the frame found in the used entry.
    #[cold]
    pub(crate) fn into_error_existing<S: PageSize>(self) -> MapToError<S> {
        self.into_error(|entry| PhysFrame::containing_address(PhysAddr::new(Entry(entry).addr())))
    }
}

/// The outcome of the read-only part of a map: which parent entries need
/// flags added, and from which level new tables are needed.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    /// Level of the first unused parent entry (tables are created from the
    /// level below it down to the leaf's table); 0 if every table exists.
    create_level: usize,
    /// Bit `l` set: the existing parent entry at level `l` lacks flags.
    or_levels: u32,
}

impl Plan {
    /// Whether an existing parent entry needs flags added.
    #[inline]
    pub(crate) fn has_flags_to_add(self) -> bool {
        self.or_levels != 0
    }

    #[inline]
    pub(crate) fn tables_needed<S: EntrySize>(self) -> usize {
        if self.create_level == 0 {
            0
        } else {
            self.create_level - S::LEVEL
        }
    }
}

/// Where the frames of a mapped range come from.
pub(crate) trait DataFrames<S: EntrySize> {
    type Tables: FrameAllocator<Size4KiB> + ?Sized;
    fn tables(&mut self) -> &mut Self::Tables;
    /// The frame for page `i` of the run.
    fn data(&mut self, i: u64) -> Option<u64>;
    /// `Some(base)` when the frame of page `i + j` is `base + j * S::SIZE`
    /// for every `j` and [`data`](Self::data) has no effect (frames are not
    /// taken from anywhere), so a run can be filled without calling it.
    #[inline]
    fn consecutive(&self, _i: u64) -> Option<u64> {
        None
    }
}

/// Consecutive frames from `first`.
pub(crate) struct Consecutive<'a, A: ?Sized> {
    pub(crate) first: u64,
    pub(crate) tables: &'a mut A,
}

impl<S: EntrySize, A: FrameAllocator<Size4KiB> + ?Sized> DataFrames<S> for Consecutive<'_, A> {
    type Tables = A;
    #[inline]
    fn tables(&mut self) -> &mut A {
        self.tables
    }
    #[inline]
    fn data(&mut self, i: u64) -> Option<u64> {
        Some(self.first + i * S::SIZE)
    }
    #[inline]
    fn consecutive(&self, i: u64) -> Option<u64> {
        Some(self.first + i * S::SIZE)
    }
}

/// Frames (and tables) from one allocator.
pub(crate) struct Allocated<'a, A: ?Sized> {
    pub(crate) allocator: &'a mut A,
}

/// Frames from one allocator, tables from another.
pub(crate) struct Split<'a, D: ?Sized, T: ?Sized> {
    pub(crate) data: &'a mut D,
    pub(crate) tables: &'a mut T,
}

impl<S: EntrySize, D, T> DataFrames<S> for Split<'_, D, T>
where
    D: FrameAllocator<S> + ?Sized,
    T: FrameAllocator<Size4KiB> + ?Sized,
{
    type Tables = T;
    #[inline]
    fn tables(&mut self) -> &mut T {
        self.tables
    }
    #[inline]
    fn data(&mut self, _: u64) -> Option<u64> {
        self.data
            .allocate_frame()
            .map(|f| f.start_address().as_u64())
    }
}

impl<S: EntrySize, A> DataFrames<S> for Allocated<'_, A>
where
    A: FrameAllocator<S> + FrameAllocator<Size4KiB> + ?Sized,
{
    type Tables = A;
    #[inline]
    fn tables(&mut self) -> &mut A {
        self.allocator
    }
    #[inline]
    fn data(&mut self, _: u64) -> Option<u64> {
        <A as FrameAllocator<S>>::allocate_frame(self.allocator).map(|f| f.start_address().as_u64())
    }
}

/// The largest page size [`map_range_mixed`](RecursivePageTable::map_range_mixed) may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MaxPageSize {
    /// 4 KiB pages only.
    Size4KiB,
    /// 2 MiB pages where virtual and physical alignment allow.
    Size2MiB,
    /// 1 GiB and 2 MiB pages where alignment allows.
    Size1GiB,
}

/// How [`map_range_mixed`](RecursivePageTable::map_range_mixed) splits a
/// range: `(start, level, count)` runs of `count` pages of the size mapped at
/// `level`, largest first wherever the virtual and physical addresses are
/// both aligned and the rest of the range is long enough.
pub(crate) fn pieces(
    start: VirtAddr,
    end: VirtAddr,
    phys: PhysAddr,
    largest: MaxPageSize,
) -> impl Iterator<Item = (VirtAddr, usize, u64)> {
    let end48 = end.as_u64() & LOW_48;
    let end48 = if end48 == 0 && end.as_u64() != 0 {
        1 << 48
    } else {
        end48
    };
    let delta = phys.as_u64().wrapping_sub(start.as_u64() & LOW_48);
    let fits = |size: u64| delta & (size - 1) == 0;
    let gib = largest >= MaxPageSize::Size1GiB && fits(Size1GiB::SIZE);
    let mib = largest >= MaxPageSize::Size2MiB && fits(Size2MiB::SIZE);
    let mut pos = start.as_u64() & LOW_48;
    core::iter::from_fn(move || {
        if pos >= end48 {
            return None;
        }
        let left = end48 - pos;
        let aligned = |size: u64| pos & (size - 1) == 0 && left >= size;
        let next_boundary = |size: u64| ((pos | (size - 1)) + 1 - pos).min(left);
        let (level, count) = if gib && aligned(Size1GiB::SIZE) {
            (3, left / Size1GiB::SIZE)
        } else if mib && aligned(Size2MiB::SIZE) {
            let span = if gib {
                next_boundary(Size1GiB::SIZE)
            } else {
                left
            };
            (2, span / Size2MiB::SIZE)
        } else {
            let span = if mib {
                next_boundary(Size2MiB::SIZE)
            } else {
                left
            };
            (1, span / Size4KiB::SIZE)
        };
        let piece = (VirtAddr::new_truncate(sign_extend(pos)), level, count);
        pos += count << (12 + 9 * (level as u64 - 1));
        Some(piece)
    })
}

impl<B: Backend> RecursivePageTable<B> {
    /// The bits every parent entry on a mapped path must carry: the
    /// requested ones plus `PRESENT | WRITABLE` (see the module docs).
    #[inline(always)]
    pub(crate) fn parent_bits(flags: PageTableFlags) -> u64 {
        (flags.bits() & !PARENT_IGNORED) | PRESENT | WRITABLE
    }

    /// The parent bits a map without explicit table flags asks for: the
    /// leaf's `PRESENT`, `WRITABLE` and `USER_ACCESSIBLE`, as `x86_64` derives
    /// them, through [`Self::parent_bits`].
    #[inline(always)]
    pub(crate) fn parent_bits_for_leaf(flags: PageTableFlags) -> u64 {
        Self::parent_bits(
            flags
                & (PageTableFlags::PRESENT
                    | PageTableFlags::WRITABLE
                    | PageTableFlags::USER_ACCESSIBLE),
        )
    }

    /// The fast path of a single-page map: all parents present with the
    /// wanted flags. Everything else goes to [`Self::map_slow`].
    #[inline(always)]
    pub(crate) fn map_entry<S: EntrySize, A>(
        &mut self,
        v: u64,
        leaf: u64,
        want: u64,
        allocator: &mut A,
    ) -> Result<(), MapFail>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        if self.in_window(v) {
            return Err(MapFail::Huge);
        }
        let top = self.entry_address(4, v);
        let check = want | HUGE;
        // SAFETY: `top` is the address of `v`'s level-4 entry (the invariant
        // of `read`: level 4 needs nothing above it).
        if unsafe { self.backend.read_entry_at(top) } & check != want {
            return self.map_slow::<S, A>(v, leaf, want, allocator);
        }
        let mut level = 3;
        while level > S::LEVEL {
            if self.read(level, v) & check != want {
                return self.map_slow::<S, A>(v, leaf, want, allocator);
            }
            level -= 1;
        }
        let old = self.read(S::LEVEL, v);
        if old != 0 {
            return Err(MapFail::AlreadyMapped(old));
        }
        self.write(S::LEVEL, v, leaf);
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn map_slow<S: EntrySize, A>(
        &mut self,
        v: u64,
        leaf: u64,
        want: u64,
        allocator: &mut A,
    ) -> Result<(), MapFail>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let plan = self.plan::<S>(v, want)?;
        let tables = self.take_tables(plan.tables_needed::<S>(), allocator)?;
        self.commit::<S>(v, plan, &tables, want, leaf);
        Ok(())
    }

    /// Read-only walk: finds every reason the map would fail, and what it
    /// has to change.
    pub(crate) fn plan<S: EntrySize>(&self, v: u64, want: u64) -> Result<Plan, MapFail> {
        let plan = self.plan_parents::<S>(v, want)?;
        if plan.create_level == 0 {
            let old = self.read(S::LEVEL, v);
            if old != 0 {
                return Err(MapFail::AlreadyMapped(old));
            }
        }
        Ok(plan)
    }

    /// The parent part of [`Self::plan`]: errors above the leaf, missing
    /// tables and missing flags.
    pub(crate) fn plan_parents<S: EntrySize>(&self, v: u64, want: u64) -> Result<Plan, MapFail> {
        if self.in_window(v) {
            return Err(MapFail::Huge);
        }
        let mut or_levels = 0;
        let mut level = 4;
        while level > S::LEVEL {
            let entry = self.read(level, v);
            if Entry(entry).is_unused() {
                return Ok(Plan {
                    create_level: level,
                    or_levels,
                });
            }
            if !Entry(entry).is_table() {
                return Err(MapFail::Huge);
            }
            if entry & want != want {
                or_levels |= 1 << level;
            }
            level -= 1;
        }
        Ok(Plan {
            create_level: 0,
            or_levels,
        })
    }

    /// Takes `count` table frames (spare ones first). On failure the frames
    /// taken so far become spares, and nothing else changed.
    pub(crate) fn take_tables<A>(
        &mut self,
        count: usize,
        allocator: &mut A,
    ) -> Result<[u64; 3], MapFail>
    where
        A: FrameAllocator<Size4KiB> + ?Sized,
    {
        let mut tables = [0; 3];
        for i in 0..count {
            let frame = if let Some(frame) = self.spare.pop() {
                frame
            } else if let Some(frame) = allocator.allocate_frame() {
                frame.start_address().as_u64()
            } else {
                self.return_tables(&tables[..i]);
                return Err(MapFail::NoFrame);
            };
            tables[i] = frame;
        }
        Ok(tables)
    }

    /// Writes a planned map: adds parent flags, links and zeroes new tables
    /// (invalidating each one's recursive address first, so no stale
    /// translation from a freed table can redirect the zeroing), then writes
    /// the leaf.
    pub(crate) fn commit<S: EntrySize>(
        &mut self,
        v: u64,
        plan: Plan,
        tables: &[u64; 3],
        want: u64,
        leaf: u64,
    ) {
        self.commit_parents::<S>(v, plan, tables, want);
        self.write(S::LEVEL, v, leaf);
    }

    /// The parent part of [`Self::commit`].
    pub(crate) fn commit_parents<S: EntrySize>(
        &mut self,
        v: u64,
        plan: Plan,
        tables: &[u64; 3],
        want: u64,
    ) {
        let mut level = 4;
        while level > S::LEVEL && level != plan.create_level {
            if plan.or_levels & (1 << level) != 0 {
                let entry = self.read(level, v);
                self.write(level, v, entry | want);
                self.flush_upgraded();
            }
            level -= 1;
        }
        let mut next = 0;
        while level > S::LEVEL {
            self.write(level, v, tables[next] | want);
            next += 1;
            let child = self.table(level - 1, v);
            self.backend.flush_page(child);
            // SAFETY: `child` is the recursive address of the table just
            // linked in (the entry above was written as a present, writable
            // table pointer, and its stale translation invalidated); it is
            // new, so clearing all its entries is what it needs.
            unsafe { self.backend.zero_table(child) };
            level -= 1;
        }
    }

    /// The full flush after bits were added to an existing parent entry
    /// (see the module docs).
    pub(crate) fn flush_upgraded(&mut self) {
        self.backend.flush_global();
    }

    /// Makes `frames` spare page-table frames again (after a later step of
    /// the same operation failed).
    pub(crate) fn return_tables(&mut self, tables: &[u64]) {
        for &table in tables {
            self.spare.push(table);
        }
    }

    pub(crate) fn take_spare(&mut self) -> Option<PhysFrame> {
        self.spare
            .pop()
            .map(|addr| PhysFrame::containing_address(PhysAddr::new(addr)))
    }

    /// Number of page-table frames held after a map failed for lack of
    /// frames (at most 3), used by the next table creation.
    ///
    /// Only `clean_up` (its variants, and `unmap_range_and_free` with
    /// reclaim) hands them back, to the deallocator given there, which must
    /// accept them. Dropping the table or calling
    /// [`into_backend`](Self::into_backend) with spares held loses them.
    pub fn spare_frames(&self) -> usize {
        self.spare.len
    }
}
