//! What the kernel keeps per task and what it sends through the ring buffer.

use crate::NS_KINDS;

/// The namespaces and credentials of one task at one instant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// Namespace inode numbers indexed by [`crate::NsKind`]; 0 = not available on this kernel.
    pub ns: [u32; NS_KINDS],
    pub uid: u32,
    pub euid: u32,
    pub _pad: u32,
    /// `cred->cap_effective` as a 64-bit mask.
    pub cap_effective: u64,
}

impl TaskSnapshot {
    /// Branch-free on purpose: `==` on the arrays becomes a byte-wise `bcmp` loop whose early
    /// exits multiply the verifier's states in the kernel programs.
    #[inline(always)]
    pub fn same_namespaces(&self, other: &TaskSnapshot) -> bool {
        let mut diff = 0u32;
        let mut k = 0;
        while k < NS_KINDS {
            diff |= self.ns[k] ^ other.ns[k];
            k += 1;
        }
        diff == 0
    }

    pub fn same_creds(&self, other: &TaskSnapshot) -> bool {
        self.uid == other.uid && self.euid == other.euid && self.cap_effective == other.cap_effective
    }
}

/// Value of the per-task map: the last snapshot plus the kernel pointers it was read from, so
/// the hot path can tell "nothing changed" from two pointer reads (a new nsproxy or cred is
/// always a new object; see `switch_task_namespaces` and `commit_creds`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskState {
    pub snap: TaskSnapshot,
    pub nsproxy: u64,
    /// `task->real_cred` when `snap` was taken.
    pub cred: u64,
    /// `TASK_*` bits.
    pub flags: u32,
    pub _pad: u32,
    /// The last `struct cred *` the commit_creds hook saw this task install
    /// ([`TASK_CRED_COMMITTED`]): the only pointer `real_cred` may legitimately change to.
    pub committed_cred: u64,
}

/// Userspace has been told about this task (it sends an exit event).
pub const TASK_REPORTED: u32 = 1;
/// The task runs in a container (non-host PID namespace or a container's cgroup), decided when
/// its state is created and again at every exec (runtimes move a task into the container's
/// cgroup between fork and exec). Behaviour hooks look only at tasks with this flag.
pub const TASK_CONTAINER: u32 = 2;
/// The task (or an ancestor it was forked from) has exec'd a program while containerised.
/// Without it, a containerised task is the runtime still setting the container up (runc's
/// init mounting /proc, creating /dev nodes, pivot_root) before the entrypoint runs.
pub const TASK_EXECED: u32 = 4;
/// commit_creds ran for this task since `snap` was taken; `committed_cred` holds the pointer.
pub const TASK_CRED_COMMITTED: u32 = 1 << 3;
/// `snap` was taken while the commit_creds hook was attached, so every later legitimate
/// credential change of this task passes through it: the integrity checks apply.
pub const TASK_CREDS_TRACKED: u32 = 1 << 4;
/// A credential-integrity violation of this task was reported (once per task).
pub const TASK_CRED_TAMPER_REPORTED: u32 = 1 << 5;
/// The task's cgroup is named by a container id (decided at exec, inherited at fork): only
/// such a cgroup may be condemned, never a host session's or service's.
pub const TASK_CONTAINER_CGROUP: u32 = 1 << 6;

/// Slots of the runtime flags map.
pub mod runtime {
    /// Slot 0, written by userspace after attaching.
    pub const HOOKS_SLOT: u32 = 0;
    /// The commit_creds hook (fentry or kprobe) is attached.
    pub const COMMIT_CREDS_HOOK: u32 = 1;
    /// Slot 1: non-zero while the condemned map may hold a cgroup. Set by the kernel when it
    /// condemns one and by the agent when it restores the set; cleared by the agent when the
    /// map is empty. Tasks pay the condemned lookup only while it is set.
    pub const CONDEMNED_SLOT: u32 = 1;
    /// Slot 2: non-zero when a rule needs every unix connect of a container; else only a
    /// runtime's API socket is sent (the one the kernel recognises). Written by the agent from
    /// its rules before attaching and on SIGHUP.
    pub const EVERY_UNIX_CONNECT_SLOT: u32 = 2;
    /// Slot 3: non-zero while an allowlist is enforced in some container; else execs skip the
    /// allowlist lookups.
    pub const ALLOWLIST_SLOT: u32 = 3;
    pub const SLOTS: u32 = 4;
}

/// Where in the kernel a change was observed.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Setns = 1,
    Unshare = 2,
    Mount = 3,
    Clone = 4,
    Clone3 = 5,
    MoveMount = 6,
    Fsmount = 7,
    OpenTree = 8,
    /// sched:sched_process_fork: the child of a clone/fork, compared with its parent.
    Fork = 9,
    /// sched:sched_process_exec.
    Exec = 10,
    /// sched:sched_process_exit.
    Exit = 11,
    /// fentry/kprobe on commit_creds.
    CommitCreds = 12,
    // Behaviour hooks (EventKind::Behaviour).
    Open = 13,
    Openat = 14,
    Openat2 = 15,
    Connect = 16,
    InitModule = 17,
    FinitModule = 18,
    Ptrace = 19,
    Mknod = 20,
    Mknodat = 21,
    Bpf = 22,
    Chroot = 23,
    PivotRoot = 24,
    /// tp_btf signal_generate: a container task signalled the agent or its sentinel.
    Signal = 25,
    /// mmap of a file with `PROT_EXEC` (how ld.so loads shared libraries and `LD_PRELOAD`).
    Mmap = 26,
    /// process_vm_writev into a process (code injection without ptrace).
    ProcessVmWritev = 27,
    /// mprotect or pkey_mprotect adding `PROT_EXEC` to a range: a file mapped readable made
    /// executable afterwards (a loader of its own), or JIT code.
    Mprotect = 28,
}

impl Hook {
    pub const fn from_u32(v: u32) -> Option<Hook> {
        Some(match v {
            1 => Hook::Setns,
            2 => Hook::Unshare,
            3 => Hook::Mount,
            4 => Hook::Clone,
            5 => Hook::Clone3,
            6 => Hook::MoveMount,
            7 => Hook::Fsmount,
            8 => Hook::OpenTree,
            9 => Hook::Fork,
            10 => Hook::Exec,
            11 => Hook::Exit,
            12 => Hook::CommitCreds,
            13 => Hook::Open,
            14 => Hook::Openat,
            15 => Hook::Openat2,
            16 => Hook::Connect,
            17 => Hook::InitModule,
            18 => Hook::FinitModule,
            19 => Hook::Ptrace,
            20 => Hook::Mknod,
            21 => Hook::Mknodat,
            22 => Hook::Bpf,
            23 => Hook::Chroot,
            24 => Hook::PivotRoot,
            25 => Hook::Signal,
            26 => Hook::Mmap,
            27 => Hook::ProcessVmWritev,
            28 => Hook::Mprotect,
            _ => return None,
        })
    }

    /// The syscall or kernel hook name shown in alerts.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::Setns => "setns",
            Hook::Unshare => "unshare",
            Hook::Mount => "mount",
            Hook::Clone => "clone",
            Hook::Clone3 => "clone3",
            Hook::MoveMount => "move_mount",
            Hook::Fsmount => "fsmount",
            Hook::OpenTree => "open_tree",
            Hook::Fork => "sched_process_fork",
            Hook::Exec => "sched_process_exec",
            Hook::Exit => "sched_process_exit",
            Hook::CommitCreds => "commit_creds",
            Hook::Open => "open",
            Hook::Openat => "openat",
            Hook::Openat2 => "openat2",
            Hook::Connect => "connect",
            Hook::InitModule => "init_module",
            Hook::FinitModule => "finit_module",
            Hook::Ptrace => "ptrace",
            Hook::Mknod => "mknod",
            Hook::Mknodat => "mknodat",
            Hook::Bpf => "bpf",
            Hook::Chroot => "chroot",
            Hook::PivotRoot => "pivot_root",
            Hook::Signal => "kill",
            Hook::Mmap => "mmap",
            Hook::ProcessVmWritev => "process_vm_writev",
            Hook::Mprotect => "mprotect",
        }
    }

    /// The `evt.type` rules match on: Falco's names (a new program image is `execve`, a task
    /// created with new namespaces is the `clone` that made it).
    pub const fn evt_type(self) -> &'static str {
        match self {
            Hook::Exec => "execve",
            Hook::Fork => "clone",
            Hook::Exit => "procexit",
            other => other.name(),
        }
    }
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The task's namespaces differ from the last snapshot, or (with a `flags::CRED_*` bit)
    /// its credentials changed outside commit_creds.
    Transition = 1,
    /// A task userspace was told about has exited (lets it drop per-task state).
    Exit = 2,
    /// commit_creds raised a containerised task's privileges.
    Creds = 3,
    /// A containerised task did something the behaviour rules look at ([`Behaviour`]).
    Behaviour = 4,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Transition,
            2 => EventKind::Exit,
            3 => EventKind::Creds,
            4 => EventKind::Behaviour,
            _ => return None,
        })
    }
}

/// Event flags.
pub mod flags {
    /// The change was noticed at syscall entry: it happened outside any tracked path.
    pub const AT_ENTRY: u32 = 1 << 0;
    /// Enforce mode sent SIGKILL to the task before it returned to user space.
    pub const KILLED: u32 = 1 << 2;
    /// The executable path was deeper than the kernel walks; `exe` holds its last components.
    pub const EXE_TRUNCATED: u32 = 1 << 5;
    /// Cannot raise an alert: sent without the parent's comm and the executable path.
    pub const SUMMARY: u32 = 1 << 6;
    /// The kernel resolved the task's cgroup (`cgroup` may still be empty: the root cgroup).
    pub const CGROUP_RESOLVED: u32 = 1 << 7;
    /// Behaviour: the task is containerised ([`crate::TASK_CONTAINER`]).
    pub const CONTAINER: u32 = 1 << 8;
    /// Behaviour: reported at syscall entry; `ret` is not known yet.
    pub const BEFORE_RESULT: u32 = 1 << 9;
    /// Behaviour: the file path was deeper than the kernel walks.
    pub const FILE_TRUNCATED: u32 = 1 << 10;
    /// Behaviour: the open created the file (`FMODE_CREATED`).
    pub const FILE_CREATED: u32 = 1 << 11;
    /// Transition: the container runtime preparing the container ([`crate::TASK_EXECED`]
    /// unset). Behaviour records are never sent for such tasks.
    pub const RUNTIME_SETUP: u32 = 1 << 12;
    /// Credential integrity (kind Transition, `old` = last legitimate snapshot): the task's
    /// `real_cred` points somewhere commit_creds never installed.
    pub const CRED_REPLACED: u32 = 1 << 13;
    /// uid/euid/capabilities changed behind an unchanged `real_cred` pointer (a committed
    /// cred is immutable: this is a write into it).
    pub const CRED_IN_PLACE: u32 = 1 << 14;
    /// At syscall entry `task->cred` differs from `task->real_cred` (override_creds() is always
    /// reverted before a syscall returns); `new` carries the subjective credentials.
    pub const CRED_SUBJECTIVE: u32 = 1 << 15;
    pub const CRED_TAMPERED: u32 = CRED_REPLACED | CRED_IN_PLACE | CRED_SUBJECTIVE;
    /// Behaviour (open*): a write-mode open of a file on a disk filesystem (ext4, xfs, btrfs);
    /// `file` then holds the path within that filesystem (the walk does not cross mounts), so
    /// userspace can name where the file lives on the host whatever mount led to it.
    pub const HOST_FS_PATH: u32 = 1 << 16;
    /// The kill of this record also condemned the task's container (kill-container).
    pub const CONDEMNED: u32 = 1 << 17;
    /// Behaviour (signal, ptrace): the target is the dcea agent or its sentinel
    /// ([`crate::agent_role`]).
    pub const AGENT_TARGET: u32 = 1 << 18;
    /// Behaviour (exec, mmap): the file has no name left: a memfd, an `O_TMPFILE` file or a
    /// deleted one (`i_nlink` 0 or an unhashed dentry). Code run from it is fileless.
    pub const FILE_UNLINKED: u32 = 1 << 19;
    /// Behaviour (exec): the task's first exec since it became containerised: the runtime
    /// starting the container's init or a `docker exec`, not the workload running a program.
    pub const ENTRY_EXEC: u32 = 1 << 20;
    /// Behaviour (exec): the program is not in the container's enforced allowlist; with
    /// [`KILLED`] the kernel killed it before its first instruction.
    pub const NOT_ALLOWED: u32 = 1 << 21;
    /// Bits 24..28: the [`crate::Guard`] the record matched, plus one (0: none).
    pub const GUARD_SHIFT: u32 = 24;
    pub const GUARD_MASK: u32 = 0xf << GUARD_SHIFT;
}

/// Bits of an enforced container's entry in [`crate::names::ALLOW_ENFORCED_MAP`].
pub mod allow {
    /// Kill the runtime's execs into the container too ([`super::flags::ENTRY_EXEC`]): by
    /// default a `docker exec` of a program outside the allowlist is reported, not killed.
    pub const KILL_ENTRY_EXEC: u32 = 1;
}

/// One program an enforced container may run: its file as the kernel sees `mm->exe_file`
/// (superblock device in the kernel's encoding, inode number) and the task's comm after the
/// exec (the executed name's basename: how a multi-call binary's applets and a script run by
/// its interpreter are told apart).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowKey {
    pub cgroup: u64,
    pub ino: u64,
    pub dev: u32,
    pub pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// Indices of the per-CPU counters in the stats map.
pub mod stats {
    /// Events written to the ring buffer.
    pub const EMITTED: u32 = 0;
    /// Events lost because the main ring buffer was full.
    pub const RINGBUF_FULL: u32 = 1;
    /// Tasks not tracked because the task map could not take them.
    pub const TASKS_FULL: u32 = 2;
    /// Tasks killed in enforce mode.
    pub const KILLED: u32 = 3;
    /// Behaviour records written (a subset of EMITTED).
    pub const BEHAVIOURS: u32 = 4;
    /// Events lost because the priority ring buffer was full.
    pub const PRIORITY_RINGBUF_FULL: u32 = 5;
    /// Tasks killed because their container was condemned (a subset of KILLED).
    pub const CONDEMNED_KILLED: u32 = 6;
    /// Containers condemned in the kernel.
    pub const CONDEMNED: u32 = 7;
    /// Operations refused with -EPERM by a BPF LSM program.
    pub const DENIED: u32 = 8;
    /// Programs killed at exec for not being in their container's allowlist (a subset of KILLED).
    pub const ALLOWLIST_KILLED: u32 = 9;
    pub const COUNT: u32 = 10;
}

pub const COMM_LEN: usize = 16;
/// The executable path is sent as its last components, leaf first (a kernel-side dentry walk
/// cannot build a string backwards within the verifier's limits).
pub const EXE_COMPONENTS: usize = 8;
pub const EXE_COMPONENT_LEN: usize = 32;
pub const CGROUP_NAME_LEN: usize = 128;
pub const CGROUP_PARENT_LEN: usize = 64;
/// Bytes of one ring-buffer record (the wire size userspace checks before reading).
pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

/// The fields every ring-buffer record starts with, in this order: [`Event`] and [`Behaviour`]
/// both begin with this layout (pinned by a test), so the kernel fills it in one place.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RecordHeader {
    pub kind: u32,
    pub hook: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub flags: u32,
    pub ktime_ns: u64,
    pub ret: i64,
}

/// One ring-buffer record. Which namespaces changed, which entered the host's and whether the
/// hook could legitimately change them is derived in userspace from `old`, `new` and `hook`
/// (the kernel does not compute masks: their branches multiply the verifier's states).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub kind: u32,
    pub hook: u32,
    /// Kernel task id (thread id) and thread-group id, as seen from the initial pid namespace.
    pub pid: u32,
    pub tgid: u32,
    /// Thread-group id of the real parent.
    pub ppid: u32,
    pub flags: u32,
    /// CLOCK_MONOTONIC nanoseconds when the change was observed.
    pub ktime_ns: u64,
    /// Syscall return value (0 for non-syscall hooks).
    pub ret: i64,
    pub old: TaskSnapshot,
    pub new: TaskSnapshot,
    pub comm: [u8; COMM_LEN],
    /// `comm` of the real parent.
    pub parent_comm: [u8; COMM_LEN],
    /// Path components of the executable, leaf first; empty strings past the root.
    pub exe: [[u8; EXE_COMPONENT_LEN]; EXE_COMPONENTS],
    /// Name of the task's cgroup (leaf) and of its parent, in the hierarchy the agent chose.
    pub cgroup: [u8; CGROUP_NAME_LEN],
    pub cgroup_parent: [u8; CGROUP_PARENT_LEN],
}

/// Bytes of a path string from user memory (the sockaddr_un path is 108).
pub const PATH_LEN: usize = 256;
/// Bytes of the second string: mount source, pivot_root put_old, module parameters, argv.
pub const ARG_LEN: usize = 256;
pub const FSTYPE_LEN: usize = 32;
/// Steps of the kernel's walk from an opened file towards the root: one path component each,
/// or an empty slot where the walk crossed a mount point.
pub const FILE_STEPS: usize = 12;
pub const BEHAVIOUR_SIZE: usize = core::mem::size_of::<Behaviour>();

/// Indices into [`Behaviour::args`], per hook.
pub mod arg {
    /// open*: `f_flags` (with `O_CREAT` added when the open created the file); mount: `MS_*`
    /// flags; ptrace: request; bpf: command; mknod*: mode; exec: length of the argv block;
    /// mmap, mprotect: `prot`.
    pub const FLAGS: usize = 0;
    /// open*, exec, mmap: `i_mode` of the inode; mknod*: the device number; ptrace,
    /// process_vm_writev: target pid.
    pub const MODE: usize = 1;
    /// open*, finit_module, exec, mmap: `s_dev` of the file's superblock (kernel encoding
    /// major << 20 | minor); chroot/pivot_root: of the task's new root.
    pub const DEV: usize = 2;
    /// open*, finit_module, exec, mmap: `s_magic` of the file's superblock.
    pub const MAGIC: usize = 3;
    /// signal: the signal number (at [`FLAGS`]), the target's tgid (at [`MODE`]), the
    /// signalled thread (at [`DEV`]) and its [`crate::agent_role`] (here).
    pub const ROLE: usize = 3;
    /// mprotect as the kernel sends it: the range's start (at [`MODE`]) and length (at
    /// [`DEV`]). User space reads the task's maps for the mapping there and then fills
    /// [`MODE`], [`DEV`] and [`MAGIC`] as for mmap.
    pub const START: usize = 1;
    pub const LENGTH: usize = 2;
}

/// Who a pid of the self-protection map (`DCEA_SELF`, tid → role) is.
pub mod agent_role {
    /// A thread of the monitor: signals to it go to the sentinel's ring, since a stopped or
    /// killed agent cannot report them itself.
    pub const AGENT: u32 = 1;
    /// A thread of the sentinel: signals to it go to the agent's ring.
    pub const SENTINEL: u32 = 2;
    /// Threads the map holds (agent and sentinel together).
    pub const MAX_THREADS: u32 = 512;
}

/// One behaviour record: what a containerised task did, with enough context to evaluate rules
/// without asking /proc. Shares its header layout with [`Event`] up to `ret`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Behaviour {
    pub kind: u32,
    pub hook: u32,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub flags: u32,
    pub ktime_ns: u64,
    /// Syscall result, or 0 with [`flags::BEFORE_RESULT`].
    pub ret: i64,
    pub args: [u64; 4],
    /// The task's namespaces and credentials as last seen by the kernel programs.
    pub snap: TaskSnapshot,
    pub comm: [u8; COMM_LEN],
    pub parent_comm: [u8; COMM_LEN],
    pub exe: [[u8; EXE_COMPONENT_LEN]; EXE_COMPONENTS],
    pub cgroup: [u8; CGROUP_NAME_LEN],
    pub cgroup_parent: [u8; CGROUP_PARENT_LEN],
    /// The path argument as the task passed it (connect: the socket path; mount: target;
    /// exec: the file name given to execve).
    pub path: [u8; PATH_LEN],
    /// mount: source; pivot_root: put_old; init_module/finit_module: parameters; exec: argv
    /// (NUL-separated, `args[FLAGS]` bytes long).
    pub arg: [u8; ARG_LEN],
    /// mount: filesystem type.
    pub fstype: [u8; FSTYPE_LEN],
    /// open*, finit_module: the opened file's path components, leaf first, across mounts up
    /// to the task's mount namespace root (symlinks and relative paths resolved); an empty
    /// slot is a mount crossing. With [`flags::HOST_FS_PATH`], up to the filesystem's root
    /// instead. chroot/pivot_root: the task's new root, read at syscall exit.
    pub file: [[u8; EXE_COMPONENT_LEN]; FILE_STEPS],
    /// exec, mmap (mprotect once user space has read the maps): the inode number of the
    /// program or mapped file (with `args[DEV]` its identity, which the integrity cache keys on).
    pub ino: u64,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: plain-old-data, repr(C), no padding that is read uninitialised on the user side.
    unsafe impl aya::Pod for TaskSnapshot {}
    unsafe impl aya::Pod for TaskState {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for Behaviour {}
    unsafe impl aya::Pod for AllowKey {}
}
