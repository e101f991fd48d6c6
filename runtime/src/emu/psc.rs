//! Paging-structure caches (Intel SDM vol. 3, 4.10.3): non-leaf entries
//! remembered by the MMU so that a walk can skip the upper levels.

use x86_64::structures::paging::PageTableFlags;

use super::hash::PageMap;

/// One cached non-leaf entry: where the next table is and the rights of
/// every level down to and including this entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CachedTable {
    /// Physical address of the table the entry points to.
    pub(crate) table: u64,
    /// `WRITABLE` and `USER_ACCESSIBLE` if every level so far sets them,
    /// `NO_EXECUTE` if any level so far does.
    pub(crate) rights: PageTableFlags,
}

/// The PML4E, PDPTE and PDE caches. Entry `i` of `by_level` caches entries
/// of level `4 - i`, keyed by the linear-address bits that select them
/// (47:39, 47:30 and 47:21).
#[derive(Clone, Debug, Default)]
pub(crate) struct PagingStructureCaches {
    by_level: [PageMap<CachedTable>; 3],
}

/// The key of the level-`level` entry (4, 3 or 2) for `addr`.
const fn key(addr: u64, level: u8) -> u64 {
    (addr & 0x0000_ffff_ffff_f000) >> (12 + 9 * (level as u32 - 1))
}

impl PagingStructureCaches {
    /// The cached entry of the lowest level (2, then 3, then 4) for `addr`,
    /// with its level: the walk continues below it.
    pub(crate) fn lookup(&self, addr: u64) -> Option<(u8, CachedTable)> {
        (2..=4).find_map(|level| {
            let map = &self.by_level[usize::from(4 - level)];
            if map.is_empty() {
                return None; // common after an invlpg: skip hashing
            }
            map.get(&key(addr, level)).map(|&cached| (level, cached))
        })
    }

    pub(crate) fn insert(&mut self, addr: u64, level: u8, cached: CachedTable) {
        self.by_level[usize::from(4 - level)].insert(key(addr, level), cached);
    }

    /// Drops the entries that a walk for `addr` would use (what a page
    /// fault on `addr` does).
    pub(crate) fn invalidate(&mut self, addr: u64) {
        for level in 2..=4 {
            let map = &mut self.by_level[usize::from(4 - level)];
            if !map.is_empty() {
                map.remove(&key(addr, level));
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        for map in &mut self.by_level {
            map.clear();
        }
    }

    /// Number of cached entries at each level, level 4 first.
    pub(crate) fn lens(&self) -> [usize; 3] {
        [
            self.by_level[0].len(),
            self.by_level[1].len(),
            self.by_level[2].len(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_cached_level_wins_and_invalidation_is_per_address() {
        let mut caches = PagingStructureCaches::default();
        let at = |table| CachedTable {
            table,
            rights: PageTableFlags::WRITABLE,
        };
        caches.insert(0x40_0000, 4, at(0x2000));
        assert_eq!(caches.lookup(0x7f_ffff_ffff), Some((4, at(0x2000))));
        caches.insert(0x40_0000, 2, at(0x4000));
        assert_eq!(caches.lookup(0x5f_ffff), Some((2, at(0x4000))));
        assert_eq!(caches.lookup(0x60_0000), Some((4, at(0x2000))));
        assert_eq!(caches.lookup(0x80_0000_0000), None);
        // Sign extension is not part of the key.
        caches.insert(0xffff_8000_0000_0000, 4, at(0x9000));
        assert_eq!(caches.lookup(0x8000_0000_0000), Some((4, at(0x9000))));
        caches.invalidate(0x40_1000);
        assert_eq!(caches.lens(), [1, 0, 0]);
        caches.clear();
        assert_eq!(caches.lens(), [0, 0, 0]);
    }
}
