//! Behaviour hooks: what a containerised task does that the rules engine looks at (sensitive
//! files, runtime sockets, module loads, ptrace, device nodes, bpf, chroot, mounts, execs).
//!
//! Host tasks return after one map lookup and a flag test. For container tasks every filter
//! the kernel can apply cheaply runs here, so that an ordinary open costs a few pointer reads
//! and produces nothing: only files on kernel filesystems opened for writing, block devices,
//! a short list of credential file names and files created under /dev leave the kernel.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_task, generated},
    macros::tracepoint,
    maps::{RingBuf, ring_buf::RingBufEntry},
    programs::TracePointContext,
};
use dcea_common::{
    Behaviour, CGROUP_NAME_LEN, EventKind, Guard, Hook, NsKind, RecordHeader, TASK_CONTAINER, TASK_CONTAINER_CGROUP,
    TASK_EXECED, TaskSnapshot, TaskState, arg, flags, runtime, stats, words_up_to_nul,
};

use crate::{
    DCEA_EVENTS, DCEA_SCRATCH, DCEA_TASKS, count, current_ids,
    guard::{code, enforce, enforce_guard, kill_if_condemned, opaque},
    task::{
        FileInfo, Task, config, dentry_name, dentry_sb_dev_magic, nonzero, path_components, read_name_words, read_str,
        read_user_str,
    },
};

/// 1 when the snapshot's PID namespace is known and not the host's, else 0, without a branch.
#[inline(always)]
pub fn in_container_pid_ns(snap: &TaskSnapshot) -> u32 {
    let host_pid: u32 = config!(host_ns[NsKind::Pid.index()]);
    let pid_ns = snap.ns[NsKind::Pid.index()] as u64;
    // host_pid is a load-time constant: the verifier resolves this test.
    if host_pid == 0 {
        return 0;
    }
    (nonzero(pid_ns) & nonzero(pid_ns ^ host_pid as u64)) as u32
}

/// `TASK_CONTAINER` when the task runs in a non-host PID namespace or a container's cgroup,
/// with `TASK_CONTAINER_CGROUP` for the latter.
#[inline(always)]
fn container_flag(task: Task, snap: &TaskSnapshot) -> u32 {
    // The leaf name goes to a per-CPU buffer: 128 bytes on the stack of every caller would
    // push the larger programs past the 512-byte BPF stack.
    let Some(leaf) = DCEA_SCRATCH.get_ptr_mut(0) else { return in_container_pid_ns(snap) * TASK_CONTAINER };
    // SAFETY: per-CPU slot, used only within this call on this CPU.
    let by_cgroup = task.cgroup_leaf_has_container_id(unsafe { &mut *leaf }) as u32;
    ((in_container_pid_ns(snap) | by_cgroup) * TASK_CONTAINER) | (by_cgroup * TASK_CONTAINER_CGROUP)
}

/// Flags of a task first seen after it started, from its PID namespace alone: the cgroup test
/// costs the verifier a 256-byte walk at every call site, so it runs in one program, at exec
/// (where runtimes have placed the task in the container's cgroup). A task of a
/// `--pid=host` container that predates the agent is recognised at its next exec.
#[inline(always)]
pub fn learnt_flags(snap: &TaskSnapshot) -> u32 {
    in_container_pid_ns(snap) * (TASK_CONTAINER | TASK_EXECED)
}

/// Tasks whose behaviour the rules look at: containerised and past the runtime's setup. The
/// runtime preparing a container (runc's init mounting /proc and /sys, creating /dev nodes,
/// pivot_root) runs trusted host code; reporting it would be a hundred records per start.
#[inline(always)]
pub(crate) fn watched(state_flags: u32) -> bool {
    state_flags & (TASK_CONTAINER | TASK_EXECED) == TASK_CONTAINER | TASK_EXECED
}

/// The current task and its snapshot when its behaviour is watched; learns a task seen first
/// here. A task of a condemned container is killed here instead, also while the runtime is
/// still setting it up (a `docker exec` into it).
#[inline(always)]
pub(crate) fn current_container_task() -> Option<(Task, TaskSnapshot)> {
    let (pid, _) = current_ids()?;
    let task = Task(unsafe { bpf_get_current_task() });
    if let Some(state) = DCEA_TASKS.get_ptr(pid) {
        // SAFETY: map value pointer valid for this program run.
        let state = unsafe { &*state };
        if state.flags & TASK_CONTAINER != 0 && kill_if_condemned() {
            return None;
        }
        return if watched(state.flags) { Some((task, state.snap)) } else { None };
    }
    let (nsproxy, cred) = (task.nsproxy(), task.cred());
    if nsproxy == 0 || cred == 0 {
        return None;
    }
    let snap = task.snapshot(nsproxy, cred);
    let state_flags = learnt_flags(&snap) | crate::tracked_now();
    let state = TaskState { snap, nsproxy, cred, flags: state_flags, _pad: 0, committed_cred: 0 };
    if DCEA_TASKS.insert(pid, state, 0).is_err() {
        count(stats::TASKS_FULL);
    }
    if watched(state_flags) { Some((task, snap)) } else { None }
}

/// A behaviour record whose common part is written ([`begin`]); the hook adds its strings
/// through [`Record::ev`], then [`Record::submit`].
pub(crate) struct Record {
    entry: RingBufEntry<Behaviour>,
    wake: bool,
}

impl Record {
    #[inline(always)]
    fn ev(&mut self) -> &mut Behaviour {
        // SAFETY: reserved and initialised by `begin`.
        unsafe { &mut *self.entry.as_mut_ptr() }
    }

    #[inline(always)]
    pub(crate) fn submit(self) {
        self.entry.submit(crate::wakeup_flags(self.wake));
        count(stats::EMITTED);
        count(stats::BEHAVIOURS);
    }
}

/// Reserve a behaviour record and fill its common part. `wake`: the agent is woken at once
/// (everything but execs, which it drains every 20 ms). A guard's action was taken before
/// this ([`enforce`]): a full ring loses the record, never the kill. A killed task's record
/// wakes the agent, which finishes off its container.
///
/// No closure and no call: the 5.10 and 6.1 verifiers cannot track precision through a
/// BPF-to-BPF call (a memset LLVM emits for zeroed bytes, or a closure it keeps out of line),
/// and then treat every constant as precise, which multiplies the states of what follows.
#[inline(always)]
fn begin(
    hook: Hook,
    task: Task,
    snap: &TaskSnapshot,
    ret: i64,
    args: [u64; 4],
    extra_flags: u32,
    wake: bool,
) -> Option<Record> {
    begin_on(&DCEA_EVENTS, hook, task, snap, ret, args, extra_flags, wake)
}

/// [`begin`] on another ring than the agent's main one (the sentinel's).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn begin_on(
    ring: &RingBuf,
    hook: Hook,
    task: Task,
    snap: &TaskSnapshot,
    ret: i64,
    args: [u64; 4],
    extra_flags: u32,
    wake: bool,
) -> Option<Record> {
    let Some(mut entry) = ring.reserve::<Behaviour>(0) else {
        count(stats::RINGBUF_FULL);
        return None;
    };
    // SAFETY: a reserved record of size_of::<Behaviour>() bytes; every field is written (no
    // memset: the verifier would walk it byte by byte); strings are NUL-terminated.
    unsafe {
        let ev = &mut *entry.as_mut_ptr();
        let header = &mut *(ev as *mut Behaviour).cast::<RecordHeader>();
        let parent = crate::fill_header(header, EventKind::Behaviour, hook, task, ret);
        // One store per word: zero words next to each other would become a memset call.
        let mut i = 0;
        while i < args.len() {
            core::ptr::write_volatile(&mut ev.args[i], args[i]);
            i += 1;
        }
        core::ptr::write_volatile(&mut ev.ino, 0);
        ev.snap = *snap;
        task.comm(&mut ev.comm);
        parent.comm(&mut ev.parent_comm);
        ev.flags = extra_flags
            | flags::CONTAINER
            | (flags::EXE_TRUNCATED * task.exe_components(&mut ev.exe))
            | (flags::CGROUP_RESOLVED * task.cgroup_names(&mut ev.cgroup, &mut ev.cgroup_parent));
        ev.path[0] = 0;
        ev.arg[0] = 0;
        ev.fstype[0] = 0;
        let mut i = 0;
        while i < ev.file.len() {
            ev.file[i][0] = 0;
            i += 1;
        }
    }
    Some(Record { entry, wake: wake || extra_flags & flags::KILLED != 0 })
}

/// `fill` the hook's strings into a [`begin`]-ed record and submit it. Only for a small
/// `fill`: a large body would stay out of line (see [`begin`]).
#[inline(always)]
fn emit<F: FnOnce(&mut Behaviour)>(record: Option<Record>, fill: F) {
    if let Some(mut record) = record {
        fill(record.ev());
        record.submit();
    }
}

#[inline(always)]
fn syscall_arg(ctx: &TracePointContext, n: usize) -> u64 {
    // syscalls:sys_enter_*: `int __syscall_nr` at 8, then six 8-byte arguments from 16.
    unsafe { ctx.read_at::<u64>(16 + 8 * n) }.unwrap_or(0)
}

// Superblock magics (include/uapi/linux/magic.h) of the kernel's own filesystems.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const SYSFS_MAGIC: u64 = 0x6265_6572;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
const DEBUGFS_MAGIC: u64 = 0x6462_6720;
const TRACEFS_MAGIC: u64 = 0x7472_6163;
const SECURITYFS_MAGIC: u64 = 0x7363_6673;
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

const EXT4_SUPER_MAGIC: u64 = 0xef53;
const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: u64 = 0x9123_683e;

const FMODE_WRITE: u32 = 0x2;
const S_IFMT: u32 = 0o170000;
const S_IFBLK: u32 = 0o060000;
const S_IFCHR: u32 = 0o020000;
const O_CREAT: u64 = 0o100;

/// A name as the two words [`read_name_words`] produces (zero-padded; a longer name is cut
/// to 15 bytes and a NUL, as there).
const fn name_words(name: &[u8]) -> (u64, u64) {
    let mut b = [0u8; 16];
    let mut i = 0;
    while i < name.len() && i < 15 {
        b[i] = name[i];
        i += 1;
    }
    (
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// Files whose access from a container is always worth a rule's look, whatever the access.
const SENSITIVE_NAMES: [(u64, u64); 16] = [
    name_words(b"shadow"),
    name_words(b"shadow-"),
    name_words(b"gshadow"),
    name_words(b"gshadow-"),
    name_words(b"sudoers"),
    name_words(b"pam.conf"),
    name_words(b"opasswd"),
    name_words(b"authorized_keys"),
    name_words(b"id_rsa"),
    name_words(b"id_dsa"),
    name_words(b"id_ecdsa"),
    name_words(b"id_ed25519"),
    name_words(b"kcore"),
    name_words(b"kmem"),
    name_words(b"mem"),
    name_words(b"docker.sock"),
];

/// cgroup v1 files that run a host program on the host's behalf (the release_agent escape).
const CGROUP_ESCAPE_NAMES: [(u64, u64); 2] = [name_words(b"release_agent"), name_words(b"notify_on_release")];

/// Directories whose every file is sensitive (keys, PAM stacks, sudo drop-ins).
const SENSITIVE_DIRS: [(u64, u64); 3] = [name_words(b".ssh"), name_words(b"pam.d"), name_words(b"sudoers.d")];

/// procfs and sysfs files that make the kernel run a program as root on the host, or reboot
/// it (the kernel-parameter escapes; core_pattern has its own guard).
const KERNEL_CONTROL_NAMES: [(u64, u64); 5] = [
    name_words(b"modprobe"),
    name_words(b"poweroff_cmd"),
    name_words(b"hotplug"),
    name_words(b"uevent_helper"),
    name_words(b"sysrq-trigger"),
];
const CORE_PATTERN: (u64, u64) = name_words(b"core_pattern");
const BINFMTFS_MAGIC: u64 = 0x4249_4e4d;

const DEV: (u64, u64) = name_words(b"dev");
const FS_ROOT: (u64, u64) = name_words(b"/");

/// 1 when `a == b`, else 0, without a branch.
#[inline(always)]
fn same(a: u64, b: u64) -> u64 {
    1 - nonzero(a ^ b)
}

/// 1 when `words` is in `table`, else 0, as a value the verifier does not know: LLVM turns the
/// comparisons into branches, and the constants they leave must not split what follows (a
/// guard's input: see guard.rs).
#[inline(always)]
fn in_table_bit<const N: usize>(words: (u64, u64), table: &[(u64, u64); N]) -> u64 {
    let mut hit = 0;
    let mut i = 0;
    while i < N {
        hit |= same(words.0, table[i].0) & same(words.1, table[i].1);
        i += 1;
    }
    (opaque(hit as u32) & 1) as u64
}

#[inline(always)]
fn in_table<const N: usize>(words: (u64, u64), table: &[(u64, u64); N]) -> bool {
    let mut hit = false;
    let mut i = 0;
    while i < N {
        hit |= words.0 == table[i].0 && words.1 == table[i].1;
        i += 1;
    }
    hit
}

#[inline(always)]
fn open_is_interesting(info: &FileInfo) -> bool {
    let m = info.s_magic;
    if m == DEBUGFS_MAGIC || m == TRACEFS_MAGIC || m == SECURITYFS_MAGIC || m == BPF_FS_MAGIC || m == BINFMTFS_MAGIC {
        return true;
    }
    if info.i_mode & S_IFMT == S_IFBLK {
        return true;
    }
    let name = read_name_words(info.name);
    let kernel_fs = m == PROC_SUPER_MAGIC || m == SYSFS_MAGIC;
    let cgroup_fs = m == CGROUP_SUPER_MAGIC || m == CGROUP2_SUPER_MAGIC;
    // f_mode only for the kernel filesystems (a container reads /proc all the time).
    if (kernel_fs || (cgroup_fs && in_table(name, &CGROUP_ESCAPE_NAMES))) && info.f_mode() & FMODE_WRITE != 0 {
        return true;
    }
    if in_table(name, &SENSITIVE_NAMES) {
        return true;
    }
    let dir = read_name_words(dentry_name(info.parent));
    if in_table(dir, &SENSITIVE_DIRS) {
        return true;
    }
    // Files created under /dev: the parent is `dev`, or the root ("/") of a tmpfs mounted
    // on `dev`; only then are the mount and f_mode read.
    (dir == DEV || dir == FS_ROOT) && read_name_words(dentry_name(info.parent_dir())) == DEV && created(info) != 0
}

/// The guard code (see guard.rs) of a write-mode open of a kernel control file:
/// release_agent, core_pattern, the program-running knobs, binfmt_misc. Branch-free.
#[inline(always)]
fn open_guard(info: &FileInfo) -> u32 {
    let m = info.s_magic;
    let write = nonzero((info.f_mode() & FMODE_WRITE) as u64);
    let name = read_name_words(info.name);
    let proc_fs = same(m, PROC_SUPER_MAGIC);
    let kernel_fs = proc_fs | same(m, SYSFS_MAGIC);
    let release = same(m, CGROUP_SUPER_MAGIC) & in_table_bit(name, &CGROUP_ESCAPE_NAMES);
    let core = proc_fs & same(name.0, CORE_PATTERN.0) & same(name.1, CORE_PATTERN.1);
    let knob = kernel_fs & in_table_bit(name, &KERNEL_CONTROL_NAMES);
    let binfmt = same(m, BINFMTFS_MAGIC);
    (write as u32)
        * (code(Guard::BinfmtRegister, binfmt as u32)
            | code(Guard::ReleaseAgent, release as u32)
            | code(Guard::CorePattern, core as u32)
            | code(Guard::KernelControl, knob as u32))
}

/// 1 when the open created the file (`FMODE_CREATED`; never on kernels without the flag).
#[inline(always)]
fn created(info: &FileInfo) -> u64 {
    let fmode_created: u32 = config!(offsets.fmode_created);
    nonzero((info.f_mode() & fmode_created) as u64)
}

/// 1 for a write-mode open of a file on a disk filesystem. A container's own files are on
/// overlay or tmpfs; a disk filesystem is a host directory the runtime bind-mounted, a volume,
/// or a host disk the container mounted: userspace tells which from where the file lives.
/// f_mode is read only for files on such filesystems.
#[inline(always)]
fn host_fs_write(info: &FileInfo) -> u64 {
    let m = info.s_magic;
    let on_disk = m == EXT4_SUPER_MAGIC || m == XFS_SUPER_MAGIC || m == BTRFS_SUPER_MAGIC;
    (on_disk && info.f_mode() & FMODE_WRITE != 0) as u64
}

/// open/openat/openat2 return: the descriptor names the file the kernel really opened
/// (relative paths, symlinks and `..` already resolved), so the filter cannot be dodged by
/// spelling the path differently.
#[inline(always)]
fn on_open_exit(hook: Hook, ctx: &TracePointContext) {
    let ret = crate::sys_exit_ret(ctx);
    if ret < 0 {
        return;
    }
    let Some((task, snap)) = current_container_task() else {
        return;
    };
    let file = task.opened_file(ret as u32);
    if file == 0 {
        return;
    }
    let info = FileInfo::read(file);
    let host_fs = host_fs_write(&info);
    if host_fs == 0 && !open_is_interesting(&info) {
        return;
    }
    let created = created(&info);
    let open_flags = info.f_flags() as u64 | (created * O_CREAT);
    let args = [open_flags, info.i_mode as u64, info.s_dev() as u64, info.s_magic];
    let record_flags =
        (created as u32 * flags::FILE_CREATED) | (host_fs as u32 * flags::HOST_FS_PATH) | enforce(open_guard(&info));
    if let Some(mut record) = begin(hook, task, &snap, ret, args, record_flags, true) {
        let ev = record.ev();
        ev.flags |= flags::FILE_TRUNCATED * path_components(info.vfsmount, info.dentry, host_fs ^ 1, &mut ev.file);
        record.submit();
    }
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    on_open_exit(Hook::Open, &ctx);
    0
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    on_open_exit(Hook::Openat, &ctx);
    0
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    on_open_exit(Hook::Openat2, &ctx);
    0
}

const AF_UNIX: u16 = 1;
/// `sizeof(sockaddr_un.sun_path)`.
const SUN_PATH_LEN: usize = 108;

/// How a socket path's last 16 bytes end when they end with a runtime's API socket file: the
/// name at the end, and before it a `/` or the path's start (a zero byte). Masks over the two
/// little-endian words of the window, built at compile time: the test is arithmetic only.
#[derive(Clone, Copy)]
struct SocketSuffix {
    mask: (u64, u64),
    value: (u64, u64),
    /// The byte before the name (none when the name fills the window), and a `/` there.
    separator: (u64, u64),
    slash: (u64, u64),
}

const fn socket_suffix(name: &[u8]) -> SocketSuffix {
    let mut mask = [0u8; 16];
    let mut value = [0u8; 16];
    let mut separator = [0u8; 16];
    let mut slash = [0u8; 16];
    let len = if name.len() > 16 { 16 } else { name.len() };
    let mut i = 0;
    while i < len {
        mask[16 - len + i] = 0xff;
        value[16 - len + i] = name[name.len() - len + i];
        i += 1;
    }
    if len < 16 {
        separator[15 - len] = 0xff;
        slash[15 - len] = b'/';
    }
    SocketSuffix {
        mask: (le_word(&mask, 0), le_word(&mask, 8)),
        value: (le_word(&value, 0), le_word(&value, 8)),
        separator: (le_word(&separator, 0), le_word(&separator, 8)),
        slash: (le_word(&slash, 0), le_word(&slash, 8)),
    }
}

const fn le_word(b: &[u8; 16], o: usize) -> u64 {
    u64::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]])
}

/// The runtimes' API socket files, wherever they are mounted (`containerd.sock.ttrpc` is
/// containerd's too).
const RUNTIME_SOCKETS: [SocketSuffix; 8] = [
    socket_suffix(b"docker.sock"),
    socket_suffix(b"containerd.sock"),
    socket_suffix(b"containerd.sock.ttrpc"),
    socket_suffix(b"crio.sock"),
    socket_suffix(b"podman.sock"),
    socket_suffix(b"dockershim.sock"),
    socket_suffix(b"cri-dockerd.sock"),
    socket_suffix(b"buildkitd.sock"),
];

/// Where the copy of `sun_path` starts in the per-CPU buffer: 16 zero bytes before it make the
/// 16 bytes before its NUL always readable, and a short path's start reads as a separator.
const SUN_PATH_AT: usize = 16;

/// 1 when the 16 bytes `(lo, hi)` before a socket path's NUL end with a runtime socket file
/// name, else 0. Branch-free.
#[inline(always)]
fn is_runtime_socket(lo: u64, hi: u64) -> u64 {
    let mut hit = 0;
    let mut i = 0;
    while i < RUNTIME_SOCKETS.len() {
        let s = RUNTIME_SOCKETS[i];
        let name = same(lo & s.mask.0, s.value.0) & same(hi & s.mask.1, s.value.1);
        let (sl, sh) = (lo & s.separator.0, hi & s.separator.1);
        let sep = (same(sl, s.slash.0) & same(sh, s.slash.1)) | (same(sl, 0) & same(sh, 0));
        hit |= name & sep;
        i += 1;
    }
    hit
}

/// Copy the `sun_path` at `path_addr` (user memory at the syscall, the kernel's copy in the LSM
/// hook) into `buf` from [`SUN_PATH_AT`], NUL-terminated; 1 when it names a runtime's API
/// socket, else 0, as a value the verifier does not know.
#[inline(always)]
pub(crate) fn runtime_socket_path(buf: &mut [u8; CGROUP_NAME_LEN], path_addr: u64, user: bool) -> u32 {
    // SAFETY: two aligned words of the buffer's 16-byte prefix (a map value is 8-aligned); one
    // store each, not a memset call.
    unsafe {
        let words = buf.as_mut_ptr().cast::<u64>();
        core::ptr::write_volatile(words, 0);
        core::ptr::write_volatile(words.add(1), 0);
    }
    let path = &mut buf[SUN_PATH_AT..SUN_PATH_AT + SUN_PATH_LEN + 1];
    let (dst, src) = (path.as_mut_ptr().cast(), path_addr as *const _);
    // Raw bytes: an abstract socket's name starts with a NUL (userspace renders it '@'). A path
    // shorter than sun_path may end the readable memory: fall back to a string copy. Then the
    // string's length (its NUL included) places the window that ends at the NUL; that copy
    // stops at the NUL, so the raw bytes after it (an abstract name) stay for the record.
    // SAFETY: the helpers write at most SUN_PATH_LEN bytes into `path`.
    let copied = unsafe {
        if user {
            if generated::bpf_probe_read_user(dst, SUN_PATH_LEN as u32, src) != 0 {
                generated::bpf_probe_read_user_str(dst, SUN_PATH_LEN as u32, src);
            }
            generated::bpf_probe_read_user_str(dst, SUN_PATH_LEN as u32, src)
        } else {
            generated::bpf_probe_read_kernel(dst, SUN_PATH_LEN as u32, src);
            generated::bpf_probe_read_kernel_str(dst, SUN_PATH_LEN as u32, src)
        }
    };
    path[SUN_PATH_LEN] = 0;
    // Branch-free min(copied - 1, SUN_PATH_LEN - 1), 0 for an error: a branch here would
    // leave constants that split the rest of the program for the older verifiers.
    let nul = (copied.max(1) as u64 - 1) & 0x7f;
    let over = nul.wrapping_sub(SUN_PATH_LEN as u64 - 1);
    let nul = (SUN_PATH_LEN as u64 - 1).wrapping_add(over & ((over as i64) >> 63) as u64);
    // Not zero-initialised (a memset call): the helper writes all 16 bytes.
    let mut window = core::mem::MaybeUninit::<[u64; 2]>::uninit();
    // SAFETY: 16 bytes from buf[nul .. nul + 16], nul < SUN_PATH_LEN: inside the buffer; the
    // helper writes every byte (zeros on failure).
    let window = unsafe {
        generated::bpf_probe_read_kernel(window.as_mut_ptr().cast(), 16, buf.as_ptr().add(nul as usize).cast());
        window.assume_init()
    };
    // Laundered: the constants the comparisons leave would split the record's emission.
    opaque(is_runtime_socket(window[0], window[1]) as u32) & 1
}

/// Whether a rule wants unix connects to other sockets than a runtime's.
#[inline(always)]
fn every_unix_connect() -> bool {
    crate::DCEA_RUNTIME.get(runtime::EVERY_UNIX_CONNECT_SLOT).is_some_and(|v| *v != 0)
}

/// connect(fd, addr, len) on a unix socket: the runtimes' control sockets live here. The path
/// is copied once into the per-CPU buffer; the guard and the record judge those bytes. Only
/// a runtime socket wakes the agent; other unix connects are sent only when a rule wants
/// them, and then wait for the drain.
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let addr = syscall_arg(&ctx, 1);
    let len = syscall_arg(&ctx, 2);
    let mut family = 0u16;
    // SAFETY: the helper accepts any address and writes 2 bytes (zeros when the read fails).
    unsafe { generated::bpf_probe_read_user((&mut family as *mut u16).cast(), 2, addr as *const _) };
    if family != AF_UNIX {
        return 0;
    }
    let Some(buf) = DCEA_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, used only within this program run.
    let buf = unsafe { &mut *buf };
    let runtime_socket = runtime_socket_path(buf, addr + 2, true);
    // Most unix connects (logging, D-Bus, a database) interest no rule: no record at all.
    if runtime_socket == 0 && !every_unix_connect() {
        return 0;
    }
    let guard = enforce(code(Guard::RuntimeSocket, runtime_socket));
    emit(
        begin(Hook::Connect, task, &snap, 0, [0, len, 0, 0], flags::BEFORE_RESULT | guard, runtime_socket != 0),
        |ev| {
            // SAFETY: SUN_PATH_LEN + 1 bytes of the per-CPU buffer into ev.path (PATH_LEN bytes).
            unsafe {
                generated::bpf_probe_read_kernel(
                    ev.path.as_mut_ptr().cast(),
                    SUN_PATH_LEN as u32 + 1,
                    buf.as_ptr().add(SUN_PATH_AT).cast(),
                )
            };
        },
    );
    0
}

#[tracepoint]
pub fn sys_enter_init_module(ctx: TracePointContext) -> u32 {
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let (len, params) = (syscall_arg(&ctx, 1), syscall_arg(&ctx, 2));
    let guard = enforce_guard(Guard::ModuleLoad);
    emit(begin(Hook::InitModule, task, &snap, 0, [len, 0, 0, 0], flags::BEFORE_RESULT | guard, true), |ev| {
        read_user_str(params, &mut ev.arg);
    });
    0
}

#[tracepoint]
pub fn sys_enter_finit_module(ctx: TracePointContext) -> u32 {
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let (fd, params, module_flags) = (syscall_arg(&ctx, 0), syscall_arg(&ctx, 1), syscall_arg(&ctx, 2));
    let file = task.fd_file(fd as u32);
    let info = FileInfo::read(file);
    let args = [module_flags, info.i_mode as u64, info.s_dev() as u64, info.s_magic];
    let guard = enforce_guard(Guard::ModuleLoad);
    if let Some(mut record) = begin(Hook::FinitModule, task, &snap, 0, args, flags::BEFORE_RESULT | guard, true) {
        let ev = record.ev();
        read_user_str(params, &mut ev.arg);
        ev.flags |= flags::FILE_TRUNCATED * path_components(info.vfsmount, info.dentry, 1, &mut ev.file);
        record.submit();
    }
    0
}

/// ptrace requests that take control of another process or write into it.
#[inline(always)]
fn ptrace_takes_control(request: u64) -> bool {
    const PTRACE_POKETEXT: u64 = 4;
    const PTRACE_POKEDATA: u64 = 5;
    const PTRACE_POKEUSER: u64 = 6;
    const PTRACE_SETREGS: u64 = 13;
    const PTRACE_SETFPREGS: u64 = 15;
    const PTRACE_ATTACH: u64 = 16;
    const PTRACE_SETREGSET: u64 = 0x4205;
    const PTRACE_SEIZE: u64 = 0x4206;
    matches!(
        request,
        PTRACE_POKETEXT
            | PTRACE_POKEDATA
            | PTRACE_POKEUSER
            | PTRACE_SETREGS
            | PTRACE_SETFPREGS
            | PTRACE_ATTACH
            | PTRACE_SETREGSET
            | PTRACE_SEIZE
    )
}

#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let request = syscall_arg(&ctx, 0);
    if !ptrace_takes_control(request) {
        return 0;
    }
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let target = syscall_arg(&ctx, 1);
    let guard = enforce(code(Guard::PtraceOutside, ptrace_target_outside(&snap, target as u32) as u32));
    let agent = crate::agent::target_flag(target as u32);
    emit(
        begin(Hook::Ptrace, task, &snap, 0, [request, target, 0, 0], flags::BEFORE_RESULT | guard | agent, true),
        |_| {},
    );
    0
}

/// Whether a ptrace target pid names a process outside the caller's container. A caller in
/// its own PID namespace can only name processes inside it. A caller in the host's (a
/// `--pid=host` container) names host pids: the target is outside unless the kernel knows it
/// in the caller's mount namespace. A target never seen is a host process that predates the
/// agent.
#[inline(always)]
pub(crate) fn ptrace_target_outside(snap: &TaskSnapshot, target: u32) -> bool {
    if in_container_pid_ns(snap) != 0 {
        return false;
    }
    let mnt = NsKind::Mnt.index();
    match DCEA_TASKS.get_ptr(target) {
        // SAFETY: map value pointer valid for this program run.
        Some(state) => unsafe { (*state).snap.ns[mnt] != snap.ns[mnt] },
        None => true,
    }
}

#[inline(always)]
fn on_mknod(hook: Hook, path: u64, mode: u64, dev: u64) {
    let kind = mode as u32 & S_IFMT;
    if kind != S_IFBLK && kind != S_IFCHR {
        return; // fifos, sockets and regular files are not devices
    }
    let Some((task, snap)) = current_container_task() else {
        return;
    };
    let guard = enforce_guard(Guard::DeviceNode);
    emit(begin(hook, task, &snap, 0, [mode, dev, 0, 0], flags::BEFORE_RESULT | guard, true), |ev| {
        read_user_str(path, &mut ev.path);
    });
}

#[tracepoint]
pub fn sys_enter_mknod(ctx: TracePointContext) -> u32 {
    on_mknod(Hook::Mknod, syscall_arg(&ctx, 0), syscall_arg(&ctx, 1), syscall_arg(&ctx, 2));
    0
}

#[tracepoint]
pub fn sys_enter_mknodat(ctx: TracePointContext) -> u32 {
    on_mknod(Hook::Mknodat, syscall_arg(&ctx, 1), syscall_arg(&ctx, 2), syscall_arg(&ctx, 3));
    0
}

/// bpf() commands that load code into the kernel, create objects, or take hold of existing
/// programs, maps and links (how a container would detach or rewrite a security agent's);
/// lookups and updates through fds a process already has (the bulk of bpf() traffic) stay in
/// the kernel.
#[inline(always)]
fn bpf_cmd_reported(cmd: u64) -> bool {
    const BPF_MAP_CREATE: u64 = 0;
    const BPF_PROG_LOAD: u64 = 5;
    const BPF_OBJ_GET: u64 = 7;
    const BPF_PROG_ATTACH: u64 = 8;
    const BPF_PROG_DETACH: u64 = 9;
    const BPF_PROG_GET_FD_BY_ID: u64 = 13;
    const BPF_MAP_GET_FD_BY_ID: u64 = 14;
    const BPF_RAW_TRACEPOINT_OPEN: u64 = 17;
    const BPF_BTF_LOAD: u64 = 18;
    const BPF_LINK_CREATE: u64 = 28;
    const BPF_LINK_UPDATE: u64 = 29;
    const BPF_LINK_GET_FD_BY_ID: u64 = 30;
    const BPF_LINK_DETACH: u64 = 34;
    matches!(
        cmd,
        BPF_MAP_CREATE
            | BPF_PROG_LOAD
            | BPF_OBJ_GET
            | BPF_PROG_ATTACH
            | BPF_PROG_DETACH
            | BPF_PROG_GET_FD_BY_ID
            | BPF_MAP_GET_FD_BY_ID
            | BPF_RAW_TRACEPOINT_OPEN
            | BPF_BTF_LOAD
            | BPF_LINK_CREATE
            | BPF_LINK_UPDATE
            | BPF_LINK_GET_FD_BY_ID
            | BPF_LINK_DETACH
    )
}

#[tracepoint]
pub fn sys_enter_bpf(ctx: TracePointContext) -> u32 {
    let cmd = syscall_arg(&ctx, 0);
    if !bpf_cmd_reported(cmd) {
        return 0;
    }
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    emit(begin(Hook::Bpf, task, &snap, 0, [cmd, 0, 0, 0], flags::BEFORE_RESULT, true), |_| {});
    0
}

/// chroot/pivot_root return: the task's new root as the kernel set it, its device and path, in
/// the record itself (the chroot'd command may be gone before userspace could look at /proc).
#[inline(always)]
fn on_new_root(hook: Hook, ctx: &TracePointContext) {
    let ret = crate::sys_exit_ret(ctx);
    let Some((task, snap)) = current_container_task() else {
        return;
    };
    let (vfsmount, dentry) = task.fs_root();
    let (s_dev, s_magic) = dentry_sb_dev_magic(dentry);
    // A block-device filesystem (major != 0 in the kernel's major << 20 encoding); container
    // roots are overlay or tmpfs.
    let guard = enforce(code(Guard::HostRoot, nonzero((s_dev >> 20) as u64) as u32));
    if let Some(mut record) = begin(hook, task, &snap, ret, [0, 0, s_dev as u64, s_magic], guard, true) {
        let ev = record.ev();
        ev.flags |= flags::FILE_TRUNCATED * path_components(vfsmount, dentry, 1, &mut ev.file);
        record.submit();
    }
}

#[tracepoint]
pub fn sys_exit_chroot(ctx: TracePointContext) -> u32 {
    on_new_root(Hook::Chroot, &ctx);
    0
}

#[tracepoint]
pub fn sys_exit_pivot_root(ctx: TracePointContext) -> u32 {
    on_new_root(Hook::PivotRoot, &ctx);
    0
}

/// Filesystem types with no device behind them (the rules' `virtual_fs_types`).
const VIRTUAL_FS_TYPES: [(u64, u64); 25] = [
    name_words(b"tmpfs"),
    name_words(b"devtmpfs"),
    name_words(b"devpts"),
    name_words(b"mqueue"),
    name_words(b"proc"),
    name_words(b"sysfs"),
    name_words(b"cgroup"),
    name_words(b"cgroup2"),
    name_words(b"overlay"),
    name_words(b"shm"),
    name_words(b"ramfs"),
    name_words(b"hugetlbfs"),
    name_words(b"nsfs"),
    name_words(b"bpf"),
    name_words(b"tracefs"),
    name_words(b"debugfs"),
    name_words(b"securityfs"),
    name_words(b"configfs"),
    name_words(b"pstore"),
    name_words(b"efivarfs"),
    name_words(b"autofs"),
    name_words(b"binfmt_misc"),
    name_words(b"fusectl"),
    name_words(b"rpc_pipefs"),
    name_words(b"selinuxfs"),
];

/// Kernel pseudo-filesystems whose fresh mount is an escape route (procfs is judged apart).
const PSEUDO_FS_TYPES: [(u64, u64); 10] = [
    name_words(b"sysfs"),
    name_words(b"cgroup"),
    name_words(b"cgroup2"),
    name_words(b"debugfs"),
    name_words(b"tracefs"),
    name_words(b"securityfs"),
    name_words(b"configfs"),
    name_words(b"bpf"),
    name_words(b"efivarfs"),
    name_words(b"binfmt_misc"),
];
const PROC_FS: (u64, u64) = name_words(b"proc");

/// `/dev/` as the low five bytes of a little-endian word.
const DEV_PREFIX: u64 = u64::from_le_bytes([b'/', b'd', b'e', b'v', b'/', 0, 0, 0]);
/// Sources under /dev that are no disk: the scratch filesystems (first eight bytes).
const DEV_SCRATCH_PREFIXES: [u64; 5] = [
    u64::from_le_bytes(*b"/dev/shm"),
    u64::from_le_bytes(*b"/dev/mqu"),
    u64::from_le_bytes(*b"/dev/pts"),
    u64::from_le_bytes(*b"/dev/hug"),
    u64::from_le_bytes(*b"/dev/fd/"),
];

const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;

/// The guard code (see guard.rs) a mount matches: a host disk (a /dev source, a filesystem
/// with a device) or a kernel pseudo-filesystem (procfs only from the host's PID namespace: a
/// container's own procfs shows only its processes). `read` copies a string: from user memory
/// at the syscall, from the kernel's copy in the LSM hook. Branch-free over the tables: a
/// comparison chain the verifier has to follow both ways per entry cost the 6.1 verifier a
/// million instructions in the LSM program.
#[inline(always)]
pub(crate) fn mount_guard(
    snap: &TaskSnapshot,
    source: u64,
    fstype: u64,
    mount_flags: u64,
    read: fn(u64, &mut [u8]),
) -> u32 {
    let Some(buf) = DCEA_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: per-CPU slot, used only within this program run; two 16-byte strings.
    let buf = unsafe { &mut *buf };
    read(fstype, &mut buf[..16]);
    read(source, &mut buf[16..32]);
    let word = |i: usize| {
        u64::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4], buf[i + 5], buf[i + 6], buf[i + 7]])
    };
    let fs = words_up_to_nul(word(0), word(8));
    let src = words_up_to_nul(word(16), word(24));
    let host_pid_ns = 1 - in_container_pid_ns(snap) as u64;
    let proc_fs = same(fs.0, PROC_FS.0) & same(fs.1, PROC_FS.1);
    let pseudo = in_table_bit(fs, &PSEUDO_FS_TYPES) | (proc_fs & host_pid_ns);
    let mut scratch_dev = 0;
    let mut i = 0;
    while i < DEV_SCRATCH_PREFIXES.len() {
        scratch_dev |= same(src.0, DEV_SCRATCH_PREFIXES[i]);
        i += 1;
    }
    let disk = same(src.0 & 0xff_ffff_ffff, DEV_PREFIX)
        & (1 - scratch_dev)
        & (1 - in_table_bit(fs, &VIRTUAL_FS_TYPES))
        & (1 - nonzero(mount_flags & (MS_BIND | MS_MOVE)))
        & (1 - pseudo);
    let not_remount = 1 - nonzero(mount_flags & MS_REMOUNT);
    (not_remount as u32) * (code(Guard::PseudoFsMount, pseudo as u32) | code(Guard::HostDiskMount, disk as u32))
}

/// mount(source, target, fstype, flags, data) by a container task (syscalls:sys_enter_mount,
/// beside the tracked-point program of the same tracepoint).
#[tracepoint]
pub fn mount_behaviour(ctx: TracePointContext) -> u32 {
    on_mount_enter(&ctx);
    0
}

#[inline(always)]
fn on_mount_enter(ctx: &TracePointContext) {
    let Some((task, snap)) = current_container_task() else {
        return;
    };
    let (source, target, fstype, mount_flags) =
        (syscall_arg(ctx, 0), syscall_arg(ctx, 1), syscall_arg(ctx, 2), syscall_arg(ctx, 3));
    let guard = enforce(mount_guard(&snap, source, fstype, mount_flags, read_user_str));
    emit(begin(Hook::Mount, task, &snap, 0, [mount_flags, 0, 0, 0], flags::BEFORE_RESULT | guard, true), |ev| {
        read_user_str(target, &mut ev.path);
        read_user_str(source, &mut ev.arg);
        read_user_str(fstype, &mut ev.fstype);
    });
}

/// sched_process_exec: decide again whether the task is containerised (runtimes move it into
/// the container's cgroup between fork and exec) and report execs in containers.
#[inline(always)]
pub fn on_exec(ctx: &TracePointContext) {
    let Some((pid, _)) = current_ids() else {
        return;
    };
    let Some(state) = DCEA_TASKS.get_ptr_mut(pid) else {
        return;
    };
    let task = Task(unsafe { bpf_get_current_task() });
    // SAFETY: map value pointer valid for this program run.
    let state = unsafe { &mut *state };
    let container = container_flag(task, &state.snap);
    if container == 0 {
        state.flags &= !(TASK_CONTAINER | TASK_CONTAINER_CGROUP);
        return;
    }
    state.flags = (state.flags & !TASK_CONTAINER_CGROUP) | container;
    // A condemned container runs nothing new: the program dies before its first instruction.
    if kill_if_condemned() {
        return;
    }
    // The first exec since the task became containerised is the runtime's (init, docker exec).
    let entry = state.flags & TASK_EXECED == 0;
    // From here on the task runs the container's own programs.
    state.flags |= TASK_CONTAINER | TASK_EXECED;
    let snap = state.snap;
    // `__data_loc char[] filename` at offset 8: low 16 bits offset, high 16 bits length.
    let filename_loc = unsafe { ctx.read_at::<u32>(8) }.unwrap_or(0);
    // An absent field (loc 0) reads as an empty name rather than the record's header. A
    // branch, not a mask: the verifier refuses bitwise operations on the context pointer.
    let filename = if filename_loc == 0 { 0 } else { ctx.as_ptr() as u64 + (filename_loc & 0xffff) as u64 };
    // The program's identity for the integrity checks: a memfd or deleted file is fileless.
    let exe = FileInfo::read(task.exe_file());
    let unlinked = exe.unlinked();
    let (dev, ino) = (exe.s_dev(), exe.ino());
    // Through `opaque`: the 6.1 verifier would otherwise walk the record once per verdict.
    let verdict = crate::guard::opaque(crate::allowlist::check_exec(dev, ino, entry));
    let args = [0, exe.i_mode as u64, dev as u64, exe.s_magic];
    let record_flags = (unlinked * flags::FILE_UNLINKED) | (entry as u32 * flags::ENTRY_EXEC) | verdict;
    emit(begin(Hook::Exec, task, &snap, 0, args, record_flags, (unlinked | verdict) != 0), |ev| {
        read_str(filename, &mut ev.path);
        ev.args[arg::FLAGS] = task.argv(&mut ev.arg);
        ev.ino = ino;
    });
}

const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;

/// mmap(addr, len, prot, flags, fd, off) of a file with `PROT_EXEC` by a container task: how
/// ld.so maps a shared library's code (an `LD_PRELOAD` one too), and how a loader maps code
/// it wrote. Anonymous and non-executable mappings return after two comparisons; userspace
/// classifies the file against the image (integrity).
#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let (prot, map_flags) = (syscall_arg(&ctx, 2), syscall_arg(&ctx, 3));
    if prot & PROT_EXEC == 0 || map_flags & MAP_ANONYMOUS != 0 {
        return 0;
    }
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let file = task.descriptor_file(syscall_arg(&ctx, 4));
    if file == 0 {
        return 0;
    }
    let info = FileInfo::read(file);
    let unlinked = info.unlinked();
    let args = [prot, info.i_mode as u64, info.s_dev() as u64, info.s_magic];
    let record_flags = flags::BEFORE_RESULT | (unlinked * flags::FILE_UNLINKED);
    if let Some(mut record) = begin(Hook::Mmap, task, &snap, 0, args, record_flags, unlinked != 0) {
        let ev = record.ev();
        ev.ino = info.ino();
        ev.flags |= flags::FILE_TRUNCATED * path_components(info.vfsmount, info.dentry, 1, &mut ev.file);
        record.submit();
    }
    0
}

/// mprotect(start, len, prot) adding `PROT_EXEC`, by a container task: a file mapped
/// readable and made executable afterwards is a library loaded past the mmap hook. Naming the
/// range's file needs the task's VMA tree (no `bpf_find_vma` before 5.17), so the record
/// carries the range and user space reads the mapping from the task's maps.
#[tracepoint]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    exec_protection(&ctx)
}

/// pkey_mprotect(start, len, prot, pkey): the same change with a protection key.
#[tracepoint]
pub fn sys_enter_pkey_mprotect(ctx: TracePointContext) -> u32 {
    exec_protection(&ctx)
}

#[inline(always)]
fn exec_protection(ctx: &TracePointContext) -> u32 {
    let prot = syscall_arg(ctx, 2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    // FLAGS, START, LENGTH. Woken at once: the range must still be mapped when user space
    // reads the maps.
    let args = [prot, syscall_arg(ctx, 0), syscall_arg(ctx, 1), 0];
    emit(begin(Hook::Mprotect, task, &snap, 0, args, flags::BEFORE_RESULT, true), |_| {});
    0
}

/// process_vm_writev(pid, local_iov, liovcnt, remote_iov, riovcnt, flags) by a container
/// task: a write into another process's memory without ptrace. Outside the caller's
/// container it is the `ptrace-outside` guard's (the kernel checks the same attach right).
#[tracepoint]
pub fn sys_enter_process_vm_writev(ctx: TracePointContext) -> u32 {
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let target = syscall_arg(&ctx, 0);
    let guard = enforce(code(Guard::PtraceOutside, ptrace_target_outside(&snap, target as u32) as u32));
    let agent = crate::agent::target_flag(target as u32);
    let args = [syscall_arg(&ctx, 4), target, 0, 0];
    emit(begin(Hook::ProcessVmWritev, task, &snap, 0, args, flags::BEFORE_RESULT | guard | agent, true), |_| {});
    0
}
