//! Builds a realistic kernel address space on the emulated MMU with
//! `RecursivePageTable`'s range operations, reads through it, and prints the
//! mapping dump and the TLB invalidations it took. Then creates two process
//! address spaces sharing the kernel half, loads pages into them while the
//! kernel space is active, switches between them, prints each one's dump
//! and destroys them.
//!
//! Run with `cargo run -p framealloc --example address_space --features emu`.

use framealloc::emu::Machine;
use framealloc::paging::{AddressSpace, EntrySet, Mapping, MaxPageSize, RecursivePageTable};
use framealloc::x86_64::structures::paging::frame::PhysFrameRange;
use framealloc::x86_64::structures::paging::page::PageRange;
use framealloc::x86_64::structures::paging::{
    Page, PageTableFlags as F, PageTableIndex, PhysFrame, Size4KiB,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{FrameAllocator, FrameDeallocator, PageSize};

/// A bump allocator over "RAM" from 16 MiB, with a free list: hands out page
/// tables and heap frames, takes them back.
struct Ram {
    next: u64,
    free: Vec<u64>,
}

// SAFETY: every frame is handed out once until it is freed again.
unsafe impl FrameAllocator<Size4KiB> for Ram {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let addr = self.free.pop().unwrap_or_else(|| {
            self.next += 4096;
            self.next - 4096
        });
        Some(PhysFrame::containing_address(PhysAddr::new(addr)))
    }
}

impl FrameDeallocator<Size4KiB> for Ram {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.free.push(frame.start_address().as_u64());
    }
}

fn pages(start: u64, bytes: u64) -> PageRange {
    let first = Page::containing_address(VirtAddr::new(start));
    Page::range(first, first + bytes / Size4KiB::SIZE)
}

fn frames(start: u64, bytes: u64) -> PhysFrameRange {
    let first = PhysFrame::containing_address(PhysAddr::new(start));
    PhysFrame::range(first, first + bytes / Size4KiB::SIZE)
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Maps a kernel (direct map, image, heap, framebuffer) and a user process.
fn build(
    table: &mut RecursivePageTable<Machine>,
    ram: &mut Ram,
) -> Result<(), Box<dyn std::error::Error>> {
    let kernel = F::PRESENT | F::GLOBAL;
    // SAFETY: all of this is emulated memory.
    unsafe {
        // Direct map of the first 4 GiB of physical memory, 1 GiB pages.
        table
            .map_range_mixed(
                pages(0xffff_8000_0000_0000, 4 * GIB),
                frames(0, 4 * GIB),
                kernel | F::WRITABLE | F::NO_EXECUTE,
                MaxPageSize::Size1GiB,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        // Kernel image loaded at 2 MiB: text (read/execute), rodata, data.
        let image = 0xffff_ffff_8000_0000;
        table
            .map_range_mixed(
                pages(image, 2 * MIB + 512 * 1024),
                frames(2 * MIB, 2 * MIB + 512 * 1024),
                kernel,
                MaxPageSize::Size2MiB,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        table
            .map_range(
                pages(image + 3 * MIB, 256 * 1024),
                frames(5 * MIB, 256 * 1024),
                kernel | F::NO_EXECUTE,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        table
            .map_range(
                pages(image + 4 * MIB, MIB),
                frames(6 * MIB, MIB),
                kernel | F::WRITABLE | F::NO_EXECUTE,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        // Kernel heap: 64 frames taken from the allocator.
        table
            .map_range_allocated(
                pages(0xffff_c000_0000_0000, 64 * 4096),
                F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        // Framebuffer: 8 MiB of device memory, uncached.
        table
            .map_range_mixed(
                pages(0xffff_d000_0000_0000, 8 * MIB),
                frames(0xfd00_0000, 8 * MIB),
                F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::NO_CACHE | F::WRITE_THROUGH,
                MaxPageSize::Size2MiB,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        // A user process: code, and a stack below a guard page.
        let user = F::PRESENT | F::USER_ACCESSIBLE;
        table
            .map_range(
                pages(0x40_0000, 64 * 1024),
                frames(0x800_0000, 64 * 1024),
                user,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        table
            .map_range(
                pages(0x7fff_fff0_0000, 60 * 1024),
                frames(0x900_0000, 60 * 1024),
                user | F::WRITABLE | F::NO_EXECUTE,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
    }

    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let level_4 = PhysFrame::containing_address(PhysAddr::new(0x1000));
    let machine = Machine::with_recursive_table(PageTableIndex::new(510), level_4)?;
    let mut table = RecursivePageTable::new(machine, PageTableIndex::new(510))?;
    let mut ram = Ram {
        next: 16 * MIB,
        free: Vec::new(),
    };

    build(&mut table, &mut ram)?;

    // Data written by physical address reads back through the page tables
    // and the emulated TLB.
    table
        .backend_mut()
        .memory_mut()
        .write_u64(PhysAddr::new(6 * MIB + 8), 0x1234)?;
    assert_eq!(
        table
            .backend()
            .read_u64(VirtAddr::new(0xffff_ffff_8040_0008))?,
        0x1234
    );
    assert_eq!(
        table
            .backend()
            .read_u64(VirtAddr::new(0xffff_8000_0060_0008))?,
        0x1234
    );

    // Free 32 heap pages in the middle: the frames go back to the allocator
    // only after the TLB has forgotten them; empty tables would be reclaimed.
    // SAFETY: the heap frames are owned by the heap mapping only.
    unsafe { table.unmap_range_and_free(pages(0xffff_c000_0000_8000, 32 * 4096), &mut ram, true) }
        .map_err(|e| format!("{e:?}"))?;

    println!("{}", table.dump());
    let counters = table.backend().counters();
    println!(
        "{} mappings; {} invlpg, {} full flushes; {} frames back on the free list",
        table.mappings().count(),
        counters.invlpg,
        counters.full_flushes,
        ram.free.len()
    );

    processes(&mut table, &mut ram)
}

/// The level-4 index through which inactive spaces are edited.
const SLOT: u16 = 509;

/// Two process spaces sharing the kernel half: loaded while inactive,
/// switched to, dumped and destroyed.
fn processes(
    table: &mut RecursivePageTable<Machine>,
    ram: &mut Ram,
) -> Result<(), Box<dyn std::error::Error>> {
    // The kernel half: level-4 entries 256..=511 except the recursive entry
    // and the slot. Each gets a level-3 table now, so kernel mappings added
    // later are seen by every space.
    let mut kernel_half = EntrySet::range(PageTableIndex::new(256), PageTableIndex::new(511));
    kernel_half.remove(PageTableIndex::new(510));
    kernel_half.remove(PageTableIndex::new(SLOT));
    // SAFETY: these entries belong to the kernel table only.
    let prepared = unsafe { table.prepare_shared(&kernel_half, ram) }?;
    println!("\nkernel half: {prepared} level-3 tables created for sharing");

    let mut spaces: Vec<Option<AddressSpace>> = Vec::new();
    for (n, text) in [(1u64, b"process one\0"), (2, b"process two\0")] {
        let space = table.create_space(PageTableIndex::new(SLOT), &kernel_half, ram)?;
        // Load the process while the kernel space is active: 16 KiB of code
        // and 8 KiB of stack in frames from the allocator.
        let mut view = table.edit(&space)?;
        // SAFETY: the frames come fresh from the allocator.
        unsafe {
            view.map_range_allocated(
                pages(0x40_0000, 16 * 1024),
                F::PRESENT | F::USER_ACCESSIBLE,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
            view.map_range_allocated(
                pages(0x7fff_fff0_0000, 8 * 1024),
                F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE | F::NO_EXECUTE,
                ram,
            )
            .map_err(|e| format!("{e:?}"))?
            .flush();
        }
        let code: PhysFrame<Size4KiB> = view
            .translate_page(Page::containing_address(VirtAddr::new(0x40_0000)))
            .map_err(|e| format!("{e:?}"))?;
        let code = code.start_address();
        println!(
            "\nprocess {n} (inactive, through the slot):\n{}",
            view.dump()
        );
        drop(view);
        table.backend_mut().memory_mut().write_bytes(code, text)?;
        spaces.push(Some(space));
    }

    // Switch to each process and read its code page through the TLB; the
    // kernel's global pages stay readable.
    for (n, space) in spaces.iter_mut().enumerate() {
        let target = space.take().ok_or("every process has a space")?;
        // SAFETY: the emulated machine; the process maps the kernel half.
        let kernel = unsafe { table.switch_to(target) }.map_err(|(_, e)| e)?;
        let mut text = [0u8; 12];
        table
            .backend()
            .read_bytes(VirtAddr::new(0x40_0000), &mut text)?;
        let kernel_word = table
            .backend()
            .read_u64(VirtAddr::new(0xffff_ffff_8040_0008))?;
        println!(
            "in process {}: code reads {:?}, kernel data {kernel_word:#x}",
            n + 1,
            String::from_utf8_lossy(&text[..11])
        );
        // SAFETY: as above; the kernel space maps everything.
        let process = unsafe { table.switch_to(kernel) }.map_err(|(_, e)| e)?;
        *space = Some(process);
    }

    for space in spaces.into_iter().flatten() {
        let mut leaves = 0;
        let free_leaf = |leaf: Mapping, ram: &mut Ram| {
            leaves += 1;
            // SAFETY: the frame came from `ram` through `map_range_allocated`
            // and is mapped nowhere else.
            unsafe { ram.deallocate_frame(PhysFrame::containing_address(leaf.frame)) };
        };
        // SAFETY: each process's own tables and frames belong to it alone.
        let freed = unsafe { table.destroy_space(space, ram, free_leaf) }.map_err(|(_, e)| e)?;
        println!("destroyed a process: {freed} page tables and {leaves} pages freed");
    }
    Ok(())
}
