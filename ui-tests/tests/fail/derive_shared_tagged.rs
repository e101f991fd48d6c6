// `shared` on a field of a type that allocates through a tagged method: the
// tagged impls do not forward, so the marker is reported at `shared`.
use framealloc::alloc::AtomicBitmapAllocator;
use framealloc::{FrameAllocator, PhysFrame};

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = take, tag = u8))]
struct Frames<'a> {
    #[frame_allocator(shared)]
    bitmap: AtomicBitmapAllocator<'a>,
}

impl Frames<'_> {
    fn take(&mut self, _: u8) -> Option<PhysFrame> {
        None
    }
}

fn main() {}
