//! # framealloc
//!
//! Frame allocation for x86_64 kernels and bootloaders, built around the
//! [`x86_64`] crate's page-table API.
//!
//! `x86_64`'s mappers take a [`FrameAllocator<S>`]. Real allocators rarely
//! fit that trait directly: a bootloader allocates *by region type*, a kernel
//! wants to hand over a closure or a pool of preallocated frames, a reclaim
//! path needs an allocator that never allocates. This crate supplies those
//! shapes as zero-cost adapters, so none of them needs a wrapper struct with
//! explicit lifetimes and a hand-written `unsafe impl`:
//!
//! | you have | you write | module |
//! |---|---|---|
//! | a closure returning `Option<PhysFrame<S>>` | `unsafe { from_fn(\|\| …) }` | [`adapters`] |
//! | an allocator whose allocation takes a region type, zone or flags | `alloc.tagged(tag)` | [`tagged`] |
//! | nothing to give (reclaim or memory-pressure path) | [`NoAllocator`] | [`adapters`] |
//! | a handful of preallocated frames | [`FramePool`] | [`pool`] |
//! | a struct or enum holding an allocator, or a tagged method | `#[derive(FrameAllocator)]` | [`macro@FrameAllocator`] |
//! | a closure literal | `unsafe { frame_allocator!(\|\| …) }` | [`frame_allocator!`] |
//!
//! The traits are `x86_64`'s own ([`FrameAllocator`], [`FrameDeallocator`]),
//! re-exported here, so everything in this crate also works with
//! `x86_64::structures::paging::OffsetPageTable` and friends. The `x86_64`
//! crate itself is re-exported as [`framealloc::x86_64`](crate::x86_64) so
//! that versions always match.
//!
//! ```
//! use framealloc::{from_fn, FrameAllocator, PhysFrame, Size4KiB};
//! use framealloc::x86_64::PhysAddr;
//!
//! let mut next = 0x10_0000u64;
//! // SAFETY: every call yields a frame that was never handed out before.
//! let mut frames = unsafe {
//!     from_fn(|| {
//!         let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(next));
//!         next += 4096;
//!         Some(frame)
//!     })
//! };
//! let a = frames.allocate_frame().unwrap();
//! let b = frames.allocate_frame().unwrap();
//! assert_ne!(a, b);
//! ```
//!
//! ## Beyond the adapters
//!
//! - [`paging`]: [`RecursivePageTable`], a drop-in for `x86_64`'s (it
//!   implements its `Mapper`, `Translate` and `CleanUp`) that invalidates the
//!   TLB where `x86_64`'s does not, with range operations, map-with-allocation
//!   and a readable dump, over a [`paging::Backend`]: the real MMU or the
//!   emulator.
//! - `emu` (feature `emu`): an emulated x86_64 MMU (accessed/dirty bits, a
//!   configurable CPU) whose TLB and paging-structure caches stay stale until
//!   invalidated, to test paging code — yours too — with `cargo test`.
//! - [`alloc`]: firmware memory-map normalisation, and two allocators that
//!   are O(1) (amortised) per frame: a tagged bump allocator that produces
//!   the hand-off map, and a bitmap allocator for 4 KiB and 2 MiB frames;
//!   for several CPUs, allocation through `&self`
//!   ([`alloc::shared::SharedFrameAllocator`], used with `map_to` through
//!   [`alloc::shared::SharedView`]), a lock-free bitmap
//!   ([`alloc::AtomicBitmapAllocator`]) and per-CPU caches in front of any
//!   shared allocator ([`alloc::percpu::PerCpuCaches`]).
//!
//! ## Features
//!
//! - `std`: hosted helpers (`alloc::normalize_to_vec`). Off by default; the
//!   crate is `#![no_std]`.
//! - `emu`: an emulated x86_64 MMU and TLB for host tests (implies `std`).
//! - Boot protocols, each `no_std`, each converting that protocol crate's
//!   memory map into a [`MemoryMap`] (see [`alloc::protocol`]):
//!   `bootloader_api` (0.11), `bootloader09` (`bootloader` 0.9's `bootinfo`,
//!   with a region-typed allocator), `multiboot2` (0.28), `limine` (0.5),
//!   `uefi` (0.41). E820 maps (BIOS, QEMU's PVH boot) need no feature.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod adapters;
pub mod alloc;
#[cfg(feature = "emu")]
pub mod emu;
pub mod paging;
pub mod pool;
pub mod tagged;

pub use x86_64;
pub use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};

pub use adapters::{
    FnAllocator, NoAllocator, StateAllocator, from_fn, from_fns, from_state, from_state_fns,
};
pub use alloc::{BitmapAllocator, BumpAllocator, MemoryMap, RegionKind};
pub use alloc::{SharedFrameAllocator, SharedFrameDeallocator, SharedView};
pub use paging::RecursivePageTable;
pub use pool::{FramePool, PoolFull, WithOverflow};
pub use tagged::{Tagged, TaggedFrameAllocator};

/// `#[derive(FrameAllocator)]` (forward to a field, dispatch over an enum,
/// or wrap a tagged method) and `frame_allocator!` (a closure literal as an
/// allocator, inside the caller's `unsafe`). The derive shares its name with
/// the trait, so `use framealloc::FrameAllocator;` imports both.
pub use framealloc_macros::{FrameAllocator, frame_allocator};

/// Implementation details of the macros. Not public API.
#[doc(hidden)]
pub mod __private;
