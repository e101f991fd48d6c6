//! Hand-written lower bounds: the same walks written directly against the
//! recursive window, with no abstraction, checking present bits only on the
//! way down. What a page-table crate cannot beat by more than noise.
//!
//! Leaves are level-1 entries for 4 KiB pages and level-2 entries (with the
//! huge bit) for 2 MiB pages; the page size is a compile-time constant.

use std::ptr;

use framealloc::x86_64::structures::paging::{FrameAllocator, PageSize, Size2MiB};

use super::window::{
    ADDR_MASK, FakeFrames, HUGE, PRESENT, RECURSIVE, REGION, WRITABLE, level_1, level_2, level_3,
    level_4, recursive,
};

#[inline(always)]
const fn index(addr: u64, level: u32) -> u64 {
    (addr >> (12 + 9 * (level - 1))) & 511
}

#[inline(always)]
fn is_huge<S: PageSize>() -> bool {
    S::SIZE == Size2MiB::SIZE
}

/// Makes sure `entry` points to a table (allocating and zeroing the table at
/// recursive address `table` if not). Checks the present bit only.
#[inline(always)]
unsafe fn ensure(entry: *mut u64, table: *mut u64, frames: &mut FakeFrames) -> Option<()> {
    // SAFETY: the caller passes an entry of a present table.
    if unsafe { *entry } & PRESENT == 0 {
        // SAFETY: forwarded from the caller.
        return unsafe { create(entry, table, frames) };
    }
    Some(())
}

/// The rare path of [`ensure`], kept out of line so that the per-page walk
/// keeps its registers.
#[cold]
#[inline(never)]
unsafe fn create(entry: *mut u64, table: *mut u64, frames: &mut FakeFrames) -> Option<()> {
    let frame = frames.allocate_frame()?;
    // SAFETY: the caller passes an entry of a present table and the
    // recursive address that entry makes visible, both inside the window.
    unsafe {
        *entry = frame.start_address().as_u64() | PRESENT | WRITABLE;
        ptr::write_bytes(table, 0, 512);
    }
    Some(())
}

/// The leaf table for `addr` (level 1, or level 2 for 2 MiB pages), creating
/// missing tables on the way.
#[inline(always)]
unsafe fn leaf_table_create<S: PageSize>(addr: u64, frames: &mut FakeFrames) -> Option<*mut u64> {
    let (i4, i3, i2) = (index(addr, 4), index(addr, 3), index(addr, 2));
    // SAFETY: each entry belongs to a table made present by the previous step,
    // and each table address is the one its parent entry makes visible.
    unsafe {
        ensure(level_4().add(i4 as usize), level_3(i4), frames)?;
        ensure(level_3(i4).add(i3 as usize), level_2(i4, i3), frames)?;
        if is_huge::<S>() {
            return Some(level_2(i4, i3));
        }
        ensure(
            level_2(i4, i3).add(i2 as usize),
            level_1(i4, i3, i2),
            frames,
        )?;
    }
    Some(level_1(i4, i3, i2))
}

/// The address of `addr`'s entry at `level`, in one shift and mask: the
/// recursive address of its table with the index times 8 (lower half only,
/// as the region is).
#[inline(always)]
const fn entry(level: u32, addr: u64) -> *mut u64 {
    const R: u64 = RECURSIVE;
    let base = match level {
        1 => recursive(R, 0, 0, 0),
        2 => recursive(R, R, 0, 0),
        3 => recursive(R, R, R, 0),
        _ => recursive(R, R, R, R),
    };
    let mask = ((1u64 << (9 * (5 - level))) - 1) << 3;
    (base | ((addr >> (9 * level)) & mask)) as *mut u64
}

/// `addr`'s leaf entry if every entry above it is present.
#[inline(always)]
unsafe fn leaf_entry<S: PageSize>(addr: u64) -> Option<*mut u64> {
    // SAFETY: each entry is read only after the entry above it was seen
    // present, so its table is mapped at its recursive address.
    unsafe {
        if *entry(4, addr) & PRESENT == 0 || *entry(3, addr) & PRESENT == 0 {
            return None;
        }
        if is_huge::<S>() {
            return Some(entry(2, addr));
        }
        if *entry(2, addr) & PRESENT == 0 {
            return None;
        }
    }
    Some(entry(1, addr))
}

/// The leaf table for `addr` if every table on the way is present.
#[inline(always)]
unsafe fn leaf_table<S: PageSize>(addr: u64) -> Option<*mut u64> {
    let (i4, i3, i2) = (index(addr, 4), index(addr, 3), index(addr, 2));
    // SAFETY: each read is of a table whose parent entry was just seen present.
    unsafe {
        if *level_4().add(i4 as usize) & PRESENT == 0 {
            return None;
        }
        if *level_3(i4).add(i3 as usize) & PRESENT == 0 {
            return None;
        }
        if is_huge::<S>() {
            return Some(level_2(i4, i3));
        }
        if *level_2(i4, i3).add(i2 as usize) & PRESENT == 0 {
            return None;
        }
    }
    Some(level_1(i4, i3, i2))
}

#[inline(always)]
fn leaf_index<S: PageSize>(addr: u64) -> usize {
    index(addr, if is_huge::<S>() { 2 } else { 1 }) as usize
}

#[inline(always)]
fn leaf_flags<S: PageSize>(flags: u64) -> u64 {
    if is_huge::<S>() { flags | HUGE } else { flags }
}

/// Maps one page; `None` if it was mapped already.
///
/// # Safety
///
/// The window is open and exclusively borrowed by the caller.
#[inline(always)]
pub(crate) unsafe fn map<S: PageSize>(
    addr: u64,
    frame: u64,
    flags: u64,
    frames: &mut FakeFrames,
) -> Option<()> {
    // SAFETY: the caller owns the window; the leaf table is present.
    unsafe {
        let entry = leaf_table_create::<S>(addr, frames)?.add(leaf_index::<S>(addr));
        if *entry & PRESENT != 0 {
            return None;
        }
        *entry = frame | leaf_flags::<S>(flags);
    }
    Some(())
}

/// Unmaps one page and returns its frame.
///
/// # Safety
///
/// As for [`map`].
#[inline(always)]
pub(crate) unsafe fn unmap<S: PageSize>(addr: u64) -> Option<u64> {
    // SAFETY: the caller owns the window; the leaf table is present.
    unsafe {
        let entry = leaf_entry::<S>(addr)?;
        let old = *entry;
        if old & PRESENT == 0 {
            return None;
        }
        *entry = 0;
        Some(old & ADDR_MASK)
    }
}

/// Replaces the flags of one mapped page.
///
/// # Safety
///
/// As for [`map`].
#[inline(always)]
pub(crate) unsafe fn update_flags<S: PageSize>(addr: u64, flags: u64) -> Option<()> {
    // SAFETY: the caller owns the window; the leaf table is present.
    unsafe {
        let entry = leaf_entry::<S>(addr)?;
        let old = *entry;
        if old & PRESENT == 0 {
            return None;
        }
        *entry = (old & ADDR_MASK) | leaf_flags::<S>(flags);
    }
    Some(())
}

/// Translates any address (stops at huge entries, like the MMU).
///
/// # Safety
///
/// As for [`map`].
#[inline(always)]
pub(crate) unsafe fn translate(addr: u64) -> Option<u64> {
    // SAFETY: each entry is read only after the entry above it was seen
    // present, so its table is mapped at its recursive address.
    unsafe {
        if *entry(4, addr) & PRESENT == 0 {
            return None;
        }
        let e3 = *entry(3, addr);
        if e3 & (PRESENT | HUGE) != PRESENT {
            return (e3 & PRESENT != 0)
                .then_some((e3 & ADDR_MASK & !0x3fff_ffff) | (addr & 0x3fff_ffff));
        }
        let e2 = *entry(2, addr);
        if e2 & (PRESENT | HUGE) != PRESENT {
            return (e2 & PRESENT != 0)
                .then_some((e2 & ADDR_MASK & !0x1f_ffff) | (addr & 0x1f_ffff));
        }
        let e1 = *entry(1, addr);
        (e1 & PRESENT != 0).then_some((e1 & ADDR_MASK) | (addr & 0xfff))
    }
}

/// Calls `fill(leaf_table_entries)` once per leaf table covered by the
/// `count` pages from `addr`, walking (and, with `frames`, creating) the
/// upper levels once per leaf table.
#[inline(always)]
unsafe fn for_each_leaf_run<S: PageSize>(
    mut addr: u64,
    mut count: u64,
    mut frames: Option<&mut FakeFrames>,
    mut run: impl FnMut(&mut [u64], u64) -> Option<()>,
) -> Option<()> {
    let mut done = 0;
    while count > 0 {
        let first = leaf_index::<S>(addr);
        let len = count.min(512 - first as u64);
        // SAFETY: the caller owns the window; tables are created or checked
        // present before the leaf table is touched.
        let table = unsafe {
            match frames.as_deref_mut() {
                Some(frames) => leaf_table_create::<S>(addr, frames)?,
                None => leaf_table::<S>(addr)?,
            }
        };
        // SAFETY: `first + len <= 512`, inside one present leaf table, which
        // nothing else references while the caller owns the window.
        let entries = unsafe { std::slice::from_raw_parts_mut(table.add(first), len as usize) };
        run(entries, done)?;
        done += len;
        count -= len;
        addr += len * S::SIZE;
    }
    Some(())
}

/// Maps `count` consecutive pages to consecutive frames from `frame`:
/// one walk per leaf table, then a check that the run is unused and a fill.
///
/// # Safety
///
/// As for [`map`].
#[inline(never)]
pub(crate) unsafe fn map_range<S: PageSize>(
    addr: u64,
    count: u64,
    frame: u64,
    flags: u64,
    frames: &mut FakeFrames,
) -> Option<()> {
    let flags = leaf_flags::<S>(flags);
    // SAFETY: forwarded from the caller.
    unsafe {
        for_each_leaf_run::<S>(addr, count, Some(frames), |entries, done| {
            if entries.iter().fold(0, |acc, e| acc | e) & PRESENT != 0 {
                return None;
            }
            let base = frame + done * S::SIZE;
            for (k, e) in entries.iter_mut().enumerate() {
                *e = (base + k as u64 * S::SIZE) | flags;
            }
            Some(())
        })
    }
}

/// Unmaps `count` consecutive pages: a check that all are present, then a
/// clear, per leaf table.
///
/// # Safety
///
/// As for [`map`].
#[inline(never)]
pub(crate) unsafe fn unmap_range<S: PageSize>(addr: u64, count: u64) -> Option<()> {
    // SAFETY: forwarded from the caller.
    unsafe {
        for_each_leaf_run::<S>(addr, count, None, |entries, _| {
            if entries.iter().fold(PRESENT, |acc, e| acc & e) & PRESENT == 0 {
                return None;
            }
            entries.fill(0);
            Some(())
        })
    }
}

/// Replaces the flags of `count` consecutive mapped pages.
///
/// # Safety
///
/// As for [`map`].
#[inline(never)]
pub(crate) unsafe fn update_range<S: PageSize>(addr: u64, count: u64, flags: u64) -> Option<()> {
    let flags = leaf_flags::<S>(flags);
    // SAFETY: forwarded from the caller.
    unsafe {
        for_each_leaf_run::<S>(addr, count, None, |entries, _| {
            if entries.iter().fold(PRESENT, |acc, e| acc & e) & PRESENT == 0 {
                return None;
            }
            for e in entries.iter_mut() {
                *e = (*e & ADDR_MASK) | flags;
            }
            Some(())
        })
    }
}

/// Frees every empty table of the region (bottom up) and returns how many.
///
/// # Safety
///
/// As for [`map`].
#[inline(never)]
pub(crate) unsafe fn reclaim(frames: &mut FakeFrames) -> u64 {
    fn empty(table: *mut u64) -> bool {
        // SAFETY: `table` is a present table inside the window.
        unsafe { std::slice::from_raw_parts(table, 512) }
            .iter()
            .all(|e| *e == 0)
    }
    let mut freed = 0;
    let i4 = REGION;
    // SAFETY: every table read is reached through a present parent entry.
    unsafe {
        let e4 = level_4().add(i4 as usize);
        if *e4 & PRESENT == 0 {
            return 0;
        }
        for i3 in 0..512 {
            let e3 = level_3(i4).add(i3 as usize);
            if *e3 & PRESENT == 0 || *e3 & HUGE != 0 {
                continue;
            }
            for i2 in 0..512 {
                let e2 = level_2(i4, i3).add(i2 as usize);
                if *e2 & PRESENT == 0 || *e2 & HUGE != 0 {
                    continue;
                }
                if empty(level_1(i4, i3, i2)) {
                    *e2 = 0;
                    freed += 1;
                }
            }
            if empty(level_2(i4, i3)) {
                *e3 = 0;
                freed += 1;
            }
        }
        if empty(level_3(i4)) {
            *e4 = 0;
            freed += 1;
        }
    }
    frames.freed += freed;
    freed
}
