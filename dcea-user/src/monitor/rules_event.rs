//! Kernel records as the rules engine sees them ([`EventView`]).
//!
//! Fields the kernel sent are read straight from the decoded record. The few that need /proc
//! or the filesystem (ancestors beyond the parent, the command line of a non-exec event,
//! whether the executable was written after the container started, the device of a new
//! root, the ptrace target's container) are computed once, on first use, so a rule that never
//! reaches them costs nothing.

use std::{cell::OnceCell, fs, sync::Arc};

use dcea_common::{Event, Hook, NS_KINDS, NsKind, TaskSnapshot, arg, flags};

use super::behaviour::DecodedBehaviour;
use crate::{
    container::{ContainerRef, host_fs, metadata::ContainerMeta, overlay},
    integrity::{FileIntegrity, FileQuery, Integrity},
    rules::{
        EventView,
        event::{EvtType, Value, n, s},
        fields::{FieldId, FieldRef, FlagKind, path_directory, path_filename},
    },
    sys::c_bytes_to_string,
};

/// The `evt.type` a kernel hook stands for, when rules look at it.
pub fn evt_type_of(hook: Hook) -> Option<EvtType> {
    Some(match hook {
        Hook::Exec => EvtType::Execve,
        Hook::Open => EvtType::Open,
        Hook::Openat => EvtType::Openat,
        Hook::Openat2 => EvtType::Openat2,
        Hook::Connect => EvtType::Connect,
        Hook::InitModule => EvtType::InitModule,
        Hook::FinitModule => EvtType::FinitModule,
        Hook::Ptrace => EvtType::Ptrace,
        Hook::Mknod => EvtType::Mknod,
        Hook::Mknodat => EvtType::Mknodat,
        Hook::Bpf => EvtType::Bpf,
        Hook::Chroot => EvtType::Chroot,
        Hook::PivotRoot => EvtType::PivotRoot,
        Hook::Mount => EvtType::Mount,
        Hook::Unshare => EvtType::Unshare,
        Hook::Clone | Hook::Fork => EvtType::Clone,
        Hook::Clone3 => EvtType::Clone3,
        Hook::Setns => EvtType::Setns,
        Hook::Signal => EvtType::Kill,
        Hook::Mmap => EvtType::Mmap,
        Hook::ProcessVmWritev => EvtType::ProcessVmWritev,
        Hook::Mprotect => EvtType::Mprotect,
        Hook::MoveMount | Hook::Fsmount | Hook::OpenTree | Hook::Exit | Hook::CommitCreds => return None,
    })
}

/// The `CLONE_NEW*` flag of each namespace kind (pid_for_children is made by CLONE_NEWPID).
pub fn clone_flags(changed_mask: u32) -> u64 {
    let flag = |k: NsKind| -> u64 {
        (match k {
            NsKind::Mnt => libc::CLONE_NEWNS,
            NsKind::Pid | NsKind::PidForChildren => libc::CLONE_NEWPID,
            NsKind::Net => libc::CLONE_NEWNET,
            NsKind::Uts => libc::CLONE_NEWUTS,
            NsKind::Ipc => libc::CLONE_NEWIPC,
            NsKind::User => libc::CLONE_NEWUSER,
            NsKind::Cgroup => libc::CLONE_NEWCGROUP,
            NsKind::Time => 0x80, // CLONE_NEWTIME
        }) as u32 as u64
    };
    NsKind::ALL.iter().filter(|k| changed_mask & k.bit() != 0).fold(0, |m, k| m | flag(*k))
}

/// Falco's proc.exe (argv[0]), proc.args and proc.cmdline (the name, then the arguments).
struct Cmdline {
    exe: String,
    args: String,
    cmdline: String,
}

/// What both record kinds provide.
enum Source<'a> {
    Behaviour(&'a DecodedBehaviour),
    Transition { ev: &'a Event, comm: String, parent_comm: String, exe: String, flags: u64 },
}

/// One kernel record plus the context the agent knows about its task.
pub struct KernelEvent<'a> {
    source: Source<'a>,
    evt_type: EvtType,
    epoch_ns: u64,
    host_ns: &'a [u32; NS_KINDS],
    container: Option<&'a ContainerRef>,
    meta: Option<Arc<ContainerMeta>>,
    ancestors: OnceCell<Vec<(i64, String)>>,
    cmdline: OnceCell<Option<Cmdline>>,
    upper_layer: OnceCell<Option<bool>>,
    /// Judges programs and mapped files against the image (none: the field is absent).
    integrity: Option<&'a Integrity>,
    file_integrity: OnceCell<Option<FileIntegrity>>,
    host_path: OnceCell<Option<String>>,
    target_container: OnceCell<String>,
    /// The container init's namespaces, read once from /proc/<init>/ns. The init lives as long
    /// as the container and its pid comes from the runtime's state written before the
    /// container ran anything, so this does not race the task.
    container_ns: OnceCell<Option<[u32; NS_KINDS]>>,
    /// The container's own PID namespace as the pipeline first saw it in a kernel record of
    /// the container: the fallback when the init is already gone.
    learned_pid_ns: Option<u32>,
}

impl<'a> KernelEvent<'a> {
    pub fn behaviour(
        b: &'a DecodedBehaviour,
        epoch_ns: u64,
        host_ns: &'a [u32; NS_KINDS],
        container: Option<&'a ContainerRef>,
        meta: Option<Arc<ContainerMeta>>,
    ) -> Option<KernelEvent<'a>> {
        Some(Self::new(Source::Behaviour(b), evt_type_of(b.hook)?, epoch_ns, host_ns, container, meta))
    }

    /// A namespace transition: `evt.arg.flags` holds the `CLONE_NEW*` flags of the namespaces
    /// that changed.
    pub fn transition(
        ev: &'a Event,
        exe: String,
        epoch_ns: u64,
        host_ns: &'a [u32; NS_KINDS],
        container: Option<&'a ContainerRef>,
        meta: Option<Arc<ContainerMeta>>,
    ) -> Option<KernelEvent<'a>> {
        let evt_type = evt_type_of(Hook::from_u32(ev.hook)?)?;
        let source = Source::Transition {
            ev,
            comm: c_bytes_to_string(&ev.comm),
            parent_comm: c_bytes_to_string(&ev.parent_comm),
            exe,
            flags: clone_flags(dcea_common::changed_mask(&ev.old, &ev.new)),
        };
        Some(Self::new(source, evt_type, epoch_ns, host_ns, container, meta))
    }

    fn new(
        source: Source<'a>,
        evt_type: EvtType,
        epoch_ns: u64,
        host_ns: &'a [u32; NS_KINDS],
        container: Option<&'a ContainerRef>,
        meta: Option<Arc<ContainerMeta>>,
    ) -> KernelEvent<'a> {
        KernelEvent {
            source,
            evt_type,
            epoch_ns,
            host_ns,
            container,
            meta,
            ancestors: OnceCell::new(),
            cmdline: OnceCell::new(),
            upper_layer: OnceCell::new(),
            integrity: None,
            file_integrity: OnceCell::new(),
            host_path: OnceCell::new(),
            target_container: OnceCell::new(),
            container_ns: OnceCell::new(),
            learned_pid_ns: None,
        }
    }

    fn tgid(&self) -> u32 {
        match &self.source {
            Source::Behaviour(b) => b.raw.tgid,
            Source::Transition { ev, .. } => ev.tgid,
        }
    }

    fn ppid(&self) -> u32 {
        match &self.source {
            Source::Behaviour(b) => b.raw.ppid,
            Source::Transition { ev, .. } => ev.ppid,
        }
    }

    fn snap(&self) -> &TaskSnapshot {
        match &self.source {
            Source::Behaviour(b) => &b.raw.snap,
            Source::Transition { ev, .. } => &ev.new,
        }
    }

    fn comm(&self) -> &str {
        match &self.source {
            Source::Behaviour(b) => &b.comm,
            Source::Transition { comm, .. } => comm,
        }
    }

    fn parent_comm(&self) -> &str {
        match &self.source {
            Source::Behaviour(b) => &b.parent_comm,
            Source::Transition { parent_comm, .. } => parent_comm,
        }
    }

    fn exepath(&self) -> &str {
        match &self.source {
            Source::Behaviour(b) => &b.exe,
            Source::Transition { exe, .. } => exe,
        }
    }

    fn behaviour_record(&self) -> Option<&DecodedBehaviour> {
        match &self.source {
            Source::Behaviour(b) => Some(b),
            Source::Transition { .. } => None,
        }
    }

    /// From the exec record, else from /proc.
    fn cmdline(&self) -> Option<&Cmdline> {
        self.cmdline
            .get_or_init(|| {
                let argv: Vec<String> = match self.behaviour_record() {
                    Some(b) if b.hook == Hook::Exec => b.argv.clone(),
                    _ => fs::read(format!("/proc/{}/cmdline", self.tgid()))
                        .ok()?
                        .split(|&c| c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect(),
                };
                let (first, rest) = argv.split_first()?;
                let args = rest.join(" ");
                let cmdline = if args.is_empty() { self.comm().to_string() } else { format!("{} {args}", self.comm()) };
                Some(Cmdline { exe: first.clone(), args, cmdline })
            })
            .as_ref()
    }

    /// Ancestors from the parent up (pid, comm): the kernel's parent name first, then /proc.
    fn ancestors(&self) -> &[(i64, String)] {
        self.ancestors.get_or_init(|| {
            let mut out = vec![(self.ppid() as i64, self.parent_comm().to_string())];
            let mut pid = self.ppid();
            // Bounded: a cycle in odd /proc content cannot loop.
            for _ in 0..16 {
                let Some((_, parent)) = proc_stat(pid) else { break };
                if parent == 0 {
                    break;
                }
                let Some((comm, _)) = proc_stat(parent) else { break };
                out.push((parent as i64, comm));
                pid = parent;
            }
            out
        })
    }

    fn upper_layer(&self) -> Option<bool> {
        *self.upper_layer.get_or_init(|| {
            let exe = self.exepath();
            if exe.is_empty() || self.container.is_none() {
                return None;
            }
            // A short-lived process may be gone: any process of the container sees the same
            // root — its parent (usually still there), else the init the engine knows.
            let ppid = Some(self.ppid()).filter(|p| *p > 1);
            overlay::in_upper_layer(self.tgid(), exe)
                .or_else(|| ppid.and_then(|p| overlay::in_upper_layer(p, exe)))
                .or_else(|| self.meta.as_ref().and_then(|m| m.pid).and_then(|pid| overlay::in_upper_layer(pid, exe)))
        })
    }

    /// Write-mode opens on a disk filesystem: the kernel sent the path within the filesystem;
    /// the host's mount table says where that is on the host (the filesystem path itself when
    /// the host has not mounted it, e.g. a disk only the container mounted).
    fn host_path(&self) -> Option<&str> {
        self.host_path
            .get_or_init(|| {
                let b = self.behaviour_record().filter(|b| b.raw.flags & flags::HOST_FS_PATH != 0)?;
                let fs_path = b.file.as_deref()?;
                if fs_path.starts_with('…') {
                    return Some(fs_path.to_string());
                }
                Some(host_fs::host_path(b.raw.args[arg::DEV], fs_path).unwrap_or_else(|| fs_path.to_string()))
            })
            .as_deref()
    }

    /// A tracer in the host PID namespace names host pids; one in a container's PID namespace
    /// can only reach tasks inside that namespace, i.e. its own container.
    fn target_container(&self) -> &str {
        self.target_container.get_or_init(|| {
            let own = self.container.map(|c| c.id.clone()).unwrap_or_else(|| "host".into());
            let host_pid = self.host_ns[NsKind::Pid.index()];
            let Some(target) = self.target_pid() else { return own };
            if self.snap().ns[NsKind::Pid.index()] != host_pid || target <= 0 {
                return own;
            }
            crate::container::of_pid(target as u32).map(|c| c.id).unwrap_or_else(|| "host".into())
        })
    }

    /// The task's PID namespace (kernel data), for the pipeline to learn the container's own.
    pub fn pid_ns(&self) -> u32 {
        self.snap().ns[NsKind::Pid.index()]
    }

    pub fn with_learned_pid_ns(mut self, ns: Option<u32>) -> Self {
        self.learned_pid_ns = ns;
        self
    }

    pub fn with_integrity(mut self, integrity: Option<&'a Integrity>) -> Self {
        self.integrity = integrity;
        self
    }

    /// The integrity verdict, if a rule asked for it (the pipeline records notable ones).
    pub fn judged_integrity(&self) -> Option<&FileIntegrity> {
        self.file_integrity.get().and_then(Option::as_ref)
    }

    /// exec: the new program; mmap: the mapped file. Any process of the container shows its
    /// root: the task, its parent, the init the engine knows.
    pub fn file_integrity(&self) -> Option<&FileIntegrity> {
        self.file_integrity
            .get_or_init(|| {
                let integrity = self.integrity?;
                integrity.judge(&self.file_query()?)
            })
            .as_ref()
    }

    /// The file an exec or mmap record names, as the integrity module asks for it.
    pub fn file_query(&self) -> Option<FileQuery<'_>> {
        let (container, b) = (self.container?, self.behaviour_record()?);
        let path = match b.hook {
            Hook::Exec => b.exe.as_str(),
            Hook::Mmap | Hook::Mprotect => b.file.as_deref()?,
            _ => return None,
        };
        let meta = self.meta.as_deref();
        let mut pids = vec![self.tgid()];
        pids.extend(Some(self.ppid()).filter(|p| *p > 1));
        pids.extend(meta.and_then(|m| m.pid));
        let mut image_names: Vec<String> = meta.and_then(|m| m.image.clone()).into_iter().collect();
        if let Some(m) = meta
            && m.image_tag.is_none()
            && let Some(repo) = &m.image_repository
        {
            image_names.push(format!("{repo}:latest"));
        }
        Some(FileQuery {
            container_id: &container.id,
            image_id: meta.and_then(|m| m.image_id.as_deref()),
            image_names,
            pids,
            path,
            dev: b.raw.args[arg::DEV],
            magic: b.raw.args[arg::MAGIC],
            unlinked: b.raw.flags & flags::FILE_UNLINKED != 0,
        })
    }

    /// The integrity module this event is judged with, if any.
    pub fn integrity(&self) -> Option<&'a Integrity> {
        self.integrity
    }

    /// ptrace, kill, process_vm_writev: the pid argument; a write-mode open of
    /// `/proc/<pid>/mem` (or of a thread's under `task/`): that pid, `self` being the task.
    pub fn target_pid(&self) -> Option<i64> {
        let b = self.behaviour_record()?;
        match self.evt_type {
            EvtType::Ptrace | EvtType::Kill | EvtType::ProcessVmWritev => Some(b.raw.args[arg::MODE] as i32 as i64),
            t if t.is_open() && b.raw.args[arg::FLAGS] & 3 != 0 => {
                let rest = b.fd_name().strip_prefix("/proc/")?;
                let (pid, tail) = rest.split_once('/')?;
                let is_mem = tail == "mem"
                    || tail.strip_prefix("task/").and_then(|t| t.split_once('/')).is_some_and(|(_, m)| m == "mem");
                if !is_mem {
                    return None;
                }
                match pid {
                    "self" | "thread-self" => Some(self.tgid() as i64),
                    n => n.parse::<i64>().ok().filter(|p| *p > 0),
                }
            }
            _ => None,
        }
    }

    /// The container init's namespaces: read from /proc/<init>/ns while the init runs (its pid
    /// from the engine, else the runtime's state written before the container ran anything);
    /// for the PID kinds, the pipeline's learned value when the init is already gone.
    fn container_ns(&self) -> Option<[u32; NS_KINDS]> {
        *self.container_ns.get_or_init(|| {
            let c = self.container?;
            let mut ns = [0u32; NS_KINDS];
            let init = self.meta.as_ref().and_then(|m| m.pid).or_else(|| crate::container::init_pid::init_pid(&c.id));
            if let Some(init) = init.map(|p| p.to_string()) {
                for k in NsKind::ALL {
                    ns[k.index()] = crate::sys::ns_inode(&init, k.name()).unwrap_or(0);
                }
            }
            for k in [NsKind::Pid, NsKind::PidForChildren] {
                if ns[k.index()] == 0 {
                    ns[k.index()] = self.learned_pid_ns.unwrap_or(0);
                }
            }
            ns.iter().any(|&i| i != 0).then_some(ns)
        })
    }

    fn flags_value(&self) -> Value<'_> {
        let Some(kind) = FlagKind::of_flags(self.evt_type) else { return Value::None };
        match &self.source {
            Source::Behaviour(b) => Value::Flags(b.raw.args[arg::FLAGS], kind),
            Source::Transition { flags, .. } => Value::Flags(*flags, kind),
        }
    }

    /// The record's arguments when they carry a file's superblock (`args[DEV]`, `args[MAGIC]`):
    /// opens, finit_module, chroot/pivot_root, mmap, and an mprotect whose range was a file.
    fn superblock_args(&self) -> Option<&[u64; 4]> {
        let b = self.behaviour_record()?;
        let carries = match self.evt_type {
            t if t.is_open() => true,
            EvtType::FinitModule | EvtType::Chroot | EvtType::PivotRoot | EvtType::Mmap => true,
            EvtType::Mprotect => b.file.is_some(),
            _ => false,
        };
        carries.then_some(&b.raw.args)
    }

    fn fd_name(&self) -> Option<&str> {
        if let Some(host) = self.host_path() {
            return Some(host);
        }
        let b = self.behaviour_record()?;
        let name = b.fd_name();
        (!name.is_empty()).then_some(name)
    }
}

/// (comm, ppid) from /proc/<pid>/stat; the comm may contain spaces and parentheses.
fn proc_stat(pid: u32) -> Option<(String, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let ppid = stat.get(close + 2..)?.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

impl EventView for KernelEvent<'_> {
    fn evt_type(&self) -> EvtType {
        self.evt_type
    }

    fn field(&self, f: FieldRef) -> Value<'_> {
        let b = self.behaviour_record();
        let raw_args = b.map(|b| b.raw.args);
        let is_open = self.evt_type.is_open();
        let meta = self.meta.as_deref();
        match f.id {
            FieldId::EvtType => Value::Str(self.evt_type.name()),
            FieldId::EvtRes => match (&self.source, b) {
                (_, Some(b)) if b.has_result() => Value::Num(b.raw.ret),
                (Source::Transition { ev, .. }, _) => Value::Num(ev.ret),
                _ => Value::None,
            },
            FieldId::EvtRawtime => Value::Num(self.epoch_ns as i64),
            FieldId::EvtTime | FieldId::EvtDir => Value::None,
            FieldId::EvtIsOpenRead => match raw_args {
                Some(a) if is_open => Value::Bool(a[arg::FLAGS] & 3 != 1),
                _ => Value::None,
            },
            FieldId::EvtIsOpenWrite => match raw_args {
                Some(a) if is_open => Value::Bool(a[arg::FLAGS] & 3 != 0),
                _ => Value::None,
            },
            FieldId::ArgFlags => self.flags_value(),
            FieldId::ArgMode => match (self.evt_type, raw_args) {
                (EvtType::Mknod | EvtType::Mknodat, Some(a)) => Value::Flags(a[arg::FLAGS], FlagKind::Mode),
                (_, Some(a)) if is_open => Value::Flags(a[arg::MODE], FlagKind::Mode),
                _ => Value::None,
            },
            FieldId::ArgDev => match (self.evt_type, b) {
                (EvtType::Mount, Some(b)) => Value::Str(&b.arg),
                (EvtType::Mknod | EvtType::Mknodat, Some(b)) => Value::Num(b.raw.args[arg::MODE] as i64),
                _ => Value::None,
            },
            FieldId::MountSource => match (self.evt_type, b) {
                (EvtType::Mount, Some(b)) => Value::Str(&b.arg),
                _ => Value::None,
            },
            FieldId::MountTarget => match (self.evt_type, b) {
                (EvtType::Mount, Some(b)) => Value::Str(&b.path),
                _ => Value::None,
            },
            FieldId::MountFstype => match (self.evt_type, b) {
                (EvtType::Mount, Some(b)) => Value::Str(&b.fstype),
                _ => Value::None,
            },
            FieldId::ArgRequest => match (self.evt_type, raw_args) {
                (EvtType::Ptrace, Some(a)) => Value::Num(a[arg::FLAGS] as i64),
                _ => Value::None,
            },
            FieldId::ArgPid => n(self.target_pid()),
            FieldId::ArgSig => match (self.evt_type, raw_args) {
                (EvtType::Kill, Some(a)) => Value::Num(a[arg::FLAGS] as i64),
                _ => Value::None,
            },
            FieldId::TargetAgent => match (self.evt_type, b) {
                (EvtType::Kill | EvtType::Ptrace, Some(b)) => Value::Bool(b.raw.flags & flags::AGENT_TARGET != 0),
                (t, Some(_)) if t.is_open() => self.host_path().map_or(Value::None, |p| {
                    Value::Bool(crate::sentinel::is_agent_file(p) && !crate::sentinel::is_agent_process(self.tgid()))
                }),
                _ => Value::None,
            },
            FieldId::ArgCmd => match (self.evt_type, raw_args) {
                (EvtType::Bpf, Some(a)) => Value::Num(a[arg::FLAGS] as i64),
                _ => Value::None,
            },
            FieldId::ProcPid => Value::Num(self.tgid() as i64),
            FieldId::ProcTid => Value::Num(match &self.source {
                Source::Behaviour(b) => b.raw.pid,
                Source::Transition { ev, .. } => ev.pid,
            } as i64),
            FieldId::ProcPpid => Value::Num(self.ppid() as i64),
            FieldId::ProcName => Value::Str(self.comm()),
            FieldId::ProcExe => s(self.cmdline().map(|c| c.exe.as_str())),
            FieldId::ProcExepath => s(Some(self.exepath()).filter(|e| !e.is_empty())),
            FieldId::ProcCmdline => Value::Str(self.cmdline().map_or(self.comm(), |c| c.cmdline.as_str())),
            FieldId::ProcArgs => s(self.cmdline().map(|c| c.args.as_str())),
            FieldId::ProcPname => Value::Str(self.parent_comm()),
            FieldId::ProcAname => match f.arg {
                0 => Value::Str(self.comm()),
                g => s(self.ancestors().get(g as usize - 1).map(|(_, c)| c.as_str())),
            },
            FieldId::ProcApid => match f.arg {
                0 => Value::Num(self.tgid() as i64),
                g => n(self.ancestors().get(g as usize - 1).map(|(p, _)| *p)),
            },
            FieldId::ProcIsExeUpperLayer => self.upper_layer().map_or(Value::None, Value::Bool),
            FieldId::Integrity => s(self.file_integrity().map(|i| i.verdict.name())),
            FieldId::IntegritySha256 => s(self.file_integrity().and_then(|i| i.sha256.as_deref())),
            FieldId::IntegrityImageSha256 => s(self.file_integrity().and_then(|i| i.image_sha256.as_deref())),
            FieldId::UserUid => Value::Num(self.snap().uid as i64),
            FieldId::UserEuid => Value::Num(self.snap().euid as i64),
            FieldId::ContainerId => Value::Str(self.container.map_or("host", |c| c.id.as_str())),
            FieldId::ContainerRuntime => s(self.container.map(|c| c.runtime.as_str())),
            FieldId::ContainerName => s(meta.and_then(|m| m.name.as_deref())),
            FieldId::ContainerImage => s(meta.and_then(|m| m.image.as_deref())),
            FieldId::ContainerImageRepository => s(meta.and_then(|m| m.image_repository.as_deref())),
            FieldId::ContainerImageTag => s(meta.and_then(|m| m.image_tag.as_deref())),
            FieldId::ContainerImageDigest => s(meta.and_then(|m| m.image_digest.as_deref())),
            FieldId::ContainerPrivileged => meta.and_then(|m| m.privileged).map_or(Value::None, Value::Bool),
            FieldId::K8sPodName => s(meta.and_then(|m| m.k8s_pod_name.as_deref())),
            FieldId::K8sNsName => s(meta.and_then(|m| m.k8s_ns_name.as_deref())),
            FieldId::FdName => s(self.fd_name()),
            FieldId::FdDirectory => s(self.fd_name().map(path_directory)),
            FieldId::FdFilename => s(self.fd_name().map(path_filename)),
            FieldId::FdTypechar => match self.evt_type {
                EvtType::Connect => Value::Str("u"),
                t if t.is_open() || matches!(t, EvtType::FinitModule | EvtType::Mmap) => Value::Str("f"),
                EvtType::Mprotect if b.is_some_and(|b| b.file.is_some()) => Value::Str("f"),
                _ => Value::None,
            },
            FieldId::FdNum => match b {
                Some(b) if is_open && b.raw.ret >= 0 => Value::Num(b.raw.ret),
                _ => Value::None,
            },
            FieldId::FdDevMajor | FieldId::FdDevMinor => {
                // The kernel's encoding: major << 20 | minor; chroot/pivot_root: the new
                // root's, read at syscall exit.
                let dev = self.superblock_args().map(|a| ((a[arg::DEV] >> 20) as i64, (a[arg::DEV] & 0xf_ffff) as i64));
                n(dev.map(|(major, minor)| if f.id == FieldId::FdDevMajor { major } else { minor }))
            }
            FieldId::FdFstype => s(self.superblock_args().and_then(|a| crate::sys::fs_type_name(a[arg::MAGIC]))),
            FieldId::FdHostPath => s(self.host_path()),
            FieldId::FdHostPathContainerId => s(self
                .host_path()
                .and_then(|p| host_fs::runtime_state_container(p, self.container.map(|c| c.id.as_str())))),
            FieldId::NsInode => match self.snap().ns.get(f.arg as usize) {
                Some(&i) if i != 0 => Value::Num(i as i64),
                _ => Value::None,
            },
            FieldId::NsIsHost => match (self.snap().ns.get(f.arg as usize), self.host_ns.get(f.arg as usize)) {
                (Some(&i), Some(&h)) if i != 0 && h != 0 => Value::Bool(i == h),
                _ => Value::None,
            },
            FieldId::NsIsNested => {
                let i = f.arg as usize;
                match (self.snap().ns.get(i), self.host_ns.get(i), self.container_ns().map(|c| c[i])) {
                    (Some(&t), Some(&h), Some(c)) if t != 0 && h != 0 && c != 0 => Value::Bool(t != h && t != c),
                    _ => Value::None,
                }
            }
            FieldId::TargetContainerId => match self.target_pid() {
                Some(_) if self.evt_type != EvtType::Kill => Value::Str(self.target_container()),
                _ => Value::None,
            },
        }
    }
}
