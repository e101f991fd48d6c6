//! Differential test of address spaces: the same operations made on an
//! inactive space through framealloc's slot view (and, after a switch, on
//! it as the active space) and through `x86_64`'s `OffsetPageTable` over
//! host memory give the same results and the same page tables, entry for
//! entry, and `clean_up_addr_range` frees the same frames in the same order.
//!
//! Both sides get table frames from identical `SequentialFrames`: ours
//! first takes the space's level-4 frame (0x1000), theirs has its level-4
//! table in arena frame 0, so the tables below line up from 0x2000 on.

use framealloc::emu::{CpuConfig, Machine};
use framealloc::paging::{AddressSpace, EntrySet, EntrySize, Flush, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{CleanUp, Mapper, MapperFlush};
use framealloc::x86_64::structures::paging::{
    OffsetPageTable, Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use proptest::prelude::*;
use tests::{Arena, SequentialFrames};

const R: u16 = 510;
const SLOT: u16 = 509;
const HUGE: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// The active (kernel) space's level-4 frame, far from the arena's frames.
const KERNEL_L4: u64 = 0x1000_0000;

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

/// User addresses over a few level-4, -3, -2 and -1 tables.
fn address(choice: usize, huge: bool) -> u64 {
    const BASES: [u64; 4] = [0, 0x4000_0000, 0x80_0000_0000, 0x7f80_0000_0000];
    let base = BASES[choice % 4];
    if huge {
        base + ((choice / 4) % 3) as u64 * 0x20_0000
    } else {
        base + ((choice / 4) % 3) as u64 * 0x1000 + 0x60_0000
    }
}

/// Parent flags of every map, as a kernel gives its user half (our tables
/// add `WRITABLE` to parents whatever the leaf asks; see the table docs).
const PARENT: F = F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE);

const FLAGS: [F; 3] = [
    F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE),
    F::PRESENT.union(F::USER_ACCESSIBLE),
    F::PRESENT.union(F::WRITABLE),
];

#[derive(Debug, Clone)]
enum Op {
    Map {
        at: usize,
        huge: bool,
        flags: usize,
    },
    Unmap {
        at: usize,
        huge: bool,
    },
    Update {
        at: usize,
        flags: usize,
    },
    CleanUp,
    /// Make the space active for the next operation only.
    ActiveOnce,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..12usize, prop::bool::weighted(0.2), 0..3usize)
            .prop_map(|(at, huge, flags)| Op::Map { at, huge, flags }),
        3 => (0..12usize, prop::bool::weighted(0.2)).prop_map(|(at, huge)| Op::Unmap { at, huge }),
        1 => (0..12usize, 0..3usize).prop_map(|(at, flags)| Op::Update { at, flags }),
        1 => Just(Op::CleanUp),
        1 => Just(Op::ActiveOnce),
    ]
}

struct Pair {
    arena: Arena,
    theirs: SequentialFrames,
    ours: RecursivePageTable<Machine>,
    our_frames: SequentialFrames,
    space: Option<AddressSpace>,
}

/// Every non-zero entry reachable from `root`, as (table or "root", index,
/// entry); level-4 index `skip` is left out.
fn tables(
    read: &dyn Fn(u64) -> Vec<u64>,
    root: u64,
    skip: Option<usize>,
) -> Vec<(u64, usize, u64)> {
    fn visit(
        read: &dyn Fn(u64) -> Vec<u64>,
        table: u64,
        level: u8,
        root: u64,
        skip: Option<usize>,
        out: &mut Vec<(u64, usize, u64)>,
    ) {
        for (i, &e) in read(table).iter().enumerate() {
            if e == 0 || (level == 4 && Some(i) == skip) {
                continue;
            }
            out.push((if table == root { u64::MAX } else { table }, i, e));
            if level > 1 && e & 1 == 1 && e & HUGE == 0 {
                visit(read, e & ADDR, level - 1, root, skip, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(read, root, 4, root, skip, &mut out);
    out
}

/// Runs `f` on space B: through a view, or as the active space.
macro_rules! on_b {
    ($pair:expr, $active:expr, |$t:ident, $frames:ident| $body:expr) => {{
        let pair: &mut Pair = $pair;
        if $active {
            let b = pair.space.take().unwrap();
            // SAFETY: the emulated machine.
            let a = unsafe { pair.ours.switch_to(b) }.unwrap();
            let result = {
                let $t = &mut pair.ours;
                let $frames = &mut pair.our_frames;
                $body
            };
            // SAFETY: as above.
            pair.space = Some(unsafe { pair.ours.switch_to(a) }.unwrap());
            result
        } else {
            let mut view = pair.ours.edit(pair.space.as_ref().unwrap()).unwrap();
            let $t = &mut *view;
            let $frames = &mut pair.our_frames;
            $body
        }
    }};
}

impl Pair {
    fn new() -> Self {
        let machine = Machine::with_recursive_table(PageTableIndex::new(R), frame(KERNEL_L4))
            .unwrap()
            .with_config(CpuConfig::DEFAULT.with_accessed_dirty(false));
        let mut ours = RecursivePageTable::new(machine, PageTableIndex::new(R)).unwrap();
        let mut our_frames = SequentialFrames::new(0x1000);
        let space = ours
            .create_space(PageTableIndex::new(SLOT), &EntrySet::new(), &mut our_frames)
            .unwrap();
        assert_eq!(space.level_4_frame(), frame(0x1000));
        Pair {
            arena: Arena::new(200),
            theirs: SequentialFrames::new(0x2000),
            ours,
            our_frames,
            space: Some(space),
        }
    }

    fn step(&mut self, op: &Op, active: bool) -> Result<(), TestCaseError> {
        match *op {
            Op::Map { at, huge, flags } => {
                let (va, flags) = (address(at, huge), FLAGS[flags]);
                let data = 0x100_0000_0000 + at as u64 * 0x20_0000;
                let (ours, theirs) = if huge {
                    // Huge leaves carry the parent flags: on a map that fails
                    // below a huge page `x86_64` adds them to its entry, we
                    // do not.
                    self.map::<Size2MiB>(va, data, flags | PARENT, active)
                } else {
                    self.map::<Size4KiB>(va, data, flags, active)
                };
                prop_assert_eq!(ours, theirs, "map {:#x} (huge: {})", va, huge);
            }
            Op::Unmap { at, huge } => {
                let va = address(at, huge);
                let (ours, theirs) = if huge {
                    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(va));
                    let ours = on_b!(self, active, |t, _frames| t.unmap(page).map(|(f, fl)| {
                        fl.flush();
                        f
                    }));
                    let theirs = self.arena.mapper().unmap(page).map(|(f, fl)| {
                        fl.ignore();
                        f
                    });
                    (format!("{ours:?}"), format!("{theirs:?}"))
                } else {
                    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
                    let ours = on_b!(self, active, |t, _frames| t.unmap(page).map(|(f, fl)| {
                        fl.flush();
                        f
                    }));
                    let theirs = self.arena.mapper().unmap(page).map(|(f, fl)| {
                        fl.ignore();
                        f
                    });
                    (format!("{ours:?}"), format!("{theirs:?}"))
                };
                prop_assert_eq!(ours, theirs, "unmap {:#x}", va);
            }
            Op::Update { at, flags } => {
                let (va, flags) = (address(at, false), FLAGS[flags]);
                let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
                // SAFETY: emulated memory.
                let ours = on_b!(self, active, |t, _frames| unsafe {
                    t.update_flags(page, flags)
                }
                .map(Flush::flush));
                // SAFETY: arena memory.
                let theirs = unsafe { self.arena.mapper().update_flags(page, flags) }
                    .map(MapperFlush::ignore);
                prop_assert_eq!(
                    format!("{ours:?}"),
                    format!("{theirs:?}"),
                    "update {:#x}",
                    va
                );
            }
            Op::CleanUp => {
                let range = Page::range_inclusive(
                    Page::<Size4KiB>::containing_address(VirtAddr::new(0)),
                    Page::containing_address(VirtAddr::new(0x7fff_ffff_f000)),
                );
                // SAFETY: B's user half is its own.
                on_b!(self, active, |t, frames| unsafe {
                    t.clean_up_addr_range(range, frames)
                });
                let mut mapper = self.arena.mapper();
                // SAFETY: the arena's tables are its own.
                unsafe { mapper.clean_up_addr_range(range, &mut self.theirs) };
                prop_assert_eq!(&self.our_frames.freed, &self.theirs.freed, "frames freed");
            }
            Op::ActiveOnce => {}
        }
        self.compare()
    }

    fn map<S: EntrySize + std::fmt::Debug>(
        &mut self,
        va: u64,
        data: u64,
        flags: F,
        active: bool,
    ) -> (String, String)
    where
        for<'a> OffsetPageTable<'a>: Mapper<S>,
    {
        let page = Page::<S>::containing_address(VirtAddr::new(va));
        let f = PhysFrame::<S>::containing_address(PhysAddr::new(data));
        // SAFETY: emulated memory.
        let ours = on_b!(self, active, |t, frames| unsafe {
            t.map_to_with_table_flags(page, f, flags, PARENT, frames)
        }
        .map(Flush::flush));
        // SAFETY: arena memory; the data frames are never accessed.
        let theirs = unsafe {
            self.arena
                .mapper()
                .map_to_with_table_flags(page, f, flags, PARENT, &mut self.theirs)
        }
        .map(MapperFlush::ignore);
        (format!("{ours:?}"), format!("{theirs:?}"))
    }

    fn compare(&self) -> Result<(), TestCaseError> {
        let arena = &self.arena;
        let theirs = tables(
            &|t| (0..512).map(|i| arena.entry(frame(t), i)).collect(),
            0,
            None,
        );
        let memory = self.ours.backend().memory();
        let read_ours = |t: u64| {
            (0..512)
                .map(|i| memory.read_entry(frame(t), PageTableIndex::new(i)))
                .collect()
        };
        let root = self
            .space
            .as_ref()
            .unwrap()
            .level_4_frame()
            .start_address()
            .as_u64();
        let ours = tables(&read_ours, root, Some(usize::from(R)));
        prop_assert_eq!(theirs, ours, "page tables differ");
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn inactive_space_edits_agree_with_x86_64(ops in prop::collection::vec(op(), 1..40)) {
        let mut pair = Pair::new();
        let mut active = false;
        for op in &ops {
            pair.step(op, active)?;
            active = matches!(op, Op::ActiveOnce);
        }
        // Destroy returns exactly B's tables: those still reachable.
        let root = pair.space.as_ref().unwrap().level_4_frame();
        let memory = pair.ours.backend().memory();
        let mut expected: Vec<u64> = tables(
            &|t| (0..512).map(|i| memory.read_entry(frame(t), PageTableIndex::new(i))).collect(),
            root.start_address().as_u64(),
            Some(usize::from(R)),
        )
        .into_iter()
        .filter(|&(_, _, e)| e & 1 == 1 && e & HUGE == 0)
        .map(|(_, _, e)| e & ADDR)
        .collect();
        // Level-1 entries are leaves (data frames, all far above the tables).
        expected.retain(|&f| f < 0x100_0000_0000);
        expected.push(root.start_address().as_u64());
        expected.sort_unstable();
        let before = pair.our_frames.freed.len();
        let b = pair.space.take().unwrap();
        // SAFETY: B's tables are its own.
        unsafe { pair.ours.destroy_space(b, &mut pair.our_frames, |_, _| ()) }.unwrap();
        let mut freed = pair.our_frames.freed[before..].to_vec();
        freed.sort_unstable();
        prop_assert_eq!(freed, expected);
    }
}
