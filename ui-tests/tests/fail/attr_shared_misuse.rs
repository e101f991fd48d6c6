// `shared` written wrongly: with a value, twice, with `lock = …`, and on
// some variants of an enum but not all.
use framealloc::alloc::AtomicBitmapAllocator;
use framealloc::{FrameAllocator, FramePool, Size4KiB};

#[derive(FrameAllocator)]
struct WithValue<'a>(#[frame_allocator(shared = true)] AtomicBitmapAllocator<'a>);

#[derive(FrameAllocator)]
struct Twice<'a>(#[frame_allocator(shared, shared)] AtomicBitmapAllocator<'a>);

#[derive(FrameAllocator)]
struct Locked<'a>(#[frame_allocator(shared, lock = lock)] AtomicBitmapAllocator<'a>);

#[derive(FrameAllocator)]
enum Mixed<'a> {
    Pool(FramePool<Size4KiB, 4>),
    Bitmap(#[frame_allocator(shared)] AtomicBitmapAllocator<'a>),
}

fn main() {}
