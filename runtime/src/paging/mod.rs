//! Page tables: the [`Backend`] seam (and, as it lands, `RecursivePageTable`).

pub mod backend;

pub use backend::Backend;
