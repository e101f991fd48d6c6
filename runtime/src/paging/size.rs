//! Which table level maps a page of each size.

use x86_64::structures::paging::{PageSize, Size1GiB, Size2MiB, Size4KiB};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Size4KiB {}
    impl Sealed for super::Size2MiB {}
    impl Sealed for super::Size1GiB {}
}

/// A page size that one page-table entry maps directly: 4 KiB pages in a
/// level-1 table, 2 MiB pages in a level-2 table, 1 GiB pages in a level-3
/// table.
///
/// (The emulator's `framealloc::emu::LeafSize` is a different thing: the
/// size of a cached translation, as a value.)
///
/// Implemented for [`Size4KiB`], [`Size2MiB`] and [`Size1GiB`] only; the
/// generic operations of [`RecursivePageTable`](super::RecursivePageTable)
/// take any of them.
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
