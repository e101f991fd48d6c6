fn main() {
    let mut addresses: Vec<u64> = vec![0x1000, 0x2000];
    let _alloc = unsafe { framealloc::frame_allocator!(|| addresses.pop()) };
}
