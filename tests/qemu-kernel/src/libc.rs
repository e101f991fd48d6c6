//! The few C library functions that `core` calls, written so that the
//! compiler cannot turn them back into calls to themselves.

use core::arch::asm;

/// Copies `n` bytes forwards.
///
/// # Safety
///
/// The C contract of `memcpy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: `rep movsb` copies `n` bytes from `src` to `dest`, which the
    // caller guarantees are valid and do not overlap; DF is clear (ABI).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// Copies `n` bytes between possibly overlapping buffers.
///
/// # Safety
///
/// The C contract of `memmove`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when `dest` precedes `src` or
        // the buffers do not overlap.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: copying backwards from the last byte is correct for an
    // overlapping `dest` above `src`; DF is restored before returning.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _,
             inout("rdi") dest.add(n).wrapping_sub(1) => _,
             inout("rsi") src.add(n).wrapping_sub(1) => _,
             options(nostack));
    }
    dest
}

/// Fills `n` bytes with `value`.
///
/// # Safety
///
/// The C contract of `memset`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: `rep stosb` writes `n` bytes at `dest`, valid per the caller.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") value as u8,
             options(nostack, preserves_flags));
    }
    dest
}

/// Compares `n` bytes.
///
/// # Safety
///
/// The C contract of `memcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and both buffers hold `n` readable bytes; volatile
        // reads keep the loop from being recognised as a call to `memcmp`.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Compares `n` bytes for equality.
///
/// # Safety
///
/// The C contract of `bcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// Length of a NUL-terminated string.
///
/// # Safety
///
/// `s` points at a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated, so every byte up to the NUL is readable.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}

/// Never called: the kernel is built with `panic = "abort"`, but the
/// precompiled `core` refers to the symbol.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
