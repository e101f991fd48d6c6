//! A simple model of a page table: which pages are mapped (by size), and
//! which tables exist. It predicts the result of every single-page operation
//! exactly as `x86_64`'s mappers define it.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

/// Level of the entry mapping a page of each size: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB).
pub type Level = u8;

pub const fn page_size(level: Level) -> u64 {
    4096 << (9 * (level as u64 - 1))
}

/// Bytes covered by the table *at* `level` (level 1: 2 MiB).
pub const fn table_span(level: Level) -> u64 {
    page_size(level) << 9
}

pub const fn align_down(va: u64, size: u64) -> u64 {
    // Canonical addresses: alignment below 2^47 never touches the sign bits.
    va & !(size - 1)
}

/// A predicted outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The frame the page maps (unmap, translate).
    OkFrame(u64),
    NotMapped,
    Huge,
    AlreadyMapped,
    NoFrame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub level: Level,
    pub frame: u64,
    pub flags: u64,
    /// Values at the first and last 8 bytes of the frame.
    pub tokens: (u64, u64),
}

#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Mapped pages by start address.
    pub mappings: BTreeMap<u64, Mapping>,
    /// Existing tables as (level, start of the region they cover).
    pub tables: BTreeSet<(Level, u64)>,
    /// Page-table frames held as spares by the table.
    pub spare: usize,
}

/// What the walk to the entry of a `level` page at `va` finds.
enum Walk {
    /// A parent maps a huge page.
    Huge,
    /// Parent entry at this level is unused: tables from `level - 1` down are missing.
    Missing(Level),
    /// All parents exist.
    Complete,
}

impl Model {
    pub fn has_table(&self, level: Level, va: u64) -> bool {
        self.tables
            .contains(&(level, align_down(va, table_span(level))))
    }

    pub fn leaf(&self, level: Level, va: u64) -> Option<&Mapping> {
        self.mappings
            .get(&align_down(va, page_size(level)))
            .filter(|m| m.level == level)
    }

    /// The mapping covering `va`, of any size.
    pub fn covering(&self, va: u64) -> Option<(u64, &Mapping)> {
        (1..=3).find_map(|level| {
            let start = align_down(va, page_size(level));
            self.leaf(level, va).map(|m| (start, m))
        })
    }

    fn walk(&self, level: Level, va: u64) -> Walk {
        for parent in (level + 1..=4).rev() {
            if parent <= 3 && self.leaf(parent, va).is_some() {
                return Walk::Huge;
            }
            if !self.has_table(parent - 1, va) {
                return Walk::Missing(parent);
            }
        }
        Walk::Complete
    }

    /// Whether the entry for a `level` page at `va` points to a table.
    fn leaf_is_table(&self, level: Level, va: u64) -> bool {
        level > 1 && self.has_table(level - 1, va)
    }

    /// Predicts a map and applies it to the model. `available` is the
    /// allocator's remaining budget, updated.
    pub fn map(
        &mut self,
        level: Level,
        va: u64,
        mapping: Mapping,
        available: &mut usize,
    ) -> Outcome {
        let needed = match self.walk(level, va) {
            Walk::Huge => return Outcome::Huge,
            Walk::Missing(parent) => usize::from(parent - level),
            Walk::Complete => {
                if self.leaf(level, va).is_some() || self.leaf_is_table(level, va) {
                    return Outcome::AlreadyMapped;
                }
                0
            }
        };
        if needed > self.spare + *available {
            self.spare += *available;
            *available = 0;
            return Outcome::NoFrame;
        }
        let from_spare = needed.min(self.spare);
        self.spare -= from_spare;
        *available -= needed - from_spare;
        for table_level in level..=3 {
            self.tables
                .insert((table_level, align_down(va, table_span(table_level))));
        }
        self.mappings.insert(va, mapping);
        Outcome::Ok
    }

    /// Predicts an unmap (`update: None`) or a flag update and applies it.
    pub fn unmap_or_update(&mut self, level: Level, va: u64, update: Option<u64>) -> Outcome {
        match self.walk(level, va) {
            Walk::Huge => return Outcome::Huge,
            Walk::Missing(_) => return Outcome::NotMapped,
            Walk::Complete => {}
        }
        if let Some(mapping) = self.leaf(level, va).copied() {
            match update {
                None => {
                    self.mappings.remove(&va);
                }
                Some(flags) => {
                    self.mappings.insert(va, Mapping { flags, ..mapping });
                }
            }
            Outcome::OkFrame(mapping.frame)
        } else if self.leaf_is_table(level, va) {
            Outcome::Huge
        } else {
            Outcome::NotMapped
        }
    }

    /// Predicts `set_parent_flags` on the parent entry at `level` (2 to 4)
    /// on the path to `va`, which changes no mapping: `Huge` if that entry
    /// or one above maps a huge page, `NotMapped` if it or one above is
    /// unused.
    pub fn protect_parent(&self, level: Level, va: u64) -> Outcome {
        for parent in (level..=4).rev() {
            if parent <= 3 && self.leaf(parent, va).is_some() {
                return Outcome::Huge;
            }
            if !self.has_table(parent - 1, va) {
                return Outcome::NotMapped;
            }
        }
        Outcome::Ok
    }

    pub fn translate_page(&self, level: Level, va: u64) -> Outcome {
        self.clone().unmap_or_update(level, va, Some(0))
    }

    /// Tables that the current mappings need.
    pub fn needed_tables(&self) -> BTreeSet<(Level, u64)> {
        let mut needed = BTreeSet::new();
        for (&va, m) in &self.mappings {
            for level in m.level..=3 {
                needed.insert((level, align_down(va, table_span(level))));
            }
        }
        needed
    }

    /// Predicts `clean_up_addr_range` over the 48-bit offsets `lo..=hi`:
    /// visits tables whose region meets the range, children first, and frees
    /// those left with no mapping and no child table. Returns the number
    /// freed; spares are handed back too.
    pub fn clean_up_range(&mut self, lo: u64, hi: u64) -> usize {
        const LOW_48: u64 = (1 << 48) - 1;
        let mut freed = 0;
        for level in 1..=3 {
            let span = table_span(level);
            let candidates: Vec<(Level, u64)> = self
                .tables
                .iter()
                .copied()
                .filter(|&(l, r)| l == level && (r & LOW_48) <= hi && (r & LOW_48) + span > lo)
                .collect();
            for (l, r) in candidates {
                let start = r & LOW_48;
                let inside = |va: u64| (start..start + span).contains(&(va & LOW_48));
                let mapped = self.mappings.keys().any(|&va| inside(va));
                let child = self
                    .tables
                    .iter()
                    .any(|&(cl, cr)| cl + 1 == l && inside(cr));
                if !mapped && !child {
                    self.tables.remove(&(l, r));
                    freed += 1;
                }
            }
        }
        self.spare = 0;
        freed
    }

    /// Predicts `clean_up`: returns the number of tables freed.
    pub fn clean_up(&mut self) -> usize {
        let needed = self.needed_tables();
        let freed = self.tables.len() - needed.len();
        self.tables = needed;
        self.spare = 0;
        freed
    }
}
