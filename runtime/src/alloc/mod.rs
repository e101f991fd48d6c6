//! Stock frame allocators over a firmware memory map.
//!
//! The path of a boot, and the types on it:
//!
//! 1. [`normalize`] turns the firmware's messy [`FirmwareRegion`]s into a
//!    [`MemoryMap`] (sorted, disjoint, frame-aligned; see [`memory_map`] for
//!    the rules) and a [`NormalizeReport`] of what it changed, in
//!    O(n log n) for `n` entries.
//! 2. A bootloader allocates from it with a [`BumpAllocator`], O(1) per
//!    frame, telling each allocation its purpose (a [`RegionKind`]; it is a
//!    [`TaggedFrameAllocator`](crate::TaggedFrameAllocator)). Mixing 4 KiB
//!    and 2 MiB frames strands no memory.
//!    [`BumpAllocator::hand_off`] produces the updated map with every used
//!    run marked with its purpose: the map the kernel receives.
//! 3. The kernel builds a [`BitmapAllocator`] from that map: 4 KiB and 2 MiB
//!    frames, with deallocation, over storage it provides; a 4 KiB
//!    allocation costs the same at 1 Ki and 1 Mi frames
//!    (`cargo bench -p tests --bench allocators`).
//!
//! Nothing here uses a heap; storage is always the caller's.

pub mod atomic_bitmap;
pub mod bitmap;
pub mod bump;
pub mod memory_map;
pub mod percpu;
pub mod protocol;
pub mod shared;
mod sync;

#[cfg(all(loom, test))]
mod loom_tests;

pub use atomic_bitmap::{AtomicBitmapAllocator, AtomicBitmapError};
pub use bitmap::{BitmapAllocator, BitmapError, DeallocError};
pub use bump::{BumpAllocator, BumpError, Runs};
#[cfg(feature = "std")]
pub use memory_map::normalize_to_vec;
pub use memory_map::{
    FRAME_SIZE, FirmwareRegion, MapError, MemoryMap, MemoryRegion, NormalizeOptions,
    NormalizeReport, PHYS_LIMIT, RegionKind, normalize,
};
pub use percpu::{ClaimError, CpuCache, DrainAll, PerCpuCaches};
pub use shared::{SharedFrameAllocator, SharedFrameDeallocator, SharedView};
