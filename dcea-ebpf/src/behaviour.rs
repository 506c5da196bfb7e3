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
    programs::TracePointContext,
};
use dcea_common::{
    Behaviour, EventKind, Hook, NsKind, RecordHeader, TASK_CONTAINER, TASK_EXECED, TaskSnapshot, TaskState, arg, flags,
    stats,
};

use crate::{
    DCEA_EVENTS, DCEA_SCRATCH, DCEA_TASKS, count, current_ids,
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

/// `TASK_CONTAINER` when the task runs in a non-host PID namespace or a container's cgroup.
#[inline(always)]
fn container_flag(task: Task, snap: &TaskSnapshot) -> u32 {
    // The leaf name goes to a per-CPU buffer: 128 bytes on the stack of every caller would
    // push the larger programs past the 512-byte BPF stack.
    let Some(leaf) = DCEA_SCRATCH.get_ptr_mut(0) else { return in_container_pid_ns(snap) * TASK_CONTAINER };
    // SAFETY: per-CPU slot, used only within this call on this CPU.
    let by_cgroup = task.cgroup_leaf_has_container_id(unsafe { &mut *leaf }) as u32;
    (in_container_pid_ns(snap) | by_cgroup) * TASK_CONTAINER
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
fn watched(state_flags: u32) -> bool {
    state_flags & (TASK_CONTAINER | TASK_EXECED) == TASK_CONTAINER | TASK_EXECED
}

/// The current task and its snapshot when its behaviour is watched; learns a task seen first
/// here.
#[inline(always)]
fn current_container_task() -> Option<(Task, TaskSnapshot)> {
    let (pid, _) = current_ids()?;
    let task = Task(unsafe { bpf_get_current_task() });
    if let Some(state) = DCEA_TASKS.get_ptr(pid) {
        // SAFETY: map value pointer valid for this program run.
        let state = unsafe { &*state };
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

/// Fill the common part of a behaviour record, let `fill` add the hook's strings, submit.
/// `wake`: the agent is woken at once (everything but execs, which it drains every 20 ms).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit<F: FnOnce(&mut Behaviour)>(
    hook: Hook,
    task: Task,
    snap: &TaskSnapshot,
    ret: i64,
    args: [u64; 4],
    extra_flags: u32,
    wake: bool,
    fill: F,
) {
    let Some(mut entry) = DCEA_EVENTS.reserve::<Behaviour>(0) else {
        count(stats::RINGBUF_FULL);
        return;
    };
    // SAFETY: a reserved record of size_of::<Behaviour>() bytes; every field is written (no
    // memset: the verifier would walk it byte by byte); strings are NUL-terminated.
    unsafe {
        let ev = &mut *entry.as_mut_ptr();
        let header = &mut *(ev as *mut Behaviour).cast::<RecordHeader>();
        let parent = crate::fill_header(header, EventKind::Behaviour, hook, task, ret);
        ev.args = args;
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
        fill(ev);
    }
    entry.submit(crate::wakeup_flags(wake));
    count(stats::EMITTED);
    count(stats::BEHAVIOURS);
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

const DEV: (u64, u64) = name_words(b"dev");
const FS_ROOT: (u64, u64) = name_words(b"/");

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
    if m == DEBUGFS_MAGIC || m == TRACEFS_MAGIC || m == SECURITYFS_MAGIC || m == BPF_FS_MAGIC {
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
    let record_flags = (created as u32 * flags::FILE_CREATED) | (host_fs as u32 * flags::HOST_FS_PATH);
    emit(hook, task, &snap, ret, args, record_flags, true, |ev| {
        ev.flags |= flags::FILE_TRUNCATED * path_components(info.vfsmount, info.dentry, host_fs ^ 1, &mut ev.file);
    });
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

/// connect(fd, addr, len) on a unix socket: the runtimes' control sockets live here.
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
    emit(Hook::Connect, task, &snap, 0, [0, len, 0, 0], flags::BEFORE_RESULT, true, |ev| {
        // Raw bytes: an abstract socket's name starts with a NUL (userspace renders it '@').
        // A path shorter than sun_path may end the readable memory: fall back to a string copy.
        // SAFETY: the helpers write at most SUN_PATH_LEN <= PATH_LEN bytes into ev.path.
        let ret = unsafe {
            generated::bpf_probe_read_user(ev.path.as_mut_ptr().cast(), SUN_PATH_LEN as u32, (addr + 2) as *const _)
        };
        if ret != 0 {
            read_user_str(addr + 2, &mut ev.path[..SUN_PATH_LEN]);
        }
        ev.path[SUN_PATH_LEN] = 0;
    });
    0
}

#[tracepoint]
pub fn sys_enter_init_module(ctx: TracePointContext) -> u32 {
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let (len, params) = (syscall_arg(&ctx, 1), syscall_arg(&ctx, 2));
    emit(Hook::InitModule, task, &snap, 0, [len, 0, 0, 0], flags::BEFORE_RESULT, true, |ev| {
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
    emit(Hook::FinitModule, task, &snap, 0, args, flags::BEFORE_RESULT, true, |ev| {
        read_user_str(params, &mut ev.arg);
        ev.flags |= flags::FILE_TRUNCATED * path_components(info.vfsmount, info.dentry, 1, &mut ev.file);
    });
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
    emit(Hook::Ptrace, task, &snap, 0, [request, target, 0, 0], flags::BEFORE_RESULT, true, |_| {});
    0
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
    emit(hook, task, &snap, 0, [mode, dev, 0, 0], flags::BEFORE_RESULT, true, |ev| {
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

/// bpf() commands that load code into the kernel or create objects; lookups and updates of
/// existing maps (the bulk of bpf() traffic) stay in the kernel.
#[inline(always)]
fn bpf_cmd_loads(cmd: u64) -> bool {
    const BPF_MAP_CREATE: u64 = 0;
    const BPF_PROG_LOAD: u64 = 5;
    const BPF_PROG_ATTACH: u64 = 8;
    const BPF_RAW_TRACEPOINT_OPEN: u64 = 17;
    const BPF_BTF_LOAD: u64 = 18;
    const BPF_LINK_CREATE: u64 = 28;
    matches!(
        cmd,
        BPF_MAP_CREATE | BPF_PROG_LOAD | BPF_PROG_ATTACH | BPF_RAW_TRACEPOINT_OPEN | BPF_BTF_LOAD | BPF_LINK_CREATE
    )
}

#[tracepoint]
pub fn sys_enter_bpf(ctx: TracePointContext) -> u32 {
    let cmd = syscall_arg(&ctx, 0);
    if !bpf_cmd_loads(cmd) {
        return 0;
    }
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    emit(Hook::Bpf, task, &snap, 0, [cmd, 0, 0, 0], flags::BEFORE_RESULT, true, |_| {});
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
    emit(hook, task, &snap, ret, [0, 0, s_dev as u64, s_magic], 0, true, |ev| {
        ev.flags |= flags::FILE_TRUNCATED * path_components(vfsmount, dentry, 1, &mut ev.file);
    });
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

/// mount(source, target, fstype, flags, data) by a container task.
#[inline(always)]
pub fn on_mount_enter(ctx: &TracePointContext) {
    let Some((task, snap)) = current_container_task() else {
        return;
    };
    let (source, target, fstype, mount_flags) =
        (syscall_arg(ctx, 0), syscall_arg(ctx, 1), syscall_arg(ctx, 2), syscall_arg(ctx, 3));
    emit(Hook::Mount, task, &snap, 0, [mount_flags, 0, 0, 0], flags::BEFORE_RESULT, true, |ev| {
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
        state.flags &= !TASK_CONTAINER;
        return;
    }
    // From here on the task runs the container's own programs.
    state.flags |= TASK_CONTAINER | TASK_EXECED;
    let snap = state.snap;
    // `__data_loc char[] filename` at offset 8: low 16 bits offset, high 16 bits length.
    let filename_loc = unsafe { ctx.read_at::<u32>(8) }.unwrap_or(0);
    let filename = ctx.as_ptr() as u64 + (filename_loc & 0xffff) as u64;
    // An absent field (loc 0) reads as an empty name rather than the record's header.
    let filename = filename & nonzero(filename_loc as u64).wrapping_neg();
    emit(Hook::Exec, task, &snap, 0, [0; 4], 0, false, |ev| {
        read_str(filename, &mut ev.path);
        ev.args[arg::FLAGS] = task.argv(&mut ev.arg);
    });
}
