//! Several emulated CPUs over one physical memory.

use core::fmt;
use std::vec::Vec;

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

use super::machine::Machine;
use super::memory::PhysMemory;
use super::mmu::Translation;
use crate::paging::{Invalidations, Shootdown};

/// Several emulated CPUs sharing one physical memory, each with its own CR3,
/// TLB, paging-structure caches and [`Counters`](super::Counters).
///
/// Each CPU is a [`Machine`]; [`cpu`](Self::cpu) hands out one of them,
/// with the shared memory moved into it, so everything a `Machine` does
/// (virtual accesses, walks, the [`Backend`](crate::paging::Backend)
/// implementation) works on that CPU as it does on a single-CPU machine. A
/// change made through one CPU is in memory at once, but the other CPUs'
/// TLBs and caches keep what they cached until they are invalidated, as on
/// hardware: the emulator referees TLB shootdowns.
///
/// [`split`](Self::split) gives one CPU together with [`OtherCpus`], a
/// handle on the rest that implements [`Shootdown`] by invalidating their
/// TLBs directly (where a kernel sends IPIs).
///
/// ```
/// use framealloc::emu::{Cpus, Machine};
/// use framealloc::paging::RecursivePageTable;
/// use framealloc::x86_64::structures::paging::{
///     FrameAllocator, Page, PageTableFlags as Flags, PageTableIndex, PhysFrame, Size4KiB,
/// };
/// use framealloc::x86_64::{PhysAddr, VirtAddr};
///
/// # struct Frames(u64);
/// # unsafe impl FrameAllocator<Size4KiB> for Frames {
/// #     fn allocate_frame(&mut self) -> Option<PhysFrame> {
/// #         self.0 += 0x1000;
/// #         Some(PhysFrame::containing_address(PhysAddr::new(self.0)))
/// #     }
/// # }
/// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
/// let index = PageTableIndex::new(510);
/// let mut cpus = Cpus::new(Machine::with_recursive_table(index, l4)?, 2)?;
/// let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x40_0000));
/// let frame = PhysFrame::containing_address(PhysAddr::new(0x10_0000));
///
/// // Map on CPU 0; both CPUs read through the mapping and cache it.
/// let mut table = RecursivePageTable::new(cpus.cpu(0).unwrap(), index)?;
/// let flags = Flags::PRESENT | Flags::WRITABLE;
/// // SAFETY (emulated memory): the frame is used by nothing else.
/// unsafe { table.map_to(page, frame, flags, &mut Frames(0x8_0000)) }.unwrap().ignore();
/// table.backend_mut().write_u64(page.start_address(), 7)?;
/// assert_eq!(cpus.cpu(1).unwrap().read_u64(page.start_address())?, 7);
///
/// // Unmap on CPU 0 and flush only its own TLB: CPU 1 still reads the frame.
/// let mut table = RecursivePageTable::new(cpus.cpu(0).unwrap(), index)?;
/// table.unmap(page).unwrap().1.flush();
/// assert!(cpus.cpu(0).unwrap().read_u64(page.start_address()).is_err());
/// assert_eq!(cpus.cpu(1).unwrap().read_u64(page.start_address())?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Cpus {
    cpus: Vec<Machine>,
    /// The CPU whose `Machine` holds the shared memory; every other one
    /// holds an empty `PhysMemory`.
    holder: usize,
}

/// Why [`Cpus::new`] refused: a machine needs at least one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoCpus;

impl fmt::Display for NoCpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a machine needs at least one CPU")
    }
}

impl core::error::Error for NoCpus {}

impl Cpus {
    /// `count` CPUs sharing `machine`'s memory. CPU 0 is `machine` itself
    /// (its TLB, caches and counters kept); every other CPU starts with the
    /// same CR3 and [`CpuConfig`](super::CpuConfig), empty caches and zero
    /// counters.
    ///
    /// # Errors
    ///
    /// [`NoCpus`] if `count` is 0.
    pub fn new(machine: Machine, count: usize) -> Result<Self, NoCpus> {
        if count == 0 {
            return Err(NoCpus);
        }
        let mut cpus = Vec::with_capacity(count);
        let (cr3, config) = (machine.cr3(), machine.config());
        cpus.push(machine);
        cpus.extend((1..count).map(|_| Machine::new(cr3).with_config(config)));
        Ok(Self { cpus, holder: 0 })
    }

    /// Number of CPUs.
    pub fn len(&self) -> usize {
        self.cpus.len()
    }

    /// Always `false`: there is at least one CPU.
    pub fn is_empty(&self) -> bool {
        self.cpus.is_empty()
    }

    /// CPU `index`, with the shared memory, or `None` if there is no such
    /// CPU. Everything done through the returned `Machine` is done on that
    /// CPU: its TLB and caches, its CR3, its counters.
    pub fn cpu(&mut self, index: usize) -> Option<&mut Machine> {
        if index >= self.cpus.len() {
            return None;
        }
        self.hand_memory_to(index);
        Some(&mut self.cpus[index])
    }

    /// CPU `index` (as [`cpu`](Self::cpu)) and a handle on every other CPU,
    /// through which an operation on CPU `index` shoots down the others'
    /// TLB entries. `None` if there is no such CPU.
    pub fn split(&mut self, index: usize) -> Option<(&mut Machine, OtherCpus<'_>)> {
        if index >= self.cpus.len() {
            return None;
        }
        self.hand_memory_to(index);
        let (before, rest) = self.cpus.split_at_mut(index);
        let (this, after) = rest.split_first_mut()?;
        Some((
            this,
            OtherCpus {
                before,
                after,
                skip: index,
                active: None,
            },
        ))
    }

    /// The shared physical memory.
    pub fn memory(&self) -> &PhysMemory {
        self.cpus[self.holder].memory()
    }

    /// The shared physical memory, for writing without any translation (no
    /// CPU's TLB is touched).
    pub fn memory_mut(&mut self) -> &mut PhysMemory {
        self.cpus[self.holder].memory_mut()
    }

    /// What CPU `index`'s TLB holds for `addr` (as [`Machine::cached`]),
    /// without running anything on it; `None` also if there is no such CPU.
    pub fn cached(&self, index: usize, addr: VirtAddr) -> Option<Translation> {
        self.cpus.get(index)?.cached(addr)
    }

    /// Every translation CPU `index`'s TLB holds (empty if there is no such
    /// CPU).
    pub fn tlb_entries(&self, index: usize) -> Vec<Translation> {
        self.cpus
            .get(index)
            .map(Machine::tlb_entries)
            .unwrap_or_default()
    }

    /// The CR3 of CPU `index`, or `None` if there is no such CPU.
    pub fn cr3(&self, index: usize) -> Option<PhysFrame> {
        self.cpus.get(index).map(Machine::cr3)
    }

    fn hand_memory_to(&mut self, index: usize) {
        if index != self.holder {
            let memory = core::mem::take(self.cpus[self.holder].memory_mut());
            *self.cpus[index].memory_mut() = memory;
            self.holder = index;
        }
    }
}

impl fmt::Debug for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpus")
            .field("memory", self.memory())
            .field(
                "cr3",
                &self.cpus.iter().map(Machine::cr3).collect::<Vec<_>>(),
            )
            .field(
                "tlb_entries",
                &self.cpus.iter().map(Machine::tlb_len).collect::<Vec<_>>(),
            )
            .field("holder", &self.holder)
            .finish()
    }
}

/// Every CPU of a [`Cpus`] but the one [`split`](Cpus::split) handed out:
/// the emulator's [`Shootdown`].
///
/// By default a shootdown reaches every other CPU;
/// [`only_with_cr3`](Self::only_with_cr3) narrows it to the CPUs whose CR3
/// is the given level-4 table, as a kernel that tracks which CPUs run an
/// address space would. (Global translations survive CR3 writes, so a
/// kernel must send shootdowns of `GLOBAL` pages to every CPU.)
pub struct OtherCpus<'a> {
    before: &'a mut [Machine],
    after: &'a mut [Machine],
    skip: usize,
    active: Option<PhysFrame>,
}

impl OtherCpus<'_> {
    /// Limits later shootdowns to the CPUs whose CR3 is `level_4` (`None`:
    /// every other CPU).
    pub fn only_with_cr3(&mut self, level_4: Option<PhysFrame>) {
        self.active = level_4;
    }

    /// The indices of the CPUs a shootdown now reaches.
    pub fn targets(&self) -> Vec<usize> {
        self.machines()
            .filter(|(_, m)| self.active.is_none_or(|cr3| m.cr3() == cr3))
            .map(|(i, _)| i)
            .collect()
    }

    /// What CPU `index`'s TLB holds for `addr`; `None` also for the CPU
    /// this handle excludes.
    pub fn cached(&self, index: usize, addr: VirtAddr) -> Option<Translation> {
        self.machines().find(|&(i, _)| i == index)?.1.cached(addr)
    }

    fn machines(&self) -> impl Iterator<Item = (usize, &Machine)> {
        let skip = self.skip;
        let before = self.before.iter().enumerate();
        let after = self
            .after
            .iter()
            .enumerate()
            .map(move |(i, m)| (i + skip + 1, m));
        before.chain(after)
    }
}

impl fmt::Debug for OtherCpus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtherCpus")
            .field("skip", &self.skip)
            .field("active", &self.active)
            .field("targets", &self.targets())
            .finish_non_exhaustive()
    }
}

// SAFETY: every targeted CPU's TLB and paging-structure caches are
// invalidated before the call returns, the emulated counterpart of an
// acknowledged IPI; the CPUs left out have another CR3, which a caller that
// narrows the set vouches holds no translation of the changed pages.
unsafe impl Shootdown for OtherCpus<'_> {
    fn invalidate_others(&mut self, invalidations: &Invalidations) {
        let active = self.active;
        for machine in self.before.iter_mut().chain(self.after.iter_mut()) {
            if active.is_none_or(|cr3| machine.cr3() == cr3) {
                invalidations.perform(machine);
            }
        }
    }
}
