//! A boot, played on the emulator, from the firmware's memory map to the
//! kernel's own frame allocator.
//!
//! 1. A PC-like firmware memory map with the usual flaws is normalised; the
//!    change report says what was fixed.
//! 2. The bootloader allocates with a tagged [`BumpAllocator`]: boot
//!    information, the kernel image, a kernel stack, a kernel heap (2 MiB
//!    frames) and, through `boot.tagged(PageTable)`, every page table.
//! 3. A [`RecursivePageTable`] on the emulated MMU maps the kernel image,
//!    stack, heap and the framebuffer, mixing 4 KiB and 2 MiB pages. Every
//!    page is verified through the emulated MMU and TLB: the translation,
//!    and a data word written to the frame and read back at the virtual
//!    address. The stack's guard page must fault.
//! 4. The mapping dump, the hand-off map and the frames used per purpose are
//!    printed; the kernel builds a [`BitmapAllocator`] from the hand-off map.
//!
//! `cargo run --release --example boot [-- --svg memory.svg]`; with
//! `--svg PATH` it also draws physical memory coloured by purpose.

#![allow(
    clippy::cast_precision_loss,
    reason = "sizes are converted to f64 only for printing and drawing"
)]

use std::error::Error;
use std::fmt::Write as _;
use std::time::Instant;

use framealloc::alloc::{
    BitmapAllocator, BumpAllocator, FirmwareRegion, MemoryMap, MemoryRegion, NormalizeOptions,
    NormalizeReport, RegionKind, normalize,
};
use framealloc::emu::{Access, LeafSize, Machine};
use framealloc::paging::RecursivePageTable;
use framealloc::x86_64::structures::paging::{
    Page, PageTableFlags as Flags, PageTableIndex, PhysFrame,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{FrameDeallocator, PageSize, Size2MiB, Size4KiB, TaggedFrameAllocator};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Purposes of our own, beyond the built-in kinds.
const STACK: RegionKind = RegionKind::Custom(1);
const HEAP: RegionKind = RegionKind::Custom(2);

/// Where things go in the kernel's address space.
const RECURSIVE_INDEX: u16 = 510;
const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
const STACK_TOP: u64 = 0xffff_e000_0001_1000;
const HEAP_BASE: u64 = 0xffff_c000_0000_0000;
const FB_BASE: u64 = 0xffff_d000_0000_0000;

const KERNEL_TEXT_FRAMES: u64 = 256;
const KERNEL_DATA_FRAMES: u64 = 128;
const STACK_FRAMES: u64 = 16;
const HEAP_HUGE_FRAMES: u64 = 4;
const FB_PHYS: u64 = 0xfd00_0000;
const FB_LEN: u64 = 3 * MIB; // 1024 × 768 × 4 bytes

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

fn name(kind: RegionKind) -> String {
    match kind {
        STACK => "kernel stack".into(),
        HEAP => "kernel heap".into(),
        other => other.to_string(),
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= MIB => format!("{:.2} MiB", b as f64 / MIB as f64),
        b if b >= KIB => format!("{} KiB", b / KIB),
        b => format!("{b} B"),
    }
}

/// A PC's firmware map plus what the bootloader knows about itself, with the
/// flaws real maps have. Each entry says what is odd about it.
fn firmware_map() -> Vec<(FirmwareRegion, &'static str)> {
    use RegionKind::{
        AcpiNvs, AcpiReclaimable, BadMemory, Bootloader, Framebuffer, Reserved, Usable,
    };
    vec![
        (
            FirmwareRegion::new(0x10_0000, 0x1fe0_0000, Usable),
            "main RAM, listed first (unsorted)",
        ),
        (
            FirmwareRegion::new(0x0, 0x9fc00, Usable),
            "low RAM, ends mid-frame",
        ),
        (
            FirmwareRegion::new(0x9fc00, 0x400, Reserved),
            "EBDA, starts mid-frame",
        ),
        (
            FirmwareRegion::new(0xe_0000, 0x2_0000, Reserved),
            "BIOS ROM",
        ),
        (
            FirmwareRegion::new(0x7000, 0x9000, Bootloader),
            "the bootloader itself, inside low RAM",
        ),
        (
            FirmwareRegion::new(0x0400_0800, 0x10_0000, Usable),
            "duplicate RAM entry, unaligned",
        ),
        (
            FirmwareRegion::new(0x0a00_0400, 0x1800, AcpiNvs),
            "ACPI NVS inside RAM, unaligned",
        ),
        (
            FirmwareRegion::new(0x0c00_0000, 0x1000, BadMemory),
            "a bad frame inside RAM",
        ),
        (
            FirmwareRegion::new(0x1fe8_0000, 0x8_0000, AcpiReclaimable),
            "ACPI tables overlapping RAM's end",
        ),
        (
            FirmwareRegion::new(0x1ff0_0000, 0x10_0000, AcpiNvs),
            "ACPI NVS",
        ),
        (
            FirmwareRegion::new(0x3000_0000, 0, Reserved),
            "zero-length entry",
        ),
        (
            FirmwareRegion::new(FB_PHYS, FB_LEN, Framebuffer),
            "linear framebuffer (GOP)",
        ),
        (
            FirmwareRegion::new(0xfec0_0000, 0x1000, Reserved),
            "I/O APIC",
        ),
        (
            FirmwareRegion::new(0xfee0_0000, 0x1000, Reserved),
            "local APIC",
        ),
        (
            FirmwareRegion::new(0xf_ffff_f000, 0x8000, Reserved),
            "PCI window, unaligned end",
        ),
        (
            FirmwareRegion::new(1 << 52, 1 << 30, Usable),
            "beyond the 52-bit limit",
        ),
        (
            FirmwareRegion::new((1 << 52) - 0x2000, u64::MAX, Reserved),
            "crosses 2^52, base + len overflows",
        ),
    ]
}

fn print_regions(title: &str, regions: &[MemoryRegion]) {
    println!("\n{title}");
    println!("  {:>18}  {:>18}  {:>10}  kind", "start", "end", "size");
    for r in regions {
        println!(
            "  {:#018x}  {:#018x}  {:>10}  {}",
            r.start,
            r.end,
            size(r.len()),
            name(r.kind)
        );
    }
}

fn print_report(report: &NormalizeReport) {
    println!("\nChange report");
    let rows = [
        ("entries read", report.entries_in.to_string()),
        ("regions written", report.regions_out.to_string()),
        ("input was unsorted", report.unsorted.to_string()),
        (
            "zero-length entries dropped",
            report.dropped_empty.to_string(),
        ),
        (
            "entries beyond 2^52 dropped",
            report.dropped_beyond_limit.to_string(),
        ),
        (
            "entries clipped at 2^52",
            report.clipped_at_limit.to_string(),
        ),
        (
            "usable edges inside a frame",
            report.usable_trimmed.to_string(),
        ),
        (
            "non-usable entries grown outward",
            report.non_usable_widened.to_string(),
        ),
        (
            "overlapping pairs resolved",
            report.overlapping_pairs.to_string(),
        ),
        ("frame 0 withheld", report.frame_zero_withheld.to_string()),
        ("neighbouring entries merged", report.merged.to_string()),
        ("usable memory", size(report.usable_bytes)),
    ];
    for (what, value) in rows {
        println!("  {what:<34} {value}");
    }
}

/// One mapping made by the bootloader, to be verified and dumped.
struct Area {
    name: &'static str,
    virt: u64,
    phys: Vec<(u64, LeafSize)>,
    flags: Flags,
}

/// Maps `frames` at consecutive pages from `virt`, taking page tables from
/// the bump allocator.
fn map_pages<S: framealloc::paging::EntrySize + std::fmt::Debug>(
    table: &mut RecursivePageTable<Machine>,
    boot: &mut BumpAllocator<'_>,
    virt: u64,
    frames: &[PhysFrame<S>],
    flags: Flags,
) -> Result<()> {
    for (i, frame) in frames.iter().enumerate() {
        let page = Page::<S>::from_start_address(VirtAddr::new(virt + i as u64 * S::SIZE))
            .map_err(|e| format!("{e:?}"))?;
        let huge = if S::SIZE == Size4KiB::SIZE {
            Flags::empty()
        } else {
            Flags::HUGE_PAGE
        };
        // SAFETY: the frames are fresh from the bump allocator (or the
        // framebuffer, which nothing else maps), so no aliasing is created.
        let flush = unsafe {
            table.map_to(
                page,
                *frame,
                flags | huge,
                &mut boot.tagged(RegionKind::PageTable),
            )
        }
        .map_err(|e| format!("mapping {virt:#x}: {e:?}"))?;
        flush.flush();
    }
    Ok(())
}

/// Checks every page of `area` through the emulated MMU: the walk's frame,
/// size and flags, and a data word written at the frame and read back
/// through the TLB at the virtual address. Returns the pages checked.
fn verify(machine: &mut Machine, area: &Area) -> Result<usize> {
    let mut virt = area.virt;
    for (n, &(phys, size)) in area.phys.iter().enumerate() {
        let t = machine
            .walk(VirtAddr::new(virt), Access::KERNEL_READ)
            .map_err(|f| format!("{}: {f}", area.name))?;
        if t.frame.as_u64() != phys || t.size != size || !t.flags.contains(area.flags) {
            return Err(format!(
                "{}: {virt:#x} maps {t:?}, expected {phys:#x} {size:?}",
                area.name
            )
            .into());
        }
        for offset in [0, size.bytes() / 2, size.bytes() - 8] {
            let word = 0x5eed_0000_0000_0000 | (n as u64) << 24 | offset;
            machine
                .memory_mut()
                .write_u64(PhysAddr::new(phys + offset), word)?;
            let read = machine.read_u64(VirtAddr::new(virt + offset))?;
            if read != word {
                return Err(
                    format!("{}: read {read:#x} at {:#x}", area.name, virt + offset).into(),
                );
            }
        }
        virt += size.bytes();
    }
    Ok(area.phys.len())
}

fn main() -> Result<()> {
    let started = Instant::now();
    let svg_path = parse_args()?;

    // 1. Firmware map → normalised map.
    let firmware = firmware_map();
    println!("Firmware memory map ({} entries)", firmware.len());
    println!("  {:>18}  {:>18}  {:<16}  note", "base", "length", "kind");
    for (r, note) in &firmware {
        println!(
            "  {:#018x}  {:#018x}  {:<16}  {note}",
            r.base,
            r.len,
            name(r.kind)
        );
    }
    let entries: Vec<FirmwareRegion> = firmware.iter().map(|(r, _)| *r).collect();
    let mut map_storage = [MemoryRegion::default(); 64];
    let (map, report) = normalize(&entries, &mut map_storage, NormalizeOptions::new())?;
    print_report(&report);
    print_regions("Normalised memory map", map.regions());

    // 2. The bootloader's tagged bump allocator; 3. the page tables.
    let mut runs = [MemoryRegion::default(); 64];
    // SAFETY: `map` is the memory map of the emulated machine, which holds
    // nothing yet outside the regions the firmware map marks non-usable;
    // this is the only allocator over it, and it allocates nothing after the
    // hand-off below.
    let mut boot = unsafe { BumpAllocator::new(map, &mut runs) };
    build_address_space(&mut boot)?;

    // 4. The hand-off map and frames per purpose.
    let mut hand_off_storage = vec![MemoryRegion::default(); boot.hand_off_len()];
    let hand_off = boot.hand_off(&mut hand_off_storage)?;
    print_regions(
        "Hand-off map (what the kernel receives)",
        hand_off.regions(),
    );

    print_purposes(&boot);

    // The kernel takes over: a bitmap allocator from the hand-off map.
    kernel_side(&hand_off)?;

    if let Some(path) = svg_path {
        std::fs::write(&path, svg(hand_off.regions()))?;
        println!("\nwrote {path}");
    }
    println!(
        "\ndone in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Allocates the kernel's frames, maps them with a recursive page table on
/// the emulator, verifies every page and prints the mapping dump.
fn build_address_space(boot: &mut BumpAllocator<'_>) -> Result<()> {
    // Boot information for the kernel (written by a real bootloader).
    let _boot_info: Vec<PhysFrame> = (0..2)
        .map(|_| boot.try_allocate(RegionKind::Bootloader))
        .collect::<Result<_, _>>()?;
    let level_4: PhysFrame = boot.try_allocate(RegionKind::PageTable)?;
    let kernel: Vec<PhysFrame> = (0..KERNEL_TEXT_FRAMES + KERNEL_DATA_FRAMES)
        .map(|_| boot.try_allocate(RegionKind::Kernel))
        .collect::<Result<_, _>>()?;
    let stack: Vec<PhysFrame> = (0..STACK_FRAMES)
        .map(|_| boot.try_allocate(STACK))
        .collect::<Result<_, _>>()?;
    let heap: Vec<PhysFrame<Size2MiB>> = (0..HEAP_HUGE_FRAMES)
        .map(|_| boot.try_allocate(HEAP))
        .collect::<Result<_, _>>()?;

    // 3. A recursive page table on the emulated MMU.
    let machine = Machine::with_recursive_table(PageTableIndex::new(RECURSIVE_INDEX), level_4)?;
    let mut table = RecursivePageTable::new(machine, PageTableIndex::new(RECURSIVE_INDEX))?;
    let text = Flags::PRESENT;
    let data = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
    let device = data | Flags::NO_CACHE | Flags::WRITE_THROUGH;
    let (kernel_text, kernel_data) = kernel.split_at(KERNEL_TEXT_FRAMES as usize);
    let data_base = KERNEL_BASE + KERNEL_TEXT_FRAMES * Size4KiB::SIZE;
    let stack_base = STACK_TOP - STACK_FRAMES * Size4KiB::SIZE;
    map_pages(&mut table, boot, KERNEL_BASE, kernel_text, text)?;
    map_pages(&mut table, boot, data_base, kernel_data, data)?;
    map_pages(&mut table, boot, stack_base, &stack, data)?;
    map_pages(&mut table, boot, HEAP_BASE, &heap, data)?;
    // The framebuffer: one 2 MiB page, then 4 KiB pages for the last MiB.
    let fb_huge = [
        PhysFrame::<Size2MiB>::from_start_address(PhysAddr::new(FB_PHYS))
            .map_err(|e| format!("{e:?}"))?,
    ];
    let fb_small: Vec<PhysFrame> = (FB_PHYS + 2 * MIB..FB_PHYS + FB_LEN)
        .step_by(4096)
        .map(|a| PhysFrame::containing_address(PhysAddr::new(a)))
        .collect();
    map_pages(&mut table, boot, FB_BASE, &fb_huge, device)?;
    map_pages(&mut table, boot, FB_BASE + 2 * MIB, &fb_small, device)?;

    let small = |frames: &[PhysFrame]| -> Vec<(u64, LeafSize)> {
        frames
            .iter()
            .map(|f| (f.start_address().as_u64(), LeafSize::Size4KiB))
            .collect()
    };
    let mut fb = vec![(FB_PHYS, LeafSize::Size2MiB)];
    fb.extend(small(&fb_small));
    let areas = [
        Area {
            name: "kernel text",
            virt: KERNEL_BASE,
            phys: small(kernel_text),
            flags: text,
        },
        Area {
            name: "kernel data",
            virt: data_base,
            phys: small(kernel_data),
            flags: data,
        },
        Area {
            name: "kernel stack",
            virt: stack_base,
            phys: small(&stack),
            flags: data,
        },
        Area {
            name: "kernel heap",
            virt: HEAP_BASE,
            phys: heap
                .iter()
                .map(|f| (f.start_address().as_u64(), LeafSize::Size2MiB))
                .collect(),
            flags: data,
        },
        Area {
            name: "framebuffer",
            virt: FB_BASE,
            phys: fb,
            flags: device,
        },
    ];
    let guard = VirtAddr::new(stack_base - Size4KiB::SIZE);
    verify_and_dump(&mut table, &areas, guard)
}

/// Verifies every page of every area through the emulated MMU, checks that
/// nothing else is mapped and that the guard page faults, and prints the
/// table's mapping dump.
fn verify_and_dump(
    table: &mut RecursivePageTable<Machine>,
    areas: &[Area],
    guard: VirtAddr,
) -> Result<()> {
    let machine = table.backend_mut();
    let mut verified = 0;
    for area in areas {
        verified += verify(machine, area)?;
    }
    let guard_fault = machine
        .read_u64(guard)
        .err()
        .ok_or("the stack's guard page is mapped")?;
    let counters = machine.counters();
    let mapped = table.mappings().count();
    if mapped != verified {
        return Err(format!("{mapped} pages mapped, {verified} expected").into());
    }

    println!("\nMapping dump (the page table's own view, contiguous runs merged)");
    for area in areas {
        println!("  {:#018x}  {}", area.virt, area.name);
    }
    for line in table.dump().to_string().lines() {
        println!("  {line}");
    }
    println!(
        "  verified all {verified} pages through the emulated MMU: translation, size, flags \
         and a data word written to the frame and read back at the virtual address \
         ({} TLB misses, {} hits, {} invlpg); no other page is mapped; the guard page \
         below the stack faults: {guard_fault}",
        counters.tlb_misses, counters.tlb_hits, counters.invlpg
    );
    Ok(())
}

fn print_purposes(boot: &BumpAllocator<'_>) {
    println!("\nFrames used per purpose");
    println!("  {:<14} {:>7} {:>10}  runs", "purpose", "frames", "size");
    let mut total = 0;
    for purpose in [
        RegionKind::Bootloader,
        RegionKind::Kernel,
        STACK,
        HEAP,
        RegionKind::PageTable,
    ] {
        let frames = boot.frames_used_by(purpose);
        let runs = boot.runs().filter(|r| r.kind == purpose).count();
        total += frames;
        println!(
            "  {:<14} {frames:>7} {:>10}  {runs}",
            name(purpose),
            size(frames * 4096)
        );
    }
    println!("  {:<14} {total:>7} {:>10}", "total", size(total * 4096));
}

fn kernel_side(hand_off: &MemoryMap<'_>) -> Result<()> {
    let mut storage = vec![0u64; BitmapAllocator::words_needed(hand_off)];
    // SAFETY: the usable frames of the hand-off map are those the
    // bootloader's bump allocator did not hand out, and it allocates no more;
    // this is the only allocator built from the map.
    let mut frames = unsafe { BitmapAllocator::from_map(&mut storage, hand_off) }?;
    println!("\nKernel: bitmap allocator from the hand-off map");
    println!(
        "  {} words of storage; {} free 4 KiB frames ({}), {} free 2 MiB frames",
        BitmapAllocator::words_needed(hand_off),
        frames.free_frames(),
        size(frames.free_frames() * 4096),
        frames.free_2mib_frames()
    );
    let small = frames.allocate_4kib().ok_or("no 4 KiB frame")?;
    let huge = frames.allocate_2mib().ok_or("no 2 MiB frame")?;
    println!(
        "  allocated 4 KiB frame {:#x} and 2 MiB frame {:#x}",
        small.start_address().as_u64(),
        huge.start_address().as_u64()
    );
    // SAFETY: both frames were never used; the bad frees below are refused.
    unsafe {
        frames.try_deallocate_4kib(small)?;
        frames.try_deallocate_2mib(huge)?;
        let twice = frames.try_deallocate_4kib(small).unwrap_err();
        println!(
            "  freeing {:#x} again: {twice}",
            small.start_address().as_u64()
        );
        let table_frame = hand_off
            .regions()
            .iter()
            .find(|r| r.kind == RegionKind::PageTable)
            .ok_or("no page table in the hand-off map")?;
        let foreign = PhysFrame::containing_address(PhysAddr::new(table_frame.start));
        let refused = frames.try_deallocate_4kib(foreign).unwrap_err();
        println!(
            "  freeing page-table frame {:#x}: {refused}",
            table_frame.start
        );
        // Through the trait, a refusal is counted and leaves state unchanged.
        FrameDeallocator::<Size4KiB>::deallocate_frame(&mut frames, foreign);
    }
    println!(
        "  {} free 4 KiB frames again; {} refusal through FrameDeallocator",
        frames.free_frames(),
        frames.rejected_deallocations()
    );
    Ok(())
}

fn parse_args() -> Result<Option<String>> {
    let mut args = std::env::args().skip(1);
    let mut svg = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--svg" => svg = Some(args.next().ok_or("--svg needs a path")?),
            other => {
                return Err(format!("unknown argument {other:?}; usage: boot [--svg PATH]").into());
            }
        }
    }
    Ok(svg)
}

// ---- the picture ----------------------------------------------------------

fn colour(kind: Option<RegionKind>) -> &'static str {
    use RegionKind::{
        AcpiNvs, AcpiReclaimable, BadMemory, Bootloader, Custom, Framebuffer, Kernel, PageTable,
        Reserved, Usable,
    };
    match kind {
        None => "#ffffff",
        Some(Usable) => "#9ad89a",
        Some(Reserved) => "#a0a0a0",
        Some(AcpiReclaimable) => "#f2c14e",
        Some(AcpiNvs) => "#e07b39",
        Some(BadMemory) => "#d62728",
        Some(Bootloader) => "#8c6bb1",
        Some(Kernel) => "#1f77b4",
        Some(PageTable) => "#17becf",
        Some(Framebuffer) => "#e377c2",
        Some(STACK) => "#ff7f0e",
        Some(HEAP) => "#bcbd22",
        Some(Custom(_)) => "#7f7f7f",
    }
}

/// A strip of the picture: segments (start, end, kind or hole) drawn left to
/// right, each at least `MIN_WIDTH` wide.
fn strip(
    out: &mut String,
    title: &str,
    y: f64,
    segments: &[(u64, u64, Option<RegionKind>)],
    squash: bool,
) {
    const LEFT: f64 = 20.0;
    const WIDTH: f64 = 1120.0;
    const HEIGHT: f64 = 48.0;
    const MIN_WIDTH: f64 = 3.0;
    let mapped: u64 = segments
        .iter()
        .filter(|s| s.2.is_some())
        .map(|s| s.1 - s.0)
        .sum();
    // Holes are shortened to at most an eighth of the mapped total, so that
    // a 3 GiB gap does not hide 512 MiB of RAM; they are marked as shortened.
    let weight = |s: &(u64, u64, Option<RegionKind>)| {
        let len = (s.1 - s.0) as f64;
        if squash && s.2.is_none() {
            len.min(mapped as f64 / 8.0)
        } else {
            len
        }
    };
    let total: f64 = segments.iter().map(weight).sum();
    let scale = (WIDTH - MIN_WIDTH * segments.len() as f64) / total;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{title}</text>"#,
        y - 8.0
    );
    let mut x = LEFT;
    let mut last_label = f64::NEG_INFINITY;
    for s in segments {
        let w = MIN_WIDTH + weight(s) * scale;
        let (fill, dash) = match s.2 {
            None => (colour(None), r#" stroke-dasharray="3,2""#),
            kind => (colour(kind), ""),
        };
        let what = s.2.map_or("hole".to_string(), name);
        let _ = writeln!(
            out,
            r##"<rect x="{x:.2}" y="{y}" width="{w:.2}" height="{HEIGHT}" fill="{fill}" stroke="#333" stroke-width="0.4"{dash}><title>{:#x}..{:#x} {} {what}</title></rect>"##,
            s.0,
            s.1,
            size(s.1 - s.0)
        );
        if squash && s.2.is_none() && weight(s) < (s.1 - s.0) as f64 {
            let _ = writeln!(
                out,
                r#"<text x="{:.2}" y="{}" font-size="11" text-anchor="middle">≈</text>"#,
                x + w / 2.0,
                y + HEIGHT / 2.0 + 4.0
            );
        }
        if x - last_label >= 13.0 {
            let _ = writeln!(
                out,
                r#"<line x1="{x:.2}" y1="{}" x2="{x:.2}" y2="{}" stroke="black" stroke-width="0.6"/>"#,
                y + HEIGHT,
                y + HEIGHT + 4.0
            );
            let _ = writeln!(
                out,
                r#"<text x="{x:.2}" y="{}" font-size="9" transform="rotate(50 {x:.2} {})">{:#x}</text>"#,
                y + HEIGHT + 12.0,
                y + HEIGHT + 12.0,
                s.0
            );
            last_label = x;
        }
        x += w;
    }
    if let Some(last) = segments.last().filter(|_| x - last_label >= 13.0) {
        let _ = writeln!(
            out,
            r#"<text x="{x:.2}" y="{}" font-size="9" transform="rotate(50 {x:.2} {})">{:#x}</text>"#,
            y + HEIGHT + 12.0,
            y + HEIGHT + 12.0,
            last.1
        );
    }
}

/// Regions with the holes between them made explicit, limited to `[from, to)`.
fn segments(regions: &[MemoryRegion], from: u64, to: u64) -> Vec<(u64, u64, Option<RegionKind>)> {
    let mut out = Vec::new();
    let mut at = from;
    for r in regions {
        let (s, e) = (r.start.max(from), r.end.min(to));
        if s >= e {
            continue;
        }
        if s > at {
            out.push((at, s, None));
        }
        out.push((s, e, Some(r.kind)));
        at = e;
    }
    if at < to && !out.is_empty() && to != u64::MAX {
        out.push((at, to, None));
    }
    out
}

fn svg(regions: &[MemoryRegion]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="480" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="1200" height="480" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="20" y="24" font-size="18" font-weight="bold">Physical memory after boot, coloured by purpose</text>"#
    );
    let all = segments(regions, 0, u64::MAX);
    strip(
        &mut out,
        "All regions (holes shortened, marked ≈; every region at least 3 px wide)",
        60.0,
        &all,
        true,
    );
    strip(
        &mut out,
        "First 16 MiB, to scale (every region at least 3 px wide)",
        210.0,
        &segments(regions, 0, 16 * MIB),
        false,
    );

    // Legend: every kind present, with its total size.
    let mut kinds: Vec<RegionKind> = regions.iter().map(|r| r.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut x = 20.0;
    let mut y = 370.0;
    for kind in kinds {
        let bytes: u64 = regions
            .iter()
            .filter(|r| r.kind == kind)
            .map(MemoryRegion::len)
            .sum();
        let label = format!("{} ({})", name(kind), size(bytes));
        let _ = writeln!(
            out,
            r##"<rect x="{x}" y="{y}" width="14" height="14" fill="{}" stroke="#333" stroke-width="0.5"/>"##,
            colour(Some(kind))
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="12">{label}</text>"#,
            x + 20.0,
            y + 11.0
        );
        x += 230.0;
        if x > 1000.0 {
            x = 20.0;
            y += 24.0;
        }
    }
    let _ = writeln!(
        out,
        r##"<rect x="{x}" y="{y}" width="14" height="14" fill="white" stroke="#333" stroke-width="0.5" stroke-dasharray="3,2"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="12">hole (in no region)</text>"#,
        x + 20.0,
        y + 11.0
    );
    out.push_str("</svg>\n");
    out
}
