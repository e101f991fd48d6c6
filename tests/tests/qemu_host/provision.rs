//! Finding or provisioning `qemu-system-x86_64` without touching the system.
//!
//! Order of preference:
//! 1. the binary named by `FRAMEALLOC_QEMU` (must work, or the test fails);
//! 2. `qemu-system-x86_64` on `PATH`;
//! 3. a private copy under the workspace's `target/qemu/`, unpacked from
//!    Debian's `qemu-system-x86` packages downloaded with
//!    `apt-get install --download-only` into a directory of our own (so no
//!    installed package is added or removed), then `dpkg -x`.
//!
//! Several test processes may provision at once: a lock file serialises them
//! and a marker file records a complete unpack.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Environment variable naming the QEMU binary to use.
pub(crate) const OVERRIDE_VAR: &str = "FRAMEALLOC_QEMU";

/// How to start QEMU: the binary, extra environment and extra arguments.
#[derive(Debug, Clone)]
pub(crate) struct Qemu {
    /// The `qemu-system-x86_64` binary.
    pub(crate) binary: PathBuf,
    /// `LD_LIBRARY_PATH` for a private copy.
    pub(crate) library_path: Option<OsString>,
    /// `-L` firmware directories for a private copy.
    pub(crate) firmware_args: Vec<OsString>,
    /// Where it came from, for the log.
    pub(crate) origin: String,
}

impl Qemu {
    /// A command that runs this QEMU (firmware arguments included).
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if let Some(path) = &self.library_path {
            command.env("LD_LIBRARY_PATH", path);
        }
        command.args(&self.firmware_args);
        command
    }

    /// `qemu-system-x86_64 --version`, first line.
    pub(crate) fn version(&self) -> Result<String, String> {
        let output = self
            .command()
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} --version failed ({}): {}",
                self.binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.lines().next().unwrap_or_default().to_owned())
    }
}

/// Finds or provisions QEMU; `target_dir` is the workspace's `target/`.
pub(crate) fn qemu(target_dir: &Path) -> Result<Qemu, String> {
    if let Some(binary) = std::env::var_os(OVERRIDE_VAR) {
        let qemu = Qemu {
            binary: PathBuf::from(binary),
            library_path: None,
            firmware_args: Vec::new(),
            origin: format!("${OVERRIDE_VAR}"),
        };
        qemu.version()
            .map_err(|e| format!("${OVERRIDE_VAR} names a QEMU that does not run: {e}"))?;
        return Ok(qemu);
    }
    if let Some(binary) = on_path("qemu-system-x86_64") {
        let qemu = Qemu {
            binary,
            library_path: None,
            firmware_args: Vec::new(),
            origin: "PATH".to_owned(),
        };
        if qemu.version().is_ok() {
            return Ok(qemu);
        }
    }
    private_copy(&target_dir.join("qemu"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The private copy rooted at `base/root`, unpacked on first use.
fn private_copy(base: &Path) -> Result<Qemu, String> {
    let root = base.join("root");
    let marker = base.join("unpacked");
    let qemu = Qemu {
        binary: root.join("usr/bin/qemu-system-x86_64"),
        library_path: Some(
            std::env::join_paths([
                root.join("usr/lib/x86_64-linux-gnu"),
                root.join("lib/x86_64-linux-gnu"),
            ])
            .map_err(|e| e.to_string())?,
        ),
        firmware_args: vec![
            "-L".into(),
            root.join("usr/share/seabios").into(),
            "-L".into(),
            root.join("usr/share/qemu").into(),
        ],
        origin: format!("private copy in {}", root.display()),
    };
    if marker.is_file() {
        return Ok(qemu);
    }
    fs::create_dir_all(base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let lock_path = base.join("lock");
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have finished while we waited for the lock.
    if !marker.is_file() {
        unpack(base, &root).map_err(|e| {
            format!(
                "QEMU is not on PATH, ${OVERRIDE_VAR} is not set, and provisioning a private \
                 copy from Debian's qemu-system-x86 packages failed: {e}"
            )
        })?;
        fs::write(&marker, b"").map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    }
    drop(lock);
    qemu.version()
        .map_err(|e| format!("the private QEMU copy does not run: {e}"))?;
    Ok(qemu)
}

fn unpack(base: &Path, root: &Path) -> Result<(), String> {
    let debs = base.join("debs");
    fs::create_dir_all(debs.join("partial"))
        .map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    if !run(Command::new("apt-cache").args(["show", "qemu-system-x86"]))?
        .status
        .success()
    {
        apt(&["update"])?;
    }
    let archives = format!("Dir::Cache::archives={}", debs.display());
    // `--download-only` into our own directory: nothing is installed or
    // removed, whatever the printed plan says.
    let mut download = vec![
        "install",
        "--download-only",
        "--no-install-recommends",
        "-y",
        "-o",
        &archives,
    ];
    if !is_root() {
        // apt takes dpkg's system-wide lock even to download; without root
        // that fails. Downloading into our own directory changes nothing
        // that lock protects, so skip it.
        download.extend(["-o", "Debug::NoLocking=1"]);
    }
    download.push("qemu-system-x86");
    if apt(&download).is_err() {
        // The package lists may name versions the mirror no longer has.
        apt(&["update"])?;
        apt(&download)?;
    }
    let staging = base.join("root.partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .map_err(|e| format!("cannot remove {}: {e}", staging.display()))?;
    }
    fs::create_dir_all(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let mut count = 0;
    for entry in fs::read_dir(&debs).map_err(|e| format!("cannot list {}: {e}", debs.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|ext| ext == "deb") {
            let output = run(Command::new("dpkg").arg("-x").arg(&path).arg(&staging))?;
            if !output.status.success() {
                return Err(format!(
                    "dpkg -x {} failed: {}",
                    path.display(),
                    describe(&output)
                ));
            }
            count += 1;
        }
    }
    if !staging.join("usr/bin/qemu-system-x86_64").is_file() {
        return Err(format!(
            "{count} packages unpacked from {} but usr/bin/qemu-system-x86_64 is missing",
            debs.display()
        ));
    }
    if root.exists() {
        fs::remove_dir_all(root).map_err(|e| format!("cannot remove {}: {e}", root.display()))?;
    }
    fs::rename(&staging, root).map_err(|e| format!("cannot rename to {}: {e}", root.display()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// Runs `apt-get`, retrying while another process holds apt's locks.
fn apt(args: &[&str]) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..20 {
        let output = run(Command::new("apt-get").args(args))?;
        if output.status.success() {
            return Ok(());
        }
        last = describe(&output);
        if !last.contains("Could not get lock") && !last.contains("Unable to lock") {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    Err(format!("apt-get {} failed: {last}", args.join(" ")))
}

fn run(command: &mut Command) -> Result<Output, String> {
    command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "{}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )
}
