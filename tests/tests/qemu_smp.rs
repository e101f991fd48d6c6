//! Two CPUs and a TLB shootdown on a real x86_64 page walker: boots the
//! QEMU test kernel with `-smp 2 -append smp` (see
//! `tests/qemu-kernel/src/smp.rs`) and checks, from what it reports on COM1,
//! that
//!
//! - the second CPU came up through the real-mode trampoline (APIC id 1) and
//!   runs on the bootstrap CPU's page tables (the same CR3);
//! - after both CPUs read a shared page and CPU 0 unmaps it and sends the
//!   shootdown IPI, CPU 1's next read page-faults (not present);
//! - without the IPI, CPU 1's read has the outcome recorded in
//!   [`NO_SHOOTDOWN`] (the stale translation still reaches the frame, which
//!   by then holds its new owner's value).
//!
//! QEMU comes from the same place as for `tests/qemu.rs`.

#[path = "qemu_host/kernel.rs"]
#[allow(
    dead_code,
    reason = "shared with tests/qemu.rs, which boots with one CPU"
)]
mod kernel;
#[path = "qemu_host/provision.rs"]
mod provision;

use std::path::Path;
use std::time::Duration;

/// Wall-clock limit of the boot (TCG may run the two vCPUs on one host
/// thread, and the machine is shared; a run takes well under a second).
const TIMEOUT: Duration = Duration::from_mins(3);

/// What CPU 1 reads after CPU 0 unmapped the shared page without a
/// shootdown, under QEMU 7.2's TCG: its TLB still maps the page, so it reads
/// the frame, which the "new owner" has rewritten (documented in the README).
const NO_SHOOTDOWN: &str = "stale read the frame's new value";

/// Prints straight to standard error, which the harness does not capture.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// What the kernel reported.
#[derive(Debug, Default)]
struct Report {
    bsp: Option<(u64, u64)>,
    ap: Option<(u64, u64)>,
    /// `(name, verdict, detail)` of each `SCENARIO qemu/smp` line.
    scenarios: Vec<(String, String, String)>,
    summary: Option<String>,
    failure: Option<String>,
}

fn value(word: Option<&str>, name: &str) -> Option<u64> {
    let text = word?.strip_prefix(name)?.strip_prefix('=')?;
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse(serial: &str) -> Report {
    let mut report = Report::default();
    for line in serial.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let cpu = || {
            Some((
                value(words.get(2).copied(), "apic_id")?,
                value(words.get(3).copied(), "cr3")?,
            ))
        };
        match words.as_slice() {
            ["SMP", "BSP", ..] => report.bsp = cpu(),
            ["SMP", "AP", ..] => report.ap = cpu(),
            ["SMP", "FAIL", ..] => report.failure = Some(line.to_owned()),
            ["SCENARIO", "qemu/smp", name, verdict, ..] => {
                let detail = words[4..].join(" ");
                report
                    .scenarios
                    .push(((*name).to_owned(), (*verdict).to_owned(), detail));
            }
            ["SUMMARY", ..] => report.summary = Some(line.to_owned()),
            _ => {}
        }
    }
    report
}

fn scenario<'a>(report: &'a Report, name: &str) -> Option<(&'a str, &'a str)> {
    report
        .scenarios
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, verdict, detail)| (verdict.as_str(), detail.as_str()))
}

/// Every way the report falls short of the two-CPU run described above.
fn check(report: &Report, exit_code: Option<i32>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(failure) = &report.failure {
        problems.push(format!("the kernel gave up: {failure}"));
    }
    match (report.bsp, report.ap) {
        (Some((bsp_id, bsp_cr3)), Some((ap_id, ap_cr3))) => {
            if bsp_id != 0 || ap_id != 1 {
                problems.push(format!("APIC ids: BSP {bsp_id}, AP {ap_id} (want 0 and 1)"));
            }
            if ap_cr3 != bsp_cr3 {
                problems.push(format!(
                    "the AP's CR3 {ap_cr3:#x} is not the BSP's {bsp_cr3:#x}"
                ));
            }
        }
        (None, _) => problems.push("no `SMP BSP` line".to_owned()),
        (_, None) => problems.push("the second CPU never reported itself up".to_owned()),
    }
    match scenario(report, "shootdown_ipi") {
        Some(("PASS", detail)) if detail.starts_with("fault not-present") => {}
        Some((verdict, detail)) => problems.push(format!(
            "shootdown_ipi: {verdict} {detail} (want: CPU 1's read faults, not present)"
        )),
        None => problems.push("no shootdown_ipi result".to_owned()),
    }
    match scenario(report, "no_shootdown") {
        Some(("OBSERVED", detail)) if detail.starts_with(NO_SHOOTDOWN) => {}
        Some((verdict, detail)) => problems.push(format!(
            "no_shootdown: {verdict} {detail}, but the recorded outcome is `{NO_SHOOTDOWN}`"
        )),
        None => problems.push("no no_shootdown result".to_owned()),
    }
    if report.summary.as_deref() != Some("SUMMARY passed=1 failed=0 observed=1") {
        problems.push(format!("summary: {:?}", report.summary));
    }
    if exit_code != Some(33) {
        problems.push(format!("QEMU exit status {exit_code:?} (want 33: passed)"));
    }
    problems
}

#[test]
fn second_cpu_and_tlb_shootdown() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent");
    let qemu = provision::qemu(target_dir).unwrap_or_else(|e| panic!("QEMU unavailable: {e}"));
    show!("qemu: {}", qemu.origin);
    let kernel =
        kernel::build(&workspace.join("tests/qemu-kernel")).unwrap_or_else(|e| panic!("{e}"));
    let run = kernel::boot_cpus(&qemu, &kernel, TIMEOUT, "320M", Some("smp"), 2)
        .unwrap_or_else(|e| panic!("{e}"));
    for line in run.serial.lines() {
        show!("  {line}");
    }
    show!(
        "qemu -smp 2: exit {:?} in {:.2?}",
        run.exit_code,
        run.elapsed
    );
    let problems = check(&parse(&run.serial), run.exit_code);
    assert!(
        problems.is_empty(),
        "{}\nserial:\n{}\nqemu stderr:\n{}",
        problems.join("\n"),
        run.serial,
        run.stderr
    );
}

/// A log as the kernel writes it when everything goes as recorded.
const GOOD: &str = "BOOT framealloc test kernel
SMP BSP apic_id=0 cr3=0x138000
SMP AP apic_id=1 cr3=0x138000
SCENARIO qemu/smp shootdown_ipi PASS fault not-present at 0x470000000000
SCENARIO qemu/smp no_shootdown OBSERVED stale read the frame's new value 0x4e45574f574e0002
SUMMARY passed=1 failed=0 observed=1
";

#[test]
fn checks_accept_the_recorded_run() {
    assert_eq!(check(&parse(GOOD), Some(33)), Vec::<String>::new());
}

#[test]
fn checks_catch_a_missing_ap_another_cr3_and_a_stale_read_after_the_shootdown() {
    let cases: &[(&str, &str, &str)] = &[
        ("SMP AP apic_id=1 cr3=0x138000\n", "", "never reported"),
        (
            "SMP AP apic_id=1 cr3=0x138000",
            "SMP AP apic_id=1 cr3=0x139000",
            "is not the BSP's",
        ),
        ("SMP AP apic_id=1", "SMP AP apic_id=2", "APIC ids"),
        (
            "shootdown_ipi PASS fault not-present at 0x470000000000",
            "shootdown_ipi FAIL stale read value 0x5348415245440001",
            "shootdown_ipi: FAIL",
        ),
        (
            "no_shootdown OBSERVED stale read the frame's new value 0x4e45574f574e0002",
            "no_shootdown OBSERVED fault not-present at 0x470000001000",
            "recorded outcome",
        ),
    ];
    for (from, to, want) in cases {
        let log = GOOD.replace(from, to);
        assert_ne!(log, GOOD, "the case `{from}` changes nothing");
        let problems = check(&parse(&log), Some(33));
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "`{to}`: want a problem with `{want}`, got {problems:?}"
        );
    }
    let problems = check(&parse(GOOD), Some(35));
    assert!(problems.iter().any(|p| p.contains("exit status")));
}
