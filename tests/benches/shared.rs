//! Allocators shared by several CPUs, side by side in one run:
//! `spin::Mutex<BitmapAllocator>` (what kernels do today), the lock-free
//! `AtomicBitmapAllocator`, per-CPU caches (`PerCpuCaches`, 128 frames per
//! CPU) in front of it, and the single-CPU `BitmapAllocator` through
//! `&mut` as the floor.
//!
//! `cargo bench -p tests --bench shared` (about a minute). Groups:
//!
//! - `fill/<subject>/<N>`: one thread fills a fresh allocator with N 4 KiB
//!   frames (1 Ki to 1 Mi); the per-frame cost must not grow with N;
//! - `churn<T>/<subject>`: T threads (1 or 2) each allocate 192 frames and
//!   free them again, over and over, from a 256 Ki-frame allocator;
//!   wall-clock time per allocate-and-free pair per thread (equal to the
//!   1-thread figure if it scaled perfectly). `private` gives each thread
//!   its own `BitmapAllocator`: nothing is shared, so its 2-thread figure
//!   is what the machine allows at that moment (on a busy shared machine,
//!   less than two cores);
//! - `line/contended`: two threads `fetch_add` one counter: the cost of a
//!   read-modify-write whose cache line the other core keeps taking, the
//!   one hardware parameter of the scaling model in the summary.
//!
//! A summary with the ratios and the model's predictions past two cores is
//! printed at the end; `docs/smp.md` explains the model.

#![allow(
    clippy::cast_precision_loss,
    reason = "frame counts below 2^21 convert to f64 exactly"
)]

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use framealloc::alloc::{
    AtomicBitmapAllocator, BitmapAllocator, FRAME_SIZE, FirmwareRegion, MemoryMap, MemoryRegion,
    NormalizeOptions, PerCpuCaches, RegionKind, normalize,
};
use framealloc::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

/// Fill sizes: 1 Ki, 16 Ki, 128 Ki, 1 Mi frames.
const FILL_SIZES: [u64; 4] = [1 << 10, 1 << 14, 1 << 17, 1 << 20];
/// Frames of the allocator the churn runs on.
const CHURN_FRAMES: u64 = 1 << 18;
/// Frames each thread holds per churn round: three per-CPU batches, so the
/// caches refill and drain every round.
const ROUND: usize = 192;
/// Per-CPU cache capacity: refill and drain 64 at a time, a whole bitmap
/// word, so that two CPUs' batches do not share a word.
const CAP: usize = 128;
const SUBJECTS: [&str; 4] = ["bitmap", "mutex", "atomic", "percpu"];
/// Churn subjects: `private` is one `BitmapAllocator` per thread, nothing
/// shared: the most that two threads can gain on this machine right now.
const CHURN_SUBJECTS: [&str; 5] = ["private", "bitmap", "mutex", "atomic", "percpu"];

type Caches<'a, 's> = PerCpuCaches<&'a AtomicBitmapAllocator<'s>, Size4KiB, 2, CAP>;

/// Usable memory for `frames` frames in 64 MiB blocks separated by
/// reserved frames (as in `allocators.rs`).
fn normalized(frames: u64) -> Vec<MemoryRegion> {
    let mut map = Vec::new();
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
    let mut storage = vec![MemoryRegion::default(); 4 * map.len() + 2];
    let (map, _) = normalize(&map, &mut storage, NormalizeOptions::new()).unwrap();
    map.regions().to_vec()
}

fn atomic_storage(map: &MemoryMap<'_>) -> Vec<AtomicU64> {
    (0..AtomicBitmapAllocator::words_needed(map))
        .map(|_| AtomicU64::new(0))
        .collect()
}

fn atomic<'s>(storage: &'s [AtomicU64], map: &MemoryMap<'_>) -> AtomicBitmapAllocator<'s> {
    let a = AtomicBitmapAllocator::new(storage);
    // SAFETY: the map describes no real memory: the frames are numbers the
    // benchmark discards and never accesses, and nothing else manages them.
    unsafe { a.load_map(map) }.unwrap();
    a
}

fn bitmap<'s>(storage: &'s mut [u64], map: &MemoryMap<'_>) -> BitmapAllocator<'s> {
    // SAFETY: as for `atomic`.
    unsafe { BitmapAllocator::from_map(storage, map) }.unwrap()
}

/// Fills `iters` fresh allocators of `subject` with `n` frames each.
fn fill(subject: &str, map: &MemoryMap<'_>, n: u64, iters: u64) -> Duration {
    let iters = iters as usize;
    match subject {
        "bitmap" | "mutex" => {
            let words = BitmapAllocator::words_needed(map);
            let mut storage = vec![0u64; words * iters];
            let mut bitmaps: Vec<_> = storage.chunks_mut(words).map(|s| bitmap(s, map)).collect();
            if subject == "bitmap" {
                let start = Instant::now();
                for b in &mut bitmaps {
                    for _ in 0..n {
                        black_box(b.allocate_4kib());
                    }
                }
                start.elapsed()
            } else {
                let locked: Vec<_> = bitmaps.into_iter().map(spin::Mutex::new).collect();
                let start = Instant::now();
                for b in &locked {
                    for _ in 0..n {
                        black_box(b.lock().allocate_4kib());
                    }
                }
                start.elapsed()
            }
        }
        _ => {
            let storages: Vec<_> = (0..iters).map(|_| atomic_storage(map)).collect();
            let atomics: Vec<_> = storages.iter().map(|s| atomic(s, map)).collect();
            if subject == "atomic" {
                let start = Instant::now();
                for a in &atomics {
                    for _ in 0..n {
                        black_box(a.allocate_4kib());
                    }
                }
                start.elapsed()
            } else {
                let caches: Vec<Caches<'_, '_>> = atomics.iter().map(PerCpuCaches::new).collect();
                let start = Instant::now();
                for c in &caches {
                    let mut cache = c.claim(0).unwrap();
                    for _ in 0..n {
                        black_box(cache.allocate_frame());
                    }
                }
                start.elapsed()
            }
        }
    }
}

/// One thread's churn: `rounds` times, take `ROUND` frames and give them
/// back, through `alloc` and `free`.
fn churn_rounds(
    rounds: u64,
    mut alloc: impl FnMut() -> Option<PhysFrame<Size4KiB>>,
    mut free: impl FnMut(PhysFrame<Size4KiB>),
) {
    let mut held = [MaybeUninit::<PhysFrame<Size4KiB>>::uninit(); ROUND];
    for _ in 0..rounds {
        for slot in &mut held {
            slot.write(alloc().expect("the churn allocator has room"));
        }
        for slot in &held {
            // SAFETY: every slot was written above.
            free(black_box(unsafe { slot.assume_init() }));
        }
    }
}

/// Runs `body(thread)` on `threads` threads started together; the time
/// from the start to the last one's end.
fn timed_threads(threads: usize, body: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, body) = (&barrier, &body);
            s.spawn(move || {
                barrier.wait();
                body(t);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn churn(c: &mut Criterion) {
    let regions = normalized(CHURN_FRAMES);
    let map = MemoryMap::from_regions(&regions).unwrap();
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("churn{threads}"));
        group.throughput(Throughput::Elements(ROUND as u64));
        for subject in CHURN_SUBJECTS {
            if subject == "bitmap" && threads > 1 {
                continue; // not shareable
            }
            group.bench_function(subject, |b| {
                b.iter_custom(|rounds| match subject {
                    "private" => {
                        let words = BitmapAllocator::words_needed(&map);
                        let mut storage = vec![0u64; words * threads];
                        let owned: Vec<_> = storage
                            .chunks_mut(words)
                            .map(|s| std::sync::Mutex::new(Some(bitmap(s, &map))))
                            .collect();
                        timed_threads(threads, |t| {
                            let a =
                                std::cell::RefCell::new(owned[t].lock().unwrap().take().unwrap());
                            churn_rounds(
                                rounds,
                                || a.borrow_mut().allocate_4kib(),
                                // SAFETY: the frame is unused.
                                |f| unsafe { a.borrow_mut().deallocate_frame(f) },
                            );
                        })
                    }
                    "bitmap" => {
                        let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
                        let owned = std::sync::Mutex::new(Some(bitmap(&mut storage, &map)));
                        timed_threads(1, |_| {
                            let a = std::cell::RefCell::new(owned.lock().unwrap().take().unwrap());
                            churn_rounds(
                                rounds,
                                || a.borrow_mut().allocate_4kib(),
                                // SAFETY: the frame is unused.
                                |f| unsafe { a.borrow_mut().deallocate_frame(f) },
                            );
                        })
                    }
                    "mutex" => {
                        let mut storage = vec![0u64; BitmapAllocator::words_needed(&map)];
                        let a = spin::Mutex::new(bitmap(&mut storage, &map));
                        timed_threads(threads, |_| {
                            churn_rounds(
                                rounds,
                                || a.lock().allocate_4kib(),
                                // SAFETY: the frame is unused.
                                |f| unsafe { a.lock().deallocate_frame(f) },
                            );
                        })
                    }
                    "atomic" => {
                        let storage = atomic_storage(&map);
                        let a = atomic(&storage, &map);
                        timed_threads(threads, |_| {
                            churn_rounds(
                                rounds,
                                || a.allocate_4kib(),
                                // SAFETY: the frame is unused.
                                |f| unsafe { a.try_deallocate_4kib(f) }.unwrap(),
                            );
                        })
                    }
                    _ => {
                        let storage = atomic_storage(&map);
                        let a = atomic(&storage, &map);
                        let caches: Caches<'_, '_> = PerCpuCaches::new(&a);
                        timed_threads(threads, |cpu| {
                            let cache = std::cell::RefCell::new(caches.claim(cpu).unwrap());
                            churn_rounds(
                                rounds,
                                || cache.borrow_mut().allocate_frame(),
                                // SAFETY: the frame is unused.
                                |f| unsafe { cache.borrow_mut().deallocate_frame(f) },
                            );
                        })
                    }
                });
            });
        }
        group.finish();
    }
}

/// Two threads `fetch_add` one counter: each operation finds the line on
/// the other core about as often as not.
fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("line");
    group.bench_function("contended", |b| {
        b.iter_custom(|ops| {
            let line = AtomicU64::new(0);
            timed_threads(2, |_| {
                for _ in 0..ops {
                    line.fetch_add(1, Ordering::AcqRel);
                }
            })
        });
    });
    group.finish();
}

fn fills(c: &mut Criterion) {
    let mut group = c.benchmark_group("fill");
    group.sampling_mode(SamplingMode::Flat);
    for n in FILL_SIZES {
        let regions = normalized(n);
        let map = MemoryMap::from_regions(&regions).unwrap();
        group.throughput(Throughput::Elements(n));
        for subject in SUBJECTS {
            group.bench_function(BenchmarkId::new(subject, n), |b| {
                b.iter_custom(|iters| fill(subject, &map, n, iters));
            });
        }
    }
    group.finish();
}

/// The median of one benchmark's samples, in ns per iteration.
fn median_ns(dir: &Path, parts: &[&str]) -> Option<f64> {
    let mut path = dir.to_path_buf();
    for part in parts {
        path.push(part);
    }
    let text = std::fs::read_to_string(path.join("new/estimates.json")).ok()?;
    let median = &text[text.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn summary(dir: &Path) {
    println!("\nfill: ns per 4 KiB frame (median of samples)");
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8}   1Mi/1Ki   vs bitmap at 1 Mi",
        "", "1 Ki", "16 Ki", "128 Ki", "1 Mi"
    );
    let bitmap_1m = median_ns(dir, &["fill", "bitmap", "1048576"]).map(|t| t / (1u64 << 20) as f64);
    for subject in SUBJECTS {
        let per: Vec<Option<f64>> = FILL_SIZES
            .iter()
            .map(|&n| median_ns(dir, &["fill", subject, &n.to_string()]).map(|t| t / n as f64))
            .collect();
        let flat = per[0].zip(per[3]).map(|(a, b)| b / a);
        let ratio = per[3].zip(bitmap_1m).map(|(a, b)| a / b);
        println!(
            "{subject:<8} {:>8} {:>8} {:>8} {:>8}   {:>7}   {:>7}",
            cell(per[0]),
            cell(per[1]),
            cell(per[2]),
            cell(per[3]),
            cell(flat),
            cell(ratio)
        );
    }

    let per_pair = |threads: usize, subject: &str| {
        median_ns(dir, &[&format!("churn{threads}"), subject]).map(|t| t / ROUND as f64)
    };
    let line = median_ns(dir, &["line", "contended"]);
    println!(
        "\nchurn: ns per allocate+free pair per thread (wall clock; equal across columns = perfect scaling)"
    );
    println!(
        "{:<8} {:>9} {:>9} {:>12} {:>16}",
        "", "1 thread", "2 threads", "2T / 1T", "1T vs mutex 1T"
    );
    let mutex_1 = per_pair(1, "mutex");
    for subject in CHURN_SUBJECTS {
        let (t1, t2) = (per_pair(1, subject), per_pair(2, subject));
        println!(
            "{subject:<8} {:>9} {:>9} {:>12} {:>16}",
            cell(t1),
            cell(t2),
            cell(t1.zip(t2).map(|(a, b)| b / a)),
            cell(t1.zip(mutex_1).map(|(a, b)| a / b))
        );
    }
    if let (Some(m2), Some(a2), Some(p2)) = (
        per_pair(2, "mutex"),
        per_pair(2, "atomic"),
        per_pair(2, "percpu"),
    ) {
        println!(
            "2 threads: atomic / mutex = {:.2}, percpu / mutex = {:.2}",
            a2 / m2,
            p2 / m2
        );
    }
    println!(
        "contended read-modify-write, ns per operation: {}",
        cell(line)
    );
    model(
        per_pair(1, "mutex"),
        per_pair(1, "atomic"),
        per_pair(1, "percpu"),
        line,
        [
            per_pair(2, "mutex"),
            per_pair(2, "atomic"),
            per_pair(2, "percpu"),
        ],
    );
}

/// The bottleneck model of docs/smp.md: a thread's pair costs at least its
/// 1-thread time T1, and N threads cannot go faster than the one shared
/// resource each pair holds exclusively for S allows: T(N) = max(T1, N * S).
fn model(
    mutex: Option<f64>,
    atomic: Option<f64>,
    percpu: Option<f64>,
    line: Option<f64>,
    measured_2: [Option<f64>; 3],
) {
    let (Some(m1), Some(a1), Some(p1), Some(x)) = (mutex, atomic, percpu, line) else {
        return;
    };
    // Serial time per pair on the one shared resource (docs/smp.md):
    // - mutex: the whole critical section of both halves of a pair, plus a
    //   contended acquisition of the lock's line for each: T1 + 2x;
    // - atomic: every thread starts at the one shared hint word, so both
    //   read-modify-writes of a pair are contended: 2x;
    // - percpu: per batch of 64 pairs, a refill and a drain, each about two
    //   contended operations (the hint word, a summary word); the batch's
    //   own words belong to one CPU: 4x / 64.
    let batch = (CAP / 2) as f64;
    let serial = [m1 + 2.0 * x, 2.0 * x, 4.0 * x / batch];
    let t1 = [m1, a1, p1];
    println!(
        "\nmodel: T(N) = max(T1, N * S), ns per pair per thread (S from the contended cost above)"
    );
    println!(
        "{:<8} {:>8} {:>13} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "S", "T(2) meas.", "T(2)", "T(4)", "T(8)", "T(16)", "T(64)"
    );
    for (i, subject) in ["mutex", "atomic", "percpu"].iter().enumerate() {
        let t = |n: f64| t1[i].max(n * serial[i]);
        println!(
            "{subject:<8} {:>8.2} {:>13} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            serial[i],
            cell(measured_2[i]),
            t(2.0),
            t(4.0),
            t(8.0),
            t(16.0),
            t(64.0)
        );
    }
}

#[inline(never)]
fn fill_atomic(a: &AtomicBitmapAllocator<'_>, n: u64) {
    for _ in 0..n {
        black_box(a.allocate_4kib());
    }
}

#[inline(never)]
fn fill_percpu(caches: &Caches<'_, '_>, n: u64) {
    let mut cache = caches.claim(0).unwrap();
    for _ in 0..n {
        black_box(cache.allocate_frame());
    }
}

/// `--fill-only atomic|percpu N`: one fill of N frames and nothing else,
/// for instruction counts, which a busy machine does not disturb:
/// `valgrind --tool=callgrind --toggle-collect='*fill_atomic*' <binary>
/// --fill-only atomic 1048576` (likewise `fill_percpu`/`percpu`).
fn fill_only(kind: &str, n: u64) {
    let regions = normalized(n);
    let map = MemoryMap::from_regions(&regions).unwrap();
    let storage = atomic_storage(&map);
    let a = atomic(&storage, &map);
    match kind {
        "atomic" => fill_atomic(&a, n),
        "percpu" => fill_percpu(&PerCpuCaches::new(&a), n),
        other => eprintln!("--fill-only takes atomic or percpu, not {other:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, kind, n, ..] = args.as_slice()
        && flag == "--fill-only"
    {
        fill_only(kind, n.parse().expect("N is a number"));
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion-shared");
    let mut c = Criterion::default()
        .output_directory(&dir)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    fills(&mut c);
    churn(&mut c);
    contended(&mut c);
    c.final_summary();
    summary(&dir);
}
