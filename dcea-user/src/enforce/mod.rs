//! Prevention: what `--enforce` does when a rule or a built-in verdict fires.
//!
//! A rule carries an [`Action`]. Where its kernel filter recognises the technique by itself
//! (the rule's `guard:`), the action is written into the kernel's guards map and taken at the
//! hook, before the syscall returns. A condemned container (kill-container) is finished off
//! here: its cgroup is killed, the engine is told, and the set survives restarts in the state
//! directory until `dcea release`.

pub mod condemned;
pub mod exempt;
pub mod guards;
pub mod release;

use std::fmt;

/// What happens when a rule fires under `--enforce` (without it, everything is `alert`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    #[default]
    Alert,
    /// SIGKILL the offending process.
    KillProcess,
    /// Kill the process and every task of its container, now and at any later start.
    KillContainer,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Alert, Action::KillProcess, Action::KillContainer];

    pub const fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::KillProcess => "kill-process",
            Action::KillContainer => "kill-container",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s.trim())
    }

    /// The kernel's encoding (`dcea_common::action`).
    pub const fn kernel(self) -> u32 {
        match self {
            Action::Alert => dcea_common::action::ALERT,
            Action::KillProcess => dcea_common::action::KILL_PROCESS,
            Action::KillContainer => dcea_common::action::KILL_CONTAINER,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A ptrace attach killed at its hook has still happened: the kernel queued SIGSTOP for the
/// target, which stops once its dead tracer lets go of it. Wait (briefly) for that stop and
/// continue the target, so that it runs on as if never touched. Only a target stopped with no
/// tracer is continued.
pub fn resume_attach_stopped(pid: u32) {
    if pid <= 1 {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    while std::time::Instant::now() < deadline {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return };
        let field =
            |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("").to_string();
        if field("TracerPid:") == "0" && field("State:").starts_with('T') {
            // SAFETY: kill(2) on a positive pid other than init.
            unsafe { libc::kill(pid as i32, libc::SIGCONT) };
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What the kernel did to a record's task, from its flags: the action that ran and the guard
/// that ran it.
pub fn kernel_outcome(record_flags: u32) -> (Action, Option<dcea_common::Guard>) {
    use dcea_common::flags;
    let action = if record_flags & flags::CONDEMNED != 0 {
        Action::KillContainer
    } else if record_flags & flags::KILLED != 0 {
        Action::KillProcess
    } else {
        Action::Alert
    };
    (action, dcea_common::Guard::from_flags(record_flags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcea_common::{Guard, flags};

    #[test]
    fn actions_parse_by_name_and_order_by_strength() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.name()), Some(a));
        }
        assert_eq!(Action::parse("kill"), None);
        assert!(Action::Alert < Action::KillProcess && Action::KillProcess < Action::KillContainer);
    }

    #[test]
    fn record_flags_say_what_the_kernel_did() {
        assert_eq!(kernel_outcome(0), (Action::Alert, None));
        let g = Guard::CorePattern;
        assert_eq!(kernel_outcome(g.flag()), (Action::Alert, Some(g)));
        assert_eq!(kernel_outcome(g.flag() | flags::KILLED), (Action::KillProcess, Some(g)));
        assert_eq!(kernel_outcome(g.flag() | flags::KILLED | flags::CONDEMNED), (Action::KillContainer, Some(g)));
    }
}
