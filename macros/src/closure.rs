//! `frame_allocator!`: a closure (and optionally a deallocation closure)
//! turned into a frame allocator by a call of an `unsafe fn`.
//!
//! syn is used without its `full` feature, so closures are not parsed as
//! expressions: the header (`async`? `move`? `|params|`, `-> Type`) is read
//! from the tokens by hand and the body is passed through untouched, to be
//! checked by the compiler with the user's spans.
//!
//! Input: `closure [, closure] [, state = expr] [, size = Size] [, crate = path] [,]`,
//! the named arguments in any position. Without `state` the closures take
//! nothing and the frame; with it, they take `&mut` state first.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

use crate::ctxt::Errors;
use crate::names::{self, CRATE, SIZE, STATE};
use crate::sizes::{self, PageSizeName};
use crate::tokens::{end_of_argument, group, is_ident, is_joint_punct, is_punct};

/// The checked arguments.
#[derive(Default)]
struct Args {
    allocate: Option<TokenStream>,
    deallocate: Option<TokenStream>,
    size: Option<PageSizeName>,
    krate: Option<syn::Path>,
    state: Option<TokenStream>,
}

/// Expands `frame_allocator!(…)`.
pub(crate) fn expand(input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let tokens: Vec<TokenTree> = input.into_iter().collect();
    let args = parse(&tokens, &mut errors);
    if !errors.is_empty() {
        // One block in expression position; the last `compile_error!` is its
        // value, so the caller's code sees an error, not a `()` to complain about.
        let errors = errors.into_compile_errors();
        return quote!({ #errors });
    }
    let (Some(first), Some(last)) = (tokens.first(), tokens.last()) else {
        // `parse` reports an empty input.
        return TokenStream::new();
    };
    // The call expression is built to span the user's tokens: it starts with
    // a token carrying the span of the first argument token, and its
    // parentheses carry the span of the last. To rustc's lints it is then the
    // user's code, and `unsafe_op_in_unsafe_fn` reports the call inside an
    // `unsafe fn` (it ignores calls made by external macros). The path's
    // inner segments keep the macro's hygiene, so `unused_qualifications`
    // does not suggest shortening a path the user never wrote.
    let (start, end) = (first.span(), last.span());
    let hidden = Span::call_site().located_at(start);
    let private = names::private_path(args.krate.as_ref(), start, hidden);
    let size = args.size.map(|size| size.to_type(&private));
    let (function, arguments, inferred) = match (args.allocate, args.deallocate, args.state) {
        (Some(allocate), None, Some(state)) => ("from_state", quote!(#state, #allocate), 2),
        (Some(allocate), Some(deallocate), Some(state)) => {
            ("from_state_fns", quote!(#state, #allocate, #deallocate), 3)
        }
        (Some(allocate), None, None) => ("from_fn", quote!(#allocate), 1),
        (Some(allocate), Some(deallocate), None) => ("from_fns", quote!(#allocate, #deallocate), 2),
        // `parse` reports a missing allocation closure.
        (None, ..) => return TokenStream::new(),
    };
    let function = proc_macro2::Ident::new(function, start);
    let generics = size.map(|size| {
        let holes = (0..inferred).map(|_| quote_spanned!(start=> , _));
        quote_spanned!(start=> ::<#size #(#holes)*>)
    });
    let arguments = group(Delimiter::Parenthesis, arguments, end);
    quote_spanned!(hidden=> #private::#function #generics #arguments)
}

/// An error covering `tokens` (first to last).
fn spanned_error(errors: &mut Errors, tokens: &[TokenTree], message: &str) {
    let stream: TokenStream = tokens.iter().cloned().collect();
    if stream.is_empty() {
        errors.at(Span::call_site(), message);
    } else {
        errors.spanned(stream, message);
    }
}

fn parse(tokens: &[TokenTree], errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let mut closures = 0usize;
    // Each closure's parameters and header, checked once `state` is known.
    let mut allocate_params = None;
    let mut deallocate_params = None;
    let mut i = 0;
    while i < tokens.len() {
        let start = i;
        let named = match tokens.get(i) {
            Some(TokenTree::Ident(ident))
                if is_punct(tokens.get(i + 1), '=') && !is_joint_punct(tokens.get(i + 1), '=') =>
            {
                Some(ident.clone())
            }
            _ => None,
        };
        if let Some(name) = named {
            i = end_of_argument(tokens, i + 2, name != STATE);
            named_argument(&name, &tokens[start + 2..i], &mut args, errors);
        } else if is_punct(tokens.get(i), ',') {
            errors.spanned(
                &tokens[i],
                "unexpected `,`: arguments are separated by a single comma",
            );
        } else if let Some((closure, end)) = closure_argument(tokens, i, errors) {
            i = end;
            closures += 1;
            let whole: TokenStream = tokens[start..i].iter().cloned().collect();
            match closures {
                1 => {
                    allocate_params = closure;
                    args.allocate = Some(whole);
                }
                2 => {
                    deallocate_params = closure;
                    args.deallocate = Some(whole);
                }
                _ => spanned_error(
                    errors,
                    &tokens[start..i],
                    "unexpected third closure: `frame_allocator!` takes an allocation closure \
                     and, optionally, a deallocation closure",
                ),
            }
        } else {
            // Counted as the closure it should have been.
            closures += 1;
            i = end_of_argument(tokens, i, false);
            spanned_error(
                errors,
                &tokens[start..i],
                "`frame_allocator!` takes a closure literal that returns `Option<PhysFrame<S>>`, \
                 such as `|| frames.pop()`; for a closure stored in a variable, call \
                 `framealloc::from_fn(f)` instead",
            );
        }
        // `i` is at a comma or at the end.
        i += 1;
    }
    if closures == 0 {
        errors.at(
            Span::call_site(),
            "`frame_allocator!` needs an allocation closure: `frame_allocator!(|| …)`",
        );
    }
    check_parameters(
        args.state.is_some(),
        allocate_params,
        deallocate_params,
        errors,
    );
    args
}

/// A closure's parameter count, and the tokens an error about it covers
/// (its parameters, or its header if it has none); `None` if unknown.
type Parameters = Option<(usize, Vec<TokenTree>)>;

/// Reads the closure argument at `i`: a closure literal, or one inside
/// invisible groups (a `$c:expr` of `macro_rules!` arrives in one) that make
/// up the whole argument. Returns its parameters and the index just past it.
fn closure_argument(
    tokens: &[TokenTree],
    i: usize,
    errors: &mut Errors,
) -> Option<(Parameters, usize)> {
    if let Some(TokenTree::Group(group)) = tokens.get(i)
        && group.delimiter() == Delimiter::None
        && (i + 1 == tokens.len() || is_punct(tokens.get(i + 1), ','))
    {
        let inner: Vec<TokenTree> = group.stream().into_iter().collect();
        let (params, end) = closure_argument(&inner, 0, errors)?;
        return (end == inner.len()).then_some((params, i + 1));
    }
    let closure = Closure::parse(tokens, i, errors)?;
    let header = &tokens[i..closure.body_start];
    let params = closure.params.map(|params| {
        let shown = if params.is_empty() { header } else { params };
        (count_parameters(params), shown.to_vec())
    });
    Some((params, closure.end))
}

/// How many parameters a closure's parameter list declares.
fn count_parameters(params: &[TokenTree]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < params.len() {
        let end = end_of_argument(params, i, true);
        if end > i {
            count += 1;
        }
        i = end + 1;
    }
    count
}

/// Checks that each closure declares as many parameters as it will be given.
fn check_parameters(
    with_state: bool,
    allocate: Parameters,
    deallocate: Parameters,
    errors: &mut Errors,
) {
    let (allocate_message, deallocate_message) = if with_state {
        (
            "with `state = …`, the allocation closure takes the state: write `|state| …`",
            "with `state = …`, the deallocation closure takes the state and the frame: \
             write `|state, frame| …`",
        )
    } else {
        (
            "the allocation closure takes no arguments: write `|| …` (to share state \
             with a deallocation closure, pass it with `state = …` and write `|state| …`)",
            "the deallocation closure takes the frame to free: write `|frame| …`",
        )
    };
    let expected = usize::from(with_state);
    for (closure, expected, message) in [
        (allocate, expected, allocate_message),
        (deallocate, expected + 1, deallocate_message),
    ] {
        if let Some((count, shown)) = &closure
            && *count != expected
        {
            spanned_error(errors, shown, message);
        }
    }
}

fn named_argument(
    name: &proc_macro2::Ident,
    value: &[TokenTree],
    args: &mut Args,
    errors: &mut Errors,
) {
    let stream: TokenStream = value.iter().cloned().collect();
    if *name == SIZE {
        let size = syn::parse2::<syn::Path>(stream)
            .ok()
            .and_then(|path| sizes::recognise(&path));
        match size {
            None => spanned_error(
                errors,
                value,
                &format!("unknown page size; {}", sizes::EXPECTED),
            ),
            Some(size) => errors.set_once(&mut args.size, name, size),
        }
    } else if *name == STATE {
        if value.is_empty() {
            errors.spanned(name, "expected an expression after `state =`");
        } else {
            errors.set_once(&mut args.state, name, stream);
        }
    } else if *name == CRATE {
        match syn::parse2::<syn::Path>(stream) {
            Err(_) => spanned_error(
                errors,
                value,
                "expected a path after `crate =`, such as `::framealloc`",
            ),
            Ok(path) => errors.set_once(&mut args.krate, name, path),
        }
    } else {
        errors.spanned(
            name,
            format_args!(
                "unknown argument `{name}`; expected `state = …`, `size = …` or `crate = …`"
            ),
        );
    }
}

/// A closure's header, read from the tokens.
struct Closure<'a> {
    /// The tokens between the `|`s (empty for `||`); `None` if unclosed.
    params: Option<&'a [TokenTree]>,
    /// Index of the first token of the body (or of `->`).
    body_start: usize,
    /// Index just past the closure.
    end: usize,
}

impl<'a> Closure<'a> {
    /// Reads a closure at `i`; `None` (with nothing reported) if the tokens
    /// there do not start a closure. An `async` closure is reported.
    fn parse(tokens: &'a [TokenTree], i: usize, errors: &mut Errors) -> Option<Self> {
        let mut j = i;
        let is_async = is_ident(tokens.get(j), "async");
        if is_async {
            j += 1;
        }
        if is_ident(tokens.get(j), "move") {
            j += 1;
        }
        if !is_punct(tokens.get(j), '|') {
            return None;
        }
        if is_async {
            errors.spanned(
                &tokens[i],
                "`async` closures cannot allocate frames: `allocate_frame` returns a frame, \
                 not a future; remove `async`",
            );
        }
        let params = if is_joint_punct(tokens.get(j), '|') && is_punct(tokens.get(j + 1), '|') {
            j += 2;
            Some(&tokens[j..j])
        } else {
            let open = j + 1;
            let close = (open..tokens.len()).find(|&k| is_punct(tokens.get(k), '|'));
            let Some(close) = close else {
                errors.spanned(&tokens[j], "unclosed closure parameter list: expected `|`");
                return Some(Closure {
                    params: None,
                    body_start: tokens.len(),
                    end: tokens.len(),
                });
            };
            j = close + 1;
            Some(&tokens[open..close])
        };
        let body_start = j;
        let end = if is_joint_punct(tokens.get(j), '-') && is_punct(tokens.get(j + 1), '>') {
            // `-> Type { body }`: the body is the first top-level brace group.
            let mut k = j + 2;
            let mut depth = 0usize;
            loop {
                match tokens.get(k) {
                    None => {
                        spanned_error(
                            errors,
                            &tokens[j..],
                            "a closure with a return type needs a block body: `|| -> Type { … }`",
                        );
                        break k;
                    }
                    Some(TokenTree::Group(g))
                        if g.delimiter() == Delimiter::Brace && depth == 0 =>
                    {
                        break end_of_argument(tokens, k, false);
                    }
                    Some(TokenTree::Punct(p)) if p.as_char() == '<' => depth += 1,
                    Some(TokenTree::Punct(p))
                        if p.as_char() == '>'
                            && depth > 0
                            && !is_joint_punct(tokens.get(k - 1), '-') =>
                    {
                        depth -= 1;
                    }
                    Some(_) => {}
                }
                k += 1;
            }
        } else {
            end_of_argument(tokens, j, false)
        };
        if end == body_start {
            spanned_error(
                errors,
                &tokens[i..body_start],
                "expected the closure's body, such as `|| frames.pop()`",
            );
        }
        Some(Closure {
            params,
            body_start,
            end,
        })
    }
}
