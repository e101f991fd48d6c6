//! Compile tests of the `framealloc` macros live in `tests/`; this library is empty.
