// A tagged allocator for two page sizes through one generic method, with a
// default tag, on a type with a lifetime.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PageSize, PhysFrame, Size2MiB, Size4KiB, Tagged};

#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(method = take, tag = usize, default = 0, sizes(Size4KiB, Size2MiB)))]
struct Zones<'a> {
    bases: &'a mut [u64],
}

impl Zones<'_> {
    fn take<S: PageSize>(&mut self, zone: usize) -> Option<PhysFrame<S>> {
        let base = self.bases.get_mut(zone)?;
        let frame = PhysFrame::from_start_address(PhysAddr::new(*base)).ok()?;
        *base += S::SIZE;
        Some(frame)
    }
}

fn main() {
    let mut bases = [0x20_0000, 0x4000_0000];
    let mut zones = Zones { bases: &mut bases };
    // The default tag, zone 0.
    let small: PhysFrame<Size4KiB> = zones.allocate_frame().unwrap();
    assert_eq!(small.start_address().as_u64(), 0x20_0000);
    // Several sizes: name the view's size through `Tagged::new`.
    let huge: PhysFrame<Size2MiB> = Tagged::new(&mut zones, 1).allocate_frame().unwrap();
    assert_eq!(huge.start_address().as_u64(), 0x4000_0000);
    assert!(Tagged::<_, usize>::new(&mut zones, 5).allocate_frame().map(|f: PhysFrame<Size2MiB>| f).is_none());
    assert_eq!(bases, [0x20_1000, 0x4020_0000]);
}
