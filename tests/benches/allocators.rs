//! Per-frame cost of the stock allocators (placeholder until the benchmark lands).
fn main() {}
