//! The fields a condition or an output can name, their types, and the symbolic constants of
//! flag and enum fields (`O_WRONLY`, `MS_BIND`, `CLONE_NEWUSER`, `S_IFBLK`, `PTRACE_ATTACH`,
//! `BPF_PROG_LOAD`). Names follow Falco where Falco has the field; dcea's own are `dcea.*`.

use std::fmt::Write as _;

use dcea_common::NsKind;

use super::event::EvtType;

/// Every field the engine knows. Conditions compile field names to these, so the hot path
/// never compares names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldId {
    EvtType,
    EvtRes,
    EvtRawtime,
    /// Output only: `evt.rawtime` as RFC 3339.
    EvtTime,
    /// Always `<` (dcea delivers syscall exits only); folded at compile time.
    EvtDir,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    /// Bitmask whose kind depends on the event: O_* (open), MS_* (mount), CLONE_* (clone,
    /// unshare, setns).
    ArgFlags,
    /// Mode with S_IF* type bits (mknod) or permission bits (open with O_CREAT).
    ArgMode,
    /// mount: the source (string); mknod: the device number.
    ArgDev,
    MountSource,
    MountTarget,
    MountFstype,
    /// ptrace request number.
    ArgRequest,
    /// ptrace target pid.
    ArgPid,
    /// bpf command number.
    ArgCmd,
    ProcPid,
    ProcTid,
    ProcPpid,
    ProcName,
    ProcExe,
    ProcExepath,
    ProcCmdline,
    ProcArgs,
    ProcPname,
    /// `arg` = generation: 0 the process itself, 1 its parent, 2 the grandparent…
    ProcAname,
    ProcApid,
    ProcIsExeUpperLayer,
    /// execve, mmap, mprotect: the program's or mapped file's integrity against the image.
    Integrity,
    IntegritySha256,
    IntegrityImageSha256,
    UserUid,
    UserEuid,
    ContainerId,
    ContainerName,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerImageDigest,
    ContainerPrivileged,
    ContainerRuntime,
    K8sPodName,
    K8sNsName,
    FdName,
    FdDirectory,
    FdFilename,
    FdTypechar,
    FdNum,
    FdDevMajor,
    FdDevMinor,
    /// The filesystem type of the opened file (kernel filesystems by name).
    FdFstype,
    /// Write-mode opens on disk filesystems: where the file lives on the host.
    FdHostPath,
    /// The container whose runtime state directory holds `fd.host_path`.
    FdHostPathContainerId,
    /// `arg` = `NsKind` index: the namespace inode of that kind.
    NsInode,
    /// `arg` = `NsKind` index: whether the task is in the host's namespace of that kind.
    NsIsHost,
    /// The task's namespace of a kind is neither the host's nor the container init's: one
    /// the container created for itself (nested runtimes, sandboxes, `unshare -p`).
    NsIsNested,
    /// ptrace: the target's container id, or `host`.
    TargetContainerId,
    /// kill: the signal number.
    ArgSig,
    /// The target of a signal or ptrace, or the file written, is the dcea agent's.
    TargetAgent,
}

/// A field as the engine asks the event for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub id: FieldId,
    /// Ancestor generation for `proc.aname[N]`/`proc.apid[N]`, `NsKind` index for namespace
    /// fields, 0 otherwise.
    pub arg: u16,
}

impl FieldRef {
    pub const fn new(id: FieldId) -> FieldRef {
        FieldRef { id, arg: 0 }
    }
}

/// What values a field has, which decides the operators it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Str,
    Num,
    Bool,
    /// A bitmask; which constants apply is decided by the constant names (O_*, MS_*, CLONE_*).
    Flags,
    /// A file mode: S_IF* type (compared as a type, not as bits) plus permission bits.
    Mode,
    /// A number with symbolic names.
    Enum(&'static [(&'static str, i64)]),
    /// A string for some events and a number for others (`evt.arg.dev`).
    StrOrNum,
    EvtType,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Str => "string",
            FieldType::Num => "number",
            FieldType::Bool => "bool",
            FieldType::Flags => "flags",
            FieldType::Mode => "mode",
            FieldType::Enum(_) => "enum",
            FieldType::StrOrNum => "string or number",
            FieldType::EvtType => "event type",
        }
    }
}

/// How a field takes an argument in brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    None,
    /// `proc.aname[N]`; without `[N]` a comparison is true when any ancestor matches.
    Generation,
}

pub struct FieldInfo {
    pub name: &'static str,
    pub id: FieldId,
    pub ty: FieldType,
    pub arg: ArgKind,
    pub desc: &'static str,
}

const fn f(name: &'static str, id: FieldId, ty: FieldType, desc: &'static str) -> FieldInfo {
    FieldInfo { name, id, ty, arg: ArgKind::None, desc }
}

/// The field table (namespace fields `dcea.ns.<kind>[.is_host|.is_nested]` are matched by
/// pattern).
pub const FIELDS: &[FieldInfo] = &[
    f("evt.type", FieldId::EvtType, FieldType::EvtType, "event (syscall) name: execve, openat, mount, …"),
    f("evt.res", FieldId::EvtRes, FieldType::Num, "return value: 0 or a result on success, -errno on failure"),
    f("evt.rawtime", FieldId::EvtRawtime, FieldType::Num, "event time, ns since the epoch"),
    f("evt.time", FieldId::EvtTime, FieldType::Str, "event time, RFC 3339 (outputs only)"),
    f("evt.dir", FieldId::EvtDir, FieldType::Str, "always `<`: dcea delivers syscall exits"),
    f("evt.is_open_read", FieldId::EvtIsOpenRead, FieldType::Bool, "open for reading (O_RDONLY or O_RDWR)"),
    f("evt.is_open_write", FieldId::EvtIsOpenWrite, FieldType::Bool, "open for writing (O_WRONLY or O_RDWR)"),
    f(
        "evt.arg.flags",
        FieldId::ArgFlags,
        FieldType::Flags,
        "O_* (open), MS_* (mount), CLONE_* (clone, unshare, setns)",
    ),
    f("evt.arg.mode", FieldId::ArgMode, FieldType::Mode, "mknod: S_IF* type and permissions; open: permissions"),
    f(
        "evt.arg.dev",
        FieldId::ArgDev,
        FieldType::StrOrNum,
        "mount: the source (Falco's name); mknod: the device number",
    ),
    f("evt.arg.source", FieldId::MountSource, FieldType::Str, "mount: the source (device, path or fs name)"),
    f("evt.arg.target", FieldId::MountTarget, FieldType::Str, "mount: the mount point"),
    f("evt.arg.dir", FieldId::MountTarget, FieldType::Str, "mount: the mount point (Falco's name)"),
    f("evt.arg.fstype", FieldId::MountFstype, FieldType::Str, "mount: the filesystem type"),
    f("evt.arg.type", FieldId::MountFstype, FieldType::Str, "mount: the filesystem type (Falco's name)"),
    f("evt.arg.request", FieldId::ArgRequest, FieldType::Enum(PTRACE_REQUESTS), "ptrace: the request (PTRACE_*)"),
    f(
        "evt.arg.pid",
        FieldId::ArgPid,
        FieldType::Num,
        "ptrace, kill, process_vm_writev: the target pid; write-mode opens of /proc/<pid>/mem: that pid",
    ),
    f("evt.arg.sig", FieldId::ArgSig, FieldType::Enum(SIGNALS), "kill: the signal (SIG*)"),
    f("evt.arg.cmd", FieldId::ArgCmd, FieldType::Enum(BPF_COMMANDS), "bpf: the command (BPF_*)"),
    f("proc.pid", FieldId::ProcPid, FieldType::Num, "process id (thread group id)"),
    f("proc.tid", FieldId::ProcTid, FieldType::Num, "thread id"),
    f("proc.ppid", FieldId::ProcPpid, FieldType::Num, "parent process id"),
    f("proc.name", FieldId::ProcName, FieldType::Str, "process name (comm, at most 15 bytes)"),
    f("proc.exe", FieldId::ProcExe, FieldType::Str, "first command-line argument (argv[0])"),
    f("proc.exepath", FieldId::ProcExepath, FieldType::Str, "full path of the executable"),
    f("proc.cmdline", FieldId::ProcCmdline, FieldType::Str, "name and arguments, space-separated"),
    f("proc.args", FieldId::ProcArgs, FieldType::Str, "arguments, space-separated"),
    f("proc.pname", FieldId::ProcPname, FieldType::Str, "parent process name"),
    FieldInfo {
        name: "proc.aname",
        id: FieldId::ProcAname,
        ty: FieldType::Str,
        arg: ArgKind::Generation,
        desc: "ancestor name: [0] the process, [1] parent, [2] grandparent…; without [N]: any ancestor",
    },
    FieldInfo {
        name: "proc.apid",
        id: FieldId::ProcApid,
        ty: FieldType::Num,
        arg: ArgKind::Generation,
        desc: "ancestor pid, indexed like proc.aname",
    },
    f(
        "proc.is_exe_upper_layer",
        FieldId::ProcIsExeUpperLayer,
        FieldType::Bool,
        "the executable lives in the container's writable layer (written after start)",
    ),
    f(
        "dcea.integrity",
        FieldId::Integrity,
        FieldType::Str,
        "execve, mmap, mprotect: the program or mapped file against the container's image: image, modified, not-in-image, fileless",
    ),
    f(
        "dcea.integrity.sha256",
        FieldId::IntegritySha256,
        FieldType::Str,
        "execve, mmap, mprotect: SHA-256 of the file as the container has it (when it was hashed)",
    ),
    f(
        "dcea.integrity.image_sha256",
        FieldId::IntegrityImageSha256,
        FieldType::Str,
        "execve, mmap, mprotect: SHA-256 of the image's file at the same path (modified files)",
    ),
    f("user.uid", FieldId::UserUid, FieldType::Num, "real user id"),
    f("user.euid", FieldId::UserEuid, FieldType::Num, "effective user id"),
    f("container.id", FieldId::ContainerId, FieldType::Str, "container id, `host` for host processes"),
    f("container.name", FieldId::ContainerName, FieldType::Str, "container name"),
    f("container.image", FieldId::ContainerImage, FieldType::Str, "image reference"),
    f("container.image.repository", FieldId::ContainerImageRepository, FieldType::Str, "image repository"),
    f("container.image.tag", FieldId::ContainerImageTag, FieldType::Str, "image tag"),
    f("container.image.digest", FieldId::ContainerImageDigest, FieldType::Str, "image digest"),
    f("container.privileged", FieldId::ContainerPrivileged, FieldType::Bool, "container runs privileged"),
    f("container.runtime", FieldId::ContainerRuntime, FieldType::Str, "docker, containerd, cri-o, podman"),
    f("k8s.pod.name", FieldId::K8sPodName, FieldType::Str, "Kubernetes pod name"),
    f("k8s.ns.name", FieldId::K8sNsName, FieldType::Str, "Kubernetes namespace"),
    f("fd.name", FieldId::FdName, FieldType::Str, "path of the file or unix socket, or the new root"),
    f("fd.directory", FieldId::FdDirectory, FieldType::Str, "directory part of fd.name"),
    f("fd.filename", FieldId::FdFilename, FieldType::Str, "last component of fd.name"),
    f("fd.typechar", FieldId::FdTypechar, FieldType::Str, "f (file), u (unix socket)"),
    f("fd.num", FieldId::FdNum, FieldType::Num, "file descriptor an open returned"),
    f("fd.dev.major", FieldId::FdDevMajor, FieldType::Num, "major of the filesystem's device (0: virtual fs)"),
    f(
        "fd.fstype",
        FieldId::FdFstype,
        FieldType::Str,
        "open, finit_module, chroot: filesystem type of the file (proc, sysfs, cgroup, binfmt_misc, ext4, …)",
    ),
    f("fd.dev.minor", FieldId::FdDevMinor, FieldType::Num, "minor of the filesystem's device"),
    f(
        "fd.host_path",
        FieldId::FdHostPath,
        FieldType::Str,
        "write-mode opens on a disk filesystem (ext4, xfs, btrfs): where the file lives on the host, whatever mount led to it",
    ),
    f(
        "fd.host_path.container_id",
        FieldId::FdHostPathContainerId,
        FieldType::Str,
        "the container whose runtime state directory holds fd.host_path (its hosts, hostname, resolv.conf)",
    ),
    f(
        "dcea.target.container.id",
        FieldId::TargetContainerId,
        FieldType::Str,
        "ptrace, process_vm_writev, write-mode opens of /proc/<pid>/mem: the target's container id, or `host`",
    ),
    f(
        "dcea.target.agent",
        FieldId::TargetAgent,
        FieldType::Bool,
        "kill, ptrace: the target is the dcea agent or its sentinel; write-mode opens: the file is the agent's binary, or lies under its state or rules directories",
    ),
];

/// Why a field name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldError {
    Unknown(String),
    ArgNotTaken(&'static str),
    BadArg(&'static str, String),
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldError::Unknown(name) => {
                write!(f, "unknown field `{name}`")?;
                if let Some(s) = suggest(name) {
                    write!(f, " (did you mean `{s}`?)")?;
                }
                write!(f, "; `dcea rules fields` lists the fields dcea provides")
            }
            FieldError::ArgNotTaken(name) => write!(f, "field `{name}` takes no [argument]"),
            FieldError::BadArg(name, arg) => {
                write!(f, "field `{name}[{arg}]`: the argument must be a number from 0 to {MAX_GENERATION}")
            }
        }
    }
}

/// Deepest ancestor `proc.aname[N]` can name; without [N] this many generations are tried.
pub const MAX_GENERATION: u16 = 32;

/// A field resolved from a name, plus whether it had an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub field: FieldRef,
    pub ty: FieldType,
    /// `proc.aname` without `[N]`: a comparison holds when any ancestor matches.
    pub any_generation: bool,
}

/// Resolve `name` (and the text inside `[...]`, if any).
pub fn resolve(name: &str, arg: Option<&str>) -> Result<Resolved, FieldError> {
    if let Some(rest) = name.strip_prefix("dcea.ns.") {
        let (kind, suffix) = match (rest.strip_suffix(".is_host"), rest.strip_suffix(".is_nested")) {
            (Some(kind), _) => (kind, Some(FieldId::NsIsHost)),
            (_, Some(kind)) => (kind, Some(FieldId::NsIsNested)),
            _ => (rest, None),
        };
        if let Some(k) = NsKind::ALL.iter().find(|k| k.name() == kind) {
            if arg.is_some() {
                return Err(FieldError::ArgNotTaken(match suffix {
                    Some(FieldId::NsIsHost) => "dcea.ns.<kind>.is_host",
                    Some(_) => "dcea.ns.<kind>.is_nested",
                    None => "dcea.ns.<kind>",
                }));
            }
            let (id, ty) = match suffix {
                Some(id) => (id, FieldType::Bool),
                None => (FieldId::NsInode, FieldType::Num),
            };
            return Ok(Resolved { field: FieldRef { id, arg: k.index() as u16 }, ty, any_generation: false });
        }
        return Err(FieldError::Unknown(name.to_string()));
    }
    let info = FIELDS.iter().find(|i| i.name == name).ok_or_else(|| FieldError::Unknown(name.to_string()))?;
    match (info.arg, arg) {
        (ArgKind::None, None) => Ok(Resolved { field: FieldRef::new(info.id), ty: info.ty, any_generation: false }),
        (ArgKind::None, Some(_)) => Err(FieldError::ArgNotTaken(info.name)),
        (ArgKind::Generation, None) => {
            Ok(Resolved { field: FieldRef::new(info.id), ty: info.ty, any_generation: true })
        }
        (ArgKind::Generation, Some(a)) => match a.trim().parse::<u16>() {
            Ok(n) if n <= MAX_GENERATION => {
                Ok(Resolved { field: FieldRef { id: info.id, arg: n }, ty: info.ty, any_generation: false })
            }
            _ => Err(FieldError::BadArg(info.name, a.to_string())),
        },
    }
}

/// The canonical name of a field reference, as outputs and `output_fields` show it.
pub fn display_name(field: FieldRef, any_generation: bool) -> String {
    match field.id {
        FieldId::NsInode => format!("dcea.ns.{}", ns_kind_name(field.arg)),
        FieldId::NsIsHost => format!("dcea.ns.{}.is_host", ns_kind_name(field.arg)),
        FieldId::NsIsNested => format!("dcea.ns.{}.is_nested", ns_kind_name(field.arg)),
        FieldId::ProcAname | FieldId::ProcApid if !any_generation => {
            let base = if field.id == FieldId::ProcAname { "proc.aname" } else { "proc.apid" };
            format!("{base}[{}]", field.arg)
        }
        id => FIELDS.iter().find(|i| i.id == id).map(|i| i.name).unwrap_or("?").to_string(),
    }
}

fn ns_kind_name(index: u16) -> &'static str {
    NsKind::ALL.get(index as usize).map(|k| k.name()).unwrap_or("?")
}

/// Closest known field name by edit distance, for "did you mean".
fn suggest(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|i| (edit_distance(name, i.name), i.name))
        .filter(|(d, n)| *d <= 2.max(n.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Flags

/// Which constants a bitmask value is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlagKind {
    /// open/openat/openat2 flags (O_*).
    Open,
    /// mount flags (MS_*).
    Mount,
    /// clone/clone3/unshare/setns flags (CLONE_*).
    Clone,
    /// File mode: S_IF* type plus permission bits (mknod, open with O_CREAT).
    Mode,
}

impl FlagKind {
    /// The kind of `evt.arg.flags` for an event type, if that event has flags.
    pub fn of_flags(evt: EvtType) -> Option<FlagKind> {
        match evt {
            EvtType::Open | EvtType::Openat | EvtType::Openat2 => Some(FlagKind::Open),
            EvtType::Mount => Some(FlagKind::Mount),
            EvtType::Clone | EvtType::Clone3 | EvtType::Unshare | EvtType::Setns => Some(FlagKind::Clone),
            _ => None,
        }
    }
}

/// The access mode bits of open flags (O_RDONLY is 0, so it cannot be a bit test).
pub const O_ACCMODE: u64 = 3;
pub const S_IFMT: u64 = 0o170000;

fn o(v: libc::c_int) -> u64 {
    v as u32 as u64
}

/// Open flags other than the access mode. Multi-bit flags first, so rendering names
/// O_SYNC rather than O_DSYNC plus a stray bit.
pub fn open_flags() -> [(&'static str, u64); 17] {
    [
        ("O_TMPFILE", o(libc::O_TMPFILE)),
        ("O_SYNC", o(libc::O_SYNC)),
        ("O_CREAT", o(libc::O_CREAT)),
        ("O_EXCL", o(libc::O_EXCL)),
        ("O_NOCTTY", o(libc::O_NOCTTY)),
        ("O_TRUNC", o(libc::O_TRUNC)),
        ("O_APPEND", o(libc::O_APPEND)),
        ("O_NONBLOCK", o(libc::O_NONBLOCK)),
        ("O_DSYNC", o(libc::O_DSYNC)),
        ("O_ASYNC", o(libc::O_ASYNC)),
        ("O_DIRECT", o(libc::O_DIRECT)),
        ("O_LARGEFILE", o(libc::O_LARGEFILE)),
        ("O_DIRECTORY", o(libc::O_DIRECTORY)),
        ("O_NOFOLLOW", o(libc::O_NOFOLLOW)),
        ("O_NOATIME", o(libc::O_NOATIME)),
        ("O_CLOEXEC", o(libc::O_CLOEXEC)),
        ("O_PATH", o(libc::O_PATH)),
    ]
}

/// Aliases accepted in conditions, never rendered.
fn open_alias(name: &str) -> Option<u64> {
    match name {
        "O_NDELAY" => Some(o(libc::O_NONBLOCK)),
        "O_RSYNC" => Some(o(libc::O_SYNC)),
        "O_FSYNC" => Some(o(libc::O_SYNC)),
        "FASYNC" => Some(o(libc::O_ASYNC)),
        _ => None,
    }
}

pub const MOUNT_FLAGS: &[(&str, u64)] = &[
    ("MS_RDONLY", 1),
    ("MS_NOSUID", 2),
    ("MS_NODEV", 4),
    ("MS_NOEXEC", 8),
    ("MS_SYNCHRONOUS", 16),
    ("MS_REMOUNT", 32),
    ("MS_MANDLOCK", 64),
    ("MS_DIRSYNC", 128),
    ("MS_NOSYMFOLLOW", 256),
    ("MS_NOATIME", 1024),
    ("MS_NODIRATIME", 2048),
    ("MS_BIND", 4096),
    ("MS_MOVE", 8192),
    ("MS_REC", 16384),
    ("MS_SILENT", 32768),
    ("MS_POSIXACL", 1 << 16),
    ("MS_UNBINDABLE", 1 << 17),
    ("MS_PRIVATE", 1 << 18),
    ("MS_SLAVE", 1 << 19),
    ("MS_SHARED", 1 << 20),
    ("MS_RELATIME", 1 << 21),
    ("MS_KERNMOUNT", 1 << 22),
    ("MS_I_VERSION", 1 << 23),
    ("MS_STRICTATIME", 1 << 24),
    ("MS_LAZYTIME", 1 << 25),
];

pub const CLONE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWTIME", 0x80),
    ("CLONE_VM", 0x100),
    ("CLONE_FS", 0x200),
    ("CLONE_FILES", 0x400),
    ("CLONE_SIGHAND", 0x800),
    ("CLONE_PIDFD", 0x1000),
    ("CLONE_PTRACE", 0x2000),
    ("CLONE_VFORK", 0x4000),
    ("CLONE_PARENT", 0x8000),
    ("CLONE_THREAD", 0x10000),
    ("CLONE_NEWNS", 0x20000),
    ("CLONE_SYSVSEM", 0x40000),
    ("CLONE_SETTLS", 0x80000),
    ("CLONE_PARENT_SETTID", 0x100000),
    ("CLONE_CHILD_CLEARTID", 0x200000),
    ("CLONE_DETACHED", 0x400000),
    ("CLONE_UNTRACED", 0x800000),
    ("CLONE_CHILD_SETTID", 0x1000000),
    ("CLONE_NEWCGROUP", 0x2000000),
    ("CLONE_NEWUTS", 0x4000000),
    ("CLONE_NEWIPC", 0x8000000),
    ("CLONE_NEWUSER", 0x10000000),
    ("CLONE_NEWPID", 0x20000000),
    ("CLONE_NEWNET", 0x40000000),
    ("CLONE_IO", 0x80000000),
    ("CLONE_CLEAR_SIGHAND", 0x100000000),
    ("CLONE_INTO_CGROUP", 0x200000000),
];

/// clone(2)'s low byte is the exit signal, not a flag.
const CLONE_CSIGNAL: u64 = 0xff;

pub const MODE_TYPES: &[(&str, u64)] = &[
    ("S_IFSOCK", 0o140000),
    ("S_IFLNK", 0o120000),
    ("S_IFREG", 0o100000),
    ("S_IFBLK", 0o060000),
    ("S_IFDIR", 0o040000),
    ("S_IFCHR", 0o020000),
    ("S_IFIFO", 0o010000),
];

pub const MODE_BITS: &[(&str, u64)] = &[
    ("S_ISUID", 0o4000),
    ("S_ISGID", 0o2000),
    ("S_ISVTX", 0o1000),
    ("S_IRWXU", 0o700),
    ("S_IRUSR", 0o400),
    ("S_IWUSR", 0o200),
    ("S_IXUSR", 0o100),
    ("S_IRWXG", 0o070),
    ("S_IRGRP", 0o040),
    ("S_IWGRP", 0o020),
    ("S_IXGRP", 0o010),
    ("S_IRWXO", 0o007),
    ("S_IROTH", 0o004),
    ("S_IWOTH", 0o002),
    ("S_IXOTH", 0o001),
];

/// Access-mode requirement of open flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// A flags expression (`O_WRONLY|O_CREAT`, `MS_BIND`, `S_IFBLK`, `0x10`) compiled to a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagSpec {
    /// None when the expression is a bare number (matches any kind).
    pub kind: Option<FlagKind>,
    /// Open flags only: the access mode named (O_RDONLY/O_WRONLY/O_RDWR).
    pub access: Option<Access>,
    /// Bits that must be set (and, for modes, the S_IFMT type value).
    pub bits: u64,
    /// Mode only: the S_IF* type named.
    pub file_type: Option<u64>,
}

/// Parse `A|B|C` for a flags or mode field. `mode` selects S_* names.
pub fn parse_flags(text: &str, mode: bool) -> Result<FlagSpec, String> {
    let mut spec = FlagSpec { kind: None, access: None, bits: 0, file_type: None };
    if text.trim().is_empty() {
        return Err("empty flags value".into());
    }
    for part in text.split('|').map(str::trim) {
        if let Some(n) = parse_number(part) {
            spec.bits |= n as u64;
            continue;
        }
        let (kind, bits, access, ftype) = if mode {
            if let Some((_, v)) = MODE_TYPES.iter().find(|(n, _)| *n == part) {
                (FlagKind::Mode, 0, None, Some(*v))
            } else if let Some((_, v)) = MODE_BITS.iter().find(|(n, _)| *n == part) {
                (FlagKind::Mode, *v, None, None)
            } else {
                return Err(format!(
                    "unknown mode constant `{part}` (S_IFBLK, S_IFCHR, S_IFREG, S_IRUSR, … or a number)"
                ));
            }
        } else {
            match part {
                "O_RDONLY" => (FlagKind::Open, 0, Some(Access::Read), None),
                "O_WRONLY" => (FlagKind::Open, 0, Some(Access::Write), None),
                "O_RDWR" => (FlagKind::Open, 0, Some(Access::ReadWrite), None),
                _ => {
                    if let Some((_, v)) = open_flags().iter().find(|(n, _)| *n == part) {
                        (FlagKind::Open, *v, None, None)
                    } else if let Some(v) = open_alias(part) {
                        (FlagKind::Open, v, None, None)
                    } else if let Some((_, v)) = MOUNT_FLAGS.iter().find(|(n, _)| *n == part) {
                        (FlagKind::Mount, *v, None, None)
                    } else if let Some((_, v)) = CLONE_FLAGS.iter().find(|(n, _)| *n == part) {
                        (FlagKind::Clone, *v, None, None)
                    } else {
                        return Err(format!(
                            "unknown flag `{part}` (O_* open flags, MS_* mount flags, CLONE_* namespace flags, or a number)"
                        ));
                    }
                }
            }
        };
        match spec.kind {
            Some(k) if k != kind => {
                return Err(format!("`{text}` mixes flags of different syscalls ({k:?} and {kind:?})"));
            }
            _ => spec.kind = Some(kind),
        }
        spec.bits |= bits;
        if let Some(a) = access {
            spec.access = Some(match (spec.access, a) {
                (None, a) => a,
                (Some(x), y) if x == y => x,
                _ => Access::ReadWrite,
            });
        }
        if let Some(t) = ftype {
            if spec.file_type.is_some_and(|x| x != t) {
                return Err(format!("`{text}` names two file types"));
            }
            spec.file_type = Some(t);
        }
    }
    Ok(spec)
}

/// Decimal, 0x hex or 0o/leading-0 octal, optionally negative.
pub fn parse_number(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Render a bitmask with its constant names, like Falco: `O_WRONLY|O_CREAT|O_TRUNC`.
pub fn render_flags(bits: u64, kind: FlagKind) -> String {
    let mut out = String::new();
    let mut rest = bits;
    let push = |out: &mut String, s: &str| {
        if !out.is_empty() {
            out.push('|');
        }
        out.push_str(s);
    };
    match kind {
        FlagKind::Open => {
            push(
                &mut out,
                match bits & O_ACCMODE {
                    0 => "O_RDONLY",
                    1 => "O_WRONLY",
                    2 => "O_RDWR",
                    _ => "O_ACCMODE",
                },
            );
            rest &= !O_ACCMODE;
            for (name, v) in open_flags() {
                if rest & v == v && v != 0 {
                    push(&mut out, name);
                    rest &= !v;
                }
            }
        }
        FlagKind::Mount | FlagKind::Clone => {
            let table = if kind == FlagKind::Mount { MOUNT_FLAGS } else { CLONE_FLAGS };
            if kind == FlagKind::Clone {
                rest &= !CLONE_CSIGNAL;
            }
            for (name, v) in table {
                if rest & v == *v {
                    push(&mut out, name);
                    rest &= !v;
                }
            }
        }
        FlagKind::Mode => {
            if let Some((name, _)) = MODE_TYPES.iter().find(|(_, v)| bits & S_IFMT == *v) {
                push(&mut out, name);
            }
            let perms = bits & !S_IFMT;
            let mut s = String::new();
            let _ = write!(s, "{perms:04o}");
            push(&mut out, &s);
            return out;
        }
    }
    if rest != 0 {
        let s = format!("{rest:#x}");
        push(&mut out, &s);
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Enums

pub const PTRACE_REQUESTS: &[(&str, i64)] = &[
    ("PTRACE_TRACEME", 0),
    ("PTRACE_PEEKTEXT", 1),
    ("PTRACE_PEEKDATA", 2),
    ("PTRACE_PEEKUSR", 3),
    ("PTRACE_POKETEXT", 4),
    ("PTRACE_POKEDATA", 5),
    ("PTRACE_POKEUSR", 6),
    ("PTRACE_CONT", 7),
    ("PTRACE_KILL", 8),
    ("PTRACE_SINGLESTEP", 9),
    ("PTRACE_GETREGS", 12),
    ("PTRACE_SETREGS", 13),
    ("PTRACE_GETFPREGS", 14),
    ("PTRACE_SETFPREGS", 15),
    ("PTRACE_ATTACH", 16),
    ("PTRACE_DETACH", 17),
    ("PTRACE_GETFPXREGS", 18),
    ("PTRACE_SETFPXREGS", 19),
    ("PTRACE_SYSCALL", 24),
    ("PTRACE_ARCH_PRCTL", 30),
    ("PTRACE_SYSEMU", 31),
    ("PTRACE_SYSEMU_SINGLESTEP", 32),
    ("PTRACE_SINGLEBLOCK", 33),
    ("PTRACE_SETOPTIONS", 0x4200),
    ("PTRACE_GETEVENTMSG", 0x4201),
    ("PTRACE_GETSIGINFO", 0x4202),
    ("PTRACE_SETSIGINFO", 0x4203),
    ("PTRACE_GETREGSET", 0x4204),
    ("PTRACE_SETREGSET", 0x4205),
    ("PTRACE_SEIZE", 0x4206),
    ("PTRACE_INTERRUPT", 0x4207),
    ("PTRACE_LISTEN", 0x4208),
    ("PTRACE_PEEKSIGINFO", 0x4209),
    ("PTRACE_GETSIGMASK", 0x420a),
    ("PTRACE_SETSIGMASK", 0x420b),
    ("PTRACE_SECCOMP_GET_FILTER", 0x420c),
    ("PTRACE_SECCOMP_GET_METADATA", 0x420d),
    ("PTRACE_GET_SYSCALL_INFO", 0x420e),
    ("PTRACE_GET_RSEQ_CONFIGURATION", 0x420f),
    ("PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG", 0x4210),
    ("PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG", 0x4211),
];

pub const BPF_COMMANDS: &[(&str, i64)] = &[
    ("BPF_MAP_CREATE", 0),
    ("BPF_MAP_LOOKUP_ELEM", 1),
    ("BPF_MAP_UPDATE_ELEM", 2),
    ("BPF_MAP_DELETE_ELEM", 3),
    ("BPF_MAP_GET_NEXT_KEY", 4),
    ("BPF_PROG_LOAD", 5),
    ("BPF_OBJ_PIN", 6),
    ("BPF_OBJ_GET", 7),
    ("BPF_PROG_ATTACH", 8),
    ("BPF_PROG_DETACH", 9),
    ("BPF_PROG_TEST_RUN", 10),
    ("BPF_PROG_GET_NEXT_ID", 11),
    ("BPF_MAP_GET_NEXT_ID", 12),
    ("BPF_PROG_GET_FD_BY_ID", 13),
    ("BPF_MAP_GET_FD_BY_ID", 14),
    ("BPF_OBJ_GET_INFO_BY_FD", 15),
    ("BPF_PROG_QUERY", 16),
    ("BPF_RAW_TRACEPOINT_OPEN", 17),
    ("BPF_BTF_LOAD", 18),
    ("BPF_BTF_GET_FD_BY_ID", 19),
    ("BPF_TASK_FD_QUERY", 20),
    ("BPF_MAP_LOOKUP_AND_DELETE_ELEM", 21),
    ("BPF_MAP_FREEZE", 22),
    ("BPF_BTF_GET_NEXT_ID", 23),
    ("BPF_MAP_LOOKUP_BATCH", 24),
    ("BPF_MAP_LOOKUP_AND_DELETE_BATCH", 25),
    ("BPF_MAP_UPDATE_BATCH", 26),
    ("BPF_MAP_DELETE_BATCH", 27),
    ("BPF_LINK_CREATE", 28),
    ("BPF_LINK_UPDATE", 29),
    ("BPF_LINK_GET_FD_BY_ID", 30),
    ("BPF_LINK_GET_NEXT_ID", 31),
    ("BPF_ENABLE_STATS", 32),
    ("BPF_ITER_CREATE", 33),
    ("BPF_LINK_DETACH", 34),
    ("BPF_PROG_BIND_MAP", 35),
    ("BPF_TOKEN_CREATE", 36),
];

pub const SIGNALS: &[(&str, i64)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// The symbolic name of an enum value, or the number.
pub fn render_enum(table: &[(&str, i64)], v: i64) -> String {
    table.iter().find(|(_, n)| *n == v).map(|(name, _)| name.to_string()).unwrap_or_else(|| v.to_string())
}

/// Directory part of a path, like Falco's fd.directory (`/etc/shadow` → `/etc`, `/x` → `/`).
pub fn path_directory(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

/// Last component of a path, like Falco's fd.filename.
pub fn path_filename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_fields_args_and_namespaces() {
        let r = resolve("proc.aname", Some("2")).unwrap();
        assert_eq!(r.field, FieldRef { id: FieldId::ProcAname, arg: 2 });
        assert!(!r.any_generation);
        assert!(resolve("proc.aname", None).unwrap().any_generation);
        assert_eq!(resolve("proc.name", Some("1")), Err(FieldError::ArgNotTaken("proc.name")));
        assert!(matches!(resolve("proc.aname", Some("x")), Err(FieldError::BadArg(..))));
        let ns = resolve("dcea.ns.net.is_host", None).unwrap();
        assert_eq!(
            (ns.field.id, ns.field.arg, ns.ty),
            (FieldId::NsIsHost, NsKind::Net.index() as u16, FieldType::Bool)
        );
        assert_eq!(display_name(ns.field, false), "dcea.ns.net.is_host");
        let nested = resolve("dcea.ns.pid.is_nested", None).unwrap();
        assert_eq!((nested.field.id, nested.ty), (FieldId::NsIsNested, FieldType::Bool));
        assert_eq!(display_name(nested.field, false), "dcea.ns.pid.is_nested");
        assert!(resolve("dcea.ns.pid.is_nested", Some("1")).is_err());
        assert_eq!(resolve("evt.arg.dir", None).unwrap().field.id, FieldId::MountTarget);
        let err = resolve("proc.nmae", None).unwrap_err().to_string();
        assert!(err.contains("did you mean `proc.name`"), "{err}");
        assert!(resolve("dcea.ns.bogus", None).is_err());
    }

    #[test]
    fn flags_parse_and_render() {
        let s = parse_flags("O_WRONLY|O_CREAT", false).unwrap();
        assert_eq!((s.kind, s.access, s.bits), (Some(FlagKind::Open), Some(Access::Write), o(libc::O_CREAT)));
        assert!(parse_flags("O_WRONLY|MS_BIND", false).unwrap_err().contains("mixes"));
        assert!(parse_flags("O_BOGUS", false).is_err());
        let m = parse_flags("S_IFBLK", true).unwrap();
        assert_eq!(m.file_type, Some(0o060000));
        assert_eq!(render_flags(1 | o(libc::O_CREAT) | o(libc::O_TRUNC), FlagKind::Open), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(render_flags(0, FlagKind::Open), "O_RDONLY");
        assert_eq!(render_flags(o(libc::O_SYNC), FlagKind::Open), "O_RDONLY|O_SYNC");
        assert_eq!(render_flags(4096 | 16384, FlagKind::Mount), "MS_BIND|MS_REC");
        assert_eq!(render_flags(0, FlagKind::Mount), "0");
        assert_eq!(render_flags(0x10000000 | 0x20000 | 17, FlagKind::Clone), "CLONE_NEWNS|CLONE_NEWUSER");
        assert_eq!(render_flags(0o060660, FlagKind::Mode), "S_IFBLK|0660");
        assert_eq!(render_flags(1 << 40, FlagKind::Mount), "0x10000000000");
    }

    #[test]
    fn numbers_and_paths() {
        assert_eq!(parse_number("42"), Some(42));
        assert_eq!(parse_number("-13"), Some(-13));
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("0660"), Some(0o660));
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("1e3"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(path_directory("/etc/shadow"), "/etc");
        assert_eq!(path_directory("/shadow"), "/");
        assert_eq!(path_filename("/etc/shadow"), "shadow");
        assert_eq!(render_enum(PTRACE_REQUESTS, 16), "PTRACE_ATTACH");
        assert_eq!(render_enum(BPF_COMMANDS, 999), "999");
    }
}
