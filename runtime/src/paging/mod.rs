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

#![allow(
    clippy::inline_always,
    reason = "entry accesses, address arithmetic, walks and the fast paths are a few \
              instructions each and must inline into every operation"
)]

mod addr;
pub mod backend;
mod dump;
mod entry;
mod flush;
mod hardware;
mod map;
mod range;
mod reclaim;
mod runs;
mod shootdown;
mod single;
mod size;
mod space;
mod table;
mod tables;
mod walk;
mod x86_64_impls;

pub use backend::Backend;
pub use dump::{Dump, Mapping, Mappings};
pub use flush::{FLUSH_ALL_THRESHOLD, Flush, FlushScope, RangeFlush};
pub use hardware::{Mmu, NoFlushMmu, PcidEnabled};
pub use map::MaxPageSize;
pub use range::RangeError;
pub use shootdown::{Gather, Invalidations, MAX_RUNS, PageRun, Shootdown, SingleCpu};
pub use size::EntrySize;
pub use space::{AddressSpace, EntrySet, InactiveSpace, SlotBackend, SpaceError, SwitchSpace};
#[cfg(feature = "emu")]
pub(crate) use table::check_recursive_index;
pub use table::{InvalidRecursiveTable, RecursivePageTable};
pub use tables::{PageTableFrame, PageTables};
