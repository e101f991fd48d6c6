//! The macros in a crate that depends on `framealloc` as `fa`
//! (`fa = { package = "framealloc", … }`), with no `crate = fa` written:
//! the generated code must reach the runtime as `::fa`. Compiled under the
//! workspace's strict lints.

#![no_std]
#![deny(warnings)]
#![warn(clippy::nursery)]

use fa::{FrameAllocator, FramePool, PhysFrame, Size4KiB, TaggedFrameAllocator};

/// A holder forwarding to its pool.
#[derive(FrameAllocator)]
pub struct Holder {
    /// The frames handed out.
    pub pool: FramePool<Size4KiB, 4>,
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Page tables.
    Tables,
    /// Everything else.
    Other,
}

/// A tagged allocator counting the frames asked for each region.
#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = take, tag = Region, default = Region::Tables))]
pub struct Counting {
    /// The frames handed out.
    pub pool: FramePool<Size4KiB, 4>,
    /// Frames asked for page tables.
    pub tables: u32,
    /// Frames asked for anything else.
    pub other: u32,
}

impl Counting {
    fn take(&mut self, region: Region) -> Option<PhysFrame> {
        match region {
            Region::Tables => self.tables += 1,
            Region::Other => self.other += 1,
        }
        self.pool.allocate_frame()
    }
}

/// One frame for `region` from a tagged allocator, through the generated impl.
pub fn tagged_frame<A: TaggedFrameAllocator<Tag = Region>>(
    allocator: &mut A,
    region: Region,
) -> Option<PhysFrame> {
    allocator.tagged(region).allocate_frame()
}

/// An allocator from a closure that counts down from `start`, in 4 KiB frames.
pub fn counting_down(start: u64) -> impl FrameAllocator<Size4KiB> {
    // SAFETY: every frame handed out is distinct (the state only decreases)
    // and none is in use: the tests only compare addresses.
    unsafe {
        fa::frame_allocator!(state = start, |next| {
            *next = next.checked_sub(0x1000)?;
            Some(PhysFrame::containing_address(fa::x86_64::PhysAddr::new(
                *next,
            )))
        },)
    }
}
