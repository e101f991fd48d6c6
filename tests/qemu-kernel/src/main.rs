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
mod firmware;
mod libc;
mod probe;
mod serial;
mod smp;
mod x86_table;

use core::panic::PanicInfo;

use framealloc::paging::{Mmu, PcidEnabled, RecursivePageTable};
use framealloc::x86_64::PhysAddr;
use framealloc::x86_64::registers::control::{Cr4, Cr4Flags};
use framealloc::x86_64::structures::paging::PageTableIndex;
use scenarios::{
    FRAMES_BASE, Frames, MAX_FRAMES, OURS_REGION, Ours, Platform, RECURSIVE_INDEX, X86_64_REGION,
};

use probe::Probes;
use serial::{Exit, Serial, exit};

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) passed: u32,
    pub(crate) failed: u32,
    pub(crate) observed: u32,
}

/// Runs every scenario on `platform` and reports each on the serial port.
/// Scenarios named in `observe_only` are reported but do not decide the run.
fn run<P: Platform>(
    platform: &mut P,
    frames: &mut Frames,
    first_region: u64,
    observe_only: &[&str],
    tally: &mut Tally,
) {
    let name = platform.name();
    scenarios::run_all(platform, frames, first_region, |scenario, outcome| {
        let verdict = match (outcome, observe_only.contains(&scenario)) {
            (_, true) => {
                tally.observed += 1;
                "OBSERVED"
            }
            (Ok(_), false) => {
                tally.passed += 1;
                "PASS"
            }
            (Err(_), false) => {
                tally.failed += 1;
                "FAIL"
            }
        };
        match outcome {
            Ok(remark) => println!("SCENARIO {name} {scenario} {verdict} ok {remark}"),
            Err(failure) => println!("SCENARIO {name} {scenario} {verdict} {failure}"),
        }
    });
}

/// Entered from the boot trampoline in long mode, interrupts off.
extern "C" fn kernel_main() -> ! {
    Serial::init();
    println!("BOOT framealloc test kernel");
    cpu::init();
    // `-append firmware-map`: the firmware-map boot instead of the scenarios.
    if firmware::requested() {
        firmware::run();
    }
    // `-append smp` (with `-smp 2`): the second CPU and the TLB shootdown.
    if smp::requested() {
        smp::run();
    }
    // Global pages on: a CR3 reload now keeps `GLOBAL` translations, so the
    // scenarios see whether each flush drops the global ones it must.
    // SAFETY: paging is on; setting PGE only lets `GLOBAL` leaves survive
    // CR3 reloads (and flushes the TLB once); no table has `GLOBAL` yet.
    unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::PAGE_GLOBAL)) };
    if !Cr4::read().contains(Cr4Flags::PAGE_GLOBAL) {
        println!("FATAL CR4.PGE did not stick");
        exit(Exit::Failed);
    }
    println!("CR4 PGE=1");
    println!("PCIDE {}", mmu_under_pcide());

    // SAFETY: QEMU is started with 320 MiB of RAM; the 256 MiB from
    // FRAMES_BASE (32 MiB) hold nothing of the kernel, which lies below.
    let mut frames = unsafe { Frames::new(PhysAddr::new(FRAMES_BASE), MAX_FRAMES) };
    let mut tally = Tally::default();

    // SAFETY: ring 0, 4-level paging, and the trampoline made entry
    // RECURSIVE_INDEX of the active level-4 table point to itself; from here
    // on only the table values below change the page tables, one at a time.
    let mmu = match unsafe { Mmu::new() } {
        Ok(mmu) => mmu,
        Err(error) => {
            println!("FATAL Mmu::new refused the CPU: {error}");
            exit(Exit::Failed);
        }
    };
    match RecursivePageTable::new(mmu, PageTableIndex::new(RECURSIVE_INDEX)) {
        Ok(table) => {
            let mut ours = Ours::<_, Probes>::new(table, "qemu/ours");
            run(&mut ours, &mut frames, OURS_REGION, &[], &mut tally);
        }
        Err(error) => {
            println!("FATAL framealloc's RecursivePageTable::new refused the tables: {error}");
            exit(Exit::Failed);
        }
    }

    // SAFETY: as above; framealloc's table is gone, this one takes over.
    let mut x86 = unsafe { x86_table::X86Table::new(RECURSIVE_INDEX) };
    run(
        &mut x86,
        &mut frames,
        X86_64_REGION,
        &[
            "reclaim_then_remap",
            "reclaim_invalidates_table_addresses",
            "global_parent_flags_stay_in_their_space",
            "unmap_under_read_only_parent",
            // framealloc's address spaces; `x86_64`'s table has none.
            "space_build_switch_destroy",
            "space_slot_reused_for_another_space",
            "space_bad_recursive_entry_refused",
        ],
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

/// What `Mmu::new` does with CR4.PCIDE set: `refused` is the documented
/// outcome. PCIDE is turned on for the call only (CR3's PCID bits are 0, as
/// the boot code left them) and off again.
fn mmu_under_pcide() -> &'static str {
    // CPUID leaf 1, ECX bit 17: PCID supported.
    let pcid = core::arch::x86_64::__cpuid(1).ecx & (1 << 17) != 0;
    if !pcid {
        return "unsupported";
    }
    // SAFETY: ring 0, long mode, CR3[11:0] = 0: setting PCIDE is allowed and
    // changes no translation; nothing runs between the two writes that
    // depends on PCIDs.
    unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::PCID)) };
    // SAFETY: the value is dropped at once, never used to access tables.
    let result = unsafe { Mmu::new() };
    // SAFETY: as above; clearing PCIDE with PCID 0 active is allowed.
    unsafe { Cr4::update(|flags| flags.remove(Cr4Flags::PCID)) };
    match result {
        Err(PcidEnabled) => "refused",
        Ok(_) => "accepted",
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("PANIC {info}");
    exit(Exit::Failed)
}
