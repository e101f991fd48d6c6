//! Scenarios whose allocators are built with framealloc's macros, compiled
//! into the `no_std` kernel and the emulator tests alike.

use core::cell::RefCell;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, Page, PageTableFlags as Flags, PhysFrame, Size4KiB,
};

use framealloc::{FramePool, TaggedFrameAllocator, frame_allocator};

use crate::list::{RW, ensure, expect, frame, page, paging, write};
use crate::{Env, Failure, Frames, Outcome, Platform};

/// What a frame of [`Counted`] is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Table,
    Data,
}

/// A tagged allocator over [`Frames`] counting frames per purpose; its
/// untagged `FrameAllocator` (for page tables) comes from the derive.
#[derive(framealloc::FrameAllocator)]
#[frame_allocator(unsafe tagged(method = take, tag = Purpose, default = Purpose::Table))]
struct Counted<'a> {
    frames: &'a mut Frames,
    tables: u32,
    data: u32,
}

impl Counted<'_> {
    fn take(&mut self, purpose: Purpose) -> Option<PhysFrame> {
        match purpose {
            Purpose::Table => self.tables += 1,
            Purpose::Data => self.data += 1,
        }
        self.frames.allocate_frame()
    }
}

/// Enum dispatch over two allocators, from the derive.
#[derive(framealloc::FrameAllocator)]
enum Source<'a> {
    Pool(FramePool<Size4KiB, 4>),
    Counted(Counted<'a>),
}

/// Field forwarding (allocation and deallocation), from the derive.
#[derive(framealloc::FrameAllocator)]
struct Labelled<A> {
    #[frame_allocator]
    inner: A,
    label: u32,
}

/// Forwarding through `&mut dyn FrameAllocator`, from the derive.
#[derive(framealloc::FrameAllocator)]
struct Held<'a> {
    inner: &'a mut dyn FrameAllocator<Size4KiB>,
}

/// Forwarding through a lock (a `RefCell`, borrowed per call), from the derive.
#[derive(framealloc::FrameAllocator)]
struct Locked<'a> {
    #[frame_allocator(lock = borrow_mut)]
    inner: &'a RefCell<FramePool<Size4KiB, 4>>,
}

/// Page tables from allocators made with `#[derive(FrameAllocator)]`: a
/// tagged allocator (default tag for tables, explicit tag for data), an enum
/// dispatching to a pool, a forwarding struct that takes reclaimed tables
/// back, a `&mut dyn` holder that maps with them again, and a lock holder
/// that takes them back once more.
pub(crate) fn derive_frame_allocator<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let (a, b) = (
        page::<Size4KiB>(env, 0x1000),
        page::<Size4KiB>(env, 0x40_0000_0000),
    );
    let c = page::<Size4KiB>(env, 0x80_0000);
    let mut counted = Counted {
        frames: &mut *env.frames,
        tables: 0,
        data: 0,
    };
    let data = counted
        .tagged(Purpose::Data)
        .allocate_frame()
        .ok_or(Failure::new("tagged data frame"))?;
    paging(
        p.map_4k(a, data, RW, &mut counted),
        "map with the derived tagged allocator",
    )?;
    ensure(
        counted.tables == 3 && counted.data == 1,
        "tagged allocator counted 3 tables and 1 data frame",
    )?;
    write(p, a.start_address(), 0xd00d, "write through the first page")?;

    let mut pool = FramePool::<Size4KiB, 4>::new();
    ensure(pool.fill_from(&mut counted) == 4, "fill the pool")?;
    let mut source = Source::Pool(pool);
    paging(
        p.map_4k(b, data, RW, &mut source),
        "map with the enum (pool variant)",
    )?;
    let Source::Pool(pool) = source else {
        return Err(Failure::new("the enum changed variant"));
    };
    ensure(
        pool.len() == 2,
        "the enum's pool gave the two missing tables",
    )?;
    expect(
        p,
        b.start_address(),
        0xd00d,
        "second page reads the same frame",
    )?;

    let mut source = Source::Counted(counted);
    paging(
        p.map_4k(c, data, RW, &mut source),
        "map with the enum (tagged variant)",
    )?;
    let Source::Counted(counted) = source else {
        return Err(Failure::new("the enum changed variant"));
    };
    ensure(
        counted.tables == 3 + 4 + 1,
        "the enum's tagged variant gave one table",
    )?;
    expect(
        p,
        c.start_address(),
        0xd00d,
        "third page reads the same frame",
    )?;

    for page in [a, b, c] {
        ensure(p.unmap_4k(page) == Ok(data), "unmap")?;
    }
    let mut back = Labelled {
        inner: pool,
        label: 7,
    };
    let region = Page::range_inclusive(b, b);
    paging(
        p.reclaim(region, &mut back),
        "reclaim into the derived forwarding struct",
    )?;
    ensure(
        back.label == 7 && back.inner.len() == 4,
        "the two tables of b came back through the derive",
    )?;

    let mut pool = through_holders(p, back.inner, b, data)?;
    pool.drain_into(env.frames);
    // SAFETY: `data` is no longer mapped.
    unsafe { framealloc::FrameDeallocator::deallocate_frame(env.frames, data) };
    Ok("")
}

/// Maps `b` (whose two tables were reclaimed into `pool`) through a derived
/// `&mut dyn` holder over `pool`, unmaps it, and reclaims the tables into
/// the pool behind a derived lock holder; returns the pool, full again.
fn through_holders<P: Platform>(
    p: &mut P,
    mut pool: FramePool<Size4KiB, 4>,
    b: Page<Size4KiB>,
    data: PhysFrame,
) -> Result<FramePool<Size4KiB, 4>, Failure> {
    let mut held = Held { inner: &mut pool };
    paging(
        p.map_4k(b, data, RW, &mut held),
        "map through a derived `&mut dyn` holder",
    )?;
    ensure(
        pool.len() == 2,
        "the `&mut dyn` holder took b's two tables from the pool",
    )?;
    expect(p, b.start_address(), 0xd00d, "b reads the same frame again")?;
    ensure(p.unmap_4k(b) == Ok(data), "unmap b again")?;
    let cell = RefCell::new(pool);
    paging(
        p.reclaim(Page::range_inclusive(b, b), &mut Locked { inner: &cell }),
        "reclaim through a derived lock holder",
    )?;
    let pool = cell.into_inner();
    ensure(
        pool.len() == 4,
        "the two tables came back into the pool behind the lock",
    )?;
    Ok(pool)
}

/// Page tables from `frame_allocator!` closures: one allocating only, one
/// with a deallocation closure that receives the reclaimed tables.
pub(crate) fn frame_allocator_macro<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let data = frame(env)?;
    let a = page::<Size4KiB>(env, 0x7000);
    let frames = &mut *env.frames;
    let mut handed = 0u32;
    // SAFETY: the closure hands out frames of `Frames`, each once.
    let mut closure = unsafe {
        frame_allocator!(|| {
            handed += 1;
            frames.allocate_frame()
        })
    };
    paging(
        p.map_4k(a, data, RW | Flags::NO_EXECUTE, &mut closure),
        "map with frame_allocator!",
    )?;
    ensure(handed == 3, "the closure gave the three tables")?;
    write(p, a.start_address() + 16u64, 0xc105, "write")?;
    expect(p, a.start_address() + 16u64, 0xc105, "read back")?;
    ensure(p.unmap_4k(a) == Ok(data), "unmap")?;

    let mut returned: [Option<PhysFrame>; 4] = [None; 4];
    let mut count = 0;
    // SAFETY: the allocation closure never hands out a frame; the
    // deallocation closure only records the frames it is given.
    let mut collect = unsafe {
        frame_allocator!(|| None, |frame: PhysFrame| {
            if let Some(slot) = returned.get_mut(count) {
                *slot = Some(frame);
            }
            count += 1;
        })
    };
    paging(
        p.reclaim(Page::range_inclusive(a, a), &mut collect),
        "reclaim through frame_allocator!",
    )?;
    ensure(
        count == 3,
        "the deallocation closure received the three tables",
    )?;
    for frame in returned.into_iter().flatten() {
        // SAFETY: the reclaimed tables are unused now.
        unsafe { framealloc::FrameDeallocator::deallocate_frame(env.frames, frame) };
    }
    // SAFETY: `data` is no longer mapped.
    unsafe { framealloc::FrameDeallocator::deallocate_frame(env.frames, data) };
    Ok("")
}
