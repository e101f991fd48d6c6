//! Address spaces on the emulator: create, edit while inactive, switch,
//! destroy, every refusal, and a property test over several spaces.

mod paging_support;

use std::collections::{BTreeMap, BTreeSet};

use framealloc::emu::{Access, Machine};
use framealloc::paging::{AddressSpace, EntrySet, RecursivePageTable, SpaceError};
use framealloc::x86_64::VirtAddr;
use framealloc::x86_64::structures::paging::PhysFrame;
use framealloc::x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, Size4KiB};
use paging_support::{DATA_START, LEVEL_4, TableFrames, frame, table_at};
use proptest::prelude::*;

const R: u16 = 510;
const SLOT: u16 = 509;
const KERNEL: u64 = 0xffff_8000_0000_0000;

fn slot() -> PageTableIndex {
    PageTableIndex::new(SLOT)
}

fn page(addr: u64) -> Page<Size4KiB> {
    Page::containing_address(VirtAddr::new(addr))
}

/// The kernel half minus the recursive entry and the slot.
fn kernel_half() -> EntrySet {
    let mut set = EntrySet::range(PageTableIndex::new(256), PageTableIndex::new(511));
    set.remove(PageTableIndex::new(R));
    set.remove(slot());
    set
}

/// A kernel space with a prepared kernel half and one global kernel page.
fn kernel() -> (RecursivePageTable<Machine>, TableFrames) {
    let mut table = table_at(R);
    let mut frames = TableFrames::new();
    // SAFETY: emulated memory; the entries are unused.
    let made = unsafe { table.prepare_shared(&kernel_half(), &mut frames) }.unwrap();
    assert_eq!(made, 254);
    let data = frame(DATA_START);
    table
        .backend_mut()
        .memory_mut()
        .write_u64(data.start_address(), 0x6b)
        .unwrap();
    // SAFETY: emulated memory.
    unsafe {
        table.map_to(
            page(KERNEL),
            data,
            F::PRESENT | F::WRITABLE | F::GLOBAL,
            &mut frames,
        )
    }
    .unwrap()
    .flush();
    (table, frames)
}

fn read(table: &RecursivePageTable<Machine>, addr: u64) -> Option<u64> {
    table.backend().read_u64(VirtAddr::new(addr)).ok()
}

#[test]
fn create_edit_switch_destroy() {
    let (mut table, mut frames) = kernel();
    let before = frames.out.clone();
    let memory_before = table.backend().memory().clone();
    assert_eq!(read(&table, KERNEL), Some(0x6b)); // caches the global page
    let b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    assert_eq!(frames.out.len(), before.len() + 1);
    // The active table changed only in the new frame (and accessed bits).
    for changed in table.backend().memory().differing_frames(&memory_before) {
        if changed == b.level_4_frame() {
            continue;
        }
        for i in 0..512 {
            let i = PageTableIndex::new(i);
            let now = table.backend().memory().read_entry(changed, i);
            assert_eq!(
                now & !F::ACCESSED.bits(),
                memory_before.read_entry(changed, i) & !F::ACCESSED.bits()
            );
        }
    }

    let user = 0x40_0000;
    let data = frame(DATA_START + 0x1000);
    table
        .backend_mut()
        .memory_mut()
        .write_u64(data.start_address(), 7)
        .unwrap();
    {
        let mut view = table.edit(&b).unwrap();
        // SAFETY: emulated memory.
        unsafe {
            view.map_to(
                page(user),
                data,
                F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE,
                &mut frames,
            )
        }
        .unwrap()
        .flush();
        assert!(matches!(
            view.translate(VirtAddr::new(user)),
            TranslateResult::Mapped { .. }
        ));
        // The kernel half is seen through the view too.
        assert!(matches!(
            view.translate(VirtAddr::new(KERNEL)),
            TranslateResult::Mapped { .. }
        ));
        let tables: Vec<_> = view.page_tables().map(|t| t.frame).collect();
        assert_eq!(tables[0], b.level_4_frame());
        let dump = view.dump().to_string();
        assert!(dump.contains("0x0000000000400000 "), "{dump}");
    }
    // Not in the active space.
    assert!(matches!(
        table.translate(VirtAddr::new(user)),
        TranslateResult::NotMapped
    ));
    assert_eq!(read(&table, user), None);
    assert_eq!(
        table.backend().counters().tlb_hits,
        table.backend().counters().tlb_hits
    );

    // SAFETY: emulated machine.
    let a = unsafe { table.switch_to(b) }.unwrap();
    assert_eq!(a.level_4_frame(), frame(LEVEL_4));
    assert_eq!(read(&table, user), Some(7));
    assert_eq!(read(&table, KERNEL), Some(0x6b));
    // The global kernel page's translation survived the switch.
    assert!(table.backend().cached(VirtAddr::new(KERNEL)).is_some());
    // SAFETY: emulated machine.
    let b = unsafe { table.switch_to(a) }.unwrap();
    assert_eq!(table.backend().cr3(), frame(LEVEL_4));
    assert_eq!(read(&table, user), None);
    assert_eq!(read(&table, KERNEL), Some(0x6b));

    let mut leaves = Vec::new();
    // SAFETY: B's own tables are used by B only.
    let freed = unsafe { table.destroy_space(b, &mut frames, |m, _| leaves.push(m)) }.unwrap();
    assert_eq!(freed, 4); // level 4, 3, 2, 1
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].start.as_u64(), user);
    assert_eq!(leaves[0].frame, data.start_address());
    assert_eq!(frames.out, before);
}

#[test]
fn refusals_change_nothing() {
    let (mut table, mut frames) = kernel();
    let memory = table.backend().memory().clone();
    let out = frames.out.clone();
    for s in [0, 511, R] {
        assert_eq!(
            table.create_space(PageTableIndex::new(s), &EntrySet::new(), &mut frames),
            Err(SpaceError::SlotInvalid { slot: s })
        );
    }
    let mut bad = EntrySet::new();
    bad.insert(PageTableIndex::new(3)); // not present
    assert!(matches!(
        table.create_space(slot(), &bad, &mut frames),
        Err(SpaceError::SharedNotPresent { index: 3, entry: 0 })
    ));
    let mut bad = EntrySet::new();
    bad.insert(PageTableIndex::new(R)); // the recursive entry
    assert!(matches!(
        table.create_space(slot(), &bad, &mut frames),
        Err(SpaceError::SharedNotPresent { index: R, .. })
    ));
    let mut empty = TableFrames::with_budget(0);
    assert_eq!(
        table.create_space(slot(), &EntrySet::new(), &mut empty),
        Err(SpaceError::OutOfFrames)
    );
    // A busy slot: index 300 holds a prepared level-3 table.
    assert!(matches!(
        table.create_space(PageTableIndex::new(300), &EntrySet::new(), &mut frames),
        Err(SpaceError::SlotInUse { .. })
    ));
    assert_eq!(table.backend().memory(), &memory);
    assert_eq!(frames.out, out);
}

#[test]
fn switch_refuses_a_space_without_its_recursive_entry() {
    let (mut table, mut frames) = kernel();
    let mut b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    let l4 = b.level_4_frame();
    let good = table
        .backend()
        .memory()
        .read_entry(l4, PageTableIndex::new(R));
    for wrong in [
        0,
        good | F::USER_ACCESSIBLE.bits(),
        good & !F::WRITABLE.bits(),
        good | F::GLOBAL.bits(),
        frame(LEVEL_4).start_address().as_u64() | 3,
    ] {
        table
            .backend_mut()
            .memory_mut()
            .write_entry(l4, PageTableIndex::new(R), wrong);
        let memory = table.backend().memory().clone();
        // SAFETY: refused before CR3 is written.
        let (back, error) = unsafe { table.switch_to(b) }.unwrap_err();
        b = back;
        assert_eq!(error, SpaceError::NotRecursive { entry: wrong });
        assert_eq!(b.level_4_frame(), l4);
        assert_eq!(table.backend().cr3(), frame(LEVEL_4));
        assert_eq!(table.backend().memory(), &memory);
        assert!(matches!(
            table.edit(&b),
            Err(SpaceError::NotRecursive { .. })
        ));
    }
    table
        .backend_mut()
        .memory_mut()
        .write_entry(l4, PageTableIndex::new(R), good);
    table
        .backend_mut()
        .memory_mut()
        .write_entry(l4, slot(), 0x5003);
    // SAFETY: refused.
    let (_, error) = unsafe { table.switch_to(b) }.unwrap_err();
    assert_eq!(error, SpaceError::SlotNotEmpty { entry: 0x5003 });
}

#[test]
fn the_active_space_is_refused() {
    let (mut table, mut frames) = kernel();
    let b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    table.backend_mut().set_cr3(b.level_4_frame());
    assert!(matches!(table.edit(&b), Err(SpaceError::Active)));
    // SAFETY: refused.
    let (b, error) = unsafe { table.destroy_space(b, &mut frames, |_, _| ()) }.unwrap_err();
    assert_eq!(error, SpaceError::Active);
    // SAFETY: refused.
    let (_, error) = unsafe { table.switch_to(b) }.unwrap_err();
    assert_eq!(error, SpaceError::Active);
}

#[test]
fn the_view_keeps_the_spaces_recursive_entry() {
    let (mut table, mut frames) = kernel();
    let b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    let l4 = b.level_4_frame();
    let entry = table
        .backend()
        .memory()
        .read_entry(l4, PageTableIndex::new(R));
    {
        let mut view = table.edit(&b).unwrap();
        let inside = (u64::from(R) << 39) | 0xffff_0000_0000_0000 | 0x4000;
        // SAFETY: emulated memory (refused anyway).
        let err = unsafe { view.map_to(page(inside), frame(DATA_START), F::PRESENT, &mut frames) }
            .unwrap_err();
        assert!(matches!(err, MapToError::ParentEntryHugePage));
        assert!(view.unmap(page(inside)).is_err());
        assert!(matches!(
            view.translate(VirtAddr::new(inside)),
            TranslateResult::NotMapped
        ));
        // Its tables: the level-4 table and the 254 shared level-3 tables, the
        // kernel page's level-2 and level-1 tables; nothing through `R`.
        assert_eq!(view.page_tables().count(), 1 + 254 + 2);
        assert_eq!(view.mappings().count(), 1);
        // SAFETY: only B's own user half, which is empty.
        let freed = unsafe {
            view.clean_up_addr_range(
                Page::range_inclusive(page(0), page(0x7fff_ffff_f000)),
                &mut frames,
            )
        };
        assert_eq!(freed, 0);
    }
    assert_eq!(
        table
            .backend()
            .memory()
            .read_entry(l4, PageTableIndex::new(R)),
        entry
    );
    assert_eq!(table.backend().memory().read_entry(l4, slot()), 0);
    assert_eq!(
        table.backend().memory().read_entry(frame(LEVEL_4), slot()),
        0
    );
}

#[test]
fn kernel_half_added_later_is_seen_by_every_space() {
    let (mut table, mut frames) = kernel();
    let b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    let c = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    // A kernel mapping in a level-4 entry never used before the spaces existed.
    let late = 0xffff_9000_0000_0000 | (300 << 39) & 0x0000_ff80_0000_0000;
    let data = frame(DATA_START + 0x5000);
    table
        .backend_mut()
        .memory_mut()
        .write_u64(data.start_address(), 99)
        .unwrap();
    // SAFETY: emulated memory.
    unsafe { table.map_to(page(late), data, F::PRESENT | F::WRITABLE, &mut frames) }
        .unwrap()
        .flush();
    for space in [&b, &c] {
        let view = table.edit(space).unwrap();
        let found: PhysFrame<Size4KiB> = view.translate_page(page(late)).unwrap();
        assert_eq!(found, data);
    }
    // SAFETY: emulated machine, kernel half shared.
    let a = unsafe { table.switch_to(c) }.unwrap();
    assert_eq!(read(&table, late), Some(99));
    // SAFETY: as above.
    let c = unsafe { table.switch_to(a) }.unwrap();
    let before = frames.out.len();
    for space in [b, c] {
        // SAFETY: own tables only; the kernel half is shared and kept.
        let freed = unsafe { table.destroy_space(space, &mut frames, |_, _| ()) };
        assert_eq!(freed, Ok(1));
    }
    assert_eq!(frames.out.len(), before - 2);
    assert_eq!(read(&table, late), Some(99));
}

/// Editing two spaces one after the other through the same slot, with the
/// paging-structure caches on: the second edit must reach the second space,
/// not tables of the first still cached through the slot.
#[test]
fn the_slot_is_invalidated_between_spaces() {
    let (mut table, mut frames) = kernel();
    table.backend_mut().set_paging_structure_caches(true);
    let b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    let c = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    let user = 0x7000_0000;
    for (space, value) in [(&b, 1u64), (&c, 2)] {
        let data = frame(DATA_START + value * 0x1000);
        table
            .backend_mut()
            .memory_mut()
            .write_u64(data.start_address(), value)
            .unwrap();
        let mut view = table.edit(space).unwrap();
        // SAFETY: emulated memory.
        unsafe { view.map_to(page(user), data, F::PRESENT | F::WRITABLE, &mut frames) }
            .unwrap()
            .flush();
        // A second page in the same level-1 table, whose path is now cached.
        // SAFETY: emulated memory.
        unsafe { view.map_to(page(user + 0x1000), data, F::PRESENT, &mut frames) }
            .unwrap()
            .flush();
    }
    for (space, value) in [(b, 1u64), (c, 2)] {
        // SAFETY: emulated machine.
        let a = unsafe { table.switch_to(space) }.unwrap();
        assert_eq!(read(&table, user), Some(value));
        assert_eq!(read(&table, user + 0x1000), Some(value));
        // SAFETY: emulated machine.
        let space = unsafe { table.switch_to(a) }.unwrap();
        // SAFETY: own tables.
        let freed = unsafe { table.destroy_space(space, &mut frames, |_, _| ()) };
        assert_eq!(freed, Ok(4));
    }
}

// ------------------------------------------------------------ property test

/// User pages (spread over level-4, -3, -2 and -1 tables) and kernel pages
/// (in the shared half).
const USER: [u64; 6] = [
    0x1000,
    0x2000,
    0x20_0000,
    0x4000_0000,
    0x80_0000_0000,
    0x100_0000_3000,
];
const KERN: [u64; 3] = [
    KERNEL + 0x1000,
    KERNEL + 0x4000_0000,
    KERNEL + 0x80_0000_0000,
];
const SMALL_HALF: u16 = 4;

fn small_half() -> EntrySet {
    EntrySet::range(
        PageTableIndex::new(256),
        PageTableIndex::new(256 + SMALL_HALF - 1),
    )
}

#[derive(Debug, Clone)]
enum Op {
    Map {
        space: usize,
        kernel: bool,
        page: usize,
        frame: u64,
    },
    Unmap {
        space: usize,
        kernel: bool,
        page: usize,
    },
    Switch {
        space: usize,
    },
    Recreate {
        space: usize,
    },
    CleanUp {
        space: usize,
    },
}

fn op(spaces: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..spaces, any::<bool>(), 0..6usize, 0..8u64)
            .prop_map(|(space, kernel, page, frame)| Op::Map { space, kernel, page, frame }),
        2 => (0..spaces, any::<bool>(), 0..6usize)
            .prop_map(|(space, kernel, page)| Op::Unmap { space, kernel, page }),
        2 => (0..spaces).prop_map(|space| Op::Switch { space }),
        1 => (1..spaces).prop_map(|space| Op::Recreate { space }),
        1 => (0..spaces).prop_map(|space| Op::CleanUp { space }),
    ]
}

struct World {
    table: RecursivePageTable<Machine>,
    frames: TableFrames,
    /// The inactive spaces (`None` for the active one).
    spaces: Vec<Option<AddressSpace>>,
    active: usize,
    user: Vec<BTreeMap<u64, u64>>,
    kernel: BTreeMap<u64, u64>,
}

fn data(frame_no: u64) -> u64 {
    DATA_START + frame_no * 0x1000
}

impl World {
    fn new(count: usize) -> Self {
        let mut table = table_at(R);
        let mut frames = TableFrames::new();
        // SAFETY: emulated memory.
        unsafe { table.prepare_shared(&small_half(), &mut frames) }.unwrap();
        for f in 0..8 {
            table
                .backend_mut()
                .memory_mut()
                .write_u64(frame(data(f)).start_address(), f + 1)
                .unwrap();
        }
        let mut spaces = vec![None];
        for _ in 1..count {
            spaces.push(Some(
                table
                    .create_space(slot(), &small_half(), &mut frames)
                    .unwrap(),
            ));
        }
        World {
            table,
            frames,
            spaces,
            active: 0,
            user: vec![BTreeMap::new(); count],
            kernel: BTreeMap::new(),
        }
    }

    /// Runs `f` on space `k`'s table: the active one, or a view.
    fn on<T>(&mut self, k: usize, f: impl FnOnce(&mut dyn SpaceOps, &mut TableFrames) -> T) -> T {
        if k == self.active {
            f(&mut self.table, &mut self.frames)
        } else {
            let space = self.spaces[k].as_ref().unwrap();
            let mut view = self.table.edit(space).unwrap();
            f(&mut *view, &mut self.frames)
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Map {
                space,
                kernel,
                page: p,
                frame: f,
            } => {
                let addr = if kernel { KERN[p % 3] } else { USER[p] };
                let was = if kernel {
                    self.kernel.get(&addr)
                } else {
                    self.user[space].get(&addr)
                }
                .copied();
                let ok = self.on(space, |t, frames| t.map(addr, data(f), kernel, frames));
                assert_eq!(ok, was.is_none(), "map {addr:#x} in {space}");
                if ok {
                    if kernel {
                        self.kernel.insert(addr, f)
                    } else {
                        self.user[space].insert(addr, f)
                    };
                }
            }
            Op::Unmap {
                space,
                kernel,
                page: p,
            } => {
                let addr = if kernel { KERN[p % 3] } else { USER[p] };
                let was = if kernel {
                    self.kernel.remove(&addr)
                } else {
                    self.user[space].remove(&addr)
                };
                let got = self.on(space, |t, _| t.unmap(addr));
                assert_eq!(got, was.map(data), "unmap {addr:#x} in {space}");
            }
            Op::Switch { space } => {
                if space != self.active {
                    let target = self.spaces[space].take().unwrap();
                    // SAFETY: emulated machine.
                    let previous = unsafe { self.table.switch_to(target) }.unwrap();
                    self.spaces[self.active] = Some(previous);
                    self.active = space;
                }
            }
            Op::Recreate { space } => {
                if space != self.active && space != 0 {
                    let shared: BTreeSet<u64> = self.shared_tables();
                    let own: BTreeSet<u64> = {
                        let view = self
                            .table
                            .edit(self.spaces[space].as_ref().unwrap())
                            .unwrap();
                        view.page_tables()
                            .map(|t| t.frame.start_address().as_u64())
                            .filter(|f| !shared.contains(f))
                            .collect()
                    };
                    let target = self.spaces[space].take().unwrap();
                    let before = self.frames.out.clone();
                    let mut leaves = BTreeSet::new();
                    // SAFETY: own tables only.
                    let freed = unsafe {
                        self.table.destroy_space(target, &mut self.frames, |m, _| {
                            leaves.insert((m.start.as_u64(), m.frame.as_u64()));
                        })
                    }
                    .unwrap();
                    assert_eq!(freed, own.len());
                    assert_eq!(
                        before
                            .difference(&self.frames.out)
                            .copied()
                            .collect::<BTreeSet<_>>(),
                        own
                    );
                    let expected: BTreeSet<_> = self.user[space]
                        .iter()
                        .map(|(&a, &f)| (a, data(f)))
                        .collect();
                    assert_eq!(leaves, expected);
                    self.user[space].clear();
                    self.spaces[space] = Some(
                        self.table
                            .create_space(slot(), &small_half(), &mut self.frames)
                            .unwrap(),
                    );
                }
            }
            Op::CleanUp { space } => {
                self.on(space, |t, frames| t.clean_user(frames));
            }
        }
    }

    /// The shared level-3 tables and everything below them.
    fn shared_tables(&self) -> BTreeSet<u64> {
        // Read from physical memory: the kernel space's entries 256.. are the
        // shared ones in every space.
        let memory = self.table.backend().memory();
        let l4 = frame(LEVEL_4);
        let mut out = BTreeSet::new();
        let mut stack: Vec<(PhysFrame, usize)> = (256..256 + SMALL_HALF)
            .map(|i| {
                (
                    frame(memory.read_entry(l4, PageTableIndex::new(i)) & 0x000f_ffff_ffff_f000),
                    3,
                )
            })
            .collect();
        while let Some((table, level)) = stack.pop() {
            out.insert(table.start_address().as_u64());
            if level > 1 {
                for i in 0..512 {
                    let e = memory.read_entry(table, PageTableIndex::new(i));
                    if e & 1 != 0 && e & 0x80 == 0 {
                        stack.push((frame(e & 0x000f_ffff_ffff_f000), level - 1));
                    }
                }
            }
        }
        out
    }

    fn check(&mut self) {
        let mut tables = BTreeSet::new();
        for k in 0..self.spaces.len() {
            let user = self.user[k].clone();
            let kernel = self.kernel.clone();
            let active = k == self.active;
            let found = self.on(k, |t, _| {
                let mut seen = BTreeSet::new();
                for &addr in USER.iter().chain(KERN.iter()) {
                    let want = user
                        .get(&addr)
                        .or_else(|| kernel.get(&addr))
                        .map(|&f| data(f));
                    assert_eq!(t.lookup(addr, active), want, "space {k} at {addr:#x}");
                }
                t.tables(&mut seen);
                seen
            });
            tables.extend(found);
        }
        tables.remove(&LEVEL_4);
        assert_eq!(tables, self.frames.out, "frame accounting");
    }
}

/// The operations the property test runs on the active table and on views
/// alike.
trait SpaceOps {
    fn map(&mut self, addr: u64, frame: u64, kernel: bool, frames: &mut TableFrames) -> bool;
    fn unmap(&mut self, addr: u64) -> Option<u64>;
    fn clean_user(&mut self, frames: &mut TableFrames);
    /// The physical address `addr` maps to: through the TLB with a read if
    /// `active`, by a table walk through the slot otherwise.
    fn lookup(&self, addr: u64, active: bool) -> Option<u64>;
    fn tables(&self, into: &mut BTreeSet<u64>);
}

impl<B: framealloc::paging::Backend + TlbRead> SpaceOps for RecursivePageTable<B> {
    fn map(&mut self, addr: u64, data: u64, kernel: bool, frames: &mut TableFrames) -> bool {
        let flags = if kernel {
            F::PRESENT | F::WRITABLE
        } else {
            F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE
        };
        // SAFETY: emulated memory.
        match unsafe { self.map_to(page(addr), frame(data), flags, frames) } {
            Ok(flush) => {
                flush.flush();
                true
            }
            Err(MapToError::PageAlreadyMapped(_)) => false,
            Err(e) => panic!("map failed: {e:?}"),
        }
    }

    fn unmap(&mut self, addr: u64) -> Option<u64> {
        self.unmap(page(addr)).ok().map(|(f, flush)| {
            flush.flush();
            f.start_address().as_u64()
        })
    }

    fn clean_user(&mut self, frames: &mut TableFrames) {
        // SAFETY: the user half is never shared.
        unsafe {
            self.clean_up_addr_range(
                Page::range_inclusive(page(0), page(0x7fff_ffff_f000)),
                frames,
            )
        };
    }

    fn lookup(&self, addr: u64, active: bool) -> Option<u64> {
        if active {
            self.backend().tlb_read(addr)
        } else {
            match self.translate(VirtAddr::new(addr)) {
                TranslateResult::Mapped { frame, offset, .. } => {
                    Some(frame.start_address().as_u64() + offset)
                }
                _ => None,
            }
        }
    }

    fn tables(&self, into: &mut BTreeSet<u64>) {
        into.extend(self.page_tables().map(|t| t.frame.start_address().as_u64()));
    }
}

/// A read through the active TLB.
trait TlbRead {
    fn tlb_read(&self, addr: u64) -> Option<u64>;
}

impl TlbRead for Machine {
    fn tlb_read(&self, addr: u64) -> Option<u64> {
        let phys = self
            .translate(VirtAddr::new(addr), Access::KERNEL_READ)
            .ok()?;
        // The data frame holds its number + 1 in its first word.
        let value = self.read_u64(VirtAddr::new(addr)).unwrap();
        assert_eq!(value, (phys.as_u64() - DATA_START) / 0x1000 + 1);
        Some(phys.as_u64())
    }
}

impl TlbRead for framealloc::paging::SlotBackend<'_, Machine> {
    fn tlb_read(&self, _: u64) -> Option<u64> {
        unreachable!("a view is never the active space")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn spaces_agree_with_the_model(count in 2..=4usize, ops in proptest::collection::vec(op(4), 1..40), caches in any::<bool>()) {
        let mut world = World::new(count);
        world.table.backend_mut().set_paging_structure_caches(caches);
        world.check();
        for op in &ops {
            let op = match *op {
                Op::Map { space, kernel, page, frame } => Op::Map { space: space % count, kernel, page, frame },
                Op::Unmap { space, kernel, page } => Op::Unmap { space: space % count, kernel, page },
                Op::Switch { space } => Op::Switch { space: space % count },
                Op::Recreate { space } => Op::Recreate { space: space % count },
                Op::CleanUp { space } => Op::CleanUp { space: space % count },
            };
            world.step(&op);
            world.check();
        }
        // Every process space returns every table it owns.
        if world.active != 0 {
            world.step(&Op::Switch { space: 0 });
        }
        for k in 1..count {
            world.user[k].clear();
            let target = world.spaces[k].take().unwrap();
            // SAFETY: own tables only.
            unsafe { world.table.destroy_space(target, &mut world.frames, |_, _| ()) }.unwrap();
        }
        let shared = world.shared_tables();
        let mut rest = world.frames.out.clone();
        // The kernel space's own tables (user half of space 0) remain.
        let mut own = BTreeSet::new();
        world.table.tables(&mut own);
        own.remove(&LEVEL_4);
        rest.retain(|f| !own.contains(f));
        prop_assert!(rest.is_empty(), "leaked {rest:x?}");
        prop_assert!(shared.is_subset(&world.frames.out));
    }
}

#[test]
fn clean_up_unshared_keeps_the_kernel_half() {
    let (mut table, mut frames) = kernel();
    let b = table
        .create_space(slot(), &kernel_half(), &mut frames)
        .unwrap();
    let user = 0x40_0000;
    {
        let mut view = table.edit(&b).unwrap();
        // SAFETY: emulated memory.
        let flush = unsafe {
            view.map_to(
                page(user),
                frame(DATA_START + 0x9000),
                F::PRESENT,
                &mut frames,
            )
        };
        flush.unwrap().flush();
        view.unmap(page(user)).unwrap().1.flush();
        let tables = view.page_tables().count();
        // SAFETY: the unshared tables are B's own.
        let freed = unsafe { view.clean_up_unshared(&kernel_half(), &mut frames) };
        assert_eq!(freed, 3); // the user level-3, -2 and -1 tables
        assert_eq!(view.page_tables().count(), tables - 3);
    }
    // In the kernel space too: the prepared, empty level-3 tables stay,
    // where a plain `clean_up` frees them (shared with B: B would then point
    // at freed frames).
    let before = frames.out.len();
    // SAFETY: nothing unshared to free but spares.
    let freed = unsafe { table.clean_up_unshared(&kernel_half(), &mut frames) };
    assert_eq!(freed, 0);
    assert_eq!(frames.out.len(), before);
    let mut probe = frames.out.clone();
    // SAFETY: emulated memory; this breaks B (its kernel half now points
    // at freed frames), which is what is shown here; B is not used again.
    let freed = unsafe { table.clean_up(&mut frames) };
    assert_eq!(
        freed,
        254 - 1,
        "every empty prepared level-3 table (one holds the kernel page)"
    );
    probe.retain(|f| !frames.out.contains(f));
    assert_eq!(probe.len(), freed);
}
