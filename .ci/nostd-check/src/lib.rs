//! Uses the packaged framealloc from freestanding code (see `Cargo.toml`).
#![no_std]

use core::panic::PanicInfo;

use framealloc::alloc::protocol::e820::E820Entry;
use framealloc::alloc::protocol::{ProtocolError, normalize_entries};
use framealloc::alloc::{
    BitmapAllocator, BumpAllocator, FirmwareRegion, MemoryRegion, NormalizeOptions, RegionKind,
};
use framealloc::{FrameAllocator, TaggedFrameAllocator};

const N: usize = 8;

/// Normalises an E820 map, bump-allocates, hands off, and builds a bitmap
/// allocator: the path of the QEMU kernel's firmware-map boot.
#[unsafe(no_mangle)]
pub fn check_core(table: &[E820Entry]) -> u64 {
    let mut scratch = [FirmwareRegion::default(); N];
    let mut storage = [MemoryRegion::default(); 4 * N + 2];
    let Ok((map, _)) = normalize_entries(
        table.iter().map(E820Entry::to_firmware),
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    ) else {
        return 0;
    };
    let mut runs = [MemoryRegion::default(); 4];
    // SAFETY: a compile-time check; never called with a live map.
    let mut bump = unsafe { BumpAllocator::new(map, &mut runs) };
    let table_frame = bump.tagged(RegionKind::PageTable).allocate_frame();
    let mut hand_off = [MemoryRegion::default(); 4 * N + 10];
    let Ok(hand_off) = bump.hand_off(&mut hand_off) else {
        return 0;
    };
    let mut words = [0u64; 64];
    // SAFETY: as above.
    let Ok(mut bitmap) = (unsafe { BitmapAllocator::from_map(&mut words, &hand_off) }) else {
        return 0;
    };
    let frame: Option<framealloc::PhysFrame> = bitmap.allocate_frame();
    let mut again = [MemoryRegion::default(); 4 * N + 2];
    let usable = first_usable(normalize_entries(
        table.iter().map(E820Entry::to_firmware),
        &mut scratch,
        &mut again,
        NormalizeOptions::default(),
    ));
    usable
        ^ frame.map_or(0, |f| f.start_address().as_u64())
        ^ table_frame.map_or(0, |f| f.start_address().as_u64())
}

fn first_usable(
    result: Result<
        (
            framealloc::MemoryMap<'_>,
            framealloc::alloc::NormalizeReport,
        ),
        ProtocolError,
    >,
) -> u64 {
    result.map_or(0, |(map, _)| map.usable().next().map_or(0, |r| r.start))
}

#[cfg(feature = "bootloader_api")]
#[unsafe(no_mangle)]
pub fn check_bootloader_api(regions: &[bootloader_api::info::MemoryRegion; 2]) -> u64 {
    let mut scratch = [FirmwareRegion::default(); 2];
    let mut storage = [MemoryRegion::default(); 10];
    first_usable(
        framealloc::alloc::protocol::bootloader_api::normalize_regions(
            regions,
            &mut scratch,
            &mut storage,
            NormalizeOptions::default(),
        ),
    )
}

#[cfg(feature = "bootloader09")]
#[unsafe(no_mangle)]
pub fn check_bootloader09(map: &mut bootloader::bootinfo::MemoryMap) -> u64 {
    use bootloader::bootinfo::MemoryRegionType;
    use framealloc::alloc::protocol::bootloader09::{RegionTypeAllocator, normalize_memory_map};
    let mut scratch = [FirmwareRegion::default(); 64];
    let mut storage = [MemoryRegion::default(); 258];
    let usable = first_usable(normalize_memory_map(
        map,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    ));
    // SAFETY: a compile-time check; never called with a live map.
    let mut boot = unsafe { RegionTypeAllocator::new(map) };
    let table = boot.tagged(MemoryRegionType::PageTable).allocate_frame();
    usable ^ table.map_or(0, |f| f.start_address().as_u64())
}

#[cfg(feature = "multiboot2")]
#[unsafe(no_mangle)]
pub fn check_multiboot2(
    tag: &multiboot2::MemoryMapTag,
    efi: &multiboot2::EFIMemoryMapTag,
) -> u64 {
    use framealloc::alloc::protocol::multiboot2::{
        normalize_efi_memory_map_tag, normalize_memory_map_tag,
    };
    let mut scratch = [FirmwareRegion::default(); N];
    let mut storage = [MemoryRegion::default(); 4 * N + 2];
    let a = first_usable(normalize_memory_map_tag(
        tag,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    ));
    let b = first_usable(normalize_efi_memory_map_tag(
        efi,
        framealloc::alloc::protocol::BootServices::Exited,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    ));
    a ^ b
}

#[cfg(feature = "limine")]
#[unsafe(no_mangle)]
pub fn check_limine(entries: &[&limine::memory_map::Entry; 2]) -> u64 {
    let mut scratch = [FirmwareRegion::default(); 2];
    let mut storage = [MemoryRegion::default(); 10];
    first_usable(framealloc::alloc::protocol::limine::normalize_entries(
        entries,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    ))
}

#[cfg(feature = "uefi")]
#[unsafe(no_mangle)]
pub fn check_uefi(descriptors: &[uefi::mem::memory_map::MemoryDescriptor; 2]) -> u64 {
    let mut scratch = [FirmwareRegion::default(); 2];
    let mut storage = [MemoryRegion::default(); 10];
    first_usable(framealloc::alloc::protocol::uefi::normalize_descriptors(
        descriptors,
        framealloc::alloc::protocol::BootServices::Running,
        &mut scratch,
        &mut storage,
        NormalizeOptions::default(),
    ))
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
