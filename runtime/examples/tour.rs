//! A tour of the adapters: map pages with `x86_64`'s own `OffsetPageTable`,
//! taking page-table frames from a closure, a region-typed (tagged)
//! allocator, a frame pool, and `NoAllocator`, and print what happened.
//!
//! Host memory plays physical memory: physical address `p` lives at
//! `arena + p`, so the page tables `x86_64` writes are real and can be walked.
//!
//! Run with `cargo run --example tour`.

use framealloc::x86_64::structures::paging::mapper::MapToError;
use framealloc::x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, Translate,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{
    FrameAllocator, FramePool, NoAllocator, PhysFrame, Size4KiB, TaggedFrameAllocator, from_fn,
};

/// What a bootloader allocates frames for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    PageTable,
    KernelStack,
}

/// A bootloader-style allocator: takes frames in order, remembers why.
struct BootAllocator {
    next: u64,
    end: u64,
    log: Vec<(PhysFrame, Region)>,
}

// SAFETY: `next` only grows and stays below `end`, so each frame is handed
// out once; the range is reserved for this allocator.
unsafe impl TaggedFrameAllocator for BootAllocator {
    type Tag = Region;
    fn allocate_tagged(&mut self, region: Region) -> Option<PhysFrame> {
        if self.next >= self.end {
            return None;
        }
        let frame = PhysFrame::containing_address(PhysAddr::new(self.next));
        self.next += 4096;
        self.log.push((frame, region));
        Some(frame)
    }
}

const FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

fn main() -> Result<(), MapToError<Size4KiB>> {
    // 64 frames of "physical memory"; frame 0 is the level-4 table.
    let mut phys: Vec<PageTable> = (0..64).map(|_| PageTable::new()).collect();
    let offset = VirtAddr::from_ptr(phys.as_ptr());
    // SAFETY: all page-table frames handed to the mapper below lie in the arena
    // `phys` (frames 1..64), which is mapped at `offset` and outlives it.
    let mut mapper = unsafe { OffsetPageTable::new(&mut phys[0], offset) };

    // Data frames (never dereferenced here) far above the table frames.
    let data =
        |i: u64| PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(0x8000_0000 + i * 4096));
    let mut report = Vec::new();

    // 1. A closure: frames 1..16 of the arena, one after the other.
    let mut table_frames =
        (1..16u32).map(|i| PhysFrame::containing_address(PhysAddr::new(u64::from(i) * 4096)));
    // SAFETY: the iterator yields each frame once; frames 1..16 are unused.
    let mut closure = unsafe { from_fn(|| table_frames.next()) };
    let page = Page::containing_address(VirtAddr::new(0x4000_0000));
    // SAFETY: `data(0)` is not otherwise used; the mapping is never accessed.
    unsafe { mapper.map_to(page, data(0), FLAGS, &mut closure)? }.ignore();
    report.push(("closure", page));

    // 2. A region-typed allocator: "allocate page-table frames" is one expression.
    let mut boot = BootAllocator {
        next: 16 * 4096,
        end: 40 * 4096,
        log: Vec::new(),
    };
    let page = Page::containing_address(VirtAddr::new(0x80_0000_0000));
    // SAFETY: as above.
    unsafe { mapper.map_to(page, data(1), FLAGS, &mut boot.tagged(Region::PageTable))? }.ignore();
    report.push(("tagged(PageTable)", page));
    let stack = boot
        .tagged(Region::KernelStack)
        .allocate_frame()
        .expect("boot frames left");

    // 3. A pool filled ahead of time, used where the real allocator must not be.
    let mut pool = FramePool::<Size4KiB, 4>::new();
    pool.fill_from(&mut boot.tagged(Region::PageTable));
    let page = Page::containing_address(VirtAddr::new(0x100_0000_0000));
    // SAFETY: as above.
    unsafe { mapper.map_to(page, data(2), FLAGS, &mut pool)? }.ignore();
    report.push(("pool", page));

    // 4. NoAllocator: fine where the tables exist, a clean error where not.
    let page = Page::containing_address(VirtAddr::new(0x4000_1000));
    // SAFETY: as above.
    unsafe { mapper.map_to(page, data(3), FLAGS, &mut NoAllocator)? }.ignore();
    report.push(("NoAllocator", page));
    let far = Page::<Size4KiB>::containing_address(VirtAddr::new(0x180_0000_0000));
    // SAFETY: as above.
    let refused = unsafe { mapper.map_to(far, data(4), FLAGS, &mut NoAllocator) };

    println!("{:<20} {:>18}  {:>14}", "adapter", "page", "frame");
    for (adapter, page) in &report {
        let frame = mapper
            .translate_addr(page.start_address())
            .expect("mapped above");
        println!(
            "{adapter:<20} {:>#18x}  {:>#14x}",
            page.start_address().as_u64(),
            frame.as_u64()
        );
    }
    println!();
    println!(
        "NoAllocator on a page that needs new tables: {:?}",
        refused.err()
    );
    println!(
        "closure handed out {} table frames",
        15 - table_frames.len()
    );
    println!("pool kept {} of 4 frames", pool.len());
    println!("boot allocator log (frame, purpose):");
    for (frame, region) in &boot.log {
        println!("  {:#8x}  {region:?}", frame.start_address().as_u64());
    }
    println!("kernel stack frame: {:#x}", stack.start_address().as_u64());
    Ok(())
}
