// A forwarded field whose concrete type has a higher-ranked lifetime
// (`for<'a> fn(&'a mut u64)`): the compile-time field check keeps `for<'a>`
// intact.
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, Size4KiB};

type Step = for<'a> fn(&'a mut u64) -> Option<PhysFrame>;

struct Via<F> {
    step: F,
    next: u64,
}

unsafe impl FrameAllocator<Size4KiB> for Via<for<'a> fn(&'a mut u64) -> Option<PhysFrame>> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        (self.step)(&mut self.next)
    }
}

#[derive(FrameAllocator)]
struct Hr {
    inner: Via<for<'a> fn(&'a mut u64) -> Option<PhysFrame>>,
}

#[derive(FrameAllocator)]
struct HrTwo<'b> {
    #[frame_allocator]
    inner: Via<for<'a, 'c> fn(&'a mut u64) -> Option<PhysFrame>>,
    other: &'b dyn for<'x, 'y> Fn(&'x u8, &'y u8) -> &'x u8,
}

fn step(next: &mut u64) -> Option<PhysFrame> {
    *next += 4096;
    Some(PhysFrame::containing_address(PhysAddr::new(*next)))
}

fn first<'x>(a: &'x u8, _: &u8) -> &'x u8 {
    a
}

fn main() {
    let mut hr = Hr { inner: Via { step: step as Step, next: 0 } };
    assert_eq!(hr.allocate_frame().unwrap().start_address().as_u64(), 0x1000);
    let mut two = HrTwo { inner: Via { step: step as Step, next: 0x1000 }, other: &first };
    assert_eq!(two.allocate_frame().unwrap().start_address().as_u64(), 0x2000);
    assert_eq!(*(two.other)(&1, &2), 1);
}
