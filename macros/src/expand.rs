//! Code generation for `#[derive(FrameAllocator)]`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

use crate::ast::Input;
use crate::ctxt::Errors;
use crate::generics::{
    elide_lifetimes, fresh_page_size_param, impl_params, mentions_parameters, where_clause,
};
use crate::names;
use crate::sizes::PageSizeName;
use crate::valid::{self, Plan, TaggedPlan, Target};

/// The whole derive: parse, check, generate; on error, the errors and a
/// fallback impl so that uses of the type do not add errors of their own.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = Input::from_syn(input, &mut errors);
    let private = names::private_path(
        parsed.attrs.krate.as_ref(),
        Span::call_site(),
        Span::call_site(),
    );
    let plan = valid::check(&parsed, &mut errors);
    if !errors.is_empty() {
        let mut out = errors.into_compile_errors();
        match &plan {
            // The allocator field is known: stand-ins with the real bounds,
            // so a use infers its page size as it would have.
            Some(Plan::Struct(target)) => out.extend(stand_in_forwarding(
                &parsed,
                &[&target.reach.allocator],
                &private,
            )),
            Some(Plan::Enum(targets)) => {
                let types: Vec<&TokenStream> = targets
                    .iter()
                    .map(|(_, target)| &target.reach.allocator)
                    .collect();
                out.extend(stand_in_forwarding(&parsed, &types, &private));
            }
            Some(Plan::Tagged(_)) | None => out.extend(fallback(&parsed, &private)),
        }
        return out;
    }
    let Some(plan) = plan else {
        return fallback(&parsed, &private);
    };
    match plan {
        Plan::Struct(target) => forward_struct(&parsed, &target, &private),
        Plan::Enum(targets) => forward_enum(&parsed, &targets, &private),
        Plan::Tagged(tagged) => tagged_impls(&parsed, &tagged, &private),
    }
}

/// A generated local variable or parameter, `__framealloc_<name>`.
///
/// The mixed-site span keeps it apart from the user's local variables, but
/// not from constants and unit structs in scope: a binding pattern that
/// names one of those is read as that item, whatever the span. The prefix
/// keeps clear of those (`const frame: …` in the user's module would
/// otherwise turn the parameter `frame` into a constant pattern).
fn local(name: &str) -> Ident {
    Ident::new(&format!("__framealloc_{name}"), Span::mixed_site())
}

fn forward_struct(input: &Input, target: &Target, p: &TokenStream) -> TokenStream {
    let Target { member, ty, reach } = target;
    let s = fresh_page_size_param(input.source);
    let allocator = &reach.allocator;
    let guard = local("guard");
    let place = quote!(self.#member);
    let (lock, access) = reach.access(&place, &place, &guard);
    let allocate = quote! {
        #lock
        <#allocator as #p::FrameAllocator<#s>>::allocate_frame(#access)
    };
    let frame = local("frame");
    let deallocate = quote! {
        #lock
        unsafe { <#allocator as #p::FrameDeallocator<#s>>::deallocate_frame(#access, #frame) }
    };
    let mut out = forwarding_impls(input, p, &s, &[allocator], &allocate, &deallocate);
    out.extend(field_check(input, ty, allocator, p));
    out
}

fn forward_enum(input: &Input, targets: &[(&Ident, Target)], p: &TokenStream) -> TokenStream {
    let s = fresh_page_size_param(input.source);
    let allocator = local("allocator");
    let frame = local("frame");
    let guard = local("guard");
    let types: Vec<&TokenStream> = targets
        .iter()
        .map(|(_, target)| &target.reach.allocator)
        .collect();
    let (allocate, deallocate) = if targets.is_empty() {
        (quote!(match *self {}), quote!(match *self {}))
    } else {
        let mut allocate_arms = Vec::new();
        let mut deallocate_arms = Vec::new();
        for (variant, Target { member, reach, .. }) in targets {
            let pattern = quote!(Self::#variant { #member: #allocator, .. });
            let ty = &reach.allocator;
            let (lock, access) = if reach.derefs == 0 && reach.lock.is_none() {
                (TokenStream::new(), allocator.to_token_stream())
            } else {
                reach.access(&quote!(*#allocator), &allocator.to_token_stream(), &guard)
            };
            allocate_arms.push(quote! {
                #pattern => {
                    #lock
                    <#ty as #p::FrameAllocator<#s>>::allocate_frame(#access)
                }
            });
            deallocate_arms.push(quote! {
                #pattern => {
                    #lock
                    unsafe { <#ty as #p::FrameDeallocator<#s>>::deallocate_frame(#access, #frame) }
                }
            });
        }
        (
            quote!(match self { #(#allocate_arms)* }),
            quote!(match self { #(#deallocate_arms)* }),
        )
    };
    let mut out = forwarding_impls(input, p, &s, &types, &allocate, &deallocate);
    for (_, target) in targets {
        out.extend(field_check(input, target.ty, &target.reach.allocator, p));
    }
    out
}

/// The `FrameAllocator<S>` and `FrameDeallocator<S>` impls that forward to
/// `fields`, with `s` as the page-size parameter.
///
/// These impls keep macro spans from end to end, so rustc's `unsafe_code`
/// lint does not see their `unsafe`: the promise is made by the field's own
/// impl, and a crate under `#![forbid(unsafe_code)]` can derive them.
fn forwarding_impls(
    input: &Input,
    p: &TokenStream,
    s: &Ident,
    fields: &[&TokenStream],
    allocate: &TokenStream,
    deallocate: &TokenStream,
) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let impl_generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
    let mut unique: Vec<String> = Vec::new();
    let mut distinct = Vec::new();
    for ty in fields {
        let key = ty.to_string();
        if !unique.contains(&key) {
            unique.push(key);
            distinct.push(*ty);
        }
    }
    let alloc_where = where_clause(
        input.generics,
        distinct
            .iter()
            .map(|ty| quote!(#ty: #p::FrameAllocator<#s>)),
    );
    let dealloc_where = where_clause(
        input.generics,
        distinct
            .iter()
            .map(|ty| quote!(#ty: #p::FrameDeallocator<#s>)),
    );
    let frame = local("frame");
    quote! {
        #[automatically_derived]
        unsafe impl #impl_generics #p::FrameAllocator<#s> for #ident #ty_generics #alloc_where {
            #[inline]
            fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#s>> {
                #allocate
            }
        }

        #[automatically_derived]
        impl #impl_generics #p::FrameDeallocator<#s> for #ident #ty_generics #dealloc_where {
            #[inline]
            unsafe fn deallocate_frame(&mut self, #frame: #p::PhysFrame<#s>) {
                #deallocate
            }
        }
    }
}

/// A compile-time check that a concrete field type is a frame allocator for
/// some page size, reported at the field's type. Generic field types are
/// left to the `where` bound of the impl.
fn field_check(input: &Input, field: &syn::Type, ty: &TokenStream, p: &TokenStream) -> TokenStream {
    if mentions_parameters(ty.clone(), input.generics) {
        return TokenStream::new();
    }
    let mut field_tokens = field.to_token_stream().into_iter();
    let first = field_tokens
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    let last = field_tokens.last().map_or(first, |t| t.span());
    let ty = elide_lifetimes(ty.clone(), input.generics);
    let probe = local("probe");
    // The probe's method call is the argument an unmet bound is reported
    // at: its receiver's parentheses carry the span of the field type's
    // first token and its argument list that of the last, so the error
    // underlines the whole field type. The probe traits are glob-imported in
    // an inner block that holds none of the user's tokens, so they shadow
    // none of the user's names in the field type.
    let mut receiver =
        proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, quote!(&&&#probe));
    receiver.set_span(first);
    let mut no_arguments =
        proc_macro2::Group::new(proc_macro2::Delimiter::Parenthesis, TokenStream::new());
    no_arguments.set_span(last);
    quote! {
        const _: () = {
            let _ = || {
                let #probe = #p::FieldProbe::<#ty>::NEW;
                {
                    use #p::probe::*;
                    #p::require_allocator(&#probe, #receiver.probe #no_arguments);
                }
            };
        };
    }
}

fn tagged_impls(input: &Input, plan: &TaggedPlan, p: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let impl_generics = impl_params(input.generics, None);
    let where_clause = where_clause(input.generics, None);
    let TaggedPlan {
        unsafe_span,
        method,
        tag,
        default,
        sizes,
    } = plan;
    let method_span = method.span();
    // A bare name (`allocate`, `take::<Size2MiB>`) is a method of the type.
    let method = match method.segments.first() {
        Some(name) if method.leading_colon.is_none() && method.segments.len() == 1 => {
            quote_spanned!(method_span=> Self::#name)
        }
        _ => method.to_token_stream(),
    };
    let default_size = PageSizeName {
        name: valid::DEFAULT_SIZE,
        span: Span::call_site(),
    };
    let sizes: Vec<&PageSizeName> = if sizes.is_empty() {
        vec![&default_size]
    } else {
        sizes.clone()
    };
    let tag_local = local("tag");
    // `self` is resolved like a local: it must keep the hygiene of the
    // `&mut self` declared by the generated method, even where the call
    // around it is located at a method name passed through `macro_rules!`.
    let self_value = syn::Token![self](Span::call_site().located_at(method_span));
    let unsafe_token = syn::Token![unsafe](*unsafe_span);
    let allow = allow_unsafe_code(input);
    let mut out = TokenStream::new();
    for size in sizes {
        let size = size.to_type(p);
        // Spanned at the method name, where a wrong signature is reported.
        let call = quote_spanned! {method_span=>
            #p::allocate_with::<Self, Self::Tag, #size, _>(#method, #self_value, #tag_local)
        };
        let body = user_spanned_body(
            quote! {
                type Tag = #tag;

                #[inline]
                fn allocate_tagged(
                    &mut self,
                    #tag_local: Self::Tag,
                ) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                    #call
                }
            },
            *unsafe_span,
        );
        out.extend(quote! {
            #[automatically_derived]
            #allow
            #unsafe_token impl #impl_generics #p::TaggedFrameAllocator<#size> for #ident #ty_generics
            #where_clause
            #body
        });
        if let Some(default) = default {
            let body = user_spanned_body(
                quote! {
                    #[inline]
                    fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                        <Self as #p::TaggedFrameAllocator<#size>>::allocate_tagged(self, #default)
                    }
                },
                *unsafe_span,
            );
            out.extend(quote! {
                #[automatically_derived]
                #allow
                #unsafe_token impl #impl_generics #p::FrameAllocator<#size> for #ident #ty_generics
                #where_clause
                #body
            });
        }
    }
    out
}

/// `#[allow(unsafe_code)]` if the type carries it, else nothing.
///
/// A derive's impls are items beside the type, outside the reach of the
/// type's own lint attributes; under `#![deny(unsafe_code)]` the natural way
/// to accept the promise of `unsafe tagged(…)` for one type is to allow the
/// lint on that type, so the allowance is carried to its impls. The lint name
/// keeps the user's span, so rustc's messages point at the user's attribute.
fn allow_unsafe_code(input: &Input) -> TokenStream {
    for attr in &input.source.attrs {
        let syn::Meta::List(list) = &attr.meta else {
            continue;
        };
        if !list.path.is_ident("allow") {
            continue;
        }
        let named = list
            .tokens
            .clone()
            .into_iter()
            .find_map(|token| match token {
                proc_macro2::TokenTree::Ident(ident) if ident == "unsafe_code" => Some(ident),
                _ => None,
            });
        if let Some(lint) = named {
            return quote!(#[allow(#lint)]);
        }
    }
    TokenStream::new()
}

/// `{ items }` whose braces carry `span`, the span of the user's `tagged`.
///
/// rustc reports `unsafe_code` at the span of the whole `unsafe impl` item,
/// from its `unsafe` to its closing brace, and drops the lint when that span
/// comes from a macro. A span that joins a user token to a macro token is
/// treated as the macro's, so both ends must be the user's: then a crate
/// under `#![forbid(unsafe_code)]` or `#![deny(unsafe_code)]` is told about
/// the promise it makes with `unsafe tagged(…)`.
///
/// The span is that of `tagged`, not of the `unsafe` before it: clippy's
/// `undocumented_unsafe_blocks` takes an `unsafe impl` whose source text does
/// not start with `unsafe` for macro output and leaves it alone, where it
/// would otherwise ask for a `// SAFETY:` comment it can never find (the
/// comment would have to sit between the type and its own attribute). So
/// the impls need no `#[allow]` of that lint, which a crate that forbids it
/// would reject (E0453).
fn user_spanned_body(items: TokenStream, span: Span) -> proc_macro2::Group {
    let mut body = proc_macro2::Group::new(proc_macro2::Delimiter::Brace, items);
    body.set_span(span);
    body
}

/// After an error, for a type whose allocator fields are known: the
/// forwarding impls with their real bounds, and bodies that never run (the
/// crate does not compile).
fn stand_in_forwarding(input: &Input, types: &[&TokenStream], p: &TokenStream) -> TokenStream {
    let s = fresh_page_size_param(input.source);
    let frame = local("frame");
    let never = quote!(#p::core::unreachable!());
    let deallocate = quote! {
        let _ = #frame;
        #never
    };
    forwarding_impls(input, p, &s, types, &never, &deallocate)
}

/// After an error: stand-in impls, never run (the crate does not compile),
/// so that uses of the type add no errors of their own: `FrameAllocator<S>`
/// and `FrameDeallocator<S>` for every `S`, and, if the type meant to be
/// tagged, `TaggedFrameAllocator` for its sizes with its tag type (or `()`
/// where that could not be read).
fn fallback(input: &Input, p: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let plain_generics = impl_params(input.generics, None);
    let where_clause = where_clause(input.generics, None);
    let frame = local("frame");
    let tag_local = local("tag");
    let tagged = input.attrs.tagged.as_ref();
    let plain = |size: &TokenStream, generics: &TokenStream| {
        quote! {
            #[automatically_derived]
            unsafe impl #generics #p::FrameAllocator<#size> for #ident #ty_generics #where_clause {
                fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                    #p::core::unreachable!()
                }
            }

            #[automatically_derived]
            impl #generics #p::FrameDeallocator<#size> for #ident #ty_generics #where_clause {
                unsafe fn deallocate_frame(&mut self, #frame: #p::PhysFrame<#size>) {
                    let _ = #frame;
                    #p::core::unreachable!()
                }
            }
        }
    };
    if tagged.is_none() && !input.attrs.tagged_attempted {
        let s = fresh_page_size_param(input.source);
        let generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
        return plain(&s.to_token_stream(), &generics);
    }
    // A tagged type: its own sizes only, so that a use without a size
    // annotation infers the one size it would have had.
    let tag = tagged
        .and_then(|tagged| tagged.tag.clone())
        .unwrap_or_else(|| quote!(()));
    let default_size = PageSizeName {
        name: valid::DEFAULT_SIZE,
        span: Span::call_site(),
    };
    let sizes: Vec<&PageSizeName> = match tagged.and_then(|tagged| tagged.sizes.as_ref()) {
        Some(sizes) if !sizes.is_empty() => sizes.iter().collect(),
        _ => vec![&default_size],
    };
    let mut out = TokenStream::new();
    for size in sizes {
        let size = size.to_type(p);
        out.extend(plain(&size, &plain_generics));
        out.extend(quote! {
            #[automatically_derived]
            unsafe impl #plain_generics #p::TaggedFrameAllocator<#size> for #ident #ty_generics
            #where_clause
            {
                type Tag = #tag;

                fn allocate_tagged(
                    &mut self,
                    #tag_local: Self::Tag,
                ) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                    let _ = #tag_local;
                    #p::core::unreachable!()
                }
            }
        });
    }
    out
}
