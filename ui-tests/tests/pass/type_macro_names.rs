// A field type written with a type macro that expands to a user type named
// like the derive's page-size parameter of old (`__S`): the derive cannot see
// that name in its input, so its own parameter must be one no user writes.
#![allow(non_camel_case_types)]

use core::marker::PhantomData;
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, Size4KiB};

struct __S;

struct Wrap<T>(u64, PhantomData<T>);

unsafe impl FrameAllocator<Size4KiB> for Wrap<__S> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.0 += 4096;
        Some(PhysFrame::containing_address(PhysAddr::new(self.0)))
    }
}

macro_rules! user_type {
    () => {
        __S
    };
}

#[derive(FrameAllocator)]
struct Holder {
    inner: Wrap<user_type!()>,
}

fn main() {
    let mut holder = Holder { inner: Wrap(0, PhantomData) };
    assert_eq!(holder.allocate_frame().unwrap().start_address().as_u64(), 0x1000);
}
