//! The scenarios, in the order they run.

use framealloc::x86_64::structures::paging::page::PageRange;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageSize, PageTableFlags as Flags, PhysFrame, Size1GiB,
    Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{FramePool, NoAllocator};

use crate::macros::{derive_frame_allocator, frame_allocator_macro};
use crate::spaces::{
    space_bad_recursive_entry_refused, space_build_switch_destroy,
    space_slot_reused_for_another_space,
};
use crate::{Env, Failure, Fault, Outcome, PagingError, Platform, Translation};

/// One named scenario.
pub struct Scenario<P> {
    /// Stable name, reported by both machines.
    pub name: &'static str,
    /// The steps.
    pub run: fn(&mut P, &mut Env<'_>) -> Outcome,
}

impl<P> Clone for Scenario<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Scenario<P> {}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// The names of all scenarios, in the order [`all`] runs them.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        /// Every scenario, in order.
        pub fn all<P: Platform>() -> impl Iterator<Item = Scenario<P>> {
            [$(Scenario::<P> { name: stringify!($name), run: $name::<P> }),*].into_iter()
        }
    };
}

scenarios![
    map_write_read_alias,
    unmap_then_access_faults,
    remap_sees_new_frame,
    huge_page_2mib,
    huge_page_1gib,
    update_flags_read_only,
    translate,
    range_map_10000,
    range_update_10000,
    range_unmap_10000,
    reclaim_then_remap,
    reclaim_invalidates_table_addresses,
    reclaim_keeps_used_tables,
    adapters_closure_pool_none,
    derive_frame_allocator,
    frame_allocator_macro,
    global_range_unmap,
    global_parent_upgrade,
    global_parent_flags_stay_in_their_space,
    set_flags_p2_entry_drops_global_translations,
    unmap_under_read_only_parent,
    address_space_switch_global_kernel_pages,
    space_build_switch_destroy,
    space_slot_reused_for_another_space,
    space_bad_recursive_entry_refused,
];

pub(crate) const RW: Flags = Flags::PRESENT.union(Flags::WRITABLE);
const RANGE_PAGES: u64 = 10_000;

pub(crate) fn ensure(condition: bool, what: &'static str) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure::new(what))
    }
}

pub(crate) fn paging(
    result: Result<impl Sized, PagingError>,
    what: &'static str,
) -> Result<(), Failure> {
    result.map(drop).map_err(|_| Failure::new(what))
}

pub(crate) fn read(
    p: &mut impl Platform,
    addr: VirtAddr,
    what: &'static str,
) -> Result<u64, Failure> {
    p.read_u64(addr)
        .map_err(|fault| Failure::fault(what, fault))
}

pub(crate) fn write(
    p: &mut impl Platform,
    addr: VirtAddr,
    value: u64,
    what: &'static str,
) -> Result<(), Failure> {
    p.write_u64(addr, value)
        .map_err(|fault| Failure::fault(what, fault))
}

pub(crate) fn expect(
    p: &mut impl Platform,
    addr: VirtAddr,
    want: u64,
    what: &'static str,
) -> Result<(), Failure> {
    let got = read(p, addr, what)?;
    if got == want {
        Ok(())
    } else {
        Err(Failure::with(what, got))
    }
}

pub(crate) fn faults(
    result: Result<impl Copy, Fault>,
    addr: VirtAddr,
    what: &'static str,
) -> Result<Fault, Failure> {
    match result {
        Ok(_) => Err(Failure::new(what)),
        Err(fault) if fault.addr == addr => Ok(fault),
        Err(fault) => Err(Failure::fault("fault at an unexpected address", fault)),
    }
}

pub(crate) fn frame(env: &mut Env<'_>) -> Result<PhysFrame<Size4KiB>, Failure> {
    env.frames
        .allocate_frame()
        .ok_or(Failure::new("out of frames"))
}

pub(crate) fn page<S: PageSize>(env: &Env<'_>, offset: u64) -> Page<S> {
    Page::containing_address(env.base + offset)
}

fn pattern(seed: u64, i: u64) -> u64 {
    (seed ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// Map two pages to one frame; bytes written through one are read through the other.
fn map_write_read_alias<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let f = frame(env)?;
    let (a, b) = (
        page::<Size4KiB>(env, 0x1000),
        page::<Size4KiB>(env, 0x20_0000 + 0x5000),
    );
    paging(p.map_4k(a, f, RW, env.frames), "map first page")?;
    paging(p.map_4k(b, f, RW, env.frames), "map alias page")?;
    for i in 0..512 {
        write(
            p,
            a.start_address() + i * 8,
            pattern(1, i),
            "write through first page",
        )?;
    }
    for i in 0..512 {
        expect(
            p,
            b.start_address() + i * 8,
            pattern(1, i),
            "alias reads what was written",
        )?;
    }
    write(p, b.start_address() + 8, 77, "write through alias")?;
    expect(p, a.start_address() + 8, 77, "first page sees alias write")?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap first page returns the frame")?;
    ensure(p.unmap_4k(b) == Ok(f), "unmap alias returns the frame")?;
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

/// After `unmap`, both reads and writes page-fault (not-present faults).
fn unmap_then_access_faults<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let f = frame(env)?;
    let a = page::<Size4KiB>(env, 0x7000);
    let addr = a.start_address() + 0x18u64;
    paging(p.map_4k(a, f, RW, env.frames), "map")?;
    write(p, addr, 0x1234, "write mapped page")?;
    expect(p, addr, 0x1234, "read mapped page")?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap returns the frame")?;
    let fault = faults(p.read_u64(addr), addr, "read after unmap did not fault")?;
    ensure(
        !fault.is_protection() && !fault.is_write(),
        "read fault is a not-present read fault",
    )?;
    let fault = faults(
        p.write_u64(addr, 1),
        addr,
        "write after unmap did not fault",
    )?;
    ensure(
        !fault.is_protection() && fault.is_write(),
        "write fault is a not-present write fault",
    )?;
    ensure(
        p.unmap_4k(a) == Err(PagingError::NotMapped),
        "second unmap reports not mapped",
    )?;
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

/// Unmap a page that was just used and map it to another frame: reads see
/// the new frame's data (a stale TLB entry would show the old frame's).
fn remap_sees_new_frame<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (old, new) = (frame(env)?, frame(env)?);
    let a = page::<Size4KiB>(env, 0x3000);
    let alias = page::<Size4KiB>(env, 0x40_0000);
    paging(
        p.map_4k(alias, new, RW, env.frames),
        "map alias of new frame",
    )?;
    write(p, alias.start_address(), 0xbbbb, "fill new frame")?;
    paging(p.map_4k(a, old, RW, env.frames), "map old frame")?;
    write(p, a.start_address(), 0xaaaa, "fill old frame")?;
    expect(p, a.start_address(), 0xaaaa, "read old frame")?;
    ensure(p.unmap_4k(a) == Ok(old), "unmap old")?;
    paging(p.map_4k(a, new, RW, env.frames), "map new frame")?;
    expect(
        p,
        a.start_address(),
        0xbbbb,
        "after remap the page shows the new frame",
    )?;
    ensure(p.unmap_4k(a) == Ok(new), "unmap new")?;
    ensure(p.unmap_4k(alias) == Ok(new), "unmap alias")?;
    // SAFETY: neither frame is mapped any more.
    unsafe {
        env.frames.deallocate_frame(old);
        env.frames.deallocate_frame(new);
    }
    Ok("")
}

type MapFn<P, S> = fn(&mut P, Page<S>, PhysFrame<S>, &mut Env<'_>) -> Result<(), PagingError>;

/// Write through a 4 KiB page, read the same bytes through a huge page that
/// covers the frame, then unmap the huge page and see it fault.
fn huge_alias<P: Platform, S: PageSize>(
    p: &mut P,
    env: &mut Env<'_>,
    map: MapFn<P, S>,
    unmap: fn(&mut P, Page<S>) -> Result<PhysFrame<S>, PagingError>,
) -> Outcome {
    let f = frame(env)?;
    let small = page::<Size4KiB>(env, 0x1000);
    let huge = page::<S>(env, S::SIZE * 2);
    let big = PhysFrame::<S>::containing_address(f.start_address());
    let offset = f.start_address() - big.start_address();
    paging(p.map_4k(small, f, RW, env.frames), "map 4 KiB page")?;
    for i in 0..8 {
        write(
            p,
            small.start_address() + i * 512,
            pattern(S::SIZE, i),
            "write 4 KiB page",
        )?;
    }
    paging(map(p, huge, big, env), "map huge page")?;
    for i in 0..8 {
        expect(
            p,
            huge.start_address() + offset + i * 512,
            pattern(S::SIZE, i),
            "huge page reads the frame",
        )?;
    }
    let probe = huge.start_address() + offset + 8;
    match p.translate(probe) {
        Translation::Mapped { addr, size, flags } => {
            ensure(
                addr == f.start_address() + 8,
                "translate gives the frame's address",
            )?;
            ensure(size == S::SIZE, "translate reports the huge size")?;
            ensure(flags.contains(Flags::HUGE_PAGE), "huge entry has HUGE_PAGE")?;
        }
        Translation::NotMapped => return Err(Failure::new("huge page not translated")),
    }
    ensure(unmap(p, huge) == Ok(big), "unmap huge returns its frame")?;
    faults(
        p.read_u64(probe),
        probe,
        "huge page still readable after unmap",
    )?;
    expect(
        p,
        small.start_address(),
        pattern(S::SIZE, 0),
        "4 KiB page unaffected",
    )?;
    ensure(p.unmap_4k(small) == Ok(f), "unmap 4 KiB page")?;
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

fn huge_page_2mib<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    huge_alias::<P, Size2MiB>(
        p,
        env,
        |p, page, frame, env| p.map_2m(page, frame, RW | Flags::HUGE_PAGE, env.frames),
        P::unmap_2m,
    )
}

fn huge_page_1gib<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    huge_alias::<P, Size1GiB>(
        p,
        env,
        |p, page, frame, env| p.map_1g(page, frame, RW | Flags::HUGE_PAGE, env.frames),
        P::unmap_1g,
    )
}

/// A page made read-only faults on write (protection fault) but still reads;
/// made writable again, it takes writes.
fn update_flags_read_only<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let f = frame(env)?;
    let a = page::<Size4KiB>(env, 0x9000);
    let addr = a.start_address() + 0x100u64;
    paging(p.map_4k(a, f, RW, env.frames), "map")?;
    write(p, addr, 5, "write while writable")?;
    paging(p.update_flags_4k(a, Flags::PRESENT), "make read-only")?;
    let fault = faults(
        p.write_u64(addr, 6),
        addr,
        "write to read-only page did not fault",
    )?;
    ensure(
        fault.is_protection() && fault.is_write(),
        "fault is a protection write fault",
    )?;
    expect(p, addr, 5, "read-only page still reads the old value")?;
    paging(p.update_flags_4k(a, RW), "make writable again")?;
    write(p, addr, 7, "write after making writable")?;
    expect(p, addr, 7, "read back")?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap")?;
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

/// `translate` agrees with what was mapped, and with nothing after unmap.
fn translate<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let f = frame(env)?;
    let a = page::<Size4KiB>(env, 0x1234_5000);
    let addr = a.start_address() + 0xabcu64;
    ensure(
        p.translate(addr) == Translation::NotMapped,
        "unmapped address translates",
    )?;
    paging(p.map_4k(a, f, RW | Flags::NO_EXECUTE, env.frames), "map")?;
    match p.translate(addr) {
        Translation::Mapped {
            addr: phys,
            flags,
            size,
        } => {
            ensure(phys == f.start_address() + 0xabc, "physical address")?;
            ensure(size == Size4KiB::SIZE, "size")?;
            ensure(flags.contains(RW | Flags::NO_EXECUTE), "flags")?;
        }
        Translation::NotMapped => return Err(Failure::new("mapped address does not translate")),
    }
    ensure(
        p.translate(addr + 0x1000u64) == Translation::NotMapped,
        "next page translates",
    )?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap")?;
    ensure(
        p.translate(addr) == Translation::NotMapped,
        "translates after unmap",
    )?;
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

/// The 10,000-page range used by the range scenarios: mapped to consecutive
/// frames, each page holding its own index.
fn map_big_range<P: Platform>(
    p: &mut P,
    env: &mut Env<'_>,
) -> Result<(PageRange<Size4KiB>, PhysFrame<Size4KiB>), Failure> {
    let first = env
        .frames
        .allocate_contiguous(RANGE_PAGES as usize)
        .ok_or(Failure::new("out of frames"))?;
    // Start just below a 2 MiB boundary so the range spans several tables.
    let start = page::<Size4KiB>(env, 0x001f_f000);
    let pages = Page::range(start, start + RANGE_PAGES);
    paging(p.map_range_4k(pages, first, RW, env.frames), "map range")?;
    for (i, page) in pages.enumerate() {
        write(
            p,
            page.start_address() + 8u64,
            i as u64 ^ 0x5a5a,
            "write every page of the range",
        )?;
    }
    Ok((pages, first))
}

fn free_big_range(env: &mut Env<'_>, first: PhysFrame<Size4KiB>) {
    // SAFETY: the range's pages are unmapped by the caller.
    unsafe {
        env.frames
            .deallocate_contiguous(first, RANGE_PAGES as usize);
    };
}

/// Map 10,000 pages in one call; every page shows its own frame.
fn range_map_10000<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (pages, first) = map_big_range(p, env)?;
    for (i, page) in pages.enumerate() {
        expect(
            p,
            page.start_address() + 8u64,
            i as u64 ^ 0x5a5a,
            "every page reads back",
        )?;
    }
    for i in [0, 1, 511, 512, 4321, RANGE_PAGES - 1] {
        let want = (first + i).start_address() + 0x10u64;
        match p.translate((pages.start + i).start_address() + 0x10u64) {
            Translation::Mapped { addr, .. } if addr == want => {}
            _ => return Err(Failure::with("range page translates to its frame", i)),
        }
    }
    paging(p.unmap_range_4k(pages), "unmap range")?;
    free_big_range(env, first);
    Ok("")
}

/// Make 10,000 used pages read-only in one call: every write faults, every
/// read still works; then writable again.
fn range_update_10000<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (pages, first) = map_big_range(p, env)?;
    paging(
        p.update_range_4k(pages, Flags::PRESENT),
        "update range to read-only",
    )?;
    // Most recently used first: those are the translations a finite TLB
    // (QEMU's) still holds.
    for i in (0..RANGE_PAGES).rev() {
        let addr = (pages.start + i).start_address() + 8u64;
        let fault = faults(
            p.write_u64(addr, 0),
            addr,
            "write to read-only range page did not fault",
        )?;
        ensure(fault.is_protection(), "protection fault")?;
        expect(p, addr, i ^ 0x5a5a, "read-only range page reads")?;
    }
    paging(p.update_range_4k(pages, RW), "update range to writable")?;
    for page in pages {
        write(p, page.start_address(), 1, "range page writable again")?;
    }
    paging(p.unmap_range_4k(pages), "unmap range")?;
    free_big_range(env, first);
    Ok("")
}

/// Unmap 10,000 used pages in one call: every one of them faults.
fn range_unmap_10000<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (pages, first) = map_big_range(p, env)?;
    paging(p.unmap_range_4k(pages), "unmap range")?;
    for i in (0..RANGE_PAGES).rev() {
        let addr = (pages.start + i).start_address() + 8u64;
        faults(p.read_u64(addr), addr, "unmapped range page still readable")?;
    }
    ensure(
        p.translate(pages.start.start_address()) == Translation::NotMapped,
        "first page translates",
    )?;
    free_big_range(env, first);
    Ok("")
}

/// Map pages (creating level-3, -2 and -1 tables), use them, unmap them,
/// reclaim the now-empty tables, then map the same pages again to new frames
/// and read their data. The freed tables' recursive addresses were in use
/// just before: unless reclaim (or the next table creation) flushes them,
/// the second round writes its new tables through stale translations.
fn reclaim_then_remap<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let first = page::<Size4KiB>(env, 0x4000_0000);
    let pages = Page::range(first, first + 4);
    let before = env.frames.used();
    let (a, b) = (frame(env)?, frame(env)?);
    let pick = |i: u64, swap: bool| if i.is_multiple_of(2) == swap { b } else { a };
    for (i, page) in (0u64..).zip(pages) {
        paging(p.map_4k(page, pick(i, false), RW, env.frames), "first map")?;
    }
    write(
        p,
        first.start_address(),
        0xaaaa,
        "first round writes frame a",
    )?;
    write(
        p,
        (first + 1).start_address(),
        0xbbbb,
        "first round writes frame b",
    )?;
    for (i, page) in (0u64..).zip(pages) {
        ensure(p.unmap_4k(page) == Ok(pick(i, false)), "first unmap")?;
    }
    paging(
        p.reclaim(Page::range_inclusive(first, first + 3), env.frames),
        "reclaim",
    )?;
    ensure(
        env.frames.used() == before + 2,
        "reclaim frees the three tables",
    )?;

    for (i, page) in (0u64..).zip(pages) {
        paging(p.map_4k(page, pick(i, true), RW, env.frames), "second map")?;
    }
    for (i, page) in (0u64..).zip(pages) {
        let want = if pick(i, true) == a { 0xaaaa } else { 0xbbbb };
        expect(
            p,
            page.start_address(),
            want,
            "second round reads the swapped frames",
        )?;
    }
    for (i, page) in (0u64..).zip(pages) {
        ensure(p.unmap_4k(page) == Ok(pick(i, true)), "second unmap")?;
    }
    paging(
        p.reclaim(Page::range_inclusive(first, first + 3), env.frames),
        "final reclaim",
    )?;
    // SAFETY: neither frame is mapped any more.
    unsafe {
        env.frames.deallocate_frame(a);
        env.frames.deallocate_frame(b);
    }
    ensure(env.frames.used() == before, "every frame is back")?;
    Ok("")
}

/// The recursive address at which the level-`level` table (1..=3) covering
/// `addr` appears.
fn table_address(addr: VirtAddr, level: u8) -> VirtAddr {
    let r = u64::from(crate::RECURSIVE_INDEX);
    let mut v = addr.as_u64() & ((1 << 48) - 1);
    for _ in 0..level {
        v = (r << 39) | (v >> 9);
    }
    VirtAddr::new_truncate(v & !0xfff)
}

/// After reclaim frees a region's level-3, -2 and -1 tables, their
/// recursive addresses (all just used by the unmap and by reclaim itself)
/// page-fault: no stale translation still reaches the freed frames.
fn reclaim_invalidates_table_addresses<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let a = page::<Size4KiB>(env, 0x2000_3000);
    let f = frame(env)?;
    paging(p.map_4k(a, f, RW, env.frames), "map")?;
    write(p, a.start_address(), 0x7777, "write")?;
    for level in 1..=3 {
        let table = table_address(a.start_address(), level);
        read(
            p,
            table,
            "a live table is readable at its recursive address",
        )?;
    }
    ensure(p.unmap_4k(a) == Ok(f), "unmap")?;
    let used = env.frames.used();
    paging(
        p.reclaim(Page::range_inclusive(a, a), env.frames),
        "reclaim",
    )?;
    ensure(
        env.frames.used() == used - 3,
        "reclaim frees the three tables",
    )?;
    for (level, what) in [
        (
            1,
            "freed level-1 table still readable at its recursive address",
        ),
        (
            2,
            "freed level-2 table still readable at its recursive address",
        ),
        (
            3,
            "freed level-3 table still readable at its recursive address",
        ),
    ] {
        let table = table_address(a.start_address(), level);
        faults(p.read_u64(table), table, what)?;
    }
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

/// Reclaim over part of a table's range frees nothing that still maps a
/// page: the page next door keeps working.
fn reclaim_keeps_used_tables<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (a, b) = (page::<Size4KiB>(env, 0x5000), page::<Size4KiB>(env, 0x6000));
    let (fa, fb) = (frame(env)?, frame(env)?);
    paging(p.map_4k(a, fa, RW, env.frames), "map a")?;
    paging(p.map_4k(b, fb, RW, env.frames), "map b")?;
    write(p, b.start_address(), 0xb0b0, "write b")?;
    ensure(p.unmap_4k(a) == Ok(fa), "unmap a")?;
    let used = env.frames.used();
    paging(
        p.reclaim(Page::range_inclusive(a, a), env.frames),
        "reclaim a's range",
    )?;
    ensure(
        env.frames.used() == used,
        "no table freed while b is mapped",
    )?;
    expect(p, b.start_address(), 0xb0b0, "b still reads after reclaim")?;
    ensure(p.unmap_4k(b) == Ok(fb), "unmap b")?;
    paging(
        p.reclaim(Page::range_inclusive(a, b), env.frames),
        "reclaim a..=b",
    )?;
    ensure(
        env.frames.used() == used - 3,
        "the three tables are freed once empty",
    )?;
    // SAFETY: neither frame is mapped any more.
    unsafe {
        env.frames.deallocate_frame(fa);
        env.frames.deallocate_frame(fb);
    }
    Ok("")
}

/// framealloc's adapters as the table allocator: a closure, a pool filled
/// ahead of time, and `NoAllocator` (which makes a mapping that needs a new
/// table fail cleanly, and one that needs none succeed).
fn adapters_closure_pool_none<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let data = frame(env)?;
    let a = page::<Size4KiB>(env, 0x1000);
    let frames = &mut *env.frames;
    let mut handed = 0;
    // SAFETY: the closure hands out frames of `Frames`, each once.
    let mut closure = unsafe {
        framealloc::from_fn(|| {
            handed += 1;
            frames.allocate_frame()
        })
    };
    paging(
        p.map_4k(a, data, RW, &mut closure),
        "map with the closure adapter",
    )?;
    ensure(handed == 3, "closure gave the three tables")?;
    write(p, a.start_address(), 3, "write")?;

    let far = page::<Size4KiB>(env, 0x40_0000_0000);
    ensure(
        p.map_4k(far, data, RW, &mut NoAllocator) == Err(PagingError::FrameAllocationFailed),
        "NoAllocator: a mapping that needs tables fails",
    )?;
    let near = page::<Size4KiB>(env, 0x2000);
    paging(
        p.map_4k(near, data, RW, &mut NoAllocator),
        "NoAllocator: a mapping in existing tables",
    )?;
    expect(p, near.start_address(), 3, "near alias reads")?;

    let mut pool = FramePool::<Size4KiB, 4>::new();
    ensure(pool.fill_from(env.frames) == 4, "fill the pool")?;
    paging(p.map_4k(far, data, RW, &mut pool), "map with the pool")?;
    ensure(pool.len() == 2, "pool gave the two missing tables")?;
    expect(p, far.start_address(), 3, "far alias reads")?;
    for page in [a, near, far] {
        ensure(p.unmap_4k(page) == Ok(data), "unmap")?;
    }
    pool.drain_into(env.frames);
    // SAFETY: `data` is no longer mapped.
    unsafe { env.frames.deallocate_frame(data) };
    Ok("")
}

/// Pages of [`global_range_unmap`]: more than `FLUSH_ALL_THRESHOLD` (32),
/// where a range of non-global pages is flushed with one CR3 reload.
const GLOBAL_PAGES: u64 = 64;

/// Map 64 `GLOBAL` pages in one call and use each (so the TLB holds global
/// translations), unmap them in one call: every page faults. A CR3 reload
/// keeps global translations (CR4.PGE is on), so only one `invlpg` per
/// page (or a CR4.PGE toggle) makes them fault.
fn global_range_unmap<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let first = env
        .frames
        .allocate_contiguous(GLOBAL_PAGES as usize)
        .ok_or(Failure::new("out of frames"))?;
    let start = page::<Size4KiB>(env, 0x00ff_0000);
    let pages = Page::range(start, start + GLOBAL_PAGES);
    paging(
        p.map_range_4k(pages, first, RW | Flags::GLOBAL, env.frames),
        "map global range",
    )?;
    for (i, page) in (0u64..).zip(pages) {
        write(
            p,
            page.start_address() + 8u64,
            pattern(7, i),
            "write every global page",
        )?;
    }
    for (i, page) in (0u64..).zip(pages) {
        expect(
            p,
            page.start_address() + 8u64,
            pattern(7, i),
            "every global page reads back",
        )?;
    }
    paging(p.unmap_range_4k(pages), "unmap global range")?;
    for i in (0..GLOBAL_PAGES).rev() {
        let addr = (pages.start + i).start_address() + 8u64;
        faults(
            p.read_u64(addr),
            addr,
            "unmapped global page still readable",
        )?;
    }
    ensure(
        p.translate(pages.start.start_address()) == Translation::NotMapped,
        "first page translates",
    )?;
    // SAFETY: the range is unmapped.
    unsafe {
        env.frames
            .deallocate_contiguous(first, GLOBAL_PAGES as usize);
    };
    Ok("")
}

/// A `GLOBAL` writable page under a level-2 entry without `WRITABLE` reads
/// but faults on write (the TLB caches a read-only global translation);
/// mapping a writable neighbour under the same entry gives the entry
/// `WRITABLE` back, after which the first page takes writes. A CR3 reload
/// would keep the read-only global translation and the write would fault.
fn global_parent_upgrade<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (f, g) = (frame(env)?, frame(env)?);
    let a = page::<Size4KiB>(env, 0x60_1000);
    let next = page::<Size4KiB>(env, 0x60_2000);
    let addr = a.start_address() + 0x40u64;
    paging(
        p.map_4k(a, f, RW | Flags::GLOBAL, env.frames),
        "map global page",
    )?;
    // The level-2 entry above `a`, written through the recursive mapping
    // (as `x86_64`'s `set_flags_p2_entry` does), then a CR3 reload.
    let entry = table_address(a.start_address(), 2) + u64::from(a.p2_index()) * 8;
    let old = read(p, entry, "read the level-2 entry")?;
    ensure(
        old & Flags::WRITABLE.bits() != 0,
        "level-2 entry starts writable",
    )?;
    write(
        p,
        entry,
        old & !Flags::WRITABLE.bits(),
        "clear WRITABLE on the level-2 entry",
    )?;
    p.flush_all();
    let fault = faults(
        p.write_u64(addr, 1),
        addr,
        "write under a read-only level-2 entry did not fault",
    )?;
    ensure(
        fault.is_protection() && fault.is_write(),
        "fault is a protection write fault",
    )?;
    // Cache a read-only global translation of `a`.
    read(p, addr, "global page reads under a read-only parent")?;
    paging(
        p.map_4k(next, g, RW, env.frames),
        "map writable neighbour (upgrades the level-2 entry)",
    )?;
    write(
        p,
        addr,
        0x600d,
        "write to the global page after the parent upgrade",
    )?;
    expect(p, addr, 0x600d, "global page reads the written value")?;
    write(p, next.start_address(), 0x0e1f, "write the neighbour")?;
    expect(p, next.start_address(), 0x0e1f, "neighbour reads back")?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap global page")?;
    ensure(p.unmap_4k(next) == Ok(g), "unmap neighbour")?;
    // SAFETY: neither frame is mapped any more.
    unsafe {
        env.frames.deallocate_frame(f);
        env.frames.deallocate_frame(g);
    }
    Ok("")
}

/// Index of `addr`'s entry in its level-`level` table.
fn entry_index(addr: VirtAddr, level: u8) -> u64 {
    (addr.as_u64() >> (12 + 9 * (u32::from(level) - 1))) & 511
}

/// The recursive address of `addr`'s entry at `level` (1..=4).
fn entry_address(addr: VirtAddr, level: u8) -> VirtAddr {
    table_address(addr, level) + entry_index(addr, level) * 8
}

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A new address space: a zeroed level-4 table with the recursive entry
/// and the current one's entry 0 (the kernel's identity map under QEMU;
/// empty on the emulator), so the scenario code keeps running after a
/// switch to it.
fn new_space<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Result<PhysFrame, Failure> {
    let level_4 = frame(env)?;
    let base = level_4.start_address();
    for i in 0..512u64 {
        p.write_phys(base + i * 8, 0);
    }
    let current = p.cr3().start_address();
    let kernel = p.read_phys(current);
    p.write_phys(base, kernel);
    p.write_phys(
        base + u64::from(crate::RECURSIVE_INDEX) * 8,
        base.as_u64() | RW.bits(),
    );
    Ok(level_4)
}

/// [`new_space`] with a zeroed level-3 table of its own for the scenario's
/// region; returns both frames.
fn new_space_with_region<P: Platform>(
    p: &mut P,
    env: &mut Env<'_>,
) -> Result<(PhysFrame, PhysFrame), Failure> {
    let level_4 = new_space(p, env)?;
    let level_3 = frame(env)?;
    for i in 0..512u64 {
        p.write_phys(level_3.start_address() + i * 8, 0);
    }
    p.write_phys(
        level_4.start_address() + entry_index(env.base, 4) * 8,
        level_3.start_address().as_u64() | RW.bits(),
    );
    Ok((level_4, level_3))
}

/// Reclaims the empty tables of the scenario's region in the active space,
/// and checks that its level-3 table went too.
fn reclaim_region<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Result<(), Failure> {
    let region = Page::range_inclusive(
        Page::<Size4KiB>::containing_address(env.base),
        Page::containing_address(env.base + ((1u64 << 39) - 1)),
    );
    paging(p.reclaim(region, env.frames), "reclaim the region")?;
    let level_4 = p.cr3().start_address();
    ensure(
        p.read_phys(level_4 + entry_index(env.base, 4) * 8) == 0,
        "the region's level-3 table was not reclaimed",
    )
}

/// A map whose parent flags ask for `GLOBAL` leaves no parent entry with
/// it: in a recursive hierarchy a parent entry is also the leaf of a page
/// table's recursive address, so a `GLOBAL` parent would make the tables'
/// translations survive a CR3 write, and a second address space with its
/// own (empty) level-3 table for the region would read the first one's
/// tables through them, see its page and unmap it. The second space must
/// see nothing.
fn global_parent_flags_stay_in_their_space<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let f = frame(env)?;
    let a = page::<Size4KiB>(env, 0x4020_3000);
    let addr = a.start_address() + 0x10u64;
    paging(
        p.map_4k_with_table_flags(a, f, RW, RW | Flags::GLOBAL, env.frames),
        "map with GLOBAL parent flags",
    )?;
    write(p, addr, 0x51de, "write the page")?;
    for level in [4, 3, 2] {
        let entry = read(
            p,
            entry_address(a.start_address(), level),
            "read a parent entry",
        )?;
        if entry & Flags::GLOBAL.bits() != 0 {
            return Err(Failure::with("a parent entry carries GLOBAL", entry));
        }
    }
    expect(p, addr, 0x51de, "the page reads back")?;
    let home = p.cr3();
    let (other, _) = new_space_with_region(p, env)?;
    p.set_cr3(other);
    let seen = (|| {
        ensure(
            p.translate(addr) == Translation::NotMapped,
            "the first space's page translates in the second",
        )?;
        faults(
            p.read_u64(addr),
            addr,
            "the first space's page reads in the second",
        )?;
        ensure(
            p.unmap_4k(a) == Err(PagingError::NotMapped),
            "unmap in the second space did not report NotMapped",
        )?;
        reclaim_region(p, env)
    })();
    p.set_cr3(home);
    seen?;
    expect(p, addr, 0x51de, "the page still reads in its own space")?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap in its own space")?;
    // SAFETY: neither frame is used any more.
    unsafe {
        env.frames.deallocate_frame(other);
        env.frames.deallocate_frame(f);
    }
    Ok("")
}

/// Clearing `WRITABLE` in the level-2 entry above a `GLOBAL` page that was
/// just written: the next write faults. The invalidation must drop global
/// translations too (a CR3 reload keeps them on hardware; QEMU's TCG drops
/// them, so only the emulator tells the two apart).
fn set_flags_p2_entry_drops_global_translations<P: Platform>(
    p: &mut P,
    env: &mut Env<'_>,
) -> Outcome {
    let f = frame(env)?;
    let a = page::<Size4KiB>(env, 0x70_1000);
    let addr = a.start_address() + 0x20u64;
    paging(
        p.map_4k(a, f, RW | Flags::GLOBAL, env.frames),
        "map global page",
    )?;
    write(p, addr, 1, "write the global page")?;
    expect(p, addr, 1, "read the global page")?;
    paging(
        p.set_flags_p2_entry(a, Flags::PRESENT),
        "set the level-2 entry to PRESENT only",
    )?;
    let fault = faults(
        p.write_u64(addr, 2),
        addr,
        "write through the cached global translation after its parent lost WRITABLE",
    )?;
    ensure(
        fault.is_protection() && fault.is_write(),
        "fault is a protection write fault",
    )?;
    expect(p, addr, 1, "the page still reads")?;
    paging(
        p.set_flags_p2_entry(a, RW),
        "make the level-2 entry writable again",
    )?;
    write(p, addr, 3, "write after the parent is writable again")?;
    expect(p, addr, 3, "read it back")?;
    ensure(p.unmap_4k(a) == Ok(f), "unmap")?;
    // SAFETY: `f` is no longer mapped.
    unsafe { env.frames.deallocate_frame(f) };
    Ok("")
}

/// Unmap, flag update and range unmap under a level-2 entry without
/// `WRITABLE` (left by other code): the table writes the level-1 table
/// through a recursive address whose translation ends in that entry, so it
/// must not fault. framealloc gives the entry `WRITABLE` back first.
fn unmap_under_read_only_parent<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (frame_a, frame_b) = (frame(env)?, frame(env)?);
    let a = page::<Size4KiB>(env, 0x90_1000);
    let b = a + 1;
    paging(p.map_4k(a, frame_a, RW, env.frames), "map first page")?;
    paging(p.map_4k(b, frame_b, RW, env.frames), "map second page")?;
    write(p, a.start_address(), 0xa, "write first page")?;
    write(p, b.start_address(), 0xb, "write second page")?;
    paging(
        p.set_flags_p2_entry(a, Flags::PRESENT),
        "set the level-2 entry to PRESENT only",
    )?;
    expect(p, a.start_address(), 0xa, "read under the read-only parent")?;
    let fault = faults(
        p.write_u64(b.start_address(), 1),
        b.start_address(),
        "write under the read-only parent did not fault",
    )?;
    ensure(fault.is_protection(), "a protection fault")?;
    match p.unmap_4k(a) {
        Ok(unmapped) if unmapped == frame_a => {}
        Err(PagingError::Other(why)) if why.contains("page fault") => {
            return Err(Failure::new(
                "unmap under a read-only level-2 entry page-faulted",
            ));
        }
        _ => return Err(Failure::new("unmap under a read-only level-2 entry")),
    }
    faults(
        p.read_u64(a.start_address()),
        a.start_address(),
        "the unmapped page still reads",
    )?;
    paging(
        p.set_flags_p2_entry(b, Flags::PRESENT),
        "set the level-2 entry to PRESENT only again",
    )?;
    paging(
        p.update_flags_4k(b, RW | Flags::NO_EXECUTE),
        "update flags under a read-only level-2 entry",
    )?;
    write(p, b.start_address(), 0xbb, "write after the update")?;
    expect(p, b.start_address(), 0xbb, "read it back")?;
    paging(
        p.set_flags_p2_entry(b, Flags::PRESENT),
        "set the level-2 entry to PRESENT only a third time",
    )?;
    paging(
        p.unmap_range_4k(Page::range(b, b + 1)),
        "unmap_range under a read-only level-2 entry",
    )?;
    faults(
        p.read_u64(b.start_address()),
        b.start_address(),
        "the range-unmapped page still reads",
    )?;
    // SAFETY: neither frame is mapped any more.
    unsafe {
        env.frames.deallocate_frame(frame_a);
        env.frames.deallocate_frame(frame_b);
    }
    Ok("")
}

/// Two address spaces sharing a kernel slice (one level-2 table, its pages
/// `GLOBAL`) and each with a private page at the same address: across CR3
/// writes each space sees its own private page and the same kernel page,
/// a write to the kernel page in one is seen in the other, and tables
/// created in the second space are reclaimed there.
fn address_space_switch_global_kernel_pages<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (fk, fa, fb) = (frame(env)?, frame(env)?, frame(env)?);
    // Level-3 index 1 of the region: the shared kernel slice; index 2: private.
    let k = page::<Size4KiB>(env, 0x4000_5000);
    let u = page::<Size4KiB>(env, 0x8000_7000);
    paging(
        p.map_4k(k, fk, RW | Flags::GLOBAL, env.frames),
        "map the kernel page",
    )?;
    paging(
        p.map_4k(u, fa, RW, env.frames),
        "map the first space's private page",
    )?;
    write(p, k.start_address(), 0x6b, "write the kernel page")?;
    write(p, u.start_address(), 0xa0, "write the private page")?;

    // The second space: its own level-3 table for the region, whose entry 1
    // is the first space's (the kernel slice's level-2 table, shared).
    let home = p.cr3();
    let region = entry_index(env.base, 4) * 8;
    let home_l3 = p.read_phys(home.start_address() + region) & ADDR_MASK;
    let kernel_slice = p.read_phys(PhysAddr::new(home_l3 + 8));
    let (other, other_l3) = new_space_with_region(p, env)?;
    p.write_phys(other_l3.start_address() + 8u64, kernel_slice);

    p.set_cr3(other);
    expect(
        p,
        k.start_address(),
        0x6b,
        "the kernel page reads in the second space",
    )?;
    faults(
        p.read_u64(u.start_address()),
        u.start_address(),
        "the first space's private page reads in the second",
    )?;
    ensure(
        p.translate(u.start_address()) == Translation::NotMapped,
        "the first space's private page translates in the second",
    )?;
    paging(
        p.map_4k(u, fb, RW, env.frames),
        "map the second space's private page",
    )?;
    write(p, u.start_address(), 0xb0, "write the second private page")?;
    write(
        p,
        k.start_address(),
        0x6b2,
        "write the kernel page in the second space",
    )?;

    p.set_cr3(home);
    expect(
        p,
        u.start_address(),
        0xa0,
        "the first private page after switching back",
    )?;
    expect(
        p,
        k.start_address(),
        0x6b2,
        "the kernel write made in the second space",
    )?;

    p.set_cr3(other);
    expect(
        p,
        u.start_address(),
        0xb0,
        "the second private page after switching again",
    )?;
    ensure(p.unmap_4k(u) == Ok(fb), "unmap the second private page")?;
    // Let go of the shared slice, then reclaim the second space's tables
    // (its level-3 table included).
    p.write_phys(other_l3.start_address() + 8u64, 0);
    p.flush_all();
    let reclaimed = reclaim_region(p, env);
    p.set_cr3(home);
    reclaimed?;

    expect(
        p,
        k.start_address(),
        0x6b2,
        "the kernel page in the first space",
    )?;
    ensure(p.unmap_4k(k) == Ok(fk), "unmap the kernel page")?;
    ensure(p.unmap_4k(u) == Ok(fa), "unmap the first private page")?;
    // SAFETY: none of these frames is used any more.
    unsafe {
        env.frames.deallocate_frame(other);
        env.frames.deallocate_frame(fk);
        env.frames.deallocate_frame(fa);
        env.frames.deallocate_frame(fb);
    }
    Ok("")
}
