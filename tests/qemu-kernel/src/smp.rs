//! The two-CPU boot, chosen with `-append smp` (QEMU started with `-smp 2`).
//!
//! The bootstrap CPU (BSP) maps its local APIC (xAPIC, MMIO at
//! `0xFEE0_0000`, uncached) through framealloc's `RecursivePageTable` over
//! the `Mmu` backend, copies a real-mode trampoline to [`TRAMPOLINE`] (below
//! 1 MiB, page aligned: SIPI vector 8) with a mailbox holding its own CR0,
//! CR3, CR4, EFER, a stack and the 64-bit entry, and starts the CPU with
//! APIC id 1 by INIT-SIPI-SIPI. The application processor (AP) goes
//! 16 → 32 → 64-bit on the BSP's page tables, loads its own GDT and TSS (its
//! own IST stacks) and an IDT that reuses the kernel's exception stubs (so
//! `probe` accesses recover from page faults on it too), enables its local
//! APIC, records its APIC id and CR3 and then serves read requests.
//!
//! Then, twice, on a shared page the BSP maps: both CPUs read it, the BSP
//! unmaps it (flushing its own TLB), gives the frame a new value through the
//! identity map (as a new owner would), and the AP reads the page again in a
//! page-fault-guarded probe.
//!
//! - `shootdown_ipi`: the BSP unmaps through framealloc's `Gather` with a
//!   `Shootdown` implemented by IPI ([`SHOOTDOWN_VECTOR`]): the published
//!   `Invalidations` are performed by the AP's handler on its own `Mmu`,
//!   which acknowledges through a shared atomic; only then does the frame
//!   reach its next owner. The AP's read must fault.
//! - `no_shootdown`: no IPI; what the AP reads is recorded (`OBSERVED`).
//!
//! Serial lines (besides `BOOT`):
//! `SMP BSP apic_id=<n> cr3=<hex>`, `SMP AP apic_id=<n> cr3=<hex>` (or
//! `SMP FAIL <why>`), the two `SCENARIO qemu/smp <name> PASS|FAIL|OBSERVED
//! <detail>` lines and `SUMMARY passed=<n> failed=<n> observed=<n>`.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use framealloc::paging::{Gather, Invalidations, Mmu, RecursivePageTable, Shootdown};
use framealloc::x86_64::instructions::port::Port;
use framealloc::x86_64::instructions::{interrupts, tlb};
use framealloc::x86_64::registers::control::{Cr0, Cr3, Cr4};
use framealloc::x86_64::registers::model_specific::Efer;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Page, PageTableFlags, PageTableIndex, PhysFrame, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use scenarios::{FRAMES_BASE, Fault, Frames, MAX_FRAMES, RECURSIVE_INDEX};

use crate::cpu::CpuTables;
use crate::println;
use crate::serial::{Exit, exit};

/// The kernel command-line word that selects this boot.
const COMMAND: &[u8] = b"smp";
/// Where the trampoline is copied: page aligned, below 1 MiB, clear of the
/// BIOS data areas and of the kernel image (at 1 MiB).
pub const TRAMPOLINE: u64 = 0x8000;
/// Offset of the mailbox in the trampoline's page.
const MAILBOX: u64 = 0xf00;
const MAILBOX_CR0: u64 = MAILBOX;
const MAILBOX_CR3: u64 = MAILBOX + 8;
const MAILBOX_CR4: u64 = MAILBOX + 16;
const MAILBOX_EFER: u64 = MAILBOX + 24;
const MAILBOX_STACK: u64 = MAILBOX + 32;
const MAILBOX_ENTRY: u64 = MAILBOX + 40;

/// The local APIC's physical address (the reset value of `IA32_APIC_BASE`).
const APIC_PHYS: u64 = 0xfee0_0000;
/// Where the BSP maps it (level-4 entry 140, far from everything else).
const APIC_VIRT: u64 = 0x4600_0000_0000;
/// The shared pages of the two scenarios.
const SHARED_WITH_IPI: u64 = 0x4700_0000_0000;
const SHARED_WITHOUT_IPI: u64 = 0x4700_0000_1000;

const APIC_ID: u64 = 0x20;
const APIC_EOI: u64 = 0xb0;
const APIC_SVR: u64 = 0xf0;
const APIC_ICR_LOW: u64 = 0x300;
const APIC_ICR_HIGH: u64 = 0x310;
/// ICR delivery status: the previous IPI is still being sent.
const ICR_PENDING: u32 = 1 << 12;

/// The AP's APIC id (QEMU numbers the CPUs of `-smp 2` 0 and 1).
const AP_APIC_ID: u32 = 1;
/// The fixed vector of the shootdown IPI.
pub const SHOOTDOWN_VECTOR: u8 = 0xf0;
/// The spurious-interrupt vector programmed in both APICs.
const SPURIOUS_VECTOR: u8 = 0xff;

/// Polls before a wait is declared lost (generous: TCG may run the vCPUs
/// round-robin on one host thread, and the host is shared).
const SPIN_LIMIT: u64 = 2_000_000_000;

/// The value the page holds while mapped, and the one its frame's "new
/// owner" writes after the unmap.
const BEFORE: u64 = 0x5348_4152_4544_0001;
const AFTER: u64 = 0x4e45_574f_574e_0002;

/// A `static` written by one CPU before another is told to use it.
struct Shared<T>(UnsafeCell<T>);

// SAFETY: the one value (the AP's stack) is handed to the AP by the BSP
// before the AP starts, and used by the AP alone from then on.
unsafe impl<T> Sync for Shared<T> {}

const AP_STACK_SIZE: usize = 64 * 1024;

#[repr(align(16))]
struct Stack<const N: usize>(#[allow(dead_code, reason = "only its address is used")] [u8; N]);

static AP_STACK: Shared<Stack<AP_STACK_SIZE>> = Shared(UnsafeCell::new(Stack([0; AP_STACK_SIZE])));

/// The AP's GDT, TSS, IST stacks and IDT.
static AP_TABLES: CpuTables = CpuTables::new();

/// Set by the AP: its APIC id + 1 (0: not up yet).
static AP_ALIVE: AtomicU64 = AtomicU64::new(0);
/// The AP's CR3 as it found it.
static AP_CR3: AtomicU64 = AtomicU64::new(0);
/// A read request for the AP: the sequence number (written last) and address.
static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);
static REQUEST_ADDR: AtomicU64 = AtomicU64::new(0);
/// The AP's answer: the request it served, the value or the fault.
static DONE_SEQ: AtomicU64 = AtomicU64::new(0);
static RESULT_VALUE: AtomicU64 = AtomicU64::new(0);
/// `FAULTED | error code` if the read faulted, else 0.
static RESULT_FAULT: AtomicU64 = AtomicU64::new(0);
const FAULTED: u64 = 1 << 63;
/// The page the shootdown handler invalidates, and its acknowledgements.
static SHOOTDOWN_ACKS: AtomicU64 = AtomicU64::new(0);

// The real-mode trampoline, copied to TRAMPOLINE (position-dependent on
// that address only). A SIPI with vector 8 starts the AP at 0x0800:0000 in
// real mode; it loads its own small GDT, enters protected mode, then takes
// CR4, CR3, EFER and CR0 from the mailbox (the BSP's values: long mode,
// paging on, the BSP's identity-mapped tables), far-jumps to 64-bit code and
// calls the entry in the mailbox on the stack in the mailbox.
global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
    .global ap_trampoline_end
    ap_trampoline_start:
    .code16
        cli
        cld
        xor ax, ax
        mov ds, ax
        // lgdt [disp16], with a 32-bit base (operand-size prefix).
        .byte 0x66, 0x0f, 0x01, 0x16
        .word {base} + (ap_gdt_pointer - ap_trampoline_start)
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        .byte 0x66, 0xea
        .long {base} + (ap_protected - ap_trampoline_start)
        .word 0x08
    .code32
    ap_protected:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov eax, dword ptr [{base} + {cr4}]
        mov cr4, eax
        mov eax, dword ptr [{base} + {cr3}]
        mov cr3, eax
        mov ecx, 0xc0000080
        mov eax, dword ptr [{base} + {efer}]
        xor edx, edx
        wrmsr
        mov eax, dword ptr [{base} + {cr0}]
        mov cr0, eax
        .byte 0xea
        .long {base} + (ap_long - ap_trampoline_start)
        .word 0x18
    .code64
    ap_long:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        xor eax, eax
        mov fs, ax
        mov gs, ax
        mov rsp, qword ptr [{base} + {stack}]
        mov rax, qword ptr [{base} + {entry}]
        xor ebp, ebp
        call rax
    ap_halt:
        cli
        hlt
        jmp ap_halt
    .balign 8
    ap_gdt:
        .quad 0
        .quad 0x00cf9a000000ffff
        .quad 0x00cf92000000ffff
        .quad 0x00af9a000000ffff
    ap_gdt_pointer:
        .word ap_gdt_pointer - ap_gdt - 1
        .long {base} + (ap_gdt - ap_trampoline_start)
    ap_trampoline_end:

    .section .text
    .code64
    // The shootdown IPI: saves the caller-saved registers and the FPU/SSE
    // state, calls `shootdown_interrupt` on a 16-byte aligned stack (the CPU
    // aligned rsp before pushing its 5-word frame; 9 pushes re-align it).
    .global smp_shootdown_stub
    smp_shootdown_stub:
        push rax
        push rcx
        push rdx
        push rsi
        push rdi
        push r8
        push r9
        push r10
        push r11
        sub rsp, 512
        fxsave [rsp]
        call {shootdown}
        fxrstor [rsp]
        add rsp, 512
        pop r11
        pop r10
        pop r9
        pop r8
        pop rdi
        pop rsi
        pop rdx
        pop rcx
        pop rax
        iretq

    // Spurious APIC interrupts need no EOI.
    .global smp_spurious_stub
    smp_spurious_stub:
        iretq
    "#,
    base = const TRAMPOLINE,
    cr0 = const MAILBOX_CR0,
    cr3 = const MAILBOX_CR3,
    cr4 = const MAILBOX_CR4,
    efer = const MAILBOX_EFER,
    stack = const MAILBOX_STACK,
    entry = const MAILBOX_ENTRY,
    shootdown = sym shootdown_interrupt,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    fn smp_shootdown_stub();
    fn smp_spurious_stub();
}

/// Whether the command line holds the word `smp`.
pub fn requested() -> bool {
    crate::firmware::command_line_words().any(|word| word == COMMAND)
}

/// The local APIC's registers, mapped uncached at [`APIC_VIRT`].
fn apic_read(register: u64) -> u32 {
    // SAFETY: the BSP mapped the APIC page (present, writable, uncached)
    // before anything calls this; the register offsets are xAPIC's.
    unsafe { ((APIC_VIRT + register) as *const u32).read_volatile() }
}

fn apic_write(register: u64, value: u32) {
    // SAFETY: as in `apic_read`; writes go to the CPU's own local APIC.
    unsafe { ((APIC_VIRT + register) as *mut u32).write_volatile(value) }
}

/// Enables this CPU's local APIC (software enable bit of the spurious
/// vector register) and returns its APIC id.
fn apic_enable() -> u32 {
    apic_write(APIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    apic_read(APIC_ID) >> 24
}

/// Sends one IPI and waits until the APIC has delivered it.
fn send_ipi(destination: u32, command: u32) -> Result<(), &'static str> {
    apic_write(APIC_ICR_HIGH, destination << 24);
    apic_write(APIC_ICR_LOW, command);
    spin_until(|| apic_read(APIC_ICR_LOW) & ICR_PENDING == 0)
        .then_some(())
        .ok_or("the APIC never finished sending an IPI")
}

/// About `micros` microseconds (port 0x80 writes take about one each on
/// hardware; under TCG the exact length does not matter).
fn delay(micros: u32) {
    for _ in 0..micros {
        // SAFETY: port 0x80 is the POST diagnostic port; writing it has no effect.
        unsafe { Port::<u8>::new(0x80).write(0) };
    }
}

/// Polls `done` up to [`SPIN_LIMIT`] times.
fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..SPIN_LIMIT {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Runs the two-CPU boot and exits QEMU.
pub fn run() -> ! {
    let mut tally = crate::Tally::default();
    match boot(&mut tally) {
        Ok(()) => {
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
        Err(failure) => {
            println!("SMP FAIL {failure}");
            exit(Exit::Failed)
        }
    }
}

fn boot(tally: &mut crate::Tally) -> Result<(), &'static str> {
    // SAFETY: QEMU is started with 320 MiB of RAM; the 256 MiB from
    // FRAMES_BASE hold nothing of the kernel, which lies below.
    let mut frames = unsafe { Frames::new(PhysAddr::new(FRAMES_BASE), MAX_FRAMES) };
    // SAFETY: ring 0, 4-level paging, entry RECURSIVE_INDEX of the active
    // level-4 table points to itself (boot.rs); only this table changes the
    // page tables from here on.
    let mmu = unsafe { Mmu::new() }.map_err(|_| "Mmu::new refused the CPU")?;
    let mut table = RecursivePageTable::new(mmu, PageTableIndex::new(RECURSIVE_INDEX))
        .map_err(|_| "RecursivePageTable::new refused the boot tables")?;

    let apic_flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_EXECUTE;
    // SAFETY: the APIC's MMIO page is not RAM; mapping it aliases nothing.
    unsafe {
        table.map_to(
            Page::<Size4KiB>::containing_address(VirtAddr::new(APIC_VIRT)),
            PhysFrame::containing_address(PhysAddr::new(APIC_PHYS)),
            apic_flags,
            &mut frames,
        )
    }
    .map_err(|_| "mapping the local APIC failed")?
    .flush();

    let bsp_id = apic_enable();
    let (bsp_level_4, _) = Cr3::read_raw();
    let bsp_cr3 = bsp_level_4.start_address().as_u64();
    println!("SMP BSP apic_id={bsp_id} cr3={bsp_cr3:#x}");

    start_ap()?;
    let ap_id = AP_ALIVE.load(Ordering::Acquire) - 1;
    let ap_cr3 = AP_CR3.load(Ordering::Acquire);
    println!("SMP AP apic_id={ap_id} cr3={ap_cr3:#x}");
    if ap_cr3 != bsp_cr3 {
        return Err("the AP runs on other page tables than the BSP");
    }

    for (name, page, shootdown) in [
        ("shootdown_ipi", SHARED_WITH_IPI, true),
        ("no_shootdown", SHARED_WITHOUT_IPI, false),
    ] {
        let outcome = scenario(&mut table, &mut frames, page, shootdown);
        match outcome {
            Err(failure) => {
                tally.failed += 1;
                println!("SCENARIO qemu/smp {name} FAIL {failure}");
            }
            Ok(read) if !shootdown => {
                tally.observed += 1;
                println!("SCENARIO qemu/smp {name} OBSERVED {}", describe(read));
            }
            Ok(read @ Err(fault)) if fault.error_code & 1 == 0 => {
                tally.passed += 1;
                println!("SCENARIO qemu/smp {name} PASS {}", describe(read));
            }
            Ok(read) => {
                tally.failed += 1;
                println!("SCENARIO qemu/smp {name} FAIL {}", describe(read));
            }
        }
    }
    Ok(())
}

/// Copies the trampoline, fills the mailbox and sends INIT-SIPI-SIPI to
/// APIC id [`AP_APIC_ID`]; returns once the AP reported itself alive.
fn start_ap() -> Result<(), &'static str> {
    let start = (&raw const ap_trampoline_start) as u64;
    let len = (&raw const ap_trampoline_end) as u64 - start;
    if len > MAILBOX {
        return Err("the trampoline overlaps its mailbox");
    }
    let stack_top = AP_STACK.0.get() as u64 + AP_STACK_SIZE as u64;
    let efer = Efer::read_raw() & !(1 << 10); // LMA is the CPU's to set.
    let mailbox = [
        (MAILBOX_CR0, Cr0::read_raw()),
        (MAILBOX_CR3, Cr3::read_raw().0.start_address().as_u64()),
        (MAILBOX_CR4, Cr4::read_raw()),
        (MAILBOX_EFER, efer),
        (MAILBOX_STACK, stack_top),
        (MAILBOX_ENTRY, ap_entry as *const () as u64),
    ];
    // SAFETY: TRAMPOLINE's page is identity-mapped low RAM that holds
    // nothing the kernel uses (the firmware's leftovers at most), the copy is
    // at most MAILBOX bytes and the mailbox words lie within the page.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, len as usize);
        for (offset, value) in mailbox {
            ((TRAMPOLINE + offset) as *mut u64).write_volatile(value);
        }
    }
    let vector = u32::try_from(TRAMPOLINE >> 12).map_err(|_| "trampoline above 1 MiB")?;
    // INIT (level assert), INIT de-assert, then two STARTUPs.
    send_ipi(AP_APIC_ID, 0x0000_c500)?;
    delay(200);
    send_ipi(AP_APIC_ID, 0x0000_8500)?;
    delay(10_000);
    for _ in 0..2 {
        if AP_ALIVE.load(Ordering::Acquire) != 0 {
            break;
        }
        send_ipi(AP_APIC_ID, 0x0000_4600 | vector)?;
        delay(200);
    }
    if spin_until(|| AP_ALIVE.load(Ordering::Acquire) != 0) {
        Ok(())
    } else {
        Err("the AP never reported itself alive")
    }
}

/// The AP's 64-bit entry (from the trampoline, interrupts off).
extern "C" fn ap_entry() -> ! {
    // SAFETY: only this CPU loads AP_TABLES, once, interrupts off, before
    // it reports itself alive. The IDT shares the kernel's exception handler
    // (so `probe` accesses recover on this CPU too).
    unsafe {
        AP_TABLES.load(|idt| {
            let addr = |f: unsafe extern "C" fn()| VirtAddr::new(f as usize as u64);
            idt[SHOOTDOWN_VECTOR].set_handler_addr(addr(smp_shootdown_stub));
            idt[SPURIOUS_VECTOR].set_handler_addr(addr(smp_spurious_stub));
        });
    }
    let id = apic_enable();
    AP_CR3.store(
        Cr3::read_raw().0.start_address().as_u64(),
        Ordering::Relaxed,
    );
    AP_ALIVE.store(u64::from(id) + 1, Ordering::Release);
    interrupts::enable();
    let mut served = 0;
    loop {
        let seq = REQUEST_SEQ.load(Ordering::Acquire);
        if seq != served {
            let addr = VirtAddr::new(REQUEST_ADDR.load(Ordering::Relaxed));
            // SAFETY: the BSP asks only for reads of the shared pages.
            let (value, fault) = match unsafe { crate::probe::read_u64(addr) } {
                Ok(value) => (value, 0),
                Err(fault) => (fault.addr.as_u64(), FAULTED | fault.error_code),
            };
            RESULT_VALUE.store(value, Ordering::Relaxed);
            RESULT_FAULT.store(fault, Ordering::Relaxed);
            DONE_SEQ.store(seq, Ordering::Release);
            served = seq;
        }
        core::hint::spin_loop();
    }
}

/// The shootdown IPI's handler on the AP (called by `smp_shootdown_stub`):
/// performs the published [`Invalidations`] on this CPU's TLB through
/// framealloc's `Mmu` backend, then acknowledges.
extern "C" fn shootdown_interrupt() {
    // SAFETY: the BSP writes `PUBLISHED` only before sending the IPI and
    // not again until this handler has acknowledged (`IpiShootdown`).
    let invalidations = unsafe { *PUBLISHED.0.get() };
    // SAFETY: ring 0, 4-level paging, the BSP's hierarchy (recursive entry
    // at RECURSIVE_INDEX); the value is used only to flush this CPU's TLB.
    match unsafe { Mmu::new() } {
        Ok(mut mmu) => invalidations.perform(&mut mmu),
        Err(_) => tlb::flush_all(),
    }
    apic_write(APIC_EOI, 0);
    SHOOTDOWN_ACKS.fetch_add(1, Ordering::Release);
}

/// The invalidations of the shootdown in flight, for the AP's handler.
struct Published(UnsafeCell<Invalidations>);

// SAFETY: written by the BSP only while no shootdown is in flight, read by
// the AP only in the IPI handler of the shootdown that follows the write
// (the IPI and the acknowledgement order the accesses).
unsafe impl Sync for Published {}

static PUBLISHED: Published = Published(UnsafeCell::new(Invalidations::new()));

/// framealloc's [`Shootdown`] by IPI: publish, send [`SHOOTDOWN_VECTOR`] to
/// the AP, wait for its acknowledgement. A lost IPI or acknowledgement is
/// recorded in `failed` (the scenario then fails) instead of hanging.
struct IpiShootdown {
    failed: Option<&'static str>,
    sent: u64,
}

// SAFETY: returns only after the AP, the one other CPU, acknowledged having
// performed the invalidations (or records the failure, which fails the
// scenario before anything relies on it).
unsafe impl Shootdown for IpiShootdown {
    fn invalidate_others(&mut self, invalidations: &Invalidations) {
        if invalidations.is_empty() {
            return;
        }
        // SAFETY: no shootdown is in flight (the previous one was
        // acknowledged before its call returned).
        unsafe { *PUBLISHED.0.get() = *invalidations };
        let acks = SHOOTDOWN_ACKS.load(Ordering::Acquire);
        if let Err(lost) = send_ipi(AP_APIC_ID, u32::from(SHOOTDOWN_VECTOR)) {
            self.failed = Some(lost);
            return;
        }
        if !spin_until(|| SHOOTDOWN_ACKS.load(Ordering::Acquire) != acks) {
            self.failed = Some("the AP never acknowledged the shootdown");
            return;
        }
        self.sent += 1;
    }
}

/// The frame's next owner: writes [`AFTER`] into every frame it receives,
/// and notes whether the shootdown had been acknowledged by then.
struct NextOwner {
    acks_before: u64,
    received: Option<PhysFrame>,
    too_early: bool,
}

impl FrameDeallocator<Size4KiB> for NextOwner {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        if SHOOTDOWN_ACKS.load(Ordering::Acquire) == self.acks_before {
            self.too_early = true;
        }
        self.received = Some(frame);
        crate::probe::write_phys(frame.start_address(), AFTER);
    }
}

/// Has the AP read `addr`; its value, or the fault.
fn ap_read(addr: u64) -> Result<Result<u64, Fault>, &'static str> {
    let seq = REQUEST_SEQ.load(Ordering::Relaxed) + 1;
    REQUEST_ADDR.store(addr, Ordering::Relaxed);
    REQUEST_SEQ.store(seq, Ordering::Release);
    if !spin_until(|| DONE_SEQ.load(Ordering::Acquire) == seq) {
        return Err("the AP did not answer a read request");
    }
    let value = RESULT_VALUE.load(Ordering::Relaxed);
    let fault = RESULT_FAULT.load(Ordering::Relaxed);
    Ok(if fault & FAULTED == 0 {
        Ok(value)
    } else {
        Err(Fault {
            addr: VirtAddr::new_truncate(value),
            error_code: fault & !FAULTED,
        })
    })
}

/// A short text for the serial line (fits the scenario protocol).
struct Detail(&'static str, u64);

impl core::fmt::Display for Detail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {:#x}", self.0, self.1)
    }
}

/// One shared-page round: what the AP's read after the unmap returned, or
/// why the round could not get that far.
fn scenario(
    table: &mut RecursivePageTable<Mmu>,
    frames: &mut Frames,
    virt: u64,
    shootdown: bool,
) -> Result<Result<u64, Fault>, Detail> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
    let frame = frames
        .allocate_frame()
        .ok_or(Detail("no frame for the shared page", 0))?;
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    // SAFETY: a fresh frame mapped at a page nothing else uses.
    unsafe { table.map_to(page, frame, flags, frames) }
        .map_err(|_| Detail("mapping the shared page failed", virt))?
        .flush();
    // SAFETY: just mapped, writable, and nothing else refers to it.
    unsafe { crate::probe::write_u64(VirtAddr::new(virt), BEFORE) }
        .map_err(|_| Detail("the BSP could not write the shared page", virt))?;

    // Both CPUs read it: the AP's TLB now holds the translation.
    match ap_read(virt).map_err(|lost| Detail(lost, virt))? {
        Ok(BEFORE) => {}
        Ok(other) => return Err(Detail("the AP's first read saw", other)),
        Err(fault) => {
            return Err(Detail(
                "the AP's first read faulted at",
                fault.addr.as_u64(),
            ));
        }
    }
    // SAFETY: mapped (above).
    match unsafe { crate::probe::read_u64(VirtAddr::new(virt)) } {
        Ok(BEFORE) => {}
        _ => return Err(Detail("the BSP's first read failed", virt)),
    }

    if shootdown {
        // framealloc's gather: unmap, invalidate here, shoot down by IPI,
        // and only then hand the frame to its next owner.
        let mut ipi = IpiShootdown {
            failed: None,
            sent: 0,
        };
        let mut owner = NextOwner {
            acks_before: SHOOTDOWN_ACKS.load(Ordering::Acquire),
            received: None,
            too_early: false,
        };
        let mut gather = Gather::<_, _, Size4KiB, 4>::new(&mut ipi, &mut owner);
        // SAFETY: the frame is owned by this mapping and used through no
        // other (the AP's stale translation is what the gather removes).
        unsafe { gather.unmap_and_free(table, page) }
            .map_err(|_| Detail("unmapping the shared page failed", virt))?;
        gather.finish();
        if let Some(lost) = ipi.failed {
            return Err(Detail(lost, u64::from(SHOOTDOWN_VECTOR)));
        }
        if ipi.sent != 1 {
            return Err(Detail("shootdowns sent", ipi.sent));
        }
        if owner.too_early {
            return Err(Detail("the frame was freed before the shootdown", virt));
        }
        if owner.received != Some(frame) {
            return Err(Detail("the gather freed another frame", virt));
        }
    } else {
        let (unmapped, flush) = table
            .unmap(page)
            .map_err(|_| Detail("unmapping the shared page failed", virt))?;
        flush.flush();
        if unmapped != frame {
            return Err(Detail(
                "unmap returned another frame",
                unmapped.start_address().as_u64(),
            ));
        }
        // The frame's "new owner" writes it through the identity map.
        crate::probe::write_phys(frame.start_address(), AFTER);
    }
    // SAFETY: unmapped: the probe must come back with a fault.
    if unsafe { crate::probe::read_u64(VirtAddr::new(virt)) }.is_ok() {
        return Err(Detail("the BSP still reads the unmapped page", virt));
    }
    ap_read(virt).map_err(|lost| Detail(lost, virt))
}

/// The serial text for the AP's read after the unmap.
fn describe(outcome: Result<u64, Fault>) -> Detail {
    match outcome {
        Err(fault) if fault.error_code & 1 == 0 => {
            Detail("fault not-present at", fault.addr.as_u64())
        }
        Err(fault) => Detail("fault protection at", fault.addr.as_u64()),
        Ok(AFTER) => Detail("stale read the frame's new value", AFTER),
        Ok(other) => Detail("stale read value", other),
    }
}
