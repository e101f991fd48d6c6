//! How a derived impl reaches the allocator from the forwarded field.
//!
//! The shapes kernels hold an allocator in: the allocator itself, a
//! reference `&'a mut A` (often `&'a mut dyn FrameAllocator<Size4KiB>`), a
//! `Box<A>`, and an allocator behind a lock (`Mutex<A>`, `RefCell<A>`, a
//! per-CPU cell, or a shared reference to one of those). `x86_64` has no
//! impls for references or boxes, and the orphan rule forbids adding them, so
//! the derive dereferences these itself: `&mut A` and `Box<A>` (nested too)
//! forward to `A` with plain dereferences, which compile to nothing; a field
//! marked `#[frame_allocator(lock = …)]` is locked once per call and the
//! allocator inside the guard is used.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{GenericArgument, PathArguments, Type, TypeParamBound};

/// The path from a field to its allocator.
pub(crate) struct Reach<'a> {
    /// The allocator's type as parsed, when it is a part of the field's type.
    pub(crate) allocator_type: Option<&'a Type>,
    /// The allocator's type: the field's type with references and boxes
    /// taken off, or the locked type's last type argument.
    pub(crate) allocator: TokenStream,
    /// How many dereferences lead from the field to the allocator (without
    /// a lock), or to the lock (with one).
    pub(crate) derefs: usize,
    /// `lock = …`: the method or function that locks the field.
    pub(crate) lock: Option<&'a syn::Path>,
}

/// `Box<T>` (also as `alloc::boxed::Box<T>`, `std::boxed::Box<T>`) and, for
/// a lock, `Arc<T>`/`Rc<T>`: the `T`.
fn smart_pointer_target(ty: &Type, shared_too: bool) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    let known = last.ident == "Box" || (shared_too && (last.ident == "Arc" || last.ident == "Rc"));
    if !known {
        return None;
    }
    let mut types = type_arguments(&last.arguments);
    let first = types.next()?;
    types.next().is_none().then_some(first)
}

/// The type arguments of a path segment: `A` and `B` in `X<'a, A, B>`.
fn type_arguments(arguments: &PathArguments) -> impl DoubleEndedIterator<Item = &Type> {
    let arguments = match arguments {
        PathArguments::AngleBracketed(arguments) => Some(arguments.args.iter()),
        _ => None,
    };
    arguments.into_iter().flatten().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// `dyn Trait` behind `&'a mut` means `dyn Trait + 'a`; written alone (in a
/// `where` clause) it would mean `+ 'static`. Writes that lifetime out.
fn with_object_lifetime(ty: &Type, lifetime: Option<&syn::Lifetime>) -> TokenStream {
    match (ty, lifetime) {
        (Type::TraitObject(object), Some(lifetime))
            if !object
                .bounds
                .iter()
                .any(|bound| matches!(bound, TypeParamBound::Lifetime(_))) =>
        {
            quote!(#object + #lifetime)
        }
        _ => ty.to_token_stream(),
    }
}

/// Takes references and boxes off `ty`; `shared_too` also takes off shared
/// references, `Arc` and `Rc` (a lock is reached through those). Returns
/// the type inside, the number of dereferences, and the lifetime of the
/// innermost reference taken off, if the last step was one.
fn peel(ty: &Type, shared_too: bool) -> (&Type, usize, Option<&syn::Lifetime>) {
    let mut ty = ty;
    let mut derefs = 0;
    let mut lifetime = None;
    loop {
        ty = match ty {
            Type::Paren(inner) => &inner.elem,
            Type::Group(inner) => &inner.elem,
            Type::Reference(reference) if reference.mutability.is_some() || shared_too => {
                derefs += 1;
                lifetime = reference.lifetime.as_ref();
                &reference.elem
            }
            other => match smart_pointer_target(other, shared_too) {
                Some(target) => {
                    derefs += 1;
                    lifetime = None;
                    target
                }
                None => return (ty, derefs, lifetime),
            },
        };
    }
}

/// How to reach the allocator from a field of type `ty`, locked with `lock`
/// if given. An error message if the lock's allocator type cannot be found.
pub(crate) fn reach<'a>(ty: &'a Type, lock: Option<&'a syn::Path>) -> Result<Reach<'a>, String> {
    let Some(lock) = lock else {
        let (allocator, derefs, lifetime) = peel(ty, false);
        return Ok(Reach {
            allocator_type: Some(allocator),
            allocator: with_object_lifetime(allocator, lifetime),
            derefs,
            lock: None,
        });
    };
    let (locked, derefs, _) = peel(ty, true);
    let allocator = match locked {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
    .and_then(|last| type_arguments(&last.arguments).next_back());
    let Some(allocator) = allocator else {
        return Err(format!(
            "with `lock = …`, the field's type names the allocator as its last type argument, \
             as `Mutex<A>` and `RefCell<A>` do; `{}` has no type argument",
            locked.to_token_stream()
        ));
    };
    Ok(Reach {
        allocator_type: None,
        allocator: allocator.to_token_stream(),
        derefs,
        lock: Some(lock),
    })
}

impl Reach<'_> {
    /// `&mut` the allocator. `place` is an expression of the field's type
    /// (`self.inner`, `*variant_field`), `receiver` one a method can be
    /// called on (`self.inner`, `variant_field`), and `guard` the local that
    /// holds the lock's guard. Returns the statement that takes the lock (if
    /// any) and the expression.
    pub(crate) fn access(
        &self,
        place: &TokenStream,
        receiver: &TokenStream,
        guard: &syn::Ident,
    ) -> (TokenStream, TokenStream) {
        let stars: Vec<TokenStream> = (0..self.derefs).map(|_| quote!(*)).collect();
        match self.lock {
            None => (TokenStream::new(), quote!(&mut #(#stars)* #place)),
            Some(lock) => {
                let take = if let Some(method) = lock.get_ident() {
                    // A method name: called on the field; autoderef reaches
                    // the lock through references, boxes and `Arc`.
                    quote!(let mut #guard = #receiver.#method();)
                } else {
                    quote!(let mut #guard = #lock(&#(#stars)* #place);)
                };
                (take, quote!(&mut *#guard))
            }
        }
    }
}

/// The names of the primitive types.
const PRIMITIVES: [&str; 17] = [
    "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
];

/// Whether `ty` is a type that no crate but `x86_64` may implement
/// `FrameAllocator` for (the orphan rule): a primitive, a tuple, an array, a
/// slice, a pointer, a function pointer, `!`. Such a field is reported by
/// the derive itself, which then emits its stand-in impls, so that code
/// using the type reports nothing further.
pub(crate) fn surely_not_an_allocator(ty: &Type) -> bool {
    match ty {
        Type::Paren(inner) => surely_not_an_allocator(&inner.elem),
        Type::Group(inner) => surely_not_an_allocator(&inner.elem),
        Type::Path(path) => {
            path.qself.is_none()
                && path.path.leading_colon.is_none()
                && path.path.segments.len() == 1
                && path.path.segments[0].arguments.is_empty()
                && PRIMITIVES
                    .iter()
                    .any(|name| path.path.segments[0].ident == name)
        }
        Type::Tuple(_)
        | Type::Array(_)
        | Type::Slice(_)
        | Type::Ptr(_)
        | Type::FnPtr(_)
        | Type::Never(_) => true,
        _ => false,
    }
}
