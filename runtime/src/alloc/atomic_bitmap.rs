//! [`AtomicBitmapAllocator`]: a lock-free bitmap allocator for 4 KiB and
//! 2 MiB frames, shared by every CPU through `&self`.
//!
//! The same map and the same storage plan as the single-CPU
//! [`BitmapAllocator`](super::BitmapAllocator), in atomic words:
//!
//! - one bit per 4 KiB frame, set while it is free; an allocation clears it
//!   with a compare-and-swap on its word, a deallocation sets it with
//!   `fetch_or`, so two CPUs never get the same frame;
//! - one summary bit per bitmap word, "this word may have a free frame": a
//!   4 KiB allocation scans summary words from a next-fit hint and skips
//!   4096 allocated frames per word read. It is kept *conservative*: a word
//!   with a free frame always has its summary bit set once every operation
//!   on it has returned (the CPU that empties a word clears the bit, then
//!   looks at the word again and sets the bit back if a free slipped in); a
//!   bit may be set for an empty word for a while, and the next scan that
//!   finds it so clears it;
//! - one bit per 2 MiB chunk, "may be all free" (conservative in the same
//!   way), scanned by 2 MiB allocations, which then claim the chunk's eight
//!   words one by one from all-free to all-taken and put back the ones they
//!   took if another CPU got in first;
//! - one bit per frame for "usable in the map" and one per chunk for "handed
//!   out as a 2 MiB frame", so that deallocation refuses a double free, a
//!   foreign frame or a piece of a 2 MiB frame without changing any state
//!   ([`DeallocError`]), like the single-CPU bitmap.
//!
//! There is no global counter to contend on: [`free_frames`] and
//! [`free_2mib_frames`] count the bitmap (O(span / 64)), for statistics.
//! Batches ([`SharedFrameAllocator::allocate_frames`]) take up to 64 frames
//! with one compare-and-swap, which is what the per-CPU caches of
//! [`percpu`](super::percpu) refill through.
//!
//! [`free_frames`]: AtomicBitmapAllocator::free_frames
//! [`free_2mib_frames`]: AtomicBitmapAllocator::free_2mib_frames
//!
//! ```
//! use core::sync::atomic::AtomicU64;
//! use framealloc::alloc::{normalize, AtomicBitmapAllocator, DeallocError, FirmwareRegion,
//!     MemoryRegion, RegionKind::Usable};
//! use framealloc::{PhysFrame, Size2MiB, Size4KiB};
//!
//! let firmware = [FirmwareRegion::new(0x20_0000, 0x60_0000, Usable)];
//! let mut regions = [MemoryRegion::default(); 4];
//! let (map, _) = normalize(&firmware, &mut regions, Default::default()).unwrap();
//!
//! let storage: Vec<AtomicU64> = (0..AtomicBitmapAllocator::words_needed(&map))
//!     .map(|_| AtomicU64::new(0))
//!     .collect();
//! let frames = AtomicBitmapAllocator::new(&storage);
//! // SAFETY: an example: the frames handed out are never touched, and the
//! // storage and the map's frames are managed by nothing else.
//! unsafe { frames.load_map(&map) }.unwrap();
//!
//! std::thread::scope(|s| {
//!     let a = s.spawn(|| frames.allocate_4kib().unwrap());
//!     let b = s.spawn(|| frames.allocate_4kib().unwrap());
//!     assert_ne!(a.join().unwrap(), b.join().unwrap());
//! });
//! let huge: PhysFrame<Size2MiB> = frames.allocate_2mib().unwrap();
//! unsafe {
//!     // SAFETY: the frame was never used.
//!     frames.try_deallocate_2mib(huge).unwrap();
//!     assert_eq!(frames.try_deallocate_2mib(huge),
//!         Err(DeallocError::AlreadyFree { addr: huge.start_address().as_u64() }));
//! }
//! assert_eq!(frames.free_frames(), 3 * 512 - 2);
//! ```

use core::fmt;
use core::mem::MaybeUninit;
// The allocator's own bookkeeping, which loom need not model: written once
// before the map is published, or only hints.
use core::sync::atomic::{
    AtomicBool as PlainBool, AtomicU64 as PlainU64, AtomicUsize as PlainUsize,
};

use x86_64::PhysAddr;
use x86_64::structures::paging::{PageSize, PhysFrame, Size2MiB, Size4KiB};

use super::bitmap::{CHUNK_FRAMES, CHUNK_WORDS, DeallocError, span};
use super::memory_map::{FRAME_SIZE, MemoryMap};
use super::shared::{SharedFrameAllocator, SharedFrameDeallocator, SharedView};
use super::sync::{AtomicU64, Ordering};

/// Why an [`AtomicBitmapAllocator`] could not load a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicBitmapError {
    /// The storage has fewer words than the map needs
    /// ([`AtomicBitmapAllocator::words_needed`]). Nothing changed; a
    /// later `load_map` with a smaller map may succeed.
    StorageTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        available: usize,
    },
    /// A map was loaded already. An allocator shared by several CPUs
    /// cannot forget its frames while they may be in use.
    AlreadyLoaded,
}

impl fmt::Display for AtomicBitmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AtomicBitmapError::StorageTooSmall { needed, available } => write!(
                f,
                "atomic bitmap allocator needs {needed} words of storage but was given {available}"
            ),
            AtomicBitmapError::AlreadyLoaded => {
                write!(f, "atomic bitmap allocator already has a map")
            }
        }
    }
}

impl core::error::Error for AtomicBitmapError {}

/// The loaded span: `words` bitmap words from frame `base_frame`. The
/// parts of the storage follow the free bitmap in this order: usable bits,
/// summary, chunk "may be all free" bits, chunk "handed out whole" bits.
#[derive(Clone, Copy)]
struct Geometry {
    words: usize,
    base_frame: u64,
}

impl Geometry {
    /// The storage words needed for `words` bitmap words. Saturates where
    /// `usize` is narrower than the span needs, so that the total then
    /// exceeds any storage and the map is refused.
    const fn total(words: usize) -> usize {
        let chunk_bits = (words / CHUNK_WORDS).div_ceil(64);
        words
            .saturating_mul(2)
            .saturating_add(words.div_ceil(64))
            .saturating_add(2 * chunk_bits)
    }

    // The offsets below are computed with plain arithmetic on every call
    // (cheaper than loading them): `load_map` checked that `total` fits.

    #[inline]
    const fn usable_at(&self) -> usize {
        self.words
    }

    #[inline]
    const fn summary_at(&self) -> usize {
        2 * self.words
    }

    #[inline]
    const fn chunk_free_at(&self) -> usize {
        2 * self.words + self.words.div_ceil(64)
    }

    #[inline]
    const fn chunk_huge_at(&self) -> usize {
        self.chunk_free_at() + self.chunks().div_ceil(64)
    }

    #[inline]
    const fn chunks(&self) -> usize {
        self.words / CHUNK_WORDS
    }
}

/// The lowest `max` set bits of `bits` (all of them if there are fewer).
#[inline]
fn lowest_bits(bits: u64, max: usize) -> u64 {
    if max >= 64 {
        return bits;
    }
    let mut rest = bits;
    for _ in 0..max {
        if rest == 0 {
            break;
        }
        rest &= rest - 1;
    }
    bits & !rest
}

/// A lock-free bitmap frame allocator for 4 KiB and 2 MiB frames over caller
/// storage, shared through `&self`.
///
/// `const`-construct it empty with [`new`](Self::new) (in a `static` if you
/// like), then give it the hand-off map once with the `unsafe`
/// [`load_map`](Self::load_map). It implements [`SharedFrameAllocator`] and
/// [`SharedFrameDeallocator`] for [`Size4KiB`] and [`Size2MiB`]; where
/// `x86_64` wants a [`FrameAllocator`](crate::FrameAllocator), pass
/// [`view`](Self::view). Every CPU may call every method at once; none
/// blocks, and every 4 KiB operation is O(1) amortised (measured flat from
/// 1 Ki to 1 Mi frames by `cargo bench -p tests --bench shared`).
///
/// Storage: the same as [`BitmapAllocator`](super::BitmapAllocator)'s, two
/// bits per 4 KiB frame of the span plus about 1/32 of that for the
/// summaries ([`words_needed`](Self::words_needed)).
///
/// It is neither `Clone` nor `Copy`, and the storage must not be touched by
/// anything else once a map is loaded (see [`load_map`](Self::load_map)).
pub struct AtomicBitmapAllocator<'a> {
    storage: &'a [AtomicU64],
    /// Bitmap words; 0 until a map is loaded. Published last (`Release`),
    /// read first (`Acquire`), so the rest of the geometry and the initial
    /// bitmap are visible to whoever sees a non-zero value.
    words: PlainUsize,
    base_frame: PlainU64,
    usable_frames: PlainU64,
    /// Set by the one `load_map` that may run.
    loading: PlainBool,
    /// Next-fit hints, written by whichever CPU moves on: on a cache line
    /// of their own, so that the writes do not evict the read-mostly
    /// fields above from every other CPU.
    hints: Hints,
    rejected: PlainU64,
    /// The last refusal: the frame address with the error's code in the low
    /// 12 bits (0: none).
    last_rejected: PlainU64,
}

/// The next-fit hints (a bitmap word, a chunk); only hints.
#[repr(align(64))]
struct Hints {
    word: PlainUsize,
    chunk: PlainUsize,
}

impl fmt::Debug for AtomicBitmapAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicBitmapAllocator")
            .field("storage_words", &self.storage.len())
            .field("span_words", &self.words.load(Ordering::Relaxed))
            .field("base_frame", &self.base_frame.load(Ordering::Relaxed))
            .field("rejected", &self.rejected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<'a> AtomicBitmapAllocator<'a> {
    /// An allocator that manages no memory yet, keeping `storage` for
    /// [`load_map`](Self::load_map). `const`, so it can initialise a
    /// `static`. Safe: it hands out nothing until a map is loaded.
    ///
    /// ```
    /// use core::sync::atomic::AtomicU64;
    /// use framealloc::alloc::AtomicBitmapAllocator;
    /// static STORAGE: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];
    /// static FRAMES: AtomicBitmapAllocator<'static> = AtomicBitmapAllocator::new(&STORAGE);
    /// assert_eq!(FRAMES.allocate_4kib(), None);
    /// ```
    #[must_use]
    pub const fn new(storage: &'a [AtomicU64]) -> Self {
        AtomicBitmapAllocator {
            storage,
            words: PlainUsize::new(0),
            base_frame: PlainU64::new(0),
            usable_frames: PlainU64::new(0),
            loading: PlainBool::new(false),
            hints: Hints {
                word: PlainUsize::new(0),
                chunk: PlainUsize::new(0),
            },
            rejected: PlainU64::new(0),
            last_rejected: PlainU64::new(0),
        }
    }

    /// The number of storage words needed for `map`.
    #[must_use]
    pub fn words_needed(map: &MemoryMap<'_>) -> usize {
        Geometry::total(span(map).1)
    }

    /// Makes the usable regions of `map` the free frames. Once: a second
    /// call returns [`AtomicBitmapError::AlreadyLoaded`]. O(span / 64).
    ///
    /// Other CPUs may already call the allocator: until this call returns
    /// they see an empty allocator, then the whole map.
    ///
    /// # Errors
    ///
    /// [`AtomicBitmapError::StorageTooSmall`] (nothing changes; a later call
    /// may succeed) or [`AtomicBitmapError::AlreadyLoaded`].
    ///
    /// # Safety
    ///
    /// As for [`BitmapAllocator::from_map`](super::BitmapAllocator::from_map):
    /// every 4 KiB frame of `map`'s `Usable` regions is RAM that nothing uses
    /// now and that nothing else manages or touches from now on except
    /// through a frame this allocator hands out. In addition, the storage
    /// given to [`new`](Self::new) is read and written by nothing but this
    /// allocator from now on (no second allocator over it, no direct
    /// stores): its bits are what keeps frames unique.
    pub unsafe fn load_map(&self, map: &MemoryMap<'_>) -> Result<(), AtomicBitmapError> {
        let (base_frame, words) = span(map);
        let g = Geometry { words, base_frame };
        let total = Geometry::total(words);
        if total > self.storage.len() {
            return Err(AtomicBitmapError::StorageTooSmall {
                needed: total,
                available: self.storage.len(),
            });
        }
        if self.loading.swap(true, Ordering::AcqRel) {
            return Err(AtomicBitmapError::AlreadyLoaded);
        }
        let storage = &self.storage[..total];
        for word in storage {
            word.store(0, Ordering::Relaxed);
        }
        for region in map.usable() {
            let mut frame = region.start / FRAME_SIZE - base_frame;
            let last = region.end / FRAME_SIZE - base_frame;
            while frame < last {
                let bit = frame % 64;
                let n = (64 - bit).min(last - frame);
                let mask = if n == 64 {
                    u64::MAX
                } else {
                    ((1u64 << n) - 1) << bit
                };
                storage[(frame / 64) as usize].fetch_or(mask, Ordering::Relaxed);
                frame += n;
            }
        }
        let mut usable = 0;
        for word in 0..words {
            let bits = storage[word].load(Ordering::Relaxed);
            storage[g.usable_at() + word].store(bits, Ordering::Relaxed);
            if bits != 0 {
                storage[g.summary_at() + word / 64].fetch_or(1 << (word % 64), Ordering::Relaxed);
            }
            usable += u64::from(bits.count_ones());
        }
        for chunk in 0..g.chunks() {
            if self.chunk_is_free(&g, chunk) {
                storage[g.chunk_free_at() + chunk / 64]
                    .fetch_or(1 << (chunk % 64), Ordering::Relaxed);
            }
        }
        self.base_frame.store(base_frame, Ordering::Relaxed);
        self.usable_frames.store(usable, Ordering::Relaxed);
        // Publishes the geometry and the bitmap above.
        self.words.store(words, Ordering::Release);
        Ok(())
    }

    /// The loaded geometry, or `None` before a map is loaded.
    #[inline]
    fn geometry(&self) -> Option<Geometry> {
        let words = self.words.load(Ordering::Acquire);
        if words == 0 {
            return None;
        }
        Some(Geometry {
            words,
            base_frame: self.base_frame.load(Ordering::Relaxed),
        })
    }

    #[inline]
    fn word(&self, index: usize) -> &AtomicU64 {
        &self.storage[index]
    }

    /// Whether all eight words of `chunk` are all free.
    fn chunk_is_free(&self, _g: &Geometry, chunk: usize) -> bool {
        (chunk * CHUNK_WORDS..(chunk + 1) * CHUNK_WORDS)
            .all(|w| self.word(w).load(Ordering::SeqCst) == u64::MAX)
    }

    /// Clears the summary bit of bitmap word `w`, then sets it back if the
    /// word has a free frame again: a free that raced with the clear either
    /// set its bit before the clear (and is seen by the re-check) or after.
    fn clear_summary(&self, g: &Geometry, w: usize) {
        let summary = self.word(g.summary_at() + w / 64);
        let bit = 1 << (w % 64);
        summary.fetch_and(!bit, Ordering::SeqCst);
        if self.word(w).load(Ordering::SeqCst) != 0 {
            summary.fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// Sets the "may be all free" bit of `chunk` if it is all free now.
    ///
    /// Two CPUs may each complete the chunk's last words at once (a free
    /// in one word, a failed claim putting back others) and then each
    /// look at the other's words. The looks are read-modify-writes
    /// (`fetch_or(0)`), not loads: a read-modify-write reads the latest
    /// value of its word, so of two such CPUs at least one sees the other's
    /// write and sets the bit (with plain loads this needs sequential
    /// consistency, which `loom` does not model). Rare: once per word
    /// filled by a free, and per failed claim.
    fn mark_chunk_if_free(&self, g: &Geometry, chunk: usize) {
        let all_free = (chunk * CHUNK_WORDS..(chunk + 1) * CHUNK_WORDS)
            .all(|w| self.word(w).fetch_or(0, Ordering::AcqRel) == u64::MAX);
        if all_free {
            self.word(g.chunk_free_at() + chunk / 64)
                .fetch_or(1 << (chunk % 64), Ordering::SeqCst);
        }
    }

    /// Takes up to `max` free frames from bitmap word `w`; returns their
    /// bits (0 if the word has none).
    #[inline]
    fn take_bits(&self, g: &Geometry, w: usize, max: usize) -> u64 {
        let word = self.word(w);
        let mut current = word.load(Ordering::Relaxed);
        loop {
            if current == 0 {
                return 0;
            }
            let taken = lowest_bits(current, max);
            // Acquire: the frames' last owner freed them with a release.
            match word.compare_exchange_weak(
                current,
                current & !taken,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if current & !taken == 0 || current == u64::MAX {
                        self.after_take(g, w, current, taken);
                    }
                    return taken;
                }
                Err(now) => current = now,
            }
        }
    }

    /// The rarer bookkeeping after `taken` was taken from word `w`, which
    /// held `before`: once per 64 frames at most.
    #[cold]
    fn after_take(&self, g: &Geometry, w: usize, before: u64, taken: u64) {
        if before & !taken == 0 {
            self.clear_summary(g, w);
        }
        if before == u64::MAX {
            // The chunk is no longer all free. Whoever frees these frames
            // again sets the bit again.
            let chunk = w / CHUNK_WORDS;
            self.word(g.chunk_free_at() + chunk / 64)
                .fetch_and(!(1 << (chunk % 64)), Ordering::SeqCst);
        }
    }

    /// Finds a word with free frames and takes up to `max` (≥ 1) of them:
    /// the word and the bits taken. Starts at the shared next-fit hint and
    /// moves it.
    #[inline]
    fn take(&self, g: &Geometry, max: usize) -> Option<(usize, u64)> {
        let hint = self.hints.word.load(Ordering::Relaxed);
        let hint = if hint < g.words { hint } else { 0 };
        let (w, taken) = self.take_at(g, hint, max)?;
        if w != hint {
            self.hints.word.store(w, Ordering::Relaxed);
        }
        Some((w, taken))
    }

    /// As [`take`](Self::take), from word `start` (`< words`), leaving the
    /// shared hint alone. The start word first, inline; the scan out of
    /// line.
    #[inline]
    fn take_at(&self, g: &Geometry, start: usize, max: usize) -> Option<(usize, u64)> {
        let taken = self.take_bits(g, start, max);
        if taken != 0 {
            return Some((start, taken));
        }
        self.scan(g, start, max)
    }

    /// Scans the summary from word `hint` for a word with free frames.
    #[inline(never)]
    fn scan(&self, g: &Geometry, hint: usize, max: usize) -> Option<(usize, u64)> {
        let len = g.words.div_ceil(64);
        let start = hint / 64;
        for i in (start..len).chain(0..=start) {
            let mut candidates = self.word(g.summary_at() + i).load(Ordering::Acquire);
            while candidates != 0 {
                let w = i * 64 + candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                let taken = self.take_bits(g, w, max);
                if taken != 0 {
                    return Some((w, taken));
                }
                // A stale summary bit: the word is empty.
                self.clear_summary(g, w);
            }
        }
        None
    }

    #[inline]
    fn frame_at<S: PageSize>(g: &Geometry, index: u64) -> PhysFrame<S> {
        let addr = (g.base_frame + index) * FRAME_SIZE;
        // SAFETY: frame numbers of a 2 MiB-aligned span times 4096: aligned
        // to 4 KiB, and to 2 MiB for chunk starts (the only indices used for
        // `Size2MiB`); below 2^52 because they came from a normalised map.
        unsafe { PhysFrame::from_start_address_unchecked(PhysAddr::new_truncate(addr)) }
    }

    /// Allocates a 4 KiB frame, or `None` if none is free. O(1) amortised;
    /// lock-free.
    #[inline]
    pub fn allocate_4kib(&self) -> Option<PhysFrame<Size4KiB>> {
        let g = self.geometry()?;
        let (w, bits) = self.take(&g, 1)?;
        Some(Self::frame_at(
            &g,
            w as u64 * 64 + u64::from(bits.trailing_zeros()),
        ))
    }

    /// Allocates up to `out.len()` 4 KiB frames into `out[..n]`, taking up
    /// to 64 with one atomic operation; returns `n`.
    pub fn allocate_4kib_batch(&self, out: &mut [MaybeUninit<PhysFrame<Size4KiB>>]) -> usize {
        let Some(g) = self.geometry() else {
            return 0;
        };
        let mut n = 0;
        while n < out.len() {
            let Some((w, bits)) = self.take(&g, out.len() - n) else {
                break;
            };
            n += Self::write_frames(&g, w, bits, &mut out[n..]);
        }
        n
    }

    /// As [`allocate_4kib_batch`](Self::allocate_4kib_batch), but the search
    /// starts at the caller's own `cursor` (any value; taken modulo the
    /// span) instead of the shared hint, and leaves the cursor where it
    /// stopped. Callers with cursors far apart (one per CPU) take frames
    /// from different cache lines of the bitmap, so their batches, and
    /// later their frees, do not contend.
    pub fn allocate_4kib_batch_near(
        &self,
        cursor: &mut usize,
        out: &mut [MaybeUninit<PhysFrame<Size4KiB>>],
    ) -> usize {
        let Some(g) = self.geometry() else {
            return 0;
        };
        let mut n = 0;
        while n < out.len() {
            let Some((w, bits)) = self.take_at(&g, *cursor % g.words, out.len() - n) else {
                break;
            };
            *cursor = w;
            n += Self::write_frames(&g, w, bits, &mut out[n..]);
        }
        n
    }

    /// Writes the frames of `bits` of word `w` to `out`; returns how many.
    #[inline]
    fn write_frames(
        g: &Geometry,
        w: usize,
        mut bits: u64,
        out: &mut [MaybeUninit<PhysFrame<Size4KiB>>],
    ) -> usize {
        let mut n = 0;
        while bits != 0 {
            let index = w as u64 * 64 + u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            out[n].write(Self::frame_at(g, index));
            n += 1;
        }
        n
    }

    /// Allocates a 2 MiB frame (512 free, aligned 4 KiB frames), or `None`
    /// if no such run is free. O(1) amortised; lock-free.
    pub fn allocate_2mib(&self) -> Option<PhysFrame<Size2MiB>> {
        let g = self.geometry()?;
        let chunks = g.chunks();
        let len = chunks.div_ceil(64);
        let hint = self.hints.chunk.load(Ordering::Relaxed);
        let start = if hint < chunks { hint / 64 } else { 0 };
        for i in (start..len).chain(0..=start) {
            let hints = self.word(g.chunk_free_at() + i);
            let mut candidates = hints.load(Ordering::Acquire);
            while candidates != 0 {
                let bit = candidates & candidates.wrapping_neg();
                candidates ^= bit;
                // Take the hint first, so that two CPUs do not both try.
                if hints.fetch_and(!bit, Ordering::SeqCst) & bit == 0 {
                    continue;
                }
                let chunk = i * 64 + bit.trailing_zeros() as usize;
                if self.claim_chunk(&g, chunk) {
                    self.hints.chunk.store(chunk, Ordering::Relaxed);
                    return Some(Self::frame_at(&g, chunk as u64 * CHUNK_FRAMES));
                }
            }
        }
        None
    }

    /// Takes all eight words of `chunk` from all-free to all-taken, or
    /// none: puts back what it took if a word was not all free.
    fn claim_chunk(&self, g: &Geometry, chunk: usize) -> bool {
        let first = chunk * CHUNK_WORDS;
        for k in 0..CHUNK_WORDS {
            let claimed = self
                .word(first + k)
                .compare_exchange(u64::MAX, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
            if !claimed {
                for taken in first..first + k {
                    self.word(taken).fetch_or(u64::MAX, Ordering::SeqCst);
                }
                if k > 0 {
                    // A scan may have found these words empty meanwhile
                    // and cleared their summary bits: they have free
                    // frames again.
                    self.word(g.summary_at() + first / 64)
                        .fetch_or(((1 << k) - 1) << (first % 64), Ordering::SeqCst);
                }
                // A free that completed the chunk meanwhile saw our taken
                // words and left the hint clear: look again.
                self.mark_chunk_if_free(g, chunk);
                return false;
            }
        }
        self.word(g.chunk_huge_at() + chunk / 64)
            .fetch_or(1 << (chunk % 64), Ordering::SeqCst);
        // The eight words share one summary word (8 divides 64).
        let summary = self.word(g.summary_at() + first / 64);
        summary.fetch_and(!(0xff << (first % 64)), Ordering::SeqCst);
        for w in first..first + CHUNK_WORDS {
            if self.word(w).load(Ordering::SeqCst) != 0 {
                summary.fetch_or(1 << (w % 64), Ordering::SeqCst);
            }
        }
        true
    }

    /// The relative index of the frame at `addr`, if in range.
    fn index_of(g: &Geometry, addr: u64) -> Result<u64, DeallocError> {
        (addr / FRAME_SIZE)
            .checked_sub(g.base_frame)
            .filter(|&i| i < g.words as u64 * 64)
            .ok_or(DeallocError::OutsideRange { addr })
    }

    fn is_huge(&self, g: &Geometry, chunk: usize) -> bool {
        self.word(g.chunk_huge_at() + chunk / 64)
            .load(Ordering::Acquire)
            & (1 << (chunk % 64))
            != 0
    }

    /// Frees a 4 KiB frame, or says why it cannot be freed (nothing changes
    /// then). O(1); lock-free.
    ///
    /// # Errors
    ///
    /// [`DeallocError::OutsideRange`] or [`DeallocError::NotUsable`] for a
    /// foreign frame, [`DeallocError::AlreadyFree`] for a double free,
    /// [`DeallocError::PartOfHugeFrame`] for a piece of a 2 MiB frame. Two
    /// CPUs freeing the same frame at once: one succeeds, the other gets
    /// `AlreadyFree`.
    ///
    /// # Safety
    ///
    /// The frame must be unused: after this call any CPU may get it.
    pub unsafe fn try_deallocate_4kib(
        &self,
        frame: PhysFrame<Size4KiB>,
    ) -> Result<(), DeallocError> {
        let addr = frame.start_address().as_u64();
        let g = self.geometry().ok_or(DeallocError::OutsideRange { addr })?;
        let index = Self::index_of(&g, addr)?;
        let w = (index / 64) as usize;
        let mask = 1u64 << (index % 64);
        if self.word(g.usable_at() + w).load(Ordering::Relaxed) & mask == 0 {
            return Err(DeallocError::NotUsable { addr });
        }
        if self.is_huge(&g, w / CHUNK_WORDS) {
            return Err(DeallocError::PartOfHugeFrame { addr });
        }
        // Release: the next owner sees this one's writes to the frame.
        let before = self.word(w).fetch_or(mask, Ordering::SeqCst);
        if before & mask != 0 {
            return Err(DeallocError::AlreadyFree { addr });
        }
        if before == 0 {
            self.word(g.summary_at() + w / 64)
                .fetch_or(1 << (w % 64), Ordering::SeqCst);
        }
        if before | mask == u64::MAX {
            self.mark_chunk_if_free(&g, w / CHUNK_WORDS);
        }
        Ok(())
    }

    /// Frees a 2 MiB frame that was allocated as one, or says why it cannot
    /// be freed (nothing changes then). O(1); lock-free.
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
    /// The frame must be unused: after this call any CPU may get it.
    pub unsafe fn try_deallocate_2mib(
        &self,
        frame: PhysFrame<Size2MiB>,
    ) -> Result<(), DeallocError> {
        let addr = frame.start_address().as_u64();
        let g = self.geometry().ok_or(DeallocError::OutsideRange { addr })?;
        let index = Self::index_of(&g, addr)?;
        let chunk = (index / CHUNK_FRAMES) as usize;
        let first = chunk * CHUNK_WORDS;
        if (first..first + CHUNK_WORDS)
            .any(|w| self.word(g.usable_at() + w).load(Ordering::Relaxed) != u64::MAX)
        {
            return Err(DeallocError::NotUsable { addr });
        }
        let bit = 1 << (chunk % 64);
        // Clear "handed out whole" first: from the moment the frames are
        // free, a 4 KiB frame of them may be handed out and freed again.
        let huge = self.word(g.chunk_huge_at() + chunk / 64);
        if huge.fetch_and(!bit, Ordering::SeqCst) & bit == 0 {
            return Err(if self.chunk_is_free(&g, chunk) {
                DeallocError::AlreadyFree { addr }
            } else {
                DeallocError::NotAllocatedAsHugeFrame { addr }
            });
        }
        for w in first..first + CHUNK_WORDS {
            self.word(w).fetch_or(u64::MAX, Ordering::SeqCst);
        }
        self.word(g.summary_at() + first / 64)
            .fetch_or(0xff << (first % 64), Ordering::SeqCst);
        self.mark_chunk_if_free(&g, chunk);
        Ok(())
    }

    /// Free 4 KiB frames (counting those inside free 2 MiB chunks): a count
    /// of the bitmap, O(span / 64), exact only while no CPU allocates or
    /// frees.
    pub fn free_frames(&self) -> u64 {
        self.geometry().map_or(0, |g| {
            (0..g.words)
                .map(|w| u64::from(self.word(w).load(Ordering::Relaxed).count_ones()))
                .sum()
        })
    }

    /// Free 2 MiB frames (all-free, aligned chunks): a count, O(span / 64),
    /// exact only while no CPU allocates or frees.
    pub fn free_2mib_frames(&self) -> u64 {
        self.geometry().map_or(0, |g| {
            (0..g.chunks())
                .filter(|&c| self.chunk_is_free(&g, c))
                .count() as u64
        })
    }

    /// The 4 KiB frames that were usable in the map: the most that can be
    /// free.
    pub fn usable_frames(&self) -> u64 {
        self.geometry()
            .map_or(0, |_| self.usable_frames.load(Ordering::Relaxed))
    }

    /// Whether the 4 KiB frame at `addr` is free.
    pub fn is_free(&self, addr: u64) -> bool {
        self.geometry().is_some_and(|g| {
            Self::index_of(&g, addr).is_ok_and(|i| {
                self.word((i / 64) as usize).load(Ordering::Relaxed) & (1 << (i % 64)) != 0
            })
        })
    }

    /// How many deallocations through [`SharedFrameDeallocator`] were
    /// refused.
    pub fn rejected_deallocations(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The last deallocation refused through [`SharedFrameDeallocator`], if
    /// any (the latest to be recorded when several CPUs race).
    pub fn last_rejected(&self) -> Option<DeallocError> {
        let packed = self.last_rejected.load(Ordering::Relaxed);
        let addr = packed & !0xfff;
        Some(match packed & 0xfff {
            1 => DeallocError::OutsideRange { addr },
            2 => DeallocError::NotUsable { addr },
            3 => DeallocError::AlreadyFree { addr },
            4 => DeallocError::PartOfHugeFrame { addr },
            5 => DeallocError::NotAllocatedAsHugeFrame { addr },
            _ => return None,
        })
    }

    fn record(&self, result: Result<(), DeallocError>) {
        if let Err(error) = result {
            let (code, addr) = match error {
                DeallocError::OutsideRange { addr } => (1, addr),
                DeallocError::NotUsable { addr } => (2, addr),
                DeallocError::AlreadyFree { addr } => (3, addr),
                DeallocError::PartOfHugeFrame { addr } => (4, addr),
                DeallocError::NotAllocatedAsHugeFrame { addr } => (5, addr),
            };
            self.rejected.fetch_add(1, Ordering::Relaxed);
            self.last_rejected.store(addr | code, Ordering::Relaxed);
        }
    }

    /// A [`FrameAllocator`](crate::FrameAllocator) and
    /// [`FrameDeallocator`](crate::FrameDeallocator) view for `x86_64`'s
    /// mappers: `table.map_to(page, frame, flags, &mut FRAMES.view())`.
    #[inline]
    #[must_use]
    pub const fn view(&self) -> SharedView<'_, Self> {
        SharedView::new(self)
    }
}

// SAFETY: a frame is handed out only by the compare-and-swap that clears
// its free bit, so of two CPUs racing for a bit only one wins, and nobody
// gets it again until a deallocation sets the bit. Bits are set only by the
// `unsafe` `load_map` (whose caller promised the map's usable frames are
// unused and the storage is the allocator's alone) and by the `unsafe`
// deallocation methods (whose caller promises the frame is unused). The
// type is neither `Clone` nor `Copy`.
unsafe impl SharedFrameAllocator<Size4KiB> for AtomicBitmapAllocator<'_> {
    #[inline]
    fn allocate_frame(&self) -> Option<PhysFrame<Size4KiB>> {
        self.allocate_4kib()
    }

    #[inline]
    fn allocate_frames(&self, out: &mut [MaybeUninit<PhysFrame<Size4KiB>>]) -> usize {
        self.allocate_4kib_batch(out)
    }

    #[inline]
    fn allocate_frames_near(
        &self,
        cursor: &mut usize,
        out: &mut [MaybeUninit<PhysFrame<Size4KiB>>],
    ) -> usize {
        self.allocate_4kib_batch_near(cursor, out)
    }
}

// SAFETY: as for 4 KiB; a chunk is handed out only after its eight words
// were each swapped from all-free to all-taken by this call.
unsafe impl SharedFrameAllocator<Size2MiB> for AtomicBitmapAllocator<'_> {
    #[inline]
    fn allocate_frame(&self) -> Option<PhysFrame<Size2MiB>> {
        self.allocate_2mib()
    }
}

impl SharedFrameDeallocator<Size4KiB> for AtomicBitmapAllocator<'_> {
    /// Frees the frame. A foreign frame, a double free or a piece of a
    /// 2 MiB frame is refused: nothing changes, the refusal is counted
    /// ([`rejected_deallocations`](AtomicBitmapAllocator::rejected_deallocations))
    /// and kept ([`last_rejected`](AtomicBitmapAllocator::last_rejected)); no
    /// panic.
    #[inline]
    unsafe fn deallocate_frame(&self, frame: PhysFrame<Size4KiB>) {
        // SAFETY: the caller guarantees the frame is unused.
        let result = unsafe { self.try_deallocate_4kib(frame) };
        self.record(result);
    }
}

impl SharedFrameDeallocator<Size2MiB> for AtomicBitmapAllocator<'_> {
    /// Frees the frame; refusals are handled as for 4 KiB frames.
    #[inline]
    unsafe fn deallocate_frame(&self, frame: PhysFrame<Size2MiB>) {
        // SAFETY: the caller guarantees the frame is unused.
        let result = unsafe { self.try_deallocate_2mib(frame) };
        self.record(result);
    }
}

#[cfg(all(loom, test))]
impl AtomicBitmapAllocator<'_> {
    /// Checks what must hold whenever no operation is running: a word with
    /// a free frame has its summary bit, an all-free chunk has its hint bit
    /// and is not marked as handed out whole, and only usable frames are
    /// free.
    pub(crate) fn check_invariants(&self) {
        let Some(g) = self.geometry() else {
            return;
        };
        let bit = |part: usize, i: usize| {
            self.word(part + i / 64).load(Ordering::SeqCst) & (1 << (i % 64)) != 0
        };
        for w in 0..g.words {
            let free = self.word(w).load(Ordering::SeqCst);
            let usable = self.word(g.usable_at() + w).load(Ordering::SeqCst);
            assert_eq!(
                free & !usable,
                0,
                "word {w}: a free frame that is not usable"
            );
            assert!(
                free == 0 || bit(g.summary_at(), w),
                "word {w}: free frames, no summary bit"
            );
        }
        for c in 0..g.chunks() {
            if self.chunk_is_free(&g, c) {
                assert!(
                    bit(g.chunk_free_at(), c),
                    "chunk {c}: all free, no hint bit"
                );
                assert!(
                    !bit(g.chunk_huge_at(), c),
                    "chunk {c}: all free, marked huge"
                );
            }
            if bit(g.chunk_huge_at(), c) {
                assert!(
                    (c * CHUNK_WORDS..(c + 1) * CHUNK_WORDS)
                        .all(|w| self.word(w).load(Ordering::SeqCst) == 0),
                    "chunk {c}: handed out whole, yet a frame is free"
                );
            }
        }
    }
}
