//! Flush tokens: the TLB invalidation a change requires, bound to the backend
//! that must perform it.

use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageSize};

use super::Backend;
use super::addr::sign_extend;

/// A changed mapping of one page whose old translation may still be cached
/// in the TLB, returned by the single-page operations of
/// [`RecursivePageTable`](super::RecursivePageTable).
///
/// It borrows the table's [`Backend`], so the invalidation goes through it
/// and no other change can be made before [`flush`](Self::flush) or
/// [`ignore`](Self::ignore). A map's token may be ignored (the CPU never
/// caches a not-present entry); flushing it costs one `invlpg`.
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

/// Ranges that changed more than this many entries are invalidated with one
/// full TLB flush (a CR3 reload) instead of one `invlpg` per entry, unless
/// one of the changed entries is `GLOBAL` (see [`FlushScope`]).
///
/// A documented choice, not a measurement: the same order as Linux's x86
/// default `tlb_single_page_flush_ceiling` (33).
pub const FLUSH_ALL_THRESHOLD: u64 = 32;

/// What a range operation asks the TLB to forget ([`Nothing`](Self::Nothing)
/// after a successful range map: only unused entries were filled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushScope {
    /// Nothing: no cached translation changed.
    Nothing,
    /// One `invlpg` per entry: when `count <= FLUSH_ALL_THRESHOLD`, or when
    /// an old or new entry had `GLOBAL` (a CR3 reload keeps those).
    Pages {
        /// Start of the first changed page.
        start: VirtAddr,
        /// Number of changed entries.
        count: u64,
        /// Size of each page in bytes.
        page_size: u64,
    },
    /// Many non-global entries: one full flush (CR3 reload).
    All,
}

impl FlushScope {
    /// The decision for `count` changed entries of `page_size` bytes from
    /// `start`; `global`: an old or new value of one of them had `GLOBAL`.
    #[inline]
    pub(crate) fn for_pages(start: VirtAddr, count: u64, page_size: u64, global: bool) -> Self {
        if count == 0 {
            FlushScope::Nothing
        } else if count <= FLUSH_ALL_THRESHOLD || global {
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
                // Wrapping 48-bit offsets: panic-free for any value.
                let start48 = start.as_u64() & ((1 << 48) - 1);
                for i in 0..count {
                    let addr = sign_extend(start48.wrapping_add(i.wrapping_mul(page_size)));
                    backend.flush_page(VirtAddr::new_truncate(addr));
                }
            }
            FlushScope::All => backend.flush_all(),
        }
    }
}

/// The single flush decision ([`FlushScope`]) of a range operation, bound to
/// the backend.
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
