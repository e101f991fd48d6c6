//! The multi-CPU emulator: one memory, one TLB per CPU, and stale
//! translations on the CPUs that were not told about a change.

use framealloc::emu::{Cpus, Machine, NoCpus};
use framealloc::paging::RecursivePageTable;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, Page, PageTableFlags as Flags, PageTableIndex, PhysFrame, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};

const R: u16 = 510;

struct Bump(u64);

// SAFETY: hands out each frame once, in emulated memory.
unsafe impl FrameAllocator<Size4KiB> for Bump {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.0 += 0x1000;
        Some(frame(self.0))
    }
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(addr))
}

fn page(addr: u64) -> Page {
    Page::containing_address(VirtAddr::new(addr))
}

fn cpus(count: usize) -> Cpus {
    let machine = Machine::with_recursive_table(PageTableIndex::new(R), frame(0x1000)).unwrap();
    Cpus::new(machine, count).unwrap()
}

fn table(machine: &mut Machine) -> RecursivePageTable<&mut Machine> {
    RecursivePageTable::new(machine, PageTableIndex::new(R)).unwrap()
}

/// Maps `virt` to `phys` on `cpu` and stores `value` there.
fn map(cpus: &mut Cpus, cpu: usize, tables: &mut Bump, virt: u64, phys: u64, value: u64) {
    let mut t = table(cpus.cpu(cpu).unwrap());
    let flags = Flags::PRESENT | Flags::WRITABLE;
    // SAFETY: emulated memory; each test maps each frame once.
    unsafe { t.map_to(page(virt), frame(phys), flags, tables) }
        .unwrap()
        .ignore();
    t.backend_mut()
        .write_u64(VirtAddr::new(virt), value)
        .unwrap();
}

fn read(cpus: &mut Cpus, cpu: usize, virt: u64) -> Option<u64> {
    cpus.cpu(cpu).unwrap().read_u64(VirtAddr::new(virt)).ok()
}

#[test]
fn no_cpus_is_refused_and_missing_cpus_are_none() {
    let machine = Machine::new(frame(0x1000));
    assert_eq!(Cpus::new(machine, 0).err(), Some(NoCpus));
    let mut cpus = cpus(2);
    assert_eq!(cpus.len(), 2);
    assert!(!cpus.is_empty());
    assert!(cpus.cpu(2).is_none());
    assert!(cpus.split(2).is_none());
    assert_eq!(cpus.cr3(2), None);
    assert_eq!(cpus.cached(2, VirtAddr::new(0)), None);
}

#[test]
fn memory_is_shared_and_each_cpu_caches_on_its_own() {
    let mut cpus = cpus(3);
    let mut tables = Bump(0x8_0000);
    map(&mut cpus, 0, &mut tables, 0x40_0000, 0x10_0000, 11);
    // CPU 0 wrote through the mapping: it has it cached, the others not.
    assert!(cpus.cached(0, VirtAddr::new(0x40_0000)).is_some());
    assert!(cpus.cached(1, VirtAddr::new(0x40_0000)).is_none());
    assert_eq!(read(&mut cpus, 2, 0x40_0000), Some(11));
    assert!(cpus.cached(2, VirtAddr::new(0x40_0000)).is_some());
    assert!(cpus.cached(1, VirtAddr::new(0x40_0000)).is_none());
    // A write on CPU 2 is seen by CPU 1 (same memory).
    cpus.cpu(2)
        .unwrap()
        .write_u64(VirtAddr::new(0x40_0008), 22)
        .unwrap();
    assert_eq!(read(&mut cpus, 1, 0x40_0008), Some(22));
    assert_eq!(
        cpus.memory().read_u64(PhysAddr::new(0x10_0008)).unwrap(),
        22
    );
    assert_eq!(cpus.cpu(1).unwrap().counters().tlb_misses, 1);
}

#[test]
fn unmap_on_one_cpu_leaves_the_other_reading_the_old_frame() {
    let mut cpus = cpus(2);
    let mut tables = Bump(0x8_0000);
    map(&mut cpus, 0, &mut tables, 0x40_0000, 0x10_0000, 7);
    assert_eq!(read(&mut cpus, 1, 0x40_0000), Some(7));

    let mut t = table(cpus.cpu(0).unwrap());
    let (old, flush) = t.unmap(page(0x40_0000)).unwrap();
    assert_eq!(old, frame(0x10_0000));
    flush.flush(); // CPU 0's TLB only
    assert_eq!(read(&mut cpus, 0, 0x40_0000), None);
    // The frame gets a new owner, who writes to it; CPU 1 still sees it.
    cpus.memory_mut()
        .write_u64(PhysAddr::new(0x10_0000), 99)
        .unwrap();
    assert_eq!(read(&mut cpus, 1, 0x40_0000), Some(99));
    cpus.cpu(1)
        .unwrap()
        .write_u64(VirtAddr::new(0x40_0000), 5)
        .unwrap();
    assert_eq!(cpus.memory().read_u64(PhysAddr::new(0x10_0000)).unwrap(), 5);
    // Until CPU 1 invalidates.
    cpus.cpu(1).unwrap().invlpg(VirtAddr::new(0x40_0000));
    assert_eq!(read(&mut cpus, 1, 0x40_0000), None);
}

#[test]
fn remap_on_one_cpu_is_stale_on_the_other() {
    let mut cpus = cpus(2);
    let mut tables = Bump(0x8_0000);
    map(&mut cpus, 0, &mut tables, 0x40_0000, 0x10_0000, 1);
    assert_eq!(read(&mut cpus, 1, 0x40_0000), Some(1));
    let mut t = table(cpus.cpu(0).unwrap());
    t.unmap(page(0x40_0000)).unwrap().1.flush();
    map(&mut cpus, 0, &mut tables, 0x40_0000, 0x20_0000, 2);
    assert_eq!(read(&mut cpus, 0, 0x40_0000), Some(2));
    assert_eq!(read(&mut cpus, 1, 0x40_0000), Some(1));
}

#[test]
fn each_cpu_has_its_own_cr3() {
    let mut cpus = cpus(2);
    let mut tables = Bump(0x8_0000);
    map(&mut cpus, 0, &mut tables, 0x40_0000, 0x10_0000, 3);
    // A second address space: a copy of the level-4 table, recursive to itself.
    let copy = frame(0x3000);
    for i in 0..512u16 {
        let entry = cpus
            .memory()
            .read_entry(frame(0x1000), PageTableIndex::new(i));
        cpus.memory_mut()
            .write_entry(copy, PageTableIndex::new(i), entry);
    }
    let recursive = 0x3000 | (Flags::PRESENT | Flags::WRITABLE).bits();
    cpus.memory_mut()
        .write_entry(copy, PageTableIndex::new(R), recursive);
    cpus.cpu(1).unwrap().set_cr3(copy);
    assert_eq!(cpus.cr3(0), Some(frame(0x1000)));
    assert_eq!(cpus.cr3(1), Some(copy));
    // The copy without its lower half: CPU 1 faults, CPU 0 still reads.
    cpus.memory_mut()
        .write_entry(copy, PageTableIndex::new(0), 0);
    assert_eq!(read(&mut cpus, 1, 0x40_0000), None);
    assert_eq!(read(&mut cpus, 0, 0x40_0000), Some(3));
    cpus.cpu(1).unwrap().set_cr3(frame(0x1000));
    assert_eq!(read(&mut cpus, 1, 0x40_0000), Some(3));
}

#[test]
fn split_targets_every_other_cpu_or_those_with_a_cr3() {
    let mut cpus = cpus(4);
    cpus.cpu(2).unwrap().set_cr3(frame(0x5000));
    let (this, mut others) = cpus.split(1).unwrap();
    assert_eq!(this.cr3(), frame(0x1000));
    assert_eq!(others.targets(), [0, 2, 3]);
    others.only_with_cr3(Some(frame(0x1000)));
    assert_eq!(others.targets(), [0, 3]);
    others.only_with_cr3(None);
    assert_eq!(others.targets(), [0, 2, 3]);
}
