//! [`BitmapAllocator`]: 4 KiB and 2 MiB frames with deallocation, no heap.
//!
//! One bit per 4 KiB frame says whether it is free. Two summaries keep every
//! operation O(1) amortised as memory fills, without rescanning the bitmap:
//!
//! - one bit per bitmap word: "this word has a free frame" — a 4 KiB
//!   allocation scans summary words from a next-fit hint, so it skips 4096
//!   full frames per word read;
//! - one bit per 2 MiB chunk: "all 512 frames are free" — a 2 MiB allocation
//!   scans these from its own hint.
//!
//! A further bit per frame records whether it was usable in the map the
//! allocator was built from, and a bit per chunk whether it was handed out as
//! one 2 MiB frame. With them, deallocation tells a double free, a frame that
//! was never this allocator's, and a 4 KiB piece of a 2 MiB frame apart from a
//! valid free, and refuses them without changing any state
//! ([`DeallocError`]).
//!
//! ```
//! use framealloc::alloc::{normalize, BitmapAllocator, DeallocError, FirmwareRegion,
//!     MemoryRegion, RegionKind::*};
//! use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, Size2MiB, Size4KiB};
//!
//! let firmware = [FirmwareRegion::new(0x20_0000, 0x60_0000, Usable)];
//! let mut regions = [MemoryRegion::default(); 4];
//! let (map, _) = normalize(&firmware, &mut regions, Default::default()).unwrap();
//!
//! let mut storage = [0u64; 64];
//! assert!(BitmapAllocator::words_needed(&map) <= storage.len());
//! // SAFETY: an example: the frames handed out are never touched, and no
//! // other allocator is built over the map.
//! let mut frames = unsafe { BitmapAllocator::from_map(&mut storage, &map) }.unwrap();
//! assert_eq!(frames.free_frames(), 3 * 512);
//!
//! let small: PhysFrame<Size4KiB> = frames.allocate_frame().unwrap();
//! let huge: PhysFrame<Size2MiB> = frames.allocate_frame().unwrap();
//! assert_eq!(huge.start_address().as_u64() % 0x20_0000, 0);
//!
//! unsafe {
//!     // SAFETY: neither frame was used.
//!     frames.try_deallocate_4kib(small).unwrap();
//!     assert_eq!(frames.try_deallocate_4kib(small), Err(DeallocError::AlreadyFree { addr: small.start_address().as_u64() }));
//!     frames.deallocate_frame(huge);
//! }
//! assert_eq!(frames.free_frames(), 3 * 512);
//! ```

use core::fmt;

use x86_64::PhysAddr;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, PageSize, PhysFrame, Size2MiB, Size4KiB,
};

use super::memory_map::{FRAME_SIZE, MemoryMap};

/// 4 KiB frames per 2 MiB chunk.
pub(super) const CHUNK_FRAMES: u64 = Size2MiB::SIZE / Size4KiB::SIZE;
/// Bitmap words per 2 MiB chunk.
pub(super) const CHUNK_WORDS: usize = (CHUNK_FRAMES / 64) as usize;

/// Why a [`BitmapAllocator`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitmapError {
    /// The storage has fewer words than the map needs
    /// ([`BitmapAllocator::words_needed`]).
    StorageTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        available: usize,
    },
}

impl fmt::Display for BitmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BitmapError::StorageTooSmall { needed, available } => write!(
                f,
                "bitmap allocator needs {needed} words of storage but was given {available}"
            ),
        }
    }
}

impl core::error::Error for BitmapError {}

/// Why a deallocation was refused. The allocator is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeallocError {
    /// A foreign frame: it lies outside the memory this allocator manages.
    OutsideRange {
        /// The frame's start address.
        addr: u64,
    },
    /// A foreign frame: it lies in the managed range but was not usable in
    /// the map the allocator was built from (for a 2 MiB frame: some of its
    /// 4 KiB frames were not).
    NotUsable {
        /// The frame's start address.
        addr: u64,
    },
    /// A double free: the frame is already free (for a 2 MiB frame: all of
    /// its 4 KiB frames are).
    AlreadyFree {
        /// The frame's start address.
        addr: u64,
    },
    /// A 4 KiB frame that is part of a 2 MiB frame handed out as a whole;
    /// free the 2 MiB frame instead.
    PartOfHugeFrame {
        /// The 4 KiB frame's start address.
        addr: u64,
    },
    /// A 2 MiB frame that was not handed out as one: its 4 KiB frames were
    /// allocated one by one, or only some of them are in use.
    NotAllocatedAsHugeFrame {
        /// The frame's start address.
        addr: u64,
    },
}

impl fmt::Display for DeallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeallocError::OutsideRange { addr } => write!(
                f,
                "frame {addr:#x} lies outside the memory this allocator manages"
            ),
            DeallocError::NotUsable { addr } => write!(
                f,
                "frame {addr:#x} was not usable memory in the map this allocator was built from"
            ),
            DeallocError::AlreadyFree { addr } => {
                write!(f, "frame {addr:#x} is already free (double free)")
            }
            DeallocError::PartOfHugeFrame { addr } => write!(
                f,
                "frame {addr:#x} is part of a 2 MiB frame; deallocate the 2 MiB frame instead"
            ),
            DeallocError::NotAllocatedAsHugeFrame { addr } => write!(
                f,
                "2 MiB frame {addr:#x} was not allocated as one 2 MiB frame"
            ),
        }
    }
}

impl core::error::Error for DeallocError {}

/// A bitmap frame allocator for 4 KiB and 2 MiB frames over caller storage.
///
/// Build it with [`from_map`](Self::from_map) (typically from a bootloader's
/// hand-off map), or `const`-construct an empty one with [`new`](Self::new)
/// and [`load_map`](Self::load_map) later. Both are `unsafe`: the caller
/// vouches that the map's usable frames are unused and managed by nobody
/// else (see [`from_map`](Self::from_map)). It implements
/// [`FrameAllocator`] and [`FrameDeallocator`] for [`Size4KiB`] and
/// [`Size2MiB`]; a 2 MiB frame is 512 free, 2 MiB-aligned 4 KiB frames.
/// The inherent `allocate_*`/`try_deallocate_*` methods name the size
/// without turbofish and return errors.
///
/// Storage: two bits per 4 KiB frame of the span from the lowest to the
/// highest usable address (rounded out to 2 MiB), plus about 1% of that for
/// the summaries (one bit per bitmap word, two per 2 MiB chunk). For a span
/// starting at a 2 MiB boundary, [`words_for_span`](Self::words_for_span)
/// gives the figure as a `const fn`, so a `static` array can be sized by it:
///
/// | span | `u64` words | bytes |
/// |---|---|---|
/// | 128 MiB | 1,034 | 8.1 KiB |
/// | 1 GiB | 8,272 | 64.6 KiB |
/// | 4 GiB | 33,088 | 258.5 KiB |
/// | 64 GiB | 529,408 | 4.04 MiB |
/// | 1 TiB | 8,470,528 | 64.6 MiB |
///
/// It is neither `Clone` nor `Copy`: a copy would hand out the same frames
/// again.
///
/// ```compile_fail
/// fn clonable<T: Clone>() {}
/// clonable::<framealloc::alloc::BitmapAllocator<'static>>();
/// ```
#[derive(Debug)]
pub struct BitmapAllocator<'a> {
    storage: &'a mut [u64],
    /// Frame number (address / 4096) of bit 0; a multiple of 512.
    base_frame: u64,
    /// Bitmap words (a multiple of 8: whole chunks).
    words: usize,
    /// Offsets of the parts of `storage`; the free bitmap is at 0.
    usable_at: usize,
    summary_at: usize,
    chunk_free_at: usize,
    chunk_huge_at: usize,
    free_frames: u64,
    free_chunks: u64,
    usable_frames: u64,
    /// Next-fit hints: a bitmap word, a chunk.
    word_hint: usize,
    chunk_hint: usize,
    rejected: u64,
    last_rejected: Option<DeallocError>,
}

/// Geometry of the storage for a span of `words` bitmap words. Saturates
/// (where `usize` is narrower than the span needs), so that the total is
/// then more than any storage and the map is refused as too big.
const fn layout(words: usize) -> [usize; 5] {
    let chunks = words / CHUNK_WORDS;
    let usable_at = words;
    let summary_at = usable_at.saturating_add(words);
    let chunk_free_at = summary_at.saturating_add(words.div_ceil(64));
    let chunk_huge_at = chunk_free_at.saturating_add(chunks.div_ceil(64));
    let total = chunk_huge_at.saturating_add(chunks.div_ceil(64));
    [usable_at, summary_at, chunk_free_at, chunk_huge_at, total]
}

/// The span of frames (first frame, bitmap words) covering `map`'s usable
/// regions, rounded out to 2 MiB. Shared with the atomic bitmap, which
/// covers the same span.
pub(super) fn span(map: &MemoryMap<'_>) -> (u64, usize) {
    let mut usable = map.usable();
    let Some(first) = usable.next() else {
        return (0, 0);
    };
    let last = usable.last().unwrap_or(first);
    let start = first.start / Size2MiB::SIZE * Size2MiB::SIZE;
    let end = last.end.next_multiple_of(Size2MiB::SIZE);
    let frames = (end - start) / FRAME_SIZE;
    let words = usize::try_from(frames / 64).unwrap_or(usize::MAX);
    (start / FRAME_SIZE, words)
}

impl<'a> BitmapAllocator<'a> {
    /// An allocator that manages no memory yet, keeping `storage` for
    /// [`load_map`](Self::load_map). `const`, so it can initialise a
    /// `static`. Safe: it hands out no frame until `load_map` gives it some.
    ///
    /// ```
    /// use framealloc::alloc::BitmapAllocator;
    /// const EMPTY: BitmapAllocator<'static> = BitmapAllocator::new(&mut []);
    /// assert_eq!(EMPTY.free_frames(), 0);
    /// ```
    #[must_use]
    pub const fn new(storage: &'a mut [u64]) -> Self {
        BitmapAllocator {
            storage,
            base_frame: 0,
            words: 0,
            usable_at: 0,
            summary_at: 0,
            chunk_free_at: 0,
            chunk_huge_at: 0,
            free_frames: 0,
            free_chunks: 0,
            usable_frames: 0,
            word_hint: 0,
            chunk_hint: 0,
            rejected: 0,
            last_rejected: None,
        }
    }

    /// The number of `u64` words of storage needed for `map`.
    #[must_use]
    pub fn words_needed(map: &MemoryMap<'_>) -> usize {
        layout(span(map).1)[4]
    }

    /// The number of `u64` words of storage needed for usable memory that
    /// spans `bytes` from a 2 MiB boundary (rounded up to whole 2 MiB
    /// chunks; a span that starts inside a chunk may need one chunk more:
    /// [`words_needed`](Self::words_needed) is exact for a map).
    ///
    /// ```
    /// use framealloc::alloc::BitmapAllocator;
    /// const WORDS: usize = BitmapAllocator::words_for_span(4 << 30);
    /// static mut STORAGE: [u64; WORDS] = [0; WORDS];
    /// assert_eq!(WORDS, 33_088);
    /// ```
    #[must_use]
    pub const fn words_for_span(bytes: u64) -> usize {
        let chunks = bytes.div_ceil(Size2MiB::SIZE);
        let words = match chunks.checked_mul(CHUNK_WORDS as u64) {
            Some(words) if words <= usize::MAX as u64 => words as usize,
            _ => usize::MAX,
        };
        layout(words)[4]
    }

    /// An allocator whose free frames are the usable regions of `map`.
    ///
    /// O(span / 64) time.
    ///
    /// # Errors
    ///
    /// [`BitmapError::StorageTooSmall`] if `storage` has fewer than
    /// [`words_needed`](Self::words_needed) words.
    ///
    /// # Safety
    ///
    /// The allocator hands out every 4 KiB frame of `map`'s `Usable`
    /// regions (and 2 MiB runs of them) as unused memory that its caller may
    /// own, so the caller must guarantee that each of those frames
    ///
    /// - is RAM that nothing uses now (no code, data, page table, stack,
    ///   DMA buffer or device memory lives there), and
    /// - is used by nothing else from now on except through a frame this
    ///   allocator hands out: no other allocator manages it — in particular
    ///   no second `BitmapAllocator` is built from the same map, and a
    ///   [`BumpAllocator`](super::BumpAllocator) whose
    ///   [`hand_off`](super::BumpAllocator::hand_off) map this is allocates
    ///   no more (a [`MemoryMap`] is `Copy`, so the map itself cannot prevent
    ///   either) — and no code touches it behind the allocator's back.
    ///
    /// Frames deallocated later are covered by the `# Safety` contract of
    /// the deallocation methods instead.
    pub unsafe fn from_map(
        storage: &'a mut [u64],
        map: &MemoryMap<'_>,
    ) -> Result<Self, BitmapError> {
        let mut allocator = Self::new(storage);
        // SAFETY: the caller upholds `load_map`'s contract, which is ours;
        // a new allocator has handed out no frame it could forget.
        unsafe { allocator.load_map(map)? };
        Ok(allocator)
    }

    /// Forgets all state and makes the usable regions of `map` the free
    /// frames.
    ///
    /// # Errors
    ///
    /// [`BitmapError::StorageTooSmall`]; the allocator is unchanged.
    ///
    /// # Safety
    ///
    /// As for [`from_map`](Self::from_map): every frame of `map`'s
    /// `Usable` regions must be unused and managed by nobody else from now
    /// on. This includes frames this allocator handed out before the call:
    /// it forgets them, so any that lie in a usable region of `map` and are
    /// still in use would be handed out a second time.
    pub unsafe fn load_map(&mut self, map: &MemoryMap<'_>) -> Result<(), BitmapError> {
        let (base_frame, words) = span(map);
        let [usable_at, summary_at, chunk_free_at, chunk_huge_at, total] = layout(words);
        if total > self.storage.len() {
            return Err(BitmapError::StorageTooSmall {
                needed: total,
                available: self.storage.len(),
            });
        }
        *self = BitmapAllocator {
            base_frame,
            words,
            usable_at,
            summary_at,
            chunk_free_at,
            chunk_huge_at,
            ..Self::new(core::mem::take(&mut self.storage))
        };
        self.storage[..total].fill(0);
        for region in map.usable() {
            let first = region.start / FRAME_SIZE - base_frame;
            let last = region.end / FRAME_SIZE - base_frame;
            self.set_range(first, last);
        }
        for word in 0..words {
            let bits = self.storage[word];
            self.storage[usable_at + word] = bits;
            if bits != 0 {
                self.storage[summary_at + word / 64] |= 1 << (word % 64);
            }
            self.free_frames += u64::from(bits.count_ones());
        }
        for chunk in 0..words / CHUNK_WORDS {
            if self.chunk_all(chunk, u64::MAX) {
                self.set_chunk_bit(chunk_free_at, chunk, true);
                self.free_chunks += 1;
            }
        }
        self.usable_frames = self.free_frames;
        Ok(())
    }

    /// Marks frames `[first, last)` (relative) free in the free bitmap.
    fn set_range(&mut self, first: u64, last: u64) {
        let mut frame = first;
        while frame < last {
            let word = (frame / 64) as usize;
            let bit = frame % 64;
            let n = (64 - bit).min(last - frame);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.storage[word] |= mask;
            frame += n;
        }
    }

    fn chunk_all(&self, chunk: usize, value: u64) -> bool {
        let words = &self.storage[chunk * CHUNK_WORDS..(chunk + 1) * CHUNK_WORDS];
        words.iter().all(|&w| w == value)
    }

    #[inline]
    fn chunk_bit(&self, part: usize, chunk: usize) -> bool {
        self.storage[part + chunk / 64] & (1 << (chunk % 64)) != 0
    }

    fn set_chunk_bit(&mut self, part: usize, chunk: usize, on: bool) {
        let word = &mut self.storage[part + chunk / 64];
        if on {
            *word |= 1 << (chunk % 64);
        } else {
            *word &= !(1 << (chunk % 64));
        }
    }

    /// Finds a set bit in the bit array `storage[part..part + len]` of
    /// `bits` bits, scanning from bit `hint` and wrapping around. The
    /// caller knows one is set.
    fn find_set(&self, part: usize, bits: usize, hint: usize) -> Option<usize> {
        let len = bits.div_ceil(64);
        let words = &self.storage[part..part + len];
        let start = hint / 64;
        let first = words[start] & (u64::MAX << (hint % 64));
        if first != 0 {
            return Some(start * 64 + first.trailing_zeros() as usize);
        }
        for i in (start + 1..len).chain(0..=start) {
            if words[i] != 0 {
                return Some(i * 64 + words[i].trailing_zeros() as usize);
            }
        }
        None
    }

    /// The address of relative frame `index`.
    #[inline]
    fn addr_of(&self, index: u64) -> u64 {
        (self.base_frame + index) * FRAME_SIZE
    }

    /// Allocates a 4 KiB frame, or `None` if none is free. O(1) amortised.
    #[inline]
    pub fn allocate_4kib(&mut self) -> Option<PhysFrame<Size4KiB>> {
        if self.free_frames == 0 {
            return None;
        }
        // Next fit: the hint word usually still has a free frame.
        let word = if self.storage[self.word_hint] != 0 {
            self.word_hint
        } else {
            self.find_set(self.summary_at, self.words, self.word_hint)?
        };
        let bits = self.storage[word];
        let bit = bits.trailing_zeros();
        let remaining = bits & (bits - 1);
        self.storage[word] = remaining;
        if remaining == 0 {
            self.storage[self.summary_at + word / 64] &= !(1 << (word % 64));
        }
        // Only a word that was all free can belong to a free chunk.
        if bits == u64::MAX {
            let chunk = word / CHUNK_WORDS;
            if self.chunk_bit(self.chunk_free_at, chunk) {
                self.set_chunk_bit(self.chunk_free_at, chunk, false);
                self.free_chunks -= 1;
            }
        }
        self.free_frames -= 1;
        self.word_hint = word;
        let addr = self.addr_of(word as u64 * 64 + u64::from(bit));
        // SAFETY: a frame number times 4096 is 4 KiB aligned; below 2^52
        // because it came from a normalised map.
        Some(unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_truncate(addr)) })
    }

    /// Allocates a 2 MiB frame (512 free, aligned 4 KiB frames), or `None`
    /// if no such run is free. O(1) amortised.
    #[inline]
    pub fn allocate_2mib(&mut self) -> Option<PhysFrame<Size2MiB>> {
        if self.free_chunks == 0 {
            return None;
        }
        let chunks = self.words / CHUNK_WORDS;
        let chunk = self.find_set(self.chunk_free_at, chunks, self.chunk_hint)?;
        self.storage[chunk * CHUNK_WORDS..(chunk + 1) * CHUNK_WORDS].fill(0);
        // A chunk's 8 words share one summary word (8 divides 64).
        let first_word = chunk * CHUNK_WORDS;
        self.storage[self.summary_at + first_word / 64] &= !(0xff << (first_word % 64));
        self.set_chunk_bit(self.chunk_free_at, chunk, false);
        self.set_chunk_bit(self.chunk_huge_at, chunk, true);
        self.free_chunks -= 1;
        self.free_frames -= CHUNK_FRAMES;
        self.chunk_hint = chunk;
        let addr = self.addr_of(chunk as u64 * CHUNK_FRAMES);
        // SAFETY: `base_frame` is a multiple of 512, so `addr` is 2 MiB
        // aligned; below 2^52 because it came from a normalised map.
        Some(unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_truncate(addr)) })
    }

    /// The relative index of the frame at `addr`, if in range.
    fn index_of(&self, addr: u64) -> Result<u64, DeallocError> {
        let frame = addr / FRAME_SIZE;
        frame
            .checked_sub(self.base_frame)
            .filter(|&i| i < self.words as u64 * 64)
            .ok_or(DeallocError::OutsideRange { addr })
    }

    /// Frees a 4 KiB frame, or says why it cannot be freed (the allocator is
    /// then unchanged). O(1).
    ///
    /// # Errors
    ///
    /// [`DeallocError::OutsideRange`] or [`DeallocError::NotUsable`] for a
    /// foreign frame, [`DeallocError::AlreadyFree`] for a double free,
    /// [`DeallocError::PartOfHugeFrame`] for a piece of a 2 MiB frame.
    ///
    /// # Safety
    ///
    /// The frame must be unused: after this call it may be handed out again.
    pub unsafe fn try_deallocate_4kib(
        &mut self,
        frame: PhysFrame<Size4KiB>,
    ) -> Result<(), DeallocError> {
        let addr = frame.start_address().as_u64();
        let index = self.index_of(addr)?;
        let word = (index / 64) as usize;
        let mask = 1u64 << (index % 64);
        if self.storage[self.usable_at + word] & mask == 0 {
            return Err(DeallocError::NotUsable { addr });
        }
        if self.storage[word] & mask != 0 {
            return Err(DeallocError::AlreadyFree { addr });
        }
        let chunk = word / CHUNK_WORDS;
        if self.chunk_bit(self.chunk_huge_at, chunk) {
            return Err(DeallocError::PartOfHugeFrame { addr });
        }
        self.storage[word] |= mask;
        self.storage[self.summary_at + word / 64] |= 1 << (word % 64);
        self.free_frames += 1;
        if self.chunk_all(chunk, u64::MAX) {
            self.set_chunk_bit(self.chunk_free_at, chunk, true);
            self.free_chunks += 1;
        }
        Ok(())
    }

    /// Frees a 2 MiB frame that was allocated as one, or says why it cannot
    /// be freed (the allocator is then unchanged). O(1).
    ///
    /// # Errors
    ///
    /// [`DeallocError::OutsideRange`] or [`DeallocError::NotUsable`] for a
    /// foreign frame, [`DeallocError::AlreadyFree`] for a double free,
    /// [`DeallocError::NotAllocatedAsHugeFrame`] if its 4 KiB frames were
    /// allocated separately.
    ///
    /// # Safety
    ///
    /// The frame must be unused: after this call it may be handed out again.
    pub unsafe fn try_deallocate_2mib(
        &mut self,
        frame: PhysFrame<Size2MiB>,
    ) -> Result<(), DeallocError> {
        let addr = frame.start_address().as_u64();
        let index = self.index_of(addr)?;
        let chunk = (index / CHUNK_FRAMES) as usize;
        let words = chunk * CHUNK_WORDS..(chunk + 1) * CHUNK_WORDS;
        let usable = &self.storage[self.usable_at + words.start..self.usable_at + words.end];
        if usable.iter().any(|&w| w != u64::MAX) {
            return Err(DeallocError::NotUsable { addr });
        }
        if !self.chunk_bit(self.chunk_huge_at, chunk) {
            return Err(if self.chunk_all(chunk, u64::MAX) {
                DeallocError::AlreadyFree { addr }
            } else {
                DeallocError::NotAllocatedAsHugeFrame { addr }
            });
        }
        self.storage[words.clone()].fill(u64::MAX);
        self.storage[self.summary_at + words.start / 64] |= 0xff << (words.start % 64);
        self.set_chunk_bit(self.chunk_huge_at, chunk, false);
        self.set_chunk_bit(self.chunk_free_at, chunk, true);
        self.free_chunks += 1;
        self.free_frames += CHUNK_FRAMES;
        Ok(())
    }

    /// Free 4 KiB frames (counting those inside free 2 MiB chunks).
    pub const fn free_frames(&self) -> u64 {
        self.free_frames
    }

    /// Free 2 MiB frames (fully free, aligned chunks).
    pub const fn free_2mib_frames(&self) -> u64 {
        self.free_chunks
    }

    /// The 4 KiB frames that were usable in the map: the most that can be
    /// free.
    pub const fn usable_frames(&self) -> u64 {
        self.usable_frames
    }

    /// Whether the 4 KiB frame at `addr` is free.
    pub fn is_free(&self, addr: u64) -> bool {
        self.index_of(addr)
            .is_ok_and(|i| self.storage[(i / 64) as usize] & (1 << (i % 64)) != 0)
    }

    /// How many deallocations through [`FrameDeallocator`] were refused.
    pub const fn rejected_deallocations(&self) -> u64 {
        self.rejected
    }

    /// The last deallocation refused through [`FrameDeallocator`], if any.
    pub const fn last_rejected(&self) -> Option<DeallocError> {
        self.last_rejected
    }

    fn record(&mut self, result: Result<(), DeallocError>) {
        if let Err(error) = result {
            self.rejected += 1;
            self.last_rejected = Some(error);
        }
    }
}

// SAFETY: a frame is handed out only if its free bit is set, and the bit is
// cleared before returning, so no frame is handed out twice while in use.
// Free bits are set only by the `unsafe` `load_map`/`from_map`, for the
// frames of usable regions whose caller promised they are unused and
// managed by nobody else, and by the `unsafe` deallocation methods, whose
// caller promises the frame is unused. The type is neither `Clone` nor
// `Copy`, so no copy can hand out the same frames again.
unsafe impl FrameAllocator<Size4KiB> for BitmapAllocator<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.allocate_4kib()
    }
}

// SAFETY: as for 4 KiB; a chunk is handed out only when all 512 free bits
// are set, and all are cleared before returning.
unsafe impl FrameAllocator<Size2MiB> for BitmapAllocator<'_> {
    #[inline]
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size2MiB>> {
        self.allocate_2mib()
    }
}

impl FrameDeallocator<Size4KiB> for BitmapAllocator<'_> {
    /// Frees the frame. A foreign frame, a double free, or a piece of a 2 MiB
    /// frame is refused: no state changes, the refusal is counted
    /// ([`rejected_deallocations`](BitmapAllocator::rejected_deallocations))
    /// and kept ([`last_rejected`](BitmapAllocator::last_rejected)); it does
    /// not panic. Use
    /// [`try_deallocate_4kib`](BitmapAllocator::try_deallocate_4kib) to get
    /// the error directly.
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        // SAFETY: the caller guarantees the frame is unused.
        let result = unsafe { self.try_deallocate_4kib(frame) };
        self.record(result);
    }
}

impl FrameDeallocator<Size2MiB> for BitmapAllocator<'_> {
    /// Frees the frame; refusals are handled as for 4 KiB frames.
    #[inline]
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size2MiB>) {
        // SAFETY: the caller guarantees the frame is unused.
        let result = unsafe { self.try_deallocate_2mib(frame) };
        self.record(result);
    }
}
