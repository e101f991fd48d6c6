//! Which table level maps a page of each size.

use x86_64::structures::paging::{PageSize, Size1GiB, Size2MiB, Size4KiB};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Size4KiB {}
    impl Sealed for super::Size2MiB {}
    impl Sealed for super::Size1GiB {}
}

/// A page size that one page-table entry maps directly, the one bound of the
/// generic operations of [`RecursivePageTable`](super::RecursivePageTable):
/// [`Size4KiB`], [`Size2MiB`] and [`Size1GiB`] only. (Not the emulator's
/// `LeafSize`, the size of a cached translation as a value.)
///
/// ```
/// use framealloc::paging::EntrySize;
/// use framealloc::{Size1GiB, Size2MiB, Size4KiB};
///
/// assert_eq!(Size4KiB::LEVEL, 1);
/// assert_eq!(Size2MiB::LEVEL, 2);
/// assert_eq!(Size1GiB::LEVEL, 3);
/// ```
pub trait EntrySize: PageSize + sealed::Sealed {
    /// The level of the table whose entries map pages of this size.
    const LEVEL: usize;
    /// The `HUGE_PAGE` bit as it appears in such an entry (0 for 4 KiB).
    const HUGE_BIT: u64;
}

impl EntrySize for Size4KiB {
    const LEVEL: usize = 1;
    const HUGE_BIT: u64 = 0;
}

impl EntrySize for Size2MiB {
    const LEVEL: usize = 2;
    const HUGE_BIT: u64 = 1 << 7;
}

impl EntrySize for Size1GiB {
    const LEVEL: usize = 3;
    const HUGE_BIT: u64 = 1 << 7;
}
