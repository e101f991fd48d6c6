//! The `ui-tests` forms and pass cases again, in an edition-2021 crate.
//!
//! trybuild compiles each case with the edition of the package that runs it,
//! so this package runs the same files as `ui-tests` under edition 2021.
#![no_std]
#![deny(warnings, missing_docs, unsafe_op_in_unsafe_fn, unused_qualifications)]
#![warn(clippy::pedantic, clippy::nursery)]
// Forbidden, not warned: the derives must not need an `#[allow]` of it.
#![forbid(clippy::undocumented_unsafe_blocks)]

// The holder forms box allocators.
extern crate alloc;

#[path = "../../src/forms.rs"]
pub mod forms;
