//! The ABI shared by the kernel programs (`dcea-ebpf`) and the agent (`dcea-user`).
//!
//! Everything here is `#[repr(C)]`, fixed-size and free of pointers so that the same bytes mean
//! the same thing on both sides of the ring buffer. The classification helpers are plain
//! functions used by the kernel (to decide what to emit and, in enforce mode, what to kill) and
//! by userspace (to explain the verdict); keeping one copy means the two can never disagree.
#![no_std]

pub mod classify;
pub mod config;
pub mod event;
pub mod guard;
pub mod programs;

pub use classify::*;
pub use config::*;
pub use event::*;
pub use guard::{GUARDS, Guard, action};

/// Names of the maps and globals in the eBPF object. The kernel side declares statics with
/// exactly these names; userspace looks them up through these constants.
pub mod names {
    pub const EVENTS_MAP: &str = "DCEA_EVENTS";
    /// The priority channel: records that can be escapes, namespace or credential tampering
    /// or enforce kills, so a flood of behaviour records never crowds them out.
    pub const PRIORITY_EVENTS_MAP: &str = "DCEA_PRIORITY";
    pub const TASKS_MAP: &str = "DCEA_TASKS";
    pub const STATS_MAP: &str = "DCEA_STATS";
    pub const CONFIG_GLOBAL: &str = "DCEA_CONFIG";
    pub const RUNTIME_MAP: &str = "DCEA_RUNTIME";
    /// Per-guard actions ([`crate::action`]), written by the agent.
    pub const GUARDS_MAP: &str = "DCEA_GUARDS";
    /// cgroup v2 ids of condemned containers (kill-container), and when they were condemned.
    pub const CONDEMNED_MAP: &str = "DCEA_CONDEMNED";
    /// cgroup v2 id of a container → the guards a rule exception spares it from (bit per guard).
    pub const EXEMPT_MAP: &str = "DCEA_EXEMPT";
    /// Thread id → [`crate::agent_role`]: the agent's and the sentinel's threads.
    pub const SELF_MAP: &str = "DCEA_SELF";
    /// Signals to the agent, read by its sentinel (a stopped agent reads nothing).
    pub const SENTINEL_EVENTS_MAP: &str = "DCEA_SENTINEL";
    /// cgroup v2 id of a container whose workload's allowlist is enforced → [`crate::allow`] bits.
    pub const ALLOW_ENFORCED_MAP: &str = "DCEA_ALLOW_ENFORCED";
    /// [`crate::AllowKey`]s: the programs (file identity and name) each enforced container may run.
    pub const ALLOWED_MAP: &str = "DCEA_ALLOWED";
}

/// Namespace kinds tracked per task, in snapshot order.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsKind {
    Mnt = 0,
    Pid = 1,
    PidForChildren = 2,
    Net = 3,
    Uts = 4,
    Ipc = 5,
    User = 6,
    Cgroup = 7,
    Time = 8,
}

pub const NS_KINDS: usize = 9;

impl NsKind {
    pub const ALL: [NsKind; NS_KINDS] = [
        NsKind::Mnt,
        NsKind::Pid,
        NsKind::PidForChildren,
        NsKind::Net,
        NsKind::Uts,
        NsKind::Ipc,
        NsKind::User,
        NsKind::Cgroup,
        NsKind::Time,
    ];

    /// The name used in `/proc/<pid>/ns/<name>` and in alerts.
    pub const fn name(self) -> &'static str {
        match self {
            NsKind::Mnt => "mnt",
            NsKind::Pid => "pid",
            NsKind::PidForChildren => "pid_for_children",
            NsKind::Net => "net",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::User => "user",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }

    pub const fn bit(self) -> u32 {
        1 << (self as u32)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Inode numbers of the initial namespaces (include/linux/proc_ns.h). mnt and net have none.
pub mod init_ns {
    pub const IPC: u32 = 0xEFFF_FFFF;
    pub const UTS: u32 = 0xEFFF_FFFE;
    pub const USER: u32 = 0xEFFF_FFFD;
    pub const PID: u32 = 0xEFFF_FFFC;
    pub const CGROUP: u32 = 0xEFFF_FFFB;
    pub const TIME: u32 = 0xEFFF_FFFA;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn ns_kind_order_matches_index() {
        for (i, k) in NsKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(k.bit(), 1 << i);
        }
    }

    #[test]
    fn abi_layout_is_fixed() {
        // These numbers are the wire format: the kernel writes them, userspace reads them.
        assert_eq!(size_of::<TaskSnapshot>(), 56);
        assert_eq!(offset_of!(TaskSnapshot, uid), 36);
        assert_eq!(offset_of!(TaskSnapshot, cap_effective), 48);
        assert_eq!(size_of::<TaskState>(), 88);
        // The allowlist's map key, written by the agent and looked up by the exec program.
        assert_eq!(size_of::<AllowKey>(), 40);
        assert_eq!((offset_of!(AllowKey, ino), offset_of!(AllowKey, dev), offset_of!(AllowKey, comm)), (8, 16, 24));
        // Both record kinds start with RecordHeader.
        assert_eq!(size_of::<RecordHeader>(), 40);
        for (header, event, behaviour) in [
            (offset_of!(RecordHeader, kind), offset_of!(Event, kind), offset_of!(Behaviour, kind)),
            (offset_of!(RecordHeader, hook), offset_of!(Event, hook), offset_of!(Behaviour, hook)),
            (offset_of!(RecordHeader, pid), offset_of!(Event, pid), offset_of!(Behaviour, pid)),
            (offset_of!(RecordHeader, tgid), offset_of!(Event, tgid), offset_of!(Behaviour, tgid)),
            (offset_of!(RecordHeader, ppid), offset_of!(Event, ppid), offset_of!(Behaviour, ppid)),
            (offset_of!(RecordHeader, flags), offset_of!(Event, flags), offset_of!(Behaviour, flags)),
            (offset_of!(RecordHeader, ktime_ns), offset_of!(Event, ktime_ns), offset_of!(Behaviour, ktime_ns)),
            (offset_of!(RecordHeader, ret), offset_of!(Event, ret), offset_of!(Behaviour, ret)),
        ] {
            assert_eq!((header, header), (event, behaviour));
        }
        assert_eq!(offset_of!(Event, ktime_ns), 24);
        assert_eq!(offset_of!(Event, ret), 32);
        assert_eq!(offset_of!(Event, old), 40);
        assert_eq!(offset_of!(Event, new), 96);
        assert_eq!(offset_of!(Event, comm), 152);
        assert_eq!(offset_of!(Event, parent_comm), 168);
        assert_eq!(offset_of!(Event, exe), 184);
        assert_eq!(offset_of!(Event, cgroup), 184 + EXE_COMPONENTS * EXE_COMPONENT_LEN);
        assert_eq!(offset_of!(Event, cgroup_parent), 184 + EXE_COMPONENTS * EXE_COMPONENT_LEN + CGROUP_NAME_LEN);
        assert_eq!(EVENT_SIZE, 184 + EXE_COMPONENTS * EXE_COMPONENT_LEN + CGROUP_NAME_LEN + CGROUP_PARENT_LEN);
        assert_eq!(EVENT_SIZE, 632);
        assert_eq!(size_of::<Event>() % 8, 0);
        assert_eq!(core::mem::align_of::<Event>(), 8);
        assert_eq!(offset_of!(Behaviour, ret), offset_of!(Event, ret));
        assert_eq!(offset_of!(Behaviour, flags), offset_of!(Event, flags));
        assert_eq!(offset_of!(Behaviour, snap), 72);
        assert_eq!(BEHAVIOUR_SIZE % 8, 0);
        assert_eq!(BEHAVIOUR_SIZE, 1544, "a new wire format: update the decoder's size check");
        assert_eq!(size_of::<Offsets>() % 4, 0);
        assert_eq!(size_of::<KernelConfig>() % 8, 0);
    }
}
