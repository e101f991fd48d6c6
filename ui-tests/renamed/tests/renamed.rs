//! The derive and `frame_allocator!` in crates that know `framealloc` only as
//! `fa`: this package (its library and this test) and the trybuild cases,
//! whose generated project copies the renamed dependency.

use fa::x86_64::PhysAddr;
use fa::{FrameAllocator, FrameDeallocator, FramePool, PhysFrame};
use ui_tests_renamed::{Counting, Holder, Region, counting_down, tagged_frame};

fn frame(address: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(address))
}

#[test]
fn derived_impls_reach_the_renamed_crate() {
    let mut holder = Holder {
        pool: FramePool::new(),
    };
    // SAFETY: the frames are not in use; only their addresses are compared.
    unsafe { holder.deallocate_frame(frame(0x3000)) };
    assert_eq!(holder.allocate_frame(), Some(frame(0x3000)));
    assert_eq!(holder.allocate_frame(), None);

    let mut counting = Counting {
        pool: FramePool::new(),
        tables: 0,
        other: 0,
    };
    // SAFETY: as above.
    unsafe { counting.pool.deallocate_frame(frame(0x1000)) };
    // SAFETY: as above.
    unsafe { counting.pool.deallocate_frame(frame(0x2000)) };
    assert_eq!(
        tagged_frame(&mut counting, Region::Other),
        Some(frame(0x2000))
    );
    assert_eq!(
        FrameAllocator::allocate_frame(&mut counting),
        Some(frame(0x1000))
    );
    assert_eq!((counting.tables, counting.other), (1, 1));
}

#[test]
fn frame_allocator_reaches_the_renamed_crate() {
    let mut down = counting_down(0x3000);
    assert_eq!(down.allocate_frame(), Some(frame(0x2000)));
    assert_eq!(down.allocate_frame(), Some(frame(0x1000)));
    assert_eq!(down.allocate_frame(), Some(frame(0)));
    assert_eq!(down.allocate_frame(), None);
}

#[test]
fn ui() {
    trybuild::TestCases::new().pass("tests/pass/*.rs");
}
