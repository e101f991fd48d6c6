//! Procedural macros for [`framealloc`](https://docs.rs/framealloc).
//!
//! Do not depend on this crate directly: `framealloc` re-exports both macros,
//! and the generated code refers to `framealloc` paths.

use proc_macro::TokenStream;

/// Derives `FrameAllocator` (and `FrameDeallocator`) by forwarding to a field,
/// dispatching over enum variants, or wrapping a tagged allocation method.
///
/// See the documentation of `framealloc::FrameAllocator`.
#[proc_macro_derive(FrameAllocator, attributes(frame_allocator))]
pub fn derive_frame_allocator(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

/// Turns a closure into a frame allocator; see `framealloc::frame_allocator!`.
#[proc_macro]
pub fn frame_allocator(input: TokenStream) -> TokenStream {
    let _ = input;
    "::core::compile_error!(\"frame_allocator! is not implemented yet\")"
        .parse()
        .unwrap_or_default()
}
