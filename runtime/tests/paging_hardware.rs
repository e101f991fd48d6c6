//! The hardware backend, run in user space: `NoFlushMmu` over a 512 GiB
//! window mapped with `mmap` at recursive index 1 (memory there stands in
//! for the recursive mapping). Drives the table through `x86_64`'s own
//! traits (`Mapper` for all sizes, `Translate`, `CleanUp`) and checks that
//! the same operations on the emulator leave the same mappings.

mod paging_support;

use std::ffi::c_void;

use framealloc::paging::{NoFlushMmu, RecursivePageTable};
use framealloc::x86_64::structures::paging::mapper::{CleanUp, MapToError, Mapper, Translate};
use framealloc::x86_64::structures::paging::{
    Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use paging_support::{TableFrames, frame};

unsafe extern "C" {
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: i32,
        flags: i32,
        fd: i32,
        offset: i64,
    ) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> i32;
}

const PROT_READ_WRITE: i32 = 0x1 | 0x2;
const MAP_PRIVATE_ANONYMOUS_NORESERVE_FIXED_NOREPLACE: i32 = 0x02 | 0x20 | 0x4000 | 0x10_0000;
const INDEX: u64 = 1;
const WINDOW: u64 = INDEX << 39;
const LEVEL_4: u64 = 0x1000;

/// The same sequence on any table: returns what `translate` says afterwards.
fn exercise<T>(table: &mut T, frames: &mut TableFrames) -> Vec<String>
where
    T: Mapper<Size4KiB> + Mapper<Size2MiB> + Mapper<Size1GiB> + Translate + CleanUp,
{
    let rw = F::PRESENT | F::WRITABLE;
    let small = Page::<Size4KiB>::containing_address(VirtAddr::new(0xffff_8000_0040_0000));
    let big = Page::<Size2MiB>::containing_address(VirtAddr::new(0x4000_0000));
    let giant = Page::<Size1GiB>::containing_address(VirtAddr::new(0x100_0000_0000));
    // SAFETY: the frames are never accessed; only entries are written.
    unsafe {
        table
            .map_to(small, frame(0x80_0000), rw, frames)
            .unwrap()
            .ignore();
        table
            .map_to(small + 1, frame(0x80_1000), rw, frames)
            .unwrap()
            .ignore();
        table
            .map_to(
                big,
                PhysFrame::containing_address(PhysAddr::new(0x20_0000)),
                rw,
                frames,
            )
            .unwrap()
            .ignore();
        table
            .map_to(
                giant,
                PhysFrame::containing_address(PhysAddr::new(0x4000_0000)),
                rw | F::NO_EXECUTE,
                frames,
            )
            .unwrap()
            .ignore();
        let under_huge = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_1000));
        assert!(matches!(
            table.map_to(under_huge, frame(0x9000), rw, frames),
            Err(MapToError::ParentEntryHugePage)
        ));
        table.update_flags(small + 1, F::PRESENT).unwrap().ignore();
    }
    let (unmapped, flush) = Mapper::<Size4KiB>::unmap(table, small).unwrap();
    flush.ignore();
    assert_eq!(unmapped, frame(0x80_0000));
    let probes = [
        0xffff_8000_0040_0000u64,
        0xffff_8000_0040_1008,
        0x4000_1234,
        0x100_0123_4567,
        0x5000_0000,
    ];
    let seen = probes
        .iter()
        .map(|&a| format!("{:?}", table.translate(VirtAddr::new(a))))
        .collect();
    Mapper::<Size4KiB>::unmap(table, small + 1)
        .unwrap()
        .1
        .ignore();
    Mapper::<Size2MiB>::unmap(table, big).unwrap().1.ignore();
    Mapper::<Size1GiB>::unmap(table, giant).unwrap().1.ignore();
    // SAFETY: the tables belong to this hierarchy only.
    unsafe { table.clean_up(frames) };
    seen
}

#[test]
fn hardware_backend_in_user_space_matches_the_emulator() {
    let window = WINDOW as *mut c_void;
    // SAFETY: a fresh private mapping at a fixed, unused address (NOREPLACE
    // fails instead of clobbering anything).
    let got = unsafe {
        mmap(
            window,
            1 << 39,
            PROT_READ_WRITE,
            MAP_PRIVATE_ANONYMOUS_NORESERVE_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(got, window, "mmap of the 512 GiB recursive window failed");
    let level_4_table = (WINDOW | INDEX << 30 | INDEX << 21 | INDEX << 12) as *mut u64;
    // SAFETY: inside the window just mapped.
    unsafe { level_4_table.add(INDEX as usize).write(LEVEL_4 | 3) };

    // SAFETY: the window is readable and writable memory laid out as the
    // recursive hierarchy of index 1 whose level-4 entry names LEVEL_4; no
    // TLB is involved.
    let mmu = unsafe { NoFlushMmu::without_flushes(frame(LEVEL_4)) };
    let mut hardware = RecursivePageTable::new(mmu, PageTableIndex::new(INDEX as u16)).unwrap();
    let mut frames = TableFrames::new();
    let on_hardware = exercise(&mut hardware, &mut frames);
    assert!(frames.out.is_empty(), "clean_up returned every table frame");
    assert_eq!(frames.allocated, 6);

    let machine = framealloc::emu::Machine::with_recursive_table(
        PageTableIndex::new(INDEX as u16),
        frame(LEVEL_4),
    )
    .unwrap();
    let mut emulated = RecursivePageTable::new(machine, PageTableIndex::new(INDEX as u16)).unwrap();
    let mut frames = TableFrames::new();
    let on_emulator = exercise_emulated(&mut emulated, &mut frames);
    assert_eq!(on_hardware, on_emulator);
    assert!(
        on_hardware[1].contains("Size4KiB") && on_hardware[1].contains("offset: 8"),
        "{:?}",
        on_hardware[1]
    );
    assert!(on_hardware[2].contains("Size2MiB"));
    assert!(on_hardware[3].contains("Size1GiB"));
    assert_eq!(on_hardware[4], "NotMapped");

    // SAFETY: the window mapped above, no longer used.
    assert_eq!(unsafe { munmap(window, 1 << 39) }, 0);
}

/// The emulator backend has no `Mapper` impl (its flush tokens go through
/// the backend): the same sequence through the native API.
fn exercise_emulated(
    table: &mut RecursivePageTable<framealloc::emu::Machine>,
    frames: &mut TableFrames,
) -> Vec<String> {
    let rw = F::PRESENT | F::WRITABLE;
    let small = Page::<Size4KiB>::containing_address(VirtAddr::new(0xffff_8000_0040_0000));
    let big = Page::<Size2MiB>::containing_address(VirtAddr::new(0x4000_0000));
    let giant = Page::<Size1GiB>::containing_address(VirtAddr::new(0x100_0000_0000));
    // SAFETY: emulated memory.
    unsafe {
        table
            .map_to(small, frame(0x80_0000), rw, frames)
            .unwrap()
            .flush();
        table
            .map_to(small + 1, frame(0x80_1000), rw, frames)
            .unwrap()
            .flush();
        table
            .map_to(
                big,
                PhysFrame::containing_address(PhysAddr::new(0x20_0000)),
                rw,
                frames,
            )
            .unwrap()
            .flush();
        table
            .map_to(
                giant,
                PhysFrame::containing_address(PhysAddr::new(0x4000_0000)),
                rw | F::NO_EXECUTE,
                frames,
            )
            .unwrap()
            .flush();
        table.update_flags(small + 1, F::PRESENT).unwrap().flush();
    }
    table.unmap(small).unwrap().1.flush();
    let probes = [
        0xffff_8000_0040_0000u64,
        0xffff_8000_0040_1008,
        0x4000_1234,
        0x100_0123_4567,
        0x5000_0000,
    ];
    let seen = probes
        .iter()
        .map(|&a| format!("{:?}", table.translate(VirtAddr::new(a))))
        .collect();
    table.unmap(small + 1).unwrap().1.flush();
    table.unmap(big).unwrap().1.flush();
    table.unmap(giant).unwrap().1.flush();
    // SAFETY: the tables belong to this hierarchy only.
    unsafe { table.clean_up(frames) };
    assert!(frames.out.is_empty());
    seen
}
