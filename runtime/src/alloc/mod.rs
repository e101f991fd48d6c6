//! Stock frame allocators over a firmware memory map.
