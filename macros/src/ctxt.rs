//! Error accumulation: every phase reports into one [`Errors`], so the user
//! sees all problems of one input at once instead of fixing them one by one.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;

/// The errors found so far in one macro input.
#[derive(Default)]
pub(crate) struct Errors {
    list: Vec<syn::Error>,
}

impl Errors {
    /// Records an error at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.list.push(syn::Error::new(span, message));
    }

    /// Records an error covering the tokens of `node`.
    pub(crate) fn spanned(&mut self, node: impl ToTokens, message: impl Display) {
        self.list.push(syn::Error::new_spanned(node, message));
    }

    /// Records an error that was produced by syn.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.list.push(error);
    }

    /// Fills `slot` with the value given for `key`, or reports a second one.
    pub(crate) fn set_once<T>(&mut self, slot: &mut Option<T>, key: &proc_macro2::Ident, value: T) {
        if slot.is_some() {
            self.spanned(key, format_args!("duplicate `{key}`"));
        } else {
            *slot = Some(value);
        }
    }

    /// Whether nothing has been reported.
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// All errors as `compile_error!` invocations, in the order found.
    pub(crate) fn into_compile_errors(self) -> proc_macro2::TokenStream {
        self.list
            .into_iter()
            .map(syn::Error::into_compile_error)
            .collect()
    }
}
