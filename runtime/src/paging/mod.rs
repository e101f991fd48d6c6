//! Page tables: [`RecursivePageTable`] over a [`Backend`].
//!
//! - [`Backend`] is the one seam through which every page-table access and
//!   every TLB invalidation goes. [`Mmu`] is the hardware backend; the
//!   emulator (`framealloc::emu`, feature `emu`) is the hosted one.
//! - [`RecursivePageTable`] maps, unmaps, updates and translates pages of
//!   every size, returns [`Flush`] tokens bound to the backend, reclaims
//!   empty tables with the TLB invalidation they need, lists its page
//!   tables ([`PageTables`]), and implements `x86_64`'s `Mapper`,
//!   `Translate` and `CleanUp` (`Mapper` on the hardware backend only).

#[allow(
    clippy::inline_always,
    reason = "address arithmetic must inline into every walk"
)]
mod addr;
pub mod backend;
mod dump;
#[allow(
    clippy::inline_always,
    reason = "entry predicates are single bit tests meant to inline into every walk"
)]
mod entry;
mod flush;
#[allow(
    clippy::inline_always,
    reason = "entry accesses are single loads and stores meant to inline into every walk"
)]
mod hardware;
#[allow(
    clippy::inline_always,
    reason = "the fast path of a map must inline into every walk"
)]
mod map;
mod range;
mod reclaim;
#[allow(
    clippy::inline_always,
    reason = "the range walker must inline into each operation"
)]
mod runs;
#[allow(
    clippy::inline_always,
    reason = "the fast paths of the single-page operations must inline into every caller"
)]
mod single;
mod size;
#[allow(
    clippy::inline_always,
    reason = "entry accesses must inline into every walk"
)]
mod table;
mod tables;
#[allow(
    clippy::inline_always,
    reason = "parent walks must inline into every operation"
)]
mod walk;
mod x86_64_impls;

pub use backend::Backend;
pub use dump::{Dump, Mapping, Mappings};
pub use flush::{FLUSH_ALL_THRESHOLD, Flush, FlushScope, RangeFlush};
pub use hardware::{Mmu, NoFlushMmu, PcidEnabled};
pub use map::MaxPageSize;
pub use range::RangeError;
pub use size::EntrySize;
#[cfg(feature = "emu")]
pub(crate) use table::check_recursive_index;
pub use table::{InvalidRecursiveTable, RecursivePageTable};
pub use tables::{PageTableFrame, PageTables};
