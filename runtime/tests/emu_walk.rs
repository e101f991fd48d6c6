//! The emulated page walk against the x86_64 rules: page sizes, permissions,
//! faults and their levels, reserved bits, canonical addresses, recursion.

mod emu_support;

use emu_support::{L4, RECURSIVE, Tables, frame, table_address};
use framealloc::emu::{
    Access, AccessKind, FaultCause, LeafSize, PageFault, PhysMemory, Privilege, walk,
};
use framealloc::x86_64::structures::idt::PageFaultErrorCode;
use framealloc::x86_64::structures::paging::{PageTableFlags as F, PageTableIndex};
use framealloc::x86_64::{PhysAddr, VirtAddr};

fn virt(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

#[test]
fn all_three_page_sizes_translate() {
    let mut t = Tables::new();
    let cases = [
        (
            0x0000_1234_5678_9000,
            0x0000_0abc_def0_1000,
            LeafSize::Size4KiB,
        ),
        (
            0x0000_0040_0060_0000,
            0x0000_0000_7fe0_0000,
            LeafSize::Size2MiB,
        ),
        (
            0xffff_8000_4000_0000,
            0x000f_ffff_c000_0000,
            LeafSize::Size1GiB,
        ),
    ];
    for (page, phys, size) in cases {
        t.map(page, phys, size, F::WRITABLE);
    }
    for (page, phys, size) in cases {
        let last = page + size.bytes() - 8;
        let translation = t.machine.walk(virt(last), Access::KERNEL_READ).unwrap();
        assert_eq!(translation.page, virt(page));
        assert_eq!(translation.frame, PhysAddr::new(phys));
        assert_eq!(translation.size, size);
        assert_eq!(
            translation.flags.contains(F::HUGE_PAGE),
            size != LeafSize::Size4KiB
        );
        assert_eq!(
            translation.phys(virt(last)),
            PhysAddr::new(phys + size.bytes() - 8)
        );
        assert_eq!(
            t.machine.translate(virt(last), Access::KERNEL_WRITE),
            Ok(PhysAddr::new(phys + size.bytes() - 8))
        );
        // Data written through the page lands at the physical address.
        t.machine.write_u64(virt(last), page ^ phys).unwrap();
        let stored = t
            .machine
            .memory()
            .read_u64(PhysAddr::new(phys + size.bytes() - 8));
        assert_eq!(stored, Ok(page ^ phys));
        assert_eq!(t.machine.read_u64(virt(last)), Ok(page ^ phys));
    }
    // The next page after each mapping is unmapped.
    for (page, _, size) in cases {
        let next = page + size.bytes();
        assert!(
            t.machine.walk(virt(next), Access::KERNEL_READ).is_err(),
            "{next:#x}"
        );
    }
}

#[test]
fn not_present_faults_name_the_level() {
    let mut t = Tables::new();
    let addr = 0x0000_0080_4020_1000;
    let fault_level = |t: &Tables| match t.machine.walk(virt(addr + 0x18), Access::USER_WRITE) {
        Err(PageFault {
            cause: FaultCause::NotPresent,
            level,
            addr: a,
            access,
        }) => {
            assert_eq!((a, access), (addr + 0x18, Access::USER_WRITE));
            level
        }
        other => panic!("expected a not-present fault, got {other:?}"),
    };
    assert_eq!(fault_level(&t), 4);
    t.entry(addr, 3);
    assert_eq!(fault_level(&t), 3);
    t.entry(addr, 2);
    assert_eq!(fault_level(&t), 2);
    t.entry(addr, 1);
    assert_eq!(fault_level(&t), 1);
    t.map(
        addr,
        0x5000,
        LeafSize::Size4KiB,
        F::WRITABLE | F::USER_ACCESSIBLE,
    );
    assert!(t.machine.walk(virt(addr), Access::USER_WRITE).is_ok());
    // A cleared present bit hides everything else in the entry.
    t.set(
        addr,
        2,
        0x000f_ffff_ffff_f000 | F::HUGE_PAGE.bits() | F::WRITABLE.bits(),
    );
    assert_eq!(fault_level(&t), 2);
}

/// Every combination of W, U and NX at each of the four levels, for every
/// kind of access.
#[test]
fn permissions_combine_over_all_levels() {
    let mut t = Tables::new();
    let addr = 0x0000_0001_0020_3000;
    t.map(addr, 0x9000, LeafSize::Size4KiB, F::empty());
    let bits = [F::WRITABLE, F::USER_ACCESSIBLE, F::NO_EXECUTE];
    for combination in 0u32..1 << 12 {
        let mut level_flags = [F::empty(); 4];
        for (level, flags) in level_flags.iter_mut().enumerate() {
            for (bit, flag) in bits.iter().enumerate() {
                if combination & (1 << (3 * level + bit)) != 0 {
                    *flags |= *flag;
                }
            }
        }
        for (level, flags) in (1u8..=4).zip(level_flags) {
            t.set_flags(addr, level, flags | F::PRESENT);
        }
        let all = |flag| level_flags.iter().all(|f| f.contains(flag));
        let writable = all(F::WRITABLE);
        let user = all(F::USER_ACCESSIBLE);
        let no_execute = level_flags.iter().any(|f| f.contains(F::NO_EXECUTE));
        for access in Access::ALL {
            let expected = if access.privilege == Privilege::User && !user {
                Some(FaultCause::SupervisorOnly)
            } else if access.kind == AccessKind::Write && !writable {
                Some(FaultCause::ReadOnly)
            } else if access.kind == AccessKind::Execute && no_execute {
                Some(FaultCause::NoExecute)
            } else {
                None
            };
            match (t.machine.walk(virt(addr), access), expected) {
                (Ok(translation), None) => {
                    assert_eq!(translation.flags.contains(F::WRITABLE), writable);
                    assert_eq!(translation.flags.contains(F::USER_ACCESSIBLE), user);
                    assert_eq!(translation.flags.contains(F::NO_EXECUTE), no_execute);
                    assert_eq!(translation.frame, PhysAddr::new(0x9000));
                }
                (Err(fault), Some(cause)) => {
                    assert_eq!((fault.cause, fault.level), (cause, 1), "{combination:#x}");
                    assert!(fault.cause.is_protection());
                    let code = fault.error_code().unwrap();
                    assert!(code.contains(PageFaultErrorCode::PROTECTION_VIOLATION));
                }
                (got, want) => panic!("{combination:#x} {access:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}

#[test]
fn huge_page_permissions_fault_at_the_leaf_level() {
    let mut t = Tables::new();
    t.map(0x4000_0000, 0x8000_0000, LeafSize::Size1GiB, F::NO_EXECUTE);
    t.map(0x20_0000, 0x40_0000, LeafSize::Size2MiB, F::USER_ACCESSIBLE);
    let fault = t
        .machine
        .walk(virt(0x4000_1000), Access::KERNEL_EXECUTE)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::NoExecute, 3));
    let fault = t
        .machine
        .walk(virt(0x4000_1000), Access::USER_READ)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::SupervisorOnly, 3));
    let fault = t
        .machine
        .walk(virt(0x3f_fff8), Access::USER_WRITE)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::ReadOnly, 2));
    assert!(
        t.machine
            .walk(virt(0x3f_fff8), Access::USER_EXECUTE)
            .is_ok()
    );
}

#[test]
fn non_canonical_addresses_fault_without_a_walk() {
    let t = Tables::new();
    for addr in [
        0x0000_8000_0000_0000,
        0xffff_7fff_ffff_f000,
        0x1000_0000_0000_0000,
    ] {
        let fault = walk(
            t.machine.memory(),
            t.machine.cr3(),
            addr,
            Access::KERNEL_READ,
        )
        .unwrap_err();
        assert_eq!(
            (fault.addr, fault.cause, fault.level),
            (addr, FaultCause::NonCanonical, 4)
        );
        assert_eq!(fault.error_code(), None);
        assert!(fault.to_string().contains("non-canonical"));
    }
}

#[test]
fn accesses_running_off_the_lower_half_fault_as_non_canonical() {
    let mut t = Tables::new();
    let last_page = 0x0000_7fff_ffff_f000;
    t.map(last_page, 0x7000, LeafSize::Size4KiB, F::WRITABLE);
    let fault = t
        .machine
        .write_bytes(virt(last_page + 0xffc), &[1; 8])
        .unwrap_err();
    assert_eq!(
        (fault.addr, fault.cause),
        (0x0000_8000_0000_0000, FaultCause::NonCanonical)
    );
    // Nothing was written, not even the part inside the mapped page.
    assert_eq!(t.machine.memory().read_u64(PhysAddr::new(0x7ff8)), Ok(0));
    t.machine
        .write_bytes(virt(last_page + 0xff8), &[1; 8])
        .unwrap();
    let mut buf = [0; 16];
    let fault = t
        .machine
        .read_bytes(virt(last_page + 0xff8), &mut buf)
        .unwrap_err();
    assert_eq!(fault.cause, FaultCause::NonCanonical);
}

#[test]
fn reserved_bits_fault_and_pat_bits_do_not() {
    let mut t = Tables::new();
    let present = F::PRESENT.bits();
    // PS in a level-4 entry is reserved.
    t.set(
        0x0000_0100_0000_0000,
        4,
        0x4000_0000 | present | F::HUGE_PAGE.bits(),
    );
    let fault = t
        .machine
        .walk(virt(0x0000_0100_0000_0000), Access::KERNEL_READ)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::ReservedBits, 4));
    assert_eq!(fault.error_code().unwrap().bits(), 0b1001);
    // Address bits below the page size in huge leaves are reserved ...
    t.map(
        0x20_0000,
        0x40_0000 | 1 << 13,
        LeafSize::Size2MiB,
        F::empty(),
    );
    let fault = t
        .machine
        .walk(virt(0x20_0000), Access::KERNEL_READ)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::ReservedBits, 2));
    t.map(
        0x4000_0000,
        0x8000_0000 | 1 << 29,
        LeafSize::Size1GiB,
        F::empty(),
    );
    let fault = t
        .machine
        .walk(virt(0x4000_0000), Access::KERNEL_READ)
        .unwrap_err();
    assert_eq!((fault.cause, fault.level), (FaultCause::ReservedBits, 3));
    // ... except bit 12, which is PAT.
    t.map(
        0x20_0000,
        0x40_0000 | 1 << 12,
        LeafSize::Size2MiB,
        F::empty(),
    );
    let translation = t
        .machine
        .walk(virt(0x20_0000), Access::KERNEL_READ)
        .unwrap();
    assert_eq!(translation.frame, PhysAddr::new(0x40_0000));
    // PS in a level-1 entry is PAT: still a 4 KiB page.
    t.set(0x1000, 1, 0x3000 | present | F::HUGE_PAGE.bits());
    let translation = t.machine.walk(virt(0x1000), Access::KERNEL_READ).unwrap();
    assert_eq!(
        (translation.size, translation.frame),
        (LeafSize::Size4KiB, PhysAddr::new(0x3000))
    );
    assert!(!translation.flags.contains(F::HUGE_PAGE));
}

#[test]
fn available_bits_are_not_address_bits() {
    let mut t = Tables::new();
    let available = 0x7ff0_0000_0000_0e00; // bits 9..12 and 52..63
    let addr = 0x0000_0002_0000_0000;
    t.map(
        addr,
        0x000f_ffff_ffff_f000 | available,
        LeafSize::Size4KiB,
        F::WRITABLE,
    );
    let l1_entry = t.entry(addr, 2);
    let l2 = t.machine.memory().read_u64(l1_entry).unwrap();
    t.machine
        .memory_mut()
        .write_u64(l1_entry, l2 | available)
        .unwrap();
    let translation = t.machine.walk(virt(addr), Access::KERNEL_WRITE).unwrap();
    assert_eq!(translation.frame, PhysAddr::new(0x000f_ffff_ffff_f000));
    assert!(!translation.flags.contains(F::NO_EXECUTE));
}

#[test]
fn recursive_addresses_show_the_physical_tables() {
    let mut t = Tables::new();
    let addr = 0xffff_8123_4567_8000;
    t.map(addr, 0xabc_d000, LeafSize::Size4KiB, F::WRITABLE);
    let mut table = t.machine.cr3().start_address().as_u64();
    for level in (1..=4).rev() {
        let recursive = virt(table_address(RECURSIVE, addr, level));
        let mut through_mmu = vec![0; 4096];
        t.machine.read_bytes(recursive, &mut through_mmu).unwrap();
        let mut physical = vec![0; 4096];
        t.machine
            .memory()
            .read_bytes(PhysAddr::new(table), &mut physical)
            .unwrap();
        assert_eq!(through_mmu, physical, "level-{level} table");
        let translation = t.machine.walk(recursive, Access::KERNEL_WRITE).unwrap();
        assert_eq!(
            (translation.frame.as_u64(), translation.size),
            (table, LeafSize::Size4KiB)
        );
        // The recursive entry is supervisor-only: user code cannot see tables.
        let fault = t.machine.walk(recursive, Access::USER_READ).unwrap_err();
        assert_eq!(fault.cause, FaultCause::SupervisorOnly);
        let index = emu_support::index(addr, level);
        table = u64::from_le_bytes(physical[index as usize * 8..][..8].try_into().unwrap())
            & 0x000f_ffff_ffff_f000;
    }
    assert_eq!(table, 0xabc_d000);
    // Writing an entry at its recursive address changes the physical table.
    let l1 = virt(table_address(RECURSIVE, addr, 1) + emu_support::index(addr, 1) * 8);
    t.machine.write_u64(l1, 0x5000 | F::PRESENT.bits()).unwrap();
    assert_eq!(
        t.machine
            .walk(virt(addr), Access::KERNEL_READ)
            .unwrap()
            .frame
            .as_u64(),
        0x5000
    );
}

#[test]
fn every_recursive_index_works() {
    for r in [0u16, 1, 255, 256, 511] {
        let t = Tables::with(r, L4, 0x10_0000);
        let l4 = virt(table_address(u64::from(r), 0, 4));
        let entry = t.machine.read_u64(l4 + u64::from(r) * 8).unwrap();
        // The walk to it set the recursive entry's accessed bit.
        let expected = F::PRESENT | F::WRITABLE | F::ACCESSED;
        assert_eq!(entry, L4 | expected.bits(), "index {r}");
    }
    // `with_recursive_table` follows `RecursivePageTable::new`'s rule.
    for (r, want) in [
        (0, framealloc::paging::InvalidRecursiveTable::IndexZero),
        (511, framealloc::paging::InvalidRecursiveTable::IndexLast),
    ] {
        let index = PageTableIndex::new(r);
        let err = framealloc::emu::Machine::with_recursive_table(index, frame(L4)).unwrap_err();
        assert_eq!(err, want);
    }
}

#[test]
fn sparse_memory_reaches_the_top_of_the_physical_space() {
    let top = PhysMemory::LIMIT;
    // Tables and data in the last frames below 2^52.
    let mut t = Tables::with(RECURSIVE as u16, top - 0x10_0000, top - 0xf_0000);
    let addr = 0xffff_ffff_8000_0000;
    t.map(addr, top - 0x1000, LeafSize::Size4KiB, F::WRITABLE);
    t.machine.write_u64(virt(addr + 0xff8), 0x5eed).unwrap();
    assert_eq!(
        t.machine.memory().read_u64(PhysAddr::new(top - 8)),
        Ok(0x5eed)
    );
    assert_eq!(t.machine.read_u64(virt(addr + 0xff8)), Ok(0x5eed));
    t.map(
        0x4000_0000,
        top - (1 << 30),
        LeafSize::Size1GiB,
        F::WRITABLE,
    );
    assert_eq!(t.machine.read_u64(virt(0x7fff_fff8)), Ok(0x5eed));
    // The level-4 table, three tables for the 4 KiB page, one for the 1 GiB
    // page and one data frame: nothing else is resident.
    assert_eq!(t.machine.memory().resident_frames(), 6);
    let l4 = t
        .machine
        .memory()
        .read_entry(t.machine.cr3(), PageTableIndex::new(RECURSIVE as u16));
    assert_eq!(l4 & 0x000f_ffff_ffff_f000, top - 0x10_0000);
}

#[test]
fn faults_display_what_went_wrong() {
    let t = Tables::new();
    let fault = t.machine.read_u64(virt(0xdead_b000)).unwrap_err();
    assert_eq!(
        fault.to_string(),
        "page fault: supervisor read at 0xdeadb000: level-4 entry not present"
    );
}
