//! [`Frames`]: the scenarios' own frame allocator over a physical range.
//!
//! Next-fit over a bitmap: allocation continues after the last frame handed
//! out, so a frame that was just freed is *not* handed out again at once.
//! That matters for the stale-translation scenarios: a freed page-table
//! frame coming straight back would hide a missing flush.

use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

/// Most frames a [`Frames`] can manage (256 MiB of 4 KiB frames).
pub const MAX_FRAMES: usize = 64 * 1024;

/// A next-fit bitmap allocator of 4 KiB frames in `[base, base + count * 4 KiB)`.
pub struct Frames {
    base: u64,
    count: usize,
    next: usize,
    used: usize,
    bits: [u64; MAX_FRAMES / 64],
}

impl Frames {
    /// All `count` frames from `base` (4 KiB aligned) free.
    ///
    /// # Safety
    ///
    /// The range is RAM that nothing else uses, for as long as the allocator
    /// (and any mapping of its frames) exists.
    ///
    /// # Panics
    ///
    /// If `base` is not 4 KiB aligned or `count > MAX_FRAMES`.
    #[must_use]
    pub const unsafe fn new(base: PhysAddr, count: usize) -> Self {
        assert!(
            base.as_u64().is_multiple_of(4096),
            "base must be 4 KiB aligned"
        );
        assert!(count <= MAX_FRAMES, "too many frames");
        Frames {
            base: base.as_u64(),
            count,
            next: 0,
            used: 0,
            bits: [0; MAX_FRAMES / 64],
        }
    }

    /// Frames handed out and not returned.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Frames managed.
    pub fn capacity(&self) -> usize {
        self.count
    }

    /// Whether `frame` belongs to this allocator and is allocated.
    pub fn is_allocated(&self, frame: PhysFrame<Size4KiB>) -> bool {
        self.index(frame)
            .is_some_and(|i| self.bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// `n` consecutive free frames (next-fit), all marked allocated; the first is returned.
    pub fn allocate_contiguous(&mut self, n: usize) -> Option<PhysFrame<Size4KiB>> {
        if n == 0 || n > self.count - self.used {
            return None;
        }
        let mut start = 0;
        let mut run = 0;
        for i in 0..self.count {
            if self.bits[i / 64] & (1 << (i % 64)) == 0 {
                if run == 0 {
                    start = i;
                }
                run += 1;
                if run == n {
                    for j in start..start + n {
                        self.bits[j / 64] |= 1 << (j % 64);
                    }
                    self.used += n;
                    return Some(self.frame(start));
                }
            } else {
                run = 0;
            }
        }
        None
    }

    /// Frees `n` frames from `first` (see [`FrameDeallocator::deallocate_frame`]).
    ///
    /// # Safety
    ///
    /// The frames are no longer mapped or otherwise used.
    pub unsafe fn deallocate_contiguous(&mut self, first: PhysFrame<Size4KiB>, n: usize) {
        for i in 0..n as u64 {
            // SAFETY: forwarded from the caller.
            unsafe { self.deallocate_frame(first + i) };
        }
    }

    fn index(&self, frame: PhysFrame<Size4KiB>) -> Option<usize> {
        let offset = frame.start_address().as_u64().checked_sub(self.base)? / 4096;
        let index = usize::try_from(offset).ok()?;
        (index < self.count).then_some(index)
    }

    fn frame(&self, index: usize) -> PhysFrame<Size4KiB> {
        PhysFrame::containing_address(PhysAddr::new(self.base + index as u64 * 4096))
    }
}

// SAFETY: a frame is handed out only while its bit is clear, and its bit is
// set when it is; the range is unused RAM (promise of `Frames::new`).
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if self.used == self.count {
            return None;
        }
        loop {
            let i = self.next;
            self.next = if i + 1 == self.count { 0 } else { i + 1 };
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            if self.bits[word] & bit == 0 {
                self.bits[word] |= bit;
                self.used += 1;
                return Some(self.frame(i));
            }
        }
    }
}

impl FrameDeallocator<Size4KiB> for Frames {
    /// Frees `frame`. A frame outside the range or not allocated is ignored
    /// (scenarios check [`Frames::used`] to catch such mistakes).
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        if let Some(i) = self.index(frame) {
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            if self.bits[word] & bit != 0 {
                self.bits[word] &= !bit;
                self.used -= 1;
            }
        }
    }
}
