//! Emulated physical memory: sparse 4 KiB frames over a 52-bit address space.

use core::cell::Cell;
use core::fmt;
use std::boxed::Box;
use std::vec::Vec;

use x86_64::PhysAddr;
use x86_64::structures::paging::{PageTableIndex, PhysFrame};

use super::hash::PageMap;

const FRAME: u64 = 4096;
const WORDS: usize = (FRAME / 8) as usize;

/// One resident frame, as 512 little-endian words. The words are in a cell
/// so that the emulated MMU can set accessed and dirty bits in page-table
/// entries during a walk made through a shared reference, as the CPU does
/// behind the back of the code that reads the tables. (One cell around the
/// whole array keeps cloning a frame a plain copy.)
struct Frame(Cell<[u64; WORDS]>);

impl Clone for Frame {
    fn clone(&self) -> Self {
        Self(Cell::new(self.0.get()))
    }
}

impl Frame {
    fn zeroed() -> Box<Self> {
        Box::new(Self(Cell::new([0; WORDS])))
    }

    fn words(&self) -> &[Cell<u64>; WORDS] {
        self.0.as_array_of_cells()
    }

    fn is_zero(&self) -> bool {
        self.words().iter().all(|word| word.get() == 0)
    }

    fn same_contents(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }

    /// Copies the bytes at `offset..offset + buf.len()` (inside the frame).
    fn read(&self, offset: usize, buf: &mut [u8]) {
        let words = self.words();
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done;
            let bytes = words[at / 8].get().to_le_bytes();
            let piece = (8 - at % 8).min(buf.len() - done);
            buf[done..done + piece].copy_from_slice(&bytes[at % 8..at % 8 + piece]);
            done += piece;
        }
    }

    /// Stores `data` at `offset..offset + data.len()` (inside the frame).
    fn write(&self, offset: usize, data: &[u8]) {
        let words = self.words();
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let word = &words[at / 8];
            let mut bytes = word.get().to_le_bytes();
            let piece = (8 - at % 8).min(data.len() - done);
            bytes[at % 8..at % 8 + piece].copy_from_slice(&data[done..done + piece]);
            word.set(u64::from_le_bytes(bytes));
            done += piece;
        }
    }
}

/// Physical memory of an emulated machine.
///
/// Frames come into being on their first write; a frame never written reads
/// as zeros. Any address below 2<sup>52</sup> (the architectural limit) works,
/// and only touched frames cost host memory.
///
/// Besides the writes made through `&mut self`, the emulated MMU of a
/// [`Machine`](super::Machine) sets accessed and dirty bits in page-table
/// entries through a shared reference (as the CPU does during a walk), so a
/// `PhysMemory` is `Send` but not `Sync`.
///
/// ```
/// use framealloc::emu::PhysMemory;
/// use framealloc::x86_64::PhysAddr;
///
/// let mut memory = PhysMemory::new();
/// let top = PhysAddr::new((1 << 52) - 8);
/// assert_eq!(memory.read_u64(top), Ok(0));
/// memory.write_u64(top, 0xfeed).unwrap();
/// assert_eq!(memory.read_u64(top), Ok(0xfeed));
/// assert_eq!(memory.resident_frames(), 1);
/// ```
#[derive(Clone, Default)]
pub struct PhysMemory {
    frames: PageMap<Box<Frame>>,
}

/// A physical access that would run past the top of the 52-bit physical
/// address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhysRangeError {
    /// First byte of the access.
    pub addr: PhysAddr,
    /// Length of the access in bytes.
    pub len: usize,
}

impl fmt::Display for PhysRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "physical access of {} bytes at {:#x} runs past the 52-bit physical address space",
            self.len,
            self.addr.as_u64()
        )
    }
}

impl core::error::Error for PhysRangeError {}

impl PhysMemory {
    /// One past the highest physical address: 2<sup>52</sup>.
    pub const LIMIT: u64 = 1 << 52;

    /// Memory that reads as zeros everywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of frames that hold host memory (those written since they were
    /// last zeroed).
    pub fn resident_frames(&self) -> usize {
        self.frames.len()
    }

    /// Reads `buf.len()` bytes starting at `addr`; may cross frames.
    ///
    /// # Errors
    ///
    /// [`PhysRangeError`] if the range runs past 2<sup>52</sup>; nothing is read.
    pub fn read_bytes(&self, addr: PhysAddr, buf: &mut [u8]) -> Result<(), PhysRangeError> {
        for (start, range) in Self::chunks(addr, buf.len())? {
            self.read_in_frame(start, &mut buf[range]);
        }
        Ok(())
    }

    /// Writes `data` starting at `addr`; may cross frames.
    ///
    /// # Errors
    ///
    /// [`PhysRangeError`] if the range runs past 2<sup>52</sup>; nothing is written.
    pub fn write_bytes(&mut self, addr: PhysAddr, data: &[u8]) -> Result<(), PhysRangeError> {
        for (start, range) in Self::chunks(addr, data.len())? {
            self.write_in_frame(start, &data[range]);
        }
        Ok(())
    }

    /// Reads the little-endian `u64` at `addr` (any alignment).
    ///
    /// # Errors
    ///
    /// [`PhysRangeError`] if the 8 bytes run past 2<sup>52</sup>.
    pub fn read_u64(&self, addr: PhysAddr) -> Result<u64, PhysRangeError> {
        let mut bytes = [0; 8];
        self.read_bytes(addr, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Writes `value` little-endian at `addr` (any alignment).
    ///
    /// # Errors
    ///
    /// [`PhysRangeError`] if the 8 bytes run past 2<sup>52</sup>.
    pub fn write_u64(&mut self, addr: PhysAddr, value: u64) -> Result<(), PhysRangeError> {
        self.write_bytes(addr, &value.to_le_bytes())
    }

    /// Reads entry `index` of the page table in `table`.
    pub fn read_entry(&self, table: PhysFrame, index: PageTableIndex) -> u64 {
        self.load(table.start_address().as_u64() + u64::from(index) * 8)
    }

    /// Writes entry `index` of the page table in `table`. Like a store to RAM
    /// on hardware, this invalidates no TLB entry.
    pub fn write_entry(&mut self, table: PhysFrame, index: PageTableIndex, value: u64) {
        self.store(table.start_address().as_u64() + u64::from(index) * 8, value);
    }

    /// Fills `frame` with zeros (and releases its host memory).
    pub fn zero_frame(&mut self, frame: PhysFrame) {
        self.frames
            .remove(&(frame.start_address().as_u64() / FRAME));
    }

    /// The frames whose contents differ between `self` and `other`, in
    /// address order. A frame never written equals a zeroed one.
    ///
    /// Handy to show that a failed operation left memory as it was:
    ///
    /// ```
    /// use framealloc::emu::PhysMemory;
    /// use framealloc::x86_64::PhysAddr;
    ///
    /// let mut memory = PhysMemory::new();
    /// let before = memory.clone();
    /// memory.write_u64(PhysAddr::new(0x3008), 0)?; // zeros: no change
    /// assert_eq!(memory, before);
    /// memory.write_u64(PhysAddr::new(0x3008), 1)?;
    /// let changed: Vec<u64> = memory.differing_frames(&before).iter()
    ///     .map(|f| f.start_address().as_u64()).collect();
    /// assert_eq!(changed, [0x3000]);
    /// # Ok::<(), framealloc::emu::PhysRangeError>(())
    /// ```
    pub fn differing_frames(&self, other: &Self) -> Vec<PhysFrame> {
        let same = |pfn| match (self.frames.get(&pfn), other.frames.get(&pfn)) {
            (Some(a), Some(b)) => a.same_contents(b),
            (Some(frame), None) | (None, Some(frame)) => frame.is_zero(),
            (None, None) => true,
        };
        let mut pfns: Vec<u64> = self
            .frames
            .keys()
            .chain(other.frames.keys())
            .copied()
            .collect();
        pfns.sort_unstable();
        pfns.dedup();
        pfns.into_iter()
            .filter(|&pfn| !same(pfn))
            .map(|pfn| PhysFrame::containing_address(PhysAddr::new(pfn * FRAME)))
            .collect()
    }

    /// The aligned `u64` at `addr` (8-aligned, below the limit).
    pub(crate) fn load(&self, addr: u64) -> u64 {
        debug_assert!(addr.is_multiple_of(8) && addr < Self::LIMIT);
        self.frames
            .get(&(addr / FRAME))
            .map_or(0, |frame| frame.words()[(addr % FRAME / 8) as usize].get())
    }

    /// Stores the aligned `u64` at `addr` (8-aligned, below the limit).
    pub(crate) fn store(&mut self, addr: u64, value: u64) {
        debug_assert!(addr.is_multiple_of(8) && addr < Self::LIMIT);
        self.frames
            .entry(addr / FRAME)
            .or_insert_with(Frame::zeroed)
            .words()[(addr % FRAME / 8) as usize]
            .set(value);
    }

    /// Sets `bits` in the aligned `u64` at `addr` through a shared reference,
    /// as the MMU sets accessed and dirty bits. A frame never written holds
    /// no present entry, so the MMU never calls this for one; should it
    /// happen, nothing is stored (the bits stay clear).
    pub(crate) fn set_bits(&self, addr: u64, bits: u64) {
        debug_assert!(addr.is_multiple_of(8) && addr < Self::LIMIT);
        if let Some(frame) = self.frames.get(&(addr / FRAME)) {
            let word = &frame.words()[(addr % FRAME / 8) as usize];
            word.set(word.get() | bits);
        }
    }

    /// Reads bytes that lie inside one frame below the limit.
    pub(crate) fn read_in_frame(&self, addr: u64, buf: &mut [u8]) {
        let offset = (addr % FRAME) as usize;
        match self.frames.get(&(addr / FRAME)) {
            Some(frame) => frame.read(offset, buf),
            None => buf.fill(0),
        }
    }

    /// Writes bytes that lie inside one frame below the limit.
    pub(crate) fn write_in_frame(&mut self, addr: u64, data: &[u8]) {
        debug_assert!(addr < Self::LIMIT);
        let offset = (addr % FRAME) as usize;
        self.frames
            .entry(addr / FRAME)
            .or_insert_with(Frame::zeroed)
            .write(offset, data);
    }

    /// Splits `len` bytes at `addr` into per-frame pieces: (physical start,
    /// range in the caller's buffer).
    fn chunks(
        addr: PhysAddr,
        len: usize,
    ) -> Result<impl Iterator<Item = (u64, core::ops::Range<usize>)>, PhysRangeError> {
        let start = addr.as_u64();
        if Self::LIMIT - start < len as u64 {
            return Err(PhysRangeError { addr, len });
        }
        let mut done = 0;
        Ok(core::iter::from_fn(move || {
            (done < len).then(|| {
                let at = start + done as u64;
                let piece = ((FRAME - at % FRAME) as usize).min(len - done);
                done += piece;
                (at, done - piece..done)
            })
        }))
    }
}

/// Equal when every address reads the same (see
/// [`differing_frames`](PhysMemory::differing_frames)).
impl PartialEq for PhysMemory {
    fn eq(&self, other: &Self) -> bool {
        self.differing_frames(other).is_empty()
    }
}

impl Eq for PhysMemory {}

impl fmt::Debug for PhysMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMemory")
            .field("resident_frames", &self.frames.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_memory_reads_zero() {
        let memory = PhysMemory::new();
        let mut buf = [0xaa; 10_000];
        memory.read_bytes(PhysAddr::new(0x1234), &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(memory.resident_frames(), 0);
    }

    #[test]
    fn accesses_cross_frames() {
        let mut memory = PhysMemory::new();
        let data: Vec<u8> = (0..=255).cycle().take(9000).collect();
        memory.write_bytes(PhysAddr::new(0xffc), &data).unwrap();
        assert_eq!(memory.resident_frames(), 4);
        let mut back = std::vec![0; 9000];
        memory.read_bytes(PhysAddr::new(0xffc), &mut back).unwrap();
        assert_eq!(back, data);
        memory
            .write_u64(PhysAddr::new(0x7ffd), 0x1122_3344_5566_7788)
            .unwrap();
        assert_eq!(
            memory.read_u64(PhysAddr::new(0x7ffd)),
            Ok(0x1122_3344_5566_7788)
        );
        assert_eq!(memory.read_u64(PhysAddr::new(0x8000)), Ok(0x0011_2233_4455));
    }

    #[test]
    fn the_top_of_the_address_space_is_reachable_and_no_further() {
        let mut memory = PhysMemory::new();
        let last = PhysAddr::new(PhysMemory::LIMIT - 1);
        memory.write_bytes(last, &[7]).unwrap();
        let mut byte = [0];
        memory.read_bytes(last, &mut byte).unwrap();
        assert_eq!(byte, [7]);
        let err = memory.write_u64(PhysAddr::new(PhysMemory::LIMIT - 4), 1);
        assert_eq!(
            err,
            Err(PhysRangeError {
                addr: PhysAddr::new(PhysMemory::LIMIT - 4),
                len: 8
            })
        );
        assert_eq!(
            memory
                .read_u64(PhysAddr::new(PhysMemory::LIMIT - 4))
                .map_err(|e| e.len),
            Err(8)
        );
        // The failed write left the last frame untouched.
        assert_eq!(
            memory.read_u64(PhysAddr::new(PhysMemory::LIMIT - 16)),
            Ok(0)
        );
    }

    #[test]
    fn entries_and_zeroing() {
        let mut memory = PhysMemory::new();
        let table = PhysFrame::containing_address(PhysAddr::new(0x5000));
        memory.write_entry(table, PageTableIndex::new(511), 0xdead_b003);
        assert_eq!(memory.read_u64(PhysAddr::new(0x5ff8)), Ok(0xdead_b003));
        assert_eq!(
            memory.read_entry(table, PageTableIndex::new(511)),
            0xdead_b003
        );
        memory.zero_frame(table);
        assert_eq!(memory.read_entry(table, PageTableIndex::new(511)), 0);
        assert_eq!(memory.resident_frames(), 0);
    }

    #[test]
    fn equality_compares_contents_not_residency() {
        let mut a = PhysMemory::new();
        let mut b = PhysMemory::new();
        a.write_u64(PhysAddr::new(0x1000), 5).unwrap();
        b.write_u64(PhysAddr::new(0x9000), 0).unwrap();
        b.write_u64(PhysAddr::new(0x2000), 6).unwrap();
        let frames = |m: &PhysMemory, o| -> Vec<u64> {
            m.differing_frames(o)
                .iter()
                .map(|f| f.start_address().as_u64())
                .collect()
        };
        assert_eq!(frames(&a, &b), [0x1000, 0x2000]);
        assert_eq!(frames(&b, &a), [0x1000, 0x2000]);
        a.write_u64(PhysAddr::new(0x2000), 6).unwrap();
        b.write_u64(PhysAddr::new(0x1000), 5).unwrap();
        assert_eq!(a, b);
        a.zero_frame(PhysFrame::containing_address(PhysAddr::new(0x1000)));
        assert_ne!(a, b);
    }
}
