//! The emulated machine: physical memory, CR3, a TLB and event counters.

use core::cell::{Cell, RefCell};
use core::fmt;
use std::vec::Vec;

use x86_64::structures::paging::{PageTableFlags, PageTableIndex, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::config::CpuConfig;
use super::fault::{Access, AccessKind, FaultCause, PageFault, Privilege};
use super::memory::PhysMemory;
use super::mmu::{Translation, WalkStart, walk_from};
use super::psc::PagingStructureCaches;
use super::tlb::Tlb;
use crate::paging::InvalidRecursiveTable;
use crate::paging::check_recursive_index;

/// TLB and flush events since the counters were last reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Translations answered from the TLB.
    pub tlb_hits: u64,
    /// Translations that needed a page walk (including walks that faulted,
    /// and writes through a cached translation whose dirty bit was clear,
    /// which walk again to set it).
    pub tlb_misses: u64,
    /// Page walks that began below a cached non-leaf entry instead of at
    /// CR3 (paging-structure-cache hits; at most one per walk).
    pub psc_hits: u64,
    /// `invlpg` executions.
    pub invlpg: u64,
    /// Whole-TLB flushes: CR3 writes, [`Machine::flush_all`] and
    /// [`Machine::flush_global`].
    pub full_flushes: u64,
}

/// An emulated x86_64 CPU's view of memory: physical memory, CR3, a TLB and
/// paging-structure caches that go stale like hardware, and counters of TLB
/// events. The CPU it models is set by a [`CpuConfig`] (see
/// [`with_config`](Self::with_config)); the [module docs](super) describe
/// the model.
///
/// Virtual accesses ([`read_bytes`](Self::read_bytes),
/// [`write_u64`](Self::write_u64), [`translate`](Self::translate), …) go
/// through the TLB: a translation is cached on first use and kept, even after
/// the tables change, until [`invlpg`](Self::invlpg), a flush or a CR3 write
/// drops it. Walks set accessed and dirty bits and start below cached
/// non-leaf entries. Faults are not cached; a fault drops the cached entries
/// for its address, as hardware does. Physical accesses
/// ([`memory_mut`](Self::memory_mut)) bypass the TLB and invalidate nothing.
///
/// `GLOBAL` leaves survive CR3 writes and [`flush_all`](Self::flush_all)
/// (CR4.PGE is on); [`flush_global`](Self::flush_global) drops them too.
///
/// Reads take `&self` (as
/// [`Backend::read_entry`](crate::paging::Backend::read_entry) requires),
/// yet change state as on the CPU: the TLB and caches live in cells, and
/// the accessed and dirty bits are stored through cells inside
/// [`PhysMemory`]. A `Machine` is `Send` but not `Sync`.
#[derive(Clone)]
pub struct Machine {
    memory: PhysMemory,
    cr3: PhysFrame,
    config: CpuConfig,
    caches: RefCell<Caches>,
    counters: Cell<Counters>,
}

/// Everything the MMU remembers between accesses.
#[derive(Clone, Debug, Default)]
struct Caches {
    tlb: Tlb,
    psc: PagingStructureCaches,
}

impl Machine {
    /// A machine with zeroed memory and CR3 pointing at `level_4` (an empty
    /// level-4 table, until entries are written into it).
    pub fn new(level_4: PhysFrame) -> Self {
        Self {
            memory: PhysMemory::new(),
            cr3: level_4,
            config: CpuConfig::DEFAULT,
            caches: RefCell::default(),
            counters: Cell::default(),
        }
    }

    /// The same machine on a CPU described by `config` (see
    /// [`set_config`](Self::set_config)).
    #[must_use]
    pub fn with_config(mut self, config: CpuConfig) -> Self {
        self.set_config(config);
        self
    }

    /// Changes the emulated CPU's features and model switches. Every TLB and
    /// paging-structure-cache entry is dropped (as at a reset), without
    /// counting as a flush; memory and counters are kept.
    pub fn set_config(&mut self, config: CpuConfig) {
        self.config = config;
        *self.caches.get_mut() = Caches::default();
    }

    /// The emulated CPU's features and model switches.
    pub fn config(&self) -> CpuConfig {
        self.config
    }

    /// Turns the paging-structure caches on or off (they are on by
    /// default); either way every cached translation and table is dropped.
    ///
    /// With them off, a change to a non-leaf entry is seen at once by every
    /// address not in the TLB, which hides missing invalidations that real
    /// hardware punishes.
    pub fn set_paging_structure_caches(&mut self, enabled: bool) {
        self.set_config(self.config.with_paging_structure_caches(enabled));
    }

    /// Number of entries in the paging-structure caches, per level of the
    /// cached entry: `[PML4E cache, PDPTE cache, PDE cache]`.
    pub fn paging_structure_cache_len(&self) -> [usize; 3] {
        self.caches.borrow().psc.lens()
    }

    /// A machine whose level-4 table in `level_4` has entry `index` pointing
    /// to itself (`PRESENT | WRITABLE`, supervisor-only) and no other entry.
    ///
    /// The index is a [`PageTableIndex`] and follows the rule of
    /// [`RecursivePageTable::new`](crate::paging::RecursivePageTable::new),
    /// which takes the same value: 0 and 511 are refused, so every machine
    /// made here can carry a table.
    ///
    /// # Errors
    ///
    /// [`InvalidRecursiveTable::IndexZero`] or
    /// [`InvalidRecursiveTable::IndexLast`] for index 0 or 511.
    ///
    /// ```
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::RecursivePageTable;
    /// use framealloc::x86_64::{PhysAddr, VirtAddr, structures::paging::{PageTableIndex, PhysFrame}};
    ///
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let index = PageTableIndex::new(510);
    /// let machine = Machine::with_recursive_table(index, l4)?;
    /// // Through index 510 four times, the level-4 table sees itself:
    /// let entry_510 = machine.read_u64(VirtAddr::new(0xffff_ff7f_bfdf_eff0))?;
    /// assert_eq!(entry_510, 0x1023); // the walk set the accessed bit, 0x20
    /// assert!(Machine::with_recursive_table(PageTableIndex::new(511), l4).is_err());
    /// let table = RecursivePageTable::new(machine, index)?;
    /// # let _ = table;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_recursive_table(
        index: PageTableIndex,
        level_4: PhysFrame,
    ) -> Result<Self, InvalidRecursiveTable> {
        check_recursive_index(index)?;
        let mut machine = Self::new(level_4);
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        let entry = level_4.start_address().as_u64() | flags.bits();
        machine.memory.write_entry(level_4, index, entry);
        Ok(machine)
    }

    /// Physical memory, for reading without any translation.
    pub fn memory(&self) -> &PhysMemory {
        &self.memory
    }

    /// Physical memory, for writing without any translation. Writing a
    /// page-table entry here leaves every TLB entry in place.
    pub fn memory_mut(&mut self) -> &mut PhysMemory {
        &mut self.memory
    }

    /// The frame of the active level-4 table.
    pub fn cr3(&self) -> PhysFrame {
        self.cr3
    }

    /// Writes CR3: switches to the tables in `level_4` and flushes every
    /// non-global TLB entry and every paging-structure-cache entry (even if
    /// `level_4` is the current table). Global translations stay cached and
    /// keep answering for the new address space, as on hardware with
    /// CR4.PGE (PCIDs are off). The frame is not checked against
    /// MAXPHYADDR.
    pub fn set_cr3(&mut self, level_4: PhysFrame) {
        self.cr3 = level_4;
        self.flush(true);
    }

    /// `invlpg`: drops any TLB entry, of any page size, covering `addr`,
    /// and every paging-structure-cache entry whatever its address (as the
    /// SDM specifies for the current PCID).
    pub fn invlpg(&mut self, addr: VirtAddr) {
        let caches = self.caches.get_mut();
        caches.tlb.invalidate(addr);
        caches.psc.clear();
        self.count(|c| c.invlpg += 1);
    }

    /// Drops every non-global TLB entry and every paging-structure-cache
    /// entry, as a CR3 reload does.
    pub fn flush_all(&mut self) {
        self.flush(true);
    }

    /// Drops every TLB entry, global ones included, and every
    /// paging-structure-cache entry (toggling CR4.PGE).
    pub fn flush_global(&mut self) {
        self.flush(false);
    }

    /// The counters since the last reset.
    pub fn counters(&self) -> Counters {
        self.counters.get()
    }

    /// Sets every counter to zero and returns their previous values.
    pub fn reset_counters(&mut self) -> Counters {
        self.counters.take()
    }

    /// The cached translation covering `addr`, if any. Does not count as a
    /// TLB access.
    pub fn cached(&self, addr: VirtAddr) -> Option<Translation> {
        self.caches.borrow().tlb.lookup(addr)
    }

    /// Every cached translation, ordered by page size and then address.
    pub fn tlb_entries(&self) -> Vec<Translation> {
        self.caches.borrow().tlb.entries()
    }

    /// Number of cached translations.
    pub fn tlb_len(&self) -> usize {
        self.caches.borrow().tlb.len()
    }

    /// What a freshly flushed TLB and paging-structure cache would see: a
    /// walk of the current tables, without touching the caches, the counters
    /// or memory (the accessed and dirty bits the walk would set show in the
    /// translation's flags but are not stored).
    ///
    /// # Errors
    ///
    /// The [`PageFault`] the access would raise.
    pub fn walk(&self, addr: VirtAddr, access: Access) -> Result<Translation, PageFault> {
        let start = WalkStart::root(self.cr3.start_address().as_u64());
        walk_from(&self.memory, start, addr.as_u64(), access, self.config)
            .map(|walk| walk.translation)
    }

    /// Translates `addr` for `access` through the TLB, as the CPU does for a
    /// memory access: a hit uses the cached (possibly stale) translation, a
    /// miss walks the tables and caches the result.
    ///
    /// # Errors
    ///
    /// The [`PageFault`] the access raises.
    pub fn translate(&self, addr: VirtAddr, access: Access) -> Result<PhysAddr, PageFault> {
        self.translation(addr, access).map(|t| t.phys(addr))
    }

    /// Like [`translate`](Self::translate), but returns the whole translation
    /// the access used (page, frame, size, effective flags), which may be a
    /// stale cached one.
    ///
    /// # Errors
    ///
    /// The [`PageFault`] the access raises.
    pub fn translation(&self, addr: VirtAddr, access: Access) -> Result<Translation, PageFault> {
        self.translate_raw(addr.as_u64(), access)
    }

    /// Reads `buf.len()` bytes at `addr` with `privilege`. Every page is
    /// translated before anything is read.
    ///
    /// # Errors
    ///
    /// The first [`PageFault`]; the range may cross pages, and a range that
    /// leaves the canonical half it starts in faults as non-canonical.
    pub fn read(
        &self,
        addr: VirtAddr,
        buf: &mut [u8],
        privilege: Privilege,
    ) -> Result<(), PageFault> {
        let access = Access::new(AccessKind::Read, privilege);
        for (phys, range) in self.translate_range(addr, buf.len(), access)? {
            self.memory.read_in_frame(phys.as_u64(), &mut buf[range]);
        }
        Ok(())
    }

    /// Writes `data` at `addr` with `privilege`. Every page is translated
    /// before anything is written, so a fault writes nothing.
    ///
    /// # Errors
    ///
    /// The first [`PageFault`], as for [`read`](Self::read).
    pub fn write(
        &mut self,
        addr: VirtAddr,
        data: &[u8],
        privilege: Privilege,
    ) -> Result<(), PageFault> {
        let access = Access::new(AccessKind::Write, privilege);
        for (phys, range) in self.translate_range(addr, data.len(), access)? {
            self.memory.write_in_frame(phys.as_u64(), &data[range]);
        }
        Ok(())
    }

    /// A supervisor [`read`](Self::read).
    ///
    /// # Errors
    ///
    /// The first [`PageFault`].
    pub fn read_bytes(&self, addr: VirtAddr, buf: &mut [u8]) -> Result<(), PageFault> {
        self.read(addr, buf, Privilege::Supervisor)
    }

    /// A supervisor [`write`](Self::write).
    ///
    /// # Errors
    ///
    /// The first [`PageFault`].
    pub fn write_bytes(&mut self, addr: VirtAddr, data: &[u8]) -> Result<(), PageFault> {
        self.write(addr, data, Privilege::Supervisor)
    }

    /// A supervisor read of the little-endian `u64` at `addr`.
    ///
    /// # Errors
    ///
    /// The first [`PageFault`].
    pub fn read_u64(&self, addr: VirtAddr) -> Result<u64, PageFault> {
        let mut bytes = [0; 8];
        self.read_bytes(addr, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// A supervisor write of `value`, little-endian, at `addr`.
    ///
    /// # Errors
    ///
    /// The first [`PageFault`].
    pub fn write_u64(&mut self, addr: VirtAddr, value: u64) -> Result<(), PageFault> {
        self.write_bytes(addr, &value.to_le_bytes())
    }

    fn translate_raw(&self, addr: u64, access: Access) -> Result<Translation, PageFault> {
        let Ok(virt) = VirtAddr::try_new(addr) else {
            return Err(PageFault {
                addr,
                access,
                level: 4,
                cause: FaultCause::NonCanonical,
            });
        };
        let mut caches = self.caches.borrow_mut();
        if let Some(translation) = caches.tlb.lookup(virt) {
            match translation.permits(access) {
                Ok(()) if self.needs_dirty_bit(&translation, access) => {
                    // SDM 4.8: the first write through a translation cached
                    // with a clear dirty bit walks again to set it.
                    caches.tlb.invalidate(virt);
                }
                Ok(()) => {
                    self.count(|c| c.tlb_hits += 1);
                    return Ok(translation);
                }
                Err(cause) => {
                    self.count(|c| c.tlb_hits += 1);
                    caches.tlb.invalidate(virt);
                    caches.psc.invalidate(addr);
                    return Err(PageFault {
                        addr,
                        access,
                        level: translation.size.level(),
                        cause,
                    });
                }
            }
        }
        self.count(|c| c.tlb_misses += 1);
        let below = if self.config.has_paging_structure_caches() {
            caches.psc.lookup(addr)
        } else {
            None
        };
        let start = match below {
            Some((level, table)) => {
                self.count(|c| c.psc_hits += 1);
                WalkStart {
                    level: level - 1,
                    table: table.table,
                    rights: table.rights,
                }
            }
            None => WalkStart::root(self.cr3.start_address().as_u64()),
        };
        let walk = match walk_from(&self.memory, start, addr, access, self.config) {
            Ok(walk) => walk,
            Err(fault) => {
                // A page fault drops whatever the walk would have used.
                caches.psc.invalidate(addr);
                return Err(fault);
            }
        };
        if self.config.sets_accessed_dirty() {
            let accessed = PageTableFlags::ACCESSED.bits();
            for &entry in walk.unaccessed() {
                self.memory.set_bits(entry, accessed);
            }
            if access.kind == AccessKind::Write && !walk.leaf_dirty {
                self.memory
                    .set_bits(walk.leaf, PageTableFlags::DIRTY.bits());
            }
        }
        if self.config.has_paging_structure_caches() {
            for &(level, table) in walk.tables() {
                caches.psc.insert(addr, level, table);
            }
        }
        caches.tlb.insert(walk.translation);
        Ok(walk.translation)
    }

    /// Whether a write through `cached` must walk again to set the leaf's
    /// dirty bit.
    fn needs_dirty_bit(&self, cached: &Translation, access: Access) -> bool {
        access.kind == AccessKind::Write
            && self.config.sets_accessed_dirty()
            && !cached.flags.contains(PageTableFlags::DIRTY)
    }

    /// Translates every page of `len` bytes at `addr`: (physical start, range
    /// of the caller's buffer) per page; no piece leaves its 4 KiB page, so
    /// none leaves its frame. Addresses wrap at 2^64 as on hardware.
    fn translate_range(
        &self,
        addr: VirtAddr,
        len: usize,
        access: Access,
    ) -> Result<Vec<(PhysAddr, core::ops::Range<usize>)>, PageFault> {
        let mut pieces = Vec::new();
        let mut done = 0;
        while done < len {
            let at = addr.as_u64().wrapping_add(done as u64);
            let piece = ((4096 - at % 4096) as usize).min(len - done);
            let translation = self.translate_raw(at, access)?;
            // `at` is canonical, or the translation would have faulted.
            let phys = translation.phys(VirtAddr::new_truncate(at));
            pieces.push((phys, done..done + piece));
            done += piece;
        }
        Ok(pieces)
    }

    fn flush(&mut self, keep_global: bool) {
        let caches = self.caches.get_mut();
        caches.tlb.flush(keep_global);
        caches.psc.clear();
        self.count(|c| c.full_flushes += 1);
    }

    fn count(&self, event: impl FnOnce(&mut Counters)) {
        let mut counters = self.counters.get();
        event(&mut counters);
        self.counters.set(counters);
    }
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("memory", &self.memory)
            .field("cr3", &self.cr3)
            .field("config", &self.config)
            .field("tlb_entries", &self.caches.borrow().tlb.len())
            .field("psc_entries", &self.caches.borrow().psc.lens())
            .field("counters", &self.counters.get())
            .finish()
    }
}
