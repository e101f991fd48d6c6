//! Per-frame cost of the stock allocators as they fill, side by side with a
//! tutorial-style allocator (`usable_frames().nth(n)`).
//!
//! `cargo bench -p tests --bench allocators` (about a minute). Each bump and
//! bitmap figure is the mean cost per frame of filling a fresh allocator
//! with N frames (set-up not timed); each tutorial figure is the cost of one
//! allocation once N frames have been handed out. A summary table with the
//! ratios is printed at the end.

#![allow(
    clippy::cast_precision_loss,
    reason = "frame counts below 2^21 convert to f64 exactly"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use framealloc::alloc::{
    BitmapAllocator, BumpAllocator, FRAME_SIZE, FirmwareRegion, MemoryMap, MemoryRegion,
    NormalizeOptions, RegionKind, normalize,
};
use framealloc::x86_64::PhysAddr;
use framealloc::{FrameAllocator, PhysFrame, Size4KiB, TaggedFrameAllocator};

/// Fill sizes for the O(1) allocators: 1 Ki, 16 Ki, 128 Ki, 1 Mi frames.
const FILL_SIZES: [u64; 4] = [1 << 10, 1 << 14, 1 << 17, 1 << 20];
/// Positions for the tutorial allocator (it is O(n) per frame).
const TUTORIAL_SIZES: [u64; 3] = [1 << 10, 1 << 14, 100 << 10];
/// Tutorial allocations timed per iteration.
const TUTORIAL_BATCH: u64 = 16;

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
    for n in FILL_SIZES {
        let regions = normalized(n);
        let map = MemoryMap::from_regions(&regions).unwrap();
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new("bump", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut runs = vec![MemoryRegion::default(); 64];
                for _ in 0..iters {
                    let mut bump = BumpAllocator::new(map, &mut runs);
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(bump.allocate_tagged(RegionKind::Kernel));
                    }
                    total += start.elapsed();
                }
                total
            });
        });
        let words = BitmapAllocator::words_needed(&map);
        group.bench_function(BenchmarkId::new("bitmap", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut storage = vec![0u64; words];
                for _ in 0..iters {
                    let mut bitmap = BitmapAllocator::from_map(&mut storage, &map).unwrap();
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(bitmap.allocate_4kib());
                    }
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("tutorial");
    for n in TUTORIAL_SIZES {
        let regions = normalized(n + TUTORIAL_BATCH);
        let map = MemoryMap::from_regions(&regions).unwrap();
        group.throughput(Throughput::Elements(TUTORIAL_BATCH));
        group.bench_function(BenchmarkId::new("nth", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut tutorial = TutorialAllocator {
                        map,
                        next: n as usize,
                    };
                    let start = Instant::now();
                    for _ in 0..TUTORIAL_BATCH {
                        black_box(tutorial.allocate_frame());
                    }
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

/// The mean time of one criterion benchmark, in ns, from its saved estimates.
fn mean_ns(dir: &Path, group: &str, name: &str, n: u64) -> Option<f64> {
    let path = dir
        .join(group)
        .join(name)
        .join(n.to_string())
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let mean = &text[text.find("\"mean\"")?..];
    let value = &mean[mean.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn summary(dir: &Path) {
    println!("\nper-frame cost (mean), ns");
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10}   last/first",
        "", "1 Ki", "16 Ki", "128 Ki", "1 Mi"
    );
    let mut at_128k = Vec::new();
    for name in ["bump", "bitmap"] {
        let per_frame: Vec<Option<f64>> = FILL_SIZES
            .iter()
            .map(|&n| mean_ns(dir, "fill", name, n).map(|t| t / n as f64))
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
        let t = mean_ns(dir, "tutorial", "nth", n).map(|t| t / TUTORIAL_BATCH as f64);
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
}

fn main() {
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
