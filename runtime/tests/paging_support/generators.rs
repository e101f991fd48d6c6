//! Generators shared by the property tests of the page table
//! (`runtime/tests/paging_props.rs`) and the differential suite against
//! `x86_64` (`tests/tests/differential.rs`, which includes this file by
//! path): page addresses from generated indices, range lengths that cross
//! table edges, and the choices of `map_range_mixed`'s largest size.

#![allow(dead_code, unreachable_pub)]

use framealloc::paging::MaxPageSize;
use proptest::prelude::*;

/// Level-3, -2 and -1 indices the generated addresses use (with a suite's
/// own level-4 indices): few enough that operations collide, spread over
/// table edges.
pub const P3: [u64; 2] = [0, 511];
pub const P2: [u64; 3] = [0, 1, 511];
pub const P1: [u64; 3] = [0, 1, 511];

pub fn sign_extend(va: u64) -> u64 {
    ((va << 16).cast_signed() >> 16).cast_unsigned()
}

/// The address of a `level` page (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) from
/// generated indices, with level-4 index `p4[a % 3]`.
pub fn address(p4: &[u64; 3], level: u8, [a, b, c, d]: [usize; 4]) -> u64 {
    let mut va = p4[a % 3] << 39 | P3[b % 2] << 30;
    if level <= 2 {
        va |= P2[c % 3] << 21;
    }
    if level == 1 {
        va |= P1[d % 3] << 12;
    }
    sign_extend(va)
}

/// Range lengths per level: enough to cross table boundaries from the
/// generated starts (index 511 at every level).
pub fn range_len() -> impl Strategy<Value = (u8, u64)> {
    prop_oneof![
        (1..=20u64).prop_map(|n| (1, n)),
        (1..=6u64).prop_map(|n| (2, n)),
        (1..=3u64).prop_map(|n| (3, n)),
    ]
}

/// `map_range_mixed`'s largest page size, by generated index.
pub const LARGEST: [MaxPageSize; 3] = [
    MaxPageSize::Size4KiB,
    MaxPageSize::Size2MiB,
    MaxPageSize::Size1GiB,
];
