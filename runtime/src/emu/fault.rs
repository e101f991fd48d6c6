//! Accesses, and the page faults they raise.

use core::fmt;

use x86_64::structures::idt::PageFaultErrorCode;

/// What an access does with the memory it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Execute,
}

/// The privilege of the code making an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Privilege {
    /// CPL 0–2: kernel code. May touch user pages (SMAP/SMEP are off).
    Supervisor,
    /// CPL 3: user code. Needs `USER_ACCESSIBLE` at every level.
    User,
}

/// One memory access: its kind and privilege.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// Read, write or instruction fetch.
    pub kind: AccessKind,
    /// Supervisor or user.
    pub privilege: Privilege,
}

impl Access {
    /// A kernel data read.
    pub const KERNEL_READ: Self = Self::new(AccessKind::Read, Privilege::Supervisor);
    /// A kernel data write.
    pub const KERNEL_WRITE: Self = Self::new(AccessKind::Write, Privilege::Supervisor);
    /// A kernel instruction fetch.
    pub const KERNEL_EXECUTE: Self = Self::new(AccessKind::Execute, Privilege::Supervisor);
    /// A user data read.
    pub const USER_READ: Self = Self::new(AccessKind::Read, Privilege::User);
    /// A user data write.
    pub const USER_WRITE: Self = Self::new(AccessKind::Write, Privilege::User);
    /// A user instruction fetch.
    pub const USER_EXECUTE: Self = Self::new(AccessKind::Execute, Privilege::User);
    /// Every combination of kind and privilege.
    pub const ALL: [Self; 6] = [
        Self::KERNEL_READ,
        Self::KERNEL_WRITE,
        Self::KERNEL_EXECUTE,
        Self::USER_READ,
        Self::USER_WRITE,
        Self::USER_EXECUTE,
    ];

    /// An access of `kind` made with `privilege`.
    pub const fn new(kind: AccessKind, privilege: Privilege) -> Self {
        Self { kind, privilege }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let privilege = match self.privilege {
            Privilege::Supervisor => "supervisor",
            Privilege::User => "user",
        };
        let kind = match self.kind {
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::Execute => "instruction fetch",
        };
        write!(f, "{privilege} {kind}")
    }
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultCause {
    /// The entry at the fault's level has its present bit clear.
    NotPresent,
    /// The entry at the fault's level is present but sets a reserved bit: the
    /// huge-page bit in a level-4 entry (or in a level-3 entry on a CPU
    /// without 1 GiB pages), address bits below the page size in a 2 MiB or
    /// 1 GiB leaf (bits 13..21 or 13..30; bit 12 is PAT), address bits at or
    /// above the CPU's MAXPHYADDR, or bit 63 with EFER.NXE clear (see
    /// [`CpuConfig`](super::CpuConfig)). The error code has the RSVD bit.
    ReservedBits,
    /// A write to a page that is not writable at some level (CR0.WP is on, so
    /// this holds for supervisor writes too).
    ReadOnly,
    /// A user access to a page that is supervisor-only at some level.
    SupervisorOnly,
    /// An instruction fetch from a page marked no-execute at some level.
    NoExecute,
    /// The address is not canonical (bits 47..64 differ). Hardware raises a
    /// general-protection fault, not a page fault; no table is read.
    NonCanonical,
}

impl FaultCause {
    /// Whether the walk reached a present leaf and its permissions refused
    /// the access (the P bit of the hardware error code).
    pub const fn is_protection(self) -> bool {
        matches!(
            self,
            Self::ReadOnly | Self::SupervisorOnly | Self::NoExecute
        )
    }
}

/// A failed translation: what the CPU would report instead of touching memory.
///
/// `level` is where the walk stopped: for [`NotPresent`](FaultCause::NotPresent)
/// and [`ReservedBits`](FaultCause::ReservedBits), the level (4..=1) of the
/// offending entry; for a protection violation, the level of the leaf entry
/// (1 for a 4 KiB page, 2 for 2 MiB, 3 for 1 GiB) whose effective permissions
/// refused the access; 4 for a non-canonical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageFault {
    /// The virtual address accessed (CR2 on hardware). A raw `u64`, since a
    /// non-canonical address is not a valid `VirtAddr`.
    pub addr: u64,
    /// The access that faulted.
    pub access: Access,
    /// The paging level (4..=1) at which the walk failed.
    pub level: u8,
    /// Why it failed.
    pub cause: FaultCause,
}

impl PageFault {
    /// The error code hardware pushes for this fault, or `None` for a
    /// non-canonical address (a general-protection fault on hardware).
    pub fn error_code(&self) -> Option<PageFaultErrorCode> {
        let mut code = PageFaultErrorCode::empty();
        match self.cause {
            FaultCause::NonCanonical => return None,
            FaultCause::NotPresent => {}
            FaultCause::ReservedBits => {
                code |=
                    PageFaultErrorCode::PROTECTION_VIOLATION | PageFaultErrorCode::MALFORMED_TABLE;
            }
            FaultCause::ReadOnly | FaultCause::SupervisorOnly | FaultCause::NoExecute => {
                code |= PageFaultErrorCode::PROTECTION_VIOLATION;
            }
        }
        match self.access.kind {
            AccessKind::Read => {}
            AccessKind::Write => code |= PageFaultErrorCode::CAUSED_BY_WRITE,
            AccessKind::Execute => code |= PageFaultErrorCode::INSTRUCTION_FETCH,
        }
        if self.access.privilege == Privilege::User {
            code |= PageFaultErrorCode::USER_MODE;
        }
        Some(code)
    }
}

impl fmt::Display for PageFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (addr, access, level) = (self.addr, self.access, self.level);
        match self.cause {
            FaultCause::NonCanonical => write!(
                f,
                "{access} at non-canonical address {addr:#x} (a general-protection fault on hardware)"
            ),
            FaultCause::NotPresent => write!(
                f,
                "page fault: {access} at {addr:#x}: level-{level} entry not present"
            ),
            FaultCause::ReservedBits => write!(
                f,
                "page fault: {access} at {addr:#x}: level-{level} entry sets reserved bits"
            ),
            FaultCause::ReadOnly => write!(
                f,
                "page fault: {access} at {addr:#x}: page is read-only (leaf at level {level})"
            ),
            FaultCause::SupervisorOnly => write!(
                f,
                "page fault: {access} at {addr:#x}: page is supervisor-only (leaf at level {level})"
            ),
            FaultCause::NoExecute => write!(
                f,
                "page fault: {access} at {addr:#x}: page is no-execute (leaf at level {level})"
            ),
        }
    }
}

impl core::error::Error for PageFault {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn fault(access: Access, cause: FaultCause) -> PageFault {
        PageFault {
            addr: 0x1000,
            access,
            level: 2,
            cause,
        }
    }

    #[test]
    fn error_codes_follow_the_hardware_layout() {
        let code = |access, cause| fault(access, cause).error_code().unwrap().bits();
        assert_eq!(code(Access::KERNEL_READ, FaultCause::NotPresent), 0);
        assert_eq!(code(Access::USER_WRITE, FaultCause::ReadOnly), 0b111);
        assert_eq!(
            code(Access::KERNEL_EXECUTE, FaultCause::NoExecute),
            0b1_0001
        );
        assert_eq!(code(Access::KERNEL_READ, FaultCause::ReservedBits), 0b1001);
        assert_eq!(
            fault(Access::USER_READ, FaultCause::NonCanonical).error_code(),
            None
        );
    }

    #[test]
    fn display_names_address_access_and_level() {
        let text = fault(Access::USER_WRITE, FaultCause::NotPresent).to_string();
        assert_eq!(
            text,
            "page fault: user write at 0x1000: level-2 entry not present"
        );
        let text = fault(Access::KERNEL_EXECUTE, FaultCause::NoExecute).to_string();
        assert!(text.contains("supervisor instruction fetch") && text.contains("no-execute"));
    }
}
