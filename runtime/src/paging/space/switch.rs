//! Switching the active address space (CR3).

use x86_64::structures::paging::PhysFrame;

use super::super::{Backend, RecursivePageTable};
use super::{AddressSpace, SpaceError};

/// A backend that can switch address spaces (write CR3).
///
/// # Safety
///
/// Implementers guarantee that [`write_cr3`](Self::write_cr3) makes
/// `level_4` the active level-4 table with the hardware's invalidation
/// (every non-global translation and paging-structure-cache entry dropped)
/// and that [`Backend::level_4_frame`] reports it afterwards.
pub unsafe trait SwitchSpace: Backend {
    /// Loads `level_4` into CR3.
    ///
    /// # Safety
    ///
    /// `level_4` holds a level-4 table that maps everything the running code
    /// needs (its code, stack, data, and the page tables through the
    /// recursive entry).
    unsafe fn write_cr3(&mut self, level_4: PhysFrame);
}

// SAFETY: `Cr3::write` is the architectural switch; `Mmu<true>` reads CR3
// afresh for its level-4 frame.
unsafe impl SwitchSpace for super::super::Mmu<true> {
    #[inline]
    unsafe fn write_cr3(&mut self, level_4: PhysFrame) {
        let (_, flags) = x86_64::registers::control::Cr3::read();
        // SAFETY: the caller's contract.
        unsafe { x86_64::registers::control::Cr3::write(level_4, flags) };
    }
}

#[cfg(feature = "emu")]
// SAFETY: `Machine::set_cr3` switches with the hardware's semantics and
// `cr3` (its level-4 frame) reports the new value.
unsafe impl SwitchSpace for crate::emu::Machine {
    unsafe fn write_cr3(&mut self, level_4: PhysFrame) {
        self.set_cr3(level_4);
    }
}

impl<B: SwitchSpace> RecursivePageTable<B> {
    /// Switches to `space` (a CR3 write) and returns the space that was
    /// active, with `space`'s shared entries and slot (the entries the two
    /// share). The table keeps working, now on `space`, through the same
    /// recursive index.
    ///
    /// Checked first, through the slot: the space is not the active one,
    /// its recursive entry points to itself (present, writable,
    /// supervisor-only, not global) and its slot entry is empty.
    ///
    /// # Errors
    ///
    /// [`SpaceError`], with the space handed back; nothing changed.
    ///
    /// # Safety
    ///
    /// `space` maps everything the running code needs: its code, stack and
    /// data (typically through the shared kernel half); see
    /// [`SwitchSpace::write_cr3`].
    pub unsafe fn switch_to(
        &mut self,
        space: AddressSpace,
    ) -> Result<AddressSpace, (AddressSpace, SpaceError)> {
        let at = match self.open(&space) {
            Ok(at) => at,
            Err(error) => return Err((space, error)),
        };
        // SAFETY: closing the slot.
        unsafe { self.set_slot(at, 0) };
        let previous = self.backend().level_4_frame();
        // SAFETY: the caller's contract; the recursive entry was checked.
        unsafe { self.backend_mut().write_cr3(space.level_4) };
        Ok(AddressSpace {
            level_4: previous,
            shared: space.shared,
            slot: space.slot,
        })
    }
}
