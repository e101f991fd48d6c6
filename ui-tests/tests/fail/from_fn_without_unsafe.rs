use framealloc::{from_fn, PhysFrame, Size4KiB};

fn main() {
    let _alloc = from_fn(|| None::<PhysFrame<Size4KiB>>);
}
