//! Every form under `deny(warnings)`, `deny(missing_docs)` and clippy's
//! lint groups as rustc sees them: generated code must not add a warning.
#![deny(warnings, missing_docs, unsafe_op_in_unsafe_fn, unused_qualifications, unused_results)]
#![deny(rust_2018_idioms, unreachable_pub, missing_debug_implementations)]

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, NoAllocator, PhysFrame};

/// Forwards.
#[derive(Debug, FrameAllocator)]
pub struct Forward<A>(pub A);

/// Dispatches.
#[derive(Debug, FrameAllocator)]
pub enum Dispatch<A> {
    /// Never.
    Never(NoAllocator),
    /// Other.
    Other(A),
}

/// Tagged.
#[derive(Debug, FrameAllocator)]
#[frame_allocator(unsafe tagged(method = alloc, tag = u8, default = 0))]
pub struct Tags;

impl Tags {
    fn alloc(&mut self, tag: u8) -> Option<PhysFrame> {
        Some(PhysFrame::containing_address(PhysAddr::new(u64::from(tag) * 4096)))
    }
}

fn main() {
    let mut d = Dispatch::Other(Forward(Tags));
    assert!(FrameAllocator::allocate_frame(&mut d).is_some());
    let mut c = unsafe { framealloc::frame_allocator!(|| Tags.alloc(1)) };
    assert!(c.allocate_frame().is_some());
}
