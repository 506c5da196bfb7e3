//! What the engine evaluates: an event type and field values on demand.
//!
//! The kernel side implements [`EventView`] for its records; [`SimpleEvent`] is a plain
//! borrowed implementation for tests, benchmarks and tools. Fields are asked for one at a
//! time, so expensive ones (ancestors, container metadata, is_exe_upper_layer) are computed
//! only when a rule that reaches them asks.

use super::fields::{FieldId, FieldRef, FlagKind, path_directory, path_filename};

/// The events dcea delivers (`evt.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EvtType {
    Execve,
    /// Legacy open(2). `evt.type = open` in a condition matches open, openat and openat2.
    Open,
    Openat,
    Openat2,
    Connect,
    InitModule,
    FinitModule,
    Ptrace,
    Mknod,
    Mknodat,
    Bpf,
    Chroot,
    PivotRoot,
    Mount,
    Unshare,
    Clone,
    Clone3,
    Setns,
    /// A signal from a container to the agent or its sentinel (kill, tkill, tgkill,
    /// pidfd_send_signal, a ptrace attach's SIGSTOP).
    Kill,
    /// An executable file mapping (`mmap` with `PROT_EXEC`): shared libraries, `LD_PRELOAD`.
    Mmap,
    ProcessVmWritev,
    /// A range made executable (`mprotect`/`pkey_mprotect` with `PROT_EXEC`); file fields
    /// when the range is a file mapping.
    Mprotect,
}

impl EvtType {
    pub const ALL: [EvtType; 22] = [
        EvtType::Execve,
        EvtType::Open,
        EvtType::Openat,
        EvtType::Openat2,
        EvtType::Connect,
        EvtType::InitModule,
        EvtType::FinitModule,
        EvtType::Ptrace,
        EvtType::Mknod,
        EvtType::Mknodat,
        EvtType::Bpf,
        EvtType::Chroot,
        EvtType::PivotRoot,
        EvtType::Mount,
        EvtType::Unshare,
        EvtType::Clone,
        EvtType::Clone3,
        EvtType::Setns,
        EvtType::Kill,
        EvtType::Mmap,
        EvtType::ProcessVmWritev,
        EvtType::Mprotect,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub const fn name(self) -> &'static str {
        match self {
            EvtType::Execve => "execve",
            EvtType::Open => "open",
            EvtType::Openat => "openat",
            EvtType::Openat2 => "openat2",
            EvtType::Connect => "connect",
            EvtType::InitModule => "init_module",
            EvtType::FinitModule => "finit_module",
            EvtType::Ptrace => "ptrace",
            EvtType::Mknod => "mknod",
            EvtType::Mknodat => "mknodat",
            EvtType::Bpf => "bpf",
            EvtType::Chroot => "chroot",
            EvtType::PivotRoot => "pivot_root",
            EvtType::Mount => "mount",
            EvtType::Unshare => "unshare",
            EvtType::Clone => "clone",
            EvtType::Clone3 => "clone3",
            EvtType::Setns => "setns",
            EvtType::Kill => "kill",
            EvtType::Mmap => "mmap",
            EvtType::ProcessVmWritev => "process_vm_writev",
            EvtType::Mprotect => "mprotect",
        }
    }

    pub fn from_name(name: &str) -> Option<EvtType> {
        EvtType::ALL.iter().copied().find(|t| t.name() == name)
    }

    pub const fn bit(self) -> u32 {
        1 << self as u8
    }

    pub fn is_open(self) -> bool {
        matches!(self, EvtType::Open | EvtType::Openat | EvtType::Openat2)
    }
}

/// A set of event types (a bitmask), for the per-type rule index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct TypeSet(pub u32);

impl TypeSet {
    pub const EMPTY: TypeSet = TypeSet(0);
    pub const ALL: TypeSet = TypeSet((1 << EvtType::COUNT) - 1);

    /// The types an `evt.type` name stands for in a condition: `open` is the open family
    /// (rules written for Falco say `open` and mean any open); a syscall dcea never delivers
    /// is the empty set.
    pub fn of_name(name: &str) -> TypeSet {
        match name {
            "open" => TypeSet(EvtType::Open.bit() | EvtType::Openat.bit() | EvtType::Openat2.bit()),
            _ => EvtType::from_name(name).map(|t| TypeSet(t.bit())).unwrap_or(TypeSet::EMPTY),
        }
    }
    pub fn contains(self, t: EvtType) -> bool {
        self.0 & t.bit() != 0
    }
    pub fn union(self, o: TypeSet) -> TypeSet {
        TypeSet(self.0 | o.0)
    }
    pub fn intersect(self, o: TypeSet) -> TypeSet {
        TypeSet(self.0 & o.0)
    }
    pub fn complement(self) -> TypeSet {
        TypeSet(!self.0 & TypeSet::ALL.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn is_all(self) -> bool {
        self == TypeSet::ALL
    }
    pub fn iter(self) -> impl Iterator<Item = EvtType> {
        EvtType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

/// A field value. Borrowed from the event: evaluation copies nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// The event has no such field (Falco's `<NA>`): every comparison with it is false.
    None,
    Str(&'a str),
    Num(i64),
    Bool(bool),
    Flags(u64, FlagKind),
}

/// Field access for the rules engine. `field` is called only for fields a rule reaches, in
/// condition order, and must not allocate for the engine's hot path to stay allocation-free
/// (compute lazily into a cache inside the event if needed).
pub trait EventView {
    fn evt_type(&self) -> EvtType;
    fn field(&self, f: FieldRef) -> Value<'_>;
}

/// A plain event whose fields are given up front. Derived fields (fd.directory, fd.filename,
/// evt.is_open_*, fd.num, proc.aname[N], the kind of evt.arg.flags) are computed from the
/// given ones without allocating.
#[derive(Clone, Debug)]
pub struct SimpleEvent<'a> {
    pub evt_type: EvtType,
    pub res: i64,
    pub rawtime: Option<i64>,
    pub pid: Option<i64>,
    pub tid: Option<i64>,
    pub ppid: Option<i64>,
    pub name: Option<&'a str>,
    pub exe: Option<&'a str>,
    pub exepath: Option<&'a str>,
    pub cmdline: Option<&'a str>,
    pub args: Option<&'a str>,
    /// Parent first: `ancestors[0]` is `proc.pname` = `proc.aname[1]`.
    pub ancestors: &'a [&'a str],
    pub ancestor_pids: &'a [i64],
    pub is_exe_upper_layer: Option<bool>,
    /// execve, mmap, mprotect: `dcea.integrity` and the two hashes.
    pub integrity: Option<&'a str>,
    pub integrity_sha256: Option<&'a str>,
    pub integrity_image_sha256: Option<&'a str>,
    pub uid: Option<i64>,
    pub euid: Option<i64>,
    pub container_id: Option<&'a str>,
    pub container_name: Option<&'a str>,
    pub container_image: Option<&'a str>,
    pub container_image_repository: Option<&'a str>,
    pub container_image_tag: Option<&'a str>,
    pub container_image_digest: Option<&'a str>,
    pub container_privileged: Option<bool>,
    pub container_runtime: Option<&'a str>,
    pub k8s_pod_name: Option<&'a str>,
    pub k8s_ns_name: Option<&'a str>,
    pub fd_name: Option<&'a str>,
    pub fd_typechar: Option<&'a str>,
    pub fd_dev_major: Option<i64>,
    pub fd_host_path: Option<&'a str>,
    pub fd_dev_minor: Option<i64>,
    pub fd_fstype: Option<&'a str>,
    /// Raw flags; their kind follows from the event type.
    pub flags: Option<u64>,
    pub mode: Option<u64>,
    /// mknod device number.
    pub dev: Option<i64>,
    pub mount_source: Option<&'a str>,
    pub mount_target: Option<&'a str>,
    pub mount_fstype: Option<&'a str>,
    pub ptrace_request: Option<i64>,
    pub target_pid: Option<i64>,
    pub target_container_id: Option<&'a str>,
    /// kill: the signal number.
    pub sig: Option<i64>,
    /// The target (signal, ptrace, written file) is the dcea agent.
    pub target_agent: Option<bool>,
    pub bpf_cmd: Option<i64>,
    /// Indexed by `dcea_common::NsKind`.
    pub ns: [Option<u64>; dcea_common::NS_KINDS],
    pub ns_is_host: [Option<bool>; dcea_common::NS_KINDS],
    pub ns_is_nested: [Option<bool>; dcea_common::NS_KINDS],
}

impl<'a> SimpleEvent<'a> {
    /// An event of `evt_type` with evt.res 0 and every other field absent.
    pub fn new(evt_type: EvtType) -> SimpleEvent<'a> {
        SimpleEvent {
            evt_type,
            res: 0,
            rawtime: None,
            pid: None,
            tid: None,
            ppid: None,
            name: None,
            exe: None,
            exepath: None,
            cmdline: None,
            args: None,
            ancestors: &[],
            ancestor_pids: &[],
            is_exe_upper_layer: None,
            integrity: None,
            integrity_sha256: None,
            integrity_image_sha256: None,
            uid: None,
            euid: None,
            container_id: None,
            container_name: None,
            container_image: None,
            container_image_repository: None,
            container_image_tag: None,
            container_image_digest: None,
            container_privileged: None,
            container_runtime: None,
            k8s_pod_name: None,
            k8s_ns_name: None,
            fd_name: None,
            fd_typechar: None,
            fd_dev_major: None,
            fd_host_path: None,
            fd_dev_minor: None,
            fd_fstype: None,
            flags: None,
            mode: None,
            dev: None,
            mount_source: None,
            mount_target: None,
            mount_fstype: None,
            ptrace_request: None,
            target_pid: None,
            target_container_id: None,
            sig: None,
            target_agent: None,
            bpf_cmd: None,
            ns: [None; dcea_common::NS_KINDS],
            ns_is_host: [None; dcea_common::NS_KINDS],
            ns_is_nested: [None; dcea_common::NS_KINDS],
        }
    }
}

pub(crate) fn s(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::None, Value::Str)
}
pub(crate) fn n(v: Option<i64>) -> Value<'static> {
    v.map_or(Value::None, Value::Num)
}
fn b(v: Option<bool>) -> Value<'static> {
    v.map_or(Value::None, Value::Bool)
}

impl EventView for SimpleEvent<'_> {
    fn evt_type(&self) -> EvtType {
        self.evt_type
    }

    fn field(&self, f: FieldRef) -> Value<'_> {
        let open_flags = if self.evt_type.is_open() { self.flags } else { None };
        match f.id {
            FieldId::EvtType => Value::Str(self.evt_type.name()),
            FieldId::EvtRes => Value::Num(self.res),
            FieldId::EvtRawtime => n(self.rawtime),
            FieldId::EvtTime | FieldId::EvtDir => Value::None,
            FieldId::EvtIsOpenRead => b(open_flags.map(|fl| fl & 3 != 1)),
            FieldId::EvtIsOpenWrite => b(open_flags.map(|fl| fl & 3 != 0)),
            FieldId::ArgFlags => match (self.flags, FlagKind::of_flags(self.evt_type)) {
                (Some(bits), Some(kind)) => Value::Flags(bits, kind),
                _ => Value::None,
            },
            FieldId::ArgMode => self.mode.map_or(Value::None, |m| Value::Flags(m, FlagKind::Mode)),
            FieldId::ArgDev => match self.evt_type {
                EvtType::Mount => s(self.mount_source),
                _ => n(self.dev),
            },
            FieldId::MountSource => s(self.mount_source),
            FieldId::MountTarget => s(self.mount_target),
            FieldId::MountFstype => s(self.mount_fstype),
            FieldId::ArgRequest => n(self.ptrace_request),
            FieldId::ArgPid => n(self.target_pid),
            FieldId::ArgCmd => n(self.bpf_cmd),
            FieldId::ProcPid => n(self.pid),
            FieldId::ProcTid => n(self.tid),
            FieldId::ProcPpid => n(self.ppid),
            FieldId::ProcName => s(self.name),
            FieldId::ProcExe => s(self.exe),
            FieldId::ProcExepath => s(self.exepath),
            FieldId::ProcCmdline => s(self.cmdline),
            FieldId::ProcArgs => s(self.args),
            FieldId::ProcPname => s(self.ancestors.first().copied()),
            FieldId::ProcAname => match f.arg {
                0 => s(self.name),
                g => s(self.ancestors.get(g as usize - 1).copied()),
            },
            FieldId::ProcApid => match f.arg {
                0 => n(self.pid),
                g => n(self.ancestor_pids.get(g as usize - 1).copied()),
            },
            FieldId::ProcIsExeUpperLayer => b(self.is_exe_upper_layer),
            FieldId::Integrity => s(self.integrity),
            FieldId::IntegritySha256 => s(self.integrity_sha256),
            FieldId::IntegrityImageSha256 => s(self.integrity_image_sha256),
            FieldId::UserUid => n(self.uid),
            FieldId::UserEuid => n(self.euid),
            FieldId::ContainerId => s(self.container_id),
            FieldId::ContainerName => s(self.container_name),
            FieldId::ContainerImage => s(self.container_image),
            FieldId::ContainerImageRepository => s(self.container_image_repository),
            FieldId::ContainerImageTag => s(self.container_image_tag),
            FieldId::ContainerImageDigest => s(self.container_image_digest),
            FieldId::ContainerPrivileged => b(self.container_privileged),
            FieldId::ContainerRuntime => s(self.container_runtime),
            FieldId::K8sPodName => s(self.k8s_pod_name),
            FieldId::K8sNsName => s(self.k8s_ns_name),
            FieldId::FdName => s(self.fd_name),
            FieldId::FdDirectory => s(self.fd_name.map(path_directory)),
            FieldId::FdFilename => s(self.fd_name.map(path_filename)),
            FieldId::FdTypechar => s(self.fd_typechar),
            FieldId::FdNum => match self.evt_type.is_open() {
                true if self.res >= 0 => Value::Num(self.res),
                _ => Value::None,
            },
            FieldId::FdDevMajor => n(self.fd_dev_major),
            FieldId::FdDevMinor => n(self.fd_dev_minor),
            FieldId::FdFstype => s(self.fd_fstype),
            FieldId::FdHostPath => s(self.fd_host_path),
            FieldId::FdHostPathContainerId => s(self
                .fd_host_path
                .and_then(|p| crate::container::host_fs::runtime_state_container(p, self.container_id))),
            FieldId::NsInode => {
                self.ns.get(f.arg as usize).copied().flatten().map_or(Value::None, |i| Value::Num(i as i64))
            }
            FieldId::NsIsHost => b(self.ns_is_host.get(f.arg as usize).copied().flatten()),
            FieldId::NsIsNested => b(self.ns_is_nested.get(f.arg as usize).copied().flatten()),
            FieldId::TargetContainerId => s(self.target_container_id),
            FieldId::ArgSig => n(self.sig),
            FieldId::TargetAgent => b(self.target_agent),
        }
    }
}
