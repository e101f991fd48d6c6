//! Validation: decides everything the derive generates, or reports every
//! reason it cannot; [`crate::expand`] only writes the plan out.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Member, Type};

use crate::ast::{Field, Input, Shape};
use crate::attr::Tagged;
use crate::ctxt::Errors;
use crate::generics::{elide_lifetimes, fresh_page_size_param, mentions_parameters};
use crate::names;
use crate::reach::{self, Reach};
use crate::sizes::PageSizeName;

/// What the derive emits, with every choice made.
pub(crate) struct Plan<'a> {
    /// `<root>::__private`, the path every generated item goes through.
    pub(crate) private: TokenStream,
    pub(crate) impls: Impls<'a>,
}

/// Which impls to emit.
pub(crate) enum Impls<'a> {
    /// Forward to one field of a struct.
    Struct(Forward, Target<'a>),
    /// Dispatch to one field of each variant.
    Enum(Forward, Vec<(&'a Ident, Target<'a>)>),
    /// Wrap a tagged allocation method.
    Tagged(TaggedPlan<'a>),
    /// After an error, with the allocator fields known: the forwarding impls
    /// with their real bounds (so a use infers its page size as it would
    /// have), with bodies that never run.
    StandInForward(Forward),
    /// After an error, otherwise: impls that never run, so that uses of the
    /// type add no errors of their own.
    StandIn(StandIn),
}

/// What the forwarding impls of a struct or an enum share.
pub(crate) struct Forward {
    /// The page-size parameter, named apart from every name of the input.
    pub(crate) page_size: Ident,
    /// The allocator types the impls are bounded by, each once.
    pub(crate) bounds: Vec<TokenStream>,
    /// Per bound: for a concrete allocator type, the index (among the
    /// targets) of the field whose compile-time check the bound goes
    /// through, so that uses add no errors when the check fails.
    pub(crate) checks: Vec<Option<usize>>,
    /// The fields are marked `shared`: the impls are `SharedFrameAllocator`
    /// and `SharedFrameDeallocator` for the type, and `FrameAllocator` and
    /// `FrameDeallocator` for a shared reference to it.
    pub(crate) shared: bool,
}

/// The allocator field of a struct or variant.
pub(crate) struct Target<'a> {
    pub(crate) member: &'a Member,
    pub(crate) ty: &'a Type,
    /// How to get from the field to the allocator.
    pub(crate) reach: Reach<'a>,
    /// A concrete allocator type (lifetimes elided), checked at compile time
    /// at the field; a generic one is left to the impls' `where` bounds.
    pub(crate) probe: Option<TokenStream>,
    /// `shared` in the field's marker, where written.
    pub(crate) shared: Option<Span>,
}

/// A checked `unsafe tagged(…)`.
pub(crate) struct TaggedPlan<'a> {
    /// Where the user wrote `tagged` after `unsafe`: the generated `unsafe
    /// impl`s (their `unsafe` and their braces) carry this span, so the
    /// `unsafe_code` lint reports the user's promise (see `expand`).
    pub(crate) unsafe_span: Span,
    /// The allocation function: `Self::name` for a bare name, else the path.
    pub(crate) method: TokenStream,
    /// The span of `method = …`, where a wrong signature is reported.
    pub(crate) method_span: Span,
    pub(crate) tag: &'a TokenStream,
    pub(crate) default: Option<&'a TokenStream>,
    /// The page sizes to implement, never none.
    pub(crate) sizes: Vec<PageSizeName>,
    /// `unsafe_code` of the type's `#[allow(unsafe_code)]`, carried onto
    /// the impls (which are items beside the type, outside its lint levels).
    pub(crate) allow: Option<Ident>,
}

/// The impls emitted after an error when the allocator fields are unknown.
pub(crate) enum StandIn {
    /// `FrameAllocator<S>` and `FrameDeallocator<S>` for every `S`.
    AnySize(Ident),
    /// A type meant to be tagged: those two and `TaggedFrameAllocator` for its
    /// own sizes only (so a use without a size annotation infers the one it
    /// would have had), with its tag type, or `()` where that is unreadable.
    Tagged(TokenStream, Vec<PageSizeName>),
}

/// Checks `input` and plans the impls; after an error (from any phase),
/// plans stand-ins.
pub(crate) fn check<'a>(input: &'a Input<'a>, errors: &mut Errors) -> Plan<'a> {
    let krate = input.attrs.krate.as_ref();
    let private = names::private_path(krate, Span::call_site(), Span::call_site());
    let impls = match plan(input, errors) {
        Some(impls) if errors.is_empty() => impls,
        Some(Impls::Struct(forward, _) | Impls::Enum(forward, _)) => Impls::StandInForward(forward),
        // A type meant to forward to a shared allocator: its shared impls,
        // unbounded, so that no use of them adds an error.
        _ if input.attrs.tagged.is_none()
            && !input.attrs.tagged_attempted
            && marks_shared(input) =>
        {
            Impls::StandInForward(Forward {
                page_size: fresh_page_size_param(input.source),
                bounds: Vec::new(),
                checks: Vec::new(),
                shared: true,
            })
        }
        _ => Impls::StandIn(match &input.attrs.tagged {
            None if !input.attrs.tagged_attempted => {
                StandIn::AnySize(fresh_page_size_param(input.source))
            }
            tagged => {
                let tag = tagged.as_ref().and_then(|tagged| tagged.tag.clone());
                StandIn::Tagged(tag.unwrap_or_else(|| quote!(())), sizes_of(tagged.as_ref()))
            }
        }),
    };
    Plan { private, impls }
}

/// Whether a field of `input` is marked `#[frame_allocator(shared)]`.
fn marks_shared(input: &Input) -> bool {
    let shared = |fields: &[Field]| {
        fields
            .iter()
            .any(|field| field.marker.as_ref().is_some_and(|m| m.shared.is_some()))
    };
    match &input.shape {
        Shape::Struct(fields) => shared(fields),
        Shape::Enum(variants) => variants.iter().any(|variant| shared(&variant.fields)),
        Shape::Union(_) => false,
    }
}

/// The plan if one could be made, which may be so even though an error was
/// reported.
fn plan<'a>(input: &'a Input<'a>, errors: &mut Errors) -> Option<Impls<'a>> {
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
            let fields: Vec<&Field> = match shape {
                Shape::Struct(fields) => fields.iter().collect(),
                Shape::Enum(variants) => variants.iter().flat_map(|v| &v.fields).collect(),
                Shape::Union(_) => Vec::new(),
            };
            for marker in fields.iter().filter_map(|field| field.marker.as_ref()) {
                if let Some(shared) = marker.shared {
                    errors.at(
                        shared,
                        "`shared` does not go with `tagged(…)`: the tagged impls allocate \
                         through the type's own method; forward to the shared allocator \
                         without `tagged(…)`, or remove `#[frame_allocator(shared)]`",
                    );
                } else {
                    errors.at(
                        marker.span,
                        "`#[frame_allocator]` on a field has no effect with `tagged(…)`: \
                         frames come from the tagged method; remove the marker",
                    );
                }
            }
            for unsafe_code in attribute_words(input, "expect", "unsafe_code") {
                errors.spanned(
                    unsafe_code,
                    "`#[expect(unsafe_code)]` on the type cannot be fulfilled: the impls of \
                     `unsafe tagged(…)` are items beside the type, outside its lint attributes; \
                     write `#[allow(unsafe_code)]`, which the derive carries to its impls",
                );
            }
            check_tagged(input, tagged, errors).map(Impls::Tagged)
        }
        // A malformed `tagged` entry, already reported: the fields were not
        // meant as a forwarding target, so they are not checked as one.
        (_, None) if input.attrs.tagged_attempted => None,
        (Shape::Struct(fields), None) => {
            // `&mut` to a field of a packed struct may be unaligned (rustc
            // would report E0793 at the derive, without saying what to do).
            for packed in attribute_words(input, "repr", "packed") {
                errors.spanned(
                    packed,
                    "`#[derive(FrameAllocator)]` cannot forward to a field of a `#[repr(packed)]` \
                     struct: allocating takes `&mut` to the field, which may be unaligned; \
                     remove `packed`, or implement `FrameAllocator` by hand on a copy of the field",
                );
            }
            let what = format!("`{}`", input.ident);
            let target = target(input, &what, input.ident.span(), fields, errors)?;
            Some(Impls::Struct(forward(input, [&target]), target))
        }
        (Shape::Enum(variants), None) => {
            let mut targets = Vec::new();
            for variant in variants {
                let what = format!("variant `{}::{}`", input.ident, variant.ident);
                let span = variant.ident.span();
                if let Some(target) = target(input, &what, span, &variant.fields, errors) {
                    targets.push((variant.ident, target));
                }
            }
            let shared = targets
                .iter()
                .find_map(|(variant, t)| Some((variant, t.shared?)));
            let plain = targets.iter().find(|(_, t)| t.shared.is_none());
            if let (Some((shared, span)), Some((plain, _))) = (shared, plain) {
                errors.at(
                    span,
                    format_args!(
                        "variant `{0}::{shared}` forwards to a shared allocator and \
                         `{0}::{plain}` does not: one enum implements either \
                         `SharedFrameAllocator` or `FrameAllocator`; mark every variant's \
                         field `shared`, or none",
                        input.ident
                    ),
                );
                return None;
            }
            (targets.len() == variants.len())
                .then(|| Impls::Enum(forward(input, targets.iter().map(|(_, t)| t)), targets))
        }
    }
}

/// The parameter and the bounds of impls forwarding to `targets`.
fn forward<'a, 'b: 'a>(
    input: &Input,
    targets: impl IntoIterator<Item = &'a Target<'b>>,
) -> Forward {
    let (mut seen, mut bounds, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    let mut shared = false;
    for (index, target) in targets.into_iter().enumerate() {
        shared |= target.shared.is_some();
        let ty = &target.reach.allocator;
        let key = ty.to_string();
        if !seen.contains(&key) {
            seen.push(key);
            bounds.push(ty.clone());
            checks.push(target.probe.is_some().then_some(index));
        }
    }
    Forward {
        page_size: fresh_page_size_param(input.source),
        bounds,
        checks,
        shared,
    }
}

/// Each `word` among the arguments of the type's attributes `#[list(…)]`
/// (the first of each attribute), as `packed` in `#[repr(C, packed)]`.
fn attribute_words<'a>(
    input: &'a Input,
    list: &'a str,
    word: &'a str,
) -> impl Iterator<Item = Ident> + 'a {
    input.source.attrs.iter().filter_map(move |attr| {
        let syn::Meta::List(meta) = &attr.meta else {
            return None;
        };
        if !meta.path.is_ident(list) {
            return None;
        }
        meta.tokens
            .clone()
            .into_iter()
            .find_map(|token| match token {
                proc_macro2::TokenTree::Ident(ident) if ident == word => Some(ident),
                _ => None,
            })
    })
}

/// Picks the allocator field of a struct or variant.
fn target<'a>(
    input: &Input,
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
    if let Some(shared) = chosen.marker.as_ref().and_then(|marker| marker.shared) {
        return shared_target(input, what, chosen, shared, errors);
    }
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
            probe: (!mentions_parameters(reach.allocator.clone(), input.generics))
                .then(|| elide_lifetimes(reach.allocator.clone(), input.generics)),
            reach,
            shared: None,
        }),
        Err(message) => {
            errors.spanned(chosen.ty, message);
            None
        }
    }
}

/// The target of a field marked `shared`: used through `&self` as it is,
/// no holder taken off (`&A` is a shared allocator when `A` is one).
fn shared_target<'a>(
    input: &Input,
    what: &str,
    chosen: &'a Field<'a>,
    shared: Span,
    errors: &mut Errors,
) -> Option<Target<'a>> {
    // Used through `&self` as it is: no holder is taken off (`&A` is a
    // shared allocator when `A` is one).
    if reach::surely_not_an_allocator(chosen.ty) {
        errors.spanned(
            chosen.ty,
            format_args!(
                "`{}` is not a shared frame allocator: {what} forwards to its field `{}`, \
                 marked `shared`, which must implement `SharedFrameAllocator<S>` for some \
                 page size `S`",
                pretty(&chosen.ty.to_token_stream().to_string()),
                chosen.name(),
            ),
        );
        return None;
    }
    let allocator = chosen.ty.to_token_stream();
    Some(Target {
        member: &chosen.member,
        ty: chosen.ty,
        probe: (!mentions_parameters(allocator.clone(), input.generics))
            .then(|| elide_lifetimes(allocator.clone(), input.generics)),
        reach: Reach {
            allocator_type: Some(chosen.ty),
            allocator,
            derefs: 0,
            lock: None,
        },
        shared: Some(shared),
    })
}

fn check_tagged<'a>(
    input: &Input,
    tagged: &'a Tagged,
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
    let unsafe_span = tagged.unsafe_span.map(|_| tagged.span)?;
    let method = tagged.method.as_ref()?;
    let method_span = method.span();
    Some(TaggedPlan {
        unsafe_span,
        // A bare name (`allocate`, `take::<Size2MiB>`) is a method of the type.
        method: match method.segments.first() {
            Some(name) if method.leading_colon.is_none() && method.segments.len() == 1 => {
                quote_spanned!(method_span=> Self::#name)
            }
            _ => method.to_token_stream(),
        },
        method_span,
        tag: tagged.tag.as_ref()?,
        default: tagged.default.as_ref(),
        sizes: sizes_of(Some(tagged)),
        allow: attribute_words(input, "allow", "unsafe_code").next(),
    })
}

/// The page sizes of `sizes(…)`, or `Size4KiB` where none are given.
fn sizes_of(tagged: Option<&Tagged>) -> Vec<PageSizeName> {
    match tagged.and_then(|tagged| tagged.sizes.as_ref()) {
        Some(sizes) if !sizes.is_empty() => sizes.clone(),
        _ => vec![PageSizeName::default_size()],
    }
}

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
