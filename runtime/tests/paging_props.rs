//! Property tests: random operation sequences on pages of all three sizes,
//! checked after every step against a model, by reading memory through the
//! emulated TLB (as the CPU would, after exactly the flushes the API asked
//! for), with frame accounting.
//!
//! Two address spaces, A and B, share the kernel region (level-4 index 300,
//! one level-3 table kept alive by an anchor mapping); the other regions are
//! private to each. Operations run in the active space; `Switch` writes CR3
//! (global translations survive it, as on hardware). After every step both
//! spaces are checked through the TLB, the inactive one first, so the TLB
//! enters the next step holding the active space's translations. `GLOBAL`
//! leaves are generated in the shared region only (a global page must map
//! the same in every space), `GLOBAL` and `USER_ACCESSIBLE` in parent flags
//! everywhere (no parent entry may ever carry `GLOBAL`), and parent entries
//! lose `WRITABLE` between operations (`set_parent_flags`), under which
//! every operation must still work.

mod paging_model;
mod paging_support;

use framealloc::emu::{Access, Machine, PhysMemory};
use framealloc::paging::{EntrySize, MaxPageSize, RangeError, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{
    FlagUpdateError, MapToError, MappedFrame, TranslateError, TranslateResult, UnmapError,
};
use framealloc::x86_64::structures::paging::page_table::PageTableLevel;
use framealloc::x86_64::structures::paging::{
    FrameDeallocator, Page, PageSize, PageTableFlags as F, PageTableIndex, PhysFrame, Size1GiB,
    Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use paging_model::{Level, Mapping, Model, Outcome, page_size};
use paging_support::generators::{self, LARGEST, range_len};
use paging_support::{LEVEL_4, TableFrames, table_at};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const RECURSIVE_INDEX: u16 = 510;

/// Level-4 indices the generated addresses use, in both halves (the lower
/// levels: `generators::P3`, `P2`, `P1`).
const P4: [u64; 3] = [0, 1, 300];

/// The address of a `level` page from generated indices.
fn address(level: Level, at: [usize; 4]) -> u64 {
    generators::address(&P4, level, at)
}

/// Every 4 KiB-page address the generator can produce (for fault checks).
fn all_addresses() -> Vec<u64> {
    let mut all = Vec::new();
    for a in 0..3 {
        for b in 0..2 {
            for c in 0..3 {
                for d in 0..3 {
                    all.push(address(1, [a, b, c, d]));
                }
            }
        }
    }
    all
}

const FLAG_CHOICES: [F; 6] = [
    F::PRESENT.union(F::WRITABLE),
    F::PRESENT,
    F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE),
    F::PRESENT.union(F::WRITABLE).union(F::NO_EXECUTE),
    F::PRESENT.union(F::WRITABLE).union(F::GLOBAL),
    F::PRESENT
        .union(F::WRITABLE)
        .union(F::USER_ACCESSIBLE)
        .union(F::GLOBAL),
];

/// Parent flags for `map_to_with_table_flags`: `GLOBAL` must never reach a
/// parent entry; `USER_ACCESSIBLE` and `NO_EXECUTE` do.
const PARENT_CHOICES: [F; 5] = [
    F::PRESENT.union(F::WRITABLE),
    F::PRESENT.union(F::WRITABLE).union(F::GLOBAL),
    F::PRESENT.union(F::USER_ACCESSIBLE),
    F::PRESENT
        .union(F::WRITABLE)
        .union(F::USER_ACCESSIBLE)
        .union(F::GLOBAL),
    F::PRESENT.union(F::GLOBAL).union(F::NO_EXECUTE),
];

/// Level-4 index of the region both address spaces share.
const SHARED_P4: u64 = 300;

/// The anchor: a page of the shared region that no generated operation
/// reaches (level-3 index 1, which ranges from index 0 or 511 reach only
/// in their first few 2 MiB; level-2 index 256), so the shared level-3
/// table is never empty.
const ANCHOR: u64 = 0xffff_0000_0000_0000 | (SHARED_P4 << 39) | (1 << 30) | (256 << 21);

/// Frame of address space B's level-4 table (below the table frames).
const LEVEL_4_B: u64 = 0x2000;

fn shared(va: u64) -> bool {
    (va >> 39) & 511 == SHARED_P4
}

/// `flags` as generated for the pages `va..va + len * size`: `GLOBAL` only
/// if they all lie in the shared region.
fn leaf_flags(flags: F, va: u64, len: u64, size: u64) -> F {
    if shared(va) && shared(va + len * size - 1) {
        flags
    } else {
        flags - F::GLOBAL
    }
}

#[derive(Debug, Clone)]
enum Op {
    Map {
        level: Level,
        at: [usize; 4],
        flags: usize,
        budget: Option<usize>,
    },
    Unmap {
        level: Level,
        at: [usize; 4],
    },
    Update {
        level: Level,
        at: [usize; 4],
        flags: usize,
    },
    Translate {
        level: Level,
        at: [usize; 4],
    },
    CleanUp,
    MapRange {
        level: Level,
        at: [usize; 4],
        len: u64,
        flags: usize,
        budget: Option<usize>,
    },
    MapMixed {
        at: [usize; 4],
        shape: usize,
        largest: usize,
        budget: Option<usize>,
    },
    UnmapRange {
        level: Level,
        at: [usize; 4],
        len: u64,
    },
    UnmapRangeFree {
        level: Level,
        at: [usize; 4],
        len: u64,
        reclaim: bool,
    },
    UpdateRange {
        level: Level,
        at: [usize; 4],
        len: u64,
        flags: usize,
    },
    /// `map_to_with_table_flags` with generated parent flags.
    MapWithParents {
        level: Level,
        at: [usize; 4],
        flags: usize,
        parent: usize,
    },
    /// `set_parent_flags(level, …, PRESENT)`: the parent entry at `level`
    /// (2 to 4) on the path to a 4 KiB page loses `WRITABLE` (and
    /// `USER_ACCESSIBLE`, `NO_EXECUTE`).
    ProtectParent {
        level: u8,
        at: [usize; 4],
    },
    /// CR3 := the other address space's level-4 table.
    Switch,
}

/// Mixed-map shapes: (length in 4 KiB pages, physical misalignment).
const MIXED_SHAPES: [(u64, u64); 8] = [
    (1, 0),
    (2, 0x1000),
    (513, 0),
    (1026, 0),
    (1537, 0x20_0000),
    (262_145, 0),
    (262_144 + 513, 0),
    (3, 0x20_0000),
];

fn op() -> impl Strategy<Value = Op> {
    let level = 1u8..=3;
    let at = any::<[usize; 4]>();
    prop_oneof![
        4 => (level.clone(), at, 0..FLAG_CHOICES.len(), prop::option::weighted(0.2, 0..3usize))
            .prop_map(|(level, at, flags, budget)| Op::Map { level, at, flags, budget }),
        2 => (level.clone(), at).prop_map(|(level, at)| Op::Unmap { level, at }),
        1 => (level.clone(), at, 0..FLAG_CHOICES.len()).prop_map(|(level, at, flags)| Op::Update { level, at, flags }),
        1 => (level, at).prop_map(|(level, at)| Op::Translate { level, at }),
        1 => Just(Op::CleanUp),
        2 => (range_len(), at, 0..FLAG_CHOICES.len(), prop::option::weighted(0.2, 0..3usize))
            .prop_map(|((level, len), at, flags, budget)| Op::MapRange { level, at, len, flags, budget }),
        1 => (at, 0..MIXED_SHAPES.len(), 0..3usize, prop::option::weighted(0.2, 0..3usize))
            .prop_map(|(at, shape, largest, budget)| Op::MapMixed { at, shape, largest, budget }),
        1 => (range_len(), at).prop_map(|((level, len), at)| Op::UnmapRange { level, at, len }),
        1 => (range_len(), at, any::<bool>())
            .prop_map(|((level, len), at, reclaim)| Op::UnmapRangeFree { level, at, len, reclaim }),
        1 => (range_len(), at, 0..FLAG_CHOICES.len())
            .prop_map(|((level, len), at, flags)| Op::UpdateRange { level, at, len, flags }),
        2 => (1u8..=3, at, 0..FLAG_CHOICES.len(), 0..PARENT_CHOICES.len())
            .prop_map(|(level, at, flags, parent)| Op::MapWithParents { level, at, flags, parent }),
        2 => (2u8..=4, at).prop_map(|(level, at)| Op::ProtectParent { level, at }),
        1 => Just(Op::Switch),
    ]
}

const LOW_48: u64 = (1 << 48) - 1;

/// The flush decision for `pages` changed entries: one `invlpg` each up to
/// the threshold or whenever an old or new value of one of them had
/// `GLOBAL` (a CR3 reload keeps global translations), one full flush above.
fn decision(pages: u64, global: bool) -> (u64, u64) {
    if pages > framealloc::paging::FLUSH_ALL_THRESHOLD && !global {
        (0, 1)
    } else {
        (pages, 0)
    }
}

fn page<S: PageSize>(va: u64) -> Page<S> {
    Page::from_start_address(VirtAddr::new(va)).unwrap()
}

fn map_outcome<S: PageSize>(error: &MapToError<S>) -> Outcome {
    match error {
        MapToError::PageAlreadyMapped(_) => Outcome::AlreadyMapped,
        MapToError::ParentEntryHugePage => Outcome::Huge,
        MapToError::FrameAllocationFailed => Outcome::NoFrame,
    }
}

fn unmap_outcome(error: &UnmapError) -> Outcome {
    match error {
        UnmapError::PageNotMapped => Outcome::NotMapped,
        UnmapError::ParentEntryHugePage => Outcome::Huge,
        UnmapError::InvalidFrameAddress(_) => panic!("unexpected {error:?}"),
    }
}

/// The test's own split of a mixed range, page by page: the largest page
/// (up to `largest`) whose virtual and physical starts are aligned and that
/// fits in what is left.
fn split(va: u64, len: u64, phys: u64, largest: MaxPageSize) -> Vec<(u64, Level)> {
    let end = va + len * 4096;
    let mut pos = va;
    let mut out = Vec::new();
    while pos < end {
        let pa = phys + (pos - va);
        let fits = |level: Level| {
            let size = page_size(level);
            pos.is_multiple_of(size) && pa.is_multiple_of(size) && end - pos >= size
        };
        let level = if largest == MaxPageSize::Size1GiB && fits(3) {
            3
        } else if largest >= MaxPageSize::Size2MiB && fits(2) {
            2
        } else {
            1
        };
        out.push((pos, level));
        pos += page_size(level);
    }
    out
}

/// Frees data frames (recorded) and table frames (to `TableFrames`), told
/// apart by address.
struct DataAndTables {
    tables: TableFrames,
    data: Vec<u64>,
}

impl<S: PageSize> FrameDeallocator<S> for DataAndTables {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        let addr = frame.start_address().as_u64();
        if addr >= 0x100_0000_0000 {
            self.data.push(addr);
        } else {
            let frame = PhysFrame::<Size4KiB>::containing_address(frame.start_address());
            // SAFETY: forwarded contract.
            unsafe { self.tables.deallocate_frame(frame) };
        }
    }
}

/// Runs the sequence; the harness state.
struct Harness {
    table: RecursivePageTable<Machine>,
    frames: TableFrames,
    /// The private regions of address spaces A (0) and B (1).
    spaces: [Model; 2],
    /// The region both share (level-4 index [`SHARED_P4`]).
    kernel: Model,
    /// Spare page-table frames the table holds (whatever the space).
    spare: usize,
    /// The active space.
    active: usize,
    level_4: [PhysFrame; 2],
    next_data: [u64; 3],
    next_mixed: u64,
    next_token: u64,
}

impl Harness {
    fn new() -> Self {
        let mut harness = Harness {
            table: table_at(RECURSIVE_INDEX),
            frames: TableFrames::new(),
            spaces: [Model::default(), Model::default()],
            kernel: Model::default(),
            spare: 0,
            active: 0,
            level_4: [
                PhysFrame::containing_address(PhysAddr::new(LEVEL_4)),
                PhysFrame::containing_address(PhysAddr::new(LEVEL_4_B)),
            ],
            // Separate, aligned regions for 4 KiB, 2 MiB and 1 GiB data frames.
            next_data: [0x100_0000_0000, 0x200_0000_0000, 0x1000_0000_0000],
            next_mixed: 0x4000_0000_0000,
            next_token: 1,
        };
        // The anchor in A creates the shared level-3 table; B gets a
        // recursive entry and a copy of A's level-4 entry for the region.
        let (frame, tokens) = harness.data_frame(1);
        let mut unlimited = usize::MAX / 2;
        let mapping = Mapping {
            level: 1,
            frame,
            flags: F::PRESENT.union(F::WRITABLE).bits(),
            tokens,
        };
        assert_eq!(
            harness.with_model(ANCHOR, |m| m.map(1, ANCHOR, mapping, &mut unlimited)),
            Outcome::Ok
        );
        let anchor = harness.map::<Size4KiB>(ANCHOR, frame, F::PRESENT | F::WRITABLE);
        assert_eq!(anchor, Outcome::Ok);
        let [a, b] = harness.level_4;
        let memory = harness.table.backend_mut().memory_mut();
        let shared_entry = memory.read_entry(a, PageTableIndex::new(SHARED_P4 as u16));
        memory.write_entry(b, PageTableIndex::new(SHARED_P4 as u16), shared_entry);
        memory.write_entry(
            b,
            PageTableIndex::new(RECURSIVE_INDEX),
            b.start_address().as_u64() | (F::PRESENT | F::WRITABLE).bits(),
        );
        harness
    }

    /// Runs `f` on the model of the region `va` lies in (the shared one or
    /// the active space's), with the table's spare frames.
    fn with_model<R>(&mut self, va: u64, f: impl FnOnce(&mut Model) -> R) -> R {
        let model = if shared(va) {
            &mut self.kernel
        } else {
            &mut self.spaces[self.active]
        };
        model.spare = self.spare;
        let result = f(model);
        self.spare = model.spare;
        result
    }

    /// The mappings visible in the active space.
    fn visible(&self) -> impl Iterator<Item = (&u64, &Mapping)> {
        self.spaces[self.active]
            .mappings
            .iter()
            .chain(&self.kernel.mappings)
    }

    /// The mapping covering `va` in the active space.
    fn covering(&self, va: u64) -> Option<(u64, &Mapping)> {
        if shared(va) {
            self.kernel.covering(va)
        } else {
            self.spaces[self.active].covering(va)
        }
    }

    /// Page tables of every model.
    fn table_count(&self) -> u64 {
        (self.spaces[0].tables.len() + self.spaces[1].tables.len() + self.kernel.tables.len())
            as u64
    }

    /// Predicts `clean_up` (`None`) or `clean_up_addr_range` over `lo..=hi`
    /// in the active space: both of its models, spares handed back.
    fn model_clean_up(&mut self, range: Option<(u64, u64)>) -> usize {
        let active = self.active;
        let mut freed = 0;
        for model in [&mut self.spaces[active], &mut self.kernel] {
            freed += match range {
                None => model.clean_up(),
                Some((lo, hi)) => model.clean_up_range(lo, hi),
            };
        }
        self.spare = 0;
        freed
    }

    /// A fresh data frame for a `level` page, with two fresh tokens written
    /// into it (first and last 8 bytes) by physical address.
    fn data_frame(&mut self, level: Level) -> (u64, (u64, u64)) {
        let slot = &mut self.next_data[usize::from(level - 1)];
        let frame = *slot;
        *slot += page_size(level);
        let tokens = (self.next_token, self.next_token + 1);
        self.next_token += 2;
        let memory = self.table.backend_mut().memory_mut();
        memory.write_u64(PhysAddr::new(frame), tokens.0).unwrap();
        memory
            .write_u64(PhysAddr::new(frame + page_size(level) - 8), tokens.1)
            .unwrap();
        (frame, tokens)
    }

    #[allow(clippy::too_many_lines, reason = "one arm per operation, each short")]
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let flushes_before = self.flushes();
        // Pages whose entry had `GLOBAL` before the operation.
        let global_before: BTreeSet<u64> = self
            .visible()
            .filter(|(_, m)| m.flags & F::GLOBAL.bits() != 0)
            .map(|(&va, _)| va)
            .collect();
        let any_global = |va: u64, level: u8, done: u64| {
            (0..done).any(|i| global_before.contains(&(va + i * page_size(level))))
        };
        let tables_before = self.table_count();
        let parents_before = self.parent_entries();
        // (invlpg, full flushes) the operation must have performed: exactly
        // the ones it needs, none missing (the reads catch those) and none
        // needless.
        let mut expect: Option<(u64, u64)> = None;
        match *op {
            Op::Map {
                level,
                at,
                flags,
                budget,
            } => {
                let va = address(level, at);
                let (frame, tokens) = self.data_frame(level);
                let flags = leaf_flags(FLAG_CHOICES[flags], va, 1, page_size(level));
                self.frames.budget = budget;
                let mut available = budget.unwrap_or(usize::MAX / 2);
                let mapping = Mapping {
                    level,
                    frame,
                    flags: flags.bits(),
                    tokens,
                };
                let expected = self.with_model(va, |m| m.map(level, va, mapping, &mut available));
                let before = self.snapshot_if_failing(expected);
                let got = match level {
                    1 => self.map::<Size4KiB>(va, frame, flags),
                    2 => self.map::<Size2MiB>(va, frame, flags),
                    _ => self.map::<Size1GiB>(va, frame, flags),
                };
                self.unchanged(before.as_ref())?;
                self.frames.budget = None;
                prop_assert_eq!(got, expected, "map {} at {:#x}", page_size(level), va);
                let created = self.table_count() - tables_before;
                let (up_invlpg, up_full) = self.upgrades(&parents_before);
                expect = Some(if got == Outcome::Ok {
                    (created + 1 + up_invlpg, up_full)
                } else {
                    (0, 0)
                });
            }
            Op::Unmap { level, at } => {
                let va = address(level, at);
                let expected = self.with_model(va, |m| m.unmap_or_update(level, va, None));
                let before = self.snapshot_if_failing(expected);
                let got = match level {
                    1 => self.unmap::<Size4KiB>(va),
                    2 => self.unmap::<Size2MiB>(va),
                    _ => self.unmap::<Size1GiB>(va),
                };
                self.unchanged(before.as_ref())?;
                prop_assert_eq!(got, expected, "unmap {} at {:#x}", page_size(level), va);
                // Parent entries that lacked `WRITABLE` got it back, each
                // with a full flush.
                let (_, up_full) = self.upgrades(&parents_before);
                expect = Some(if let Outcome::OkFrame(_) = got {
                    (1, up_full)
                } else {
                    (0, 0)
                });
            }
            Op::Update { level, at, flags } => {
                let va = address(level, at);
                let flags = leaf_flags(FLAG_CHOICES[flags], va, 1, page_size(level));
                let expected =
                    self.with_model(va, |m| m.unmap_or_update(level, va, Some(flags.bits())));
                let before = self.snapshot_if_failing(expected);
                let got = match level {
                    1 => self.update::<Size4KiB>(va, flags),
                    2 => self.update::<Size2MiB>(va, flags),
                    _ => self.update::<Size1GiB>(va, flags),
                };
                self.unchanged(before.as_ref())?;
                prop_assert_eq!(got, expected, "update {} at {:#x}", page_size(level), va);
                let (_, up_full) = self.upgrades(&parents_before);
                expect = Some(if let Outcome::OkFrame(_) = got {
                    (1, up_full)
                } else {
                    (0, 0)
                });
            }
            Op::Translate { level, at } => {
                let va = address(level, at);
                let expected = self.with_model(va, |m| m.translate_page(level, va));
                let got = match level {
                    1 => self.translate_page::<Size4KiB>(va),
                    2 => self.translate_page::<Size2MiB>(va),
                    _ => self.translate_page::<Size1GiB>(va),
                };
                prop_assert_eq!(got, expected, "translate {} at {:#x}", page_size(level), va);
                expect = Some((0, 0));
            }
            Op::CleanUp => {
                let expected = self.model_clean_up(None);
                // SAFETY: every table frame belongs to this hierarchy only
                // (the shared level-3 table is never empty: the anchor).
                let freed = unsafe { self.table.clean_up(&mut self.frames) };
                prop_assert_eq!(freed, expected, "tables freed by clean_up");
                // One invlpg per freed table; a full flush per parent entry
                // given `WRITABLE` back, which may have been freed since.
                let (lower, upper) = self.upgrade_bounds(&parents_before);
                let (invlpg, full) = self.flushes();
                prop_assert_eq!(invlpg - flushes_before.0, freed as u64);
                let full = full - flushes_before.1;
                prop_assert!(
                    (lower..=upper).contains(&full),
                    "clean_up: {} full flushes, expected {}..={}",
                    full,
                    lower,
                    upper
                );
            }
            Op::MapRange {
                level,
                at,
                len,
                flags,
                budget,
            } => {
                let va = address(level, at);
                let size = page_size(level);
                let flags = leaf_flags(FLAG_CHOICES[flags], va, len, size);
                let first = self.next_data[usize::from(level - 1)];
                self.next_data[usize::from(level - 1)] += len * size;
                self.frames.budget = budget;
                let mut available = budget.unwrap_or(usize::MAX / 2);
                let mut expected = (len, Outcome::Ok);
                for i in 0..len {
                    let tokens = self.write_tokens(first + i * size, size);
                    let mapping = Mapping {
                        level,
                        frame: first + i * size,
                        flags: flags.bits(),
                        tokens,
                    };
                    let at = va + i * size;
                    let outcome =
                        self.with_model(at, |m| m.map(level, at, mapping, &mut available));
                    if outcome != Outcome::Ok {
                        expected = (i, outcome);
                        break;
                    }
                }
                let got = match level {
                    1 => self.map_range::<Size4KiB>(va, len, first, flags),
                    2 => self.map_range::<Size2MiB>(va, len, first, flags),
                    _ => self.map_range::<Size1GiB>(va, len, first, flags),
                };
                self.frames.budget = None;
                prop_assert_eq!(got, expected, "map_range {} x{} at {:#x}", size, len, va);
                let created = self.table_count() - tables_before;
                // Fresh entries need no invalidation; each table created
                // one invlpg, each parent entry that gained bits its own.
                let (up_invlpg, up_full) = self.upgrades(&parents_before);
                expect = Some((created + up_invlpg, up_full));
            }
            Op::MapMixed {
                at,
                shape,
                largest,
                budget,
            } => {
                let (len, shift) = MIXED_SHAPES[shape];
                // Start at level-1 index 0 or 511 (both directly before or on
                // a 2 MiB boundary); 1 GiB-long shapes start on or one page
                // before a 1 GiB boundary, so every shape makes few pages.
                let mut at = at;
                let before = at[3] % 2 == 1;
                at[3] = if before { 2 } else { 0 };
                if len >= 1 << 18 {
                    at[2] = if before { 2 } else { 0 };
                }
                let va = address(1, at);
                let base = self.next_mixed;
                self.next_mixed += 4 << 30;
                let phys = base + (va & ((1 << 30) - 1)) + shift;
                // Long shapes only with pages large enough to keep the
                // number of mappings (each checked after every step) small.
                let needed = if len >= 1 << 18 {
                    2
                } else {
                    usize::from(len >= 512)
                };
                let largest = LARGEST[largest.max(needed)];
                self.frames.budget = budget;
                let mut available = budget.unwrap_or(usize::MAX / 2);
                let mut expected = (len, Outcome::Ok);
                let mut done = 0;
                for (page, level) in split(va, len, phys, largest) {
                    let size = page_size(level);
                    let frame = phys + (page - va);
                    let tokens = self.write_tokens(frame, size);
                    let mapping = Mapping {
                        level,
                        frame,
                        flags: F::PRESENT.union(F::WRITABLE).bits(),
                        tokens,
                    };
                    let outcome =
                        self.with_model(page, |m| m.map(level, page, mapping, &mut available));
                    if outcome != Outcome::Ok {
                        expected = (done, outcome);
                        break;
                    }
                    done += size / 4096;
                }
                let pages = Page::range(page::<Size4KiB>(va), page::<Size4KiB>(va) + len);
                let first = PhysFrame::containing_address(PhysAddr::new(phys));
                // SAFETY: emulated memory.
                let result = unsafe {
                    self.table.map_range_mixed(
                        pages,
                        PhysFrame::range(first, first + len),
                        F::PRESENT | F::WRITABLE,
                        largest,
                        &mut self.frames,
                    )
                };
                self.frames.budget = None;
                let got = match result {
                    Ok(flush) => {
                        flush.flush();
                        (len, Outcome::Ok)
                    }
                    Err(RangeError::Stopped { done, error }) => (done, map_outcome(&error)),
                    Err(RangeError::CrossesCanonicalHole { start, end }) => {
                        panic!("range {start:?}..{end:?} crosses the hole")
                    }
                };
                prop_assert_eq!(
                    got,
                    expected,
                    "map_range_mixed x{} at {:#x} -> {:#x}",
                    len,
                    va,
                    phys
                );
                let created = self.table_count() - tables_before;
                let (up_invlpg, up_full) = self.upgrades(&parents_before);
                expect = Some((created + up_invlpg, up_full));
            }
            Op::UnmapRange { level, at, len } => {
                let va = address(level, at);
                let (expected, frames) = self.model_unmap_range(level, va, len, None);
                let got = match level {
                    1 => self.unmap_range::<Size4KiB>(va, len),
                    2 => self.unmap_range::<Size2MiB>(va, len),
                    _ => self.unmap_range::<Size1GiB>(va, len),
                };
                prop_assert_eq!(
                    &got,
                    &(expected, frames),
                    "unmap_range x{} at {:#x}",
                    len,
                    va
                );
                let (pages, full) = decision(got.0.0, any_global(va, level, got.0.0));
                let (_, up_full) = self.upgrades(&parents_before);
                expect = Some((pages, full + up_full));
            }
            Op::UnmapRangeFree {
                level,
                at,
                len,
                reclaim,
            } => {
                let va = address(level, at);
                let (expected, frames) = self.model_unmap_range(level, va, len, None);
                let mut expected_freed = 0;
                if reclaim && expected.0 > 0 {
                    let lo = va & LOW_48;
                    expected_freed =
                        self.model_clean_up(Some((lo, lo + expected.0 * page_size(level) - 1)));
                }
                let expected_freed = (expected.1 == Outcome::Ok).then_some(expected_freed);
                let got = match level {
                    1 => self.unmap_range_free::<Size4KiB>(va, len, reclaim),
                    2 => self.unmap_range_free::<Size2MiB>(va, len, reclaim),
                    _ => self.unmap_range_free::<Size1GiB>(va, len, reclaim),
                };
                prop_assert_eq!(
                    got,
                    (expected, frames, expected_freed),
                    "unmap_range_and_free x{} at {:#x}",
                    len,
                    va
                );
            }
            Op::UpdateRange {
                level,
                at,
                len,
                flags,
            } => {
                let va = address(level, at);
                let flags = leaf_flags(FLAG_CHOICES[flags], va, len, page_size(level));
                let (expected, frames) = self.model_unmap_range(level, va, len, Some(flags.bits()));
                let _ = frames;
                let got = match level {
                    1 => self.update_range::<Size4KiB>(va, len, flags),
                    2 => self.update_range::<Size2MiB>(va, len, flags),
                    _ => self.update_range::<Size1GiB>(va, len, flags),
                };
                prop_assert_eq!(got, expected, "update_flags_range x{} at {:#x}", len, va);
                let global = flags.contains(F::GLOBAL) || any_global(va, level, got.0);
                let (pages, full) = decision(got.0, global);
                let (_, up_full) = self.upgrades(&parents_before);
                expect = Some((pages, full + up_full));
            }
            Op::MapWithParents {
                level,
                at,
                flags,
                parent,
            } => {
                let va = address(level, at);
                let (frame, tokens) = self.data_frame(level);
                let flags = leaf_flags(FLAG_CHOICES[flags], va, 1, page_size(level));
                let parent = PARENT_CHOICES[parent];
                let mut unlimited = usize::MAX / 2;
                let mapping = Mapping {
                    level,
                    frame,
                    flags: flags.bits(),
                    tokens,
                };
                let expected = self.with_model(va, |m| m.map(level, va, mapping, &mut unlimited));
                let got = match level {
                    1 => self.map_with_parents::<Size4KiB>(va, frame, flags, parent),
                    2 => self.map_with_parents::<Size2MiB>(va, frame, flags, parent),
                    _ => self.map_with_parents::<Size1GiB>(va, frame, flags, parent),
                };
                prop_assert_eq!(
                    got,
                    expected,
                    "map_to_with_table_flags {} at {:#x}",
                    page_size(level),
                    va
                );
                let created = self.table_count() - tables_before;
                let (up_invlpg, up_full) = self.upgrades(&parents_before);
                expect = Some(if got == Outcome::Ok {
                    (created + 1 + up_invlpg, up_full)
                } else {
                    (0, 0)
                });
            }
            Op::ProtectParent { level, at } => {
                let va = address(1, at);
                // Each space has its own level-4 entry for the shared region:
                // protecting one would give the global pages below different
                // rights in A and B, which no kernel may do (the TLB keeps
                // one global translation for both). Protect the shared
                // level-3 entry instead.
                let level = if shared(va) { level.min(3) } else { level };
                let expected = if shared(va) {
                    self.kernel.protect_parent(level, va)
                } else {
                    self.spaces[self.active].protect_parent(level, va)
                };
                let before = self.snapshot_if_failing(expected);
                let table_level = match level {
                    2 => PageTableLevel::Two,
                    3 => PageTableLevel::Three,
                    _ => PageTableLevel::Four,
                };
                // SAFETY: removes rights only; the harness reads as supervisor.
                let got = match unsafe {
                    self.table
                        .set_parent_flags(table_level, VirtAddr::new(va), F::PRESENT)
                } {
                    Ok(()) => Outcome::Ok,
                    Err(FlagUpdateError::PageNotMapped) => Outcome::NotMapped,
                    Err(FlagUpdateError::ParentEntryHugePage) => Outcome::Huge,
                };
                self.unchanged(before.as_ref())?;
                prop_assert_eq!(
                    got,
                    expected,
                    "set_parent_flags level {} at {:#x}",
                    level,
                    va
                );
                // One full flush (global entries included), and one per
                // entry above given `WRITABLE` back.
                let (_, up_full) = self.upgrades(&parents_before);
                expect = Some(if got == Outcome::Ok {
                    (0, 1 + up_full)
                } else {
                    (0, 0)
                });
            }
            Op::Switch => {
                self.active = 1 - self.active;
                let level_4 = self.level_4[self.active];
                self.table.backend_mut().set_cr3(level_4);
                expect = Some((0, 1));
            }
        }
        if let Some(expected) = expect {
            let (invlpg, full) = self.flushes();
            prop_assert_eq!(
                (invlpg - flushes_before.0, full - flushes_before.1),
                expected,
                "TLB invalidations of {:?}",
                op
            );
        }
        self.check()
    }

    /// Every parent entry (levels 4 to 2) of the hierarchy, read from
    /// physical memory: (level, physical address of the entry) → value.
    fn parent_entries(&self) -> BTreeMap<(u8, u64), u64> {
        let memory = self.table.backend().memory();
        let mut out = BTreeMap::new();
        let mut stack = vec![(4u8, self.table.backend().cr3())];
        while let Some((level, table)) = stack.pop() {
            for i in 0..512u16 {
                if level == 4 && i == RECURSIVE_INDEX {
                    continue;
                }
                let entry = memory.read_entry(table, PageTableIndex::new(i));
                if entry & F::PRESENT.bits() == 0 || entry & F::HUGE_PAGE.bits() != 0 {
                    continue;
                }
                out.insert(
                    (level, table.start_address().as_u64() + 8 * u64::from(i)),
                    entry,
                );
                if level > 2 {
                    let child =
                        PhysFrame::containing_address(PhysAddr::new(entry & 0x000f_ffff_ffff_f000));
                    stack.push((level - 1, child));
                }
            }
        }
        out
    }

    /// The invalidations owed for parent entries that existed in `before`
    /// and gained bits since: one full flush each, at every level (every
    /// table and data page below it, global ones included, may be cached
    /// through it with the old, fewer rights). That flush is
    /// `Backend::flush_global`, which the emulator counts as a full flush.
    /// For `clean_up`, which may free a table right after giving its
    /// parent entry `WRITABLE` back: (entries that gained bits and remain,
    /// that plus entries without `WRITABLE` before that are gone now).
    fn upgrade_bounds(&self, before: &BTreeMap<(u8, u64), u64>) -> (u64, u64) {
        let after = self.parent_entries();
        let lower = self.upgrades(before).1;
        let gone = before
            .iter()
            .filter(|(key, old)| *old & F::WRITABLE.bits() == 0 && !after.contains_key(key))
            .count() as u64;
        (lower, lower + gone)
    }

    fn upgrades(&self, before: &BTreeMap<(u8, u64), u64>) -> (u64, u64) {
        let after = self.parent_entries();
        let mut counts = (0, 0);
        for (key, old) in before {
            if let Some(new) = after.get(key)
                // Accessed and dirty bits are the MMU's, not rights.
                && new & !old & !(F::ACCESSED | F::DIRTY).bits() != 0
            {
                counts.1 += 1;
            }
        }
        counts
    }

    /// (invlpg, full flushes) so far.
    fn flushes(&self) -> (u64, u64) {
        let counters = self.table.backend().counters();
        (counters.invlpg, counters.full_flushes)
    }

    /// Physical memory before an operation the model says fails.
    fn snapshot_if_failing(&self, expected: Outcome) -> Option<PhysMemory> {
        (!matches!(expected, Outcome::Ok | Outcome::OkFrame(_)))
            .then(|| self.table.backend().memory().clone())
    }

    /// A failed operation left every byte of physical memory as it was.
    fn unchanged(&self, before: Option<&PhysMemory>) -> Result<(), TestCaseError> {
        if let Some(before) = before {
            let memory = self.table.backend().memory();
            prop_assert!(
                memory == before,
                "failed operation changed frames {:?}",
                memory.differing_frames(before)
            );
        }
        Ok(())
    }

    /// Writes two fresh tokens into the frame (first and last word).
    fn write_tokens(&mut self, frame: u64, size: u64) -> (u64, u64) {
        let tokens = (self.next_token, self.next_token + 1);
        self.next_token += 2;
        let memory = self.table.backend_mut().memory_mut();
        memory.write_u64(PhysAddr::new(frame), tokens.0).unwrap();
        memory
            .write_u64(PhysAddr::new(frame + size - 8), tokens.1)
            .unwrap();
        tokens
    }

    /// The model's loop of single-page unmaps (or updates): pages done and
    /// the stopping outcome, and the frames unmapped.
    fn model_unmap_range(
        &mut self,
        level: Level,
        va: u64,
        len: u64,
        update: Option<u64>,
    ) -> ((u64, Outcome), Vec<u64>) {
        let mut frames = Vec::new();
        for i in 0..len {
            let at = va + i * page_size(level);
            match self.with_model(at, |m| m.unmap_or_update(level, at, update)) {
                Outcome::OkFrame(frame) => frames.push(frame),
                outcome => return ((i, outcome), frames),
            }
        }
        ((len, Outcome::Ok), frames)
    }

    fn map_range<S: EntrySize>(
        &mut self,
        va: u64,
        len: u64,
        first: u64,
        flags: F,
    ) -> (u64, Outcome) {
        let start = page::<S>(va);
        let first = PhysFrame::<S>::from_start_address(PhysAddr::new(first)).unwrap();
        // SAFETY: emulated memory.
        let result = unsafe {
            self.table.map_range(
                Page::range(start, start + len),
                PhysFrame::range(first, first + len),
                flags,
                &mut self.frames,
            )
        };
        match result {
            Ok(flush) => {
                flush.flush();
                (len, Outcome::Ok)
            }
            Err(RangeError::Stopped { done, error }) => {
                if let MapToError::PageAlreadyMapped(f) = error {
                    assert_eq!(f, first + done, "the error names the frame asked for");
                }
                (done, map_outcome(&error))
            }
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        }
    }

    fn unmap_range<S: EntrySize>(&mut self, va: u64, len: u64) -> ((u64, Outcome), Vec<u64>) {
        let start = page::<S>(va);
        let mut frames = Vec::new();
        let result = self
            .table
            .unmap_range(Page::range(start, start + len), |f| {
                frames.push(f.start_address().as_u64());
            });
        let outcome = match result {
            Ok(flush) => {
                flush.flush();
                (len, Outcome::Ok)
            }
            Err(RangeError::Stopped { done, error }) => (done, unmap_outcome(&error)),
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        };
        (outcome, frames)
    }

    /// Returns what happened, the data frames freed and (on success) the
    /// number of tables freed; on error frame accounting checks the tables.
    fn unmap_range_free<S: EntrySize>(
        &mut self,
        va: u64,
        len: u64,
        reclaim: bool,
    ) -> ((u64, Outcome), Vec<u64>, Option<usize>) {
        let start = page::<S>(va);
        let mut sink = DataAndTables {
            tables: std::mem::take(&mut self.frames),
            data: Vec::new(),
        };
        // SAFETY: data frames are owned by their single mapping; table frames
        // belong to this hierarchy only.
        let result = unsafe {
            self.table
                .unmap_range_and_free(Page::range(start, start + len), &mut sink, reclaim)
        };
        self.frames = sink.tables;
        match result {
            Ok(freed) => ((len, Outcome::Ok), sink.data, Some(freed)),
            Err(RangeError::Stopped { done, error }) => {
                ((done, unmap_outcome(&error)), sink.data, None)
            }
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        }
    }

    fn update_range<S: EntrySize>(&mut self, va: u64, len: u64, flags: F) -> (u64, Outcome) {
        let start = page::<S>(va);
        // SAFETY: emulated memory.
        match unsafe {
            self.table
                .update_flags_range(Page::range(start, start + len), flags)
        } {
            Ok(flush) => {
                flush.flush();
                (len, Outcome::Ok)
            }
            Err(RangeError::Stopped {
                done,
                error: FlagUpdateError::PageNotMapped,
            }) => (done, Outcome::NotMapped),
            Err(RangeError::Stopped {
                done,
                error: FlagUpdateError::ParentEntryHugePage,
            }) => (done, Outcome::Huge),
            Err(RangeError::CrossesCanonicalHole { start, end }) => {
                panic!("range {start:?}..{end:?} crosses the hole")
            }
        }
    }

    fn map<S: EntrySize>(&mut self, va: u64, frame: u64, flags: F) -> Outcome {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let frame = PhysFrame::<S>::from_start_address(PhysAddr::new(frame)).unwrap();
        // SAFETY: emulated memory.
        match unsafe { self.table.map_to(page, frame, flags, &mut self.frames) } {
            Ok(flush) => {
                flush.flush();
                Outcome::Ok
            }
            Err(MapToError::PageAlreadyMapped(f)) => {
                assert_eq!(f, frame, "the error names the frame asked for");
                Outcome::AlreadyMapped
            }
            Err(MapToError::ParentEntryHugePage) => Outcome::Huge,
            Err(MapToError::FrameAllocationFailed) => Outcome::NoFrame,
        }
    }

    fn unmap<S: EntrySize>(&mut self, va: u64) -> Outcome {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        match self.table.unmap(page) {
            Ok((frame, flush)) => {
                flush.flush();
                Outcome::OkFrame(frame.start_address().as_u64())
            }
            Err(UnmapError::PageNotMapped) => Outcome::NotMapped,
            Err(UnmapError::ParentEntryHugePage) => Outcome::Huge,
            Err(e @ UnmapError::InvalidFrameAddress(_)) => panic!("unexpected {e:?}"),
        }
    }

    fn update<S: EntrySize>(&mut self, va: u64, flags: F) -> Outcome {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let frame = self.table.translate_page(page).ok();
        // SAFETY: emulated memory.
        match unsafe { self.table.update_flags(page, flags) } {
            Ok(flush) => {
                flush.flush();
                Outcome::OkFrame(frame.unwrap().start_address().as_u64())
            }
            Err(FlagUpdateError::PageNotMapped) => Outcome::NotMapped,
            Err(FlagUpdateError::ParentEntryHugePage) => Outcome::Huge,
        }
    }

    fn translate_page<S: EntrySize>(&self, va: u64) -> Outcome {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        match self.table.translate_page(page) {
            Ok(frame) => Outcome::OkFrame(frame.start_address().as_u64()),
            Err(TranslateError::PageNotMapped) => Outcome::NotMapped,
            Err(TranslateError::ParentEntryHugePage) => Outcome::Huge,
            Err(e @ TranslateError::InvalidFrameAddress(_)) => panic!("unexpected {e:?}"),
        }
    }

    /// Checks both address spaces through the TLB: the inactive one first
    /// (CR3 switched there and back, which keeps global translations), then
    /// the active one, whose translations the TLB keeps into the next step.
    fn check(&mut self) -> Result<(), TestCaseError> {
        self.switch();
        let inactive = self.check_space();
        self.switch();
        inactive?;
        self.check_space()?;
        prop_assert_eq!(self.table.spare_frames(), self.spare, "spare frames");
        prop_assert_eq!(
            self.frames.out.len() as u64,
            self.table_count() + self.spare as u64,
            "page-table frames handed out = tables + spares"
        );
        Ok(())
    }

    /// CR3 := the other space's level-4 table.
    fn switch(&mut self) {
        self.active = 1 - self.active;
        let level_4 = self.level_4[self.active];
        self.table.backend_mut().set_cr3(level_4);
    }

    /// In the active space: every mapping reads its tokens through the TLB;
    /// every other generated address faults; `translate` agrees; no parent
    /// entry carries `GLOBAL`.
    fn check_space(&mut self) -> Result<(), TestCaseError> {
        let space = if self.active == 0 { "A" } else { "B" };
        // Writes through the TLB succeed exactly where a fresh walk allows
        // them (a stale translation would keep rights the tables no longer
        // grant, or lack ones they do); each writes back the token it finds.
        let tokens: Vec<(u64, u64)> = self.visible().map(|(&va, m)| (va, m.tokens.0)).collect();
        for (va, token) in tokens {
            let machine = self.table.backend_mut();
            let fresh = machine
                .walk(VirtAddr::new(va), Access::KERNEL_WRITE)
                .is_ok();
            let through_tlb = machine.write_u64(VirtAddr::new(va), token).is_ok();
            prop_assert_eq!(through_tlb, fresh, "{}: write to {:#x}", space, va);
        }
        let machine = self.table.backend();
        for (&va, m) in self.visible() {
            let last = va + page_size(m.level) - 8;
            prop_assert_eq!(
                machine.read_u64(VirtAddr::new(va)).ok(),
                Some(m.tokens.0),
                "{}: first word of {:#x}",
                space,
                va
            );
            prop_assert_eq!(
                machine.read_u64(VirtAddr::new(last)).ok(),
                Some(m.tokens.1),
                "{}: last word of {:#x}",
                space,
                va
            );
        }
        for va in all_addresses() {
            let addr = VirtAddr::new(va + 0x18);
            match (self.covering(va), self.table.translate(addr)) {
                (None, TranslateResult::NotMapped) => {
                    prop_assert!(
                        machine.read_u64(addr).is_err(),
                        "{}: {:#x} must fault",
                        space,
                        va
                    );
                }
                (
                    Some((start, m)),
                    TranslateResult::Mapped {
                        frame,
                        offset,
                        flags,
                    },
                ) => {
                    let size = match frame {
                        MappedFrame::Size4KiB(_) => Size4KiB::SIZE,
                        MappedFrame::Size2MiB(_) => Size2MiB::SIZE,
                        MappedFrame::Size1GiB(_) => Size1GiB::SIZE,
                    };
                    prop_assert_eq!(size, page_size(m.level));
                    prop_assert_eq!(frame.start_address().as_u64(), m.frame);
                    prop_assert_eq!(offset, va + 0x18 - start);
                    let huge = if m.level > 1 { F::HUGE_PAGE.bits() } else { 0 };
                    let hardware = (F::ACCESSED | F::DIRTY).bits();
                    prop_assert_eq!(flags.bits() & !hardware, m.flags | huge);
                }
                (model, got) => {
                    prop_assert!(
                        false,
                        "{}: {:#x}: model {:?}, table {:?}",
                        space,
                        va,
                        model,
                        got
                    );
                }
            }
        }
        for ((level, at), entry) in self.parent_entries() {
            prop_assert_eq!(
                entry & F::GLOBAL.bits(),
                0,
                "{}: level-{} entry at {:#x} is GLOBAL",
                space,
                level,
                at
            );
        }
        Ok(())
    }

    /// Unmaps everything in both spaces (the anchor last), reclaims, and
    /// checks every table frame came back.
    fn tear_down(&mut self) -> Result<(), TestCaseError> {
        prop_assert!(
            self.kernel.mappings.contains_key(&ANCHOR),
            "a generated operation reached the anchor"
        );
        for _ in 0..2 {
            let mapped: Vec<(u64, Level)> = self.spaces[self.active]
                .mappings
                .iter()
                .chain(&self.kernel.mappings)
                .filter(|&(&va, _)| va != ANCHOR)
                .map(|(&va, m)| (va, m.level))
                .collect();
            for (va, level) in mapped {
                let expected = self.with_model(va, |m| m.unmap_or_update(level, va, None));
                let got = match level {
                    1 => self.unmap::<Size4KiB>(va),
                    2 => self.unmap::<Size2MiB>(va),
                    _ => self.unmap::<Size1GiB>(va),
                };
                prop_assert_eq!(got, expected);
            }
            self.step(&Op::CleanUp)?;
            self.step(&Op::Switch)?;
        }
        // Only the anchor is left, in the shared region: B lets go of the
        // shared level-3 table, then A unmaps the anchor and reclaims it.
        if self.active == 1 {
            self.step(&Op::Switch)?;
        }
        let b = self.level_4[1];
        self.table.backend_mut().memory_mut().write_entry(
            b,
            PageTableIndex::new(SHARED_P4 as u16),
            0,
        );
        let expected = self.with_model(ANCHOR, |m| m.unmap_or_update(1, ANCHOR, None));
        prop_assert_eq!(self.unmap::<Size4KiB>(ANCHOR), expected);
        let expected = self.model_clean_up(None);
        // SAFETY: no table is shared any more.
        let freed = unsafe { self.table.clean_up(&mut self.frames) };
        prop_assert_eq!(freed, expected);
        prop_assert!(
            self.frames.out.is_empty(),
            "frames not returned: {:?}",
            self.frames.out
        );
        prop_assert_eq!(self.frames.allocated, self.frames.deallocated);
        Ok(())
    }

    fn map_with_parents<S: EntrySize>(
        &mut self,
        va: u64,
        frame: u64,
        flags: F,
        parent: F,
    ) -> Outcome {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        let frame = PhysFrame::<S>::from_start_address(PhysAddr::new(frame)).unwrap();
        // SAFETY: emulated memory.
        match unsafe {
            self.table
                .map_to_with_table_flags(page, frame, flags, parent, &mut self.frames)
        } {
            Ok(flush) => {
                flush.flush();
                Outcome::Ok
            }
            Err(MapToError::PageAlreadyMapped(_)) => Outcome::AlreadyMapped,
            Err(MapToError::ParentEntryHugePage) => Outcome::Huge,
            Err(MapToError::FrameAllocationFailed) => Outcome::NoFrame,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.max(256), ..ProptestConfig::default() })]

    #[test]
    fn operations_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.step(op)?;
        }
        harness.tear_down()?;
    }
}
