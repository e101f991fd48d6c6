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
use crate::sizes::PageSizeName;
use crate::valid::{self, Plan, TaggedPlan, Target};

/// The whole derive: parse, check, generate; on error, the errors and a
/// fallback impl so that uses of the type do not add errors of their own.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let parsed = Input::from_syn(input, &mut errors);
    let private = private_path(&parsed);
    let Some(plan) = valid::check(&parsed, &mut errors) else {
        let mut out = errors.into_compile_errors();
        out.extend(fallback(&parsed, &private));
        return out;
    };
    match plan {
        Plan::Struct(target) => forward_struct(&parsed, &target, &private),
        Plan::Enum(targets) => forward_enum(&parsed, &targets, &private),
        Plan::Tagged(tagged) => tagged_impls(&parsed, &tagged, &private),
    }
}

/// `::framealloc::__private`, or `<crate = path>::__private`.
fn private_path(input: &Input) -> TokenStream {
    let root = input
        .attrs
        .krate
        .as_ref()
        .map_or_else(|| quote!(::framealloc), ToTokens::to_token_stream);
    quote!(#root::__private)
}

/// A local name that cannot collide with the user's names.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn forward_struct(input: &Input, target: &Target, p: &TokenStream) -> TokenStream {
    let Target { member, ty } = target;
    let allocate =
        quote!(<#ty as #p::FrameAllocator<__PAGE_SIZE>>::allocate_frame(&mut self.#member));
    let frame = local("frame");
    let deallocate = quote!(unsafe {
        <#ty as #p::FrameDeallocator<__PAGE_SIZE>>::deallocate_frame(&mut self.#member, #frame)
    });
    let mut out = forwarding_impls(input, p, &[ty], &allocate, &deallocate);
    out.extend(field_check(input, ty, p));
    out
}

fn forward_enum(input: &Input, targets: &[(&Ident, Target)], p: &TokenStream) -> TokenStream {
    let allocator = local("allocator");
    let frame = local("frame");
    let types: Vec<&syn::Type> = targets.iter().map(|(_, target)| target.ty).collect();
    let (allocate, deallocate) = if targets.is_empty() {
        (quote!(match *self {}), quote!(match *self {}))
    } else {
        let patterns: Vec<TokenStream> = targets
            .iter()
            .map(|(variant, Target { member, .. })| quote!(Self::#variant { #member: #allocator, .. }))
            .collect();
        (
            quote!(match self {
                #(#patterns => <#types as #p::FrameAllocator<__PAGE_SIZE>>::allocate_frame(#allocator),)*
            }),
            quote!(match self {
                #(#patterns => unsafe {
                    <#types as #p::FrameDeallocator<__PAGE_SIZE>>::deallocate_frame(#allocator, #frame)
                },)*
            }),
        )
    };
    let mut out = forwarding_impls(input, p, &types, &allocate, &deallocate);
    for ty in types {
        out.extend(field_check(input, ty, p));
    }
    out
}

/// The `FrameAllocator<S>` and `FrameDeallocator<S>` impls that forward to
/// `fields`; `__PAGE_SIZE` in the bodies stands for the page-size parameter.
fn forwarding_impls(
    input: &Input,
    p: &TokenStream,
    fields: &[&syn::Type],
    allocate: &TokenStream,
    deallocate: &TokenStream,
) -> TokenStream {
    let s = fresh_page_size_param(input.generics);
    let allocate = replace_placeholder(allocate.clone(), &s);
    let deallocate = replace_placeholder(deallocate.clone(), &s);
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let impl_generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
    let mut unique: Vec<String> = Vec::new();
    let mut distinct = Vec::new();
    for ty in fields {
        let key = ty.to_token_stream().to_string();
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

fn replace_placeholder(tokens: TokenStream, s: &Ident) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            proc_macro2::TokenTree::Ident(ident) if ident == "__PAGE_SIZE" => {
                proc_macro2::TokenTree::Ident(s.clone())
            }
            proc_macro2::TokenTree::Group(group) => {
                let mut new = proc_macro2::Group::new(
                    group.delimiter(),
                    replace_placeholder(group.stream(), s),
                );
                new.set_span(group.span());
                proc_macro2::TokenTree::Group(new)
            }
            other => other,
        })
        .collect()
}

/// A compile-time check that a concrete field type is a frame allocator for
/// some page size, reported at the field's type. Generic field types are
/// left to the `where` bound of the impl.
fn field_check(input: &Input, ty: &syn::Type, p: &TokenStream) -> TokenStream {
    if mentions_parameters(ty.to_token_stream(), input.generics) {
        return TokenStream::new();
    }
    let span = ty.span();
    let ty = elide_lifetimes(ty.to_token_stream());
    // The check itself carries the field type's span, so that its error
    // points at the field; the import is the macro's own.
    let check = quote_spanned! {span=>
        #p::require_allocator::<#ty, _>((&&&#p::FieldProbe::<#ty>::NEW).probe())
    };
    quote! {
        const _: () = {
            let _ = || {
                use #p::probe::*;
                #check;
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
        method,
        tag,
        default,
        sizes,
    } = plan;
    let method_span = method.span();
    let method = if let Some(name) = method.get_ident() {
        quote_spanned!(method_span=> Self::#name)
    } else {
        method.to_token_stream()
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
    let mut out = TokenStream::new();
    for size in sizes {
        let size = size.to_type(p);
        // Spanned at the method name, where a wrong signature is reported.
        let call = quote_spanned! {method_span=>
            #p::allocate_with::<Self, Self::Tag, #size, _>(#method, self, #tag_local)
        };
        out.extend(quote! {
            #[automatically_derived]
            unsafe impl #impl_generics #p::TaggedFrameAllocator<#size> for #ident #ty_generics
            #where_clause
            {
                type Tag = #tag;

                #[inline]
                fn allocate_tagged(
                    &mut self,
                    #tag_local: Self::Tag,
                ) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                    #call
                }
            }
        });
        if let Some(default) = default {
            out.extend(quote! {
                #[automatically_derived]
                unsafe impl #impl_generics #p::FrameAllocator<#size> for #ident #ty_generics
                #where_clause
                {
                    #[inline]
                    fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#size>> {
                        <Self as #p::TaggedFrameAllocator<#size>>::allocate_tagged(self, #default)
                    }
                }
            });
        }
    }
    out
}

/// After an error: `FrameAllocator<S>` for every `S`, never run (the crate
/// does not compile), so that uses of the type add no errors of their own.
fn fallback(input: &Input, p: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let s = fresh_page_size_param(input.generics);
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let impl_generics = impl_params(input.generics, Some(quote!(#s: #p::PageSize)));
    let where_clause = where_clause(input.generics, None);
    quote! {
        #[automatically_derived]
        unsafe impl #impl_generics #p::FrameAllocator<#s> for #ident #ty_generics #where_clause {
            fn allocate_frame(&mut self) -> #p::core::option::Option<#p::PhysFrame<#s>> {
                #p::core::unreachable!()
            }
        }
    }
}
