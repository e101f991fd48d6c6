//! Page sizes named in macro arguments (`size = Size2MiB`, `sizes(…)`).
//!
//! `x86_64`'s `PageSize` is sealed: there are exactly three sizes. A size is
//! accepted by its name (with or without a path before it) and always emitted
//! as the crate's own re-export, so the user needs no import for it.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::spanned::Spanned;

/// The names of the three page sizes.
pub(crate) const NAMES: [&str; 3] = ["Size4KiB", "Size2MiB", "Size1GiB"];

/// What to write when a size is not recognised.
pub(crate) const EXPECTED: &str = "expected `Size4KiB`, `Size2MiB` or `Size1GiB`";

/// A recognised page size, remembered by name and by where it was written.
#[derive(Clone)]
pub(crate) struct PageSizeName {
    pub(crate) name: &'static str,
    pub(crate) span: proc_macro2::Span,
}

/// Recognises `path` as one of the three sizes.
pub(crate) fn recognise(path: &syn::Path) -> Option<PageSizeName> {
    let last = path.segments.last()?;
    if !matches!(last.arguments, syn::PathArguments::None) {
        return None;
    }
    let name = NAMES.into_iter().find(|name| last.ident == name)?;
    Some(PageSizeName {
        name,
        span: path.span(),
    })
}

impl PageSizeName {
    /// `Size4KiB`, the size implemented where none is named.
    pub(crate) fn default_size() -> Self {
        Self {
            name: NAMES[0],
            span: proc_macro2::Span::call_site(),
        }
    }

    /// The size as a type path through the hidden re-export module.
    pub(crate) fn to_type(&self, private: &TokenStream) -> TokenStream {
        let ident = syn::Ident::new(self.name, self.span);
        quote_spanned!(self.span=> #private::#ident)
    }
}
