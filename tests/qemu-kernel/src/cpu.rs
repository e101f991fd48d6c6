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

const IST_SIZE: usize = 16 * 1024;

#[repr(align(16))]
struct Stack(#[allow(dead_code, reason = "only its address is used")] [u8; IST_SIZE]);

/// The descriptor tables of one CPU: its GDT, its TSS with the page-fault and
/// double-fault IST stacks, and its IDT. One `static` per CPU.
pub struct CpuTables {
    page_fault_stack: UnsafeCell<Stack>,
    double_fault_stack: UnsafeCell<Stack>,
    tss: UnsafeCell<TaskStateSegment>,
    gdt: UnsafeCell<GlobalDescriptorTable>,
    idt: UnsafeCell<InterruptDescriptorTable>,
}

// SAFETY: a value is written only by `load`, which its one CPU calls once
// with interrupts disabled before anything else uses it; afterwards only
// that CPU (the hardware) reads it.
unsafe impl Sync for CpuTables {}

impl CpuTables {
    pub const fn new() -> Self {
        CpuTables {
            page_fault_stack: UnsafeCell::new(Stack([0; IST_SIZE])),
            double_fault_stack: UnsafeCell::new(Stack([0; IST_SIZE])),
            tss: UnsafeCell::new(TaskStateSegment::new()),
            gdt: UnsafeCell::new(GlobalDescriptorTable::new()),
            idt: UnsafeCell::new(InterruptDescriptorTable::new()),
        }
    }

    /// Fills and loads this CPU's GDT (with the TSS and its IST stacks) and
    /// IDT: the kernel's exception handlers, plus what `more` adds (the
    /// second CPU's interrupt vectors).
    ///
    /// # Safety
    ///
    /// Called once, by the CPU that will use these tables, with interrupts
    /// disabled, before anything else refers to them.
    pub unsafe fn load(&'static self, more: impl FnOnce(&mut InterruptDescriptorTable)) {
        let top = |stack: &UnsafeCell<Stack>| VirtAddr::from_ptr(stack.get()) + IST_SIZE as u64;
        // SAFETY: the caller's contract: nothing else refers to these
        // tables yet, and after this function only the CPU reads them.
        unsafe {
            let tss = &mut *self.tss.get();
            tss.interrupt_stack_table[0] = top(&self.page_fault_stack);
            tss.interrupt_stack_table[1] = top(&self.double_fault_stack);
            let gdt = &mut *self.gdt.get();
            let code = gdt.append(Descriptor::kernel_code_segment());
            let data = gdt.append(Descriptor::kernel_data_segment());
            let tss_selector = gdt.append(Descriptor::tss_segment(&*self.tss.get()));
            (*self.gdt.get()).load();
            CS::set_reg(code);
            SS::set_reg(data);
            DS::set_reg(data);
            ES::set_reg(data);
            load_tss(tss_selector);

            let idt = &mut *self.idt.get();
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
            more(idt);
            (*self.idt.get()).load();
        }
    }
}

/// The first CPU's tables.
static BSP: CpuTables = CpuTables::new();

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

/// Loads the first CPU's GDT (with the TSS and its IST stacks) and IDT.
pub fn init() {
    // SAFETY: single-threaded start-up, interrupts disabled; called once.
    unsafe { BSP.load(|_| ()) };
}
