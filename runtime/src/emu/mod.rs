//! An emulated x86_64 MMU with a TLB that goes stale like hardware, for
//! testing page-table code on the host.
//!
//! Kernel code that edits page tables has two classic bugs that a unit test
//! on the host never sees: an entry written wrongly (wrong frame, flags,
//! level) and a TLB entry not invalidated after a change. On hardware the
//! second shows up much later as a read of the wrong memory. This module
//! makes both visible in an ordinary `cargo test`:
//!
//! - [`PhysMemory`]: sparse 4 KiB frames over the full 52-bit physical
//!   address space; untouched memory reads as zeros.
//! - [`walk`]: the four-level page walk of x86_64 hardware: present,
//!   writable, user and no-execute bits combined over all levels; 1 GiB and
//!   2 MiB pages; reserved-bit and canonical-address checks. A recursive
//!   entry works with no special case, as it does on the CPU.
//! - [`Machine`]: memory, CR3, a TLB and paging-structure caches. Every
//!   virtual access goes through the TLB, which caches a translation on
//!   first use and keeps it, stale, until [`Machine::invlpg`],
//!   [`Machine::flush_all`] or [`Machine::set_cr3`]; walks set accessed and
//!   dirty bits and start below cached non-leaf entries, as the CPU's do.
//!   [`Counters`] record hits, misses and flushes, so a test can catch
//!   needless flushes as well as missing ones.
//! - [`CpuConfig`]: which CPU is emulated (MAXPHYADDR, 1 GiB pages,
//!   EFER.NXE) and which caches are modelled, so a test can ask whether code
//!   works on a smaller CPU than the default.
//! - [`Cpus`]: several CPUs over one physical memory, each with its own CR3,
//!   TLB and caches, so a test can change a table on one CPU and read on
//!   another; its [`OtherCpus`] implements
//!   [`Shootdown`](crate::paging::Shootdown) for TLB-shootdown tests.
//! - [`PageFault`]: what the CPU would raise instead of touching memory,
//!   naming the address, the access and the level where the walk stopped.
//!   Whatever the tables contain, walks and virtual accesses return a value
//!   and never panic.
//!
//! `Machine` implements [`Backend`](crate::paging::Backend), so page-table
//! code written against that trait runs on it unchanged, its table accesses
//! going through the TLB at the tables' recursive addresses. A fault there
//! means the code used a recursive address that is not mapped (a kernel
//! crash on hardware), so the backend panics with the fault's text. Code of
//! your own can use [`Machine::read_u64`]/[`Machine::write_u64`] at
//! recursive addresses the same way (getting the fault as a value), or edit
//! tables by physical address through [`Machine::memory_mut`].
//!
//! # Model
//!
//! CR0.WP and CR4.PGE are on; SMEP, SMAP, protection keys, PCIDs and 5-level
//! paging are off. By default ([`CpuConfig::DEFAULT`]) EFER.NXE is on, 1 GiB
//! pages are supported and physical addresses have 52 bits; a narrower
//! [`CpuConfig`] makes the entries such a CPU refuses fault with
//! [`FaultCause::ReservedBits`]: address bits at or above MAXPHYADDR, the
//! huge-page bit at level 3 without 1 GiB pages, bit 63 without EFER.NXE.
//!
//! Following the Intel SDM (vol. 3, 4.8 and 4.10):
//!
//! - **Accessed and dirty bits.** A walk that fills the TLB sets the accessed
//!   bit in every entry it reads from memory, and on a write the dirty bit in
//!   the leaf. A TLB hit sets nothing, except that a write through a cached
//!   translation whose dirty bit is clear walks the tables again (and so
//!   sees them as they are now). A walk that faults sets nothing.
//!   [`Machine::walk`] reports the bits in its flags without storing them.
//! - **TLB.** Unbounded (nothing is evicted behind your back); it caches leaf
//!   translations with their combined rights. `GLOBAL` ones survive CR3
//!   writes and [`Machine::flush_all`]; [`Machine::flush_global`] (a CR4.PGE
//!   toggle) drops them too.
//! - **Paging-structure caches.** Each successful walk caches the present
//!   level-4, -3 and -2 table pointers it read (the PML4E, PDPTE and PDE
//!   caches, keyed by the address bits that select them, with the rights
//!   combined down to them). A later walk starts below the lowest cached
//!   entry for its address, so a change to a present non-leaf entry is not
//!   seen by addresses walked through the cached copy. `invlpg` of *any*
//!   address, a CR3 write and either flush drop every cached entry; global
//!   pages do not apply to them.
//! - **Faults.** A page fault drops the TLB and paging-structure-cache
//!   entries for its address, so a retried access walks afresh (a fault
//!   raised by stale cached rights is followed by a successful retry, as on
//!   hardware).
//!
//! [`Machine::set_paging_structure_caches`] and
//! [`CpuConfig::with_accessed_dirty`] switch those two parts of the model
//! off, for a test that needs the older, more forgiving behaviour (or
//! byte-exact tables).
//!
//! # Example
//!
//! Map one page by writing the tables by hand, read through it, change the
//! mapping, and see the stale TLB entry until `invlpg`:
//!
//! ```
//! use framealloc::emu::{Access, Machine};
//! use framealloc::x86_64::structures::paging::{PageTableFlags as Flags, PageTableIndex, PhysFrame};
//! use framealloc::x86_64::{PhysAddr, VirtAddr};
//!
//! let frame = |addr| PhysFrame::containing_address(PhysAddr::new(addr));
//! let index = PageTableIndex::new;
//! let table = (Flags::PRESENT | Flags::WRITABLE).bits();
//!
//! // Level-4 table at 0x1000, recursive through entry 510.
//! let mut machine = Machine::with_recursive_table(index(510), frame(0x1000))?;
//! // Map 0x40_0000 (indices 0, 0, 2, 0) to frame 0x10_0000.
//! let memory = machine.memory_mut();
//! memory.write_entry(frame(0x1000), index(0), 0x2000 | table);
//! memory.write_entry(frame(0x2000), index(0), 0x3000 | table);
//! memory.write_entry(frame(0x3000), index(2), 0x4000 | table);
//! memory.write_entry(frame(0x4000), index(0), 0x10_0000 | table);
//! memory.write_u64(PhysAddr::new(0x10_0000), 1111)?;
//! memory.write_u64(PhysAddr::new(0x20_0000), 2222)?;
//!
//! let page = VirtAddr::new(0x40_0000);
//! assert_eq!(machine.read_u64(page)?, 1111); // walks and caches the translation
//!
//! // Remap the page to 0x20_0000, but forget to invalidate:
//! machine.memory_mut().write_entry(frame(0x4000), index(0), 0x20_0000 | table);
//! assert_eq!(machine.read_u64(page)?, 1111); // stale, as on hardware
//! assert_eq!(machine.walk(page, Access::KERNEL_READ)?.frame, PhysAddr::new(0x20_0000));
//!
//! machine.invlpg(page);
//! assert_eq!(machine.read_u64(page)?, 2222);
//!
//! // Page tables are visible at their recursive addresses: the level-1
//! // table (indices 510, 0, 0, 2) holds the entry just written, with the
//! // accessed bit the last walk set in it.
//! let level_1 = VirtAddr::new(0xffff_ff00_0000_2000);
//! assert_eq!(machine.read_u64(level_1)?, 0x20_0000 | table | Flags::ACCESSED.bits());
//!
//! let counters = machine.counters();
//! assert_eq!((counters.tlb_misses, counters.tlb_hits, counters.invlpg), (3, 1, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod config;
mod cpus;
mod fault;
mod hash;
mod machine;
mod memory;
mod mmu;
mod psc;
mod tlb;

pub use config::{CpuConfig, InvalidMaxPhysAddr};
pub use cpus::{Cpus, NoCpus, OtherCpus};
pub use fault::{Access, AccessKind, FaultCause, PageFault, Privilege};
pub use machine::{Counters, Machine};
pub use memory::{PhysMemory, PhysRangeError};
pub use mmu::{LeafSize, Translation, walk, walk_with_config};
