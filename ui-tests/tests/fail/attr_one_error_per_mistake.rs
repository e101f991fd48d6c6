// Each malformed attribute below has one mistake, and gets one error that
// points at it; nothing false follows from it.
use framealloc::{FrameAllocator, PhysFrame};

#[derive(FrameAllocator)]
#[frame_allocator(tagged(method = a, tag = u8) unsafe)]
struct UnsafeAfter;

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = a, tag = u8) trailing junk)]
struct Junk;

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = a, tag = u8, sizes(Size4KiB Size2MiB)))]
struct NoComma;

#[derive(FrameAllocator)]
#[frame_allocator(unsafe(tagged(method = a, tag = u8)))]
struct UnsafeCall;

impl UnsafeAfter { fn a(&mut self, _: u8) -> Option<PhysFrame> { None } }
impl Junk { fn a(&mut self, _: u8) -> Option<PhysFrame> { None } }
impl NoComma { fn a(&mut self, _: u8) -> Option<PhysFrame> { None } }
impl UnsafeCall { fn a(&mut self, _: u8) -> Option<PhysFrame> { None } }

fn main() {
    let _ = framealloc::frame_allocator!(|| None, , |frame| drop(frame));
}
