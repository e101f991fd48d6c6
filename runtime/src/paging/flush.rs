//! Flush tokens: the TLB invalidation a change requires, bound to the backend
//! that must perform it.

use x86_64::structures::paging::{Page, PageSize};

use super::Backend;

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
