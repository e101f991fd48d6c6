//! Carrying the input's generics into the generated impls.
//!
//! The generated impls add one type parameter (the page size) and some
//! `where` predicates to whatever the input declares; defaults are dropped,
//! as `impl` blocks do not allow them.
//!
//! Hygiene cannot keep a generic parameter apart from the user's names (a
//! mixed-site span only separates local variables and labels), so a user
//! type named like the page-size parameter in a field type would resolve to
//! it. Its name is therefore chosen among those the input does not mention
//! anywhere (parameters, field types, `where` clauses, attributes), starting
//! from a long and specific one: a type macro in a field type may expand to
//! names the derive cannot see, and a short name such as `__S` is one a user
//! might have.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{DeriveInput, GenericParam, Generics};

use crate::tokens::{is_punct, regroup};

/// The page-size parameter's name, unless the input uses it.
const PAGE_SIZE_PARAM: &str = "__FrameallocPageSize";

/// A name for the page-size parameter that no identifier of the input uses.
pub(crate) fn fresh_page_size_param(input: &DeriveInput) -> Ident {
    let mut used = Vec::new();
    collect_idents(input.to_token_stream(), &mut used);
    let mut name = String::from(PAGE_SIZE_PARAM);
    let mut counter = 0u32;
    while used.contains(&name) {
        counter += 1;
        name = format!("{PAGE_SIZE_PARAM}{counter}");
    }
    Ident::new(&name, Span::mixed_site())
}

fn collect_idents(tokens: TokenStream, used: &mut Vec<String>) {
    for token in tokens {
        match token {
            TokenTree::Ident(ident) => used.push(ident.to_string()),
            TokenTree::Group(group) => collect_idents(group.stream(), used),
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
}

/// `<params…, extra>` for an `impl`, or nothing if there is nothing to list.
pub(crate) fn impl_params(generics: &Generics, extra: Option<TokenStream>) -> TokenStream {
    let params = generics.params.iter().map(|param| match param {
        GenericParam::Lifetime(lifetime) => lifetime.to_token_stream(),
        GenericParam::Type(ty) => {
            let (attrs, ident, colon, bounds) = (&ty.attrs, &ty.ident, &ty.colon_token, &ty.bounds);
            quote!(#(#attrs)* #ident #colon #bounds)
        }
        GenericParam::Const(c) => {
            let (attrs, ident, ty) = (&c.attrs, &c.ident, &c.ty);
            quote!(#(#attrs)* const #ident: #ty)
        }
    });
    let all: Vec<TokenStream> = params.chain(extra).collect();
    if all.is_empty() {
        TokenStream::new()
    } else {
        quote!(<#(#all),*>)
    }
}

/// `where` with the input's predicates and `extra`, or nothing if empty.
pub(crate) fn where_clause(
    generics: &Generics,
    extra: impl IntoIterator<Item = TokenStream>,
) -> TokenStream {
    let own = generics
        .where_clause
        .iter()
        .flat_map(|clause| clause.predicates.iter())
        .map(ToTokens::to_token_stream);
    let all: Vec<TokenStream> = own.chain(extra).collect();
    if all.is_empty() {
        TokenStream::new()
    } else {
        quote!(where #(#all),*)
    }
}

/// Whether `tokens` name a type or const parameter of `generics`, or `Self`:
/// then the type is not concrete and cannot be checked outside the impl.
pub(crate) fn mentions_parameters(tokens: TokenStream, generics: &Generics) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => {
            ident == "Self"
                || generics.params.iter().any(|param| match param {
                    GenericParam::Type(ty) => ty.ident == ident,
                    GenericParam::Const(c) => c.ident == ident,
                    GenericParam::Lifetime(_) => false,
                })
        }
        TokenTree::Group(group) => mentions_parameters(group.stream(), generics),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// `tokens` with every lifetime parameter of `generics` replaced by `'_`, so
/// a type can be written inside a body where those lifetimes are unknown.
/// Other lifetimes stay: `'static`, and those bound by `for<'a>`.
pub(crate) fn elide_lifetimes(tokens: TokenStream, generics: &Generics) -> TokenStream {
    let mut out = Vec::new();
    let mut after_quote = false;
    for token in tokens {
        let token = match token {
            TokenTree::Ident(ident)
                if after_quote
                    && generics
                        .lifetimes()
                        .any(|param| param.lifetime.ident == ident) =>
            {
                TokenTree::Ident(Ident::new("_", ident.span()))
            }
            TokenTree::Group(group) => regroup(&group, elide_lifetimes(group.stream(), generics)),
            other => other,
        };
        after_quote = is_punct(Some(&token), '\'');
        out.push(token);
    }
    out.into_iter().collect()
}
