//! Property tests: random operation sequences on pages of all three sizes,
//! checked after every step against a model, by reading memory through the
//! emulated TLB (as the CPU would, after exactly the flushes the API asked
//! for), with frame accounting.

mod paging_model;
mod paging_support;

use framealloc::emu::Machine;
use framealloc::paging::{LeafSize, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{
    FlagUpdateError, MapToError, MappedFrame, TranslateError, TranslateResult, UnmapError,
};
use framealloc::x86_64::structures::paging::{
    Page, PageSize, PageTableFlags as F, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use paging_model::{Level, Mapping, Model, Outcome, page_size};
use paging_support::{TableFrames, table_at};
use proptest::prelude::*;

const RECURSIVE_INDEX: u16 = 510;

/// Level-4, -3, -2 and -1 indices the generated addresses use: few enough
/// that operations collide, spread over both halves and table edges.
const P4: [u64; 3] = [0, 1, 300];
const P3: [u64; 2] = [0, 511];
const P2: [u64; 3] = [0, 1, 511];
const P1: [u64; 3] = [0, 1, 511];

fn sign_extend(va: u64) -> u64 {
    ((va << 16).cast_signed() >> 16).cast_unsigned()
}

/// The address of a `level` page from generated indices.
fn address(level: Level, [a, b, c, d]: [usize; 4]) -> u64 {
    let mut va = P4[a % 3] << 39 | P3[b % 2] << 30;
    if level <= 2 {
        va |= P2[c % 3] << 21;
    }
    if level == 1 {
        va |= P1[d % 3] << 12;
    }
    sign_extend(va)
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

const FLAG_CHOICES: [F; 4] = [
    F::PRESENT.union(F::WRITABLE),
    F::PRESENT,
    F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE),
    F::PRESENT.union(F::WRITABLE).union(F::NO_EXECUTE),
];

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
}

fn op() -> impl Strategy<Value = Op> {
    let level = 1u8..=3;
    let at = any::<[usize; 4]>();
    prop_oneof![
        4 => (level.clone(), at, 0..4usize, prop::option::weighted(0.2, 0..3usize))
            .prop_map(|(level, at, flags, budget)| Op::Map { level, at, flags, budget }),
        2 => (level.clone(), at).prop_map(|(level, at)| Op::Unmap { level, at }),
        1 => (level.clone(), at, 0..4usize).prop_map(|(level, at, flags)| Op::Update { level, at, flags }),
        1 => (level, at).prop_map(|(level, at)| Op::Translate { level, at }),
        1 => Just(Op::CleanUp),
    ]
}

/// Runs the sequence; the harness state.
struct Harness {
    table: RecursivePageTable<Machine>,
    frames: TableFrames,
    model: Model,
    next_data: [u64; 3],
    next_token: u64,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: table_at(RECURSIVE_INDEX),
            frames: TableFrames::new(),
            model: Model::default(),
            // Separate, aligned regions for 4 KiB, 2 MiB and 1 GiB data frames.
            next_data: [0x100_0000_0000, 0x200_0000_0000, 0x1000_0000_0000],
            next_token: 1,
        }
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

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Map {
                level,
                at,
                flags,
                budget,
            } => {
                let va = address(level, at);
                let (frame, tokens) = self.data_frame(level);
                let flags = FLAG_CHOICES[flags];
                self.frames.budget = budget;
                let mut available = budget.unwrap_or(usize::MAX / 2);
                let mapping = Mapping {
                    level,
                    frame,
                    flags: flags.bits(),
                    tokens,
                };
                let expected = self.model.map(level, va, mapping, &mut available);
                let got = match level {
                    1 => self.map::<Size4KiB>(va, frame, flags),
                    2 => self.map::<Size2MiB>(va, frame, flags),
                    _ => self.map::<Size1GiB>(va, frame, flags),
                };
                self.frames.budget = None;
                prop_assert_eq!(got, expected, "map {} at {:#x}", page_size(level), va);
            }
            Op::Unmap { level, at } => {
                let va = address(level, at);
                let expected = self.model.unmap_or_update(level, va, None);
                let got = match level {
                    1 => self.unmap::<Size4KiB>(va),
                    2 => self.unmap::<Size2MiB>(va),
                    _ => self.unmap::<Size1GiB>(va),
                };
                prop_assert_eq!(got, expected, "unmap {} at {:#x}", page_size(level), va);
            }
            Op::Update { level, at, flags } => {
                let va = address(level, at);
                let flags = FLAG_CHOICES[flags];
                let expected = self.model.unmap_or_update(level, va, Some(flags.bits()));
                let got = match level {
                    1 => self.update::<Size4KiB>(va, flags),
                    2 => self.update::<Size2MiB>(va, flags),
                    _ => self.update::<Size1GiB>(va, flags),
                };
                prop_assert_eq!(got, expected, "update {} at {:#x}", page_size(level), va);
            }
            Op::Translate { level, at } => {
                let va = address(level, at);
                let expected = self.model.translate_page(level, va);
                let got = match level {
                    1 => self.translate_page::<Size4KiB>(va),
                    2 => self.translate_page::<Size2MiB>(va),
                    _ => self.translate_page::<Size1GiB>(va),
                };
                prop_assert_eq!(got, expected, "translate {} at {:#x}", page_size(level), va);
            }
            Op::CleanUp => {
                let expected = self.model.clean_up();
                // SAFETY: every table frame belongs to this hierarchy only.
                let freed = unsafe { self.table.clean_up(&mut self.frames) };
                prop_assert_eq!(freed, expected, "tables freed by clean_up");
            }
        }
        self.check()
    }

    fn map<S: LeafSize>(&mut self, va: u64, frame: u64, flags: F) -> Outcome {
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

    fn unmap<S: LeafSize>(&mut self, va: u64) -> Outcome {
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

    fn update<S: LeafSize>(&mut self, va: u64, flags: F) -> Outcome {
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

    fn translate_page<S: LeafSize>(&self, va: u64) -> Outcome {
        let page = Page::<S>::from_start_address(VirtAddr::new(va)).unwrap();
        match self.table.translate_page(page) {
            Ok(frame) => Outcome::OkFrame(frame.start_address().as_u64()),
            Err(TranslateError::PageNotMapped) => Outcome::NotMapped,
            Err(TranslateError::ParentEntryHugePage) => Outcome::Huge,
            Err(e @ TranslateError::InvalidFrameAddress(_)) => panic!("unexpected {e:?}"),
        }
    }

    /// Every mapping reads its tokens through the TLB; every other generated
    /// address faults; `translate` agrees; frames are accounted for.
    fn check(&self) -> Result<(), TestCaseError> {
        let machine = self.table.backend();
        for (&va, m) in &self.model.mappings {
            let last = va + page_size(m.level) - 8;
            prop_assert_eq!(
                machine.read_u64(VirtAddr::new(va)).ok(),
                Some(m.tokens.0),
                "first word of {:#x}",
                va
            );
            prop_assert_eq!(
                machine.read_u64(VirtAddr::new(last)).ok(),
                Some(m.tokens.1),
                "last word of {:#x}",
                va
            );
        }
        for va in all_addresses() {
            let addr = VirtAddr::new(va + 0x18);
            match (self.model.covering(va), self.table.translate(addr)) {
                (None, TranslateResult::NotMapped) => {
                    prop_assert!(machine.read_u64(addr).is_err(), "{:#x} must fault", va);
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
                    prop_assert_eq!(flags.bits(), m.flags | huge);
                }
                (model, got) => {
                    prop_assert!(false, "{:#x}: model {:?}, table {:?}", va, model, got);
                }
            }
        }
        prop_assert_eq!(self.table.spare_frames(), self.model.spare, "spare frames");
        prop_assert_eq!(
            self.frames.out.len(),
            self.model.tables.len() + self.model.spare,
            "page-table frames handed out = tables + spares"
        );
        Ok(())
    }

    /// Unmaps everything, reclaims, and checks every table frame came back.
    fn tear_down(&mut self) -> Result<(), TestCaseError> {
        let mapped: Vec<(u64, Level)> = self
            .model
            .mappings
            .iter()
            .map(|(&va, m)| (va, m.level))
            .collect();
        for (va, level) in mapped {
            let at = Op::Unmap { level, at: [0; 4] };
            let _ = at;
            let expected = self.model.unmap_or_update(level, va, None);
            let got = match level {
                1 => self.unmap::<Size4KiB>(va),
                2 => self.unmap::<Size2MiB>(va),
                _ => self.unmap::<Size1GiB>(va),
            };
            prop_assert_eq!(got, expected);
        }
        self.step(&Op::CleanUp)?;
        prop_assert!(
            self.frames.out.is_empty(),
            "frames not returned: {:?}",
            self.frames.out
        );
        prop_assert_eq!(self.frames.allocated, self.frames.deallocated);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.max(256), ..ProptestConfig::default() })]

    #[test]
    fn single_page_operations_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.step(op)?;
        }
        harness.tear_down()?;
    }
}
