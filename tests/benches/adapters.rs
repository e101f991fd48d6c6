//! Adapter overhead: the same bump allocation through each adapter and
//! through a hand-written `FrameAllocator` impl, in instructions (callgrind,
//! `BENCH_MODE=ir`) and time (criterion). Zero extra instructions is the
//! target; `&mut dyn FrameAllocator` is included as the cost adapters avoid.
//!
//! Case names are `alloc/<how>/<count>`; the figure is per allocation.

#![allow(
    clippy::inline_always,
    reason = "the allocation must inline into the measured loop, as in real use"
)]

#[path = "support/valgrind.rs"]
mod valgrind;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use framealloc::x86_64::PhysAddr;
use framealloc::{
    FrameAllocator, PhysFrame, Size4KiB, TaggedFrameAllocator, frame_allocator, from_fn, from_state,
};

const COUNT: u64 = 4096;
const START: u64 = 0x10_0000;

#[inline(always)]
fn frame_at(addr: u64) -> PhysFrame<Size4KiB> {
    PhysFrame::containing_address(PhysAddr::new_truncate(addr))
}

/// The hand-written impl every adapter is compared with.
struct Bump {
    next: u64,
    end: u64,
}

impl Bump {
    #[inline(always)]
    fn take(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if self.next >= self.end {
            return None;
        }
        let frame = frame_at(self.next);
        self.next += 4096;
        Some(frame)
    }
}

fn bump() -> Bump {
    Bump {
        next: START,
        end: START + (COUNT << 12),
    }
}

// SAFETY: `next` only grows, so each frame is handed out once.
unsafe impl FrameAllocator<Size4KiB> for Bump {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.take()
    }
}

/// A hand-written impl over a borrowed allocator: what a closure capturing
/// `&mut Bump` is compared with.
struct ByRef<'a>(&'a mut Bump);

// SAFETY: forwards to `Bump`, which hands out each frame once.
unsafe impl FrameAllocator<Size4KiB> for ByRef<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.0.take()
    }
}

/// What a bootloader tags its allocations with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    PageTable,
    #[allow(dead_code, reason = "a tag the benchmark does not use")]
    Kernel,
}

/// A bump allocator that counts page-table frames separately.
struct TaggedBump {
    inner: Bump,
    page_tables: u64,
}

// SAFETY: forwards to `Bump`, which hands out each frame once.
unsafe impl TaggedFrameAllocator for TaggedBump {
    type Tag = Purpose;
    #[inline]
    fn allocate_tagged(&mut self, tag: Purpose) -> Option<PhysFrame<Size4KiB>> {
        if tag == Purpose::PageTable {
            self.page_tables += 1;
        }
        self.inner.take()
    }
}

/// The wrapper the tagged view replaces: a struct and an `unsafe impl`
/// written by hand to fix the tag.
struct PageTableAllocator<'a> {
    boot: &'a mut TaggedBump,
}

// SAFETY: forwards to `TaggedBump`, which hands out each frame once.
unsafe impl FrameAllocator<Size4KiB> for PageTableAllocator<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.boot.allocate_tagged(Purpose::PageTable)
    }
}

/// A second allocator type, so that an enum has two different impls to
/// dispatch to: hands out the same frames, from the top down.
struct TopDown {
    next: u64,
    start: u64,
}

impl TopDown {
    #[inline(always)]
    fn take(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if self.next <= self.start {
            return None;
        }
        self.next -= 4096;
        Some(frame_at(self.next))
    }
}

// SAFETY: `next` only shrinks, so each frame is handed out once.
unsafe impl FrameAllocator<Size4KiB> for TopDown {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.take()
    }
}

/// Forwarding struct made by the derive.
#[derive(framealloc::FrameAllocator)]
struct Derived {
    #[frame_allocator]
    inner: Bump,
    #[allow(dead_code, reason = "a field the derive must leave alone")]
    label: u32,
}

/// Enum dispatch made by the derive.
#[derive(framealloc::FrameAllocator)]
enum DerivedEither {
    Up(Bump),
    Down(TopDown),
}

/// The same enum dispatch written by hand.
enum HandEither {
    Up(Bump),
    Down(TopDown),
}

// SAFETY: forwards to the variant's allocator.
unsafe impl FrameAllocator<Size4KiB> for HandEither {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        match self {
            HandEither::Up(a) => a.take(),
            HandEither::Down(a) => a.take(),
        }
    }
}

/// A tagged allocator made by the derive from an inherent method.
#[derive(framealloc::FrameAllocator)]
#[frame_allocator(unsafe tagged(
    method = allocate_for,
    tag = Purpose,
    default = Purpose::PageTable,
))]
struct DerivedTagged {
    inner: Bump,
    page_tables: u64,
}

impl DerivedTagged {
    #[inline]
    fn allocate_for(&mut self, tag: Purpose) -> Option<PhysFrame<Size4KiB>> {
        if tag == Purpose::PageTable {
            self.page_tables += 1;
        }
        self.inner.take()
    }
}

/// Allocates `n` frames one by one; every frame is observed.
#[inline(never)]
fn drain<A: FrameAllocator<Size4KiB> + ?Sized>(a: &mut A, n: u64) -> u64 {
    let mut last = 0;
    for _ in 0..n {
        match a.allocate_frame() {
            Some(f) => last = black_box(f.start_address().as_u64()),
            None => panic!("allocator ran dry"),
        }
    }
    last
}

fn expect_last(last: u64) {
    assert_eq!(last, START + ((COUNT - 1) << 12));
}

enum Runner {
    Time(Box<Criterion>),
    Instructions,
}

impl Runner {
    /// Runs `op` (allocating `COUNT` frames from a fresh allocator) as `how`.
    fn case(&mut self, how: &str, mut op: impl FnMut() -> u64) {
        let name = format!("alloc/{how}/{COUNT}");
        match self {
            Runner::Time(c) => {
                c.bench_function(&name, |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            expect_last(op());
                        }
                        start.elapsed()
                    });
                });
            }
            Runner::Instructions => {
                if valgrind::selected(&name) {
                    valgrind::measure(&name, || expect_last(op()));
                }
            }
        }
    }
}

fn main() {
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

    closure_and_tagged_cases(&mut runner);
    derive_cases(&mut runner);
    if let Runner::Time(c) = runner {
        c.final_summary();
    }
}

/// The hand-written impl, closures, the tagged view.
fn closure_and_tagged_cases(runner: &mut Runner) {
    runner.case("hand", || drain(&mut bump(), COUNT));
    runner.case("hand_ref", || {
        let mut b = bump();
        drain(&mut ByRef(&mut b), COUNT)
    });
    runner.case("from_fn", || {
        let mut b = bump();
        // SAFETY: `Bump` hands out each frame once.
        let mut a = unsafe { from_fn(|| b.take()) };
        drain(&mut a, COUNT)
    });
    runner.case("from_state", || {
        // SAFETY: `Bump` hands out each frame once.
        let mut a = unsafe { from_state(bump(), Bump::take) };
        drain(&mut a, COUNT)
    });
    runner.case("tagged_hand_wrapper", || {
        let mut boot = TaggedBump {
            inner: bump(),
            page_tables: 0,
        };
        let last = drain(&mut PageTableAllocator { boot: &mut boot }, COUNT);
        assert_eq!(boot.page_tables, COUNT);
        last
    });
    runner.case("tagged_view", || {
        let mut boot = TaggedBump {
            inner: bump(),
            page_tables: 0,
        };
        let last = drain(&mut boot.tagged(Purpose::PageTable), COUNT);
        assert_eq!(boot.page_tables, COUNT);
        last
    });
    runner.case("dyn", || {
        let mut b = bump();
        let a: &mut dyn FrameAllocator<Size4KiB> = black_box(&mut b);
        drain(a, COUNT)
    });
}

/// `frame_allocator!` and the derive (struct, tagged, enum vs a hand enum).
fn derive_cases(runner: &mut Runner) {
    runner.case("frame_allocator_macro", || {
        let mut b = bump();
        // SAFETY: `Bump` hands out each frame once.
        let mut a = unsafe { frame_allocator!(|| b.take()) };
        drain(&mut a, COUNT)
    });
    runner.case("derive_struct", || {
        let mut a = Derived {
            inner: bump(),
            label: 1,
        };
        drain(&mut a, COUNT)
    });
    runner.case("derive_tagged_default", || {
        let mut a = DerivedTagged {
            inner: bump(),
            page_tables: 0,
        };
        let last = drain(&mut a, COUNT);
        assert_eq!(a.page_tables, COUNT);
        last
    });
    // The variant is chosen at run time (black_box), so the dispatch stays.
    let top = START + (COUNT << 12);
    for up in [true, false] {
        let dir = if up { "up" } else { "down" };
        runner.case(&format!("hand_enum_{dir}"), || {
            let mut a = if black_box(up) {
                HandEither::Up(bump())
            } else {
                HandEither::Down(TopDown {
                    next: top,
                    start: START,
                })
            };
            let last = drain(&mut a, COUNT);
            if up { last } else { last + ((COUNT - 1) << 12) }
        });
        runner.case(&format!("derive_enum_{dir}"), || {
            let mut a = if black_box(up) {
                DerivedEither::Up(bump())
            } else {
                DerivedEither::Down(TopDown {
                    next: top,
                    start: START,
                })
            };
            let last = drain(&mut a, COUNT);
            if up { last } else { last + ((COUNT - 1) << 12) }
        });
    }
}
