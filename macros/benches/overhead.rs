//! Does an allocator made by the macros cost anything over a hand-written one?
//!
//! Each pair below is the same allocator written by hand and made by a
//! macro. `drain` is monomorphised once per allocator and kept out of line,
//! so each instance is one function whose instruction count under
//! callgrind is the cost of `N` allocations through that allocator:
//!
//! ```sh
//! cargo bench -p framealloc-macros --bench overhead --no-run
//! valgrind --tool=callgrind --callgrind-out-file=target/overhead.cg \
//!     target/release/deps/overhead-<hash>
//! callgrind_annotate --inclusive=yes target/overhead.cg macros/benches/overhead.rs \
//!     | grep -E 'drain_[a-z_]+\(|=> .*drain_'
//! ```
//!
//! Each call line is followed by the inclusive count of the callee. Where
//! the derived allocator compiles to exactly the hand-written machine code,
//! LLVM merges the two functions, and the derived call shows the
//! hand-written symbol: the strongest form of "no overhead".
//!
//! Run directly, it prints each allocator's checksum (which must agree
//! within a pair, or the comparison is void).

use std::hint::black_box;

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, NoAllocator, PhysFrame, Size4KiB, frame_allocator};

const N: usize = 100_000;

/// The base allocator: a bump pointer.
struct Bump {
    next: u64,
}

impl Bump {
    #[inline]
    fn take(&mut self) -> Option<PhysFrame> {
        let frame = PhysFrame::containing_address(PhysAddr::new(self.next));
        self.next = self.next.checked_add(4096)?;
        Some(frame)
    }
}

// SAFETY: `next` only grows, so every frame is handed out once.
unsafe impl FrameAllocator<Size4KiB> for Bump {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.take()
    }
}

/// Forwarding, by hand.
struct ForwardByHand {
    inner: Bump,
    _stats: u64,
}

// SAFETY: forwards to `Bump`.
unsafe impl FrameAllocator<Size4KiB> for ForwardByHand {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.inner.allocate_frame()
    }
}

/// Forwarding, derived.
#[derive(FrameAllocator)]
struct ForwardDerived {
    #[frame_allocator]
    inner: Bump,
    _stats: u64,
}

/// Enum dispatch, by hand.
enum DispatchByHand {
    Bump(Bump),
    Never(NoAllocator),
}

// SAFETY: forwards to the active variant's allocator.
unsafe impl FrameAllocator<Size4KiB> for DispatchByHand {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        match self {
            DispatchByHand::Bump(bump) => bump.allocate_frame(),
            DispatchByHand::Never(never) => never.allocate_frame(),
        }
    }
}

/// Enum dispatch, derived.
#[derive(FrameAllocator)]
enum DispatchDerived {
    Bump(Bump),
    Never(NoAllocator),
}

#[derive(Clone, Copy)]
enum Region {
    PageTable,
    Kernel,
}

/// A region-typed allocator: the seed's shape.
struct Boot {
    next: u64,
    kernel_frames: u64,
}

impl Boot {
    #[inline]
    fn allocate_frame(&mut self, region: Region) -> Option<PhysFrame> {
        if let Region::Kernel = region {
            self.kernel_frames += 1;
        }
        let frame = PhysFrame::containing_address(PhysAddr::new(self.next));
        self.next = self.next.checked_add(4096)?;
        Some(frame)
    }
}

/// The tagged allocator with a default tag, by hand.
struct TaggedByHand(Boot);

// SAFETY: forwards to `Boot::allocate_frame`, which hands out each frame once.
unsafe impl FrameAllocator<Size4KiB> for TaggedByHand {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.0.allocate_frame(Region::PageTable)
    }
}

/// The tagged allocator with a default tag, derived.
#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = allocate_frame, tag = Region, default = Region::PageTable))]
struct TaggedDerived(Boot);

impl TaggedDerived {
    #[inline]
    fn allocate_frame(&mut self, region: Region) -> Option<PhysFrame> {
        self.0.allocate_frame(region)
    }
}

/// `n` allocations; returns a checksum of the frames. Inlined into one
/// out-of-line function per allocator (below), so that callgrind reports
/// each allocator under its own name.
#[allow(
    clippy::inline_always,
    reason = "each out-of-line wrapper must contain the whole loop"
)]
#[inline(always)]
fn drain<A: FrameAllocator<Size4KiB>>(allocator: &mut A, n: usize) -> u64 {
    let mut sum = 0u64;
    for _ in 0..n {
        if let Some(frame) = allocator.allocate_frame() {
            sum = sum.wrapping_add(frame.start_address().as_u64());
        }
    }
    sum
}

macro_rules! out_of_line {
    ($($name:ident: $ty:ty;)*) => {$(
        #[inline(never)]
        fn $name(allocator: &mut $ty, n: usize) -> u64 {
            drain(allocator, n)
        }
    )*};
}

out_of_line! {
    drain_bump: Bump;
    drain_forward_by_hand: ForwardByHand;
    drain_forward_derived: ForwardDerived;
    drain_enum_by_hand: DispatchByHand;
    drain_enum_derived: DispatchDerived;
    drain_tagged_by_hand: TaggedByHand;
    drain_tagged_derived: TaggedDerived;
}

/// The closure's type cannot be named, so this one is generic; it is the
/// only instance.
#[inline(never)]
fn drain_closure<A: FrameAllocator<Size4KiB>>(allocator: &mut A, n: usize) -> u64 {
    drain(allocator, n)
}

fn main() {
    let n = black_box(N);
    let start = black_box(0x10_0000);
    let boot = || Boot {
        next: start,
        kernel_frames: 0,
    };
    let results = [
        (
            "bump (hand-written impl)",
            drain_bump(&mut Bump { next: start }, n),
        ),
        (
            "forward, by hand",
            drain_forward_by_hand(
                &mut ForwardByHand {
                    inner: Bump { next: start },
                    _stats: 0,
                },
                n,
            ),
        ),
        (
            "forward, derived",
            drain_forward_derived(
                &mut ForwardDerived {
                    inner: Bump { next: start },
                    _stats: 0,
                },
                n,
            ),
        ),
        (
            "enum, by hand",
            drain_enum_by_hand(
                black_box(&mut DispatchByHand::Bump(Bump { next: start })),
                n,
            ),
        ),
        (
            "enum, derived",
            drain_enum_derived(
                black_box(&mut DispatchDerived::Bump(Bump { next: start })),
                n,
            ),
        ),
        (
            "tagged, by hand",
            drain_tagged_by_hand(&mut TaggedByHand(boot()), n),
        ),
        (
            "tagged, derived",
            drain_tagged_derived(&mut TaggedDerived(boot()), n),
        ),
        ("closure, frame_allocator!", {
            let mut bump = Bump { next: start };
            // SAFETY: `bump` hands out each frame once.
            drain_closure(&mut unsafe { frame_allocator!(|| bump.take()) }, n)
        }),
    ];
    let reference = results[0].1;
    for (name, checksum) in results {
        println!("{name:28} checksum {checksum:#x}");
        assert_eq!(checksum, reference, "{name} handed out other frames");
    }
    let _ = (
        DispatchByHand::Never(NoAllocator),
        DispatchDerived::Never(NoAllocator),
    );
    let _ = TaggedDerived(boot()).allocate_frame(Region::Kernel);
}
