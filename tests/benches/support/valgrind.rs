//! Instruction counts through callgrind client requests.
//!
//! Run the benchmark binary under
//! `valgrind --tool=callgrind --collect-atstart=no` with `BENCH_MODE=ir`:
//! [`measure`] switches collection on around the measured closure only and
//! then dumps the counters under the case's name, so set-up work (filling
//! tables before an unmap, say) is never counted. Outside valgrind the
//! requests are no-ops (the magic sequence rotates `rdi` by 128 bits in total
//! and exchanges `rbx` with itself).

use std::ffi::CString;
use std::hint::black_box;

const CALLGRIND_BASE: u64 = (b'C' as u64) << 24 | (b'T' as u64) << 16;
const ZERO_STATS: u64 = CALLGRIND_BASE + 1;
const TOGGLE_COLLECT: u64 = CALLGRIND_BASE + 2;
const DUMP_STATS_AT: u64 = CALLGRIND_BASE + 3;

#[allow(
    clippy::inline_always,
    reason = "the request must sit exactly around the measured code"
)]
#[inline(always)]
fn client_request(request: u64, arg1: u64) -> u64 {
    let block: [u64; 6] = [request, arg1, 0, 0, 0, 0];
    let result: u64;
    // SAFETY: valgrind's documented x86_64 request preamble. On a real CPU
    // it changes nothing (rdi is rotated by 3+13+61+51 = 128 bits, rbx is
    // exchanged with itself) and leaves the default 0 in rdx; under valgrind
    // the request reads the six words at `block`, which outlive the asm.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") 0u64 => result,
            in("rax") block.as_ptr(),
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

/// Whether this run should count instructions instead of timing.
pub(crate) fn enabled() -> bool {
    std::env::var_os("BENCH_MODE").is_some_and(|m| m == "ir")
}

/// Whether case `name` is selected by `BENCH_FILTER` (a substring; empty
/// or unset selects everything).
pub(crate) fn selected(name: &str) -> bool {
    std::env::var("BENCH_FILTER").map_or(true, |f| name.contains(&f))
}

/// Counts the instructions of `f` (collection on around it only) and dumps
/// them under `name`.
#[inline(never)]
pub(crate) fn measure<R>(name: &str, f: impl FnOnce() -> R) {
    let name = CString::new(name).expect("case names have no NUL");
    // Drop whatever was collected since the last dump (a function named in
    // `--toggle-collect` may have switched collection on during set-up).
    client_request(ZERO_STATS, 0);
    client_request(TOGGLE_COLLECT, 0);
    let out = f();
    client_request(TOGGLE_COLLECT, 0);
    black_box(out);
    client_request(DUMP_STATS_AT, name.as_ptr() as u64);
}

/// The fixed cost of [`measure`] itself, dumped as `baseline`.
pub(crate) fn baseline() {
    measure("baseline", || ());
}
