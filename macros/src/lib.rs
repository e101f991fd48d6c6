//! Procedural macros for [`framealloc`](https://docs.rs/framealloc).
//!
//! Do not depend on this crate directly: `framealloc` re-exports both macros,
//! and the generated code refers to `framealloc` paths.
//!
//! The derive is built in phases, one module each: [`ast`] reads the input
//! into a model, [`attr`] parses the attributes, [`valid`] decides what to
//! generate (collecting every error in a [`ctxt::Errors`]), [`expand`] writes
//! the impls. [`closure`] is `frame_allocator!`.

mod ast;
mod attr;
mod closure;
mod ctxt;
mod expand;
mod generics;
mod sizes;
mod valid;

use proc_macro::TokenStream;

/// Derives `FrameAllocator` (and `FrameDeallocator`) by forwarding to a field,
/// dispatching over enum variants, or wrapping a tagged allocation method.
///
/// See the documentation of `framealloc::FrameAllocator`.
#[proc_macro_derive(FrameAllocator, attributes(frame_allocator))]
pub fn derive_frame_allocator(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => expand::derive(&input).into(),
        Err(error) => error.into_compile_error().into(),
    }
}

/// Turns a closure into a frame allocator; see `framealloc::frame_allocator!`.
#[proc_macro]
pub fn frame_allocator(input: TokenStream) -> TokenStream {
    closure::expand(input.into()).into()
}
