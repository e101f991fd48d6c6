//! Validation: decides what the derive generates, or reports every reason it
//! cannot.

use proc_macro2::{Span, TokenStream};
use syn::{Ident, Member, Path, Type};

use crate::ast::{Field, Input, Shape};
use crate::ctxt::Errors;
use crate::reach::{self, Reach};
use crate::sizes::{self, PageSizeName};

/// What to generate.
pub(crate) enum Plan<'a> {
    /// Forward to one field of a struct.
    Struct(Target<'a>),
    /// Dispatch to one field of each variant.
    Enum(Vec<(&'a Ident, Target<'a>)>),
    /// Wrap a tagged allocation method.
    Tagged(TaggedPlan<'a>),
}

/// The allocator field of a struct or variant.
pub(crate) struct Target<'a> {
    pub(crate) member: &'a Member,
    pub(crate) ty: &'a Type,
    /// How to get from the field to the allocator.
    pub(crate) reach: Reach<'a>,
}

/// A checked `unsafe tagged(…)`.
pub(crate) struct TaggedPlan<'a> {
    /// Where the user wrote `tagged` after `unsafe`: the generated `unsafe
    /// impl`s (their `unsafe` and their braces) carry this span, so the
    /// `unsafe_code` lint reports the user's promise (see
    /// `expand::user_spanned_body` for why not the `unsafe` itself).
    pub(crate) unsafe_span: Span,
    pub(crate) method: &'a Path,
    pub(crate) tag: &'a TokenStream,
    pub(crate) default: Option<&'a TokenStream>,
    pub(crate) sizes: Vec<&'a PageSizeName>,
}

/// Checks `input`; returns the plan if one could be made, which may be so
/// even though an error was reported (the caller checks `errors`).
pub(crate) fn check<'a>(input: &'a Input<'a>, errors: &mut Errors) -> Option<Plan<'a>> {
    match (&input.shape, &input.attrs.tagged) {
        (Shape::Union(span), _) => {
            errors.at(
                *span,
                "`FrameAllocator` cannot be derived for a union: the derive cannot know which \
                 field holds the allocator; use a struct or an enum",
            );
            None
        }
        (shape, Some(tagged)) => {
            let fields: Box<dyn Iterator<Item = &Field>> = match shape {
                Shape::Struct(fields) => Box::new(fields.iter()),
                Shape::Enum(variants) => Box::new(variants.iter().flat_map(|v| &v.fields)),
                Shape::Union(_) => Box::new(std::iter::empty()),
            };
            for field in fields {
                if let Some(marker) = &field.marker {
                    errors.at(
                        marker.span,
                        "`#[frame_allocator]` on a field has no effect with `tagged(…)`: \
                         frames come from the tagged method; remove the marker",
                    );
                }
            }
            reject_expect_unsafe_code(input, errors);
            check_tagged(tagged, errors).map(Plan::Tagged)
        }
        // A malformed `tagged` entry, already reported: the fields were not
        // meant as a forwarding target, so they are not checked as one.
        (_, None) if input.attrs.tagged_attempted => None,
        (Shape::Struct(fields), None) => {
            reject_packed(input, errors);
            let what = format!("`{}`", input.ident);
            target(&what, input.ident.span(), fields, errors).map(Plan::Struct)
        }
        (Shape::Enum(variants), None) => {
            let mut targets = Vec::new();
            for variant in variants {
                let what = format!("variant `{}::{}`", input.ident, variant.ident);
                if let Some(target) = target(&what, variant.ident.span(), &variant.fields, errors) {
                    targets.push((variant.ident, target));
                }
            }
            (targets.len() == variants.len()).then_some(Plan::Enum(targets))
        }
    }
}

/// Picks the allocator field of a struct or variant.
fn target<'a>(
    what: &str,
    span: Span,
    fields: &'a [Field<'a>],
    errors: &mut Errors,
) -> Option<Target<'a>> {
    let marked: Vec<&Field> = fields.iter().filter(|f| f.marker.is_some()).collect();
    let chosen = match (fields, marked.as_slice()) {
        ([], _) => {
            errors.at(
                span,
                format_args!(
                    "{what} has no field to forward to: a derived `FrameAllocator` needs a \
                     field that is an allocator (`framealloc::NoAllocator` never allocates)"
                ),
            );
            return None;
        }
        ([only], []) => only,
        (_, [one]) => one,
        (_, []) => {
            errors.at(
                span,
                format_args!(
                    "{what} has {} fields: mark the allocator field with `#[frame_allocator]`",
                    fields.len()
                ),
            );
            return None;
        }
        (_, [first, rest @ ..]) => {
            for extra in rest {
                errors.at(
                    extra.marker.as_ref().map_or(span, |marker| marker.span),
                    format_args!(
                        "{what} can forward to one field only, and `{}` is already marked \
                         `#[frame_allocator]`",
                        first.name()
                    ),
                );
            }
            return None;
        }
    };
    let lock = chosen
        .marker
        .as_ref()
        .and_then(|marker| marker.lock.as_ref());
    match reach::reach(chosen.ty, lock) {
        Ok(reach)
            if reach
                .allocator_type
                .is_some_and(reach::surely_not_an_allocator) =>
        {
            errors.spanned(
                chosen.ty,
                format_args!(
                    "`{}` is not a frame allocator: {what} forwards to its field `{}`, which \
                     must implement `FrameAllocator<S>` for some page size `S`; mark the \
                     allocator field with `#[frame_allocator]`",
                    pretty(&reach.allocator.to_string()),
                    chosen.name(),
                ),
            );
            None
        }
        Ok(reach) => Some(Target {
            member: &chosen.member,
            ty: chosen.ty,
            reach,
        }),
        Err(message) => {
            errors.spanned(chosen.ty, message);
            None
        }
    }
}

/// `#[repr(packed)]` on a forwarding struct: reported at `packed`, since the
/// forwarding impls take `&mut` to the field, which may be unaligned (rustc
/// would report E0793 at the derive, without saying what to do).
fn reject_packed(input: &Input, errors: &mut Errors) {
    for attr in &input.source.attrs {
        let syn::Meta::List(list) = &attr.meta else {
            continue;
        };
        if !list.path.is_ident("repr") {
            continue;
        }
        let packed = list.tokens.clone().into_iter().find(
            |token| matches!(token, proc_macro2::TokenTree::Ident(ident) if ident == "packed"),
        );
        if let Some(packed) = packed {
            errors.spanned(
                packed,
                "`#[derive(FrameAllocator)]` cannot forward to a field of a `#[repr(packed)]` \
                 struct: allocating takes `&mut` to the field, which may be unaligned; \
                 remove `packed`, or implement `FrameAllocator` by hand on a copy of the field",
            );
        }
    }
}

/// `#[expect(unsafe_code)]` on a tagged type: reported, since nothing the
/// derive emits can fulfil it (its impls are items of their own, whose lint
/// levels come from the module, not from the type's attributes).
fn reject_expect_unsafe_code(input: &Input, errors: &mut Errors) {
    for attr in &input.source.attrs {
        let syn::Meta::List(list) = &attr.meta else {
            continue;
        };
        if !list.path.is_ident("expect") {
            continue;
        }
        let expected = list.tokens.clone().into_iter().find(
            |token| matches!(token, proc_macro2::TokenTree::Ident(ident) if ident == "unsafe_code"),
        );
        if let Some(unsafe_code) = expected {
            errors.spanned(
                unsafe_code,
                "`#[expect(unsafe_code)]` on the type cannot be fulfilled: the impls of \
                 `unsafe tagged(…)` are items beside the type, outside its lint attributes; \
                 write `#[allow(unsafe_code)]`, which the derive carries to its impls",
            );
        }
    }
}

fn check_tagged<'a>(
    tagged: &'a crate::attr::Tagged,
    errors: &mut Errors,
) -> Option<TaggedPlan<'a>> {
    let method_name = tagged.method.as_ref().map_or_else(
        || "the method".to_owned(),
        |path| {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            format!("`{}`", segments.join("::"))
        },
    );
    if tagged.malformed {
        return None;
    }
    if tagged.unsafe_span.is_none() {
        errors.at(
            tagged.span,
            format_args!(
                "`tagged` needs `unsafe`: it implements the unsafe trait `TaggedFrameAllocator` \
                 with {method_name}, promising that it never returns a frame that is in use, \
                 and the derive cannot check that; write `unsafe tagged(…)` to make the promise"
            ),
        );
    }
    if tagged.method.is_none() {
        errors.at(
            tagged.span,
            "`tagged(…)` needs `method = name`: the method `fn(&mut self, tag: Tag) -> \
             Option<PhysFrame<S>>` that allocates a frame",
        );
    }
    if tagged.tag.is_none() {
        errors.at(
            tagged.span,
            "`tagged(…)` needs `tag = Type`: the type of the method's tag argument",
        );
    }
    let sizes = match &tagged.sizes {
        Some(sizes) => sizes.iter().collect(),
        None => Vec::new(),
    };
    Some(TaggedPlan {
        unsafe_span: tagged.unsafe_span.map(|_| tagged.span)?,
        method: tagged.method.as_ref()?,
        tag: tagged.tag.as_ref()?,
        default: tagged.default.as_ref(),
        sizes,
    })
}

/// The page sizes a tagged plan implements when `sizes(…)` is not given.
pub(crate) const DEFAULT_SIZE: &str = sizes::NAMES[0];

/// A type's tokens as a person writes them: `(u8, [u64; 2])`, not
/// `(u8 , [u64 ; 2])`.
fn pretty(tokens: &str) -> String {
    let mut out = tokens.to_owned();
    for (from, to) in [
        (" ,", ","),
        (" ;", ";"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" < ", "<"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" :: ", "::"),
        ("& ", "&"),
        ("* ", "*"),
    ] {
        out = out.replace(from, to);
    }
    out
}
