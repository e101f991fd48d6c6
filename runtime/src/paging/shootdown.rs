//! TLB shootdowns: the invalidations of a page-table change delivered to
//! every CPU, and frames freed only once every CPU has forgotten them.
//!
//! A [`Flush`] or [`RangeFlush`] token invalidates the TLB of the CPU that
//! made the change. On a machine with several CPUs, every other CPU that may
//! have the address space active (or, for `GLOBAL` pages, any CPU at all)
//! may still hold the old translation, and keeps reading and writing the old
//! frame through it. If that frame has meanwhile been freed and handed to a
//! new owner, the stale CPU corrupts it: a use-after-free no test on one CPU
//! sees.
//!
//! - [`Invalidations`] collects what a batch of operations asks the TLB to
//!   forget, with the decision of the single-CPU tokens: per page up to
//!   [`FLUSH_ALL_THRESHOLD`] pages, else one full flush, and pages recorded
//!   as global kept per page (a CR3 reload keeps global translations). It
//!   is plain data, so it can be sent to another CPU and performed there on
//!   its [`Backend`] with [`Invalidations::perform`].
//! - [`Shootdown`] is what the kernel implements: deliver the invalidations
//!   to every other CPU that may cache the address space, and return once
//!   each has performed them.
//! - [`Gather`] batches unmaps in the spirit of Linux's `mmu_gather`: each
//!   change is invalidated on the local CPU at once (through its token) and
//!   recorded; freed frames are held back; when the batch is full, and when
//!   the gather is finished or dropped, the recorded invalidations are shot
//!   down and only then are the frames handed to the deallocator.
//!
//! # What the kernel must provide
//!
//! - **The CPU set of an address space.** The CPUs on which the address
//!   space is active, or was active since their last full flush: a
//!   bitmask updated at every CR3 switch (set the new CPU's bit before
//!   loading CR3; clear the old space's bit only after it is loaded). A
//!   global page can be cached by any CPU, so a change to one goes to all
//!   of them.
//! - **IPI sending.** A vector whose handler reads the published
//!   [`Invalidations`], performs them on its own TLB
//!   ([`Invalidations::perform`] over [`Mmu`](super::Mmu) or its own
//!   backend), and acknowledges.
//! - **Acknowledgement.** [`Shootdown::invalidate_others`] must not return
//!   before every targeted CPU has acknowledged (a counter each handler
//!   decrements, spun on by the sender). With interrupts disabled on the
//!   sender while another CPU waits for *its* acknowledgement, two CPUs
//!   shooting each other down deadlock: handle incoming shootdowns while
//!   spinning.
//!
//! The emulator's multi-CPU machine (`framealloc::emu::Cpus`, feature
//! `emu`) implements [`Shootdown`] by invalidating its other CPUs' TLBs
//! directly, and shows the stale reads when a shootdown is left out.

use x86_64::VirtAddr;
use x86_64::structures::paging::mapper::UnmapError;
use x86_64::structures::paging::page::PageRange;
use x86_64::structures::paging::{FrameDeallocator, Page, PageSize, PhysFrame, Size4KiB};

use super::RecursivePageTable;
use super::{Backend, EntrySize, FLUSH_ALL_THRESHOLD, Flush, FlushScope, RangeError, RangeFlush};

/// Most runs of pages an [`Invalidations`] keeps before it falls back to a
/// full flush.
pub const MAX_RUNS: usize = 16;

/// A run of pages to invalidate one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun {
    /// Start of the first page.
    pub start: VirtAddr,
    /// Number of pages.
    pub count: u64,
    /// Size of each page in bytes.
    pub page_size: u64,
}

/// What a batch of page-table changes asks every TLB to forget.
///
/// Built from the [`FlushScope`]s of single-CPU tokens with
/// [`add`](Self::add):
///
/// - runs of pages are kept as long as they total at most
///   [`FLUSH_ALL_THRESHOLD`] pages in at most [`MAX_RUNS`] runs; a run of
///   more pages than the threshold (which a token chooses only for `GLOBAL`
///   pages) is kept too;
/// - [`FlushScope::All`] asks for a full non-global flush (a CR3 reload);
/// - past those limits, the batch cannot tell whether the pages it would
///   drop were global, so it asks for a flush of everything, global
///   translations included ([`is_global_flush`](Self::is_global_flush)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalidations {
    runs: [PageRun; MAX_RUNS],
    len: usize,
    pages: u64,
    all: bool,
    everything: bool,
}

impl Default for Invalidations {
    fn default() -> Self {
        Self::new()
    }
}

const NO_RUN: PageRun = PageRun {
    start: VirtAddr::zero(),
    count: 0,
    page_size: 0,
};

impl Invalidations {
    /// Nothing to invalidate.
    pub const fn new() -> Self {
        Self {
            runs: [NO_RUN; MAX_RUNS],
            len: 0,
            pages: 0,
            all: false,
            everything: false,
        }
    }

    /// Adds what `scope` invalidates.
    pub fn add(&mut self, scope: FlushScope) {
        match scope {
            FlushScope::Nothing => {}
            FlushScope::All => self.all = true,
            FlushScope::Pages {
                start,
                count,
                page_size,
            } => {
                if self.everything || count == 0 {
                    return;
                }
                let known_global = count > FLUSH_ALL_THRESHOLD;
                let fits = known_global || self.pages.saturating_add(count) <= FLUSH_ALL_THRESHOLD;
                if fits && self.len < MAX_RUNS {
                    self.runs[self.len] = PageRun {
                        start,
                        count,
                        page_size,
                    };
                    self.len += 1;
                    if !known_global {
                        self.pages += count;
                    }
                } else {
                    self.everything = true;
                    self.len = 0;
                    self.pages = 0;
                }
            }
        }
    }

    /// Adds one page of `S` (what a single-page token invalidates).
    pub fn add_page<S: PageSize>(&mut self, page: Page<S>) {
        self.add(FlushScope::Pages {
            start: page.start_address(),
            count: 1,
            page_size: S::SIZE,
        });
    }

    /// Whether nothing is to be invalidated.
    pub const fn is_empty(&self) -> bool {
        self.len == 0 && !self.all && !self.everything
    }

    /// The runs of pages to invalidate one by one (empty after a fall-back
    /// to a flush of everything).
    pub fn runs(&self) -> &[PageRun] {
        &self.runs[..self.len]
    }

    /// Whether a full non-global flush (CR3 reload) is asked for.
    pub const fn is_full_flush(&self) -> bool {
        self.all
    }

    /// Whether every translation, global ones included, must go.
    pub const fn is_global_flush(&self) -> bool {
        self.everything
    }

    /// Performs the invalidations on one CPU's TLB through `backend`: a
    /// global flush if asked, else a full flush if asked and then one
    /// `invlpg` per page of every run.
    pub fn perform<B: Backend + ?Sized>(&self, backend: &mut B) {
        if self.everything {
            backend.flush_global();
            return;
        }
        if self.all {
            backend.flush_all();
        }
        for run in self.runs() {
            for i in 0..run.count {
                // Runs never cross the canonical hole; `new_truncate`
                // sign-extends, so this stays panic-free regardless.
                let addr = run
                    .start
                    .as_u64()
                    .wrapping_add(i.wrapping_mul(run.page_size));
                backend.flush_page(VirtAddr::new_truncate(addr));
            }
        }
    }
}

/// Delivery of TLB invalidations to the other CPUs (on x86_64: by IPI).
///
/// # Safety
///
/// When [`invalidate_others`](Self::invalidate_others) returns, every CPU
/// other than the calling one that may hold a translation the invalidations
/// name (every CPU with the address space active or active since its last
/// full flush, and for global pages every CPU) has performed them, as
/// [`Invalidations::perform`] does, on its own TLB and paging-structure
/// caches. [`Gather`] frees frames on the strength of this.
pub unsafe trait Shootdown {
    /// Delivers `invalidations` to every other CPU that may cache the
    /// address space, and waits until each has performed them.
    fn invalidate_others(&mut self, invalidations: &Invalidations);
}

// SAFETY: forwards to `S`, which upholds the contract.
unsafe impl<S: Shootdown + ?Sized> Shootdown for &mut S {
    fn invalidate_others(&mut self, invalidations: &Invalidations) {
        (**self).invalidate_others(invalidations);
    }
}

/// The [`Shootdown`] of a machine with one CPU (or before the others are
/// started): there is no other TLB, so nothing is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SingleCpu;

// SAFETY: with one CPU there is no other CPU to reach.
unsafe impl Shootdown for SingleCpu {
    fn invalidate_others(&mut self, _: &Invalidations) {}
}

/// Unmaps batched across CPUs: invalidations shot down to the other CPUs,
/// freed frames released only after every CPU acknowledged.
///
/// Each operation invalidates the calling CPU's TLB at once (through the
/// table's token) and records the same invalidation; freed frames are held
/// in a buffer of `N`. When the buffer is full, and at
/// [`finish`](Self::finish) or drop, the recorded invalidations go to
/// [`Shootdown::invalidate_others`], and only when that returns are the
/// held frames passed to the deallocator.
///
/// ```
/// use framealloc::emu::{Cpus, Machine};
/// use framealloc::paging::{Gather, RecursivePageTable};
/// use framealloc::x86_64::structures::paging::{
///     FrameAllocator, FrameDeallocator, Page, PageTableFlags as Flags, PageTableIndex,
///     PhysFrame, Size4KiB,
/// };
/// use framealloc::x86_64::{PhysAddr, VirtAddr};
///
/// # struct Frames(u64);
/// # unsafe impl FrameAllocator<Size4KiB> for Frames {
/// #     fn allocate_frame(&mut self) -> Option<PhysFrame> {
/// #         self.0 += 0x1000;
/// #         Some(PhysFrame::containing_address(PhysAddr::new(self.0)))
/// #     }
/// # }
/// struct Freed(Vec<PhysFrame>);
/// impl FrameDeallocator<Size4KiB> for Freed {
///     unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
///         self.0.push(frame);
///     }
/// }
///
/// let l4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
/// let index = PageTableIndex::new(510);
/// let mut cpus = Cpus::new(Machine::with_recursive_table(index, l4)?, 2)?;
/// let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x40_0000));
/// let frame = PhysFrame::containing_address(PhysAddr::new(0x10_0000));
/// let mut table = RecursivePageTable::new(cpus.cpu(0).unwrap(), index)?;
/// // SAFETY (emulated memory): the frame is used by nothing else.
/// unsafe { table.map_to(page, frame, Flags::PRESENT, &mut Frames(0x8_0000)) }.unwrap().ignore();
/// cpus.cpu(1).unwrap().read_u64(page.start_address())?; // CPU 1 caches it
///
/// let (first, mut others) = cpus.split(0).unwrap();
/// let mut table = RecursivePageTable::new(first, index)?;
/// let mut freed = Freed(Vec::new());
/// let mut gather: Gather<'_, _, _> = Gather::new(&mut others, &mut freed);
/// // SAFETY: the frame is owned by this mapping only.
/// unsafe { gather.unmap_and_free(&mut table, page) }.unwrap();
/// gather.finish();
/// assert_eq!(freed.0, [frame]);
/// assert!(cpus.cpu(1).unwrap().read_u64(page.start_address()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Gather<'a, S, D, P = Size4KiB, const N: usize = 32>
where
    S: Shootdown + ?Sized,
    D: FrameDeallocator<P> + ?Sized,
    P: PageSize,
{
    shootdown: &'a mut S,
    deallocator: &'a mut D,
    invalidations: Invalidations,
    frames: [Option<PhysFrame<P>>; N],
    len: usize,
}

impl<'a, S, D, P, const N: usize> Gather<'a, S, D, P, N>
where
    S: Shootdown + ?Sized,
    D: FrameDeallocator<P> + ?Sized,
    P: PageSize,
{
    /// An empty batch that shoots down through `shootdown` and frees into
    /// `deallocator`.
    pub fn new(shootdown: &'a mut S, deallocator: &'a mut D) -> Self {
        Self {
            shootdown,
            deallocator,
            invalidations: Invalidations::new(),
            frames: [None; N],
            len: 0,
        }
    }

    /// Invalidates the token's page on this CPU now and records it for the
    /// other CPUs.
    pub fn flush<B: Backend + ?Sized, Q: PageSize>(&mut self, token: Flush<'_, B, Q>) {
        self.invalidations.add_page(token.page());
        token.flush();
    }

    /// Invalidates the token's range on this CPU now and records it for
    /// the other CPUs.
    pub fn flush_range<B: Backend + ?Sized>(&mut self, token: RangeFlush<'_, B>) {
        self.invalidations.add(token.scope());
        token.flush();
    }

    /// Records an invalidation already made on this CPU by other means, for
    /// the other CPUs.
    pub fn record(&mut self, scope: FlushScope) {
        self.invalidations.add(scope);
    }

    /// Holds `frame` until the invalidations recorded so far have reached
    /// every CPU, then frees it. If the buffer is full, the batch so far is
    /// shot down and released first.
    ///
    /// # Safety
    ///
    /// Every translation that can still reach `frame` (on this CPU or
    /// another) is removed by invalidations already recorded in this
    /// gather (record the token before freeing its frame), and the frame is
    /// not used otherwise: it may be freed once they have been performed
    /// everywhere.
    pub unsafe fn free(&mut self, frame: PhysFrame<P>) {
        if self.len == N {
            self.shoot_down();
        }
        if N == 0 {
            // No buffer: the invalidations were just shot down, so the
            // frame can go at once.
            // SAFETY: the caller's contract, and `shoot_down` has made
            // every CPU perform the invalidations.
            unsafe { self.deallocator.deallocate_frame(frame) };
            return;
        }
        self.frames[self.len] = Some(frame);
        self.len += 1;
    }

    /// Unmaps `page` in `table` (a table of this CPU), invalidates it here
    /// and records it, and holds its frame as [`free`](Self::free) does.
    ///
    /// # Errors
    ///
    /// As [`RecursivePageTable::unmap`]; nothing was done.
    ///
    /// # Safety
    ///
    /// The frame `page` maps is owned by the mapping and used through no
    /// other mapping.
    pub unsafe fn unmap_and_free<B: Backend>(
        &mut self,
        table: &mut RecursivePageTable<B>,
        page: Page<P>,
    ) -> Result<(), UnmapError>
    where
        P: EntrySize,
    {
        let (frame, token) = table.unmap(page)?;
        self.flush(token);
        // SAFETY: the invalidation of the only mapping of the frame is
        // recorded; the caller's contract.
        unsafe { self.free(frame) };
        Ok(())
    }

    /// Unmaps every page of `pages` in `table` (a table of this CPU),
    /// invalidating and recording as it goes, and holds the frames as
    /// [`free`](Self::free) does.
    ///
    /// The range is unmapped in pieces that fit the free part of the
    /// buffer, so that no frame is held before its invalidation is
    /// recorded; each piece makes its own flush decision.
    ///
    /// # Errors
    ///
    /// As [`RecursivePageTable::unmap_range`], `done` counting from the
    /// start of `pages`; the pages done are invalidated, recorded and their
    /// frames held.
    ///
    /// # Safety
    ///
    /// Every frame mapped in the range is owned by the mapping and used
    /// through no other mapping.
    pub unsafe fn unmap_range_and_free<B: Backend>(
        &mut self,
        table: &mut RecursivePageTable<B>,
        pages: PageRange<P>,
    ) -> Result<(), RangeError<UnmapError>>
    where
        P: EntrySize,
    {
        let mut next = pages.start;
        let mut done = 0;
        while next < pages.end {
            if self.len == N {
                self.shoot_down();
            }
            let room = (N - self.len).max(1) as u64;
            let count = room.min(pages.end - next);
            let piece = Page::range(next, next + count);
            let (frames, len) = (&mut self.frames, &mut self.len);
            let mut overflow = None;
            let result = table.unmap_range(piece, |frame| {
                if *len < N {
                    frames[*len] = Some(frame);
                    *len += 1;
                } else {
                    overflow = Some(frame); // only with N == 0: one page per piece
                }
            });
            match result {
                Ok(token) => self.flush_range(token),
                Err(RangeError::Stopped {
                    done: piece_done,
                    error,
                }) => {
                    // The table flushed the part done on this CPU.
                    self.record(FlushScope::Pages {
                        start: next.start_address(),
                        count: piece_done,
                        page_size: P::SIZE,
                    });
                    self.release_overflow(overflow);
                    return Err(RangeError::Stopped {
                        done: done + piece_done,
                        error,
                    });
                }
                Err(other) => return Err(other),
            }
            self.release_overflow(overflow);
            next += count;
            done += count;
        }
        Ok(())
    }

    fn release_overflow(&mut self, overflow: Option<PhysFrame<P>>) {
        if let Some(frame) = overflow {
            self.shoot_down();
            // SAFETY: the frame's unmap was recorded and has now been shot
            // down; the caller of the unmap vouched it is otherwise unused.
            unsafe { self.deallocator.deallocate_frame(frame) };
        }
    }

    /// The invalidations recorded and not yet shot down.
    pub fn pending(&self) -> &Invalidations {
        &self.invalidations
    }

    /// Number of frames held.
    pub fn held(&self) -> usize {
        self.len
    }

    /// Shoots the recorded invalidations down (if any) and then frees every
    /// held frame; the batch starts afresh.
    pub fn shoot_down(&mut self) {
        if !self.invalidations.is_empty() {
            self.shootdown.invalidate_others(&self.invalidations);
            self.invalidations = Invalidations::new();
        }
        for slot in &mut self.frames[..self.len] {
            if let Some(frame) = slot.take() {
                // SAFETY: `free`'s contract: every translation that could
                // reach the frame was recorded, performed on this CPU by its
                // token and now on every other by the shootdown.
                unsafe { self.deallocator.deallocate_frame(frame) };
            }
        }
        self.len = 0;
    }

    /// Shoots down and frees what is left (as dropping the gather does).
    pub fn finish(mut self) {
        self.shoot_down();
    }
}

impl<S, D, P, const N: usize> Drop for Gather<'_, S, D, P, N>
where
    S: Shootdown + ?Sized,
    D: FrameDeallocator<P> + ?Sized,
    P: PageSize,
{
    fn drop(&mut self) {
        self.shoot_down();
    }
}

impl<S, D, P, const N: usize> core::fmt::Debug for Gather<'_, S, D, P, N>
where
    S: Shootdown + ?Sized,
    D: FrameDeallocator<P> + ?Sized,
    P: PageSize,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gather")
            .field("invalidations", &self.invalidations)
            .field("held", &self.len)
            .finish()
    }
}
