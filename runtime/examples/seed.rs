//! The problem framealloc was started for, solved three ways.
//!
//! A bootloader's frame allocator takes a *region type*: it records what each
//! frame is for in the memory map it hands to the kernel. `x86_64`'s
//! `map_to` wants a `FrameAllocator` that takes no argument. In 2018 that
//! meant a wrapper struct with two lifetimes and a hand-written impl (kept
//! below for comparison); with framealloc it is the derive, or one macro call.
//!
//! The page tables live in a host arena: a `Vec` of 4 KiB-aligned tables that
//! plays physical memory, with physical address `p` at `arena_base + p`, so
//! `x86_64`'s own `OffsetPageTable` can build and walk them here.
//!
//! Run with `cargo run --example seed`.

use framealloc::x86_64::structures::paging::mapper::MapToError;
use framealloc::x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, Size4KiB, Translate,
};
use framealloc::x86_64::{PhysAddr, VirtAddr};
use framealloc::{FrameAllocator, PhysFrame, frame_allocator};

/// What a frame is used for, as a bootloader's memory map records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MemoryRegionType {
    PageTable,
    Kernel,
}

/// A bootloader-style allocator over the arena's frames `1..len` (frame 0 is
/// the level-4 table). It remembers what each frame was allocated for.
///
/// The derive implements `TaggedFrameAllocator` with `allocate_frame`, and
/// `FrameAllocator<Size4KiB>` with the default tag `PageTable`.
#[derive(FrameAllocator)]
#[frame_allocator(unsafe tagged(
    method = allocate_frame,
    tag = MemoryRegionType,
    default = MemoryRegionType::PageTable,
))]
struct BootFrameAllocator {
    next: u64,
    end: u64,
    memory_map: Vec<(PhysFrame, MemoryRegionType)>,
}

impl BootFrameAllocator {
    fn new(frames: usize) -> Self {
        BootFrameAllocator {
            next: 1,
            end: frames as u64,
            memory_map: Vec::new(),
        }
    }

    /// The bootloader's own method: the shape `map_to` could not take.
    fn allocate_frame(&mut self, region_type: MemoryRegionType) -> Option<PhysFrame> {
        if self.next == self.end {
            return None;
        }
        let frame = PhysFrame::containing_address(PhysAddr::new(self.next * 4096));
        self.next += 1;
        self.memory_map.push((frame, region_type));
        Some(frame)
    }
}

/// The 2018 way, for comparison: a wrapper with two explicit lifetimes and a
/// hand-written (now `unsafe`) impl, to say "allocate page-table frames".
struct PageTableAllocator<'a, 'b: 'a> {
    frame_allocator: &'a mut BootFrameAllocatorRef<'b>,
}

/// In 2018 the bootloader's allocator itself borrowed the memory map.
struct BootFrameAllocatorRef<'b> {
    inner: &'b mut BootFrameAllocator,
}

// SAFETY: forwards to `BootFrameAllocator::allocate_frame`, which hands out
// each arena frame once.
unsafe impl FrameAllocator<Size4KiB> for PageTableAllocator<'_, '_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.frame_allocator
            .inner
            .allocate_frame(MemoryRegionType::PageTable)
    }
}

/// Host memory standing in for the first frames of physical memory.
struct Arena {
    frames: Vec<PageTable>,
}

impl Arena {
    fn new(frames: usize) -> Self {
        Arena {
            frames: (0..frames).map(|_| PageTable::new()).collect(),
        }
    }

    fn mapper(&mut self) -> OffsetPageTable<'_> {
        let offset = VirtAddr::from_ptr(self.frames.as_ptr());
        let (level_4, _) = self.frames.split_first_mut().expect("arena has frame 0");
        // SAFETY: the mapper dereferences only physical addresses of table
        // frames, and every table frame comes from `BootFrameAllocator`,
        // which hands out frames of this arena only; the arena is borrowed
        // mutably for as long as the mapper lives.
        unsafe { OffsetPageTable::new(level_4, offset) }
    }
}

const FRAMES: usize = 16;

fn main() -> Result<(), MapToError<Size4KiB>> {
    let mut arena = Arena::new(FRAMES);
    let mut boot = BootFrameAllocator::new(FRAMES);
    let mut mapper = arena.mapper();
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    // Frames the pages point at; `map_to` never touches them.
    let kernel_frame =
        |i: u64| PhysFrame::containing_address(PhysAddr::new(0x1_0000_0000 + i * 4096));

    // 1. The derive: the allocator itself is the `FrameAllocator` (default
    //    tag `PageTable`) and `.tagged(tag)` gives one for any other tag.
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x4000_0000));
    // SAFETY: the page is unused and the frame is not aliased elsewhere.
    unsafe { mapper.map_to(page, kernel_frame(0), flags, &mut boot)? }.ignore();

    // 2. `frame_allocator!`: a closure that captures the allocator by `&mut`
    //    and the region type by value; no lifetimes written.
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x7f00_0000_0000));
    let region = MemoryRegionType::PageTable;
    // SAFETY: `boot` hands out each arena frame once.
    let mut tables = unsafe { frame_allocator!(|| boot.allocate_frame(region)) };
    // SAFETY: the page is unused and the frame is not aliased.
    unsafe { mapper.map_to(page, kernel_frame(1), flags, &mut tables)? }.ignore();

    // 3. The 2018 wrapper, still working, for comparison.
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(0x8000_0000));
    let mut outer = BootFrameAllocatorRef { inner: &mut boot };
    let mut wrapper = PageTableAllocator {
        frame_allocator: &mut outer,
    };
    // SAFETY: the page is unused and the frame is not aliased elsewhere.
    unsafe { mapper.map_to(page, kernel_frame(2), flags, &mut wrapper)? }.ignore();

    // A frame for the kernel image, straight from the bootloader's method.
    let kernel = boot.allocate_frame(MemoryRegionType::Kernel);

    for address in [0x4000_0000u64, 0x7f00_0000_0000, 0x8000_0000, 0x9000_0000] {
        let virt = VirtAddr::new(address);
        match mapper.translate_addr(virt) {
            Some(phys) => println!("{:#014x} -> {:#x}", virt.as_u64(), phys.as_u64()),
            None => println!("{:#014x} -> not mapped", virt.as_u64()),
        }
    }
    println!("memory map the bootloader recorded:");
    for (frame, region_type) in &boot.memory_map {
        println!("  {:#07x}  {region_type:?}", frame.start_address().as_u64());
    }
    let page_tables = boot
        .memory_map
        .iter()
        .filter(|(_, t)| *t == MemoryRegionType::PageTable)
        .count();
    // Under the one level-4 table: 0x4000_0000 needed a level-3, -2 and -1
    // table, 0x7f00_0000_0000 three more, and 0x8000_0000 shares the first
    // level-3 table but needed its own level-2 and -1 tables: 8 in all.
    assert_eq!(page_tables, 8);
    assert_eq!(kernel.map(|f| f.start_address().as_u64()), Some(9 * 4096));
    assert_eq!(
        mapper.translate_addr(VirtAddr::new(0x7f00_0000_0123)),
        Some(PhysAddr::new(0x1_0000_1123))
    );
    Ok(())
}
