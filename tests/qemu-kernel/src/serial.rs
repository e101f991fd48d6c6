//! COM1 (port 0x3f8), polled, and the `isa-debug-exit` device.

use core::fmt;
use framealloc::x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// The first serial port.
pub struct Serial;

impl Serial {
    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init() {
        let settings: [(u16, u8); 7] = [
            (1, 0x00),
            (3, 0x80),
            (0, 0x01),
            (1, 0x00),
            (3, 0x03),
            (2, 0xc7),
            (4, 0x03),
        ];
        for (offset, value) in settings {
            // SAFETY: COM1's registers; writing them only configures the UART.
            unsafe { Port::<u8>::new(COM1 + offset).write(value) };
        }
    }

    fn write_byte(byte: u8) {
        let mut status = Port::<u8>::new(COM1 + 5);
        // SAFETY: reading the line status register has no side effect.
        while unsafe { status.read() } & 0x20 == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: the transmit holding register is empty (checked above).
        unsafe { Port::<u8>::new(COM1).write(byte) };
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                Self::write_byte(b'\r');
            }
            Self::write_byte(byte);
        }
        Ok(())
    }
}

/// `print!` to COM1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::serial::Serial, format_args!($($arg)*));
    }};
}

/// `println!` to COM1.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::print!("\n");
    }};
}

/// Status written to `isa-debug-exit` (QEMU exits with `(code << 1) | 1`).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Exit {
    /// Every scenario passed: QEMU exits with 33.
    Passed = 0x10,
    /// Something failed: QEMU exits with 35.
    Failed = 0x11,
}

/// Ends the QEMU run.
pub fn exit(status: Exit) -> ! {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device; writing it ends the VM.
    unsafe { Port::<u32>::new(0xf4).write(status as u32) };
    loop {
        framealloc::x86_64::instructions::hlt();
    }
}
