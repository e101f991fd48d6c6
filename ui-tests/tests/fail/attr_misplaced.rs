use framealloc::{FrameAllocator, NoAllocator};

#[derive(FrameAllocator)]
#[frame_allocator]
struct OnType(NoAllocator);

#[derive(FrameAllocator)]
struct WithArguments(#[frame_allocator(always)] NoAllocator);

#[derive(FrameAllocator)]
enum OnVariant {
    #[frame_allocator]
    Only(NoAllocator),
}

fn main() {}
