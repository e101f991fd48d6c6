//! Differential suite: the same random operations on `x86_64`'s
//! `OffsetPageTable` (over host memory) and on framealloc's
//! `RecursivePageTable` (over the emulator) must give the same results, the
//! same errors, and byte-for-byte the same page tables after every step.
//! Range operations (`map_range`, `map_range_mixed`, `unmap_range`,
//! `update_flags_range`) are compared with a loop of `x86_64`'s single-page
//! operations that stops at the first error: same pages done, same error.
//!
//! Both sides get table frames from identical `SequentialFrames`, so equal
//! behaviour means equal physical layouts. Known, deliberate deviations are
//! handled explicitly (see `huge_size_mismatch`): where `x86_64` would return
//! a page table's frame as a huge page's frame, or set `HUGE_PAGE` on a
//! table pointer, `RecursivePageTable` refuses with `ParentEntryHugePage`.
//! Allocation failures are not generated here: on them `x86_64` leaves
//! half-built paths behind and we do not (see the `paging_basic` and
//! `paging_props` tests).

use framealloc::emu::{CpuConfig, Machine};
use framealloc::paging::{EntrySize, Flush, MaxPageSize, RangeError, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{
    CleanUp, FlagUpdateError, Mapper, MapperFlush, Translate,
};
use framealloc::x86_64::structures::paging::{
    OffsetPageTable, Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size1GiB, Size2MiB,
    Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use proptest::prelude::*;
use tests::{Arena, SequentialFrames};

#[path = "../../runtime/tests/paging_support/generators.rs"]
mod generators;
use generators::{LARGEST, range_len};

const RECURSIVE_INDEX: u16 = 510;
/// Level-4 indices: ranges starting at the top of one of these cross into
/// 1, 3 or 301, where no single-page operation is generated.
const P4: [u64; 3] = [0, 2, 300];
const HUGE: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

fn address(level: u8, at: [usize; 4]) -> u64 {
    generators::address(&P4, level, at)
}

const LEAF_FLAGS: [F; 4] = [
    F::PRESENT.union(F::WRITABLE),
    F::PRESENT,
    F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE),
    F::PRESENT.union(F::WRITABLE).union(F::NO_EXECUTE),
];

/// Parent flags depend on the region only (user space under level-4 index
/// 2), as in a real kernel, so `x86_64`'s habit of adding them to parents
/// even when the call then fails changes nothing.
fn parent_flags(va: u64) -> F {
    let base = F::PRESENT | F::WRITABLE;
    if (va >> 39) & 511 == 2 {
        base | F::USER_ACCESSIBLE
    } else {
        base
    }
}

/// Leaf flags. Huge pages always carry their region's parent flags:
/// `x86_64` adds the parent flags to a huge page's entry before failing a
/// map below it (granting `WRITABLE`/`USER_ACCESSIBLE` to the huge page); we
/// leave the entry alone, so huge pages without those flags would diverge
/// on purpose. (Read-only huge pages are covered by the property tests.)
fn leaf_flags(level: u8, va: u64, choice: usize) -> F {
    if level > 1 {
        LEAF_FLAGS[choice] | parent_flags(va)
    } else {
        LEAF_FLAGS[choice]
    }
}

#[derive(Debug, Clone)]
enum Op {
    Map {
        level: u8,
        at: [usize; 4],
        flags: usize,
    },
    Unmap {
        level: u8,
        at: [usize; 4],
    },
    Update {
        level: u8,
        at: [usize; 4],
        flags: usize,
    },
    TranslatePage {
        level: u8,
        at: [usize; 4],
    },
    Translate {
        at: [usize; 4],
        offset: u64,
    },
    CleanUp,
    CleanUpRange {
        from: [usize; 4],
        to: [usize; 4],
    },
    MapRange {
        level: u8,
        at: [usize; 4],
        len: u64,
        flags: usize,
    },
    MapMixed {
        at: [usize; 4],
        len: u64,
        largest: usize,
    },
    UnmapRange {
        level: u8,
        at: [usize; 4],
        len: u64,
    },
    UpdateRange {
        level: u8,
        at: [usize; 4],
        len: u64,
        flags: usize,
    },
}

/// The pages of a mixed map, page by page: the largest page (up to
/// `largest`) whose virtual and physical starts are aligned and that fits.
fn split(va: u64, len: u64, phys: u64, largest: MaxPageSize) -> Vec<(u64, u8)> {
    let end = va + len * 4096;
    let mut pos = va;
    let mut out = Vec::new();
    while pos < end {
        let pa = phys + (pos - va);
        let fits =
            |size: u64| pos.is_multiple_of(size) && pa.is_multiple_of(size) && end - pos >= size;
        let level = if largest == MaxPageSize::Size1GiB && fits(1 << 30) {
            3
        } else if largest >= MaxPageSize::Size2MiB && fits(1 << 21) {
            2
        } else {
            1
        };
        out.push((pos, level));
        pos += 4096 << (9 * (level - 1));
    }
    out
}

fn op() -> impl Strategy<Value = Op> {
    let level = 1u8..=3;
    let at = any::<[usize; 4]>();
    prop_oneof![
        5 => (level.clone(), at, 0..4usize).prop_map(|(level, at, flags)| Op::Map { level, at, flags }),
        2 => (level.clone(), at).prop_map(|(level, at)| Op::Unmap { level, at }),
        1 => (level.clone(), at, 0..4usize).prop_map(|(level, at, flags)| Op::Update { level, at, flags }),
        1 => (level, at).prop_map(|(level, at)| Op::TranslatePage { level, at }),
        1 => (at, 0..0x4000_0000u64).prop_map(|(at, offset)| Op::Translate { at, offset }),
        1 => Just(Op::CleanUp),
        1 => (at, at).prop_map(|(from, to)| Op::CleanUpRange { from, to }),
        2 => (range_len(), at, 0..4usize).prop_map(|((level, len), at, flags)| Op::MapRange { level, at, len, flags }),
        1 => (at, prop_oneof![1..4u64, 510..516u64, 1020..1030u64], 1..3usize)
            .prop_map(|(at, len, largest)| Op::MapMixed { at, len, largest }),
        1 => (range_len(), at).prop_map(|((level, len), at)| Op::UnmapRange { level, at, len }),
        1 => (range_len(), at, 0..4usize).prop_map(|((level, len), at, flags)| Op::UpdateRange { level, at, len, flags }),
    ]
}

struct Pair {
    arena: Arena,
    theirs: SequentialFrames,
    ours: RecursivePageTable<Machine>,
    our_frames: SequentialFrames,
    next_data: u64,
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

/// Every non-zero entry reachable from the level-4 table in frame 0, as
/// (table frame, index, entry); `read` returns a whole table; `skip` names a
/// level-4 index to leave out.
fn tables(read: &dyn Fn(u64) -> Vec<u64>, skip: Option<usize>) -> Vec<(u64, usize, u64)> {
    fn visit(
        read: &dyn Fn(u64) -> Vec<u64>,
        table: u64,
        level: u8,
        skip: Option<usize>,
        out: &mut Vec<(u64, usize, u64)>,
    ) {
        for (i, &e) in read(table).iter().enumerate() {
            if e == 0 || (level == 4 && Some(i) == skip) {
                continue;
            }
            out.push((table, i, e));
            if level > 1 && e & 1 == 1 && e & HUGE == 0 {
                visit(read, e & ADDR, level - 1, skip, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(read, 0, 4, skip, &mut out);
    out
}

impl Pair {
    fn new() -> Self {
        // The tables are compared byte for byte with x86_64's, which live in
        // host memory where no MMU sets accessed and dirty bits: keep the
        // emulated CPU from setting them in ours.
        let machine = Machine::with_recursive_table(PageTableIndex::new(RECURSIVE_INDEX), frame(0))
            .unwrap()
            .with_config(CpuConfig::DEFAULT.with_accessed_dirty(false));
        Pair {
            arena: Arena::new(160),
            theirs: SequentialFrames::new(0x1000),
            ours: RecursivePageTable::new(machine, PageTableIndex::new(RECURSIVE_INDEX)).unwrap(),
            our_frames: SequentialFrames::new(0x1000),
            next_data: 0x100_0000_0000,
        }
    }

    /// `x86_64`'s view of the entry for a `level` page at `va`, if every
    /// parent is a present table pointer.
    fn their_leaf(&self, level: u8, va: u64) -> Option<u64> {
        let mut table = 0;
        for l in (level..=4).rev() {
            let e = self.arena.entry(
                frame(table),
                ((va >> (3 + 9 * u64::from(l))) & 511) as usize,
            );
            if l == level {
                return Some(e);
            }
            if e & 1 == 0 || e & HUGE != 0 {
                return None;
            }
            table = e & ADDR;
        }
        None
    }

    /// `x86_64` treats a present table pointer as a huge leaf in
    /// `translate_page` and `update_flags`; we refuse it.
    fn huge_size_mismatch(&self, level: u8, va: u64) -> bool {
        level > 1
            && self
                .their_leaf(level, va)
                .is_some_and(|e| e & 1 == 1 && e & HUGE == 0)
    }

    #[allow(clippy::too_many_lines, reason = "one arm per operation, each short")]
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Map { level, at, flags } => {
                let va = address(level, at);
                let data = self.next_data;
                self.next_data += 1 << 30;
                let flags = leaf_flags(level, va, flags);
                let (a, b) = match level {
                    1 => self.map::<Size4KiB>(va, data, flags),
                    2 => self.map::<Size2MiB>(va, data, flags),
                    _ => self.map::<Size1GiB>(va, data, flags),
                };
                prop_assert_eq!(a, b, "map {:#x}", va);
            }
            Op::Unmap { level, at } => {
                let va = address(level, at);
                let (a, b) = match level {
                    1 => self.unmap::<Size4KiB>(va),
                    2 => self.unmap::<Size2MiB>(va),
                    _ => self.unmap::<Size1GiB>(va),
                };
                prop_assert_eq!(a, b, "unmap {:#x}", va);
            }
            Op::Update { level, at, flags } => {
                let va = address(level, at);
                let flags = leaf_flags(level, va, flags);
                if self.huge_size_mismatch(level, va) {
                    let ours = match level {
                        2 => self.our_update::<Size2MiB>(va, flags),
                        _ => self.our_update::<Size1GiB>(va, flags),
                    };
                    prop_assert_eq!(
                        ours,
                        format!("{:?}", Err::<(), _>(FlagUpdateError::ParentEntryHugePage))
                    );
                } else {
                    let (a, b) = match level {
                        1 => self.update::<Size4KiB>(va, flags),
                        2 => self.update::<Size2MiB>(va, flags),
                        _ => self.update::<Size1GiB>(va, flags),
                    };
                    prop_assert_eq!(a, b, "update {:#x}", va);
                }
            }
            Op::TranslatePage { level, at } => {
                let va = address(level, at);
                let (a, b) = match level {
                    1 => self.translate_page::<Size4KiB>(va),
                    2 => self.translate_page::<Size2MiB>(va),
                    _ => self.translate_page::<Size1GiB>(va),
                };
                if self.huge_size_mismatch(level, va) {
                    prop_assert!(b.starts_with("Err(ParentEntryHugePage"), "{}", b);
                } else {
                    prop_assert_eq!(a, b, "translate_page {:#x}", va);
                }
            }
            Op::Translate { at, offset } => {
                let addr = VirtAddr::new(address(3, at) + offset);
                let theirs = format!("{:?}", self.arena.mapper().translate(addr));
                let ours = format!("{:?}", Translate::translate(&self.ours, addr));
                prop_assert_eq!(theirs, ours, "translate {:?}", addr);
            }
            Op::CleanUp => {
                // SAFETY: every table frame belongs to one hierarchy only.
                unsafe {
                    self.arena.mapper().clean_up(&mut self.theirs);
                    CleanUp::clean_up(&mut self.ours, &mut self.our_frames);
                }
            }
            Op::CleanUpRange { from, to } => {
                let (a, b) = (address(1, from), address(1, to));
                let range = Page::range_inclusive(
                    Page::containing_address(VirtAddr::new(a.min(b))),
                    Page::containing_address(VirtAddr::new(a.max(b))),
                );
                // SAFETY: as above.
                unsafe {
                    self.arena
                        .mapper()
                        .clean_up_addr_range(range, &mut self.theirs);
                    CleanUp::clean_up_addr_range(&mut self.ours, range, &mut self.our_frames);
                }
            }
            Op::MapRange {
                level,
                at,
                len,
                flags,
            } => {
                let va = address(level, at);
                let data = self.next_data;
                self.next_data += 4 << 30;
                // `map_range` derives parent flags from the leaf flags (as
                // `map_to` does): keep them equal to the region's.
                let flags = (LEAF_FLAGS[flags] - F::USER_ACCESSIBLE) | parent_flags(va);
                let (a, b) = match level {
                    1 => self.map_range::<Size4KiB>(va, len, data, flags),
                    2 => self.map_range::<Size2MiB>(va, len, data, flags),
                    _ => self.map_range::<Size1GiB>(va, len, data, flags),
                };
                prop_assert_eq!(a, b, "map_range x{} at {:#x}", len, va);
            }
            Op::MapMixed { at, len, largest } => {
                let va = address(1, at);
                // Physically congruent to the virtual start modulo 1 GiB.
                let data = self.next_data + (va & ((1 << 30) - 1));
                self.next_data += 4 << 30;
                let (a, b) = self.map_mixed(va, len, data, LARGEST[largest]);
                prop_assert_eq!(a, b, "map_range_mixed x{} at {:#x}", len, va);
            }
            Op::UnmapRange { level, at, len } => {
                let va = address(level, at);
                let (a, b) = match level {
                    1 => self.unmap_range::<Size4KiB>(va, len),
                    2 => self.unmap_range::<Size2MiB>(va, len),
                    _ => self.unmap_range::<Size1GiB>(va, len),
                };
                prop_assert_eq!(a, b, "unmap_range x{} at {:#x}", len, va);
            }
            Op::UpdateRange {
                level,
                at,
                len,
                flags,
            } => {
                let va = address(level, at);
                let flags = leaf_flags(level, va, flags);
                let (a, b) = match level {
                    1 => self.update_range::<Size4KiB>(va, len, flags),
                    2 => self.update_range::<Size2MiB>(va, len, flags),
                    _ => self.update_range::<Size1GiB>(va, len, flags),
                };
                prop_assert_eq!(a, b, "update_flags_range x{} at {:#x}", len, va);
            }
        }
        self.compare_tables()
    }

    /// `x86_64`: a loop of `map_to`, stopping at the first error; ours:
    /// `map_range`. Both as (pages done, error).
    fn map_range<S: EntrySize + std::fmt::Debug>(
        &mut self,
        va: u64,
        len: u64,
        data: u64,
        flags: F,
    ) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let start = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let first = PhysFrame::<S>::from_start_address(PhysAddr::new(data)).unwrap();
        let parent = parent_flags(va);
        let mut theirs = (len, None);
        let mut mapper = self.arena.mapper();
        for i in 0..len {
            // SAFETY: host memory.
            match unsafe {
                mapper.map_to_with_table_flags(
                    start + i,
                    first + i,
                    flags,
                    parent,
                    &mut self.theirs,
                )
            } {
                Ok(flush) => flush.ignore(),
                Err(e) => {
                    theirs = (i, Some(e));
                    break;
                }
            }
        }
        // SAFETY: emulated memory.
        let ours = match unsafe {
            self.ours.map_range(
                Page::range(start, start + len),
                PhysFrame::range(first, first + len),
                flags,
                &mut self.our_frames,
            )
        } {
            Ok(flush) => {
                flush.flush();
                (len, None)
            }
            Err(RangeError::Stopped { done, error }) => (done, Some(error)),
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        };
        (format!("{theirs:?}"), format!("{ours:?}"))
    }

    /// `x86_64`: `map_to` of each page of the test's own split; ours:
    /// `map_range_mixed`. Errors compared by kind, `done` in 4 KiB pages.
    fn map_mixed(
        &mut self,
        va: u64,
        len: u64,
        data: u64,
        largest: MaxPageSize,
    ) -> (String, String) {
        let flags = F::PRESENT | F::WRITABLE;
        let parent = parent_flags(va) | flags;
        let flags = flags | parent;
        let mut theirs = (len, None);
        let mut mapper = self.arena.mapper();
        let mut done = 0;
        for (page, level) in split(va, len, data, largest) {
            let pa = PhysAddr::new(data + (page - va));
            let addr = VirtAddr::new(page);
            // SAFETY: host memory.
            let result = unsafe {
                match level {
                    3 => mapper
                        .map_to_with_table_flags(
                            Page::<Size1GiB>::containing_address(addr),
                            PhysFrame::containing_address(pa),
                            flags,
                            parent,
                            &mut self.theirs,
                        )
                        .map(MapperFlush::ignore)
                        .map_err(|e| format!("{e:?}").replace("[1GiB]", "[4KiB]")),
                    2 => mapper
                        .map_to_with_table_flags(
                            Page::<Size2MiB>::containing_address(addr),
                            PhysFrame::containing_address(pa),
                            flags,
                            parent,
                            &mut self.theirs,
                        )
                        .map(MapperFlush::ignore)
                        .map_err(|e| format!("{e:?}").replace("[2MiB]", "[4KiB]")),
                    _ => mapper
                        .map_to_with_table_flags(
                            Page::<Size4KiB>::containing_address(addr),
                            PhysFrame::containing_address(pa),
                            flags,
                            parent,
                            &mut self.theirs,
                        )
                        .map(MapperFlush::ignore)
                        .map_err(|e| format!("{e:?}")),
                }
            };
            if let Err(e) = result {
                theirs = (done, Some(e));
                break;
            }
            done += 1 << (9 * (level - 1));
        }
        let start = Page::<Size4KiB>::from_start_address(VirtAddr::new(va)).unwrap();
        let first = PhysFrame::<Size4KiB>::from_start_address(PhysAddr::new(data)).unwrap();
        // SAFETY: emulated memory.
        let ours = match unsafe {
            self.ours.map_range_mixed(
                Page::range(start, start + len),
                PhysFrame::range(first, first + len),
                flags,
                largest,
                &mut self.our_frames,
            )
        } {
            Ok(flush) => {
                flush.flush();
                (len, None)
            }
            Err(RangeError::Stopped { done, error }) => (done, Some(format!("{error:?}"))),
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        };
        (format!("{theirs:?}"), format!("{ours:?}"))
    }

    fn unmap_range<S: EntrySize>(&mut self, va: u64, len: u64) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let start = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let mut theirs = (Vec::new(), None);
        let mut mapper = self.arena.mapper();
        for i in 0..len {
            match mapper.unmap(start + i) {
                Ok((frame, flush)) => {
                    flush.ignore();
                    theirs.0.push(frame);
                }
                Err(e) => {
                    theirs.1 = Some((i, e));
                    break;
                }
            }
        }
        let mut frames = Vec::new();
        let result = self
            .ours
            .unmap_range(Page::range(start, start + len), |f| frames.push(f));
        let ours = match result {
            Ok(flush) => {
                flush.flush();
                (frames, None)
            }
            Err(RangeError::Stopped { done, error }) => (frames, Some((done, error))),
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        };
        (format!("{theirs:?}"), format!("{ours:?}"))
    }

    fn update_range<S: EntrySize>(&mut self, va: u64, len: u64, flags: F) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let start = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let mut theirs = (len, None);
        for i in 0..len {
            let page = start + i;
            if self.huge_size_mismatch(S::LEVEL as u8, page.start_address().as_u64()) {
                // The documented deviation: we refuse a table pointer.
                theirs = (i, Some(FlagUpdateError::ParentEntryHugePage));
                break;
            }
            // SAFETY: host memory.
            match unsafe { self.arena.mapper().update_flags(page, flags) } {
                Ok(flush) => flush.ignore(),
                Err(e) => {
                    theirs = (i, Some(e));
                    break;
                }
            }
        }
        // SAFETY: emulated memory.
        let ours = match unsafe {
            self.ours
                .update_flags_range(Page::range(start, start + len), flags)
        } {
            Ok(flush) => {
                flush.flush();
                (len, None)
            }
            Err(RangeError::Stopped { done, error }) => (done, Some(error)),
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        };
        (format!("{theirs:?}"), format!("{ours:?}"))
    }

    fn compare_tables(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(&self.theirs.freed, &self.our_frames.freed, "frames freed");
        let arena = &self.arena;
        let theirs = tables(
            &|t| (0..512).map(|i| arena.entry(frame(t), i)).collect(),
            None,
        );
        let memory = self.ours.backend().memory();
        let read_ours = |t: u64| {
            let mut bytes = [0u8; 4096];
            memory.read_bytes(PhysAddr::new(t), &mut bytes).unwrap();
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let ours = tables(&read_ours, Some(usize::from(RECURSIVE_INDEX)));
        prop_assert_eq!(theirs, ours, "page tables differ");
        Ok(())
    }

    fn map<S: EntrySize + std::fmt::Debug>(
        &mut self,
        va: u64,
        data: u64,
        flags: F,
    ) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let frame = PhysFrame::<S>::from_start_address(PhysAddr::new(data)).unwrap();
        let parent = parent_flags(va);
        // SAFETY: the arena and the emulator are plain memory.
        let theirs = unsafe {
            self.arena.mapper().map_to_with_table_flags(
                page,
                frame,
                flags,
                parent,
                &mut self.theirs,
            )
        }
        .map(MapperFlush::ignore);
        // SAFETY: as above.
        let ours = unsafe {
            self.ours
                .map_to_with_table_flags(page, frame, flags, parent, &mut self.our_frames)
        }
        .map(Flush::flush);
        (format!("{theirs:?}"), format!("{ours:?}"))
    }

    fn unmap<S: EntrySize>(&mut self, va: u64) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let theirs = self.arena.mapper().unmap(page).map(|(f, flush)| {
            flush.ignore();
            f
        });
        let ours = self.ours.unmap(page).map(|(f, flush)| {
            flush.flush();
            f
        });
        (format!("{theirs:?}"), format!("{ours:?}"))
    }

    fn our_update<S: EntrySize>(&mut self, va: u64, flags: F) -> String {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        // SAFETY: emulated memory.
        let result = unsafe { self.ours.update_flags(page, flags) }.map(Flush::flush);
        format!("{result:?}")
    }

    fn update<S: EntrySize>(&mut self, va: u64, flags: F) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        // SAFETY: host memory.
        let theirs =
            unsafe { self.arena.mapper().update_flags(page, flags) }.map(MapperFlush::ignore);
        (format!("{theirs:?}"), self.our_update::<S>(va, flags))
    }

    fn translate_page<S: EntrySize>(&mut self, va: u64) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let theirs = self.arena.mapper().translate_page(page);
        let ours = self.ours.translate_page(page);
        (format!("{theirs:?}"), format!("{ours:?}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.max(256), ..ProptestConfig::default() })]

    #[test]
    fn operations_agree_with_x86_64(ops in prop::collection::vec(op(), 1..40)) {
        let mut pair = Pair::new();
        for op in &ops {
            pair.step(op)?;
        }
    }
}
