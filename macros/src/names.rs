//! The words of the macros' input syntax, and the path the generated code
//! reaches `framealloc` by: each declared once, for the parsers and messages
//! of both macros.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, quote_spanned};

/// The attribute on the type and on a field: `#[frame_allocator…]`.
pub(crate) const FRAME_ALLOCATOR: &str = "frame_allocator";
/// `crate = path`, in the attribute and in `frame_allocator!`.
pub(crate) const CRATE: &str = "crate";
/// `#[frame_allocator(unsafe tagged(…))]`.
pub(crate) const TAGGED: &str = "tagged";
/// `tagged(method = name)`: the method that allocates given a tag.
pub(crate) const METHOD: &str = "method";
/// `tagged(tag = Type)`: the type of the tag.
pub(crate) const TAG: &str = "tag";
/// `tagged(default = expr)`: the tag used by the plain `FrameAllocator` impl.
pub(crate) const DEFAULT: &str = "default";
/// `tagged(sizes(Size4KiB, Size2MiB))`: the page sizes to implement.
pub(crate) const SIZES: &str = "sizes";
/// `#[frame_allocator(lock = …)]` on a field: how to lock it.
pub(crate) const LOCK: &str = "lock";
/// `#[frame_allocator(shared)]` on a field: a `SharedFrameAllocator`,
/// forwarded through `&self`.
pub(crate) const SHARED: &str = "shared";
/// `frame_allocator!(…, size = Size2MiB)`.
pub(crate) const SIZE: &str = "size";
/// `frame_allocator!(…, state = expr)`: a value passed as `&mut` to each closure.
pub(crate) const STATE: &str = "state";

/// The crate the generated code names unless `crate = path` says otherwise.
const FRAMEALLOC: &str = "framealloc";

/// `<root>::__private`, the hidden module the generated code goes through:
/// `root` is `crate = path` if given, else `::framealloc` (or `::fa` if the
/// crate being compiled depends on it as `fa = { package = "framealloc" }`,
/// see [`crate::manifest`]) with its `::` at `colons`; the rest is at `span`.
pub(crate) fn private_path(krate: Option<&syn::Path>, colons: Span, span: Span) -> TokenStream {
    let root = krate.map_or_else(
        || {
            let renamed = crate::manifest::renamed_framealloc();
            let name = Ident::new(renamed.as_deref().unwrap_or(FRAMEALLOC), span);
            quote_spanned!(colons=> :: #name)
        },
        ToTokens::to_token_stream,
    );
    quote_spanned!(span=> #root::__private)
}
