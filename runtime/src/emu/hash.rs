//! A fast hasher for page-address keys. The standard library's default hasher
//! resists hash flooding, which emulated addresses do not need, at a cost
//! paid on every emulated table access.

use core::hash::{BuildHasherDefault, Hasher};
use std::collections::HashMap;

/// A map keyed by page or frame addresses.
pub(crate) type PageMap<V> = HashMap<u64, V, BuildHasherDefault<PageHasher>>;

/// Mixes one `u64` key so that both the high bits of the hash (the map's
/// tags) and the low bits (its bucket index) vary, although page addresses
/// have their low 12 or more bits clear.
#[derive(Default)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        let mixed = (self.0 ^ key ^ (key >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 32);
    }
}
