//! Flush tokens: the TLB invalidation a change requires, bound to the backend
//! that must perform it.

use x86_64::structures::paging::{Page, PageSize};
use x86_64::{PhysAddr, VirtAddr};

use super::Backend;
use super::range::{MaxPageSize, pieces};

/// A changed mapping of one page whose old translation may still be cached
/// in the TLB.
///
/// Returned by the single-page operations of
/// [`RecursivePageTable`](super::RecursivePageTable). It borrows the table's
/// backend, so the invalidation goes through the same [`Backend`] as the
/// change (an emulated TLB sees it), and no other change can be made before
/// the token is used: call [`flush`](Self::flush), or [`ignore`](Self::ignore)
/// when you know no stale translation can matter.
#[must_use = "the TLB may still hold the old translation: call `flush()` or `ignore()`"]
pub struct Flush<'a, B: Backend + ?Sized, S: PageSize> {
    backend: &'a mut B,
    page: Page<S>,
}

impl<'a, B: Backend + ?Sized, S: PageSize> Flush<'a, B, S> {
    #[inline]
    pub(crate) fn new(backend: &'a mut B, page: Page<S>) -> Self {
        Flush { backend, page }
    }

    /// Invalidates the page's TLB entry (`invlpg` on hardware).
    #[inline]
    pub fn flush(self) {
        self.backend.flush_page(self.page.start_address());
    }

    /// Drops the token without invalidating anything.
    #[inline]
    pub fn ignore(self) {}

    /// The page whose translation changed.
    #[inline]
    pub fn page(&self) -> Page<S> {
        self.page
    }
}

impl<B: Backend + ?Sized, S: PageSize> core::fmt::Debug for Flush<'_, B, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Flush").field(&self.page).finish()
    }
}

/// Ranges touching more than this many entries are invalidated with one full
/// TLB flush (a CR3 reload) instead of one `invlpg` per entry.
///
/// 32 `invlpg`s cost about as much as reloading CR3 and refilling the TLB
/// entries a kernel typically uses right after; Linux draws the line at 33
/// for the same reason.
pub const FLUSH_ALL_THRESHOLD: u64 = 32;

/// What a range operation asks the TLB to forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushScope {
    /// Nothing: no entry was changed.
    Nothing,
    /// `count` entries of `page_size` bytes each, the first at `start`
    /// (`count <= FLUSH_ALL_THRESHOLD`): one `invlpg` each.
    Pages {
        /// Start of the first changed page.
        start: VirtAddr,
        /// Number of changed entries.
        count: u64,
        /// Size of each page in bytes.
        page_size: u64,
    },
    /// At most `FLUSH_ALL_THRESHOLD` entries of mixed sizes, as
    /// [`map_range_mixed`](super::RecursivePageTable::map_range_mixed) laid
    /// them out from `start` to `end` (physical start `phys`, pages no larger
    /// than `largest`): one `invlpg` per entry.
    Mixed {
        /// Start of the range.
        start: VirtAddr,
        /// End of the range (exclusive).
        end: VirtAddr,
        /// Physical address mapped at `start`.
        phys: PhysAddr,
        /// The largest page size that was allowed.
        largest: MaxPageSize,
    },
    /// Many entries: one full flush.
    All,
}

impl FlushScope {
    /// The decision for `count` changed entries of `page_size` bytes from `start`.
    #[inline]
    pub(crate) fn for_pages(start: VirtAddr, count: u64, page_size: u64) -> Self {
        if count == 0 {
            FlushScope::Nothing
        } else if count <= FLUSH_ALL_THRESHOLD {
            FlushScope::Pages {
                start,
                count,
                page_size,
            }
        } else {
            FlushScope::All
        }
    }

    /// Performs the decision on `backend`.
    pub(crate) fn perform<B: Backend + ?Sized>(self, backend: &mut B) {
        match self {
            FlushScope::Nothing => {}
            FlushScope::Pages {
                start,
                count,
                page_size,
            } => {
                for i in 0..count {
                    backend.flush_page(start + i * page_size);
                }
            }
            FlushScope::Mixed {
                start,
                end,
                phys,
                largest,
            } => {
                for (addr, level, count) in pieces(start, end, phys, largest) {
                    let size = 4096u64 << (9 * (level - 1));
                    for i in 0..count {
                        backend.flush_page(addr + i * size);
                    }
                }
            }
            FlushScope::All => backend.flush_all(),
        }
    }
}

/// The single flush decision of a range operation, bound to the backend.
///
/// Per-page invalidation when the range changed at most
/// [`FLUSH_ALL_THRESHOLD`] entries, one full flush above that.
#[must_use = "the TLB may still hold old translations: call `flush()` or `ignore()`"]
pub struct RangeFlush<'a, B: Backend + ?Sized> {
    backend: &'a mut B,
    scope: FlushScope,
}

impl<'a, B: Backend + ?Sized> RangeFlush<'a, B> {
    #[inline]
    pub(crate) fn new(backend: &'a mut B, scope: FlushScope) -> Self {
        RangeFlush { backend, scope }
    }

    /// Performs the invalidation.
    #[inline]
    pub fn flush(self) {
        self.scope.perform(self.backend);
    }

    /// Drops the token without invalidating anything.
    #[inline]
    pub fn ignore(self) {}

    /// What [`flush`](Self::flush) would invalidate.
    #[inline]
    pub fn scope(&self) -> FlushScope {
        self.scope
    }
}

impl<B: Backend + ?Sized> core::fmt::Debug for RangeFlush<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("RangeFlush").field(&self.scope).finish()
    }
}
