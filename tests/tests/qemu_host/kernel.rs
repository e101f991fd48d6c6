//! Building the test kernel and booting it in QEMU.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::provision::Qemu;

/// Builds `tests/qemu-kernel` (release) and returns the ELF's path.
///
/// The kernel has its own `.cargo/config.toml` (flags, target, target
/// directory); everything the outer build put in the environment that could
/// override it is removed.
pub(crate) fn build(kernel_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(kernel_dir)
        .args(["build", "--release", "--quiet"])
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let outer = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("__CARGO")
            || matches!(
                &*key,
                "RUSTFLAGS" | "RUSTDOCFLAGS" | "RUSTC_WRAPPER" | "RUSTC_WORKSPACE_WRAPPER"
            );
        if outer {
            command.env_remove(&*key);
        }
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo to build the test kernel: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the test kernel in {} failed ({}):\n{}",
            kernel_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let elf = kernel_dir.join("target/x86_64-unknown-linux-gnu/release/framealloc-qemu-kernel");
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!(
            "the kernel build succeeded but {} is missing",
            elf.display()
        ))
    }
}

/// What one QEMU run produced.
pub(crate) struct Run {
    /// QEMU's exit status (`None`: killed after the timeout).
    pub(crate) exit_code: Option<i32>,
    /// Everything the kernel wrote to COM1.
    pub(crate) serial: String,
    /// QEMU's own diagnostics.
    pub(crate) stderr: String,
    /// Wall-clock time of the run.
    pub(crate) elapsed: Duration,
}

/// Boots `kernel` under TCG with a wall-clock `timeout` and 320 MiB of RAM
/// (the scenarios' frames lie at 32–288 MiB).
pub(crate) fn boot(qemu: &Qemu, kernel: &Path, timeout: Duration) -> Result<Run, String> {
    boot_with(qemu, kernel, timeout, "320M", None)
}

/// Boots `kernel` under TCG with `memory` of RAM (QEMU's `-m`), the kernel
/// command line `append` (QEMU's `-append`, passed in the PVH start info)
/// and a wall-clock `timeout`.
pub(crate) fn boot_with(
    qemu: &Qemu,
    kernel: &Path,
    timeout: Duration,
    memory: &str,
    append: Option<&str>,
) -> Result<Run, String> {
    boot_cpus(qemu, kernel, timeout, memory, append, 1)
}

/// As [`boot_with`], with `cpus` virtual CPUs (QEMU's `-smp`; the option
/// is left out for one, QEMU's default).
pub(crate) fn boot_cpus(
    qemu: &Qemu,
    kernel: &Path,
    timeout: Duration,
    memory: &str,
    append: Option<&str>,
    cpus: u32,
) -> Result<Run, String> {
    let start = Instant::now();
    let mut command = qemu.command();
    if let Some(append) = append {
        command.args(["-append", append]);
    }
    if cpus > 1 {
        command.arg("-smp").arg(cpus.to_string());
    }
    let mut child = command
        .args([
            "-accel",
            "tcg",
            // 1 GiB pages and NX, which the kernel enables, and PCID, which
            // it turns on once to see `Mmu::new` refuse it (QEMU 7.2's TCG
            // lacks PCID and says so on stderr; the kernel then reports
            // `PCIDE unsupported`).
            "-cpu",
            "qemu64,+pdpe1gb,+nx,+pcid",
            "-m",
            memory,
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel",
        ])
        .arg(kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.binary.display()))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let exit_code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for QEMU failed: {e}")),
        }
    };
    let serial = String::from_utf8_lossy(&out.join().unwrap_or_default()).replace('\r', "");
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Ok(Run {
        exit_code,
        serial,
        stderr,
        elapsed: start.elapsed(),
    })
}
