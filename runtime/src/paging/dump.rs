//! Looking at what a table maps: an iterator over mappings and a readable
//! dump of merged runs.

use core::fmt;

use x86_64::structures::paging::PageTableFlags;
use x86_64::{PhysAddr, VirtAddr};

use super::addr::{LOW_48, sign_extend};
use super::entry::{ADDR_MASK, Entry};
use super::{Backend, RecursivePageTable};

/// One present leaf entry: a page of 4 KiB, 2 MiB or 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the page.
    pub start: VirtAddr,
    /// Physical address it maps to.
    pub frame: PhysAddr,
    /// Page size in bytes.
    pub size: u64,
    /// The leaf entry's flags (`HUGE_PAGE` included for huge pages).
    pub flags: PageTableFlags,
}

/// Iterator over the present mappings of a [`RecursivePageTable`], in
/// ascending virtual order, skipping the recursive window. See
/// [`RecursivePageTable::mappings`].
pub struct Mappings<'a, B: Backend> {
    table: &'a RecursivePageTable<B>,
    /// Next 48-bit offset to look at.
    pos: u64,
}

impl<B: Backend> fmt::Debug for Mappings<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mappings")
            .field("recursive_index", &self.table.recursive_index())
            .field("next_offset", &format_args!("{:#x}", self.pos))
            .finish()
    }
}

impl<B: Backend> Iterator for Mappings<'_, B> {
    type Item = Mapping;

    fn next(&mut self) -> Option<Mapping> {
        let r = u64::from(u16::from(self.table.recursive_index()));
        while self.pos <= LOW_48 {
            let v = sign_extend(self.pos);
            let skip = |pos: u64, level: u32| (pos | ((1u64 << (12 + 9 * level)) - 1)) + 1;
            if (self.pos >> 39) & 511 == r {
                self.pos = skip(self.pos, 3);
                continue;
            }
            let mut level = 4;
            let found = loop {
                let entry = self.table.read(level, v);
                let e = Entry(entry);
                if !e.is_present() || (level == 4 && e.is_huge()) {
                    self.pos = skip(self.pos, level as u32 - 1);
                    break None;
                }
                if level == 1 || e.is_huge() {
                    break Some((level, entry));
                }
                level -= 1;
            };
            if let Some((level, entry)) = found {
                let size = 1u64 << (12 + 9 * (level as u32 - 1));
                let start = self.pos & !(size - 1);
                self.pos = start + size;
                return Some(Mapping {
                    start: VirtAddr::new_truncate(sign_extend(start)),
                    frame: PhysAddr::new(entry & ADDR_MASK & !(size - 1)),
                    size,
                    flags: PageTableFlags::from_bits_truncate(entry),
                });
            }
        }
        None
    }
}

impl<B: Backend> RecursivePageTable<B> {
    /// The present mappings, in ascending virtual order (the recursive
    /// window left out).
    ///
    /// ```
    /// # #[cfg(feature = "emu")] {
    /// use framealloc::emu::Machine;
    /// use framealloc::paging::RecursivePageTable;
    /// use framealloc::x86_64::structures::paging::{Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size2MiB};
    /// use framealloc::x86_64::{PhysAddr, VirtAddr};
    ///
    /// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    /// let mut table = RecursivePageTable::new(Machine::with_recursive_table(PageTableIndex::new(510), l4).unwrap(), PageTableIndex::new(510)).unwrap();
    /// let mut next = 0x10_0000u64;
    /// // SAFETY: every call yields a fresh frame.
    /// let mut pool = unsafe { framealloc::from_fn(|| { next += 4096; Some(PhysFrame::containing_address(PhysAddr::new(next))) }) };
    /// let page = Page::<Size2MiB>::containing_address(VirtAddr::new(0x20_0000));
    /// let frame = PhysFrame::containing_address(PhysAddr::new(0x4000_0000));
    /// // SAFETY: emulated memory.
    /// unsafe { table.map_to(page, frame, F::PRESENT | F::WRITABLE, &mut pool) }.unwrap().flush();
    /// let all: Vec<_> = table.mappings().collect();
    /// assert_eq!(all.len(), 1);
    /// assert_eq!((all[0].start.as_u64(), all[0].frame.as_u64(), all[0].size), (0x20_0000, 0x4000_0000, 2 << 20));
    /// # }
    /// ```
    pub fn mappings(&self) -> Mappings<'_, B> {
        Mappings {
            table: self,
            pos: 0,
        }
    }

    /// A [`Display`](fmt::Display) view of the mappings, merged into runs of
    /// pages that are contiguous in virtual and physical memory with the
    /// same size and flags: one line per run with the virtual range, the
    /// physical start, the page size, the number of pages and the flags.
    ///
    /// ```text
    /// virtual start       virtual end           physical start   size  pages  flags
    /// 0xffff800000000000  0xffff800100000000 -> 0x000000000000   1G       4  rw- kernel global
    /// ```
    pub fn dump(&self) -> Dump<'_, B> {
        Dump { table: self }
    }
}

/// The readable mapping dump returned by [`RecursivePageTable::dump`].
pub struct Dump<'a, B: Backend> {
    table: &'a RecursivePageTable<B>,
}

impl<B: Backend> fmt::Debug for Dump<'_, B> {
    /// The table's identity only; `Display` prints the mappings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dump")
            .field("recursive_index", &self.table.recursive_index())
            .finish_non_exhaustive()
    }
}

/// A run of merged mappings.
struct MappingRun {
    first: Mapping,
    count: u64,
}

impl MappingRun {
    fn extends(&self, next: &Mapping) -> bool {
        let len = self.count * self.first.size;
        // Accessed and dirty bits are the CPU's bookkeeping, not printed.
        let cpu_set = PageTableFlags::ACCESSED | PageTableFlags::DIRTY;
        next.size == self.first.size
            && (next.flags ^ self.first.flags) & !cpu_set == PageTableFlags::empty()
            && next.start.as_u64() == self.first.start.as_u64().wrapping_add(len)
            && next.frame.as_u64() == self.first.frame.as_u64() + len
    }
}

fn size_name(size: u64) -> &'static str {
    match size {
        4096 => "4K",
        0x20_0000 => "2M",
        _ => "1G",
    }
}

impl fmt::Display for MappingRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.first;
        let end = m.start.as_u64().wrapping_add(self.count * m.size);
        let flag = |flag: PageTableFlags, yes: char| if m.flags.contains(flag) { yes } else { '-' };
        write!(
            f,
            "{:#018x}  {:#018x} -> {:#014x}  {:>4}  {:>6}  r{}{} {}",
            m.start.as_u64(),
            end,
            m.frame.as_u64(),
            size_name(m.size),
            self.count,
            flag(PageTableFlags::WRITABLE, 'w'),
            if m.flags.contains(PageTableFlags::NO_EXECUTE) {
                '-'
            } else {
                'x'
            },
            if m.flags.contains(PageTableFlags::USER_ACCESSIBLE) {
                "user"
            } else {
                "kernel"
            },
        )?;
        for (flag, name) in [
            (PageTableFlags::GLOBAL, " global"),
            (PageTableFlags::NO_CACHE, " no-cache"),
            (PageTableFlags::WRITE_THROUGH, " write-through"),
        ] {
            if m.flags.contains(flag) {
                f.write_str(name)?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> fmt::Display for Dump<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<18}  {:<18}    {:<14}  {:>4}  {:>6}  flags",
            "virtual start", "virtual end", "physical start", "size", "pages"
        )?;
        let mut run: Option<MappingRun> = None;
        for m in self.table.mappings() {
            match &mut run {
                Some(current) if current.extends(&m) => current.count += 1,
                _ => {
                    if let Some(done) = run.replace(MappingRun { first: m, count: 1 }) {
                        writeln!(f, "{done}")?;
                    }
                }
            }
        }
        if let Some(done) = run {
            writeln!(f, "{done}")?;
        }
        Ok(())
    }
}
