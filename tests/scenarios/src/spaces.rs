//! Address-space scenarios: framealloc's `AddressSpace` operations (create
//! with a shared kernel half, edit while inactive, switch, destroy) on the
//! real MMU and on the emulator.
//!
//! Only platforms over framealloc's table have them ([`Platform::spaces`]);
//! on `x86_64`'s table these scenarios fail with "the platform has no
//! address spaces", and the QEMU kernel reports them there as observed.

use framealloc::paging::{AddressSpace, EntrySet, Mapping, SpaceError};
use framealloc::x86_64::VirtAddr;
use framealloc::x86_64::structures::paging::{
    FrameDeallocator, Page, PageTableFlags as Flags, PageTableIndex, PhysFrame, Size4KiB,
};

use crate::list::{RW, ensure, expect, faults, frame, page, paging, write};
use crate::{Env, Failure, Frames, Outcome, PagingError, Platform, Translation};

/// The level-4 index both machines leave free for the slot.
pub const SLOT: u16 = 400;

/// framealloc's address-space operations, as the scenarios use them.
pub trait Spaces {
    /// `RecursivePageTable::prepare_shared`.
    ///
    /// # Errors
    ///
    /// What the table reports.
    fn prepare_shared(
        &mut self,
        shared: &EntrySet,
        frames: &mut Frames,
    ) -> Result<usize, SpaceError>;

    /// `RecursivePageTable::create_space` with slot [`SLOT`].
    ///
    /// # Errors
    ///
    /// What the table reports.
    fn create(
        &mut self,
        shared: &EntrySet,
        frames: &mut Frames,
    ) -> Result<AddressSpace, SpaceError>;

    /// Maps a 4 KiB page in the inactive `space`, through a view.
    ///
    /// # Errors
    ///
    /// Why the view could not be opened, or what the map reported.
    fn map_inactive(
        &mut self,
        space: &AddressSpace,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: Flags,
        frames: &mut Frames,
    ) -> Result<(), PagingError>;

    /// Translates `addr` in the inactive `space`, through a view.
    ///
    /// # Errors
    ///
    /// Why the view could not be opened.
    fn translate_inactive(
        &mut self,
        space: &AddressSpace,
        addr: VirtAddr,
    ) -> Result<Translation, SpaceError>;

    /// `RecursivePageTable::switch_to`.
    ///
    /// # Errors
    ///
    /// What the table reports, with the space.
    fn switch(&mut self, space: AddressSpace) -> Result<AddressSpace, (AddressSpace, SpaceError)>;

    /// `RecursivePageTable::destroy_space`.
    ///
    /// # Errors
    ///
    /// What the table reports, with the space.
    fn destroy(
        &mut self,
        space: AddressSpace,
        frames: &mut Frames,
        leaves: &mut dyn FnMut(Mapping),
    ) -> Result<usize, (AddressSpace, SpaceError)>;
}

fn spaces<P: Platform>(p: &mut P) -> Result<&mut dyn Spaces, Failure> {
    p.spaces()
        .ok_or(Failure::new("the platform has no address spaces"))
}

fn space_error<T>(result: Result<T, SpaceError>, what: &'static str) -> Result<T, Failure> {
    result.map_err(|_| Failure::new(what))
}

/// The level-4 entries a process space shares: the scenario's region (its
/// "kernel" part) and, where present, entry 0 (the QEMU kernel's identity
/// map, which the running code needs after a switch).
fn kernel_half<P: Platform>(p: &mut P, env: &Env<'_>) -> EntrySet {
    let mut set = EntrySet::new();
    set.insert(PageTableIndex::new(region_index(env)));
    let l4 = p.cr3().start_address();
    if p.read_phys(l4) & 1 != 0 {
        set.insert(PageTableIndex::new(0));
    }
    set
}

fn region_index(env: &Env<'_>) -> u16 {
    ((env.base.as_u64() >> 39) & 511) as u16
}

/// A user page of a process space: in level-4 entry `region + 128`, which
/// no other scenario and no kernel uses, private to each space.
fn user_page(env: &Env<'_>, offset: u64) -> Page<Size4KiB> {
    Page::containing_address(VirtAddr::new((u64::from(region_index(env)) + 128) << 39) + offset)
}

/// Builds space B sharing the kernel half, maps two user pages into it
/// while A is active, switches to B and reads them (and a global kernel
/// page), writes the kernel page there, switches back, destroys B and
/// checks that its frames came back and its leaves were reported.
pub(crate) fn space_build_switch_destroy<P: Platform>(p: &mut P, env: &mut Env<'_>) -> Outcome {
    let half = kernel_half(p, env);
    space_error(
        spaces(p)?.prepare_shared(&half, env.frames),
        "prepare the kernel half",
    )?;
    let kernel = page::<Size4KiB>(env, 0x1000);
    let fk = frame(env)?;
    paging(
        p.map_4k(kernel, fk, RW | Flags::GLOBAL, env.frames),
        "map the global kernel page",
    )?;
    write(p, kernel.start_address(), 0x6b, "write the kernel page")?;

    let before = env.frames.used();
    let space_b = space_error(spaces(p)?.create(&half, env.frames), "create space B")?;
    ensure(env.frames.used() == before + 1, "creating B took one frame")?;
    let (u1, u2) = (user_page(env, 0x1000), user_page(env, 0x20_0000));
    let (f1, f2) = (frame(env)?, frame(env)?);
    p.write_phys(f1.start_address(), 0x11);
    p.write_phys(f2.start_address(), 0x22);
    for (u, f) in [(u1, f1), (u2, f2)] {
        paging(
            spaces(p)?.map_inactive(&space_b, u, f, RW | Flags::USER_ACCESSIBLE, env.frames),
            "map a user page into inactive B",
        )?;
    }
    ensure(
        matches!(spaces(p)?.translate_inactive(&space_b, u1.start_address()), Ok(Translation::Mapped { addr, .. }) if addr == f1.start_address()),
        "B translates its user page through the slot",
    )?;
    faults(
        p.read_u64(u1.start_address()),
        u1.start_address(),
        "B's user page reads in A",
    )?;
    ensure(
        p.translate(u1.start_address()) == Translation::NotMapped,
        "B's user page translates in A",
    )?;

    let home = p.cr3();
    let home_space = spaces(p)?
        .switch(space_b)
        .map_err(|_| Failure::new("switch to B"))?;
    ensure(home_space.level_4_frame() == home, "the switch returned A")?;
    expect(p, u1.start_address(), 0x11, "B's first user page in B")?;
    expect(p, u2.start_address(), 0x22, "B's second user page in B")?;
    expect(
        p,
        kernel.start_address(),
        0x6b,
        "the global kernel page in B",
    )?;
    write(
        p,
        kernel.start_address(),
        0x6c,
        "write the kernel page in B",
    )?;
    let space_b = spaces(p)?
        .switch(home_space)
        .map_err(|_| Failure::new("switch back to A"))?;
    ensure(p.cr3() == home, "A is active again")?;
    expect(
        p,
        kernel.start_address(),
        0x6c,
        "the kernel write made in B, in A",
    )?;
    faults(
        p.read_u64(u2.start_address()),
        u2.start_address(),
        "B's user page after switching back",
    )?;

    destroy_b(p, env, space_b, [(u1, f1), (u2, f2)])?;
    ensure(env.frames.used() == before, "every frame of B came back")?;
    expect(
        p,
        kernel.start_address(),
        0x6c,
        "the kernel page after destroying B",
    )?;
    ensure(p.unmap_4k(kernel) == Ok(fk), "unmap the kernel page")?;
    // SAFETY: unmapped.
    unsafe { env.frames.deallocate_frame(fk) };
    Ok("")
}

/// Destroys B and checks the tables freed and the leaves reported, then
/// frees B's data frames.
fn destroy_b<P: Platform>(
    p: &mut P,
    env: &mut Env<'_>,
    space_b: AddressSpace,
    pages: [(Page<Size4KiB>, PhysFrame<Size4KiB>); 2],
) -> Result<(), Failure> {
    let [(u1, f1), (u2, f2)] = pages;
    let mut leaves = [None; 4];
    let mut n = 0;
    let freed = spaces(p)?
        .destroy(space_b, env.frames, &mut |m| {
            if n < leaves.len() {
                leaves[n] = Some((m.start, m.frame));
            }
            n += 1;
        })
        .map_err(|_| Failure::new("destroy B"))?;
    if freed != 5 {
        return Err(Failure::with(
            "B's level-4, -3 and -2 tables and two level-1 tables freed",
            freed as u64,
        ));
    }
    ensure(
        n == 2
            && leaves[0] == Some((u1.start_address(), f1.start_address()))
            && leaves[1] == Some((u2.start_address(), f2.start_address())),
        "destroy reported B's two user pages",
    )?;
    // SAFETY: B is gone; its data frames are unused.
    unsafe {
        env.frames.deallocate_frame(f1);
        env.frames.deallocate_frame(f2);
    }
    Ok(())
}

/// Edits two inactive spaces one after the other through the same slot
/// (each edit warming the TLB and paging-structure caches with the slot's
/// addresses), then reads each space's page after switching to it. Without
/// the invalidation of the slot's window when it is re-pointed, the second
/// edit writes through translations of the first space's tables.
pub(crate) fn space_slot_reused_for_another_space<P: Platform>(
    p: &mut P,
    env: &mut Env<'_>,
) -> Outcome {
    let half = kernel_half(p, env);
    space_error(
        spaces(p)?.prepare_shared(&half, env.frames),
        "prepare the kernel half",
    )?;
    let before = env.frames.used();
    let space_b = space_error(spaces(p)?.create(&half, env.frames), "create space B")?;
    let space_c = space_error(spaces(p)?.create(&half, env.frames), "create space C")?;
    let first = user_page(env, 0x4000_0000);
    let second = user_page(env, 0x4000_1000);
    let (fb, fc) = (frame(env)?, frame(env)?);
    p.write_phys(fb.start_address(), 0xb);
    p.write_phys(fc.start_address(), 0xc);
    for (space, f) in [(&space_b, fb), (&space_c, fc)] {
        for pg in [first, second] {
            paging(
                spaces(p)?.map_inactive(space, pg, f, RW, env.frames),
                "map into an inactive space",
            )?;
        }
    }
    for (space, f) in [(&space_b, fb), (&space_c, fc)] {
        ensure(
            matches!(spaces(p)?.translate_inactive(space, second.start_address()), Ok(Translation::Mapped { addr, .. }) if addr == f.start_address()),
            "each space translates its own page through the slot",
        )?;
    }
    let mut rest = [None, None];
    for (i, (space, want)) in [(space_b, 0xb), (space_c, 0xc)].into_iter().enumerate() {
        let home_space = spaces(p)?
            .switch(space)
            .map_err(|_| Failure::new("switch to the space"))?;
        let got = (
            p.read_u64(first.start_address()),
            p.read_u64(second.start_address()),
        );
        let space = spaces(p)?
            .switch(home_space)
            .map_err(|_| Failure::new("switch back"))?;
        rest[i] = Some(space);
        ensure(
            got.0 == Ok(want) && got.1 == Ok(want),
            "the space's own page after edits of two spaces",
        )?;
    }
    for space in rest.into_iter().flatten() {
        let freed = spaces(p)?
            .destroy(space, env.frames, &mut |_| ())
            .map_err(|_| Failure::new("destroy"))?;
        ensure(freed == 4, "each space freed its four tables")?;
    }
    // SAFETY: both spaces are gone.
    unsafe {
        env.frames.deallocate_frame(fb);
        env.frames.deallocate_frame(fc);
    }
    ensure(env.frames.used() == before, "every frame came back")?;
    Ok("")
}

/// A space whose recursive entry was damaged is refused by switch (CR3
/// stays, nothing changed) and by destroy; repaired, it works again.
pub(crate) fn space_bad_recursive_entry_refused<P: Platform>(
    p: &mut P,
    env: &mut Env<'_>,
) -> Outcome {
    let half = kernel_half(p, env);
    space_error(
        spaces(p)?.prepare_shared(&half, env.frames),
        "prepare the kernel half",
    )?;
    let before = env.frames.used();
    let space_b = space_error(spaces(p)?.create(&half, env.frames), "create space B")?;
    let entry = space_b.level_4_frame().start_address() + u64::from(crate::RECURSIVE_INDEX) * 8;
    let good = p.read_phys(entry);
    let home = p.cr3();
    p.write_phys(entry, 0);
    let refused = match spaces(p)?.switch(space_b) {
        Ok(_) => {
            return Err(Failure::new(
                "switched to a space without its recursive entry",
            ));
        }
        Err((space, SpaceError::NotRecursive { entry: 0 })) => space,
        Err(_) => return Err(Failure::new("the wrong refusal")),
    };
    ensure(p.cr3() == home, "CR3 unchanged after the refusal")?;
    let Err((refused, SpaceError::NotRecursive { .. })) =
        spaces(p)?.destroy(refused, env.frames, &mut |_| ())
    else {
        return Err(Failure::new("destroy accepted a damaged space"));
    };
    ensure(
        env.frames.used() == before + 1,
        "nothing freed by the refusals",
    )?;
    p.write_phys(entry, good);
    let home_space = spaces(p)?
        .switch(refused)
        .map_err(|_| Failure::new("switch to the repaired space"))?;
    let repaired = spaces(p)?
        .switch(home_space)
        .map_err(|_| Failure::new("switch back"))?;
    let freed = spaces(p)?
        .destroy(repaired, env.frames, &mut |_| ())
        .map_err(|_| Failure::new("destroy"))?;
    ensure(freed == 1, "only the level-4 table to free")?;
    Ok("")
}
