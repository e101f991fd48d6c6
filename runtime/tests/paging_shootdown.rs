//! TLB shootdowns on the multi-CPU emulator: with one, the other CPUs fault
//! after an unmap; frames reach the deallocator only once no CPU's TLB maps
//! them.

use std::cell::RefCell;

use framealloc::emu::{Cpus, Machine, OtherCpus};
use framealloc::paging::{
    FLUSH_ALL_THRESHOLD, FlushScope, Gather, Invalidations, RangeError, RecursivePageTable,
    Shootdown, SingleCpu,
};
use framealloc::x86_64::structures::paging::mapper::UnmapError;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags as Flags, PageTableIndex, PhysFrame,
    Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use proptest::prelude::*;

const R: u16 = 510;
/// Data pages live at `BASE + i * 4 KiB`, backed by `FRAMES + i * 4 KiB`.
const BASE: u64 = 0x40_0000;
const FRAMES: u64 = 0x100_0000;

struct Bump(u64);

// SAFETY: hands out each frame once, in emulated memory below `FRAMES`.
unsafe impl FrameAllocator<Size4KiB> for Bump {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.0 += 0x1000;
        Some(frame(self.0))
    }
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

fn page(i: u64) -> Page {
    Page::containing_address(VirtAddr::new(BASE + i * 0x1000))
}

fn cpus(count: usize) -> Cpus {
    let machine = Machine::with_recursive_table(PageTableIndex::new(R), frame(0x1000)).unwrap();
    Cpus::new(machine, count).unwrap()
}

fn table(machine: &mut Machine) -> RecursivePageTable<&mut Machine> {
    RecursivePageTable::new(machine, PageTableIndex::new(R)).unwrap()
}

/// Maps data pages `pages` (on CPU 0) and makes every CPU read each one, so
/// every TLB caches them.
fn map_and_cache(cpus: &mut Cpus, pages: core::ops::Range<u64>) {
    let mut tables = Bump(0x8_0000);
    let mut t = table(cpus.cpu(0).unwrap());
    for i in pages.clone() {
        let flags = Flags::PRESENT | Flags::WRITABLE;
        // SAFETY: emulated memory; each data frame is mapped once.
        unsafe { t.map_to(page(i), frame(FRAMES + i * 0x1000), flags, &mut tables) }
            .unwrap()
            .ignore();
    }
    for cpu in 0..cpus.len() {
        for i in pages.clone() {
            cpus.cpu(cpu)
                .unwrap()
                .read_u64(page(i).start_address())
                .unwrap();
        }
    }
}

/// A deallocator that, at each call, checks that no other CPU's TLB still
/// maps the frame, and records the frames and any violation.
struct Referee<'r, 'c> {
    others: &'r RefCell<OtherCpus<'c>>,
    cpus: usize,
    freed: Vec<PhysFrame>,
    violations: Vec<(PhysFrame, usize)>,
}

impl FrameDeallocator<Size4KiB> for Referee<'_, '_> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        let i = (frame.start_address().as_u64() - FRAMES) / 0x1000;
        let others = self.others.borrow();
        for cpu in 0..self.cpus {
            if others
                .cached(cpu, page(i).start_address())
                .is_some_and(|t| t.frame == frame.start_address())
            {
                self.violations.push((frame, cpu));
            }
        }
        self.freed.push(frame);
    }
}

/// The emulator's shootdown, shared with the referee through a `RefCell`.
struct Shared<'r, 'c>(&'r RefCell<OtherCpus<'c>>);

// SAFETY: forwards to `OtherCpus`.
unsafe impl Shootdown for Shared<'_, '_> {
    fn invalidate_others(&mut self, invalidations: &Invalidations) {
        self.0.borrow_mut().invalidate_others(invalidations);
    }
}

#[test]
fn unmap_with_shootdown_faults_on_the_other_cpu() {
    let mut cpus = cpus(3);
    map_and_cache(&mut cpus, 0..1);
    for cpu in 0..3 {
        cpus.cpu(cpu).unwrap().reset_counters();
    }
    let (first, mut others) = cpus.split(0).unwrap();
    let mut t = table(first);
    let mut freed = Vec::new();
    {
        let mut dealloc = Collect(&mut freed);
        let mut gather: Gather<'_, _, _> = Gather::new(&mut others, &mut dealloc);
        // SAFETY: the frame is only mapped here.
        unsafe { gather.unmap_and_free(&mut t, page(0)) }.unwrap();
        assert_eq!(gather.held(), 1);
        assert!(!gather.pending().is_empty());
        gather.finish();
    }
    assert_eq!(freed, [frame(FRAMES)]);
    for cpu in 0..3 {
        assert!(
            cpus.cpu(cpu)
                .unwrap()
                .read_u64(page(0).start_address())
                .is_err()
        );
        assert_eq!(cpus.cpu(cpu).unwrap().counters().invlpg, 1, "CPU {cpu}");
    }
}

struct Collect<'v>(&'v mut Vec<PhysFrame>);

impl FrameDeallocator<Size4KiB> for Collect<'_> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.0.push(frame);
    }
}

/// Unmaps `pages` on CPU 0 through a gather with buffer `N` and the given
/// shootdown (`true`: the emulator's, `false`: none); returns the frames
/// freed and the violations the referee saw.
fn unmap_refereed<const N: usize>(
    cpus: &mut Cpus,
    pages: core::ops::Range<u64>,
    ranged: bool,
    shoot: bool,
) -> (Vec<PhysFrame>, Vec<(PhysFrame, usize)>) {
    let count = cpus.len();
    let (first, others) = cpus.split(0).unwrap();
    let mut t = table(first);
    let others = RefCell::new(others);
    let mut referee = Referee {
        others: &others,
        cpus: count,
        freed: Vec::new(),
        violations: Vec::new(),
    };
    let mut shared = Shared(&others);
    let mut single = SingleCpu;
    let shootdown: &mut dyn Shootdown = if shoot { &mut shared } else { &mut single };
    {
        let mut gather: Gather<'_, _, _, Size4KiB, N> = Gather::new(shootdown, &mut referee);
        if ranged {
            // SAFETY: the data frames are only mapped here.
            unsafe {
                gather.unmap_range_and_free(&mut t, Page::range(page(pages.start), page(pages.end)))
            }
            .unwrap();
        } else {
            for i in pages {
                // SAFETY: as above.
                unsafe { gather.unmap_and_free(&mut t, page(i)) }.unwrap();
                // This CPU forgot the page before its frame was even held.
                assert!(t.backend().cached(page(i).start_address()).is_none());
            }
        }
    }
    (referee.freed, referee.violations)
}

#[test]
fn the_referee_catches_frames_freed_without_a_shootdown() {
    let mut cpus = cpus(3);
    map_and_cache(&mut cpus, 0..4);
    let (freed, violations) = unmap_refereed::<2>(&mut cpus, 0..4, false, false);
    assert_eq!(freed.len(), 4);
    // Every frame was still mapped by CPUs 1 and 2 when freed.
    assert_eq!(violations.len(), 8);
}

#[test]
fn frames_are_freed_only_after_every_cpu_forgot_them() {
    for (n_pages, ranged) in [
        (1, false),
        (5, false),
        (40, false),
        (5, true),
        (40, true),
        (100, true),
    ] {
        let mut cpus = cpus(3);
        map_and_cache(&mut cpus, 0..n_pages);
        let (freed, violations) = unmap_refereed::<4>(&mut cpus, 0..n_pages, ranged, true);
        assert_eq!(freed.len() as u64, n_pages);
        assert_eq!(violations, [], "{n_pages} pages, ranged: {ranged}");
        for cpu in 0..3 {
            for i in 0..n_pages {
                assert!(
                    cpus.cpu(cpu)
                        .unwrap()
                        .read_u64(page(i).start_address())
                        .is_err()
                );
            }
        }
    }
    // With no buffer at all, each frame is shot down and freed on its own.
    let mut cpus = cpus(2);
    map_and_cache(&mut cpus, 0..6);
    let (freed, violations) = unmap_refereed::<0>(&mut cpus, 0..6, true, true);
    assert_eq!((freed.len(), violations.len()), (6, 0));
}

#[test]
fn only_the_cpus_with_the_address_space_are_shot_down() {
    let mut cpus = cpus(3);
    map_and_cache(&mut cpus, 0..1);
    // CPU 2 switches away (its TLB is flushed by the CR3 write).
    cpus.cpu(2).unwrap().set_cr3(frame(0x7000));
    cpus.cpu(2).unwrap().reset_counters();
    let (first, mut others) = cpus.split(0).unwrap();
    others.only_with_cr3(Some(frame(0x1000)));
    let mut t = table(first);
    let mut freed = Vec::new();
    let mut dealloc = Collect(&mut freed);
    let mut gather: Gather<'_, _, _> = Gather::new(&mut others, &mut dealloc);
    // SAFETY: the frame is only mapped here.
    unsafe { gather.unmap_and_free(&mut t, page(0)) }.unwrap();
    drop(gather); // dropping shoots down and frees too
    assert_eq!(freed.len(), 1);
    assert_eq!(cpus.cpu(1).unwrap().counters().invlpg, 1);
    assert_eq!(cpus.cpu(2).unwrap().counters().invlpg, 0);
}

#[test]
fn invalidations_follow_the_token_decisions() {
    let start = VirtAddr::new(BASE);
    let pages = |count| FlushScope::Pages {
        start,
        count,
        page_size: 4096,
    };
    let mut inv = Invalidations::new();
    assert!(inv.is_empty());
    inv.add(FlushScope::Nothing);
    assert!(inv.is_empty());
    inv.add(pages(FLUSH_ALL_THRESHOLD));
    assert_eq!(inv.runs().len(), 1);
    assert!(!inv.is_full_flush() && !inv.is_global_flush());
    // A run longer than the threshold is global (the token kept it per page).
    inv.add(pages(FLUSH_ALL_THRESHOLD + 10));
    assert_eq!(inv.runs().len(), 2);
    assert!(!inv.is_global_flush());
    inv.add(FlushScope::All);
    assert!(inv.is_full_flush());
    assert_eq!(inv.runs().len(), 2);
    // One more page than the threshold allows: a flush of everything.
    inv.add(pages(1));
    assert!(inv.is_global_flush());
    assert!(inv.runs().is_empty());

    let mut inv = Invalidations::new();
    for _ in 0..framealloc::paging::MAX_RUNS {
        inv.add(pages(1));
    }
    assert!(!inv.is_global_flush());
    inv.add(pages(1));
    assert!(inv.is_global_flush());
}

#[test]
fn a_global_page_is_shot_down_through_a_cr3_switch() {
    let mut cpus = cpus(2);
    let mut tables = Bump(0x8_0000);
    {
        let mut t = table(cpus.cpu(0).unwrap());
        let flags = Flags::PRESENT | Flags::GLOBAL;
        // SAFETY: emulated memory, frame used once.
        unsafe { t.map_to(page(0), frame(FRAMES), flags, &mut tables) }
            .unwrap()
            .ignore();
    }
    cpus.cpu(1)
        .unwrap()
        .read_u64(page(0).start_address())
        .unwrap();
    // CPU 1 switches address space: the global translation survives.
    cpus.cpu(1).unwrap().set_cr3(frame(0x7000));
    let (first, mut others) = cpus.split(0).unwrap();
    let mut t = table(first);
    let mut freed = Vec::new();
    let mut dealloc = Collect(&mut freed);
    let mut gather: Gather<'_, _, _> = Gather::new(&mut others, &mut dealloc);
    // SAFETY: the frame is only mapped here.
    unsafe { gather.unmap_and_free(&mut t, page(0)) }.unwrap();
    gather.finish();
    assert_eq!(cpus.cached(1, page(0).start_address()), None);
}

#[test]
fn a_range_error_still_records_and_holds_what_was_done() {
    let mut cpus = cpus(2);
    map_and_cache(&mut cpus, 0..3);
    let (first, mut others) = cpus.split(0).unwrap();
    let mut t = table(first);
    let mut freed = Vec::new();
    let mut dealloc = Collect(&mut freed);
    let mut gather: Gather<'_, _, _, Size4KiB, 2> = Gather::new(&mut others, &mut dealloc);
    // SAFETY: the data frames are only mapped here.
    let result = unsafe { gather.unmap_range_and_free(&mut t, Page::range(page(0), page(5))) };
    match result {
        Err(RangeError::Stopped {
            done: 3,
            error: UnmapError::PageNotMapped,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    gather.finish();
    assert_eq!(freed.len(), 3);
    for i in 0..3 {
        assert_eq!(cpus.cached(1, page(i).start_address()), None);
    }
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    /// CPU `cpu` reads data page `page` (caching it if mapped).
    Read { cpu: usize, page: u64 },
    /// CPU `cpu` maps data page `page` to the next free frame.
    Map { cpu: usize, page: u64 },
    /// CPU `cpu` unmaps pages `start..start + len` (those mapped) through a
    /// gather with a shootdown.
    Unmap { cpu: usize, start: u64, len: u64 },
    /// CPU `cpu` switches to the other address space or back.
    Switch { cpu: usize },
}

const CPUS: usize = 3;
const PAGES: u64 = 6;

fn op() -> impl Strategy<Value = Op> {
    let cpu = 0..CPUS;
    prop_oneof![
        (cpu.clone(), 0..PAGES).prop_map(|(cpu, page)| Op::Read { cpu, page }),
        (cpu.clone(), 0..PAGES).prop_map(|(cpu, page)| Op::Map { cpu, page }),
        (cpu.clone(), 0..PAGES, 1..=PAGES).prop_map(|(cpu, start, len)| Op::Unmap {
            cpu,
            start,
            len
        }),
        cpu.prop_map(|cpu| Op::Switch { cpu }),
    ]
}

proptest! {
    /// Random maps, reads, gathered unmaps and address-space switches on
    /// random CPUs: every read sees exactly the current mapping (no CPU
    /// reads a frame after its unmap), and no frame is freed while another
    /// CPU's TLB maps it.
    #[test]
    fn random_operations_on_random_cpus(ops in proptest::collection::vec(op(), 1..80)) {
        let mut cpus = cpus(CPUS);
        // The other address space: an empty level-4 table, recursive.
        let other = frame(0x7000);
        let recursive = 0x7000 | (Flags::PRESENT | Flags::WRITABLE).bits();
        cpus.memory_mut().write_entry(other, PageTableIndex::new(R), recursive);
        let main = frame(0x1000);
        let mut tables = Bump(0x8_0000);
        let mut mapped: Vec<Option<u64>> = vec![None; PAGES as usize];
        let mut next_frame = 0u64;
        for op in ops {
            match op {
                Op::Read { cpu, page: p } => {
                    let m = cpus.cpu(cpu).unwrap();
                    let got = m.translate(page(p).start_address(), framealloc::emu::Access::KERNEL_READ).ok();
                    let want = if m.cr3() == main { mapped[p as usize] } else { None };
                    prop_assert_eq!(got.map(PhysAddr::as_u64), want, "{:?}", op);
                }
                Op::Map { cpu, page: p } => {
                    if mapped[p as usize].is_some() || cpus.cr3(cpu) != Some(main) {
                        continue;
                    }
                    let phys = FRAMES + next_frame * 0x1000;
                    next_frame += 1;
                    let mut t = table(cpus.cpu(cpu).unwrap());
                    // SAFETY: emulated memory; every frame is mapped once.
                    unsafe { t.map_to(page(p), frame(phys), Flags::PRESENT, &mut tables) }.unwrap().ignore();
                    mapped[p as usize] = Some(phys);
                }
                Op::Unmap { cpu, start, len } => {
                    if cpus.cr3(cpu) != Some(main) {
                        continue;
                    }
                    let end = (start + len).min(PAGES);
                    let (machine, mut others) = cpus.split(cpu).unwrap();
                    others.only_with_cr3(Some(main));
                    let targets = others.targets();
                    let mut t = table(machine);
                    let others = RefCell::new(others);
                    let mut referee = Referee { others: &others, cpus: CPUS, freed: Vec::new(), violations: Vec::new() };
                    {
                        let mut shared = Shared(&others);
                        let mut gather: Gather<'_, _, _, Size4KiB, 4> = Gather::new(&mut shared, &mut referee);
                        for p in start..end {
                            if mapped[p as usize].take().is_some() {
                                // SAFETY: each data frame is mapped once.
                                unsafe { gather.unmap_and_free(&mut t, page(p)) }.unwrap();
                            }
                        }
                    }
                    prop_assert_eq!(&referee.violations, &[], "targets {:?}", targets);
                }
                Op::Switch { cpu } => {
                    let m = cpus.cpu(cpu).unwrap();
                    let to = if m.cr3() == main { other } else { main };
                    m.set_cr3(to);
                }
            }
        }
    }
}

#[test]
fn invalidations_perform_on_a_backend() {
    let mut cpus = cpus(1);
    let mut tables = Bump(0x8_0000);
    let mut t = table(cpus.cpu(0).unwrap());
    for i in 0..3 {
        let flags = if i == 2 {
            Flags::PRESENT | Flags::GLOBAL
        } else {
            Flags::PRESENT
        };
        // SAFETY: emulated memory; each data frame is mapped once.
        unsafe { t.map_to(page(i), frame(FRAMES + i * 0x1000), flags, &mut tables) }
            .unwrap()
            .ignore();
    }
    let m = cpus.cpu(0).unwrap();
    let cache_all = |m: &mut Machine| {
        for i in 0..3 {
            m.read_u64(page(i).start_address()).unwrap();
        }
        m.reset_counters();
    };
    let cached = |m: &Machine| {
        (0..3)
            .filter(|&i| m.cached(page(i).start_address()).is_some())
            .count()
    };

    cache_all(m);
    let mut inv = Invalidations::new();
    inv.add(FlushScope::Pages {
        start: page(0).start_address(),
        count: 2,
        page_size: 4096,
    });
    inv.perform(m);
    assert_eq!((m.counters().invlpg, m.counters().full_flushes), (2, 0));
    assert_eq!(cached(m), 1);

    cache_all(m);
    let mut inv = Invalidations::new();
    inv.add(FlushScope::All);
    inv.perform(m);
    assert_eq!((m.counters().invlpg, m.counters().full_flushes), (0, 1));
    assert_eq!(cached(m), 1, "the global page survives a full flush");

    cache_all(m);
    let mut inv = Invalidations::new();
    inv.add(FlushScope::Pages {
        start: page(0).start_address(),
        count: FLUSH_ALL_THRESHOLD,
        page_size: 4096,
    });
    inv.add(FlushScope::Pages {
        start: page(2).start_address(),
        count: 1,
        page_size: 4096,
    });
    assert!(inv.is_global_flush());
    inv.perform(m);
    assert_eq!((m.counters().invlpg, m.counters().full_flushes), (0, 1));
    assert_eq!(
        cached(m),
        0,
        "a flush of everything drops the global page too"
    );
}
