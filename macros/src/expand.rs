//! Code generation for `#[derive(FrameAllocator)]`: writes out the plan of
//! [`crate::valid`], deciding nothing.
//!
//! Generated locals and parameters are `__framealloc_<name>` with the
//! mixed-site span ([`local`]). The span keeps them apart from the user's
//! local variables, but not from constants and unit structs in scope: a
//! binding pattern that names one of those is read as that item, whatever
//! the span; the prefix keeps clear of those (`const frame: …` in the user's
//! module would otherwise turn the parameter `frame` into a constant pattern).
//!
//! The forwarding impls keep macro spans from end to end, so rustc's
//! `unsafe_code` lint does not see their `unsafe`: the promise is made by the
//! field's own impl, and a crate under `#![forbid(unsafe_code)]` can derive
//! them. The impls of `unsafe tagged(…)` are the user's promise, and rustc
//! reports `unsafe_code` at the span of the whole `unsafe impl` item, from its
//! `unsafe` to its closing brace, dropping the lint when that span comes from
//! a macro (a span joining a user token to a macro token counts as the
//! macro's). So both ends carry the span of the user's `tagged`, and a crate
//! under `#![forbid(unsafe_code)]` or `#![deny(unsafe_code)]` is told about
//! the promise. The span is that of `tagged`, not of the `unsafe` before it:
//! clippy's `undocumented_unsafe_blocks` takes an `unsafe impl` whose source
//! text does not start with `unsafe` for macro output and leaves it alone,
//! where it would otherwise ask for a `// SAFETY:` comment it can never find
//! (the comment would have to sit between the type and its own attribute).
//! So the impls need no `#[allow]` of that lint, which a crate that forbids
//! it would reject (E0453).

use proc_macro2::{Delimiter, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::{DeriveInput, Ident};

use crate::ast::Input;
use crate::ctxt::Errors;
use crate::generics::{impl_params, where_clause};
use crate::tokens::group;
use crate::valid::{self, Forward, Impls, StandIn, TaggedPlan, Target};

/// The whole derive: parse, check, generate; after an error, the errors and
/// stand-in impls so that uses of the type do not add errors of their own.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = Input::from_syn(input, &mut errors);
    let plan = valid::check(&parsed, &mut errors);
    let p = &plan.private;
    let mut out = errors.into_compile_errors();
    out.extend(match &plan.impls {
        Impls::Struct(forward, target) => forward_struct(&parsed, forward, target, p),
        Impls::Enum(forward, targets) => forward_enum(&parsed, forward, targets, p),
        Impls::Tagged(tagged) => tagged_impls(&parsed, tagged, p),
        Impls::StandInForward(forward) => stand_in_forwarding(&parsed, forward, p),
        Impls::StandIn(stand_in) => stand_in_impls(&parsed, stand_in, p),
    });
    out
}

/// A generated local variable or parameter, `__framealloc_<name>`.
fn local(name: &str) -> Ident {
    Ident::new(&format!("__framealloc_{name}"), Span::mixed_site())
}

/// The bodies of `allocate_frame` and `deallocate_frame` on the allocator of
/// type `ty` reached by `access` after the statement `lock`.
fn forwarding_calls(
    p: &TokenStream,
    s: &Ident,
    ty: &TokenStream,
    (lock, access): (TokenStream, TokenStream),
) -> (TokenStream, TokenStream) {
    let frame = local("frame");
    (
        quote! {
            #lock
            <#ty as #p::FrameAllocator<#s>>::allocate_frame(#access)
        },
        quote! {
            #lock
            unsafe { <#ty as #p::FrameDeallocator<#s>>::deallocate_frame(#access, #frame) }
        },
    )
}

fn forward_struct(
    input: &Input,
    forward: &Forward,
    target: &Target,
    p: &TokenStream,
) -> TokenStream {
    let Target { member, reach, .. } = target;
    if forward.shared {
        let ty = &reach.allocator;
        let s = &forward.page_size;
        let bodies = shared_bodies(
            |trait_name, method, args| quote!(<#ty as #p::#trait_name<#s>>::#method(&self.#member, #args)),
        );
        let impls = shared_impls(input, p, forward, true, &bodies);
        return checked(forward, impls, [target], p);
    }
    let place = quote!(self.#member);
    let access = reach.access(&place, &place, &local("guard"));
    let (allocate, deallocate) = forwarding_calls(p, &forward.page_size, &reach.allocator, access);
    let impls = forwarding_impls(input, p, forward, true, &allocate, &deallocate);
    checked(forward, impls, [target], p)
}

fn forward_enum(
    input: &Input,
    forward: &Forward,
    targets: &[(&Ident, Target)],
    p: &TokenStream,
) -> TokenStream {
    let allocator = local("allocator");
    if forward.shared {
        let s = &forward.page_size;
        let bodies = shared_bodies(|trait_name, method, args| {
            if targets.is_empty() {
                return quote!(match *self {});
            }
            let arms = targets
                .iter()
                .map(|(variant, Target { member, reach, .. })| {
                    let ty = &reach.allocator;
                    quote! {
                        Self::#variant { #member: #allocator, .. } =>
                            <#ty as #p::#trait_name<#s>>::#method(#allocator, #args),
                    }
                });
            quote!(match self { #(#arms)* })
        });
        let impls = shared_impls(input, p, forward, true, &bodies);
        return checked(forward, impls, targets.iter().map(|(_, target)| target), p);
    }
    let guard = local("guard");
    let (allocate, deallocate) = if targets.is_empty() {
        (quote!(match *self {}), quote!(match *self {}))
    } else {
        let mut allocate_arms = Vec::new();
        let mut deallocate_arms = Vec::new();
        for (variant, Target { member, reach, .. }) in targets {
            let pattern = quote!(Self::#variant { #member: #allocator, .. });
            let access = if reach.derefs == 0 && reach.lock.is_none() {
                (TokenStream::new(), allocator.to_token_stream())
            } else {
                reach.access(&quote!(*#allocator), &allocator.to_token_stream(), &guard)
            };
            let (allocate, deallocate) =
                forwarding_calls(p, &forward.page_size, &reach.allocator, access);
            allocate_arms.push(quote!(#pattern => { #allocate }));
            deallocate_arms.push(quote!(#pattern => { #deallocate }));
        }
        (
            quote!(match self { #(#allocate_arms)* }),
            quote!(match self { #(#deallocate_arms)* }),
        )
    };
    let impls = forwarding_impls(input, p, forward, true, &allocate, &deallocate);
    checked(forward, impls, targets.iter().map(|(_, target)| target), p)
}

/// The name of the constant holding the field check that bound `index` of
/// the forwarding impls goes through.
fn check_name(index: usize) -> Ident {
    Ident::new(
        &format!("__FRAMEALLOC_FIELD_CHECK_{index}"),
        Span::mixed_site(),
    )
}

/// The forwarding `impls` with the field checks of `targets`. A check that
/// a bound goes through is a named constant, and then the impls and the
/// constants sit together in an unnamed `const _` block (impls inside it
/// apply everywhere; the names stay inside).
fn checked<'t, 'a: 't>(
    forward: &Forward,
    impls: TokenStream,
    targets: impl IntoIterator<Item = &'t Target<'a>>,
    p: &TokenStream,
) -> TokenStream {
    let mut checks = TokenStream::new();
    for (index, target) in targets.into_iter().enumerate() {
        let bound = forward
            .checks
            .iter()
            .position(|check| *check == Some(index));
        checks.extend(field_check(target, bound.map(check_name), p));
    }
    if forward.checks.iter().any(Option::is_some) {
        quote! {
            const _: () = {
                #checks
                #impls
            };
        }
    } else {
        let mut out = impls;
        out.extend(checks);
        out
    }
}

/// The `FrameAllocator<S>` and `FrameDeallocator<S>` impls that forward to
/// the plan's allocator types.
fn forwarding_impls(
    input: &Input,
    p: &TokenStream,
    forward: &Forward,
    guarded: bool,
    allocate: &TokenStream,
    deallocate: &TokenStream,
) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let s = &forward.page_size;
    let generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
    let bounded = |bound| bounded(input, p, forward, guarded, &bound);
    let alloc_where = bounded(quote!(#p::FrameAllocator<#s>));
    let dealloc_where = bounded(quote!(#p::FrameDeallocator<#s>));
    let frame = local("frame");
    quote! {
        #[automatically_derived]
        unsafe impl #generics #p::FrameAllocator<#s> for #ident #ty_generics #alloc_where {
            #[inline]
            fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#s>> {
                #allocate
            }
        }

        #[automatically_derived]
        impl #generics #p::FrameDeallocator<#s> for #ident #ty_generics #dealloc_where {
            #[inline]
            unsafe fn deallocate_frame(&mut self, #frame: #p::PhysFrame<#s>) {
                #deallocate
            }
        }
    }
}

/// The `where` clause of a forwarding impl: the input's own, and `bound` on
/// each of the plan's allocator types, through its field check if `guarded`.
fn bounded(
    input: &Input,
    p: &TokenStream,
    forward: &Forward,
    guarded: bool,
    bound: &TokenStream,
) -> TokenStream {
    let bounds =
        forward
            .bounds
            .iter()
            .zip(&forward.checks)
            .enumerate()
            .map(|(index, (ty, check))| match check {
                Some(_) if guarded => {
                    let name = check_name(index);
                    quote!(<#p::Checked<#name> as #p::Select<#ty>>::Field: #bound)
                }
                _ => quote!(#ty: #bound),
            });
    where_clause(input.generics, bounds)
}

/// The bodies of the shared impls' methods, in the order of
/// [`SharedBodies`], from `call(trait, method, arguments)`, which calls the
/// method on the allocator field.
fn shared_bodies(call: impl Fn(Ident, Ident, TokenStream) -> TokenStream) -> SharedBodies {
    let name = |name: &str| Ident::new(name, Span::call_site());
    let (alloc, dealloc) = (name("SharedFrameAllocator"), name("SharedFrameDeallocator"));
    let (out, cursor, frame, frames) = (
        local("out"),
        local("cursor"),
        local("frame"),
        local("frames"),
    );
    let deallocate_frame = call(dealloc.clone(), name("deallocate_frame"), quote!(#frame));
    let deallocate_frames = call(dealloc, name("deallocate_frames"), quote!(#frames));
    SharedBodies {
        allocate_frame: call(alloc.clone(), name("allocate_frame"), TokenStream::new()),
        allocate_frames: call(alloc.clone(), name("allocate_frames"), quote!(#out)),
        allocate_frames_near: call(alloc, name("allocate_frames_near"), quote!(#cursor, #out)),
        deallocate_frame: quote!(unsafe { #deallocate_frame }),
        deallocate_frames: quote!(unsafe { #deallocate_frames }),
    }
}

/// The bodies of the five methods of `SharedFrameAllocator` and
/// `SharedFrameDeallocator`.
struct SharedBodies {
    allocate_frame: TokenStream,
    allocate_frames: TokenStream,
    allocate_frames_near: TokenStream,
    deallocate_frame: TokenStream,
    deallocate_frames: TokenStream,
}

/// For fields marked `shared`: `SharedFrameAllocator<S>` and
/// `SharedFrameDeallocator<S>` for the type, forwarding every method
/// (the batch methods too, so the field's own batch code runs), and
/// `FrameAllocator<S>` and `FrameDeallocator<S>` for `&Type`, so that a
/// shared reference is usable wherever `x86_64` wants an allocator (as
/// `SharedView::new(&value)` is). The reference impls are allowed in the
/// user's crate: `&` is a fundamental type and the type is local.
fn shared_impls(
    input: &Input,
    p: &TokenStream,
    forward: &Forward,
    guarded: bool,
    bodies: &SharedBodies,
) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let s = &forward.page_size;
    let generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
    let alloc_where = bounded(
        input,
        p,
        forward,
        guarded,
        &quote!(#p::SharedFrameAllocator<#s>),
    );
    let dealloc_where = bounded(
        input,
        p,
        forward,
        guarded,
        &quote!(#p::SharedFrameDeallocator<#s>),
    );
    let (out, cursor, frame, frames) = (
        local("out"),
        local("cursor"),
        local("frame"),
        local("frames"),
    );
    let SharedBodies {
        allocate_frame,
        allocate_frames,
        allocate_frames_near,
        deallocate_frame,
        deallocate_frames,
    } = bodies;
    let slots = quote!(&mut [#p::core::mem::MaybeUninit<#p::PhysFrame<#s>>]);
    let option = quote!(#p::core::option::Option<#p::PhysFrame<#s>>);
    let this = quote!(#ident #ty_generics);
    quote! {
        #[automatically_derived]
        unsafe impl #generics #p::SharedFrameAllocator<#s> for #this #alloc_where {
            #[inline]
            fn allocate_frame(&self) -> #option {
                #allocate_frame
            }

            #[inline]
            fn allocate_frames(&self, #out: #slots) -> usize {
                #allocate_frames
            }

            #[inline]
            fn allocate_frames_near(&self, #cursor: &mut usize, #out: #slots) -> usize {
                #allocate_frames_near
            }
        }

        #[automatically_derived]
        impl #generics #p::SharedFrameDeallocator<#s> for #this #dealloc_where {
            #[inline]
            unsafe fn deallocate_frame(&self, #frame: #p::PhysFrame<#s>) {
                #deallocate_frame
            }

            #[inline]
            unsafe fn deallocate_frames(&self, #frames: &[#p::PhysFrame<#s>]) {
                #deallocate_frames
            }
        }

        #[automatically_derived]
        unsafe impl #generics #p::FrameAllocator<#s> for &#this #alloc_where {
            #[inline]
            fn allocate_frame(&mut self) -> #option {
                <#this as #p::SharedFrameAllocator<#s>>::allocate_frame(*self)
            }
        }

        #[automatically_derived]
        impl #generics #p::FrameDeallocator<#s> for &#this #dealloc_where {
            #[inline]
            unsafe fn deallocate_frame(&mut self, #frame: #p::PhysFrame<#s>) {
                unsafe { <#this as #p::SharedFrameDeallocator<#s>>::deallocate_frame(*self, #frame) }
            }
        }
    }
}

/// A compile-time check that a concrete field type is a frame allocator for
/// some page size, reported at the field's type: the constant `name` (which
/// is 0 when the check passes) if given, else an unnamed one.
fn field_check(target: &Target, name: Option<Ident>, p: &TokenStream) -> TokenStream {
    let Some(ty) = &target.probe else {
        return TokenStream::new();
    };
    let mut field_tokens = target.ty.to_token_stream().into_iter();
    let first = field_tokens
        .next()
        .map_or_else(Span::call_site, |t| t.span());
    let last = field_tokens.last().map_or(first, |t| t.span());
    let probe = local("probe");
    let (probe_type, probe_traits, require) = if target.shared.is_some() {
        (
            quote!(SharedFieldProbe),
            quote!(shared_probe),
            quote!(require_shared_allocator),
        )
    } else {
        (quote!(FieldProbe), quote!(probe), quote!(require_allocator))
    };
    // The probe's method call is the argument an unmet bound is reported
    // at: its receiver's parentheses carry the span of the field type's
    // first token and its argument list that of the last, so the error
    // underlines the whole field type. The probe traits are glob-imported in
    // an inner block that holds none of the user's tokens, so they shadow
    // none of the user's names in the field type.
    let receiver = group(Delimiter::Parenthesis, quote!(&&&#probe), first);
    let no_arguments = group(Delimiter::Parenthesis, TokenStream::new(), last);
    let check = quote! {
        let _ = || {
            let #probe = #p::#probe_type::<#ty>::NEW;
            {
                use #p::#probe_traits::*;
                #p::#require(&#probe, #receiver.probe #no_arguments);
            }
        };
    };
    name.map_or_else(
        || quote!(const _: () = { #check };),
        |name| quote!(const #name: usize = { #check 0 };),
    )
}

fn tagged_impls(input: &Input, plan: &TaggedPlan, p: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let generics = impl_params(input.generics, None);
    let where_clause = where_clause(input.generics, None);
    let TaggedPlan {
        unsafe_span,
        method,
        method_span,
        tag,
        default,
        sizes,
        allow,
    } = plan;
    let allow = allow.as_ref().map(|lint| quote!(#[allow(#lint)]));
    let tag_local = local("tag");
    // `self` is resolved like a local: it must keep the hygiene of the
    // `&mut self` declared by the generated method, even where the call
    // around it is located at a method name passed through `macro_rules!`.
    let self_value = syn::Token![self](Span::call_site().located_at(*method_span));
    let unsafe_token = syn::Token![unsafe](*unsafe_span);
    // The user's promise: `unsafe` and the braces at the user's `tagged`.
    let promised = |trait_path: TokenStream, items: TokenStream| {
        let body = group(Delimiter::Brace, items, *unsafe_span);
        quote! {
            #[automatically_derived]
            #allow
            #unsafe_token impl #generics #trait_path for #ident #ty_generics #where_clause #body
        }
    };
    let mut out = TokenStream::new();
    for size in sizes {
        let size = size.to_type(p);
        // Spanned at the method name, where a wrong signature is reported.
        let call = quote_spanned! {*method_span=>
            #p::allocate_with::<Self, Self::Tag, #size, _>(#method, #self_value, #tag_local)
        };
        out.extend(promised(
            quote!(#p::TaggedFrameAllocator<#size>),
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
        ));
        if let Some(default) = default {
            out.extend(promised(
                quote!(#p::FrameAllocator<#size>),
                quote! {
                    #[inline]
                    fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                        <Self as #p::TaggedFrameAllocator<#size>>::allocate_tagged(self, #default)
                    }
                },
            ));
        }
    }
    out
}

/// After an error, for a type whose allocator fields are known: the
/// forwarding impls with their real bounds, and bodies that never run (the
/// crate does not compile).
fn stand_in_forwarding(input: &Input, forward: &Forward, p: &TokenStream) -> TokenStream {
    let frame = local("frame");
    let never = quote!(#p::core::unreachable!());
    if forward.shared {
        let bodies = shared_bodies(|_, _, args| {
            quote! {
                let _ = (#args);
                #never
            }
        });
        return shared_impls(input, p, forward, false, &bodies);
    }
    let deallocate = quote! {
        let _ = #frame;
        #never
    };
    forwarding_impls(input, p, forward, false, &never, &deallocate)
}

/// After an error: impls never run (the crate does not compile).
fn stand_in_impls(input: &Input, stand_in: &StandIn, p: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let plain_generics = impl_params(input.generics, None);
    let where_clause = where_clause(input.generics, None);
    let frame = local("frame");
    let tag_local = local("tag");
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
    let (tag, sizes) = match stand_in {
        StandIn::AnySize(s) => {
            let generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
            return plain(&s.to_token_stream(), &generics);
        }
        StandIn::Tagged(tag, sizes) => (tag, sizes),
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
