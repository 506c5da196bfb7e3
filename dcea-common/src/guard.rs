//! Escape techniques the kernel programs recognise on their own, so that `--enforce` can act
//! at the hook, before the syscall's result reaches user space. One guard per default
//! Critical rule whose decision the kernel can make; the agent writes each guard's action into
//! the guards map (`DCEA_GUARDS[guard]`) from the rules that name it.

/// A technique class the kernel filter decides by itself (the rule's `guard:` name).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// setns into a host namespace (the built-in escape verdict).
    HostNamespace = 0,
    /// cgroup v1 `release_agent` or `notify_on_release` opened for writing.
    ReleaseAgent = 1,
    /// `/proc/sys/kernel/core_pattern` opened for writing.
    CorePattern = 2,
    /// A kernel knob that runs a program or reboots the host opened for writing: `modprobe`,
    /// `poweroff_cmd`, `hotplug`, `uevent_helper`, `sysrq-trigger`.
    KernelControl = 3,
    /// A file of a binfmt_misc filesystem opened for writing (handler registration).
    BinfmtRegister = 4,
    /// connect() to a unix socket named like a container runtime's API socket.
    RuntimeSocket = 5,
    /// mount of a `/dev/…` source with a non-virtual filesystem type (a host disk).
    HostDiskMount = 6,
    /// mount of sysfs, cgroupfs, debugfs, tracefs, securityfs, configfs, bpffs, efivarfs,
    /// binfmt_misc, or procfs by a task in the host's PID namespace.
    PseudoFsMount = 7,
    /// chroot or pivot_root whose new root is on a block-device filesystem.
    HostRoot = 8,
    /// ptrace attach or write into a process outside the caller's container.
    PtraceOutside = 9,
    /// init_module or finit_module.
    ModuleLoad = 10,
    /// mknod of a block or character device.
    DeviceNode = 11,
    /// A signal from a container that can stop or end the agent or its sentinel.
    AgentSignal = 12,
}

pub const GUARDS: usize = 13;

impl Guard {
    pub const ALL: [Guard; GUARDS] = [
        Guard::HostNamespace,
        Guard::ReleaseAgent,
        Guard::CorePattern,
        Guard::KernelControl,
        Guard::BinfmtRegister,
        Guard::RuntimeSocket,
        Guard::HostDiskMount,
        Guard::PseudoFsMount,
        Guard::HostRoot,
        Guard::PtraceOutside,
        Guard::ModuleLoad,
        Guard::DeviceNode,
        Guard::AgentSignal,
    ];

    /// The name rules use (`guard: release-agent`) and alerts carry (`dcea.guard`).
    pub const fn name(self) -> &'static str {
        match self {
            Guard::HostNamespace => "host-namespace",
            Guard::ReleaseAgent => "release-agent",
            Guard::CorePattern => "core-pattern",
            Guard::KernelControl => "kernel-control",
            Guard::BinfmtRegister => "binfmt-register",
            Guard::RuntimeSocket => "runtime-socket",
            Guard::HostDiskMount => "host-disk-mount",
            Guard::PseudoFsMount => "pseudo-fs-mount",
            Guard::HostRoot => "host-root",
            Guard::PtraceOutside => "ptrace-outside",
            Guard::ModuleLoad => "module-load",
            Guard::DeviceNode => "device-node",
            Guard::AgentSignal => "agent-signal",
        }
    }

    pub fn from_name(name: &str) -> Option<Guard> {
        Guard::ALL.into_iter().find(|g| g.name() == name)
    }

    pub const fn from_u32(v: u32) -> Option<Guard> {
        if (v as usize) < GUARDS { Some(Guard::ALL[v as usize]) } else { None }
    }

    /// The programs that recognise this guard and act at the hook (records carry it).
    pub const fn hooks(self) -> &'static [&'static str] {
        match self {
            Guard::HostNamespace => &["sys_exit_setns"],
            Guard::ReleaseAgent | Guard::CorePattern | Guard::KernelControl | Guard::BinfmtRegister => {
                &["sys_exit_open", "sys_exit_openat", "sys_exit_openat2"]
            }
            Guard::RuntimeSocket => &["sys_enter_connect"],
            Guard::HostDiskMount | Guard::PseudoFsMount => &["mount_behaviour"],
            Guard::HostRoot => &["sys_exit_chroot", "sys_exit_pivot_root"],
            Guard::PtraceOutside => &["sys_enter_ptrace", "sys_enter_process_vm_writev"],
            Guard::ModuleLoad => &["sys_enter_init_module", "sys_enter_finit_module"],
            Guard::DeviceNode => &["sys_enter_mknod", "sys_enter_mknodat"],
            Guard::AgentSignal => &["signal_generate"],
        }
    }

    /// The BPF LSM programs that refuse this guard's operation inside the syscall ([`crate::programs::LSM`]).
    /// None for setns (no security hook), and for opens and chroot, where the kill at the
    /// syscall's exit comes before the task can use what it got.
    pub const fn lsm_programs(self) -> &'static [&'static str] {
        match self {
            Guard::RuntimeSocket => &["lsm_socket_connect"],
            Guard::HostDiskMount | Guard::PseudoFsMount => &["lsm_sb_mount"],
            Guard::PtraceOutside => &["lsm_ptrace_access_check"],
            Guard::ModuleLoad => &["lsm_kernel_load_data", "lsm_kernel_read_file"],
            Guard::DeviceNode => &["lsm_path_mknod"],
            Guard::AgentSignal => &["lsm_task_kill"],
            _ => &[],
        }
    }

    /// The record flags that name this guard ([`crate::flags::GUARD_MASK`]).
    pub const fn flag(self) -> u32 {
        (self as u32 + 1) << crate::flags::GUARD_SHIFT
    }

    /// The guard a record's flags name, if any.
    pub const fn from_flags(flags: u32) -> Option<Guard> {
        let v = (flags & crate::flags::GUARD_MASK) >> crate::flags::GUARD_SHIFT;
        if v == 0 { None } else { Guard::from_u32(v - 1) }
    }
}

/// What the kernel does when a guard fires (the value in `DCEA_GUARDS`).
pub mod action {
    /// Report only.
    pub const ALERT: u32 = 0;
    /// SIGKILL the task at the hook.
    pub const KILL_PROCESS: u32 = 1;
    /// SIGKILL the task and condemn its container's cgroup: every task in it is killed at its
    /// next hooked event or exec.
    pub const KILL_CONTAINER: u32 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_round_trip_through_names_indices_and_flags() {
        for (i, g) in Guard::ALL.into_iter().enumerate() {
            assert_eq!(g as usize, i);
            assert_eq!(Guard::from_name(g.name()), Some(g));
            assert_eq!(Guard::from_u32(i as u32), Some(g));
            assert_eq!(Guard::from_flags(g.flag() | crate::flags::KILLED), Some(g));
        }
        assert_eq!(Guard::from_flags(crate::flags::KILLED), None);
        assert_eq!(Guard::from_u32(GUARDS as u32), None);
        assert!(GUARDS < (crate::flags::GUARD_MASK >> crate::flags::GUARD_SHIFT) as usize);
    }

    #[test]
    fn every_guard_program_is_in_the_program_table() {
        for g in Guard::ALL {
            assert!(!g.hooks().is_empty(), "{g:?}");
            for p in g.hooks().iter().chain(g.lsm_programs()) {
                assert!(crate::programs::all().any(|spec| spec.name == *p), "{g:?}: {p}");
            }
        }
    }
}
