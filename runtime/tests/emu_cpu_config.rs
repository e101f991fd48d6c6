//! The emulated CPU's features: MAXPHYADDR, 1 GiB page support and
//! EFER.NXE, and what each makes reserved.

mod emu_support;

use emu_support::{L4, RECURSIVE, TableBump, Tables, frame};
use framealloc::emu::{Access, CpuConfig, FaultCause, InvalidMaxPhysAddr, LeafSize, Machine};
use framealloc::paging::{MaxPageSize, RecursivePageTable};
use framealloc::x86_64::structures::idt::PageFaultErrorCode;
use framealloc::x86_64::structures::paging::{
    Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size1GiB, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

fn virt(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

fn cpu_39() -> CpuConfig {
    CpuConfig::DEFAULT.with_max_phys_addr(39).unwrap()
}

fn reserved(t: &Tables, addr: u64, access: Access) -> Option<u8> {
    match t.machine.translate(virt(addr), access) {
        Err(fault) if fault.cause == FaultCause::ReservedBits => {
            let code = fault.error_code().unwrap();
            assert!(code.contains(
                PageFaultErrorCode::MALFORMED_TABLE | PageFaultErrorCode::PROTECTION_VIOLATION
            ));
            Some(fault.level)
        }
        _ => None,
    }
}

#[test]
fn the_default_cpu_is_the_one_the_emulator_always_modelled() {
    let config = Machine::new(frame(L4)).config();
    assert_eq!(config, CpuConfig::default());
    assert_eq!(config.max_phys_addr(), 52);
    assert!(config.supports_1gib_pages() && config.nxe());
    assert!(config.sets_accessed_dirty() && config.has_paging_structure_caches());
    for bits in [31, 53, 64] {
        assert_eq!(
            CpuConfig::DEFAULT.with_max_phys_addr(bits),
            Err(InvalidMaxPhysAddr(bits))
        );
    }
    assert_eq!(
        InvalidMaxPhysAddr(53).to_string(),
        "53 physical address bits: an x86_64 CPU has between 32 and 52"
    );
}

#[test]
fn an_address_above_max_phys_addr_is_reserved_in_leaves() {
    let mut t = Tables::new();
    let (low, high) = (0x1000, 0x2000);
    t.map(low, (1 << 39) - 0x1000, LeafSize::Size4KiB, F::empty());
    t.map(high, 1 << 39, LeafSize::Size4KiB, F::empty());
    t.map(0x40_0000, 0x80_0000_0000, LeafSize::Size2MiB, F::empty());
    // 52 bits: all fine.
    for addr in [low, high, 0x40_0000] {
        t.machine.read_u64(virt(addr)).unwrap();
    }
    t.machine.set_config(cpu_39());
    assert_eq!(t.machine.tlb_len(), 0, "a new CPU model starts cold");
    assert_eq!(t.machine.read_u64(virt(low)), Ok(0));
    assert_eq!(reserved(&t, high, Access::KERNEL_READ), Some(1));
    assert_eq!(reserved(&t, 0x40_0000, Access::USER_EXECUTE), Some(2));
    // 46 bits: bit 39 is an address bit again, bit 46 is not.
    t.machine
        .set_config(CpuConfig::DEFAULT.with_max_phys_addr(46).unwrap());
    assert_eq!(t.machine.read_u64(virt(high)), Ok(0));
    t.map(high, 1 << 46, LeafSize::Size4KiB, F::empty());
    assert_eq!(t.machine.read_u64(virt(high)), Ok(0), "still cached");
    t.machine.invlpg(virt(high));
    assert_eq!(reserved(&t, high, Access::KERNEL_READ), Some(1));
}

#[test]
fn an_address_above_max_phys_addr_is_reserved_in_table_pointers() {
    let mut t = Tables::new();
    let addr = 0x0000_0080_0000_0000; // level-4 index 1
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::empty());
    let level_3 = t.get(addr, 4);
    let moved = (level_3 & 0xfff) | 1 << 40 | (level_3 & 0x000f_ffff_ffff_f000);
    // Copy the level-3 table to the high frame, and point the entry there.
    let mut bytes = vec![0; 4096];
    let old = PhysAddr::new(level_3 & 0x000f_ffff_ffff_f000);
    t.machine.memory().read_bytes(old, &mut bytes).unwrap();
    let new = PhysAddr::new(moved & 0x000f_ffff_ffff_f000);
    t.machine.memory_mut().write_bytes(new, &bytes).unwrap();
    t.set(addr, 4, moved);
    assert!(t.machine.read_u64(virt(addr)).is_ok(), "52 bits");
    t.machine.set_config(cpu_39());
    assert_eq!(reserved(&t, addr, Access::KERNEL_READ), Some(4));
    // `walk` follows the same model.
    let fault = t.machine.walk(virt(addr), Access::KERNEL_READ).unwrap_err();
    assert_eq!((fault.level, fault.cause), (4, FaultCause::ReservedBits));
    let fault = framealloc::emu::walk_with_config(
        t.machine.memory(),
        frame(L4),
        addr,
        Access::KERNEL_READ,
        cpu_39(),
    )
    .unwrap_err();
    assert_eq!(fault.level, 4);
    assert!(
        framealloc::emu::walk(t.machine.memory(), frame(L4), addr, Access::KERNEL_READ).is_ok()
    );
}

#[test]
fn without_1gib_pages_the_huge_bit_at_level_3_is_reserved() {
    let mut t = Tables::new();
    let gib = 0x0000_0040_0000_0000;
    t.map(gib, 0x4000_0000, LeafSize::Size1GiB, F::WRITABLE);
    t.map(0x20_0000, 0x20_0000, LeafSize::Size2MiB, F::WRITABLE);
    t.machine
        .set_config(CpuConfig::DEFAULT.with_1gib_pages(false));
    assert_eq!(
        reserved(&t, gib + 0x1234_5678, Access::KERNEL_READ),
        Some(3)
    );
    assert_eq!(
        t.machine.read_u64(virt(0x20_0008)),
        Ok(0),
        "2 MiB pages work"
    );
}

fn table(config: CpuConfig) -> (RecursivePageTable<Machine>, TableBump) {
    let machine = Tables::new().machine.with_config(config);
    let table = RecursivePageTable::new(machine, PageTableIndex::new(RECURSIVE as u16)).unwrap();
    (table, TableBump::new(0x10_0000))
}

/// "Would this work on a CPU without 1 GiB pages?" A kernel that maps its
/// physical-memory window with `MaxPageSize::Size1GiB` gets entries such a
/// CPU refuses; `Size2MiB` works on both.
#[test]
fn would_this_work_on_a_cpu_without_1gib_pages() {
    let window = 0xffff_8000_0000_0000;
    let pages = |n| {
        let start = Page::<Size4KiB>::containing_address(virt(window));
        Page::range(start, start + n)
    };
    let frames = |n| {
        let start = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(0));
        PhysFrame::range(start, start + n)
    };
    let n = 1 << 19; // 2 GiB
    for (max, works) in [
        (MaxPageSize::Size1GiB, false),
        (MaxPageSize::Size2MiB, true),
    ] {
        let (mut table, mut tables) = table(CpuConfig::DEFAULT.with_1gib_pages(false));
        let flags = F::PRESENT | F::WRITABLE;
        // SAFETY: emulated memory.
        unsafe { table.map_range_mixed(pages(n), frames(n), flags, max, &mut tables) }
            .unwrap()
            .flush();
        let read = table.backend().read_u64(virt(window + 0x4000_1000));
        assert_eq!(read.is_ok(), works, "{max:?}: {read:?}");
        if let Err(fault) = read {
            assert_eq!((fault.level, fault.cause), (3, FaultCause::ReservedBits));
        }
    }
    // A single 1 GiB map: the same answer.
    let (mut table, mut tables) = table(CpuConfig::DEFAULT.with_1gib_pages(false));
    let page = Page::<Size1GiB>::containing_address(virt(window));
    let frame = PhysFrame::<Size1GiB>::containing_address(PhysAddr::new(0x4000_0000));
    // SAFETY: emulated memory.
    unsafe { table.map_to(page, frame, F::PRESENT, &mut tables) }
        .unwrap()
        .flush();
    let fault = table.backend().read_u64(virt(window)).unwrap_err();
    assert_eq!(fault.cause, FaultCause::ReservedBits);
}

/// Data frames the page table maps are not checked against MAXPHYADDR (it
/// cannot know it); the emulated CPU refuses them on access.
#[test]
fn would_this_work_on_a_cpu_with_39_physical_address_bits() {
    for (config, works) in [(CpuConfig::DEFAULT, true), (cpu_39(), false)] {
        let (mut table, mut tables) = table(config);
        let page = Page::<Size4KiB>::containing_address(virt(0x40_0000));
        let frame = PhysFrame::containing_address(PhysAddr::new(0x100_0000_0000));
        // SAFETY: emulated memory.
        unsafe { table.map_to(page, frame, F::PRESENT | F::WRITABLE, &mut tables) }
            .unwrap()
            .flush();
        let written = table.backend_mut().write_u64(page.start_address(), 7);
        assert_eq!(written.is_ok(), works, "{written:?}");
    }
}

#[test]
fn without_nxe_bit_63_is_reserved_at_every_level() {
    let mut t = Tables::new();
    let (leaf_nx, parent_nx, plain) = (0x1000, 0x0000_0080_0000_0000, 0x2000);
    t.map(leaf_nx, 0x9000, LeafSize::Size4KiB, F::NO_EXECUTE);
    t.map(parent_nx, 0xa000, LeafSize::Size4KiB, F::empty());
    t.map(plain, 0xb000, LeafSize::Size4KiB, F::empty());
    let level_3 = t.get(parent_nx, 4);
    t.set(parent_nx, 4, level_3 | F::NO_EXECUTE.bits());

    // With NXE (the default): no-execute at any level refuses fetches only.
    for addr in [leaf_nx, parent_nx] {
        assert_eq!(t.machine.read_u64(virt(addr)), Ok(0));
        let fault = t
            .machine
            .translate(virt(addr), Access::KERNEL_EXECUTE)
            .unwrap_err();
        assert_eq!(fault.cause, FaultCause::NoExecute);
    }

    t.machine.set_config(CpuConfig::DEFAULT.with_nxe(false));
    assert_eq!(reserved(&t, leaf_nx, Access::KERNEL_READ), Some(1));
    assert_eq!(reserved(&t, parent_nx, Access::KERNEL_READ), Some(4));
    // No page is no-execute: fetches are allowed where bit 63 is clear.
    let fault = t
        .machine
        .translation(virt(plain), Access::USER_EXECUTE)
        .unwrap_err();
    assert_eq!(fault.cause, FaultCause::SupervisorOnly);
    t.machine
        .translate(virt(plain), Access::KERNEL_EXECUTE)
        .unwrap();
}
