use framealloc::FrameAllocator;

#[derive(FrameAllocator)]
struct Counter {
    #[frame_allocator]
    count: u64,
    name: &'static str,
}



// A field type no crate can make an allocator (a primitive, a tuple, an
// array…) is reported by the derive, once: uses of the type add nothing.
#[derive(FrameAllocator)]
struct Pair((u64, [u8; 2]));

#[derive(FrameAllocator)]
struct Raw<'a>(&'a mut *mut u8);

fn uses(pair: &mut Pair, raw: &mut Raw<'_>) {
    let _: Option<framealloc::PhysFrame> = pair.allocate_frame();
    let _: Option<framealloc::PhysFrame> = raw.allocate_frame();
}

fn main() {
    let mut counter = Counter { count: 0, name: "" };
    let _: Option<framealloc::PhysFrame> = counter.allocate_frame();
    let _ = (counter.name, uses);
}
