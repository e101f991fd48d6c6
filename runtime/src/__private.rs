//! Implementation details of `framealloc`'s macros. Not public API: nothing
//! here is covered by semantic versioning.
//!
//! The macros name everything through this module (or the path given with
//! `crate = …`), so a user crate needs no dependency besides `framealloc`.

use core::marker::PhantomData;

pub use crate::adapters::{from_fn, from_fns, from_state, from_state_fns};
pub use crate::alloc::shared::{SharedFrameAllocator, SharedFrameDeallocator};
pub use crate::tagged::TaggedFrameAllocator;
pub use core;
pub use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size1GiB, Size2MiB, Size4KiB,
};

/// Calls a tagged allocation method.
///
/// Written as a call through an `FnOnce` bound so that a method with the
/// wrong signature is reported as "expected `fn(&mut A, Tag) -> Option<PhysFrame<S>>`,
/// found …" at the method name in the attribute. Monomorphised and inlined:
/// it costs nothing over calling the method directly.
#[inline]
pub fn allocate_with<A, T, S, F>(method: F, allocator: &mut A, tag: T) -> Option<PhysFrame<S>>
where
    A: ?Sized,
    S: PageSize,
    F: FnOnce(&mut A, T) -> Option<PhysFrame<S>>,
{
    method(allocator, tag)
}

/// Compile-time probe: does `T` implement [`FrameAllocator`] for some page size?
///
/// The derive checks a concrete field type with
/// `(&&&FieldProbe::<T>::NEW).probe()`: method resolution picks the first of
/// the `Probe*` traits that applies (each is implemented one reference deeper),
/// and only the last, unconditional one returns [`NotAnAllocator`], which
/// [`require_allocator`] rejects with a readable message.
pub struct FieldProbe<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> FieldProbe<T> {
    /// The probe value.
    pub const NEW: Self = FieldProbe(PhantomData);
}

impl<T: ?Sized> Clone for FieldProbe<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for FieldProbe<T> {}

/// The probe traits, for a glob import: exactly one of them answers a probe,
/// and a glob import is not reported as unused when the others do not.
pub mod probe {
    pub use super::{Probe1GiB, Probe2MiB, Probe4KiB, ProbeNone};
}

/// The field type implements [`FrameAllocator`] for at least one page size.
pub struct IsAnAllocator;

/// The field type implements [`FrameAllocator`] for no page size.
pub struct NotAnAllocator;

/// First choice of the probe: 4 KiB frames.
pub trait Probe4KiB {
    /// Probes.
    fn probe(self) -> IsAnAllocator;
}

impl<T: FrameAllocator<Size4KiB> + ?Sized> Probe4KiB for &&&FieldProbe<T> {
    fn probe(self) -> IsAnAllocator {
        IsAnAllocator
    }
}

/// Second choice of the probe: 2 MiB frames.
pub trait Probe2MiB {
    /// Probes.
    fn probe(self) -> IsAnAllocator;
}

impl<T: FrameAllocator<Size2MiB> + ?Sized> Probe2MiB for &&FieldProbe<T> {
    fn probe(self) -> IsAnAllocator {
        IsAnAllocator
    }
}

/// Third choice of the probe: 1 GiB frames.
pub trait Probe1GiB {
    /// Probes.
    fn probe(self) -> IsAnAllocator;
}

impl<T: FrameAllocator<Size1GiB> + ?Sized> Probe1GiB for &FieldProbe<T> {
    fn probe(self) -> IsAnAllocator {
        IsAnAllocator
    }
}

/// Last choice of the probe: no page size at all.
pub trait ProbeNone {
    /// Probes.
    fn probe(self) -> NotAnAllocator;
}

impl<T: ?Sized> ProbeNone for FieldProbe<T> {
    fn probe(self) -> NotAnAllocator {
        NotAnAllocator
    }
}

/// Accepts only [`IsAnAllocator`]; the diagnostic is the derive's error for a
/// marked field whose type is not a frame allocator.
#[diagnostic::on_unimplemented(
    message = "`{T}` is not a frame allocator",
    label = "this field is the one `#[derive(FrameAllocator)]` forwards to",
    note = "the forwarded field must implement `FrameAllocator<S>` for at least one page size `S`",
    note = "mark the allocator field with `#[frame_allocator]`, or implement `FrameAllocator` for `{T}`"
)]
pub trait FieldIsAnAllocator<T: ?Sized> {}

impl<T: ?Sized> FieldIsAnAllocator<T> for IsAnAllocator {}

/// Type-checks the probe's verdict for field type `T`. Never called at run
/// time. The verdict is the second argument, so that the error about it
/// points at that argument, which the derive spans over the field's type.
pub const fn require_allocator<T: ?Sized, V: FieldIsAnAllocator<T>>(
    probe: &FieldProbe<T>,
    verdict: V,
) {
    let _ = probe;
    core::mem::forget(verdict);
}

/// The verdict of a field check, as a type: `Checked<CHECK>` where `CHECK`
/// is a constant whose initialiser contains the check of a concrete field
/// type (see [`require_allocator`]); it is `Checked<0>` when the check
/// type-checks.
///
/// The derive bounds its impls by `<Checked<CHECK> as Select<Field>>::Field:
/// FrameAllocator<S>` rather than `Field: FrameAllocator<S>`. For a valid
/// field the projection normalises to `Field` and the impls are exactly as
/// before. When the check fails, the constant fails to evaluate, the
/// projection becomes an error type, and rustc keeps quiet about every
/// obligation that mentions it: uses of the type report nothing beyond the
/// one error at the field.
pub struct Checked<const CHECK: usize>;

/// `Field` is `T` once the field check passed; see [`Checked`].
pub trait Select<T: ?Sized> {
    /// The field type.
    type Field: ?Sized;
}

impl<T: ?Sized> Select<T> for Checked<0> {
    type Field = T;
}

/// Compile-time probe of a field marked `#[frame_allocator(shared)]`: does
/// `T` implement [`SharedFrameAllocator`] for some page size? Used as
/// [`FieldProbe`] is, with the traits of [`shared_probe`] and
/// [`require_shared_allocator`].
pub struct SharedFieldProbe<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> SharedFieldProbe<T> {
    /// The probe value.
    pub const NEW: Self = SharedFieldProbe(PhantomData);
}

impl<T: ?Sized> Clone for SharedFieldProbe<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for SharedFieldProbe<T> {}

/// The shared probe traits, for a glob import (see [`probe`]).
pub mod shared_probe {
    pub use super::{SharedProbe1GiB, SharedProbe2MiB, SharedProbe4KiB, SharedProbeNone};
}

/// First choice of the shared probe: 4 KiB frames.
pub trait SharedProbe4KiB {
    /// Probes.
    fn probe(self) -> IsAnAllocator;
}

impl<T: SharedFrameAllocator<Size4KiB> + ?Sized> SharedProbe4KiB for &&&SharedFieldProbe<T> {
    fn probe(self) -> IsAnAllocator {
        IsAnAllocator
    }
}

/// Second choice of the shared probe: 2 MiB frames.
pub trait SharedProbe2MiB {
    /// Probes.
    fn probe(self) -> IsAnAllocator;
}

impl<T: SharedFrameAllocator<Size2MiB> + ?Sized> SharedProbe2MiB for &&SharedFieldProbe<T> {
    fn probe(self) -> IsAnAllocator {
        IsAnAllocator
    }
}

/// Third choice of the shared probe: 1 GiB frames.
pub trait SharedProbe1GiB {
    /// Probes.
    fn probe(self) -> IsAnAllocator;
}

impl<T: SharedFrameAllocator<Size1GiB> + ?Sized> SharedProbe1GiB for &SharedFieldProbe<T> {
    fn probe(self) -> IsAnAllocator {
        IsAnAllocator
    }
}

/// Last choice of the shared probe: no page size at all.
pub trait SharedProbeNone {
    /// Probes.
    fn probe(self) -> NotAnAllocator;
}

impl<T: ?Sized> SharedProbeNone for SharedFieldProbe<T> {
    fn probe(self) -> NotAnAllocator {
        NotAnAllocator
    }
}

/// Accepts only [`IsAnAllocator`]; the derive's error for a field marked
/// `#[frame_allocator(shared)]` whose type is not a shared frame allocator.
#[diagnostic::on_unimplemented(
    message = "`{T}` is not a shared frame allocator",
    label = "this field is marked `#[frame_allocator(shared)]`",
    note = "a `shared` field must implement `SharedFrameAllocator<S>` for at least one page size `S`",
    note = "for an allocator taking `&mut self`, write `#[frame_allocator]` without `shared`"
)]
pub trait FieldIsASharedAllocator<T: ?Sized> {}

impl<T: ?Sized> FieldIsASharedAllocator<T> for IsAnAllocator {}

/// Type-checks the shared probe's verdict for field type `T`; see
/// [`require_allocator`].
pub const fn require_shared_allocator<T: ?Sized, V: FieldIsASharedAllocator<T>>(
    probe: &SharedFieldProbe<T>,
    verdict: V,
) {
    let _ = probe;
    core::mem::forget(verdict);
}
