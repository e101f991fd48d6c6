//! GDT with a TSS, IST stacks, and an IDT whose page-fault handler makes
//! [`crate::probe`] accesses recoverable. Every other exception (and a page
//! fault anywhere else) is fatal: it prints the saved state and fails the run.

use core::arch::global_asm;
use core::cell::UnsafeCell;

use framealloc::x86_64::VirtAddr;
use framealloc::x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use framealloc::x86_64::instructions::tables::load_tss;
use framealloc::x86_64::registers::control::Cr2;
use framealloc::x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use framealloc::x86_64::structures::idt::InterruptDescriptorTable;
use framealloc::x86_64::structures::tss::TaskStateSegment;

use crate::println;
use crate::serial::{Exit, exit};

/// A `static` that is written once, during single-threaded start-up.
struct Once<T>(UnsafeCell<T>);

// SAFETY: the kernel runs on one CPU with interrupts disabled; the contents
// are written only in `init`, before anything reads them.
unsafe impl<T> Sync for Once<T> {}

const IST_SIZE: usize = 16 * 1024;

#[repr(align(16))]
struct Stack(#[allow(dead_code, reason = "only its address is used")] [u8; IST_SIZE]);

static PAGE_FAULT_STACK: Once<Stack> = Once(UnsafeCell::new(Stack([0; IST_SIZE])));
static DOUBLE_FAULT_STACK: Once<Stack> = Once(UnsafeCell::new(Stack([0; IST_SIZE])));
static TSS: Once<TaskStateSegment> = Once(UnsafeCell::new(TaskStateSegment::new()));
static GDT: Once<GlobalDescriptorTable> = Once(UnsafeCell::new(GlobalDescriptorTable::new()));
static IDT: Once<InterruptDescriptorTable> = Once(UnsafeCell::new(InterruptDescriptorTable::new()));

/// Registers saved by the exception stubs, then the CPU's exception frame.
#[repr(C)]
#[derive(Debug)]
pub struct FaultFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    /// The vector (pushed by the stub).
    pub vector: u64,
    /// The CPU's error code (0 for exceptions without one).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Each stub pushes a dummy error code when the CPU does not, then the
// vector, saves the general registers and the FPU/SSE state (fxsave), and
// calls `exception(&mut FaultFrame)` on a 16-byte aligned stack. If that
// returns, everything is restored from the (possibly modified) frame.
global_asm!(
    r#"
    .macro exception_stub name, vector, has_code
    .global \name
    \name:
    .if \has_code == 0
        push 0
    .endif
        push \vector
        jmp exception_common
    .endm

    .section .text
    exception_stub exception_de, 0, 0
    exception_stub exception_ud, 6, 0
    exception_stub exception_df, 8, 1
    exception_stub exception_gp, 13, 1
    exception_stub exception_pf, 14, 1

    exception_common:
        push rax
        push rcx
        push rdx
        push rsi
        push rdi
        push r8
        push r9
        push r10
        push r11
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        mov rdi, rsp
        mov rbp, rsp
        and rsp, -16
        sub rsp, 512
        fxsave [rsp]
        call {handler}
        fxrstor [rsp]
        mov rsp, rbp
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        pop r11
        pop r10
        pop r9
        pop r8
        pop rdi
        pop rsi
        pop rdx
        pop rcx
        pop rax
        add rsp, 16
        iretq
    "#,
    handler = sym exception,
);

unsafe extern "C" {
    fn exception_de();
    fn exception_ud();
    fn exception_df();
    fn exception_gp();
    fn exception_pf();
}

extern "C" fn exception(frame: &mut FaultFrame) {
    if frame.vector == 14 {
        let address = Cr2::read_raw();
        if crate::probe::recover(frame, address) {
            return;
        }
        println!("FATAL page fault at {address:#x}");
    } else {
        println!("FATAL exception {}", frame.vector);
    }
    println!("{frame:#x?}");
    exit(Exit::Failed);
}

fn stack_top(stack: &Once<Stack>) -> VirtAddr {
    VirtAddr::from_ptr(stack.0.get()) + IST_SIZE as u64
}

/// Loads the GDT (with the TSS and its IST stacks) and the IDT.
pub fn init() {
    // SAFETY: single-threaded start-up; nothing else refers to these statics
    // yet, and after this function they are only read (by the CPU).
    unsafe {
        let tss = &mut *TSS.0.get();
        tss.interrupt_stack_table[0] = stack_top(&PAGE_FAULT_STACK);
        tss.interrupt_stack_table[1] = stack_top(&DOUBLE_FAULT_STACK);
        let gdt = &mut *GDT.0.get();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_selector = gdt.append(Descriptor::tss_segment(&*TSS.0.get()));
        (*GDT.0.get()).load();
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_selector);

        let idt = &mut *IDT.0.get();
        let addr = |f: unsafe extern "C" fn()| VirtAddr::new(f as usize as u64);
        idt.divide_error.set_handler_addr(addr(exception_de));
        idt.invalid_opcode.set_handler_addr(addr(exception_ud));
        idt.general_protection_fault
            .set_handler_addr(addr(exception_gp));
        idt.page_fault
            .set_handler_addr(addr(exception_pf))
            .set_stack_index(0);
        idt.double_fault
            .set_handler_addr(addr(exception_df))
            .set_stack_index(1);
        (*IDT.0.get()).load();
    }
}
