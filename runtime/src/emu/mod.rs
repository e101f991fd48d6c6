//! An emulated x86_64 MMU with a TLB that goes stale like hardware, for host tests.
