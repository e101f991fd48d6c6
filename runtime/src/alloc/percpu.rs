//! Per-CPU frame caches in front of a shared allocator: the magazines of
//! Bonwick and Adams' "Magazines and Vmem", or Linux's per-CPU page lists.
//!
//! A [`SharedFrameAllocator`] is safe to call from every CPU at once, but
//! every call still writes cache lines that other CPUs write too. A
//! [`PerCpuCaches`] keeps a small stack of frames per CPU: an allocation
//! pops from the CPU's own stack and a deallocation pushes onto it, touching
//! only that CPU's slot (cache lines of its own). Only when the stack is empty
//! does it *refill* a batch of `CAP / 2` frames from the shared allocator
//! (one call: [`SharedFrameAllocator::allocate_frames_near`], which the
//! [`AtomicBitmapAllocator`](super::AtomicBitmapAllocator) serves with about
//! one atomic operation per 64 frames, searching from a position of this
//! CPU's own so that CPUs take frames from different parts of the bitmap),
//! and only when it is full does it
//! *drain* the `CAP / 2` coldest frames back. So a CPU holds at most `CAP`
//! frames, and a burst of allocations or frees reaches the shared allocator
//! once per `CAP / 2` frames.
//!
//! ## One CPU, one user at a time
//!
//! A slot is used through a [`CpuCache`] handle obtained with
//! [`PerCpuCaches::claim`]: the caller says which CPU it is on, and the
//! claim fails with [`ClaimError::Busy`] while another handle for that CPU
//! exists. So safe code cannot use one CPU's stack from two threads at
//! once; a thread that migrates while holding a handle keeps exclusive use
//! of that slot (the frames stay correct, only the locality is lost). A
//! kernel either keeps each CPU's handle in its per-CPU data, or claims
//! around each use with preemption off (two atomic operations on the
//! CPU's own cache line).
//!
//! ## Giving frames back
//!
//! - [`CpuCache::drain`]: a CPU returns everything it holds (before going
//!   offline);
//! - [`PerCpuCaches::drain_all`] (memory pressure, from any CPU): drains
//!   every slot nobody holds now and asks the holders of the others to
//!   drain at their next operation;
//! - [`PerCpuCaches::drain_all_now`] with `&mut self` (no handle can exist):
//!   everything, at once.
//!
//! The caches do not check frames given back (that would take a lookup the
//! fast path avoids); the shared allocator checks them when they are
//! drained, and refuses double frees and foreign frames in its own way
//! (the atomic bitmap counts them).
//!
//! ```
//! use core::sync::atomic::AtomicU64;
//! use framealloc::alloc::{normalize, AtomicBitmapAllocator, FirmwareRegion, MemoryRegion,
//!     PerCpuCaches, RegionKind::Usable};
//! use framealloc::{FrameAllocator, FrameDeallocator, Size4KiB};
//!
//! static STORAGE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
//! static FRAMES: AtomicBitmapAllocator<'static> = AtomicBitmapAllocator::new(&STORAGE);
//! // Two CPUs, up to 32 frames each.
//! static CACHES: PerCpuCaches<&AtomicBitmapAllocator<'static>, Size4KiB, 2, 32> =
//!     PerCpuCaches::new(&FRAMES);
//!
//! let firmware = [FirmwareRegion::new(0x20_0000, 0x40_0000, Usable)];
//! let mut regions = [MemoryRegion::default(); 4];
//! let (map, _) = normalize(&firmware, &mut regions, Default::default()).unwrap();
//! // SAFETY: an example: the frames are never touched, nothing else manages them.
//! unsafe { FRAMES.load_map(&map) }.unwrap();
//!
//! std::thread::scope(|s| {
//!     for cpu in 0..2 {
//!         s.spawn(move || {
//!             let mut cache = CACHES.claim(cpu).unwrap();
//!             // Another claim of the same CPU fails while `cache` lives.
//!             assert!(CACHES.claim(cpu).is_err());
//!             let frame = cache.allocate_frame().unwrap(); // refills 16 frames
//!             assert_eq!(cache.len(), 15);
//!             // SAFETY: the frame was never used.
//!             unsafe { cache.deallocate_frame(frame) };
//!             assert_eq!(cache.len(), 16);
//!         });
//!     }
//! });
//! assert_eq!(FRAMES.free_frames(), 1024 - 32);
//! let report = CACHES.drain_all();
//! assert_eq!((report.drained, report.deferred), (32, 0));
//! assert_eq!(FRAMES.free_frames(), 1024);
//! ```

use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PageSize, PhysFrame};

use super::shared::{SharedFrameAllocator, SharedFrameDeallocator};
use super::sync::{AtomicBool, Ordering, UnsafeCell, const_unless_loom};

/// Why [`PerCpuCaches::claim`] gave no handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// The CPU number is not below the number of slots.
    NoSuchCpu {
        /// The CPU asked for.
        cpu: usize,
        /// The number of slots.
        cpus: usize,
    },
    /// Another [`CpuCache`] for this CPU exists, or
    /// [`PerCpuCaches::drain_all`] is draining this CPU's cache right now
    /// (briefly). Retry, or allocate from the shared allocator
    /// ([`PerCpuCaches::allocator`]) this once.
    Busy {
        /// The CPU asked for.
        cpu: usize,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ClaimError::NoSuchCpu { cpu, cpus } => {
                write!(f, "no cache for CPU {cpu}: there are {cpus}")
            }
            ClaimError::Busy { cpu } => write!(f, "the cache of CPU {cpu} is in use"),
        }
    }
}

impl core::error::Error for ClaimError {}

/// What [`PerCpuCaches::drain_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainAll {
    /// Frames given back to the shared allocator now.
    pub drained: usize,
    /// CPUs whose cache was in use: each drains at its next operation.
    pub deferred: usize,
}

/// One CPU's stack of frames.
struct Magazine<S: PageSize, const CAP: usize> {
    len: usize,
    /// Where this CPU's refills search the shared allocator
    /// ([`SharedFrameAllocator::allocate_frames_near`]); `None` until the
    /// first refill spreads it by CPU number.
    cursor: Option<usize>,
    frames: [MaybeUninit<PhysFrame<S>>; CAP],
}

/// One CPU's slot, on a cache line of its own.
#[repr(align(64))]
struct Slot<S: PageSize, const CAP: usize> {
    claimed: AtomicBool,
    drain_requested: AtomicBool,
    magazine: UnsafeCell<Magazine<S, CAP>>,
}

impl<S: PageSize, const CAP: usize> Slot<S, CAP> {
    const_unless_loom! {
        fn new() -> Self {
            Slot {
                claimed: AtomicBool::new(false),
                drain_requested: AtomicBool::new(false),
                magazine: UnsafeCell::new(Magazine {
                    len: 0,
                    cursor: None,
                    frames: [const { MaybeUninit::uninit() }; CAP],
                }),
            }
        }
    }
}

/// Per-CPU caches of frames of size `S` in front of the shared allocator
/// `A`: `CPUS` slots of up to `CAP` frames each (refill and drain in
/// batches of `CAP / 2`). See the [module documentation](self).
///
/// `A` is typically a reference to a `static` allocator
/// (`&AtomicBitmapAllocator<'static>`). `const`-constructible, no heap:
/// `CPUS * CAP` frames of storage inside.
///
/// Dropping it does not give the cached frames back (a `Drop` impl could
/// not require `A` to deallocate): they stay allocated in `A`. Call
/// [`drain_all_now`](Self::drain_all_now) first if `A` outlives it.
pub struct PerCpuCaches<A, S: PageSize, const CPUS: usize, const CAP: usize> {
    allocator: A,
    slots: [Slot<S, CAP>; CPUS],
}

// SAFETY: a slot's magazine is reached only by the holder of its claim (a
// `CpuCache`, which exists once per slot: the `claimed` flag is taken with a
// compare-and-swap) or through `&mut self`; the claim's acquire/release
// hands the magazine from one holder to the next. The frames are plain
// data. The shared allocator is used through `&A` from several threads.
unsafe impl<A: Sync, S: PageSize, const CPUS: usize, const CAP: usize> Sync
    for PerCpuCaches<A, S, CPUS, CAP>
{
}

impl<A, S: PageSize, const CPUS: usize, const CAP: usize> fmt::Debug
    for PerCpuCaches<A, S, CPUS, CAP>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuCaches")
            .field("cpus", &CPUS)
            .field("capacity", &CAP)
            .finish_non_exhaustive()
    }
}

impl<A, S: PageSize, const CPUS: usize, const CAP: usize> PerCpuCaches<A, S, CPUS, CAP> {
    /// Frames moved per refill or drain.
    pub const BATCH: usize = CAP / 2;

    const_unless_loom! {
        /// Empty caches in front of `allocator`. `const`, so it can
        /// initialise a `static`. `CAP` must be at least 2 (checked at
        /// compile time).
        #[must_use]
        pub fn new(allocator: A) -> Self {
            const { assert!(CAP >= 2, "a per-CPU cache needs room for at least 2 frames") };
            PerCpuCaches {
                allocator,
                slots: Self::slots(),
            }
        }
    }

    #[cfg(not(all(loom, test)))]
    const fn slots() -> [Slot<S, CAP>; CPUS] {
        [const { Slot::new() }; CPUS]
    }

    #[cfg(all(loom, test))]
    fn slots() -> [Slot<S, CAP>; CPUS] {
        core::array::from_fn(|_| Slot::new())
    }

    /// The shared allocator behind the caches.
    pub const fn allocator(&self) -> &A {
        &self.allocator
    }

    /// The handle for `cpu`'s cache: the only way to allocate from it or
    /// give frames to it.
    ///
    /// # Errors
    ///
    /// [`ClaimError::NoSuchCpu`] if `cpu >= CPUS`; [`ClaimError::Busy`]
    /// while another handle for `cpu` exists.
    pub fn claim(&self, cpu: usize) -> Result<CpuCache<'_, A, S, CPUS, CAP>, ClaimError> {
        let slot = self
            .slots
            .get(cpu)
            .ok_or(ClaimError::NoSuchCpu { cpu, cpus: CPUS })?;
        // Acquire: the previous holder's changes to the magazine.
        slot.claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| ClaimError::Busy { cpu })?;
        Ok(CpuCache {
            caches: self,
            slot,
            cpu,
            not_sync: PhantomData,
        })
    }
}

impl<A, S, const CPUS: usize, const CAP: usize> PerCpuCaches<A, S, CPUS, CAP>
where
    S: PageSize,
    A: SharedFrameDeallocator<S>,
{
    /// Gives every cached frame back to the shared allocator (memory
    /// pressure, shutdown), from any CPU: slots nobody holds are drained now;
    /// a held slot is marked, and its holder drains it at its next
    /// allocation or deallocation.
    pub fn drain_all(&self) -> DrainAll {
        let mut report = DrainAll::default();
        for cpu in 0..CPUS {
            if let Ok(mut cache) = self.claim(cpu) {
                report.drained += cache.drain();
            } else {
                self.slots[cpu]
                    .drain_requested
                    .store(true, Ordering::Release);
                report.deferred += 1;
            }
        }
        report
    }

    /// Gives every cached frame back now; `&mut self` proves that no handle
    /// exists. Returns the number of frames.
    pub fn drain_all_now(&mut self) -> usize {
        let mut drained = 0;
        for cpu in 0..CPUS {
            if let Ok(mut cache) = self.claim(cpu) {
                drained += cache.drain();
            }
        }
        drained
    }
}

/// The handle for one CPU's cache: allocate and free through it as a
/// [`FrameAllocator`] and [`FrameDeallocator`] (pass `&mut cache` to
/// `map_to`). Exists once per CPU at a time; dropping it releases the slot
/// and keeps the frames cached for the next holder.
pub struct CpuCache<'c, A, S: PageSize, const CPUS: usize, const CAP: usize> {
    caches: &'c PerCpuCaches<A, S, CPUS, CAP>,
    slot: &'c Slot<S, CAP>,
    cpu: usize,
    /// `Send` but not `Sync`: handing the handle to another thread is fine,
    /// sharing it is not (its methods take `&mut self` anyway).
    not_sync: PhantomData<core::cell::Cell<()>>,
}

impl<A, S: PageSize, const CPUS: usize, const CAP: usize> fmt::Debug
    for CpuCache<'_, A, S, CPUS, CAP>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuCache")
            .field("cached", &self.len())
            .finish_non_exhaustive()
    }
}

impl<A, S: PageSize, const CPUS: usize, const CAP: usize> Drop for CpuCache<'_, A, S, CPUS, CAP> {
    fn drop(&mut self) {
        // Release: the next holder sees the magazine as we leave it.
        self.slot.claimed.store(false, Ordering::Release);
    }
}

impl<A, S: PageSize, const CPUS: usize, const CAP: usize> CpuCache<'_, A, S, CPUS, CAP> {
    /// Runs `f` on the magazine.
    #[inline]
    fn magazine<R>(&self, f: impl FnOnce(&mut Magazine<S, CAP>) -> R) -> R {
        self.slot.magazine.with_mut(|magazine| {
            // SAFETY: this handle holds the slot's claim (taken with a
            // compare-and-swap in `claim`, released in `drop`), so nothing
            // else reaches the magazine while it lives; `f` cannot reach
            // this handle again (it gets only the magazine).
            f(unsafe { &mut *magazine })
        })
    }

    /// Frames cached on this CPU now.
    pub fn len(&self) -> usize {
        self.slot.magazine.with(|magazine| {
            // SAFETY: as in `magazine`: this handle has exclusive use.
            unsafe { (*magazine).len }
        })
    }

    /// Whether this CPU's cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<A, S, const CPUS: usize, const CAP: usize> CpuCache<'_, A, S, CPUS, CAP>
where
    S: PageSize,
    A: SharedFrameDeallocator<S>,
{
    /// Gives every frame of this CPU's cache back to the shared allocator
    /// (before the CPU goes offline); returns how many.
    pub fn drain(&mut self) -> usize {
        let allocator = &self.caches.allocator;
        self.magazine(|magazine| {
            let n = magazine.len;
            // SAFETY: `frames[..len]` are initialised, and `MaybeUninit<T>`
            // has `T`'s layout.
            let frames = unsafe {
                core::slice::from_raw_parts(magazine.frames.as_ptr().cast::<PhysFrame<S>>(), n)
            };
            // SAFETY: cached frames are unused: they came from the shared
            // allocator unused, or were given back by a caller who promised
            // it (`deallocate_frame`).
            unsafe { allocator.deallocate_frames(frames) };
            magazine.len = 0;
            n
        })
    }

    /// Drains if [`PerCpuCaches::drain_all`] asked for it. A load of this
    /// CPU's own line on the fast path.
    #[inline]
    fn drain_if_requested(&mut self) {
        let requested = &self.slot.drain_requested;
        if requested.load(Ordering::Relaxed) && requested.swap(false, Ordering::Acquire) {
            self.drain();
        }
    }
}

// SAFETY: frames come from the shared allocator `A` (whose implementer
// promised unique, unused frames) or were given back through
// `deallocate_frame` by a caller who promised they are unused; each sits in
// exactly one slot of one magazine, and popping removes it, so none is
// handed out twice. Only the claim holder reaches a magazine.
unsafe impl<A, S, const CPUS: usize, const CAP: usize> FrameAllocator<S>
    for CpuCache<'_, A, S, CPUS, CAP>
where
    S: PageSize,
    A: SharedFrameAllocator<S> + SharedFrameDeallocator<S>,
{
    /// Pops a cached frame; when none is cached, first refills `CAP / 2`
    /// from the shared allocator. `None` only if that has none left: call
    /// [`PerCpuCaches::drain_all`] to collect the other CPUs' frames and
    /// try again.
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<S>> {
        self.drain_if_requested();
        let allocator = &self.caches.allocator;
        // Spreads the CPUs' first refills over the allocator's range (an
        // odd multiplier is a bijection modulo any power of two).
        let spread = self.cpu.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as usize);
        self.magazine(|magazine| {
            if magazine.len == 0 {
                let batch = PerCpuCaches::<A, S, CPUS, CAP>::BATCH;
                let cursor = magazine.cursor.get_or_insert(spread);
                let n = allocator.allocate_frames_near(cursor, &mut magazine.frames[..batch]);
                magazine.len = n.min(batch);
                if magazine.len == 0 {
                    return None;
                }
            }
            magazine.len -= 1;
            // SAFETY: `frames[..len]` are initialised (the refill's
            // implementer promised `frames[..n]`; pushes write before
            // growing `len`).
            Some(unsafe { magazine.frames[magazine.len].assume_init() })
        })
    }
}

impl<A, S, const CPUS: usize, const CAP: usize> FrameDeallocator<S>
    for CpuCache<'_, A, S, CPUS, CAP>
where
    S: PageSize,
    A: SharedFrameDeallocator<S>,
{
    /// Pushes the frame onto this CPU's stack; when the stack is full,
    /// first drains its `CAP / 2` oldest frames to the shared allocator.
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<S>) {
        self.drain_if_requested();
        let allocator = &self.caches.allocator;
        self.magazine(|magazine| {
            if magazine.len == CAP {
                let batch = PerCpuCaches::<A, S, CPUS, CAP>::BATCH;
                // SAFETY: all `CAP` frames are initialised, and
                // `MaybeUninit<T>` has `T`'s layout.
                let oldest = unsafe {
                    core::slice::from_raw_parts(
                        magazine.frames.as_ptr().cast::<PhysFrame<S>>(),
                        batch,
                    )
                };
                // SAFETY: cached frames are unused (see `drain`).
                unsafe { allocator.deallocate_frames(oldest) };
                magazine.frames.copy_within(batch..CAP, 0);
                magazine.len = CAP - batch;
            }
            magazine.frames[magazine.len].write(frame);
            magazine.len += 1;
        });
    }
}
