// `method = name::<Args>` names one instance of a generic method.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PageSize, PhysFrame, Size2MiB, TaggedFrameAllocator};

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = take::<Size2MiB>, tag = u8, sizes(Size2MiB), default = 1))]
struct Huge(u64);

impl Huge {
    fn take<S: PageSize>(&mut self, tag: u8) -> Option<PhysFrame<S>> {
        self.0 += S::SIZE * u64::from(tag);
        PhysFrame::from_start_address(PhysAddr::new(self.0)).ok()
    }
}

fn main() {
    let mut huge = Huge(0);
    assert_eq!(FrameAllocator::<Size2MiB>::allocate_frame(&mut huge).unwrap().start_address().as_u64(), 0x20_0000);
    let frame: Option<PhysFrame<Size2MiB>> = huge.allocate_tagged(2);
    assert_eq!(frame.unwrap().start_address().as_u64(), 0x60_0000);
}
