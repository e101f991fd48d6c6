//! A translation lookaside buffer that keeps translations until told not to.

use std::vec::Vec;

use x86_64::VirtAddr;
use x86_64::structures::paging::PageTableFlags;

use super::hash::PageMap;
use super::mmu::{LeafSize, Translation};

/// Cached translations, one map per page size, keyed by the page's first
/// address. Unbounded: nothing is ever evicted behind the caller's back, so
/// every missing invalidation shows up as a stale translation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tlb {
    by_size: [PageMap<Translation>; 3],
}

impl Tlb {
    /// The cached translation covering `addr`, smallest page size first (a
    /// stale 4 KiB entry can shadow a newer huge one, as hardware allows).
    pub(crate) fn lookup(&self, addr: VirtAddr) -> Option<Translation> {
        LeafSize::ALL
            .iter()
            .zip(&self.by_size)
            .find_map(|(size, map)| map.get(&(addr.as_u64() & !(size.bytes() - 1))).copied())
    }

    pub(crate) fn insert(&mut self, translation: Translation) {
        self.by_size[translation.size as usize].insert(translation.page.as_u64(), translation);
    }

    /// `invlpg`: drops every entry, of any size, that covers `addr`.
    pub(crate) fn invalidate(&mut self, addr: VirtAddr) {
        for (size, map) in LeafSize::ALL.iter().zip(&mut self.by_size) {
            map.remove(&(addr.as_u64() & !(size.bytes() - 1)));
        }
    }

    /// Drops every entry, or every non-global one.
    pub(crate) fn flush(&mut self, keep_global: bool) {
        for map in &mut self.by_size {
            if keep_global {
                map.retain(|_, t| t.flags.contains(PageTableFlags::GLOBAL));
            } else {
                map.clear();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_size.iter().map(PageMap::len).sum()
    }

    /// Every entry, ordered by size and then address.
    pub(crate) fn entries(&self) -> Vec<Translation> {
        let mut all: Vec<_> = self
            .by_size
            .iter()
            .flat_map(|m| m.values().copied())
            .collect();
        all.sort_by_key(|t| (t.size, t.page));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86_64::PhysAddr;

    fn entry(page: u64, size: LeafSize, flags: PageTableFlags) -> Translation {
        Translation {
            page: VirtAddr::new(page),
            frame: PhysAddr::new(0x4000_0000),
            size,
            flags: flags | PageTableFlags::PRESENT,
        }
    }

    #[test]
    fn invalidation_removes_every_size_covering_the_address() {
        let mut tlb = Tlb::default();
        tlb.insert(entry(
            0x20_0000,
            LeafSize::Size2MiB,
            PageTableFlags::empty(),
        ));
        tlb.insert(entry(
            0x20_3000,
            LeafSize::Size4KiB,
            PageTableFlags::empty(),
        ));
        tlb.insert(entry(
            0x4000_0000,
            LeafSize::Size1GiB,
            PageTableFlags::empty(),
        ));
        assert_eq!(
            tlb.lookup(VirtAddr::new(0x20_3008)).map(|t| t.size),
            Some(LeafSize::Size4KiB)
        );
        assert_eq!(
            tlb.lookup(VirtAddr::new(0x20_4000)).map(|t| t.size),
            Some(LeafSize::Size2MiB)
        );
        tlb.invalidate(VirtAddr::new(0x20_3ff0));
        assert_eq!(tlb.lookup(VirtAddr::new(0x20_3000)), None);
        assert_eq!(tlb.lookup(VirtAddr::new(0x20_4000)), None);
        assert_eq!(tlb.len(), 1);
        tlb.invalidate(VirtAddr::new(0x7fff_ffff));
        assert!(tlb.entries().is_empty());
    }

    #[test]
    fn flush_keeps_global_entries_only_when_asked() {
        let mut tlb = Tlb::default();
        tlb.insert(entry(0x1000, LeafSize::Size4KiB, PageTableFlags::GLOBAL));
        tlb.insert(entry(0x2000, LeafSize::Size4KiB, PageTableFlags::empty()));
        tlb.flush(true);
        assert_eq!(
            tlb.entries()
                .iter()
                .map(|t| t.page.as_u64())
                .collect::<Vec<_>>(),
            [0x1000]
        );
        tlb.flush(false);
        assert_eq!(tlb.len(), 0);
    }
}
