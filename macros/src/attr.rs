//! Parsing of `#[frame_allocator…]` attributes.
//!
//! Parsing never stops at the first problem: a bad key is reported and
//! skipped, and parsing resumes at the next comma.

use proc_macro2::{Span, TokenTree};
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Meta, Token};

use crate::ctxt::Errors;
use crate::names::{CRATE, DEFAULT, FRAME_ALLOCATOR, LOCK, METHOD, SHARED, SIZES, TAG, TAGGED};
use crate::sizes::{self, PageSizeName};

/// The container attribute, i.e. `#[frame_allocator(…)]` on the type.
#[derive(Default)]
pub(crate) struct Container {
    /// `crate = path`: where `framealloc` is reachable.
    pub(crate) krate: Option<syn::Path>,
    /// `unsafe tagged(…)`.
    pub(crate) tagged: Option<Tagged>,
    /// An entry meant `tagged` but could not be read (already reported): the
    /// fields are then not checked as a forwarding target.
    pub(crate) tagged_attempted: bool,
}

/// The contents of `tagged(…)`.
pub(crate) struct Tagged {
    /// The `tagged` keyword.
    pub(crate) span: Span,
    /// The `unsafe` before it, if written.
    pub(crate) unsafe_span: Option<Span>,
    pub(crate) method: Option<syn::Path>,
    /// The tag's type, as written (the derive only names it).
    pub(crate) tag: Option<proc_macro2::TokenStream>,
    /// The default tag, as written: any expression, passed through untouched.
    pub(crate) default: Option<proc_macro2::TokenStream>,
    /// `sizes(…)`.
    pub(crate) sizes: Option<Vec<PageSizeName>>,
    /// `tagged` without a readable `(…)`: already reported, so what is
    /// missing from it is not reported again.
    pub(crate) malformed: bool,
}

fn is_ours(attr: &Attribute) -> bool {
    attr.path().is_ident(FRAME_ALLOCATOR)
}

/// Parses every `#[frame_allocator(…)]` on the type.
pub(crate) fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut container = Container::default();
    for attr in attrs.iter().filter(|attr| is_ours(attr)) {
        match &attr.meta {
            Meta::List(_) => parse_args(attr, errors, |input, errors| {
                parse_container_keys(input, &mut container, errors);
            }),
            Meta::Path(_) | Meta::NameValue(_) => errors.spanned(
                attr,
                "`#[frame_allocator]` on a type needs arguments: \
                 `#[frame_allocator(crate = path)]` or `#[frame_allocator(unsafe tagged(…))]`; \
                 to mark the allocator field, put it on the field",
            ),
        }
    }
    container
}

/// `#[frame_allocator]` on a field.
pub(crate) struct FieldMarker {
    /// Where it is written.
    pub(crate) span: Span,
    /// `lock = method` or `lock = path::to::function`.
    pub(crate) lock: Option<syn::Path>,
    /// `shared`: the field is a `SharedFrameAllocator`, where written.
    pub(crate) shared: Option<Span>,
}

/// Whether a field carries `#[frame_allocator]` (and with what), and where.
pub(crate) fn field_marker(attrs: &[Attribute], errors: &mut Errors) -> Option<FieldMarker> {
    let mut marker: Option<FieldMarker> = None;
    for attr in attrs.iter().filter(|attr| is_ours(attr)) {
        if marker.is_some() {
            errors.spanned(attr, "duplicate `#[frame_allocator]` on this field");
            continue;
        }
        let (mut lock, mut shared) = (None, None);
        match &attr.meta {
            Meta::Path(_) => {}
            Meta::List(_) => {
                parse_args(attr, errors, |input, errors| {
                    parse_field_keys(input, (&mut lock, &mut shared), errors);
                });
            }
            Meta::NameValue(_) => {
                errors.spanned(
                    &attr.meta,
                    "expected `#[frame_allocator]`, `#[frame_allocator(lock = method)]` \
                     for an allocator behind a lock, or `#[frame_allocator(shared)]` for a \
                     shared allocator",
                );
            }
        }
        marker = Some(FieldMarker {
            span: attr.path().span(),
            lock,
            shared,
        });
    }
    marker
}

fn parse_field_keys(
    input: ParseStream,
    (lock, shared): (&mut Option<syn::Path>, &mut Option<Span>),
    errors: &mut Errors,
) {
    entries(input, errors, &FIELD_KEYS, |key, input, errors| {
        if key == LOCK {
            let path = syn::Path::parse_mod_style;
            set(lock, input, key, "method", path, errors);
        } else if key == SHARED {
            if input.peek(Token![=]) || input.peek(syn::token::Paren) {
                errors.spanned(key, "`shared` takes no value: write `shared` alone");
                skip_entry(input);
            } else {
                errors.set_once(shared, key, key.span());
            }
        } else {
            return false;
        }
        if let (Some(_), Some(span)) = (&*lock, *shared) {
            errors.at(
                span,
                "`shared` and `lock = …` do not go together: a shared allocator synchronises \
                 itself and is used through `&self`; remove one of them",
            );
            // Reported once: the field is then taken as shared.
            *lock = None;
        }
        true
    });
}

/// What an entry list says about its keys: what it is (for "unknown …
/// `key`"), the keys it expects, and what to say when an entry is no key.
struct Keys {
    what: &'static str,
    expected: &'static str,
    not_a_key: &'static str,
}

const FIELD_KEYS: Keys = Keys {
    what: "`frame_allocator` field argument",
    expected: "`lock = method` or `shared` (or write `#[frame_allocator]` alone)",
    not_a_key: "expected `lock = method` or `shared` (or write `#[frame_allocator]` alone)",
};

const TAGGED_KEYS: Keys = Keys {
    what: "`tagged` argument",
    expected: "`method`, `tag`, `default` or `sizes`",
    not_a_key: "expected `method = …`, `tag = …`, `default = …` or `sizes(…)`",
};

/// Reads comma-separated `key …` entries. `entry` reads what follows a key
/// it knows and returns whether it knew it; other keys are reported and
/// skipped, as are entries that do not start with a key.
fn entries(
    input: ParseStream,
    errors: &mut Errors,
    keys: &Keys,
    mut entry: impl FnMut(&syn::Ident, ParseStream, &mut Errors) -> bool,
) {
    while !input.is_empty() {
        match input.parse::<syn::Ident>() {
            Ok(key) if entry(&key, input, errors) => {}
            Ok(key) => {
                let (what, expected) = (keys.what, keys.expected);
                errors.spanned(
                    &key,
                    format_args!("unknown {what} `{key}`; expected {expected}"),
                );
                skip_entry(input);
            }
            Err(error) => {
                errors.push(syn::Error::new(error.span(), keys.not_a_key));
                skip_entry(input);
            }
        }
        entry_separator(input, errors);
    }
}

/// Runs `parse` over an attribute's arguments, reporting what syn finds
/// left over.
fn parse_args(attr: &Attribute, errors: &mut Errors, parse: impl FnOnce(ParseStream, &mut Errors)) {
    let parsed = attr.parse_args_with(|input: ParseStream| {
        parse(input, errors);
        Ok(())
    });
    if let Err(error) = parsed {
        errors.push(error);
    }
}

/// `#[frame_allocator]` is meaningless on an enum variant: report it.
pub(crate) fn reject_on_variant(attrs: &[Attribute], errors: &mut Errors) {
    for attr in attrs.iter().filter(|attr| is_ours(attr)) {
        errors.spanned(
            attr,
            "`#[frame_allocator]` belongs on the variant's allocator field, not on the variant",
        );
    }
}

/// Skips the rest of a malformed entry, up to (not including) the next comma.
fn skip_entry(input: ParseStream) {
    while !input.is_empty() && !input.peek(Token![,]) && input.parse::<TokenTree>().is_ok() {}
}

/// Consumes a comma between entries; reports anything else.
fn entry_separator(input: ParseStream, errors: &mut Errors) {
    if input.is_empty() {
        return;
    }
    if input.parse::<Token![,]>().is_err() {
        errors.push(input.error("expected `,` between entries"));
        skip_entry(input);
        let _ = input.parse::<Token![,]>();
    }
}

/// The tokens of one entry's value, up to the comma that ends the entry
/// (commas inside angle brackets do not), without parsing them: any
/// expression or type passes through, syn's `full` feature is not needed.
fn tokens_of_value(input: ParseStream, all_angles: bool) -> syn::Result<proc_macro2::TokenStream> {
    input.step(|cursor| {
        let mut all = Vec::new();
        let mut rest = *cursor;
        while let Some((token, next)) = rest.token_tree() {
            all.push(token);
            rest = next;
        }
        let end = crate::tokens::end_of_argument(&all, 0, all_angles);
        if end == 0 {
            return Err(cursor.error("nothing after `=`"));
        }
        let mut rest = *cursor;
        for _ in 0..end {
            if let Some((_, next)) = rest.token_tree() {
                rest = next;
            }
        }
        Ok((all[..end].iter().cloned().collect(), rest))
    })
}

/// Parses `= value` after `key` into `slot`, reporting a missing `=`, a bad
/// value or a second value for the key.
fn set<T>(
    slot: &mut Option<T>,
    input: ParseStream,
    key: &syn::Ident,
    what: &str,
    parse: fn(ParseStream) -> syn::Result<T>,
    errors: &mut Errors,
) {
    if input.parse::<Token![=]>().is_err() {
        errors.spanned(key, format_args!("expected `{key} = {what}`"));
        skip_entry(input);
        return;
    }
    match parse(input) {
        Ok(value) if input.is_empty() || input.peek(Token![,]) => errors.set_once(slot, key, value),
        Ok(_) => {
            errors.push(input.error(format_args!("expected `,` after `{key} = {what}`")));
            skip_entry(input);
        }
        Err(error) => {
            errors.push(syn::Error::new(
                error.span(),
                format_args!("expected `{key} = {what}`: {error}"),
            ));
            skip_entry(input);
        }
    }
}

fn parse_container_keys(input: ParseStream, container: &mut Container, errors: &mut Errors) {
    while !input.is_empty() {
        let unsafe_token = input.parse::<Option<Token![unsafe]>>().ok().flatten();
        if input.peek(Token![crate]) && unsafe_token.is_none() {
            let key = syn::Ident::new(CRATE, input.span());
            let _ = input.parse::<Token![crate]>();
            set(
                &mut container.krate,
                input,
                &key,
                "path",
                syn::Path::parse_mod_style,
                errors,
            );
        } else if input.peek(syn::Ident) && input.cursor().ident().is_some_and(|(i, _)| i == TAGGED)
        {
            let key: syn::Ident = match input.parse() {
                Ok(key) => key,
                Err(error) => {
                    errors.push(error);
                    return;
                }
            };
            let tagged = parse_tagged(input, &key, unsafe_token.map(|u| u.span), errors);
            if container.tagged.is_some() {
                errors.spanned(&key, "duplicate `tagged(…)`");
            } else {
                container.tagged = Some(tagged);
            }
        } else if let Some(token) = &unsafe_token
            && input.peek(syn::token::Paren)
        {
            errors.at(
                token.span,
                "`unsafe` is not a function: write `unsafe tagged(method = …, tag = …)`",
            );
            container.tagged_attempted = true;
            skip_entry(input);
        } else if let Some(token) = unsafe_token {
            container.tagged_attempted = true;
            errors.at(
                token.span,
                "`unsafe` acknowledges a tagged allocation method: \
                 write `unsafe tagged(method = …, tag = …)`",
            );
            skip_entry(input);
        } else {
            let found = input.fork().parse::<TokenTree>();
            match found {
                Ok(token) => errors.spanned(
                    &token,
                    format_args!(
                        "unknown `frame_allocator` argument `{token}`; \
                         expected `crate = path` or `unsafe tagged(…)`"
                    ),
                ),
                Err(error) => errors.push(error),
            }
            skip_entry(input);
        }
        entry_separator(input, errors);
    }
}

fn parse_tagged(
    input: ParseStream,
    key: &syn::Ident,
    unsafe_span: Option<Span>,
    errors: &mut Errors,
) -> Tagged {
    let mut tagged = Tagged {
        span: key.span(),
        unsafe_span,
        method: None,
        tag: None,
        default: None,
        sizes: None,
        malformed: false,
    };
    let Ok(content) = parenthesized(input) else {
        errors.spanned(
            key,
            "expected `tagged(method = name, tag = Type)`, \
             optionally with `default = expr` and `sizes(…)`",
        );
        skip_entry(input);
        tagged.malformed = true;
        return tagged;
    };
    parse_tagged_entries(&content, &mut tagged, errors);
    if !input.is_empty() && !input.peek(Token![,]) {
        if input.peek(Token![unsafe]) && tagged.unsafe_span.is_none() {
            let span = input.span();
            errors.at(
                span,
                "`unsafe` goes before `tagged`: write `unsafe tagged(…)`",
            );
            // Counted as written, so its absence is not reported as well.
            tagged.unsafe_span = Some(span);
        } else {
            errors.push(input.error("expected `,` after `tagged(…)`"));
        }
        skip_entry(input);
    }
    tagged
}

fn parse_tagged_entries(content: ParseStream, tagged: &mut Tagged, errors: &mut Errors) {
    entries(content, errors, &TAGGED_KEYS, |key, content, errors| {
        if key == METHOD {
            let path = <syn::Path as syn::parse::Parse>::parse;
            set(
                &mut tagged.method,
                content,
                key,
                "method_name",
                path,
                errors,
            );
        } else if key == TAG {
            let ty = |input: ParseStream| tokens_of_value(input, true);
            set(&mut tagged.tag, content, key, "Type", ty, errors);
        } else if key == DEFAULT {
            let expr = |input: ParseStream| tokens_of_value(input, false);
            set(&mut tagged.default, content, key, "expr", expr, errors);
        } else if key == SIZES {
            let sizes = parse_sizes(content, key, errors);
            errors.set_once(&mut tagged.sizes, key, sizes);
        } else {
            return false;
        }
        true
    });
}

/// The contents of the parentheses that come next.
fn parenthesized(input: ParseStream<'_>) -> syn::Result<syn::parse::ParseBuffer<'_>> {
    let content;
    syn::parenthesized!(content in input);
    Ok(content)
}

/// Consumes whatever is left of `input`, so that syn does not report it
/// again as an unexpected token once the error about it is recorded.
fn drain(input: ParseStream) {
    while !input.is_empty() && input.parse::<TokenTree>().is_ok() {}
}

fn parse_sizes(input: ParseStream, key: &syn::Ident, errors: &mut Errors) -> Vec<PageSizeName> {
    let Ok(content) = parenthesized(input) else {
        errors.spanned(key, "expected `sizes(Size4KiB, Size2MiB, …)`");
        skip_entry(input);
        return Vec::new();
    };
    let paths = syn::punctuated::Punctuated::<syn::Path, Token![,]>::parse_terminated_with(
        &content,
        syn::Path::parse_mod_style,
    );
    drain(&content);
    let paths = match paths {
        Ok(paths) => paths,
        Err(error) => {
            errors.at(
                error.span(),
                "expected `sizes(Size4KiB, Size2MiB, …)`, the sizes separated by commas",
            );
            return Vec::new();
        }
    };
    let mut sizes: Vec<PageSizeName> = Vec::new();
    for path in &paths {
        match sizes::recognise(path) {
            Some(size) if sizes.iter().any(|seen| seen.name == size.name) => {
                errors.spanned(path, format_args!("`{}` is listed twice", size.name));
            }
            Some(size) => sizes.push(size),
            None => errors.spanned(path, format_args!("unknown page size; {}", sizes::EXPECTED)),
        }
    }
    if paths.is_empty() {
        errors.spanned(
            key,
            "`sizes()` is empty; list at least one of `Size4KiB`, `Size2MiB`, `Size1GiB`",
        );
    }
    sizes
}
