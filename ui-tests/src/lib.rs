//! Compile tests of the `framealloc` macros.
//!
//! The trybuild suites live in `tests/`. This library compiles every form of
//! the macros ([`forms`]) in a `no_std` crate under the strictest lints: the
//! workspace lints (clippy pedantic, `missing_docs`, …) plus those below, so
//! `cargo clippy --workspace -- -D warnings` fails if generated code fires
//! a lint in a user crate.
#![no_std]
#![deny(warnings, missing_docs, unsafe_op_in_unsafe_fn, unused_qualifications)]
#![warn(clippy::pedantic, clippy::nursery)]
// Forbidden, not warned: the derives must not need an `#[allow]` of it.
#![forbid(clippy::undocumented_unsafe_blocks)]

// The holder forms box allocators.
extern crate alloc;

pub mod forms;
