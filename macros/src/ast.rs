//! The parsed model of a `#[derive(FrameAllocator)]` input.
//!
//! It borrows from `syn`'s tree and records attributes already parsed, but
//! decides nothing: which field is the allocator is [`crate::valid`]'s job.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Member, Type};

use crate::attr::{self, Container, FieldMarker};
use crate::ctxt::Errors;

/// The derive's input.
pub(crate) struct Input<'a> {
    /// The whole input, for choosing generated names it does not use.
    pub(crate) source: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) attrs: Container,
    pub(crate) shape: Shape<'a>,
}

/// What kind of type it is.
pub(crate) enum Shape<'a> {
    Struct(Vec<Field<'a>>),
    Enum(Vec<Variant<'a>>),
    /// A union, with the span of the `union` keyword.
    Union(Span),
}

/// An enum variant.
pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) fields: Vec<Field<'a>>,
}

/// A field of the struct or of a variant.
pub(crate) struct Field<'a> {
    pub(crate) member: Member,
    pub(crate) ty: &'a Type,
    /// `#[frame_allocator]` on it, if written.
    pub(crate) marker: Option<FieldMarker>,
}

impl<'a> Input<'a> {
    /// Reads the input, reporting malformed attributes to `errors`.
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::container(&input.attrs, errors);
        let shape = match &input.data {
            Data::Struct(data) => Shape::Struct(fields(&data.fields, errors)),
            Data::Enum(data) => Shape::Enum(
                data.variants
                    .iter()
                    .map(|variant| {
                        attr::reject_on_variant(&variant.attrs, errors);
                        Variant {
                            ident: &variant.ident,
                            fields: fields(&variant.fields, errors),
                        }
                    })
                    .collect(),
            ),
            Data::Union(data) => Shape::Union(data.union_token.span()),
        };
        Input {
            source: input,
            ident: &input.ident,
            generics: &input.generics,
            attrs,
            shape,
        }
    }
}

fn fields<'a>(fields: &'a Fields, errors: &mut Errors) -> Vec<Field<'a>> {
    fields
        .iter()
        .zip(fields.members())
        .map(|(field, member)| Field {
            member,
            ty: &field.ty,
            marker: attr::field_marker(&field.attrs, errors),
        })
        .collect()
}

impl Field<'_> {
    /// How to name the field in a message: `inner` or `0`.
    pub(crate) fn name(&self) -> String {
        match &self.member {
            Member::Named(ident) => ident.to_string(),
            Member::Unnamed(index) => index.index.to_string(),
        }
    }
}
