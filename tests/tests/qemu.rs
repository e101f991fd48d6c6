//! The scenarios on a real x86_64 page walker and TLB: builds the test
//! kernel in `tests/qemu-kernel`, finds or provisions QEMU, boots the
//! kernel under TCG and turns every scenario it reports on the serial port
//! into a visible pass/fail line.
//!
//! QEMU is taken from `$FRAMEALLOC_QEMU`, else from `PATH`, else provisioned
//! privately under `target/qemu/` from Debian's packages (nothing is
//! installed on the system). If none of that works, the test fails.

#[path = "qemu_host/kernel.rs"]
mod kernel;
#[path = "qemu_host/provision.rs"]
mod provision;

use std::path::Path;
use std::time::{Duration, Instant};

/// Prints a line straight to the process's standard error, which the test
/// harness does not capture: every scenario's result stays visible in a
/// plain `cargo test` run, passing or not.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Wall-clock limit of one boot (a normal run takes well under a second).
const TIMEOUT: Duration = Duration::from_mins(2);

/// Platforms the kernel runs every scenario on, and the scenarios whose
/// outcome on that platform is recorded rather than required, with the
/// outcome observed (and documented in the README).
const PLATFORMS: &[(&str, &[(&str, &str)])] = &[
    ("qemu/ours", &[]),
    (
        "qemu/x86_64",
        &[
            ("reclaim_then_remap", X86_64_RECLAIM_THEN_REMAP),
            (
                "reclaim_invalidates_table_addresses",
                X86_64_RECLAIM_INVALIDATES,
            ),
            (
                "global_parent_flags_stay_in_their_space",
                X86_64_GLOBAL_PARENT_FLAGS,
            ),
            ("unmap_under_read_only_parent", X86_64_READ_ONLY_PARENT),
            ("space_build_switch_destroy", NO_ADDRESS_SPACES),
            ("space_slot_reused_for_another_space", NO_ADDRESS_SPACES),
            ("space_bad_recursive_entry_refused", NO_ADDRESS_SPACES),
        ],
    ),
];

/// What `x86_64` 0.15.5's `RecursivePageTable` + `CleanUp` does on the
/// reclaim-then-remap steps under QEMU: the re-mapped page faults.
const X86_64_RECLAIM_THEN_REMAP: &str = "second round reads the swapped frames: page fault at";

/// What it does on the reclaim-invalidates-table-addresses steps: the freed
/// level-1 table stays readable through its stale recursive translation.
const X86_64_RECLAIM_INVALIDATES: &str =
    "freed level-1 table still readable at its recursive address";

/// What it does with `GLOBAL` in `map_to_with_table_flags`'s parent flags:
/// writes it into the parent entries. (That the second address space then
/// sees the first one's tables shows on the emulator only: QEMU's TCG drops
/// global translations on a CR3 write.)
const X86_64_GLOBAL_PARENT_FLAGS: &str = "a parent entry carries GLOBAL";

/// What its `unmap` does under a level-2 entry without `WRITABLE`: writing
/// the level-1 table through the read-only recursive mapping page-faults
/// (caught by the kernel and reported).
const X86_64_READ_ONLY_PARENT: &str = "unmap under a read-only level-2 entry page-faulted";

/// The address-space scenarios on `x86_64`'s table, which has no
/// inactive-space editing: they stop at their first step.
const NO_ADDRESS_SPACES: &str = "the platform has no address spaces";

struct Line<'a> {
    platform: &'a str,
    name: &'a str,
    verdict: &'a str,
    detail: &'a str,
}

fn parse(serial: &str) -> Vec<Line<'_>> {
    serial
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("SCENARIO ")?;
            let mut parts = rest.splitn(4, ' ');
            Some(Line {
                platform: parts.next()?,
                name: parts.next()?,
                verdict: parts.next()?,
                detail: parts.next().unwrap_or(""),
            })
        })
        .collect()
}

#[test]
fn scenarios_on_qemu() {
    let started = Instant::now();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent");

    let qemu = provision::qemu(target_dir).unwrap_or_else(|e| panic!("QEMU unavailable: {e}"));
    let version = qemu.version().unwrap_or_else(|e| panic!("{e}"));
    show!("qemu: {version} ({})", qemu.origin);
    let provisioned = started.elapsed();
    let building = Instant::now();
    let kernel =
        kernel::build(&workspace.join("tests/qemu-kernel")).unwrap_or_else(|e| panic!("{e}"));
    let built = building.elapsed();
    let run = kernel::boot(&qemu, &kernel, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    show!(
        "finding/provisioning QEMU: {provisioned:.2?}, kernel build: {built:.2?}, \
         boot + scenarios: {:.2?}",
        run.elapsed
    );

    let lines = parse(&run.serial);
    let mut problems = Vec::new();
    for line in &lines {
        show!(
            "{:<12} {:<46} {:<8} {}",
            line.platform,
            line.name,
            line.verdict,
            line.detail
        );
    }
    for (platform, observed) in PLATFORMS {
        for name in scenarios::NAMES {
            let Some(line) = lines
                .iter()
                .find(|l| l.platform == *platform && l.name == *name)
            else {
                problems.push(format!("{platform} {name}: not reported"));
                continue;
            };
            match observed.iter().find(|(n, _)| n == name) {
                Some((_, want)) if line.verdict != "OBSERVED" || !line.detail.starts_with(want) => {
                    problems.push(format!(
                        "{platform} {name}: observed `{}` but the documented outcome is `{want}`",
                        line.detail
                    ));
                }
                None if line.verdict != "PASS" => {
                    problems.push(format!(
                        "{platform} {name}: {} {}",
                        line.verdict, line.detail
                    ));
                }
                Some(_) | None => {}
            }
        }
    }
    // The global-page scenarios mean something only with CR4.PGE on.
    if !run.serial.lines().any(|l| l == "CR4 PGE=1") {
        problems.push("the kernel did not report CR4.PGE on".to_owned());
    }
    // The hardware backend refuses CR4.PCIDE. QEMU 7.2's TCG has no PCID
    // (the kernel then reports `unsupported`); where the CPU has it, the
    // kernel turns PCIDE on around one `Mmu::new` call, which must refuse.
    if !run
        .serial
        .lines()
        .any(|l| l == "PCIDE refused" || l == "PCIDE unsupported")
    {
        problems.push("Mmu::new did not refuse CR4.PCIDE".to_owned());
    }
    if scenarios::NAMES.len() != 25 {
        problems.push(format!("{} scenarios, not 25", scenarios::NAMES.len()));
    }
    if !run
        .serial
        .lines()
        .any(|l| l.starts_with("SUMMARY ") && l.contains(" failed=0 "))
    {
        problems.push("no SUMMARY line with failed=0".to_owned());
    }
    match run.exit_code {
        Some(33) => {}
        Some(code) => problems.push(format!("QEMU exited with {code}, not 33 (passed)")),
        None => problems.push(format!("QEMU did not finish within {TIMEOUT:?}")),
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\n--- serial log ---\n{}\n--- qemu stderr ---\n{}",
        problems.len(),
        problems.join("\n  "),
        run.serial,
        run.stderr
    );
}
