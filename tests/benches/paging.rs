//! Page-table benchmarks, side by side in one run: our `RecursivePageTable`
//! on the hardware backend (flushes off), `x86_64`'s `RecursivePageTable`
//! over the same user-space recursive window, `x86_64`'s `OffsetPageTable`
//! over a heap arena, and hand-written lower bounds.
//!
//! `cargo bench -p tests --bench paging` times every case with criterion;
//! with `BENCH_MODE=ir` under `valgrind --tool=callgrind --collect-atstart=no`
//! it counts instructions instead (one pass per case). `tests/bench.sh` runs
//! both and prints the table. Case names are `op/size/subject/pages`.
#![allow(
    clippy::inline_always,
    reason = "benchmark walks must inline exactly like the code they stand for"
)]
#![allow(
    clippy::redundant_closure_for_method_calls,
    reason = "`|f| f.ignore()` reads the same for every subject's flush-token type"
)]

#[path = "support/hand.rs"]
mod hand;
#[path = "support/valgrind.rs"]
mod valgrind;
#[path = "support/window.rs"]
mod window;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use framealloc::paging::{EntrySize, NoFlushMmu, RecursivePageTable as OurTable};
use framealloc::x86_64::structures::paging::mapper::{
    CleanUp, MappedFrame, Mapper, TranslateResult,
};
use framealloc::x86_64::structures::paging::{
    FrameAllocator, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags as Flags, PhysFrame,
    RecursivePageTable as X86Table, Size2MiB, Size4KiB, Translate,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

use window::{DATA_FRAMES_START, FakeFrames, LEVEL_4_FRAME, REGION, REGION_START, Window};

/// Page counts of every case.
const COUNTS: [u64; 3] = [1 << 10, 1 << 16, 1 << 18];
const MAP_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE);
const NEW_FLAGS: Flags = MAP_FLAGS.union(Flags::NO_EXECUTE);

#[inline(always)]
fn page<S: PageSize>(i: u64) -> Page<S> {
    Page::containing_address(VirtAddr::new_truncate(REGION_START + i * S::SIZE))
}

#[inline(always)]
fn frame<S: PageSize>(i: u64) -> PhysFrame<S> {
    PhysFrame::containing_address(PhysAddr::new_truncate(DATA_FRAMES_START + i * S::SIZE))
}

#[inline(always)]
fn resolved(result: TranslateResult) -> Option<u64> {
    match result {
        TranslateResult::Mapped { frame, offset, .. } => {
            let base = match frame {
                MappedFrame::Size4KiB(f) => f.start_address(),
                MappedFrame::Size2MiB(f) => f.start_address(),
                MappedFrame::Size1GiB(f) => f.start_address(),
            };
            Some(base.as_u64() + offset)
        }
        _ => None,
    }
}

/// One page-table implementation under test.
trait Subject<S: PageSize> {
    /// Short name used in case names and the table.
    const NAME: &'static str;
    /// Whether its tables live in the recursive window (so cold runs apply).
    const RECURSIVE: bool;
    /// Empties the region (its tables stay touched) and restarts the frame counter.
    fn reset(&mut self);
    /// As `reset`, and gives the region's table memory back to the kernel.
    fn make_cold(&mut self);
    /// Maps page `i` to frame `i` (tables created as needed).
    fn map(&mut self, page: Page<S>, frame: PhysFrame<S>) -> bool;
    /// Unmaps a page.
    fn unmap(&mut self, page: Page<S>) -> bool;
    /// Sets `NEW_FLAGS` on a page.
    fn update(&mut self, page: Page<S>) -> bool;
    /// Physical address of `addr`.
    fn translate(&self, addr: VirtAddr) -> Option<u64>;
    /// Frees the region's empty tables; returns how many.
    fn reclaim(&mut self) -> u64;
    /// Page-table frames handed out since the last reset.
    fn tables_allocated(&self) -> u64;
}

/// An implementation with whole-range operations.
trait RangeSubject<S: PageSize>: Subject<S> {
    fn map_range(&mut self, count: u64) -> bool;
    fn unmap_range(&mut self, count: u64) -> bool;
    fn update_range(&mut self, count: u64) -> bool;
}

// ------------------------------------------------------------------ ours

struct Ours<'w> {
    window: &'w mut Window,
    table: OurTable<NoFlushMmu>,
    frames: FakeFrames,
}

impl<'w> Ours<'w> {
    fn new(window: &'w mut Window) -> Self {
        let level_4 = PhysFrame::containing_address(PhysAddr::new(LEVEL_4_FRAME));
        // SAFETY: the window (borrowed for as long as the caller keeps the
        // subject) is ordinary memory laid out as a recursive hierarchy whose
        // level-4 table holds `level_4` in entry `RECURSIVE`; no TLB caches it.
        let mmu = unsafe { NoFlushMmu::without_flushes(level_4) };
        let table = OurTable::new(mmu, Window::recursive_index()).expect("window is recursive");
        Ours {
            window,
            table,
            frames: FakeFrames::new(),
        }
    }
}

impl<S: EntrySize> Subject<S> for Ours<'_> {
    const NAME: &'static str = "ours";
    const RECURSIVE: bool = true;
    fn reset(&mut self) {
        self.window.clear_region();
        self.frames.reset();
    }
    fn make_cold(&mut self) {
        self.window.make_cold();
        self.frames.reset();
    }
    #[inline(always)]
    fn map(&mut self, page: Page<S>, frame: PhysFrame<S>) -> bool {
        // SAFETY: fake frames; nothing is ever accessed through the mapping.
        unsafe { self.table.map_to(page, frame, MAP_FLAGS, &mut self.frames) }
            .map(|f| f.ignore())
            .is_ok()
    }
    #[inline(always)]
    fn unmap(&mut self, page: Page<S>) -> bool {
        self.table.unmap(page).map(|(_, f)| f.ignore()).is_ok()
    }
    #[inline(always)]
    fn update(&mut self, page: Page<S>) -> bool {
        // SAFETY: as in `map`.
        unsafe { self.table.update_flags(page, NEW_FLAGS) }
            .map(|f| f.ignore())
            .is_ok()
    }
    #[inline(always)]
    fn translate(&self, addr: VirtAddr) -> Option<u64> {
        resolved(self.table.translate(addr))
    }
    fn reclaim(&mut self) -> u64 {
        // SAFETY: the tables of this window belong to this hierarchy only.
        unsafe { self.table.clean_up(&mut self.frames) as u64 }
    }
    fn tables_allocated(&self) -> u64 {
        self.frames.allocated()
    }
}

impl<S: EntrySize> RangeSubject<S> for Ours<'_> {
    fn map_range(&mut self, count: u64) -> bool {
        let pages = Page::range(page::<S>(0), page::<S>(count));
        let frames = PhysFrame::range(frame::<S>(0), frame::<S>(count));
        // SAFETY: fake frames; nothing is ever accessed through the mapping.
        unsafe {
            self.table
                .map_range(pages, frames, MAP_FLAGS, &mut self.frames)
        }
        .map(|f| f.ignore())
        .is_ok()
    }
    fn unmap_range(&mut self, count: u64) -> bool {
        let pages = Page::range(page::<S>(0), page::<S>(count));
        self.table
            .unmap_range(pages, |_| {})
            .map(|f| f.ignore())
            .is_ok()
    }
    fn update_range(&mut self, count: u64) -> bool {
        let pages = Page::range(page::<S>(0), page::<S>(count));
        // SAFETY: as in `map_range`.
        unsafe { self.table.update_flags_range(pages, NEW_FLAGS) }
            .map(|f| f.ignore())
            .is_ok()
    }
}

// --------------------------------------------------- x86_64 recursive

struct X86Recursive<'w> {
    table: X86Table<'w>,
    frames: FakeFrames,
}

impl<'w> X86Recursive<'w> {
    fn new(window: &'w mut Window) -> Self {
        let level_4 = window.level_4_table();
        // SAFETY: the level-4 table is at its recursive address in the window
        // and its entry `RECURSIVE` points to itself (`new` would read CR3).
        let table = unsafe { X86Table::new_unchecked(level_4, Window::recursive_index()) };
        X86Recursive {
            table,
            frames: FakeFrames::new(),
        }
    }
}

impl<S: PageSize> Subject<S> for X86Recursive<'_>
where
    for<'a> X86Table<'a>: Mapper<S>,
{
    const NAME: &'static str = "x86rec";
    const RECURSIVE: bool = true;
    fn reset(&mut self) {
        self.table.level_4_table_mut()[REGION as usize].set_unused();
        self.frames.reset();
    }
    fn make_cold(&mut self) {
        <Self as Subject<S>>::reset(self);
        // SAFETY: `self.table` holds a reference to the level-4 table only,
        // which is not discarded; nothing else uses the window meanwhile.
        unsafe { window::discard_region_tables() };
    }
    #[inline(always)]
    fn map(&mut self, page: Page<S>, frame: PhysFrame<S>) -> bool {
        // SAFETY: fake frames; nothing is ever accessed through the mapping.
        unsafe { self.table.map_to(page, frame, MAP_FLAGS, &mut self.frames) }
            .map(|f| f.ignore())
            .is_ok()
    }
    #[inline(always)]
    fn unmap(&mut self, page: Page<S>) -> bool {
        self.table.unmap(page).map(|(_, f)| f.ignore()).is_ok()
    }
    #[inline(always)]
    fn update(&mut self, page: Page<S>) -> bool {
        // SAFETY: as in `map`.
        unsafe { self.table.update_flags(page, NEW_FLAGS) }
            .map(|f| f.ignore())
            .is_ok()
    }
    #[inline(always)]
    fn translate(&self, addr: VirtAddr) -> Option<u64> {
        resolved(Translate::translate(&self.table, addr))
    }
    fn reclaim(&mut self) -> u64 {
        let before = self.frames.freed;
        // SAFETY: the tables of this window belong to this hierarchy only.
        unsafe { self.table.clean_up(&mut self.frames) };
        self.frames.freed - before
    }
    fn tables_allocated(&self) -> u64 {
        self.frames.allocated()
    }
}

// ------------------------------------------------------ x86_64 offset

const ARENA_FRAMES: usize = 1024;

/// Frames 1.. of the arena, from a counter.
struct ArenaFrames {
    next: u64,
    freed: u64,
}

// SAFETY: the counter only grows between resets, and a reset happens only
// when every table of the region has been forgotten.
unsafe impl FrameAllocator<Size4KiB> for ArenaFrames {
    #[inline(always)]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if self.next >= ARENA_FRAMES as u64 {
            return None;
        }
        let frame = PhysFrame::containing_address(PhysAddr::new_truncate(self.next << 12));
        self.next += 1;
        Some(frame)
    }
}

impl framealloc::FrameDeallocator<Size4KiB> for ArenaFrames {
    unsafe fn deallocate_frame(&mut self, _frame: PhysFrame<Size4KiB>) {
        self.freed += 1;
    }
}

struct X86Offset {
    table: OffsetPageTable<'static>,
    frames: ArenaFrames,
}

impl X86Offset {
    fn new() -> Self {
        let arena: Box<[PageTable]> = (0..ARENA_FRAMES).map(|_| PageTable::new()).collect();
        let base = Box::into_raw(arena).cast::<PageTable>();
        // SAFETY: the arena is leaked, so it lives forever; physical address
        // `p` of every table frame handed out (all inside the arena) is at
        // `base + p`, and only this mapper uses the arena.
        let table = unsafe { OffsetPageTable::new(&mut *base, VirtAddr::from_ptr(base)) };
        X86Offset {
            table,
            frames: ArenaFrames { next: 1, freed: 0 },
        }
    }
}

impl<S: PageSize> Subject<S> for X86Offset
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    const NAME: &'static str = "x86off";
    const RECURSIVE: bool = false;
    fn reset(&mut self) {
        self.table.level_4_table_mut()[REGION as usize].set_unused();
        self.frames.next = 1;
    }
    fn make_cold(&mut self) {
        <Self as Subject<S>>::reset(self);
    }
    #[inline(always)]
    fn map(&mut self, page: Page<S>, frame: PhysFrame<S>) -> bool {
        // SAFETY: fake frames; nothing is ever accessed through the mapping.
        unsafe { self.table.map_to(page, frame, MAP_FLAGS, &mut self.frames) }
            .map(|f| f.ignore())
            .is_ok()
    }
    #[inline(always)]
    fn unmap(&mut self, page: Page<S>) -> bool {
        self.table.unmap(page).map(|(_, f)| f.ignore()).is_ok()
    }
    #[inline(always)]
    fn update(&mut self, page: Page<S>) -> bool {
        // SAFETY: as in `map`.
        unsafe { self.table.update_flags(page, NEW_FLAGS) }
            .map(|f| f.ignore())
            .is_ok()
    }
    #[inline(always)]
    fn translate(&self, addr: VirtAddr) -> Option<u64> {
        resolved(Translate::translate(&self.table, addr))
    }
    fn reclaim(&mut self) -> u64 {
        let before = self.frames.freed;
        // SAFETY: the arena's tables belong to this hierarchy only.
        unsafe { self.table.clean_up(&mut self.frames) };
        self.frames.freed - before
    }
    fn tables_allocated(&self) -> u64 {
        self.frames.next - 1
    }
}

// ------------------------------------------------------- hand-written

struct Hand<'w> {
    window: &'w mut Window,
    frames: FakeFrames,
}

impl<S: PageSize> Subject<S> for Hand<'_> {
    const NAME: &'static str = "hand";
    const RECURSIVE: bool = true;
    fn reset(&mut self) {
        self.window.clear_region();
        self.frames.reset();
    }
    fn make_cold(&mut self) {
        self.window.make_cold();
        self.frames.reset();
    }
    #[inline(always)]
    fn map(&mut self, page: Page<S>, frame: PhysFrame<S>) -> bool {
        let (v, p) = (
            page.start_address().as_u64(),
            frame.start_address().as_u64(),
        );
        // SAFETY: `self` holds the window exclusively.
        unsafe { hand::map::<S>(v, p, MAP_FLAGS.bits(), &mut self.frames) }.is_some()
    }
    #[inline(always)]
    fn unmap(&mut self, page: Page<S>) -> bool {
        // SAFETY: as in `map`.
        unsafe { hand::unmap::<S>(page.start_address().as_u64()) }.is_some()
    }
    #[inline(always)]
    fn update(&mut self, page: Page<S>) -> bool {
        // SAFETY: as in `map`.
        unsafe { hand::update_flags::<S>(page.start_address().as_u64(), NEW_FLAGS.bits()) }
            .is_some()
    }
    #[inline(always)]
    fn translate(&self, addr: VirtAddr) -> Option<u64> {
        // SAFETY: as in `map`.
        unsafe { hand::translate(addr.as_u64()) }
    }
    fn reclaim(&mut self) -> u64 {
        // SAFETY: as in `map`.
        unsafe { hand::reclaim(&mut self.frames) }
    }
    fn tables_allocated(&self) -> u64 {
        self.frames.allocated()
    }
}

impl<S: PageSize> RangeSubject<S> for Hand<'_> {
    fn map_range(&mut self, count: u64) -> bool {
        let (v, p) = (REGION_START, DATA_FRAMES_START);
        // SAFETY: as in `map`.
        unsafe { hand::map_range::<S>(v, count, p, MAP_FLAGS.bits(), &mut self.frames) }.is_some()
    }
    fn unmap_range(&mut self, count: u64) -> bool {
        // SAFETY: as in `map`.
        unsafe { hand::unmap_range::<S>(REGION_START, count) }.is_some()
    }
    fn update_range(&mut self, count: u64) -> bool {
        // SAFETY: as in `map`.
        unsafe { hand::update_range::<S>(REGION_START, count, NEW_FLAGS.bits()) }.is_some()
    }
}

// --------------------------------------------------------------- loops

#[cold]
#[inline(never)]
fn failed(what: &str, i: u64) -> ! {
    panic!("{what} failed at page {i}")
}

#[inline(never)]
fn map_all<S: PageSize, T: Subject<S>>(t: &mut T, n: u64) {
    for i in 0..n {
        if !t.map(page(i), frame(i)) {
            failed("map", i);
        }
    }
}

#[inline(never)]
fn unmap_all<S: PageSize, T: Subject<S>>(t: &mut T, n: u64) {
    for i in 0..n {
        if !t.unmap(page::<S>(i)) {
            failed("unmap", i);
        }
    }
}

#[inline(never)]
fn update_all<S: PageSize, T: Subject<S>>(t: &mut T, n: u64) {
    for i in 0..n {
        if !t.update(page::<S>(i)) {
            failed("update_flags", i);
        }
    }
}

/// Translates the pages in `order` (an address inside each) and sums the
/// results.
#[inline(never)]
fn translate_all<S: PageSize, T: Subject<S>>(t: &T, order: &[u32]) -> u64 {
    let mut sum = 0u64;
    for &i in order {
        let addr = page::<S>(u64::from(i)).start_address() + 0x18u64;
        match t.translate(addr) {
            Some(p) => sum = sum.wrapping_add(p),
            None => failed("translate", u64::from(i)),
        }
    }
    sum
}

fn expected_sum<S: PageSize>(order: &[u32]) -> u64 {
    order.iter().fold(0u64, |acc, &i| {
        acc.wrapping_add(frame::<S>(u64::from(i)).start_address().as_u64() + 0x18)
    })
}

/// A fixed pseudo-random permutation of `0..n` (xorshift, Fisher-Yates).
fn shuffled(n: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

// -------------------------------------------------------------- runner

/// Times with criterion, or counts instructions under callgrind.
enum Runner {
    Time(Box<Criterion>),
    Instructions,
}

impl Runner {
    /// Runs `op` on fresh state made by `setup` (untimed) and reports it as `name`.
    fn case<T>(
        &mut self,
        name: &str,
        state: &mut T,
        mut setup: impl FnMut(&mut T),
        mut op: impl FnMut(&mut T),
    ) {
        match self {
            Runner::Time(c) => {
                let mut group = c.benchmark_group(name);
                group.sampling_mode(SamplingMode::Flat);
                if name.starts_with("reclaim/") {
                    // Reclaim is cheap next to its set-up (fill and empty
                    // the region): a short measurement keeps the run short.
                    group
                        .sample_size(10)
                        .warm_up_time(Duration::from_millis(10))
                        .measurement_time(Duration::from_millis(20));
                }
                group.bench_function("t", |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            setup(state);
                            let start = Instant::now();
                            op(state);
                            total += start.elapsed();
                        }
                        total
                    });
                });
                group.finish();
            }
            Runner::Instructions => {
                if !valgrind::selected(name) {
                    return;
                }
                setup(state);
                valgrind::measure(name, || op(state));
            }
        }
    }

    fn timing(&self) -> bool {
        matches!(self, Runner::Time(_))
    }
}

fn size_name<S: PageSize>() -> &'static str {
    if S::SIZE == Size2MiB::SIZE {
        "2m"
    } else {
        "4k"
    }
}

/// Fills the region through `t` and checks a few translations.
fn filled<S: PageSize, T: Subject<S>>(t: &mut T, n: u64) {
    t.reset();
    map_all(t, n);
    for i in [0, n / 2, n - 1] {
        let addr = page::<S>(i).start_address();
        let want = frame::<S>(i).start_address().as_u64();
        assert_eq!(t.translate(addr), Some(want), "{} page {i}", T::NAME);
    }
}

/// Checks that nothing of the region is mapped any more.
fn emptied<S: PageSize, T: Subject<S>>(t: &T, n: u64) {
    for i in [0, n / 2, n - 1] {
        assert_eq!(
            t.translate(page::<S>(i).start_address()),
            None,
            "{} page {i}",
            T::NAME
        );
    }
}

/// Every per-page case of one subject at one size and count.
fn per_page_cases<S: PageSize, T: Subject<S>>(runner: &mut Runner, t: &mut T, n: u64) {
    let (size, who) = (size_name::<S>(), T::NAME);
    let name = |op: &str| format!("{op}/{size}/{who}/{n}");
    runner.case(&name("map"), t, |t| t.reset(), |t| map_all(t, n));
    if T::RECURSIVE && runner.timing() {
        runner.case(&name("map_cold"), t, |t| t.make_cold(), |t| map_all(t, n));
    }
    runner.case(&name("unmap"), t, |t| filled(t, n), |t| unmap_all(t, n));
    filled(t, n);
    unmap_all(t, n);
    emptied(t, n);
    filled(t, n);
    runner.case(&name("update"), t, |_| {}, |t| update_all(t, n));
    for (op, order) in [
        ("translate_seq", (0..n as u32).collect()),
        ("translate_rand", shuffled(n)),
    ] {
        let expected = expected_sum::<S>(&order);
        runner.case(
            &name(op),
            t,
            |_| {},
            |t| {
                assert_eq!(translate_all(t, &order), expected);
            },
        );
    }
    runner.case(
        &name("reclaim"),
        t,
        |t| {
            filled(t, n);
            unmap_all(t, n);
        },
        |t| {
            let tables = t.tables_allocated();
            assert_eq!(t.reclaim(), tables, "every table of the region is freed");
        },
    );
}

/// Range cases of one subject (the x86_64 loop is the per-page `map`/`unmap`/`update`).
fn range_cases<S: PageSize, T: RangeSubject<S>>(runner: &mut Runner, t: &mut T, n: u64) {
    let (size, who) = (size_name::<S>(), T::NAME);
    let name = |op: &str| format!("{op}/{size}/{who}/{n}");
    let fill = |t: &mut T| {
        t.reset();
        assert!(t.map_range(n));
        for i in [0, n / 2, n - 1] {
            let addr = page::<S>(i).start_address();
            assert_eq!(
                t.translate(addr),
                Some(frame::<S>(i).start_address().as_u64())
            );
        }
    };
    runner.case(
        &name("map_range"),
        t,
        |t| t.reset(),
        |t| assert!(t.map_range(n)),
    );
    fill(t);
    runner.case(
        &name("update_range"),
        t,
        |_| {},
        |t| assert!(t.update_range(n)),
    );
    runner.case(&name("unmap_range"), t, fill, |t| assert!(t.unmap_range(n)));
    fill(t);
    assert!(t.unmap_range(n));
    emptied(t, n);
}

fn sizes<S>(runner: &mut Runner, window: &mut Window, offset: &mut X86Offset)
where
    S: EntrySize,
    for<'a> X86Table<'a>: Mapper<S>,
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    for n in COUNTS {
        let mut ours = Ours::new(window);
        per_page_cases::<S, _>(runner, &mut ours, n);
        range_cases::<S, _>(runner, &mut ours, n);
        per_page_cases::<S, _>(runner, &mut X86Recursive::new(window), n);
        per_page_cases::<S, _>(runner, offset, n);
        let mut hand = Hand {
            window,
            frames: FakeFrames::new(),
        };
        per_page_cases::<S, _>(runner, &mut hand, n);
        range_cases::<S, _>(runner, &mut hand, n);
    }
}

// ------------------------------------------------------------- paired

/// The operations whose targets are ratios, timed interleaved.
#[derive(Clone, Copy)]
enum PairOp {
    Map,
    Unmap,
    TranslateSeq,
    TranslateRand,
    MapRange,
    UnmapRange,
}

/// One timed run of a per-page operation on freshly prepared state.
fn once<S: PageSize, T: Subject<S>>(t: &mut T, op: PairOp, n: u64, order: &[u32]) -> Duration {
    let expected = expected_sum::<S>(order);
    match op {
        PairOp::Map | PairOp::MapRange => t.reset(),
        _ => filled(t, n),
    }
    let start = Instant::now();
    match op {
        PairOp::Map | PairOp::MapRange => map_all(t, n),
        PairOp::Unmap | PairOp::UnmapRange => unmap_all(t, n),
        PairOp::TranslateSeq | PairOp::TranslateRand => {
            assert_eq!(translate_all(t, order), expected);
        }
    }
    start.elapsed()
}

/// One timed run of a range operation (falls back to `once` for the rest).
fn once_range<S: PageSize, T: RangeSubject<S>>(
    t: &mut T,
    op: PairOp,
    n: u64,
    order: &[u32],
) -> Duration {
    match op {
        PairOp::MapRange => {
            t.reset();
            let start = Instant::now();
            assert!(t.map_range(n));
            start.elapsed()
        }
        PairOp::UnmapRange => {
            t.reset();
            assert!(t.map_range(n));
            let start = Instant::now();
            assert!(t.unmap_range(n));
            start.elapsed()
        }
        _ => once(t, op, n, order),
    }
}

/// Times the target cases with ours, `x86_64`'s recursive table and the
/// hand-written bound alternating run by run, and prints the fastest run of
/// each as `pair <case> <ns per page>`. Interleaving exposes all three to the
/// same load on a shared machine, which keeps their ratios meaningful.
fn paired(window: &mut Window) {
    const ROUNDS: usize = 200;
    let cases = [
        ("map", PairOp::Map, 1u64 << 16),
        ("unmap", PairOp::Unmap, 1 << 16),
        ("translate_seq", PairOp::TranslateSeq, 1 << 16),
        ("translate_rand", PairOp::TranslateRand, 1 << 16),
        ("map_range", PairOp::MapRange, 1 << 18),
        ("unmap_range", PairOp::UnmapRange, 1 << 18),
    ];
    for (name, op, n) in cases {
        if !valgrind::selected(&format!("{name}/4k/")) {
            continue;
        }
        let order: Vec<u32> = match op {
            PairOp::TranslateRand => shuffled(n),
            _ => (0..n as u32).collect(),
        };
        let mut best = [Duration::MAX; 3];
        for _ in 0..ROUNDS {
            let ours = once_range::<Size4KiB, _>(&mut Ours::new(window), op, n, &order);
            let x86 = once::<Size4KiB, _>(&mut X86Recursive::new(window), op, n, &order);
            let mut hand = Hand {
                window: &mut *window,
                frames: FakeFrames::new(),
            };
            let hand = once_range::<Size4KiB, _>(&mut hand, op, n, &order);
            for (b, t) in best.iter_mut().zip([ours, x86, hand]) {
                *b = (*b).min(t);
            }
        }
        // The x86_64 column of a range row is its per-page loop.
        for (who, t) in ["ours", "x86rec", "hand"].iter().zip(best) {
            println!(
                "pair {name}/4k/{who}/{n} {:.4}",
                t.as_secs_f64() * 1e9 / f64::from(n as u32)
            );
        }
    }
}

fn main() {
    let mut window = Window::open();
    if std::env::var_os("BENCH_MODE").is_some_and(|m| m == "pairs") {
        paired(&mut window);
        return;
    }
    let mut offset = X86Offset::new();
    let mut runner = if valgrind::enabled() {
        valgrind::baseline();
        Runner::Instructions
    } else {
        Runner::Time(Box::new(
            Criterion::default()
                .warm_up_time(Duration::from_millis(100))
                .measurement_time(Duration::from_millis(400))
                .sample_size(20)
                .without_plots()
                .configure_from_args(),
        ))
    };
    sizes::<Size4KiB>(&mut runner, &mut window, &mut offset);
    sizes::<Size2MiB>(&mut runner, &mut window, &mut offset);
    if let Runner::Time(c) = runner {
        c.final_summary();
    }
}
