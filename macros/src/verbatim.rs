//! Expressions the derive does not need to understand, kept as tokens.
//!
//! syn without its `full` feature (kept off: the macro crate's build time is
//! part of the product) parses only simple expressions, so a type such as
//! `[u8; if BIG { 64 } else { 8 }]` or `Pool<{ if A { 1 } else { 2 } }>`
//! would fail to parse although the derive never looks inside it. Before
//! parsing, [`hide`] wraps every array length and braced const argument that
//! syn cannot read in a placeholder macro call, `__framealloc_verbatim!{…}`,
//! which syn accepts as an opaque expression; after expansion, [`restore`]
//! puts the original tokens back. The placeholder keeps the tokens inside
//! it, so the derive still sees every name the input uses.

use proc_macro2::{Delimiter, Ident, Punct, Spacing, TokenStream, TokenTree};

use crate::tokens::{group, is_punct, regroup};

const PLACEHOLDER: &str = "__framealloc_verbatim";

/// The derive input with unreadable expressions wrapped in placeholders.
pub(crate) fn hide(input: TokenStream) -> TokenStream {
    hide_in(input, true)
}

fn readable(tokens: &TokenStream) -> bool {
    syn::parse2::<syn::Expr>(tokens.clone()).is_ok()
}

fn placeholder(tokens: TokenStream) -> TokenStream {
    let span = tokens
        .clone()
        .into_iter()
        .next()
        .map_or_else(proc_macro2::Span::call_site, |t| t.span());
    let group = group(Delimiter::Brace, tokens, span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    [
        TokenTree::Ident(Ident::new(PLACEHOLDER, span)),
        TokenTree::Punct(bang),
        TokenTree::Group(group),
    ]
    .into_iter()
    .collect()
}

/// `top`: the item's own level, where braces are its body, not expressions.
fn hide_in(input: TokenStream, top: bool) -> TokenStream {
    let mut out: Vec<TokenTree> = Vec::new();
    for token in input {
        let after_hash = is_punct(out.last(), '#');
        let after_separator = is_punct(out.last(), '<') || is_punct(out.last(), ',');
        let token = match token {
            // Attributes are parsed by the derive itself; leave them alone.
            TokenTree::Group(group) if after_hash && group.delimiter() == Delimiter::Bracket => {
                TokenTree::Group(group)
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Bracket => {
                regroup(&group, array_length(hide_in(group.stream(), false)))
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => {
                let inner = hide_in(group.stream(), false);
                if !top && after_separator && !readable(&inner) {
                    regroup(&group, placeholder(inner))
                } else {
                    regroup(&group, inner)
                }
            }
            TokenTree::Group(group) => regroup(&group, hide_in(group.stream(), false)),
            other => other,
        };
        out.push(token);
    }
    out.into_iter().collect()
}

/// `T; LEN` with `LEN` hidden if syn cannot read it.
fn array_length(content: TokenStream) -> TokenStream {
    let tokens: Vec<TokenTree> = content.into_iter().collect();
    let semicolon = tokens.iter().position(|t| is_punct(Some(t), ';'));
    let Some(semicolon) = semicolon else {
        return tokens.into_iter().collect();
    };
    let length: TokenStream = tokens[semicolon + 1..].iter().cloned().collect();
    if length.is_empty() || readable(&length) {
        return tokens.into_iter().collect();
    }
    let mut out: TokenStream = tokens[..=semicolon].iter().cloned().collect();
    out.extend(placeholder(length));
    out
}

/// The expansion with every placeholder replaced by the tokens it holds.
pub(crate) fn restore(output: TokenStream) -> TokenStream {
    let tokens: Vec<TokenTree> = output.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let (TokenTree::Ident(ident), Some(TokenTree::Punct(bang)), Some(TokenTree::Group(g))) =
            (&tokens[i], tokens.get(i + 1), tokens.get(i + 2))
            && ident == PLACEHOLDER
            && bang.as_char() == '!'
            && g.delimiter() == Delimiter::Brace
        {
            out.extend(g.stream());
            i += 3;
            continue;
        }
        out.push(match &tokens[i] {
            TokenTree::Group(group) => regroup(group, restore(group.stream())),
            other => other.clone(),
        });
        i += 1;
    }
    out.into_iter().collect()
}
