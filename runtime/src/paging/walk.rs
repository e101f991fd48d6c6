//! Walking the parent entries above a leaf, and giving `WRITABLE` back to
//! parents that lack it (the rules for flags on [`RecursivePageTable`]; the
//! `map` module docs say why a full flush follows).

use x86_64::structures::paging::mapper::{FlagUpdateError, TranslateError, UnmapError};

use super::entry::{Entry, WRITABLE};
use super::{Backend, EntrySize, RecursivePageTable};

/// Why a walk to a leaf stopped at a parent entry.
#[derive(Clone, Copy)]
pub(crate) enum WalkFail {
    NotMapped,
    Huge,
}

impl WalkFail {
    /// Why the parent entry `entry`, which is not a present table pointer,
    /// stops a walk.
    #[inline(always)]
    pub(crate) const fn at(entry: u64) -> Self {
        if Entry(entry).is_present() {
            Self::Huge
        } else {
            Self::NotMapped
        }
    }
}

macro_rules! from_walk_fail {
    ($($error:ident),*) => {$(
        impl From<WalkFail> for $error {
            #[inline]
            fn from(fail: WalkFail) -> Self {
                match fail {
                    WalkFail::NotMapped => Self::PageNotMapped,
                    WalkFail::Huge => Self::ParentEntryHugePage,
                }
            }
        }
    )*};
}

from_walk_fail!(UnmapError, FlagUpdateError, TranslateError);

impl<B: Backend> RecursivePageTable<B> {
    /// Checks the parent entries of `v`'s level-`S` entry: all must be
    /// present table pointers.
    #[inline(always)]
    pub(crate) fn walk_parents<S: EntrySize>(&self, v: u64) -> Result<(), WalkFail> {
        let mut level = 4;
        while level > S::LEVEL {
            let entry = self.read(level, v);
            if !Entry(entry).is_table() {
                return Err(WalkFail::at(entry));
            }
            level -= 1;
        }
        Ok(())
    }

    /// Whether every parent entry of `v`'s level-`S` entry is a present,
    /// writable table pointer: the fast-path test of the single-page write
    /// operations, one comparison per level as in [`Self::walk_parents`].
    #[inline(always)]
    pub(crate) fn parents_writable<S: EntrySize>(&self, v: u64) -> bool {
        let mut level = 4;
        while level > S::LEVEL {
            if !Entry(self.read(level, v)).is_writable_table() {
                return false;
            }
            level -= 1;
        }
        true
    }

    /// [`Self::walk_parents`] for an operation that then writes the level-`S`
    /// table: also says whether every parent entry carries `WRITABLE`
    /// (`false`: see [`Self::make_writable_above`]). The fast path tests all
    /// three bits in the one comparison per level `walk_parents` makes.
    #[inline(always)]
    pub(crate) fn walk_parents_for_write<S: EntrySize>(&self, v: u64) -> Result<bool, WalkFail> {
        let mut level = 4;
        while level > S::LEVEL {
            if !Entry(self.read(level, v)).is_writable_table() {
                return self.walk_parents_for_write_slow::<S>(v);
            }
            level -= 1;
        }
        Ok(true)
    }

    /// The slow path of [`Self::walk_parents_for_write`]: some parent entry
    /// is not a present, writable table pointer.
    #[cold]
    #[inline(never)]
    fn walk_parents_for_write_slow<S: EntrySize>(&self, v: u64) -> Result<bool, WalkFail> {
        self.walk_parents::<S>(v)?;
        let mut writable = true;
        let mut level = 4;
        while level > S::LEVEL {
            writable &= self.read(level, v) & WRITABLE != 0;
            level -= 1;
        }
        Ok(writable)
    }

    /// Adds `WRITABLE` to every entry above `level` on `v`'s path that lacks
    /// it (present table pointers: the caller walked them), top down, each
    /// followed by [`Self::flush_upgraded`] (see the module docs).
    #[inline(never)]
    pub(crate) fn make_writable_above(&mut self, level: usize, v: u64) {
        let mut upper = 4;
        while upper > level {
            let entry = self.read(upper, v);
            if entry & WRITABLE == 0 {
                self.write(upper, v, entry | WRITABLE);
                self.flush_upgraded();
            }
            upper -= 1;
        }
    }
}
