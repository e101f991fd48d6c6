//! The scenarios of `tests/scenarios` on the emulator (`framealloc::emu`):
//! the same steps, addresses and frames as in the QEMU kernel, on
//! framealloc's `RecursivePageTable` over an emulated MMU whose TLB stays
//! stale until invalidated. Every scenario is reported by name.

use framealloc::emu::{Machine, PageFault};
use framealloc::paging::RecursivePageTable;
use framealloc::x86_64::structures::paging::{PageTableIndex, PhysFrame};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use scenarios::{
    FRAMES_BASE, Fault, Frames, MAX_FRAMES, Memory, OURS_REGION, Ours, RECURSIVE_INDEX,
};

/// Prints a line straight to the process's standard error, which the test
/// harness does not capture: every scenario's result stays visible in a
/// plain `cargo test` run, passing or not.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Accesses through the emulated MMU.
struct Emulated;

fn fault(fault: &PageFault) -> Fault {
    Fault {
        addr: VirtAddr::new_truncate(fault.addr),
        // A non-canonical address has no page-fault error code; no
        // scenario uses one, so any value that is not a page fault's will do.
        error_code: fault.error_code().map_or(u64::MAX, |code| code.bits()),
    }
}

impl Memory<Machine> for Emulated {
    fn read_u64(machine: &mut Machine, addr: VirtAddr) -> Result<u64, Fault> {
        machine.read_u64(addr).map_err(|f| fault(&f))
    }

    fn write_u64(machine: &mut Machine, addr: VirtAddr, value: u64) -> Result<(), Fault> {
        machine.write_u64(addr, value).map_err(|f| fault(&f))
    }

    fn set_cr3(machine: &mut Machine, level_4: PhysFrame) {
        machine.set_cr3(level_4);
    }

    fn read_phys(machine: &mut Machine, addr: PhysAddr) -> u64 {
        machine.memory().read_u64(addr).expect("below 2^52")
    }

    fn write_phys(machine: &mut Machine, addr: PhysAddr, value: u64) {
        machine
            .memory_mut()
            .write_u64(addr, value)
            .expect("below 2^52");
    }
}

#[test]
fn scenarios_on_the_emulator() {
    // The level-4 table lies below the frames the scenarios allocate.
    let level_4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    let machine = Machine::with_recursive_table(PageTableIndex::new(RECURSIVE_INDEX), level_4)
        .expect("the index is neither 0 nor 511");
    let table = RecursivePageTable::new(machine, PageTableIndex::new(RECURSIVE_INDEX))
        .expect("the emulated tables are recursive at RECURSIVE_INDEX");
    let mut platform = Ours::<_, Emulated>::new(table, "emu/ours");
    // SAFETY: emulated physical memory; nothing else uses this range.
    let mut frames = Box::new(unsafe { Frames::new(PhysAddr::new(FRAMES_BASE), MAX_FRAMES) });

    let mut failures = Vec::new();
    let mut count = 0;
    scenarios::run_all(&mut platform, &mut frames, OURS_REGION, |name, outcome| {
        count += 1;
        match outcome {
            Ok(remark) => show!("emu/ours     {name:<46} PASS     ok {remark}"),
            Err(failure) => {
                show!("emu/ours     {name:<46} FAIL     {failure}");
                failures.push(format!("{name}: {failure}"));
            }
        }
    });
    assert_eq!(count, scenarios::NAMES.len(), "every scenario ran");
    // Exact: a scenario added or lost changes this number on purpose.
    assert_eq!(count, 25, "the scenario list has 25 entries");
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed on the emulator:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
