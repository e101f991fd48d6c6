//! The firmware-map boot, chosen with `-append firmware-map`.
//!
//! Instead of the paging scenarios, the kernel does what a real one does
//! with the memory map QEMU's firmware gives it: it reads the E820 map from
//! the PVH `hvm_start_info` (whose physical address the trampoline saved
//! from `ebx`), adds its own image and the boot structures as non-usable
//! entries, normalises the map, maps a heap and a stack (with an unmapped
//! guard page below it) from a tagged bump allocator, builds the hand-off
//! map and a bitmap allocator from it (its bitmap lives in the new heap), and
//! reports every table on COM1 for the host test (`tests/tests/firmware_map.rs`)
//! to check. One line each:
//!
//! - `START_INFO <paddr> version=<v> memmap=<paddr> entries=<n> cmdline=<paddr>`
//! - `E820 <base> <len> <type>`: the firmware's entries, as read;
//! - `RESERVE <name> <start> <end>`: byte ranges the kernel adds as non-usable;
//! - `MAP <start> <end> <kind>`: the normalised map, and `REPORT <text>`;
//! - `RUN <start> <end> <kind>`: the bump allocator's runs (every frame it
//!   handed out lies in one);
//! - `GUARD <addr> fault`, `HEAP <start> <pages>`, `STACK <start> <pages>`;
//! - `HANDOFF <start> <end> <kind>`: the map a kernel allocator receives;
//! - `BITMAP free=<n> usable=<n>`, then `BITMAP_ALLOC <addr> <size>` for the
//!   frames it hands out, and `BITMAP_AFTER free=<n>`;
//! - `FIRMWARE PASS` (exit 0x10) or `FIRMWARE FAIL <why>` (exit 0x11).
//!
//! Addresses are hexadecimal with `0x`; kinds are `RegionKind`'s `Debug`.
//! Between those lines it prints the tables of the `boot` example (firmware
//! map, change report, normalised map, frames by purpose, hand-off map) for
//! people; their lines start with a space or a lowercase-led title, which
//! the host test ignores.

use core::fmt;
use core::mem::size_of;

use framealloc::TaggedFrameAllocator;
use framealloc::alloc::protocol::e820::E820Entry;
use framealloc::alloc::{
    BitmapAllocator, BumpAllocator, FRAME_SIZE, FirmwareRegion, MemoryMap, MemoryRegion,
    NormalizeOptions, RegionKind, normalize,
};
use framealloc::paging::{Mmu, RecursivePageTable};
use framealloc::x86_64::VirtAddr;
use framealloc::x86_64::structures::paging::{
    FrameAllocator, Page, PageSize, PageTableFlags, PageTableIndex, Size2MiB, Size4KiB,
};
use scenarios::RECURSIVE_INDEX;

use crate::println;
use crate::serial::{Exit, exit};

/// `hvm_start_info.magic` ("xEn3" with the top bit clear).
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// The kernel command line that selects this boot.
const COMMAND: &[u8] = b"firmware-map";
/// The trampoline identity-maps the first GiB; boot structures must lie there.
const IDENTITY_LIMIT: u64 = 1 << 30;
/// The most E820 entries read.
const MAX_E820: usize = 128;
/// Entries the kernel adds: its image, the start info, the map, the command line.
const OWN_ENTRIES: usize = 4;
const MAX_ENTRIES: usize = MAX_E820 + OWN_ENTRIES;
/// Room for the normalised map (see `normalize`).
const MAP_ROOM: usize = 4 * MAX_ENTRIES + 2;
/// Room for the bump allocator's runs.
const RUN_ROOM: usize = 32;

/// Purposes of the kernel's own allocations.
const HEAP: RegionKind = RegionKind::Custom(0x100);
const STACK: RegionKind = RegionKind::Custom(0x101);

/// Where the heap starts (level-4 entry 136, far from the identity map and
/// from the recursive entry).
const HEAP_START: u64 = 0x4400_0000_0000;
/// The stack's guard page; the stack's pages follow it.
const STACK_GUARD: u64 = 0x4500_0000_0000;
const STACK_PAGES: u64 = 16;
/// Pages of heap beyond what the bitmap needs.
const HEAP_SPARE_PAGES: u64 = 4;

/// `struct hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`, version 1).
#[derive(Clone, Copy)]
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

unsafe extern "C" {
    /// `ebx` at the PVH entry: the start info's physical address.
    static pvh_start_info_paddr: u64;
    /// The first byte of the kernel image (linker script).
    static kernel_start: u8;
    /// One past the last byte of the kernel image, `.bss` included.
    static kernel_end: u8;
}

/// Why the boot failed.
struct Failure(&'static str);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The start info and its physical address, if the loader passed a valid one.
fn start_info() -> Option<(u64, StartInfo)> {
    // SAFETY: written once by the trampoline before any Rust code ran.
    let paddr = unsafe { pvh_start_info_paddr };
    let size = size_of::<StartInfo>() as u64;
    if paddr == 0 || paddr % 8 != 0 || paddr + size > IDENTITY_LIMIT {
        return None;
    }
    // SAFETY: identity-mapped, aligned, and the loader's start info, which
    // nothing writes while the kernel runs.
    let info = unsafe { core::ptr::read(paddr as *const StartInfo) };
    (info.magic == START_INFO_MAGIC).then_some((paddr, info))
}

/// The kernel command line's bytes (without the NUL), at most 256.
fn command_line(info: &StartInfo) -> &'static [u8] {
    let paddr = info.cmdline_paddr;
    if paddr == 0 || paddr + 256 > IDENTITY_LIMIT {
        return &[];
    }
    // SAFETY: identity-mapped loader memory that nothing writes; QEMU
    // places the NUL-terminated command line there.
    let bytes = unsafe { core::slice::from_raw_parts(paddr as *const u8, 256) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..len]
}

/// The command line's words (separated by spaces).
pub fn command_line_words() -> impl Iterator<Item = &'static [u8]> {
    start_info()
        .map_or(&[][..], |(_, info)| command_line(&info))
        .split(|&b| b == b' ')
        .filter(|word| !word.is_empty())
}

/// Whether the command line asks for this boot.
pub fn requested() -> bool {
    start_info().is_some_and(|(_, info)| {
        command_line(&info)
            .windows(COMMAND.len())
            .any(|w| w == COMMAND)
    })
}

/// Runs the firmware-map boot and exits QEMU.
pub fn run() -> ! {
    match boot() {
        Ok(()) => {
            println!("FIRMWARE PASS");
            exit(Exit::Passed)
        }
        Err(failure) => {
            println!("FIRMWARE FAIL {failure}");
            exit(Exit::Failed)
        }
    }
}

fn print_regions(label: &str, regions: impl IntoIterator<Item = MemoryRegion>) {
    for r in regions {
        println!("{label} {:#x} {:#x} {:?}", r.start, r.end, r.kind);
    }
}

/// A byte count for people: `4 KiB`, `31.99 MiB`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        let (unit, name) = units
            .into_iter()
            .find(|&(unit, _)| self.0 >= unit)
            .unwrap_or((1, "B"));
        if self.0.is_multiple_of(unit) {
            write!(f, "{} {name}", self.0 / unit)
        } else {
            let hundredths = self.0 * 100 / unit;
            write!(f, "{}.{:02} {name}", hundredths / 100, hundredths % 100)
        }
    }
}

/// A region table as the `boot` example prints it.
fn print_table(title: &str, regions: &[MemoryRegion]) {
    println!("");
    println!("{title}");
    println!("               start                 end        size  kind");
    for r in regions {
        println!(
            "  {:#018x}  {:#018x}  {:>10}  {}",
            r.start,
            r.end,
            text::<16>(format_args!("{}", Size(r.len()))),
            r.kind
        );
    }
}

/// The change report as the `boot` example prints it.
fn print_report(report: &framealloc::alloc::NormalizeReport) {
    println!("");
    println!("Change report");
    println!("  entries read                       {}", report.entries_in);
    println!(
        "  regions written                    {}",
        report.regions_out
    );
    println!("  input was unsorted                 {}", report.unsorted);
    println!(
        "  zero-length entries dropped        {}",
        report.dropped_empty
    );
    println!(
        "  entries beyond 2^52 dropped        {}",
        report.dropped_beyond_limit
    );
    println!(
        "  entries clipped at 2^52            {}",
        report.clipped_at_limit
    );
    println!(
        "  usable entries shrunk inward       {}",
        report.usable_trimmed
    );
    println!(
        "  non-usable entries grown outward   {}",
        report.non_usable_widened
    );
    println!(
        "  overlapping pairs resolved         {}",
        report.overlapping_pairs
    );
    println!(
        "  frame 0 withheld                   {}",
        report.frame_zero_withheld
    );
    println!("  neighbours merged                  {}", report.merged);
    println!(
        "  usable memory                      {}",
        Size(report.usable_bytes)
    );
}

/// Formats into a fixed buffer, so that `{:>10}` can pad the result.
fn text<const N: usize>(args: fmt::Arguments<'_>) -> Text<N> {
    let mut text = Text {
        bytes: [0; N],
        len: 0,
    };
    let _ = fmt::Write::write_fmt(&mut text, args);
    text
}

/// A short string in a fixed buffer (no heap in the kernel).
struct Text<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?"))
    }
}

fn boot() -> Result<(), Failure> {
    let (info_paddr, info) = start_info().ok_or(Failure("no PVH start info"))?;
    println!(
        "START_INFO {info_paddr:#x} version={} memmap={:#x} entries={} cmdline={:#x}",
        info.version, info.memmap_paddr, info.memmap_entries, info.cmdline_paddr
    );
    if info.version < 1 || info.memmap_entries == 0 {
        return Err(Failure("the start info has no memory map"));
    }
    let count = info.memmap_entries as usize;
    let table_bytes = (count * size_of::<E820Entry>()) as u64;
    if count > MAX_E820
        || info.memmap_paddr % 8 != 0
        || info.memmap_paddr + table_bytes > IDENTITY_LIMIT
    {
        return Err(Failure("the memory map is too long or out of reach"));
    }
    // SAFETY: identity-mapped, aligned loader memory holding `count`
    // `hvm_memmap_table_entry`s, whose layout `E820Entry` has.
    let table =
        unsafe { core::slice::from_raw_parts(info.memmap_paddr as *const E820Entry, count) };

    // The firmware's entries, then what the kernel itself occupies.
    let mut scratch = [FirmwareRegion::default(); MAX_ENTRIES];
    println!("");
    println!("Firmware memory map ({count} E820 entries from the PVH start info)");
    println!("                base              length  kind");
    for entry in table {
        let kind = entry.to_firmware().kind;
        println!("  {:#018x}  {:#018x}  {kind}", entry.base, entry.len);
    }
    for (slot, entry) in scratch.iter_mut().zip(table) {
        println!("E820 {:#x} {:#x} {}", entry.base, entry.len, entry.kind);
        *slot = entry.to_firmware();
    }
    let image = (&raw const kernel_start as u64, &raw const kernel_end as u64);
    let cmdline_len = command_line(&info).len() as u64 + 1;
    let own = [
        ("kernel", image.0, image.1, RegionKind::Kernel),
        (
            "start_info",
            info_paddr,
            info_paddr + size_of::<StartInfo>() as u64,
            RegionKind::Bootloader,
        ),
        (
            "memmap",
            info.memmap_paddr,
            info.memmap_paddr + table_bytes,
            RegionKind::Bootloader,
        ),
        (
            "cmdline",
            info.cmdline_paddr,
            info.cmdline_paddr + cmdline_len,
            RegionKind::Bootloader,
        ),
    ];
    for (i, (name, start, end, kind)) in own.into_iter().enumerate() {
        println!("RESERVE {name} {start:#x} {end:#x}");
        scratch[count + i] = FirmwareRegion::new(start, end - start, kind);
    }
    let entries = &scratch[..count + own.len()];

    let mut map_storage = [MemoryRegion::default(); MAP_ROOM];
    let (map, report) = normalize(entries, &mut map_storage, NormalizeOptions::default())
        .map_err(|_| Failure("normalize: storage too small"))?;
    print_report(&report);
    print_table("Normalised memory map", map.regions());
    print_regions("MAP", map.regions().iter().copied());
    println!("REPORT {report}");

    let mut runs = [MemoryRegion::default(); RUN_ROOM];
    // SAFETY: the usable regions of `map` are RAM the firmware reports free,
    // minus the kernel image (code, data, boot page tables and stack) and the
    // loader's structures, all entered above as non-usable; in this boot
    // nothing else allocates physical memory.
    let mut bump = unsafe { BumpAllocator::new(map, &mut runs) };
    let heap_pages = map_heap_and_stack(&mut bump, &map)?;

    let runs = bump.runs();
    println!("");
    println!("Frames used by purpose (bump allocator; custom 256 = heap, 257 = stack)");
    for purpose in [RegionKind::PageTable, HEAP, STACK] {
        println!(
            "  {:<12} {:>6} frames",
            text::<16>(format_args!("{purpose}")),
            bump.frames_used_by(purpose)
        );
    }
    print_regions("RUN", runs);
    let mut hand_off_storage = [MemoryRegion::default(); MAP_ROOM + 2 * RUN_ROOM];
    let hand_off = bump
        .hand_off(&mut hand_off_storage)
        .map_err(|_| Failure("hand_off: storage too small"))?;
    print_table(
        "Hand-off map (what the kernel allocator receives)",
        hand_off.regions(),
    );
    print_regions("HANDOFF", hand_off.regions().iter().copied());
    bitmap_from(&hand_off, heap_pages)
}

/// Maps the heap (big enough for the bitmap of `map`) and the stack with its
/// guard page; checks each through the new mappings. Returns the heap's pages.
fn map_heap_and_stack(bump: &mut BumpAllocator<'_>, map: &MemoryMap<'_>) -> Result<u64, Failure> {
    let words = BitmapAllocator::words_needed(map) as u64;
    let heap_pages = (words * 8).div_ceil(FRAME_SIZE) + HEAP_SPARE_PAGES;
    // SAFETY: ring 0, 4-level paging, and the trampoline made entry
    // RECURSIVE_INDEX of the active level-4 table point to itself.
    let mmu =
        unsafe { Mmu::new() }.map_err(|_| Failure("Mmu::new refused the CPU (CR4.PCIDE set)"))?;
    let mut table = RecursivePageTable::new(mmu, PageTableIndex::new(RECURSIVE_INDEX))
        .map_err(|_| Failure("the boot page tables have no recursive entry"))?;
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    let stack_start = STACK_GUARD + FRAME_SIZE;
    let areas = [
        (HEAP_START, heap_pages, HEAP),
        (stack_start, STACK_PAGES, STACK),
    ];
    for (start, pages, purpose) in areas {
        for i in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(start + i * FRAME_SIZE));
            let frame = bump
                .try_allocate::<Size4KiB>(purpose)
                .map_err(|_| Failure("bump: no frame for the heap or stack"))?;
            // SAFETY: the page lies in an area of its own that nothing
            // uses, and the frame was just handed out for it.
            unsafe { table.map_to(page, frame, flags, &mut bump.tagged(RegionKind::PageTable)) }
                .map_err(|_| Failure("map_to failed"))?
                .flush();
            if table.translate_page(page).ok() != Some(frame) {
                return Err(Failure("a new page translates to another frame"));
            }
            for offset in [0, FRAME_SIZE - 8] {
                let addr = page.start_address() + offset;
                let value = addr.as_u64() ^ 0x5a5a_5a5a;
                // SAFETY: the page was just mapped to a frame of its own.
                let back = unsafe { crate::probe::write_u64(addr, value) }
                    .and_then(|()| unsafe { crate::probe::read_u64(addr) });
                if back != Ok(value) {
                    return Err(Failure("a new page does not hold what was written"));
                }
            }
        }
    }
    println!("HEAP {HEAP_START:#x} {heap_pages}");
    println!("STACK {stack_start:#x} {STACK_PAGES}");
    let guard = VirtAddr::new(STACK_GUARD);
    if table
        .translate_page(Page::<Size4KiB>::containing_address(guard))
        .is_ok()
    {
        return Err(Failure("the guard page is mapped"));
    }
    // SAFETY: the guard page is unmapped (checked above): the read faults
    // and the probe recovers.
    match unsafe { crate::probe::read_u64(guard + (FRAME_SIZE - 8)) } {
        Err(fault) => println!("GUARD {:#x} fault", fault.addr.as_u64()),
        Ok(_) => return Err(Failure("reading the guard page did not fault")),
    }
    Ok(heap_pages)
}

/// Builds the kernel's bitmap allocator from the hand-off map, its bitmap in
/// the heap, and allocates from it.
fn bitmap_from(hand_off: &MemoryMap<'_>, heap_pages: u64) -> Result<(), Failure> {
    let words = BitmapAllocator::words_needed(hand_off);
    if (words * 8) as u64 > heap_pages * FRAME_SIZE {
        return Err(Failure("the heap is smaller than the bitmap"));
    }
    // SAFETY: the heap pages were just mapped, writable, to frames of their
    // own, and nothing else refers to them.
    let storage = unsafe { core::slice::from_raw_parts_mut(HEAP_START as *mut u64, words) };
    // SAFETY: the hand-off map's usable frames are those the bump allocator
    // did not hand out, and it allocates no more.
    let mut bitmap = unsafe { BitmapAllocator::from_map(storage, hand_off) }
        .map_err(|_| Failure("the bitmap allocator refused the hand-off map"))?;
    let free = bitmap.free_frames();
    println!("BITMAP free={free} usable={}", bitmap.usable_frames());
    let hand_off_usable = hand_off.bytes_of(RegionKind::Usable) / FRAME_SIZE;
    if free != hand_off_usable {
        return Err(Failure("bitmap free count differs from the hand-off map"));
    }
    let huge: Option<framealloc::PhysFrame<Size2MiB>> = bitmap.allocate_frame();
    let huge = huge.ok_or(Failure("no 2 MiB frame"))?;
    println!(
        "BITMAP_ALLOC {:#x} {:#x}",
        huge.start_address().as_u64(),
        Size2MiB::SIZE
    );
    for _ in 0..8 {
        let small: Option<framealloc::PhysFrame<Size4KiB>> = bitmap.allocate_frame();
        let small = small.ok_or(Failure("no 4 KiB frame"))?;
        println!(
            "BITMAP_ALLOC {:#x} {:#x}",
            small.start_address().as_u64(),
            FRAME_SIZE
        );
    }
    println!("BITMAP_AFTER free={}", bitmap.free_frames());
    if bitmap.free_frames() != free - 512 - 8 {
        return Err(Failure("bitmap free count after allocating is off"));
    }
    Ok(())
}
