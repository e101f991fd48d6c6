//! The atomics and cells of the shared allocators, swappable for `loom`'s.
//!
//! Normally these are `core`'s types. When the crate's own unit tests are
//! built with `RUSTFLAGS="--cfg loom"`, they are `loom`'s, so that the loom
//! model checks in [`atomic_bitmap`](super::atomic_bitmap) and
//! [`percpu`](super::percpu) explore every interleaving of the real code.
//! Nothing outside those tests sees the difference.

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[cfg(not(all(loom, test)))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// An `UnsafeCell` with `loom`'s closure-based access, so that loom can
/// check that no two threads reach the inside at once.
#[cfg(all(loom, test))]
pub(crate) use loom::cell::UnsafeCell;

/// An `UnsafeCell` with `loom`'s closure-based access.
#[cfg(not(all(loom, test)))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(all(loom, test)))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a raw pointer to the inside; the caller makes sure that
    /// no other access to it overlaps.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a raw pointer for reading.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
}

/// Declares a function `const` except under loom, whose atomics cannot be
/// built in a `const` context.
macro_rules! const_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(all(loom, test)))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(all(loom, test))]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_unless_loom;
