//! The allocators on a real firmware memory map: boots the QEMU test kernel
//! with `-append firmware-map` at several memory sizes (one above 4 GiB, so
//! RAM is split around the PCI hole) and checks, from what the kernel
//! reports on COM1 (see `tests/qemu-kernel/src/firmware.rs`), that
//!
//! - the usable memory QEMU's E820 map reports is within the bounds of `-m`,
//!   and the normalised map keeps it less only what the kernel reserved;
//! - no frame handed out (by the bump allocator or the bitmap allocator)
//!   overlaps the kernel image, the start info, the E820 table or the
//!   command line, and every one lies in a usable region;
//! - the bitmap allocator's free count is the usable memory minus what the
//!   hand-off map marks used.
//!
//! QEMU comes from the same place as for `tests/qemu.rs` (provisioned under
//! `target/` if need be). The tables the kernel prints for people (the
//! firmware map, the change report, the normalised and hand-off maps) are
//! shown for the boot above 4 GiB.

#[path = "qemu_host/kernel.rs"]
#[allow(
    dead_code,
    reason = "shared with tests/qemu.rs, which boots with the default memory size"
)]
mod kernel;
#[path = "qemu_host/provision.rs"]
mod provision;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_mins(2);
const FRAME: u64 = 4096;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Prints straight to standard error, which the harness does not capture.
macro_rules! show {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Clone, Debug, PartialEq)]
struct Region {
    start: u64,
    end: u64,
    kind: String,
}

impl Region {
    fn usable(&self) -> bool {
        self.kind == "Usable"
    }

    fn len(&self) -> u64 {
        self.end - self.start
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

#[derive(Debug, Default)]
struct Report {
    start_info: u64,
    e820: Vec<(u64, u64, u32)>,
    reserved: Vec<(String, u64, u64)>,
    map: Vec<Region>,
    runs: Vec<Region>,
    hand_off: Vec<Region>,
    bitmap_free: Option<u64>,
    bitmap_allocs: Vec<(u64, u64)>,
    bitmap_after: Option<u64>,
    guard_faulted: bool,
    passed: bool,
}

fn hex(word: &str) -> u64 {
    u64::from_str_radix(word.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("not a hex number: {word}: {e}"))
}

fn field(word: &str, name: &str) -> u64 {
    word.strip_prefix(name)
        .and_then(|v| v.strip_prefix('='))
        .unwrap_or_else(|| panic!("expected {name}=…, got {word}"))
        .parse()
        .unwrap_or_else(|e| panic!("{word}: {e}"))
}

fn region(words: &[&str]) -> Region {
    Region {
        start: hex(words[1]),
        end: hex(words[2]),
        kind: words[3].to_owned(),
    }
}

fn parse(serial: &str) -> Report {
    let mut report = Report::default();
    for line in serial.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("START_INFO") => report.start_info = hex(words[1]),
            Some("E820") => report.e820.push((
                hex(words[1]),
                hex(words[2]),
                words[3].parse().expect("E820 type"),
            )),
            Some("RESERVE") => {
                report
                    .reserved
                    .push((words[1].to_owned(), hex(words[2]), hex(words[3])));
            }
            Some("MAP") => report.map.push(region(&words)),
            Some("RUN") => report.runs.push(region(&words)),
            Some("HANDOFF") => report.hand_off.push(region(&words)),
            Some("BITMAP") => report.bitmap_free = Some(field(words[1], "free")),
            Some("BITMAP_ALLOC") => report.bitmap_allocs.push((hex(words[1]), hex(words[2]))),
            Some("BITMAP_AFTER") => report.bitmap_after = Some(field(words[1], "free")),
            Some("GUARD") => report.guard_faulted = words.get(2) == Some(&"fault"),
            Some("FIRMWARE") => report.passed = words.get(1) == Some(&"PASS"),
            _ => {}
        }
    }
    report
}

/// Whether `line` is one of the kernel's machine-readable lines (its first
/// word is an upper-case keyword such as `MAP` or `BITMAP_ALLOC`).
fn is_machine_line(line: &str) -> bool {
    line.split(' ').next().is_some_and(|word| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

fn usable_bytes(regions: &[Region]) -> u64 {
    regions.iter().filter(|r| r.usable()).map(Region::len).sum()
}

/// Checks one boot's report against `-m` = `memory` bytes; returns the
/// problems found.
fn check(report: &Report, memory: u64) -> Vec<String> {
    let mut problems = Vec::new();
    if !report.passed {
        problems.push("the kernel did not report FIRMWARE PASS".to_owned());
    }
    if report.e820.is_empty() || report.map.is_empty() {
        problems.push("no E820 entries or no normalised map reported".to_owned());
        return problems;
    }
    check_memory(report, memory, &mut problems);
    let forbidden = check_reserved(report, &mut problems);
    check_runs(report, &forbidden, &mut problems);
    check_bitmap(report, &forbidden, &mut problems);
    if !report.guard_faulted {
        problems.push("the stack's guard page did not fault".to_owned());
    }
    problems
}

/// Usable memory against `-m`, and the split around the PCI hole.
fn check_memory(report: &Report, memory: u64, problems: &mut Vec<String>) {
    let mut problem = |text: String| problems.push(text);
    // Usable memory within the bounds of -m: QEMU's firmware keeps the
    // legacy hole below 1 MiB and a little for its own tables.
    let e820_usable: u64 = report.e820.iter().filter(|e| e.2 == 1).map(|e| e.1).sum();
    if !(memory - 8 * MIB..=memory).contains(&e820_usable) {
        problem(format!(
            "E820 reports {e820_usable:#x} usable bytes for -m {memory:#x}"
        ));
    }
    let map_usable = usable_bytes(&report.map);
    let image = report
        .reserved
        .iter()
        .find(|r| r.0 == "kernel")
        .map_or(0, |r| r.2 - r.1);
    if map_usable > e820_usable || map_usable + image + 256 * 1024 < e820_usable {
        problem(format!(
            "the normalised map has {map_usable:#x} usable bytes, E820 {e820_usable:#x}, \
             the kernel image {image:#x}"
        ));
    }
    if memory > 4 * GIB {
        // RAM split around the PCI hole: some above 4 GiB, none just below.
        let above: u64 = report
            .map
            .iter()
            .filter(|r| r.usable() && r.start >= 4 * GIB)
            .map(Region::len)
            .sum();
        if above == 0 {
            problem("no usable memory above 4 GiB".to_owned());
        }
        if report
            .map
            .iter()
            .any(|r| r.usable() && r.overlaps(0xe000_0000, 4 * GIB))
        {
            problem("usable memory inside the PCI hole".to_owned());
        }
    }
}

/// A byte range that no frame handed out may touch.
type Forbidden = Vec<(String, u64, u64)>;

/// The kernel reserved its image and the boot structures, and the map keeps
/// them out of usable memory; returns them rounded out to frames.
fn check_reserved(report: &Report, problems: &mut Vec<String>) -> Forbidden {
    let mut problem = |text: String| problems.push(text);
    // What must never be handed out: the kernel image, the start info, the
    // E820 table and the command line, each rounded out to whole frames.
    let mut forbidden: Vec<(String, u64, u64)> = report
        .reserved
        .iter()
        .map(|(name, start, end)| {
            (
                name.clone(),
                start & !(FRAME - 1),
                end.next_multiple_of(FRAME),
            )
        })
        .collect();
    forbidden.push((
        "start info page".to_owned(),
        report.start_info & !(FRAME - 1),
        (report.start_info & !(FRAME - 1)) + FRAME,
    ));
    for name in ["kernel", "start_info", "memmap", "cmdline"] {
        if !report.reserved.iter().any(|r| r.0 == name) {
            problem(format!("the kernel did not report reserving its {name}"));
        }
    }
    for (name, start, end) in &forbidden {
        if report
            .map
            .iter()
            .any(|r| r.usable() && r.overlaps(*start, *end))
        {
            problem(format!(
                "{name} ({start:#x}..{end:#x}) is usable in the normalised map"
            ));
        }
    }
    forbidden
}

/// The bump allocator's runs and the hand-off map.
fn check_runs(report: &Report, forbidden: &Forbidden, problems: &mut Vec<String>) {
    let mut problem = |text: String| problems.push(text);
    let map_usable = usable_bytes(&report.map);
    // Every frame the bump allocator handed out lies in a run; runs are
    // disjoint, inside usable regions of the map, and clear of `forbidden`.
    if report.runs.is_empty() {
        problem("the bump allocator reported no run".to_owned());
    }
    for (i, run) in report.runs.iter().enumerate() {
        if !report
            .map
            .iter()
            .any(|r| r.usable() && r.start <= run.start && run.end <= r.end)
        {
            problem(format!("run {run:?} is not inside a usable region"));
        }
        for (name, start, end) in forbidden {
            if run.overlaps(*start, *end) {
                problem(format!("run {run:?} overlaps the {name}"));
            }
        }
        for other in &report.runs[i + 1..] {
            if run.overlaps(other.start, other.end) {
                problem(format!("runs {run:?} and {other:?} overlap"));
            }
        }
        // The hand-off map records it with its purpose.
        if !report
            .hand_off
            .iter()
            .any(|r| r.kind == run.kind && r.start <= run.start && run.end <= r.end)
        {
            problem(format!("run {run:?} is not recorded in the hand-off map"));
        }
    }
    let used: u64 = report.runs.iter().map(Region::len).sum();
    let hand_off_usable = usable_bytes(&report.hand_off);
    if hand_off_usable != map_usable - used {
        problem(format!(
            "hand-off usable {hand_off_usable:#x} != map usable {map_usable:#x} - used {used:#x}"
        ));
    }
}

/// The bitmap allocator's counts and frames.
fn check_bitmap(report: &Report, forbidden: &Forbidden, problems: &mut Vec<String>) {
    let mut problem = |text: String| problems.push(text);
    let map_usable = usable_bytes(&report.map);
    let used: u64 = report.runs.iter().map(Region::len).sum();

    // The bitmap allocator: free = usable - used, and what it hands out is
    // usable in the hand-off map and clear of everything else.
    match report.bitmap_free {
        Some(free) if free * FRAME == map_usable - used => {}
        Some(free) => problem(format!(
            "bitmap free {free} frames, but usable - used is {} frames",
            (map_usable - used) / FRAME
        )),
        None => problem("no BITMAP line".to_owned()),
    }
    if report.bitmap_allocs.len() != 9 {
        problem(format!(
            "{} bitmap allocations reported, not 9",
            report.bitmap_allocs.len()
        ));
    }
    for &(start, size) in &report.bitmap_allocs {
        let end = start + size;
        if start % size != 0 {
            problem(format!("bitmap frame {start:#x} not aligned to {size:#x}"));
        }
        if !report
            .hand_off
            .iter()
            .any(|r| r.usable() && r.start <= start && end <= r.end)
        {
            problem(format!(
                "bitmap frame {start:#x}+{size:#x} is not in a usable region"
            ));
        }
        if let Some(run) = report.runs.iter().find(|r| r.overlaps(start, end)) {
            problem(format!("bitmap frame {start:#x} overlaps run {run:?}"));
        }
        for (name, fstart, fend) in forbidden {
            if start < *fend && *fstart < end {
                problem(format!("bitmap frame {start:#x} overlaps the {name}"));
            }
        }
    }
    if let (Some(free), Some(after)) = (report.bitmap_free, report.bitmap_after)
        && after != free - 512 - 8
    {
        problem(format!(
            "bitmap free {after} after allocating, expected {}",
            free - 520
        ));
    }
}

#[test]
fn allocators_on_the_firmware_map() {
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

    let mut failures = Vec::new();
    for (label, memory) in [("128M", 128 * MIB), ("1G", GIB), ("5G", 5 * GIB)] {
        let run = kernel::boot_with(&qemu, &kernel, TIMEOUT, label, Some("firmware-map"))
            .unwrap_or_else(|e| panic!("{e}"));
        let report = parse(&run.serial);
        if memory > 4 * GIB {
            // The people's tables: every line but the machine-readable ones.
            for line in run.serial.lines().filter(|l| !is_machine_line(l)) {
                show!("{line}");
            }
        }
        let mut problems = check(&report, memory);
        match run.exit_code {
            Some(33) => {}
            Some(code) => problems.push(format!("QEMU exited with {code}, not 33 (passed)")),
            None => problems.push(format!("QEMU did not finish within {TIMEOUT:?}")),
        }
        show!(
            "-m {label}: {} E820 entries, {:#x} usable after normalising, {} runs, \
             bitmap free {:?}, {} problem(s) ({:.2?})",
            report.e820.len(),
            usable_bytes(&report.map),
            report.runs.len(),
            report.bitmap_free,
            problems.len(),
            run.elapsed
        );
        if !problems.is_empty() {
            failures.push(format!(
                "-m {label}:\n  {}\n--- serial ---\n{}\n--- qemu stderr ---\n{}",
                problems.join("\n  "),
                run.serial,
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checks themselves catch what they are for (on a made-up report).
#[test]
fn checks_catch_overlaps_and_miscounts() {
    let serial = "\
START_INFO 0x6000 version=1 memmap=0x6100 entries=2 cmdline=0x20000
E820 0x0 0x9fc00 1
E820 0x100000 0x7f00000 1
RESERVE kernel 0x100000 0x180000
RESERVE start_info 0x6000 0x6038
RESERVE memmap 0x6100 0x6130
RESERVE cmdline 0x20000 0x2000d
MAP 0x0 0x1000 Reserved
MAP 0x1000 0x6000 Usable
MAP 0x6000 0x7000 Bootloader
MAP 0x7000 0x20000 Usable
MAP 0x20000 0x21000 Bootloader
MAP 0x21000 0x9f000 Usable
MAP 0x100000 0x180000 Kernel
MAP 0x180000 0x8000000 Usable
RUN 0x1000 0x2000 PageTable
HANDOFF 0x0 0x1000 Reserved
HANDOFF 0x1000 0x2000 PageTable
HANDOFF 0x2000 0x6000 Usable
HANDOFF 0x6000 0x7000 Bootloader
HANDOFF 0x7000 0x20000 Usable
HANDOFF 0x20000 0x21000 Bootloader
HANDOFF 0x21000 0x9f000 Usable
HANDOFF 0x100000 0x180000 Kernel
HANDOFF 0x180000 0x8000000 Usable
GUARD 0x450000000ff8 fault
FIRMWARE PASS
";
    let usable_frames = (0x5000 + 0x19000 + 0x7e000 + 0x07e8_0000 - 0x1000) / FRAME;
    let mut lines = String::from(serial);
    writeln!(lines, "BITMAP free={usable_frames} usable={usable_frames}").unwrap();
    lines.push_str("BITMAP_ALLOC 0x200000 0x200000\n");
    for i in 0..8 {
        writeln!(lines, "BITMAP_ALLOC {:#x} 0x1000", 0x7000 + i * FRAME).unwrap();
    }
    writeln!(lines, "BITMAP_AFTER free={}", usable_frames - 520).unwrap();
    let good = check(&parse(&lines), 128 * MIB);
    assert!(good.is_empty(), "{good:?}");

    // A run over the start info page, a bitmap frame in the kernel image,
    // and an off-by-one free count are each caught.
    let bad = lines
        .replace("RUN 0x1000 0x2000", "RUN 0x6000 0x7000")
        .replace("BITMAP_ALLOC 0x7000 0x1000", "BITMAP_ALLOC 0x100000 0x1000")
        .replace(
            &format!("BITMAP free={usable_frames}"),
            &format!("BITMAP free={}", usable_frames + 1),
        );
    let problems = check(&parse(&bad), 128 * MIB);
    for want in [
        "overlaps the start_info",
        "bitmap frame 0x100000",
        "bitmap free",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "`{want}` not caught: {problems:#?}"
        );
    }
}
