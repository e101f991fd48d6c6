//! Page-table scenarios written once and run on two machines: the QEMU test
//! kernel (a real x86_64 page walker and TLB) and `framealloc::emu` (the
//! emulated MMU). Each scenario is a plain function over a [`Platform`],
//! which supplies the page table, recoverable memory accesses and nothing
//! else; the frames come from a [`Frames`] allocator passed alongside.
//!
//! Every scenario checks *data* read through the MMU, not only the absence
//! of a crash: a missing TLB flush shows as stale data, not as a fault.
#![no_std]

mod frames;
mod list;
mod macros;
mod ours;
mod platform;
mod spaces;

pub use frames::{Frames, MAX_FRAMES};
pub use list::{NAMES, Scenario, all};
pub use ours::{Memory, Ours};

pub use platform::{Fault, PagingError, Platform, Translation};
pub use spaces::{SLOT, Spaces};

use core::fmt;

use framealloc::x86_64::VirtAddr;
use framealloc::x86_64::structures::paging::{Page, Size4KiB};

/// Why a scenario failed: what was checked, and what was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The check that did not hold.
    pub what: &'static str,
    /// What was seen instead.
    pub seen: Seen,
}

/// What a failed check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Nothing worth reporting.
    Nothing,
    /// A value (data read, a count, an index…).
    Value(u64),
    /// A page fault at this address.
    PageFault(u64),
}

impl Failure {
    /// A failure without a value.
    pub const fn new(what: &'static str) -> Self {
        Failure {
            what,
            seen: Seen::Nothing,
        }
    }

    /// A failure with the observed value.
    pub const fn with(what: &'static str, value: u64) -> Self {
        Failure {
            what,
            seen: Seen::Value(value),
        }
    }

    /// A failure because an access page-faulted.
    pub const fn fault(what: &'static str, fault: Fault) -> Self {
        Failure {
            what,
            seen: Seen::PageFault(fault.addr.as_u64()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seen {
            Seen::Nothing => f.write_str(self.what),
            Seen::Value(value) => write!(f, "{}: saw {value:#x}", self.what),
            Seen::PageFault(addr) => write!(f, "{}: page fault at {addr:#x}", self.what),
        }
    }
}

/// What a passing scenario has to say (usually nothing: `""`).
pub type Remark = &'static str;

/// The result of one scenario.
pub type Outcome = Result<Remark, Failure>;

impl<P: Platform> Scenario<P> {
    /// Runs the scenario in the level-4 region starting at `base`, then
    /// reclaims the region's page tables and checks that every frame the
    /// scenario allocated came back.
    ///
    /// # Errors
    ///
    /// The scenario's failure, or a leak.
    pub fn run_in(&self, platform: &mut P, frames: &mut Frames, base: VirtAddr) -> Outcome {
        let used = frames.used();
        let remark = (self.run)(
            platform,
            &mut Env {
                base,
                frames: &mut *frames,
            },
        )?;
        let region = Page::range_inclusive(
            Page::<Size4KiB>::containing_address(base),
            Page::containing_address(base + ((1u64 << 39) - 1)),
        );
        platform
            .reclaim(region, frames)
            .map_err(|_| Failure::new("reclaiming the region's tables failed"))?;
        match frames.used().checked_sub(used) {
            Some(0) => Ok(remark),
            Some(n) => Err(Failure::with(
                "frames leaked (after reclaiming the region)",
                n as u64,
            )),
            None => Err(Failure::new("more frames freed than allocated")),
        }
    }
}

/// Level-4 index of the recursive entry on both machines.
pub const RECURSIVE_INDEX: u16 = 510;

/// Physical memory the scenarios' [`Frames`] manage on both machines:
/// 256 MiB from 32 MiB.
pub const FRAMES_BASE: u64 = 32 << 20;

/// First level-4 region of the runs on framealloc's table (scenario `i`
/// works in region `OURS_REGION + i`).
pub const OURS_REGION: u64 = 1;

/// First level-4 region of the runs on `x86_64`'s table.
pub const X86_64_REGION: u64 = 64;

/// Runs every scenario on `platform`, scenario `i` in the level-4 region
/// `first_region + i`, and hands each name and outcome to `report`.
pub fn run_all<P: Platform>(
    platform: &mut P,
    frames: &mut Frames,
    first_region: u64,
    mut report: impl FnMut(&'static str, Outcome),
) {
    for (i, scenario) in (0u64..).zip(all::<P>()) {
        let base = VirtAddr::new((first_region + i) << 39);
        report(scenario.name, scenario.run_in(platform, frames, base));
    }
}

/// Where a scenario may work: its own 512 GiB region (one level-4 entry)
/// and the frame allocator.
pub struct Env<'a> {
    /// Start of the region (level-4 aligned); nothing else maps here.
    pub base: VirtAddr,
    /// Frames for tables and data.
    pub frames: &'a mut Frames,
}
