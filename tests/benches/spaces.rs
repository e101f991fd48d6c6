//! Address spaces on the emulator, side by side in one run:
//!
//! - `create/shared_half`: `create_space` sharing a prepared kernel half
//!   (254 level-4 entries), per space (the space is destroyed outside the
//!   timed part);
//! - `edit/<how>/<N>`: mapping N 4 KiB pages (`map_to`, tables created as
//!   needed) into the active space (`active`), into an inactive space
//!   through one view opened for the N pages (`inactive`), and through a
//!   view opened per page (`inactive_view_per_page`); per page. The pages
//!   are unmapped and the tables reclaimed outside the timed part.
//!
//! `cargo bench -p tests --bench spaces`; instruction counts: build with
//! `cargo bench -p tests --bench spaces --no-run`, then run the binary with
//! `BENCH_MODE=ir valgrind --tool=callgrind --collect-atstart=no` (one dump
//! per case: `create`, `edit/<how>/512`). The emulator routes every table
//! access through its TLB model, so absolute times are the emulator's; the
//! ratios show what the view costs (opening and closing it: two slot writes
//! and two full flushes, then TLB misses on the slot's addresses).

#[path = "support/valgrind.rs"]
mod valgrind;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use framealloc::emu::Machine;
use framealloc::paging::{AddressSpace, EntrySet, RecursivePageTable};
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags as F, PageTableIndex, PhysFrame,
    Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

const R: u16 = 510;
const SLOT: u16 = 509;

/// Frames from 1 MiB up, freed ones reused.
struct Frames {
    next: u64,
    free: Vec<u64>,
}

// SAFETY: each frame is handed out once until it is freed.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let addr = self.free.pop().unwrap_or_else(|| {
            self.next += 4096;
            self.next
        });
        Some(PhysFrame::containing_address(PhysAddr::new(addr)))
    }
}

impl FrameDeallocator<Size4KiB> for Frames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.free.push(frame.start_address().as_u64());
    }
}

fn kernel_half() -> EntrySet {
    let mut set = EntrySet::range(PageTableIndex::new(256), PageTableIndex::new(511));
    set.remove(PageTableIndex::new(R));
    set.remove(PageTableIndex::new(SLOT));
    set
}

fn kernel() -> (RecursivePageTable<Machine>, Frames) {
    let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    let machine = Machine::with_recursive_table(PageTableIndex::new(R), l4).unwrap();
    let mut table = RecursivePageTable::new(machine, PageTableIndex::new(R)).unwrap();
    let mut frames = Frames {
        next: 0x10_0000,
        free: Vec::new(),
    };
    // SAFETY: emulated memory.
    unsafe { table.prepare_shared(&kernel_half(), &mut frames) }.unwrap();
    (table, frames)
}

fn page(i: u64) -> Page<Size4KiB> {
    Page::containing_address(VirtAddr::new(0x4000_0000 + i * 4096))
}

fn data(i: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(0x1_0000_0000 + i * 4096))
}

fn user_range(n: u64) -> framealloc::x86_64::structures::paging::page::PageRangeInclusive {
    Page::range_inclusive(page(0), page(n))
}

#[derive(Clone, Copy)]
enum How {
    Active,
    Inactive,
    ViewPerPage,
}

/// Maps `n` pages the way `how` says; returns the time taken.
fn map(
    table: &mut RecursivePageTable<Machine>,
    frames: &mut Frames,
    space: &AddressSpace,
    how: How,
    n: u64,
) -> Duration {
    let flags = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
    let start = Instant::now();
    match how {
        How::Active => {
            for i in 0..n {
                // SAFETY: emulated memory.
                unsafe { table.map_to(page(i), data(i), flags, frames) }
                    .unwrap()
                    .flush();
            }
        }
        How::Inactive => {
            let mut view = table.edit(space).unwrap();
            for i in 0..n {
                // SAFETY: emulated memory.
                unsafe { view.map_to(page(i), data(i), flags, frames) }
                    .unwrap()
                    .flush();
            }
        }
        How::ViewPerPage => {
            for i in 0..n {
                let mut view = table.edit(space).unwrap();
                // SAFETY: emulated memory.
                unsafe { view.map_to(page(i), data(i), flags, frames) }
                    .unwrap()
                    .flush();
            }
        }
    }
    let took = start.elapsed();
    undo(table, frames, space, how, n);
    took
}

/// [`map`] without the timing and the undo.
fn map_only(
    table: &mut RecursivePageTable<Machine>,
    frames: &mut Frames,
    space: &AddressSpace,
    how: How,
    n: u64,
) {
    let flags = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
    match how {
        How::Active => {
            for i in 0..n {
                // SAFETY: emulated memory.
                unsafe { table.map_to(page(i), data(i), flags, frames) }
                    .unwrap()
                    .flush();
            }
        }
        How::Inactive => {
            let mut view = table.edit(space).unwrap();
            for i in 0..n {
                // SAFETY: emulated memory.
                unsafe { view.map_to(page(i), data(i), flags, frames) }
                    .unwrap()
                    .flush();
            }
        }
        How::ViewPerPage => {
            for i in 0..n {
                let mut view = table.edit(space).unwrap();
                // SAFETY: emulated memory.
                unsafe { view.map_to(page(i), data(i), flags, frames) }
                    .unwrap()
                    .flush();
            }
        }
    }
}

/// Unmaps what [`map`] mapped and reclaims the tables.
fn undo(
    table: &mut RecursivePageTable<Machine>,
    frames: &mut Frames,
    space: &AddressSpace,
    how: How,
    n: u64,
) {
    let undo = |t: &mut dyn FnMut(u64)| (0..n).for_each(t);
    match how {
        How::Active => {
            undo(&mut |i| table.unmap(page(i)).unwrap().1.flush());
            // SAFETY: the user half is the table's own.
            unsafe { table.clean_up_addr_range(user_range(n), frames) };
        }
        How::Inactive | How::ViewPerPage => {
            let mut view = table.edit(space).unwrap();
            undo(&mut |i| view.unmap(page(i)).unwrap().1.flush());
            // SAFETY: the user half is the space's own.
            unsafe { view.clean_up_addr_range(user_range(n), frames) };
        }
    }
}

/// One measured run of each case under callgrind.
fn instruction_counts() {
    valgrind::baseline();
    let (mut table, mut frames) = kernel();
    let half = kernel_half();
    let slot = PageTableIndex::new(SLOT);
    // Warm the allocator's free list and the emulator's memory once.
    let warm = table.create_space(slot, &half, &mut frames).unwrap();
    // SAFETY: the space's own tables only.
    unsafe { table.destroy_space(warm, &mut frames, |_, _| ()) }.unwrap();
    let mut made = None;
    valgrind::measure("create", || {
        made = Some(table.create_space(slot, &half, &mut frames).unwrap());
    });
    let space = made.unwrap();
    for (name, how) in [
        ("edit/active/512", How::Active),
        ("edit/inactive/512", How::Inactive),
        ("edit/inactive_view_per_page/512", How::ViewPerPage),
    ] {
        if !valgrind::selected(name) {
            continue;
        }
        // Once unmeasured (tables and frames warm), once measured; `map`
        // undoes its work outside the measured closure.
        map(&mut table, &mut frames, &space, how, 512);
        valgrind::measure(name, || map_only(&mut table, &mut frames, &space, how, 512));
        undo(&mut table, &mut frames, &space, how, 512);
    }
}

fn main() {
    if valgrind::enabled() {
        instruction_counts();
        return;
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let (mut table, mut frames) = kernel();
    let half = kernel_half();
    let slot = PageTableIndex::new(SLOT);
    let mut group = c.benchmark_group("create");
    group.throughput(Throughput::Elements(1));
    group.bench_function("shared_half", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let space = black_box(table.create_space(slot, &half, &mut frames).unwrap());
                total += start.elapsed();
                // SAFETY: the space's own tables only.
                unsafe { table.destroy_space(space, &mut frames, |_, _| ()) }.unwrap();
            }
            total
        });
    });
    group.finish();

    let space = table.create_space(slot, &half, &mut frames).unwrap();
    let mut group = c.benchmark_group("edit");
    for n in [64u64, 512] {
        group.throughput(Throughput::Elements(n));
        for (name, how) in [
            ("active", How::Active),
            ("inactive", How::Inactive),
            ("inactive_view_per_page", How::ViewPerPage),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| map(&mut table, &mut frames, &space, how, n))
                        .sum()
                });
            });
        }
    }
    group.finish();
    c.final_summary();
}
