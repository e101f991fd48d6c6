//! The range walker and the per-operation runs.
//!
//! A range is cut into [`Run`]s, the consecutive entries of one table, by
//! one walker ([`runs`](RecursivePageTable::runs)). Each operation
//! says what differs: how the parents of a run are prepared, the fast pass
//! over a run (a whole-run check with no early exit, then a fill, clear or
//! update with no branch per entry), and the cold checked pass that does the
//! entries before the first failing one and reports it.

use core::marker::PhantomData;

use x86_64::structures::paging::PhysFrame;
use x86_64::structures::paging::mapper::{FlagUpdateError, UnmapError};
use x86_64::{PhysAddr, VirtAddr};

use super::addr::{index, sign_extend, table_address};
use super::entry::{ADDR_MASK, GLOBAL, HUGE, PRESENT, leaf_frame_for_unmap, not_a_page};
use super::map::{DataFrames, MapFail};
use super::walk::WalkFail;
use super::{Backend, EntrySize, RecursivePageTable};

/// Consecutive entries of one table: `len` entries from index `first` of the
/// table at recursive address `table`, for the pages from page `done` of a
/// range, the first of which is at `v`.
#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub(crate) table: VirtAddr,
    pub(crate) first: usize,
    pub(crate) len: u64,
    pub(crate) done: u64,
    pub(crate) v: u64,
}

/// The walker: the runs of a range, in order (see
/// [`RecursivePageTable::runs`]).
pub(crate) struct Runs<S> {
    base: u64,
    start48: u64,
    count: u64,
    done: u64,
    size: PhantomData<S>,
}

impl<S: EntrySize> Iterator for Runs<S> {
    type Item = Run;

    #[inline(always)]
    fn next(&mut self) -> Option<Run> {
        if self.done >= self.count {
            return None;
        }
        let v = sign_extend(self.start48 + self.done * S::SIZE);
        let first = index(S::LEVEL, v);
        let len = (512 - first as u64).min(self.count - self.done);
        let table = table_address(self.base, S::LEVEL, v);
        let run = Run {
            table,
            first,
            len,
            done: self.done,
            v,
        };
        self.done += len;
        Some(run)
    }
}

/// A run's failure: the page index in the range, and why.
type Stop<E> = (u64, E);

impl<B: Backend> RecursivePageTable<B> {
    /// The runs of `count` pages of size `S` from the 48-bit offset
    /// `start48`, one per table.
    #[inline(always)]
    pub(crate) fn runs<S: EntrySize>(&self, start48: u64, count: u64) -> Runs<S> {
        Runs {
            base: self.bases[S::LEVEL - 1],
            start48,
            count,
            done: 0,
            size: PhantomData,
        }
    }

    /// The parent preparation of a run that rewrites existing leaves: the
    /// window and parent checks of the single-page operation, and whether
    /// every parent already carries `WRITABLE`.
    #[inline(always)]
    fn prepare_rewrite<S: EntrySize, E: From<WalkFail>>(&self, run: Run) -> Result<bool, Stop<E>> {
        if self.in_window(run.v) {
            return Err((run.done, WalkFail::Huge.into()));
        }
        self.walk_parents_for_write::<S>(run.v)
            .map_err(|f| (run.done, f.into()))
    }

    // -------------------------------------------------------------- map

    /// Maps `count` pages of size `S` from `start48`, one table at a time.
    pub(crate) fn map_run<S: EntrySize, D: DataFrames<S>>(
        &mut self,
        start48: u64,
        count: u64,
        leaf_flags: u64,
        want: u64,
        source: &mut D,
    ) -> Result<(), Stop<MapFail>> {
        for run in self.runs::<S>(start48, count) {
            let (i, v) = (run.done, run.v);
            let plan = self.plan_parents::<S>(v, want).map_err(|f| (i, f))?;
            let needed = plan.tables_needed::<S>();
            let mut pending = None;
            if needed > 0 || plan.has_flags_to_add() {
                // Something above the leaf changes: make sure the first
                // page will be mapped before changing anything.
                if needed == 0 {
                    let old = self.read(S::LEVEL, v);
                    if old != 0 {
                        return Err((i, MapFail::AlreadyMapped(old)));
                    }
                }
                let tables = self
                    .take_tables(needed, source.tables())
                    .map_err(|f| (i, f))?;
                let Some(frame) = source.data(i) else {
                    self.return_tables(&tables[..needed]);
                    return Err((i, MapFail::NoFrame));
                };
                pending = Some(frame);
                self.commit_parents::<S>(v, plan, &tables, want);
            }
            // An OR over the run with no early exit, which vectorises.
            let mut any = 0;
            for j in 0..run.len as usize {
                any |= self.read_in(run.table, run.first + j);
            }
            if any != 0 {
                return self.map_entries_checked::<S, D>(run, leaf_flags, source, pending);
            }
            let (table, first) = (run.table, run.first);
            if let Some(base) = source.consecutive(i) {
                // `pending`, if taken, is `base`: consecutive frames come
                // from nowhere, so there is nothing to give back.
                for j in 0..run.len {
                    self.write_in(table, first + j as usize, (base + j * S::SIZE) | leaf_flags);
                }
            } else {
                for j in 0..run.len {
                    let frame = match pending.take() {
                        Some(frame) => frame,
                        None => source.data(i + j).ok_or((i + j, MapFail::NoFrame))?,
                    };
                    self.write_in(table, first + j as usize, frame | leaf_flags);
                }
            }
        }
        Ok(())
    }

    /// [`map_run`](Self::map_run) for a run with an entry in use: maps the
    /// entries before it and reports it (or a frame the source lacked).
    #[cold]
    #[inline(never)]
    fn map_entries_checked<S: EntrySize, D: DataFrames<S>>(
        &mut self,
        run: Run,
        leaf_flags: u64,
        source: &mut D,
        mut pending: Option<u64>,
    ) -> Result<(), Stop<MapFail>> {
        for j in 0..run.len {
            let index = run.first + j as usize;
            let old = self.read_in(run.table, index);
            if old != 0 {
                return Err((run.done + j, MapFail::AlreadyMapped(old)));
            }
            let frame = match pending.take() {
                Some(frame) => frame,
                None => source
                    .data(run.done + j)
                    .ok_or((run.done + j, MapFail::NoFrame))?,
            };
            self.write_in(run.table, index, frame | leaf_flags);
        }
        Ok(())
    }

    // ------------------------------------------------------------ unmap

    /// Clears (or, with `mark`, makes non-present) the entries of `count`
    /// pages from `start48`, reporting each frame.
    pub(crate) fn unmap_run<S: EntrySize>(
        &mut self,
        start48: u64,
        count: u64,
        mark: bool,
        global: &mut bool,
        on_frame: &mut impl FnMut(PhysFrame<S>),
    ) -> Result<(), Stop<UnmapError>> {
        for run in self.runs::<S>(start48, count) {
            let writable = self.prepare_rewrite::<S, _>(run)?;
            let (table, first, len) = (run.table, run.first, run.len as usize);
            // The checks of `leaf_frame_for_unmap` over the whole run: every
            // entry present, with the huge bit of its level, aligned.
            let (mut all, mut any) = (!0u64, 0u64);
            for j in 0..len {
                let entry = self.read_in(table, first + j);
                all &= entry;
                any |= entry;
            }
            let huge_ok = if S::LEVEL > 1 {
                all & HUGE != 0
            } else {
                any & HUGE == 0
            };
            if all & PRESENT == 0 || !huge_ok || any & ADDR_MASK & (S::SIZE - 1) != 0 {
                return self.unmap_entries_checked::<S>(run, writable, mark, global, on_frame);
            }
            *global |= any & GLOBAL != 0;
            if !writable {
                self.make_writable_above(S::LEVEL, run.v);
            }
            for j in 0..len {
                let entry = self.read_in(table, first + j);
                on_frame(PhysFrame::containing_address(PhysAddr::new(
                    entry & ADDR_MASK,
                )));
            }
            if mark {
                for j in 0..len {
                    let entry = self.read_in(table, first + j);
                    self.write_in(table, first + j, entry & !PRESENT);
                }
            } else {
                // SAFETY: the table invariant of `write_in`, with
                // `first + len <= 512`; every entry of the run maps a page
                // of the range, which the caller asked to unmap.
                unsafe { self.backend_mut().zero_entries(table, first, len) };
            }
        }
        Ok(())
    }

    /// [`unmap_run`](Self::unmap_run) for a run with an entry that cannot be
    /// unmapped: unmaps the entries before it and reports it.
    #[cold]
    #[inline(never)]
    fn unmap_entries_checked<S: EntrySize>(
        &mut self,
        run: Run,
        writable: bool,
        mark: bool,
        global: &mut bool,
        on_frame: &mut impl FnMut(PhysFrame<S>),
    ) -> Result<(), Stop<UnmapError>> {
        for j in 0..run.len {
            let index = run.first + j as usize;
            let entry = self.read_in(run.table, index);
            let frame = leaf_frame_for_unmap::<S>(entry).map_err(|e| (run.done + j, e))?;
            if j == 0 && !writable {
                self.make_writable_above(S::LEVEL, run.v);
            }
            *global |= entry & GLOBAL != 0;
            let new = if mark { entry & !PRESENT } else { 0 };
            self.write_in(run.table, index, new);
            on_frame(frame);
        }
        Ok(())
    }

    /// The second pass of `unmap_range_and_free`: clears the entries of
    /// `count` pages from `start48` (made non-present by the first pass) and
    /// hands each frame to `free`.
    pub(crate) fn clear_runs<S: EntrySize>(
        &mut self,
        start48: u64,
        count: u64,
        free: &mut impl FnMut(PhysFrame<S>),
    ) {
        for run in self.runs::<S>(start48, count) {
            for j in 0..run.len as usize {
                let entry = self.read_in(run.table, run.first + j);
                self.write_in(run.table, run.first + j, 0);
                free(PhysFrame::containing_address(PhysAddr::new(
                    entry & ADDR_MASK,
                )));
            }
        }
    }

    // ------------------------------------------------------------ flags

    /// Replaces the flags of the entries of `count` pages from `start48`
    /// with `flags` (leaf bits), keeping their frames.
    pub(crate) fn update_run<S: EntrySize>(
        &mut self,
        start48: u64,
        count: u64,
        flags: u64,
        global: &mut bool,
    ) -> Result<(), Stop<FlagUpdateError>> {
        for run in self.runs::<S>(start48, count) {
            let writable = self.prepare_rewrite::<S, _>(run)?;
            let (table, first, len) = (run.table, run.first, run.len as usize);
            // No entry unused, and above level 1 none without `HUGE_PAGE`
            // (a table, present or not: see `not_a_page`).
            let (mut bad, mut any) = (false, 0u64);
            for j in 0..len {
                let entry = self.read_in(table, first + j);
                bad |= entry == 0;
                bad |= S::LEVEL > 1 && entry & HUGE == 0;
                any |= entry;
            }
            if bad {
                return self.update_entries_checked::<S>(run, writable, flags, global);
            }
            *global |= any & GLOBAL != 0;
            if !writable {
                self.make_writable_above(S::LEVEL, run.v);
            }
            for j in 0..len {
                let entry = self.read_in(table, first + j);
                self.write_in(table, first + j, (entry & ADDR_MASK) | flags);
            }
        }
        Ok(())
    }

    /// [`update_run`](Self::update_run) for a run with an entry that cannot
    /// be updated: updates the entries before it and reports it.
    #[cold]
    #[inline(never)]
    fn update_entries_checked<S: EntrySize>(
        &mut self,
        run: Run,
        writable: bool,
        flags: u64,
        global: &mut bool,
    ) -> Result<(), Stop<FlagUpdateError>> {
        for j in 0..run.len {
            let index = run.first + j as usize;
            let entry = self.read_in(run.table, index);
            if let Some(fail) = not_a_page::<S>(entry) {
                return Err((run.done + j, fail.into()));
            }
            if j == 0 && !writable {
                self.make_writable_above(S::LEVEL, run.v);
            }
            *global |= entry & GLOBAL != 0;
            self.write_in(run.table, index, (entry & ADDR_MASK) | flags);
        }
        Ok(())
    }
}
