//! The framealloc QEMU test kernel.
//!
//! Booted by `cargo test -p tests --test qemu`: runs every scenario of the
//! `scenarios` crate on the real (QEMU) MMU, once per page-table
//! implementation, reports each result on COM1 and exits through
//! `isa-debug-exit` (0x10: every required scenario passed).
//!
//! Serial protocol, one line each:
//! `SCENARIO <platform> <name> PASS|FAIL|OBSERVED <detail>`, then
//! `SUMMARY passed=<n> failed=<n> observed=<n>`.
#![no_std]
#![no_main]

mod boot;
mod cpu;
mod libc;
mod probe;
mod serial;
mod x86_table;

use core::panic::PanicInfo;

use framealloc::x86_64::{PhysAddr, VirtAddr};
use scenarios::{Frames, Platform};

use serial::{Exit, Serial, exit};

/// First physical address handed to the scenarios' frame allocator (the
/// kernel image, its stacks and boot tables lie below).
const FRAMES_BASE: u64 = 32 << 20;

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    observed: u32,
}

/// Runs every scenario on `platform`, each in its own level-4 region
/// starting at `first_region`. Scenarios named in `observe_only` are
/// reported but do not decide the run.
fn run<P: Platform>(
    platform: &mut P,
    frames: &mut Frames,
    first_region: u64,
    observe_only: &[&str],
    tally: &mut Tally,
) {
    for (i, scenario) in (0u64..).zip(scenarios::all::<P>()) {
        let base = VirtAddr::new((first_region + i) << 39);
        let outcome = scenario.run_in(platform, frames, base);
        let observe = observe_only.contains(&scenario.name);
        let verdict = match (outcome, observe) {
            (Ok(_), false) => "PASS",
            (Err(_), false) => "FAIL",
            (_, true) => "OBSERVED",
        };
        print!("SCENARIO {} {} {verdict} ", platform.name(), scenario.name);
        match outcome {
            Ok(remark) => println!("ok {remark}"),
            Err(failure) => println!("{failure}"),
        }
        match verdict {
            "PASS" => tally.passed += 1,
            "FAIL" => tally.failed += 1,
            _ => tally.observed += 1,
        }
    }
}

/// Entered from the boot trampoline in long mode, interrupts off.
extern "C" fn kernel_main() -> ! {
    Serial::init();
    println!("BOOT framealloc test kernel");
    cpu::init();

    // SAFETY: QEMU is started with 320 MiB of RAM; [32 MiB, 288 MiB) holds
    // nothing of the kernel, which lies below 32 MiB.
    let mut frames = unsafe { Frames::new(PhysAddr::new(FRAMES_BASE), scenarios::MAX_FRAMES) };

    let mut tally = Tally::default();
    // SAFETY: the trampoline installed the recursive entry; only this
    // table value modifies the page tables from here on.
    let mut x86 = unsafe { x86_table::X86Table::new(boot::RECURSIVE_INDEX) };
    run(
        &mut x86,
        &mut frames,
        64,
        &["reclaim_then_remap"],
        &mut tally,
    );

    println!(
        "SUMMARY passed={} failed={} observed={}",
        tally.passed, tally.failed, tally.observed
    );
    exit(if tally.failed == 0 {
        Exit::Passed
    } else {
        Exit::Failed
    })
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("PANIC {info}");
    exit(Exit::Failed)
}
