//! Memory accesses that may page-fault and come back with the fault.
//!
//! `probe_read`/`probe_write` each perform one 8-byte access at a labelled
//! instruction. The page-fault handler checks the faulting `rip` against
//! those labels (like an exception table); on a match it resumes at the
//! label after the access with `rax` = the faulting address (CR2) and `rdx` =
//! [`FAULTED`] | error code, instead of treating the fault as fatal.

use core::arch::global_asm;

use framealloc::paging::Mmu;
use framealloc::x86_64::VirtAddr;
use scenarios::Fault;

use crate::cpu::FaultFrame;

/// Set in `rdx` when the access faulted.
const FAULTED: u64 = 1 << 63;

#[repr(C)]
struct Outcome {
    value: u64,
    status: u64,
}

global_asm!(
    r#"
    .section .text
    .global probe_read
    .global probe_read_access
    .global probe_read_resume
    probe_read:
        xor edx, edx
    probe_read_access:
        mov rax, qword ptr [rdi]
    probe_read_resume:
        ret

    .global probe_write
    .global probe_write_access
    .global probe_write_resume
    probe_write:
        xor eax, eax
        xor edx, edx
    probe_write_access:
        mov qword ptr [rdi], rsi
    probe_write_resume:
        ret
    "#
);

unsafe extern "C" {
    fn probe_read(addr: u64) -> Outcome;
    fn probe_write(addr: u64, value: u64) -> Outcome;
    static probe_read_access: u8;
    static probe_read_resume: u8;
    static probe_write_access: u8;
    static probe_write_resume: u8;
}

fn label(symbol: *const u8) -> u64 {
    symbol as u64
}

/// Called by the page-fault handler: if the fault happened in a probe,
/// redirects it to the probe's resume label and reports the fault.
pub(crate) fn recover(frame: &mut FaultFrame, address: u64) -> bool {
    let table = [
        (
            label(&raw const probe_read_access),
            label(&raw const probe_read_resume),
        ),
        (
            label(&raw const probe_write_access),
            label(&raw const probe_write_resume),
        ),
    ];
    for (access, resume) in table {
        if frame.rip == access {
            frame.rip = resume;
            frame.rax = address;
            frame.rdx = FAULTED | frame.error_code;
            return true;
        }
    }
    false
}

fn outcome(outcome: &Outcome) -> Result<u64, Fault> {
    if outcome.status & FAULTED == 0 {
        Ok(outcome.value)
    } else {
        Err(Fault {
            addr: VirtAddr::new_truncate(outcome.value),
            error_code: outcome.status & !FAULTED,
        })
    }
}

/// Reads the `u64` at `addr`, or reports the page fault.
///
/// # Safety
///
/// If `addr` is mapped, reading it must not break anything the kernel relies on.
pub unsafe fn read_u64(addr: VirtAddr) -> Result<u64, Fault> {
    // SAFETY: `probe_read` reads one u64 at `addr` (the caller vouches for
    // the read); a fault there is recovered by `recover`.
    outcome(&unsafe { probe_read(addr.as_u64()) })
}

/// Writes the `u64` at `addr`, or reports the page fault.
///
/// # Safety
///
/// If `addr` is mapped, writing it must not break anything the kernel relies on.
pub unsafe fn write_u64(addr: VirtAddr, value: u64) -> Result<(), Fault> {
    // SAFETY: `probe_write` writes one u64 at `addr` (the caller vouches for
    // the write); a fault there is recovered by `recover`.
    outcome(&unsafe { probe_write(addr.as_u64(), value) }).map(|_| ())
}

/// Recoverable accesses for [`scenarios::Ours`] on the hardware backend.
pub struct Probes;

impl scenarios::Memory<Mmu> for Probes {
    fn read_u64(_: &mut Mmu, addr: VirtAddr) -> Result<u64, Fault> {
        // SAFETY: scenarios only touch their own regions.
        unsafe { read_u64(addr) }
    }

    fn write_u64(_: &mut Mmu, addr: VirtAddr, value: u64) -> Result<(), Fault> {
        // SAFETY: scenarios only touch their own regions.
        unsafe { write_u64(addr, value) }
    }
}
