//! The kernel programs by name: the eBPF crate defines functions with exactly these names and
//! userspace loads and attaches them from this table.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Classic tracepoint `category:name`.
    TracePoint { category: &'static str, name: &'static str },
    /// BTF-enabled raw tracepoint.
    BtfTracePoint { event: &'static str },
    /// fentry on a kernel function (needs BTF and a kernel that allows tracing programs).
    FEntry { function: &'static str },
    /// kprobe on a kernel function (needs CONFIG_KPROBES).
    KProbe { function: &'static str },
    /// BPF LSM program on a security hook (needs `bpf` among the active LSMs).
    Lsm { hook: &'static str },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    pub name: &'static str,
    pub attach: Attach,
    /// Which capability the program serves; programs of one capability fall back to each other.
    pub capability: &'static str,
    /// The agent refuses to run in eBPF mode when a required program cannot load.
    pub required: bool,
}

macro_rules! syscall_pair {
    ($enter:literal, $exit:literal) => {
        [
            ProgramSpec {
                name: $enter,
                attach: Attach::TracePoint { category: "syscalls", name: $enter },
                capability: "namespace transitions",
                required: true,
            },
            ProgramSpec {
                name: $exit,
                attach: Attach::TracePoint { category: "syscalls", name: $exit },
                capability: "namespace transitions",
                required: true,
            },
        ]
    };
}

const SYSCALLS: [[ProgramSpec; 2]; 8] = [
    syscall_pair!("sys_enter_setns", "sys_exit_setns"),
    syscall_pair!("sys_enter_unshare", "sys_exit_unshare"),
    syscall_pair!("sys_enter_clone", "sys_exit_clone"),
    syscall_pair!("sys_enter_clone3", "sys_exit_clone3"),
    syscall_pair!("sys_enter_mount", "sys_exit_mount"),
    syscall_pair!("sys_enter_move_mount", "sys_exit_move_mount"),
    syscall_pair!("sys_enter_fsmount", "sys_exit_fsmount"),
    syscall_pair!("sys_enter_open_tree", "sys_exit_open_tree"),
];

const SCHED: [ProgramSpec; 3] = [
    ProgramSpec {
        name: "sched_process_exec",
        attach: Attach::TracePoint { category: "sched", name: "sched_process_exec" },
        capability: "namespace transitions",
        required: true,
    },
    ProgramSpec {
        name: "sched_process_exit",
        attach: Attach::TracePoint { category: "sched", name: "sched_process_exit" },
        capability: "namespace transitions",
        required: true,
    },
    ProgramSpec {
        name: "sched_process_fork",
        attach: Attach::BtfTracePoint { event: "sched_process_fork" },
        capability: "namespace transitions",
        required: true,
    },
];

/// commit_creds: fentry first, kprobe as the fallback; optional.
pub const COMMIT_CREDS: [ProgramSpec; 2] = [
    ProgramSpec {
        name: "commit_creds_fentry",
        attach: Attach::FEntry { function: "commit_creds" },
        capability: "credential changes",
        required: false,
    },
    ProgramSpec {
        name: "commit_creds_kprobe",
        attach: Attach::KProbe { function: "commit_creds" },
        capability: "credential changes",
        required: false,
    },
];

macro_rules! behaviour {
    ($($name:literal),* $(,)?) => {
        [$(ProgramSpec {
            name: $name,
            attach: Attach::TracePoint { category: "syscalls", name: $name },
            capability: "behaviour rules",
            required: false,
        }),*]
    };
}

/// Behaviour hooks for the rules engine; optional (a kernel without openat2 still runs the
/// rest). The exec behaviour rides on the required exec program; the mount behaviour is a
/// second program on sys_enter_mount ([`MOUNT_BEHAVIOUR`]).
pub const BEHAVIOUR: [ProgramSpec; 17] = {
    let named = BEHAVIOUR_BY_TRACEPOINT;
    let mut all = [MOUNT_BEHAVIOUR; 17];
    let mut i = 0;
    while i < named.len() {
        all[i] = named[i];
        i += 1;
    }
    all
};

/// Mount behaviour and its guards, beside the tracked-point program of the same tracepoint.
pub const MOUNT_BEHAVIOUR: ProgramSpec = ProgramSpec {
    name: "mount_behaviour",
    attach: Attach::TracePoint { category: "syscalls", name: "sys_enter_mount" },
    capability: "behaviour rules",
    required: false,
};

const BEHAVIOUR_BY_TRACEPOINT: [ProgramSpec; 16] = behaviour![
    "sys_exit_open",
    "sys_exit_openat",
    "sys_exit_openat2",
    "sys_enter_connect",
    "sys_enter_init_module",
    "sys_enter_finit_module",
    "sys_enter_ptrace",
    "sys_enter_mknod",
    "sys_enter_mknodat",
    "sys_enter_bpf",
    "sys_exit_chroot",
    "sys_exit_pivot_root",
    "sys_enter_mmap",
    "sys_enter_process_vm_writev",
    "sys_enter_mprotect",
    "sys_enter_pkey_mprotect",
];

macro_rules! lsm {
    ($($hook:literal => $name:literal),* $(,)?) => {
        [$(ProgramSpec { name: $name, attach: Attach::Lsm { hook: $hook }, capability: "LSM deny", required: false }),*]
    };
}

/// BPF LSM programs that refuse a guarded operation inside its syscall (`--enforce` only).
pub const LSM: [ProgramSpec; 7] = lsm![
    "socket_connect" => "lsm_socket_connect",
    "sb_mount" => "lsm_sb_mount",
    "path_mknod" => "lsm_path_mknod",
    "ptrace_access_check" => "lsm_ptrace_access_check",
    "kernel_load_data" => "lsm_kernel_load_data",
    "kernel_read_file" => "lsm_kernel_read_file",
    "task_kill" => "lsm_task_kill",
];

/// Self-protection: signals from containers to the agent or its sentinel, seen where the
/// kernel generates them (kill, tkill, tgkill, pidfd_send_signal, a ptrace attach's SIGSTOP).
pub const SELF_PROTECTION: [ProgramSpec; 1] = [ProgramSpec {
    name: "signal_generate",
    attach: Attach::BtfTracePoint { event: "signal_generate" },
    capability: "self-protection",
    required: false,
}];

/// Every required program, in attach order.
pub fn required() -> impl Iterator<Item = &'static ProgramSpec> {
    SYSCALLS.iter().flatten().chain(SCHED.iter())
}

/// Every program the object contains.
pub fn all() -> impl Iterator<Item = &'static ProgramSpec> {
    required().chain(COMMIT_CREDS.iter()).chain(BEHAVIOUR.iter()).chain(SELF_PROTECTION.iter()).chain(LSM.iter())
}

/// Network quarantine (`dcea quarantine`): cgroup programs attached to one container's cgroup
/// v2 directory and pinned in bpffs. Not part of [`all`]: the monitor never attaches them;
/// each quarantine loads its own instance (with its own [`quarantine::FLAGS_MAP`]).
pub mod quarantine {
    /// Where a quarantine program hooks in the container's cgroup.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Hook {
        /// `cgroup_skb/ingress`: packets delivered to the container's sockets.
        SkbIngress,
        /// `cgroup_skb/egress`: packets the container's sockets send.
        SkbEgress,
        /// `cgroup/connect4`, `cgroup/connect6`: connect(2) refused with EPERM.
        Connect4,
        Connect6,
        /// `cgroup/sendmsg4`, `cgroup/sendmsg6`: sendto/sendmsg with an address refused.
        Sendmsg4,
        Sendmsg6,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Program {
        pub name: &'static str,
        pub hook: Hook,
    }

    pub const SKB_INGRESS: &str = "quarantine_ingress";
    pub const SKB_EGRESS: &str = "quarantine_egress";
    pub const CONNECT4: &str = "quarantine_connect4";
    pub const CONNECT6: &str = "quarantine_connect6";
    pub const SENDMSG4: &str = "quarantine_sendmsg4";
    pub const SENDMSG6: &str = "quarantine_sendmsg6";

    /// Every quarantine program, in attach order (the refusals first, then the drops).
    pub const QUARANTINE: [Program; 6] = [
        Program { name: CONNECT4, hook: Hook::Connect4 },
        Program { name: CONNECT6, hook: Hook::Connect6 },
        Program { name: SENDMSG4, hook: Hook::Sendmsg4 },
        Program { name: SENDMSG6, hook: Hook::Sendmsg6 },
        Program { name: SKB_EGRESS, hook: Hook::SkbEgress },
        Program { name: SKB_INGRESS, hook: Hook::SkbIngress },
    ];

    /// One slot of `u32` flags per loaded quarantine: each quarantine is its own instance of
    /// the programs and this map, so the slot is that container's cgroup's configuration.
    pub const FLAGS_MAP: &str = "DCEA_QUARANTINE_FLAGS";
    /// `--allow-dns`: connect/sendmsg to port 53 and packets to or from port 53 pass.
    pub const ALLOW_DNS: u32 = 1;
    /// The port `--allow-dns` lets through.
    pub const DNS_PORT: u16 = 53;
}
