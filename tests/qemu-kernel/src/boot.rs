//! PVH entry, identity paging and the switch to long mode.
//!
//! QEMU's `-kernel` loads an ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note and
//! starts it in 32-bit protected mode with paging off. The trampoline below
//! maps the first GiB with 2 MiB pages (identity), installs the recursive
//! entry at [`RECURSIVE_INDEX`] (510), turns on PAE, long mode, NX and paging
//! (with CR0.WP, so read-only pages fault on kernel writes), loads a minimal
//! 64-bit GDT and calls [`crate::kernel_main`] on a 256 KiB stack. The PVH
//! start info's physical address, which arrives in `ebx`, is kept in
//! `pvh_start_info_paddr` (read by [`crate::firmware`]).

use core::arch::global_asm;

use scenarios::RECURSIVE_INDEX;

global_asm!(
    r#"
    .section .note.Xen, "a"
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .quad pvh_start32

    .section .bss.boot, "aw", @nobits
    .balign 4096
    boot_pml4: .skip 4096
    boot_pdpt: .skip 4096
    boot_pd:   .skip 4096
    .balign 16
    boot_stack_bottom: .skip 262144
    boot_stack_top:
    .balign 8
    .global pvh_start_info_paddr
    pvh_start_info_paddr: .skip 8

    .section .rodata.boot, "a"
    .balign 16
    boot_gdt:
        .quad 0
        .quad 0x00af9a000000ffff
        .quad 0x00cf92000000ffff
    boot_gdt_end:
    boot_gdt_pointer:
        .word boot_gdt_end - boot_gdt - 1
        .long boot_gdt

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
    pvh_start32:
        cli
        cld
        mov dword ptr [pvh_start_info_paddr], ebx
        mov eax, offset boot_pdpt
        or eax, 3
        mov dword ptr [boot_pml4], eax
        mov eax, offset boot_pml4
        or eax, 3
        mov dword ptr [boot_pml4 + {recursive} * 8], eax
        mov eax, offset boot_pd
        or eax, 3
        mov dword ptr [boot_pdpt], eax
        xor ecx, ecx
    .Lfill_pd:
        mov eax, ecx
        shl eax, 21
        or eax, 0x83
        mov dword ptr [boot_pd + ecx * 8], eax
        mov dword ptr [boot_pd + ecx * 8 + 4], 0
        inc ecx
        cmp ecx, 512
        jne .Lfill_pd

        mov eax, cr4
        or eax, (1 << 5) | (1 << 9) | (1 << 10)
        mov cr4, eax
        mov eax, offset boot_pml4
        mov cr3, eax
        mov ecx, 0xc0000080
        rdmsr
        or eax, (1 << 8) | (1 << 11)
        wrmsr
        mov eax, cr0
        and eax, ~(1 << 2)
        or eax, (1 << 31) | (1 << 16) | (1 << 1) | 1
        mov cr0, eax

        lgdt [boot_gdt_pointer]
        mov eax, offset boot_start64
        push 0x08
        push eax
        retf

    .code64
    boot_start64:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        xor eax, eax
        mov fs, ax
        mov gs, ax
        lea rsp, [rip + boot_stack_top]
        xor ebp, ebp
        call {main}
    .Lhalt:
        hlt
        jmp .Lhalt
    "#,
    recursive = const RECURSIVE_INDEX,
    main = sym crate::kernel_main,
);
