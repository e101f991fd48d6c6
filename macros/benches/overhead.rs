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
//!
//! The pairs cover forwarding to a field, enum dispatch, a tagged method, a
//! closure, and the holders kernels use: `&mut A`, `&mut dyn
//! FrameAllocator`, `Box<A>`, `Box<dyn …>` (each derived form must equal its
//! hand-written twin: +0 instructions) and a spin lock
//! (`#[frame_allocator(lock = lock)]`: one lock and one unlock per call,
//! like the hand-written impl, so again the same count as its twin), and a
//! shared allocator (`#[frame_allocator(shared)]`, through `SharedView` and
//! through the derived impl for `&T`, against a hand-written forward).

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use framealloc::x86_64::PhysAddr;
use framealloc::{
    FrameAllocator, NoAllocator, PhysFrame, SharedFrameAllocator, SharedView, Size4KiB,
    frame_allocator,
};

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

/// Through `&mut A`, by hand.
struct RefByHand<'a> {
    inner: &'a mut Bump,
}

// SAFETY: forwards to `Bump`.
unsafe impl FrameAllocator<Size4KiB> for RefByHand<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.inner.allocate_frame()
    }
}

/// Through `&mut A`, derived.
#[derive(FrameAllocator)]
struct RefDerived<'a> {
    inner: &'a mut Bump,
}

/// Through `&mut dyn FrameAllocator`, by hand.
struct DynByHand<'a> {
    inner: &'a mut dyn FrameAllocator<Size4KiB>,
}

// SAFETY: forwards to the allocator behind the reference.
unsafe impl FrameAllocator<Size4KiB> for DynByHand<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.inner.allocate_frame()
    }
}

/// Through `&mut dyn FrameAllocator`, derived.
#[derive(FrameAllocator)]
struct DynDerived<'a> {
    inner: &'a mut dyn FrameAllocator<Size4KiB>,
}

/// Through `Box<A>`, by hand.
struct BoxByHand {
    inner: Box<Bump>,
}

// SAFETY: forwards to `Bump`.
unsafe impl FrameAllocator<Size4KiB> for BoxByHand {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.inner.allocate_frame()
    }
}

/// Through `Box<A>`, derived.
#[derive(FrameAllocator)]
struct BoxDerived {
    inner: Box<Bump>,
}

/// Through `Box<dyn FrameAllocator>`, by hand.
struct BoxDynByHand {
    inner: Box<dyn FrameAllocator<Size4KiB>>,
}

// SAFETY: forwards to the boxed allocator.
unsafe impl FrameAllocator<Size4KiB> for BoxDynByHand {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.inner.allocate_frame()
    }
}

/// Through `Box<dyn FrameAllocator>`, derived.
#[derive(FrameAllocator)]
struct BoxDynDerived {
    inner: Box<dyn FrameAllocator<Size4KiB>>,
}

/// A minimal spin lock (the shape of `spin::Mutex`): one atomic swap to
/// lock, one atomic store to unlock. Atomics keep the compiler from merging
/// the lock of one call with the next, as it does with a `RefCell`'s flag.
struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

struct SpinGuard<'a, T>(&'a SpinLock<T>);

impl<T> SpinLock<T> {
    const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    fn lock(&self) -> SpinGuard<'_, T> {
        while self.locked.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        SpinGuard(self)
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, so this is the only reference.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

/// Behind a lock (one lock and unlock per call), by hand.
struct LockByHand<'a> {
    inner: &'a SpinLock<Bump>,
}

// SAFETY: forwards to `Bump`.
unsafe impl FrameAllocator<Size4KiB> for LockByHand<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.inner.lock().allocate_frame()
    }
}

/// Behind a lock, derived.
#[derive(FrameAllocator)]
struct LockDerived<'a> {
    #[frame_allocator(lock = lock)]
    inner: &'a SpinLock<Bump>,
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

/// A shared allocator: a bump pointer moved by `fetch_add`.
struct AtomicBump {
    next: AtomicU64,
}

// SAFETY: `fetch_add` gives every caller a different frame.
unsafe impl SharedFrameAllocator<Size4KiB> for AtomicBump {
    #[inline]
    fn allocate_frame(&self) -> Option<PhysFrame> {
        let next = self.next.fetch_add(4096, Ordering::Relaxed);
        Some(PhysFrame::containing_address(PhysAddr::new(next)))
    }
}

/// Forwarding to a shared allocator, by hand.
struct SharedByHand {
    inner: AtomicBump,
    _stats: u64,
}

// SAFETY: forwards to `AtomicBump`, which hands out each frame once.
unsafe impl SharedFrameAllocator<Size4KiB> for SharedByHand {
    #[inline]
    fn allocate_frame(&self) -> Option<PhysFrame> {
        self.inner.allocate_frame()
    }
}

/// Forwarding to a shared allocator, derived.
#[derive(FrameAllocator)]
struct SharedDerived {
    #[frame_allocator(shared)]
    inner: AtomicBump,
    _stats: u64,
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
    drain_ref_by_hand: RefByHand<'_>;
    drain_ref_derived: RefDerived<'_>;
    drain_dyn_by_hand: DynByHand<'_>;
    drain_dyn_derived: DynDerived<'_>;
    drain_box_by_hand: BoxByHand;
    drain_box_derived: BoxDerived;
    drain_box_dyn_by_hand: BoxDynByHand;
    drain_box_dyn_derived: BoxDynDerived;
    drain_lock_by_hand: LockByHand<'_>;
    drain_lock_derived: LockDerived<'_>;
    drain_shared_by_hand: SharedView<'_, SharedByHand>;
    drain_shared_derived: SharedView<'_, SharedDerived>;
    drain_shared_derived_ref: &SharedDerived;
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
    let mut results = vec![
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
    results.extend(holders(start, n));
    results.extend(shared(start, n));
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

/// The shared rows: a hand-written forward through `SharedView`, the
/// derived one through `SharedView`, and through the derived `&T` impl.
fn shared(start: u64, n: usize) -> Vec<(&'static str, u64)> {
    let by_hand = SharedByHand {
        inner: AtomicBump {
            next: AtomicU64::new(start),
        },
        _stats: 0,
    };
    let derived = |start| SharedDerived {
        inner: AtomicBump {
            next: AtomicU64::new(start),
        },
        _stats: 0,
    };
    vec![
        (
            "shared, by hand, view",
            drain_shared_by_hand(&mut SharedView::new(&by_hand), n),
        ),
        (
            "shared, derived, view",
            drain_shared_derived(&mut SharedView::new(&derived(start)), n),
        ),
        (
            "shared, derived, &T",
            drain_shared_derived_ref(&mut &derived(start), n),
        ),
    ]
}

/// The holder pairs: references, boxes, `dyn`, a lock.
fn holders(start: u64, n: usize) -> Vec<(&'static str, u64)> {
    vec![
        ("&mut A, by hand", {
            drain_ref_by_hand(
                &mut RefByHand {
                    inner: &mut Bump { next: start },
                },
                n,
            )
        }),
        ("&mut A, derived", {
            drain_ref_derived(
                &mut RefDerived {
                    inner: &mut Bump { next: start },
                },
                n,
            )
        }),
        ("&mut dyn, by hand", {
            let mut bump = Bump { next: start };
            // Hidden from the optimiser, so that the call stays dynamic.
            let inner: &mut dyn FrameAllocator<Size4KiB> = black_box(&mut bump);
            drain_dyn_by_hand(&mut DynByHand { inner }, n)
        }),
        ("&mut dyn, derived", {
            let mut bump = Bump { next: start };
            let inner: &mut dyn FrameAllocator<Size4KiB> = black_box(&mut bump);
            drain_dyn_derived(&mut DynDerived { inner }, n)
        }),
        (
            "Box<A>, by hand",
            drain_box_by_hand(
                &mut BoxByHand {
                    inner: Box::new(Bump { next: start }),
                },
                n,
            ),
        ),
        (
            "Box<A>, derived",
            drain_box_derived(
                &mut BoxDerived {
                    inner: Box::new(Bump { next: start }),
                },
                n,
            ),
        ),
        (
            "Box<dyn>, by hand",
            drain_box_dyn_by_hand(
                &mut BoxDynByHand {
                    inner: black_box(Box::new(Bump { next: start })),
                },
                n,
            ),
        ),
        (
            "Box<dyn>, derived",
            drain_box_dyn_derived(
                &mut BoxDynDerived {
                    inner: black_box(Box::new(Bump { next: start })),
                },
                n,
            ),
        ),
        ("lock, by hand", {
            drain_lock_by_hand(
                &mut LockByHand {
                    inner: &SpinLock::new(Bump { next: start }),
                },
                n,
            )
        }),
        ("lock, derived", {
            drain_lock_derived(
                &mut LockDerived {
                    inner: &SpinLock::new(Bump { next: start }),
                },
                n,
            )
        }),
    ]
}
