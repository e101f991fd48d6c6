//! Property: when every change to memory is followed by `invlpg` of every
//! address in use, translation through the TLB agrees with a fresh walk, for
//! every kind of access, whatever the tables contain (cycles, huge pages,
//! reserved bits, aliased tables and the recursive entry included), on every
//! emulated CPU (narrower MAXPHYADDR, no 1 GiB pages, no EFER.NXE, with and
//! without paging-structure caches and accessed/dirty bits).

use framealloc::emu::{Access, CpuConfig, Machine};
use framealloc::x86_64::structures::paging::{PageTableFlags as F, PageTableIndex, PhysFrame};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use proptest::prelude::*;

/// Frames that hold tables; the first is the level-4 table (recursive at 511).
const TABLES: [u64; 6] = [0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000];
/// What entries may point at: tables, and data frames of every alignment.
const TARGETS: [u64; 10] = [
    0x1000,
    0x2000,
    0x3000,
    0x4000,
    0x5000,
    0x6000,
    0x0,
    0x20_0000,
    0x4000_0000,
    0x0007_ffff_ffe0_2000,
];
/// Table indices that probes use (511 is the recursive one).
const INDICES: [u64; 4] = [0, 1, 2, 511];
/// Each flag an entry may carry besides its address, with its probability.
/// Bit 12 is PAT in a huge leaf, bit 13 is reserved there, bit 52 is ignored.
const BITS: [(u64, f64); 9] = [
    (F::PRESENT.bits(), 0.9),
    (F::WRITABLE.bits(), 0.7),
    (F::USER_ACCESSIBLE.bits(), 0.7),
    (F::HUGE_PAGE.bits(), 0.15),
    (F::GLOBAL.bits(), 0.2),
    (F::NO_EXECUTE.bits(), 0.2),
    (1 << 12, 0.2),
    (1 << 13, 0.05),
    (1 << 52, 0.2),
];

/// A page-table entry: one of the targets, each flag with its probability.
fn entry() -> impl Strategy<Value = u64> {
    let flags =
        BITS.map(|(bit, p)| prop::bool::weighted(p).prop_map(move |on| if on { bit } else { 0 }));
    (0..TARGETS.len(), flags)
        .prop_map(|(target, flags)| TARGETS[target] | flags.iter().fold(0, |a, b| a | b))
}

#[derive(Clone, Debug)]
enum Op {
    /// Write an entry physically.
    SetEntry {
        table: usize,
        index: usize,
        value: u64,
    },
    /// Write through a virtual address (which may be a table, through the
    /// recursive entry or an alias).
    Write { probe: usize, value: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..TABLES.len(), 0..INDICES.len(), entry())
            .prop_map(|(table, index, value)| Op::SetEntry { table, index, value }),
        1 => (0..PROBES, any::<u64>()).prop_map(|(probe, value)| Op::Write { probe, value }),
    ]
}

const PROBES: usize = 12;

/// An emulated CPU: the default, or one narrowed in one or more ways.
fn cpu() -> impl Strategy<Value = CpuConfig> {
    (
        prop::sample::select(vec![52u8, 46, 39]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(bits, gib, nxe, caches, accessed_dirty)| {
            CpuConfig::DEFAULT
                .with_max_phys_addr(bits)
                .unwrap()
                .with_1gib_pages(gib)
                .with_nxe(nxe)
                .with_paging_structure_caches(caches)
                .with_accessed_dirty(accessed_dirty)
        })
}

/// A canonical address from four table indices and an 8-aligned offset.
fn probe() -> impl Strategy<Value = VirtAddr> {
    (prop::array::uniform4(0..INDICES.len()), 0..512u64).prop_map(|(idx, word)| {
        let raw = idx.iter().fold(0, |acc, &i| (acc << 9) | INDICES[i]) << 12;
        VirtAddr::new_truncate(raw | (word * 8))
    })
}

fn set_entry(machine: &mut Machine, table: usize, index: usize, value: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(TABLES[table]));
    let index = PageTableIndex::new(INDICES[index] as u16);
    machine.memory_mut().write_entry(frame, index, value);
}

fn check(machine: &Machine, probes: &[VirtAddr]) -> Result<(), TestCaseError> {
    for &addr in probes {
        for access in Access::ALL {
            let fresh = machine.walk(addr, access).map(|t| t.phys(addr));
            let through_tlb = machine.translate(addr, access);
            prop_assert_eq!(through_tlb, fresh, "{:#x} {:?}", addr.as_u64(), access);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tlb_agrees_with_a_fresh_walk_after_invlpg(
        initial in prop::collection::vec(entry(), TABLES.len() * INDICES.len()),
        probes in prop::collection::vec(probe(), PROBES),
        ops in prop::collection::vec(op(), 1..16),
        config in cpu(),
    ) {
        let l4 = PhysFrame::containing_address(PhysAddr::new(TABLES[0]));
        let mut machine = Machine::new(l4).with_config(config);
        for (slot, value) in initial.into_iter().enumerate() {
            set_entry(&mut machine, slot / INDICES.len(), slot % INDICES.len(), value);
        }
        // Keep one recursive entry so tables are reachable as data.
        set_entry(&mut machine, 0, 3, TABLES[0] | (F::PRESENT | F::WRITABLE).bits());
        check(&machine, &probes)?;
        for op in ops {
            match op {
                Op::SetEntry { table, index, value } => set_entry(&mut machine, table, index, value),
                Op::Write { probe, value } => {
                    let addr = probes[probe];
                    let expected = machine.translate(addr, Access::KERNEL_WRITE);
                    let written = machine.write_u64(addr, value);
                    prop_assert_eq!(written.is_ok(), expected.is_ok());
                    if let Ok(phys) = expected {
                        prop_assert_eq!(machine.memory().read_u64(phys), Ok(value));
                    }
                }
            }
            for &addr in &probes {
                machine.invlpg(addr);
            }
            // Only probes were ever translated, so nothing may be left.
            prop_assert_eq!(machine.tlb_len(), 0);
            check(&machine, &probes)?;
        }
    }
}
