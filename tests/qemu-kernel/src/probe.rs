//! Memory accesses that may page-fault and come back with the fault.
//!
//! `probe_read`/`probe_write` each perform one 8-byte access at a labelled
//! instruction. The page-fault handler checks the faulting `rip` against
//! those labels (like an exception table); on a match it resumes at the
//! label after the access with `rax` = the faulting address (CR2) and `rdx` =
//! [`FAULTED`] | error code, instead of treating the fault as fatal.

use core::arch::global_asm;

use framealloc::paging::Mmu;
use framealloc::x86_64::registers::control::{Cr3, Cr3Flags};
use framealloc::x86_64::structures::paging::PhysFrame;
use framealloc::x86_64::{PhysAddr, VirtAddr};
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
    .section .data
    .balign 8
    .global guard_rsp
    guard_rsp:
        .quad 0
    .global guard_error
    guard_error:
        .quad 0

    .section .text
    // guarded_call(f: extern "C" fn(*mut u8), arg: *mut u8) -> u64:
    // calls f(arg) and returns 0, or, if f page-faults, returns to here with
    // the faulting address (CR2) in rax, the callee-saved registers and the
    // stack pointer as they were at the call (see `recover`).
    .global guarded_call
    .global guarded_resume
    guarded_call:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        sub rsp, 8
        mov qword ptr [rip + guard_rsp], rsp
        mov rax, rdi
        mov rdi, rsi
        call rax
        xor eax, eax
    guarded_resume:
        mov qword ptr [rip + guard_rsp], 0
        add rsp, 8
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret

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
    fn guarded_call(f: extern "C" fn(*mut u8), arg: *mut u8) -> u64;
    static guarded_resume: u8;
    static mut guard_rsp: u64;
    static mut guard_error: u64;
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
    // SAFETY: single CPU, interrupts off: the guard is written only by
    // `guarded_call` and here.
    let guard = unsafe { guard_rsp };
    if guard != 0 {
        // A fault inside `guarded_call`: unwind to its resume label with
        // the stack pointer it saved (the frames in between hold no
        // resources: see `catch_page_fault`).
        frame.rip = label(&raw const guarded_resume);
        frame.rsp = guard;
        frame.rax = address;
        // SAFETY: as above.
        unsafe { guard_error = frame.error_code };
        return true;
    }
    false
}

/// Runs `f`; if it page-faults, abandons it at the fault and returns the
/// fault instead.
///
/// Used only around calls into `x86_64`'s page-table code whose outcome the
/// scenarios record (a write through a read-only recursive mapping): the
/// frames abandoned hold references and integers only, nothing with a
/// destructor, and the value `f` was changing is not used to change the
/// tables of the region any more.
pub fn catch_page_fault<R>(f: impl FnOnce() -> R) -> Result<R, Fault> {
    extern "C" fn call<F: FnOnce()>(arg: *mut u8) {
        // SAFETY: `arg` is the `Option<F>` below, alive for the call.
        let slot = unsafe { &mut *arg.cast::<Option<F>>() };
        if let Some(f) = slot.take() {
            f();
        }
    }
    fn erase<F: FnOnce()>(_: &Option<F>) -> extern "C" fn(*mut u8) {
        call::<F>
    }
    let mut result = None;
    let mut slot = Some(|| result = Some(f()));
    let trampoline = erase(&slot);
    // SAFETY: `guarded_call` calls `trampoline(&mut slot)` once, with the
    // stack and callee-saved registers restored whichever way it returns.
    let fault = unsafe { guarded_call(trampoline, (&raw mut slot).cast()) };
    if fault == 0 {
        result.ok_or(Fault {
            addr: VirtAddr::zero(),
            error_code: 0,
        })
    } else {
        Err(Fault {
            addr: VirtAddr::new_truncate(fault),
            // SAFETY: written by `recover` before the resume.
            error_code: unsafe { guard_error },
        })
    }
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

    fn set_cr3(_: &mut Mmu, level_4: PhysFrame) {
        set_cr3(level_4);
    }

    fn read_phys(_: &mut Mmu, addr: PhysAddr) -> u64 {
        read_phys(addr)
    }

    fn write_phys(_: &mut Mmu, addr: PhysAddr, value: u64) {
        write_phys(addr, value);
    }
}

/// Writes CR3 (no PCID; the cache bits clear as the boot code set them).
pub fn set_cr3(level_4: PhysFrame) {
    // SAFETY: the scenarios switch only to level-4 tables that map the
    // kernel (its level-4 entry 0, the identity map) as the current one does.
    unsafe { Cr3::write(level_4, Cr3Flags::empty()) };
}

/// Physical memory below 1 GiB is identity-mapped by the boot code.
const IDENTITY_END: u64 = 1 << 30;

/// Reads physical memory through the identity map.
pub fn read_phys(addr: PhysAddr) -> u64 {
    assert!(addr.as_u64() < IDENTITY_END && addr.is_aligned(8u64));
    // SAFETY: below 1 GiB, identity-mapped and aligned; the scenarios read
    // page-table frames they allocated.
    unsafe { (addr.as_u64() as *const u64).read_volatile() }
}

/// Writes physical memory through the identity map.
pub fn write_phys(addr: PhysAddr, value: u64) {
    assert!(addr.as_u64() < IDENTITY_END && addr.is_aligned(8u64));
    // SAFETY: as in `read_phys`; the scenarios write frames they allocated.
    unsafe { (addr.as_u64() as *mut u64).write_volatile(value) }
}
