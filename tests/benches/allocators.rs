//! Per-frame cost of the stock allocators as they fill, side by side with a
//! tutorial-style allocator (`usable_frames().nth(n)`); the per-entry cost of
//! `normalize` on firmware maps of 1 Ki, 4 Ki and 16 Ki entries; and the
//! memory the bump allocator strands when 4 KiB and 2 MiB requests mix.
//!
//! `cargo bench -p tests --bench allocators` (under a minute). Each bump and
//! bitmap figure is the cost per frame of filling a fresh allocator with N
//! frames (median over samples); each tutorial figure is the cost of one allocation once N
//! frames have been handed out. A summary table with the ratios is printed
//! at the end.
//!
//! Every iteration's allocator is built before the clock starts, and one
//! sample times all its iterations as one block, so that every size is timed
//! in blocks of similar length: on a shared machine, preemption then weighs
//! on all sizes alike instead of only on the long fills.
//!
//! Instruction counts, which a busy machine does not disturb:
//! `cargo bench -p tests --bench allocators --no-run` prints the binary;
//! `valgrind --tool=callgrind --toggle-collect='*fill_bitmap*' <binary>
//! --fill-only bitmap 1048576` counts the instructions of one fill (likewise
//! `fill_bump`/`bump`). `--normalize-only N` times one `normalize` of an
//! N-entry map (for callgrind: `--toggle-collect='*normalize*'`).
//!
//! The stranding figures are counts, not times: on a QEMU-like map (a
//! 1150 MiB guest's E820, 294,270 usable frames), requests of a pattern
//! (4 KiB only; alternating 2 MiB and 4 KiB; every 10th or every 100th a
//! 2 MiB one) go to a fresh bump allocator until a 4 KiB request fails; the
//! frames still usable in its hand-off map were never handed out.

#![allow(
    clippy::cast_precision_loss,
    reason = "frame counts below 2^21 convert to f64 exactly"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use framealloc::alloc::{
    BitmapAllocator, BumpAllocator, BumpError, FRAME_SIZE, FirmwareRegion, MemoryMap, MemoryRegion,
    NormalizeOptions, RegionKind, normalize,
};
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, Size2MiB, Size4KiB, TaggedFrameAllocator};

/// Fill sizes for the O(1) allocators: 1 Ki, 16 Ki, 128 Ki, 1 Mi frames.
const FILL_SIZES: [u64; 4] = [1 << 10, 1 << 14, 1 << 17, 1 << 20];
/// Positions for the tutorial allocator (it is O(n) per frame).
const TUTORIAL_SIZES: [u64; 3] = [1 << 10, 1 << 14, 100 << 10];
/// Tutorial allocations timed per iteration.
const TUTORIAL_BATCH: u64 = 16;
/// Firmware map sizes for `normalize`: 1 Ki, 4 Ki, 16 Ki entries.
const NORMALIZE_SIZES: [usize; 3] = [1 << 10, 1 << 12, 1 << 14];
/// Mixed-size request patterns: (name, every how many requests one is 2 MiB;
/// 0 for none).
const PATTERNS: [(&str, u64); 4] = [
    ("4 KiB only", 0),
    ("alternating 2 MiB / 4 KiB", 2),
    ("10% 2 MiB", 10),
    ("1% 2 MiB", 100),
];

/// A PC-like firmware map with enough usable memory for `frames` frames:
/// low memory, the legacy hole, then 64 MiB usable blocks separated by
/// single reserved frames, so the allocators cross region boundaries.
fn firmware(frames: u64) -> Vec<FirmwareRegion> {
    let mut map = vec![
        FirmwareRegion::new(0, 0x9fc00, RegionKind::Usable),
        FirmwareRegion::new(0x9fc00, 0x60400, RegionKind::Reserved),
    ];
    let block = 64 << 20;
    let mut base = 0x10_0000;
    let mut left = frames * FRAME_SIZE + block;
    while left > 0 {
        map.push(FirmwareRegion::new(base, block, RegionKind::Usable));
        map.push(FirmwareRegion::new(
            base + block,
            FRAME_SIZE,
            RegionKind::Reserved,
        ));
        base += block + FRAME_SIZE;
        left = left.saturating_sub(block);
    }
    map
}

fn normalized(frames: u64) -> Vec<MemoryRegion> {
    let firmware = firmware(frames);
    let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
    let (map, _) = normalize(&firmware, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

/// The E820 map QEMU gives a guest with 1150 MiB of RAM (`-m 1150`):
/// 294,270 usable frames once normalised (frame 0 withheld).
fn qemu_like() -> Vec<FirmwareRegion> {
    use RegionKind::{Reserved, Usable};
    let ram_end = 1150 << 20;
    vec![
        FirmwareRegion::new(0, 0x9fc00, Usable),
        FirmwareRegion::new(0x9fc00, 0x400, Reserved),
        FirmwareRegion::new(0xf0000, 0x10000, Reserved),
        FirmwareRegion::new(0x10_0000, ram_end - 0x2_0000 - 0x10_0000, Usable),
        FirmwareRegion::new(ram_end - 0x2_0000, 0x2_0000, Reserved),
        FirmwareRegion::new(0xfeff_c000, 0x4000, Reserved),
        FirmwareRegion::new(0xfffc_0000, 0x4_0000, Reserved),
    ]
}

/// Runs `pattern` on a fresh bump allocator over the QEMU-like map until a
/// 4 KiB request fails; returns (frames left usable in the hand-off map,
/// usable frames of the map).
fn stranded(every: u64) -> (u64, u64) {
    let firmware = qemu_like();
    let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
    let (map, _) = normalize(&firmware, &mut storage, NormalizeOptions::new()).unwrap();
    let mut runs = vec![MemoryRegion::default(); 1 << 16];
    // SAFETY: the map describes no real memory: the frames are numbers this
    // function discards and never accesses.
    let mut bump = unsafe { BumpAllocator::new(map, &mut runs) };
    for i in 1.. {
        if every != 0 && i % every == 0 {
            match bump.try_allocate::<Size2MiB>(RegionKind::Custom(1)) {
                Ok(_) | Err(BumpError::OutOfFrames) => {}
                Err(e) => panic!("2 MiB request {i}: {e}"),
            }
        } else {
            match bump.try_allocate::<Size4KiB>(RegionKind::Kernel) {
                Ok(_) => {}
                Err(BumpError::OutOfFrames) => break,
                Err(e) => panic!("4 KiB request {i}: {e}"),
            }
        }
    }
    let mut out = vec![MemoryRegion::default(); bump.hand_off_len()];
    let hand_off = bump.hand_off(&mut out).unwrap();
    (
        hand_off.bytes_of(RegionKind::Usable) / FRAME_SIZE,
        map.bytes_of(RegionKind::Usable) / FRAME_SIZE,
    )
}

/// A messy UEFI-like firmware map of `n` entries: descriptors of 1 to 64
/// frames and mixed kinds laid end to end, one in 16 with an edge inside a
/// frame, one in 32 overlapping its neighbour, handed over shuffled.
fn messy_firmware(n: usize) -> Vec<FirmwareRegion> {
    use RegionKind::{AcpiNvs, AcpiReclaimable, Bootloader, Reserved, Usable};
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut base = 0x10_0000;
    let mut map: Vec<FirmwareRegion> = (0..n)
        .map(|_| {
            let r = next();
            let len = (r % 64 + 1) * FRAME_SIZE;
            let kind = match (r >> 8) % 10 {
                0..=5 => Usable,
                6 => Reserved,
                7 => AcpiReclaimable,
                8 => AcpiNvs,
                _ => Bootloader,
            };
            let mut entry = FirmwareRegion::new(base, len, kind);
            if (r >> 16) % 16 == 0 {
                entry.base += 0x100;
                entry.len -= 0x100;
            }
            if (r >> 24) % 32 == 0 {
                entry.len += 2 * FRAME_SIZE;
            }
            base += len;
            entry
        })
        .collect();
    for i in (1..map.len()).rev() {
        let j = usize::try_from(next() % (i as u64 + 1)).unwrap();
        map.swap(i, j);
    }
    map
}

/// The tutorial allocator, written the way the tutorial writes it: the n-th
/// usable frame, found by iterating from the start.
struct TutorialAllocator<'a> {
    map: MemoryMap<'a>,
    next: usize,
}

impl TutorialAllocator<'_> {
    fn usable_frames(&self) -> impl Iterator<Item = PhysFrame> + '_ {
        self.map
            .regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| r.start..r.end)
            .flat_map(|r| r.step_by(4096))
            .map(|addr| PhysFrame::containing_address(PhysAddr::new(addr)))
    }
}

// SAFETY: the n-th usable frame for increasing n: each frame once.
unsafe impl FrameAllocator<Size4KiB> for TutorialAllocator<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = self.usable_frames().nth(self.next);
        self.next += 1;
        frame
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fill");
    // Equal-length samples: every sample times one block of similar length.
    group.sampling_mode(SamplingMode::Flat);
    for n in FILL_SIZES {
        let regions = normalized(n);
        let map = MemoryMap::from_regions(&regions).unwrap();
        group.throughput(Throughput::Elements(n));
        // Runs: one per usable block crossed, plus slack.
        let runs_each = (n / (1 << 14) + 4) as usize;
        group.bench_function(BenchmarkId::new("bump", n), |b| {
            b.iter_custom(|iters| {
                let mut runs = vec![MemoryRegion::default(); runs_each * iters as usize];
                let mut bumps: Vec<_> = runs
                    .chunks_mut(runs_each)
                    // SAFETY: the map describes no real memory: the frames
                    // are numbers the benchmark discards and never accesses,
                    // so allocators over the same map hand out nothing in use.
                    .map(|runs| unsafe { BumpAllocator::new(map, runs) })
                    .collect();
                let start = Instant::now();
                for bump in &mut bumps {
                    for _ in 0..n {
                        black_box(bump.allocate_tagged(RegionKind::Kernel));
                    }
                }
                start.elapsed()
            });
        });
        let words = BitmapAllocator::words_needed(&map);
        group.bench_function(BenchmarkId::new("bitmap", n), |b| {
            b.iter_custom(|iters| {
                let mut storage = vec![0u64; words * iters as usize];
                let mut bitmaps: Vec<_> = storage
                    .chunks_mut(words)
                    // SAFETY: as for the bump allocators above.
                    .map(|words| unsafe { BitmapAllocator::from_map(words, &map) }.unwrap())
                    .collect();
                let start = Instant::now();
                for bitmap in &mut bitmaps {
                    for _ in 0..n {
                        black_box(bitmap.allocate_4kib());
                    }
                }
                start.elapsed()
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("normalize");
    group.sampling_mode(SamplingMode::Flat);
    for n in NORMALIZE_SIZES {
        let firmware = messy_firmware(n);
        let mut storage = vec![MemoryRegion::default(); 4 * n + 2];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("entries", n), |b| {
            b.iter(|| {
                black_box(normalize(
                    black_box(&firmware),
                    &mut storage,
                    NormalizeOptions::new(),
                ))
                .map(|(map, _)| map.regions().len())
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("tutorial");
    group.sampling_mode(SamplingMode::Flat);
    for n in TUTORIAL_SIZES {
        let regions = normalized(n + TUTORIAL_BATCH);
        let map = MemoryMap::from_regions(&regions).unwrap();
        group.throughput(Throughput::Elements(TUTORIAL_BATCH));
        group.bench_function(BenchmarkId::new("nth", n), |b| {
            b.iter_custom(|iters| {
                let mut tutorials: Vec<_> = (0..iters)
                    .map(|_| TutorialAllocator {
                        map,
                        next: n as usize,
                    })
                    .collect();
                let start = Instant::now();
                for tutorial in &mut tutorials {
                    for _ in 0..TUTORIAL_BATCH {
                        black_box(tutorial.allocate_frame());
                    }
                }
                start.elapsed()
            });
        });
    }
    group.finish();
}

/// The median time of one criterion benchmark's samples, in ns, from its
/// saved estimates (the median resists the preemption spikes of a shared
/// machine better than the mean).
fn median_ns(dir: &Path, group: &str, name: &str, n: u64) -> Option<f64> {
    let path = dir
        .join(group)
        .join(name)
        .join(n.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let median = &text[text.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn summary(dir: &Path) {
    println!("\nper-frame cost (median of samples), ns");
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10}   last/first",
        "", "1 Ki", "16 Ki", "128 Ki", "1 Mi"
    );
    let mut at_128k = Vec::new();
    for name in ["bump", "bitmap"] {
        let per_frame: Vec<Option<f64>> = FILL_SIZES
            .iter()
            .map(|&n| median_ns(dir, "fill", name, n).map(|t| t / n as f64))
            .collect();
        let cells: Vec<String> = per_frame
            .iter()
            .map(|v| v.map_or("-".into(), |v| format!("{v:.2}")))
            .collect();
        let ratio = match (per_frame[0], per_frame[3]) {
            (Some(a), Some(b)) => format!("{:.2}", b / a),
            _ => "-".into(),
        };
        println!(
            "{name:<10} {:>10} {:>10} {:>10} {:>10}   {ratio}",
            cells[0], cells[1], cells[2], cells[3]
        );
        at_128k.push((name, per_frame[2]));
    }
    println!("\ntutorial nth(n), ns per frame at n frames");
    let mut tutorial_100k = None;
    for n in TUTORIAL_SIZES {
        let t = median_ns(dir, "tutorial", "nth", n).map(|t| t / TUTORIAL_BATCH as f64);
        println!(
            "{:<10} {:>14}",
            format!("{} Ki", n >> 10),
            t.map_or("-".into(), |t| format!("{t:.1}"))
        );
        tutorial_100k = t;
    }
    if let Some(t) = tutorial_100k {
        for (name, ours) in at_128k {
            if let Some(ours) = ours {
                println!(
                    "tutorial at 100 Ki / {name} (fill to 128 Ki): {:.0}x",
                    t / ours
                );
            }
        }
    }
    println!("\nnormalize, ns per entry (median of samples)");
    let per_entry: Vec<Option<f64>> = NORMALIZE_SIZES
        .iter()
        .map(|&n| median_ns(dir, "normalize", "entries", n as u64).map(|t| t / n as f64))
        .collect();
    for (n, t) in NORMALIZE_SIZES.iter().zip(&per_entry) {
        println!(
            "{:<10} {:>10}",
            format!("{} Ki", n >> 10),
            t.map_or("-".into(), |t| format!("{t:.1}"))
        );
    }
    if let (Some(a), Some(b)) = (per_entry[0], per_entry[2]) {
        println!("16 Ki / 1 Ki per entry: {:.2}", b / a);
    }
    println!("\nbump allocator: frames stranded (usable in the hand-off map, never handed out)");
    println!("after requests until a 4 KiB one fails, QEMU-like map");
    for (name, every) in PATTERNS {
        let (left, usable) = stranded(every);
        println!(
            "{name:<28} {left:>8} of {usable} ({:.3}%)",
            100.0 * left as f64 / usable as f64
        );
    }
}

#[inline(never)]
fn fill_bump(bump: &mut BumpAllocator<'_>, n: u64) {
    for _ in 0..n {
        black_box(bump.allocate_tagged(RegionKind::Kernel));
    }
}

#[inline(never)]
fn fill_bitmap(bitmap: &mut BitmapAllocator<'_>, n: u64) {
    for _ in 0..n {
        black_box(bitmap.allocate_4kib());
    }
}

#[inline(never)]
fn run_normalize(firmware: &[FirmwareRegion], storage: &mut [MemoryRegion]) -> usize {
    normalize(firmware, storage, NormalizeOptions::new())
        .unwrap()
        .0
        .regions()
        .len()
}

/// `--fill-only bump|bitmap N`: one fill of N frames and nothing else, to be
/// run under `valgrind --tool=callgrind` for instruction counts, which a
/// shared machine does not disturb (subtract the count for N = 0).
fn fill_only(kind: &str, n: u64) {
    let regions = normalized(n);
    let map = MemoryMap::from_regions(&regions).unwrap();
    match kind {
        "bump" => {
            let mut runs = vec![MemoryRegion::default(); (n / (1 << 14) + 4) as usize];
            // SAFETY: the map describes no real memory: the frames are
            // numbers this run discards and never accesses.
            fill_bump(&mut unsafe { BumpAllocator::new(map, &mut runs) }, n);
        }
        "bitmap" => {
            let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
            // SAFETY: the map describes no real memory: the frames are
            // numbers this run discards and never accesses.
            let mut bitmap = unsafe { BitmapAllocator::from_map(&mut storage, &map) }.unwrap();
            fill_bitmap(&mut bitmap, n);
        }
        other => eprintln!("--fill-only takes bump or bitmap, not {other:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, n, ..] = args.as_slice()
        && flag == "--normalize-only"
    {
        let firmware = messy_firmware(n.parse().expect("N is a number"));
        let mut storage = vec![MemoryRegion::default(); 4 * firmware.len() + 2];
        let start = Instant::now();
        let regions = run_normalize(&firmware, &mut storage);
        println!(
            "normalize of {} entries: {regions} regions in {:?}",
            firmware.len(),
            start.elapsed()
        );
        return;
    }
    if let [_, flag, kind, n, ..] = args.as_slice()
        && flag == "--fill-only"
    {
        fill_only(kind, n.parse().expect("N is a number"));
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut c = Criterion::default()
        .output_directory(&dir)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary(&dir);
}
