//! Load the kernel programs with this kernel's offsets and attach them from the shared table.

use std::{fs, path::Path, time::Instant};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{BtfTracePoint, FEntry, KProbe, Lsm, TracePoint},
};
use dcea_common::{
    ABSENT, CGROUP_DFL, KernelConfig, NsKind, Offsets, names,
    programs::{self, Attach, ProgramSpec},
};
use serde::Serialize;

use super::btf::{KernelBtf, resolve_offsets};
use crate::{Error, sys, trust::HostNamespaces};

/// The kernel object built by build.rs (empty when the build skipped it).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dcea-ebpf"));

pub fn ebpf_object_embedded() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// The embedded kernel object (empty when the build skipped it): the network quarantine loads
/// its own instance of its programs from it.
pub(crate) fn ebpf_object() -> &'static [u8] {
    EBPF_OBJECT
}

#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    pub name: &'static str,
    pub attach: String,
    pub capability: &'static str,
    /// "attached", "failed" (detail: why) or "skipped" (detail: a preferred alternative is
    /// attached, or --commit-creds excluded it).
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Instructions the verifier processed (kernels 5.16+): how close the program is to the
    /// verifier's limit (1M) on this kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_insns: Option<u32>,
    /// Wall time of load (verification) and attach.
    pub load_ms: u64,
}

impl ProgramStatus {
    fn new(spec: &ProgramSpec, status: &'static str) -> ProgramStatus {
        ProgramStatus {
            name: spec.name,
            attach: describe(&spec.attach),
            capability: spec.capability,
            status,
            detail: String::new(),
            verified_insns: None,
            load_ms: 0,
        }
    }
}

/// One capability of the agent on this kernel, as derived from what loaded and what the
/// kernel's BTF has.
#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// "on", "partial" or "off".
    pub status: &'static str,
    pub detail: String,
}

/// What the agent could do on this kernel; printed at start (`dcea probe` prints it alone).
#[derive(Debug, Clone, Serialize)]
pub struct StartupReport {
    pub kernel: String,
    pub btf: String,
    pub tracefs: String,
    pub bpffs: String,
    pub host_namespaces: HostNamespaces,
    pub cgroup_hierarchy: String,
    pub enforce: bool,
    /// Per guard: its action and how the kernel takes it.
    pub guards: Vec<GuardStatus>,
    pub programs: Vec<ProgramStatus>,
    /// Which commit_creds hook runs: "fentry", "kprobe" or "unavailable".
    pub commit_creds: &'static str,
    pub features: Vec<Feature>,
}

impl StartupReport {
    pub fn attached(&self) -> usize {
        self.programs.iter().filter(|p| p.status == "attached").count()
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("dcea: kernel {} (BTF {})\n", self.kernel, self.btf));
        s.push_str(&format!("dcea: tracefs {}, bpffs {}\n", self.tracefs, self.bpffs));
        s.push_str(&format!(
            "dcea: host namespaces {:?} (mnt/net from {}), cgroup attribution via {}\n",
            self.host_namespaces.ns, self.host_namespaces.mnt_net_source, self.cgroup_hierarchy
        ));
        for p in &self.programs {
            s.push_str(&format!("dcea: program {:<22} {:<40} {}", p.name, p.attach, p.status));
            let mut notes = Vec::new();
            if !p.detail.is_empty() {
                notes.push(p.detail.clone());
            }
            if let Some(n) = p.verified_insns {
                notes.push(format!("{n} insns verified"));
            }
            if p.status != "skipped" {
                notes.push(format!("{} ms", p.load_ms));
            }
            if !notes.is_empty() {
                s.push_str(&format!(" ({})", notes.join(", ")));
            }
            s.push('\n');
        }
        s.push_str(&format!("dcea: commit_creds hook: {}\n", self.commit_creds));
        for f in &self.features {
            s.push_str(&format!("dcea: feature {:<34} {:<8} {}\n", f.name, f.status, f.detail));
        }
        s.push_str(&format!(
            "dcea: enforce: {}\n",
            if self.enforce { "on (each rule's action runs)" } else { "off (alert only)" }
        ));
        if self.enforce {
            for g in &self.guards {
                s.push_str(&format!("dcea: guard {:<16} {:<15} {}\n", g.guard, g.action, g.mechanism));
            }
        }
        s
    }
}

/// One guard as `dcea probe` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuardStatus {
    pub guard: &'static str,
    pub action: &'static str,
    /// `kill at hook (bpf_send_signal) in <program>`, with the BPF LSM deny where it attached,
    /// or why nothing acts.
    pub mechanism: String,
    /// A BPF LSM program refuses the operation inside its syscall.
    pub denied_in_kernel: bool,
}

/// How each guard is enforced on this kernel: refused by a BPF LSM program where one attached,
/// and SIGKILL from the hook that recognises it.
fn guard_statuses(actions: &crate::enforce::guards::GuardActions, programs: &[ProgramStatus]) -> Vec<GuardStatus> {
    let attached = |names: &[&'static str]| -> Vec<&'static str> {
        names.iter().copied().filter(|h| programs.iter().any(|p| p.name == *h && p.status == "attached")).collect()
    };
    dcea_common::Guard::ALL
        .iter()
        .map(|&g| {
            let (hooks, lsm) = (attached(g.hooks()), attached(g.lsm_programs()));
            let action = actions[g as usize];
            let mechanism = if action == crate::enforce::Action::Alert {
                "alert only".to_string()
            } else if hooks.is_empty() {
                format!("no hook on this kernel ({}): nothing to act on", g.hooks().join(", "))
            } else if lsm.is_empty() {
                format!("kill at hook (bpf_send_signal) in {}", hooks.join(", "))
            } else {
                format!("deny (BPF LSM, -EPERM) in {}, and kill at hook in {}", lsm.join(", "), hooks.join(", "))
            };
            GuardStatus { guard: g.name(), action: action.name(), mechanism, denied_in_kernel: !lsm.is_empty() }
        })
        .collect()
}

/// Which commit_creds hook the agent may use (`--commit-creds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CommitCredsHook {
    /// fentry, else kprobe.
    Auto,
    /// fentry only.
    Fentry,
    /// kprobe only (e.g. to exercise the fallback, or where fentry misbehaves).
    Kprobe,
    /// Neither: no credential-escalation reports, partial credential integrity.
    Off,
}

impl CommitCredsHook {
    fn allows(self, attach: &Attach) -> bool {
        match self {
            CommitCredsHook::Auto => true,
            CommitCredsHook::Fentry => matches!(attach, Attach::FEntry { .. }),
            CommitCredsHook::Kprobe => matches!(attach, Attach::KProbe { .. }),
            CommitCredsHook::Off => false,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CommitCredsHook::Auto => "auto",
            CommitCredsHook::Fentry => "fentry",
            CommitCredsHook::Kprobe => "kprobe",
            CommitCredsHook::Off => "off",
        }
    }
}

pub struct LoadOptions<'a> {
    pub btf_path: &'a Path,
    pub host: HostNamespaces,
    pub enforce: bool,
    pub guards: crate::enforce::guards::GuardActions,
    /// [`crate::rules::RuleSet::needs_every_unix_connect`].
    pub every_unix_connect: bool,
    pub max_tasks: u32,
    pub commit_creds: CommitCredsHook,
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub report: StartupReport,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Pick the cgroup hierarchy whose names identify containers: the v2 tree on unified hosts,
/// else a v1 controller every runtime populates.
fn cgroup_hierarchy(btf: &KernelBtf) -> (u32, String) {
    if sys::fs_magic(Path::new("/sys/fs/cgroup")) == Some(CGROUP2_SUPER_MAGIC) {
        return (CGROUP_DFL, "cgroup v2".into());
    }
    let mounted = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for controller in ["pids", "memory", "cpu", "devices", "freezer", "blkio"] {
        let listed =
            mounted.lines().any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == controller)));
        if listed && let Some(id) = btf.enum_value("cgroup_subsys_id", &format!("{controller}_cgrp_id")) {
            return (id, format!("cgroup v1 {controller} controller"));
        }
    }
    (CGROUP_DFL, "cgroup v2 (no v1 controller found)".into())
}

fn describe(attach: &Attach) -> String {
    match attach {
        Attach::TracePoint { category, name } => format!("tracepoint {category}:{name}"),
        Attach::BtfTracePoint { event } => format!("tp_btf {event}"),
        Attach::FEntry { function } => format!("fentry {function}"),
        Attach::KProbe { function } => format!("kprobe {function}"),
        Attach::Lsm { hook } => format!("lsm {hook}"),
    }
}

/// Load and attach one program; Err(stage, reason) on failure (a program that loaded but
/// could not attach is unloaded again). Ok: the instructions the verifier processed (kernels
/// 5.16+), a measure of how close the program is to the verifier's limit on this kernel.
fn attach_one(ebpf: &mut Ebpf, spec: &ProgramSpec, btf: &Btf) -> Result<Option<u32>, (&'static str, String)> {
    let prog = ebpf.program_mut(spec.name).ok_or(("find", "not in the eBPF object".to_string()))?;
    let e = |stage: &'static str| move |err: aya::programs::ProgramError| (stage, err.to_string());
    let verified = |info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>| {
        info.ok().and_then(|i| i.verified_instruction_count())
    };
    Ok(match spec.attach {
        Attach::TracePoint { category, name } => {
            let p: &mut TracePoint = prog.try_into().map_err(e("load"))?;
            p.load().map_err(e("load"))?;
            if let Err(err) = p.attach(category, name) {
                let _ = p.unload();
                return Err(e("attach")(err));
            }
            verified(p.info())
        }
        Attach::BtfTracePoint { event } => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(e("load"))?;
            p.load(event, btf).map_err(e("load"))?;
            if let Err(err) = p.attach() {
                let _ = p.unload();
                return Err(e("attach")(err));
            }
            verified(p.info())
        }
        Attach::FEntry { function } => {
            let p: &mut FEntry = prog.try_into().map_err(e("load"))?;
            p.load(function, btf).map_err(e("load"))?;
            if let Err(err) = p.attach() {
                let _ = p.unload();
                return Err(e("attach")(err));
            }
            verified(p.info())
        }
        Attach::KProbe { function } => {
            let p: &mut KProbe = prog.try_into().map_err(e("load"))?;
            p.load().map_err(e("load"))?;
            if let Err(err) = p.attach(function, 0) {
                let _ = p.unload();
                return Err(e("attach")(err));
            }
            verified(p.info())
        }
        Attach::Lsm { hook } => {
            let p: &mut Lsm = prog.try_into().map_err(e("load"))?;
            p.load(hook, btf).map_err(e("load"))?;
            if let Err(err) = p.attach() {
                let _ = p.unload();
                return Err(e("attach")(err));
            }
            verified(p.info())
        }
    })
}

/// [`attach_one`] for a program the agent can run without: the outcome goes into `status`
/// (attached with its instruction count, or failed with the reason); true when attached.
fn attach_optional(
    ebpf: &mut Ebpf,
    spec: &ProgramSpec,
    btf: &Btf,
    status: &mut ProgramStatus,
    started: Instant,
) -> bool {
    let attached = match attach_one(ebpf, spec, btf) {
        Ok(verified_insns) => {
            status.status = "attached";
            status.verified_insns = verified_insns;
            true
        }
        Err((stage, reason)) => {
            status.status = "failed";
            status.detail = explain(spec, stage, &reason);
            false
        }
    };
    status.load_ms = started.elapsed().as_millis() as u64;
    attached
}

pub fn load(opts: LoadOptions<'_>) -> Result<Loaded, Error> {
    if !sys::is_root() {
        return Err(Error::NotRoot);
    }
    if !ebpf_object_embedded() {
        return Err(Error::NoEbpfObject);
    }
    let mounts = sys::ensure_kernel_filesystems()?;
    sys::raise_memlock();
    let kernel_btf = KernelBtf::from_file(opts.btf_path)?;
    let offsets = resolve_offsets(&kernel_btf)?;
    let (cgroup_subsys, cgroup_desc) = cgroup_hierarchy(&kernel_btf);
    let btf = Btf::parse_file(opts.btf_path, aya::Endianness::default()).map_err(|e| Error::Btf(e.to_string()))?;

    let config = KernelConfig {
        offsets,
        host_ns: opts.host.ns,
        agent_tgid: std::process::id(),
        enforce: u32::from(opts.enforce),
        cgroup_subsys,
    };
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global(names::CONFIG_GLOBAL, &config, true)
        .map_max_entries(names::TASKS_MAP, opts.max_tasks)
        .load(EBPF_OBJECT)
        .map_err(|e| Error::Load(e.to_string()))?;
    // Before anything attaches: no event may meet an unconfigured guard.
    crate::enforce::guards::write(&mut ebpf, &opts.guards).map_err(Error::Load)?;
    set_every_unix_connect(&mut ebpf, opts.every_unix_connect).map_err(Error::Load)?;

    let mut statuses = Vec::new();
    for spec in programs::required() {
        let started = Instant::now();
        let verified_insns = attach_one(&mut ebpf, spec, &btf).map_err(|(stage, reason)| Error::Program {
            program: spec.name.to_string(),
            stage,
            reason,
        })?;
        statuses.push(ProgramStatus {
            verified_insns,
            load_ms: started.elapsed().as_millis() as u64,
            ..ProgramStatus::new(spec, "attached")
        });
    }

    // commit_creds: fentry, else kprobe, else say so once and go on.
    let mut commit_creds = "unavailable";
    for spec in &programs::COMMIT_CREDS {
        let started = Instant::now();
        let mut status = ProgramStatus::new(spec, "skipped");
        if commit_creds != "unavailable" {
            status.detail = format!("{commit_creds} is attached");
        } else if !opts.commit_creds.allows(&spec.attach) {
            status.detail = format!("--commit-creds {}", opts.commit_creds.name());
        } else {
            if attach_optional(&mut ebpf, spec, &btf, &mut status, started) {
                commit_creds = match spec.attach {
                    Attach::FEntry { .. } => "fentry",
                    _ => "kprobe",
                };
            }
        }
        statuses.push(status);
    }
    if commit_creds != "unavailable" {
        // From now on every legitimate credential change is seen: the kernel's integrity
        // checks apply to tasks (re)synchronised after this write.
        let mut runtime: aya::maps::Array<_, u32> = ebpf
            .map_mut(names::RUNTIME_MAP)
            .ok_or_else(|| Error::Load(format!("map {} missing", names::RUNTIME_MAP)))
            .and_then(|m| aya::maps::Array::try_from(m).map_err(|e| Error::Load(e.to_string())))?;
        runtime.set(0, dcea_common::runtime::COMMIT_CREDS_HOOK, 0).map_err(|e| Error::Load(e.to_string()))?;
    }
    // Behaviour hooks: each is optional; a missing one costs only the rules that need it.
    let mut behaviour_missing = Vec::new();
    for spec in &programs::BEHAVIOUR {
        let started = Instant::now();
        let mut status = ProgramStatus::new(spec, "skipped");
        if !attach_optional(&mut ebpf, spec, &btf, &mut status, started) {
            behaviour_missing.push(spec.name);
        }
        statuses.push(status);
    }
    // Self-protection: optional (the sentinel still watches the agent's exit without it).
    for spec in &programs::SELF_PROTECTION {
        let started = Instant::now();
        let mut status = ProgramStatus::new(spec, "skipped");
        attach_optional(&mut ebpf, spec, &btf, &mut status, started);
        statuses.push(status);
    }
    // BPF LSM deny: only with --enforce, and only where the kernel runs the BPF LSM (a program
    // attaches on a kernel built with it but not booted with it, and then never runs).
    let bpf_lsm = sys::bpf_lsm_active();
    for spec in &programs::LSM {
        let started = Instant::now();
        let mut status = ProgramStatus::new(spec, "skipped");
        if !opts.enforce {
            status.detail = "without --enforce".into();
        } else if let Err(why) = &bpf_lsm {
            status.detail = why.clone();
        } else {
            attach_optional(&mut ebpf, spec, &btf, &mut status, started);
        }
        statuses.push(status);
    }
    if !behaviour_missing.is_empty() {
        tracing::warn!(
            "behaviour hooks not attached on this kernel: {}; rules on those events will not fire",
            behaviour_missing.join(", ")
        );
    }
    if commit_creds == "unavailable" && opts.commit_creds != CommitCredsHook::Off {
        let why: Vec<String> = statuses
            .iter()
            .filter(|s| s.capability == "credential changes")
            .map(|s| format!("{}: {}", s.attach, s.detail))
            .collect();
        tracing::warn!(
            "commit_creds hook unavailable on this kernel ({}); namespace transitions are still detected, credential escalations are not reported",
            why.join("; ")
        );
    }

    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let report = StartupReport {
        kernel,
        btf: opts.btf_path.display().to_string(),
        tracefs: mounts.tracefs,
        bpffs: mounts.bpffs,
        host_namespaces: opts.host,
        cgroup_hierarchy: cgroup_desc,
        enforce: opts.enforce,
        guards: guard_statuses(&opts.guards, &statuses),
        features: features(&offsets, commit_creds, &behaviour_missing),
        programs: statuses,
        commit_creds,
    };
    Ok(Loaded { ebpf, report })
}

/// One line an operator can act on, from aya's error text.
fn explain(spec: &ProgramSpec, stage: &str, reason: &str) -> String {
    let first = reason.lines().next().unwrap_or("");
    match spec.attach {
        Attach::FEntry { .. } if first.contains("Operation not permitted") => {
            "BPF_PROG_LOAD refused with EPERM: this kernel does not allow tracing (fentry) programs (lockdown or a host policy)".into()
        }
        Attach::KProbe { .. } if first.contains("/sys/bus/event_source/devices/kprobe") || first.contains("kprobe_events") => {
            "this kernel has no kprobe support (CONFIG_KPROBES is off)".into()
        }
        Attach::Lsm { .. } if first.contains("Operation not permitted") => {
            "BPF_PROG_LOAD refused with EPERM: this kernel does not allow BPF LSM programs (lockdown or a host policy); the kill at the hook still acts".into()
        }
        Attach::Lsm { hook } if first.contains("bpf_lsm_") || first.contains("BTF") => {
            format!("this kernel has no LSM hook {hook} in its BTF (CONFIG_BPF_LSM or CONFIG_SECURITY_PATH off)")
        }
        Attach::TracePoint { category, name } if first.contains("/id`") || first.contains("No such file") => {
            format!("this kernel has no tracepoint {category}:{name} (the syscall is not built in, e.g. CONFIG_MODULES off)")
        }
        _ => format!("{stage}: {first}"),
    }
}

/// What works on this kernel, from the resolved offsets, the commit_creds hook and the
/// behaviour hooks that did not attach. Optional kernel structure members that are missing
/// turn a feature off here instead of failing.
pub fn features(o: &Offsets, commit_creds: &str, behaviour_missing: &[&str]) -> Vec<Feature> {
    let have = |offs: &[u32]| offs.iter().all(|&x| x != ABSENT);
    let on_off = |ok: bool| if ok { "on" } else { "off" };
    let time = o.nsproxy_ns[NsKind::Time.index()] != ABSENT && o.ns_inum[NsKind::Time.index()] != ABSENT;
    let cgroup = o.task_cgroups != ABSENT
        && (o.css_set_dfl_cgrp != ABSENT || have(&[o.css_set_subsys, o.css_cgroup]))
        && have(&[o.cgroup_kn, o.kernfs_node_name]);
    let exe = have(&[
        o.task_mm,
        o.mm_exe_file,
        o.file_f_path,
        o.path_dentry,
        o.dentry_d_name,
        o.qstr_name,
        o.dentry_d_parent,
    ]);
    let hook = commit_creds != "unavailable";
    let files = have(&[
        o.task_files,
        o.files_fdt,
        o.fdtable_fd,
        o.fdtable_max_fds,
        o.file_f_path,
        o.file_f_mode,
        o.path_dentry,
        o.path_mnt,
        o.dentry_d_sb,
        o.dentry_d_inode,
        o.sb_s_magic,
        o.mount_mnt,
        o.vfsmount_mnt_root,
    ]);
    let behaviour = match (behaviour_missing.len(), files) {
        (0, true) => ("on", String::new()),
        (n, _) if n == programs::BEHAVIOUR.len() => ("off", "no behaviour hook attached".to_string()),
        (_, files) => {
            let mut why = Vec::new();
            if !behaviour_missing.is_empty() {
                why.push(format!("not attached: {}", behaviour_missing.join(", ")));
            }
            if !files {
                why.push("file/mount members missing from BTF: opened files are not judged".to_string());
            }
            ("partial", why.join("; "))
        }
    };
    vec![
        Feature {
            name: "namespace transitions",
            status: "on",
            detail: "setns/unshare/clone/clone3/mount family/exec/fork/exit".into(),
        },
        Feature {
            name: "time namespace",
            status: on_off(time),
            detail: if time { String::new() } else { "struct nsproxy has no time_ns (kernel < 5.6)".into() },
        },
        Feature {
            name: "container attribution in the kernel",
            status: on_off(cgroup),
            detail: if cgroup {
                String::new()
            } else {
                "cgroup/kernfs members missing from BTF: attributed from /proc".into()
            },
        },
        Feature {
            name: "executable path in the kernel",
            status: on_off(exe),
            detail: if exe { String::new() } else { "mm/file/dentry members missing from BTF: read from /proc".into() },
        },
        Feature {
            name: "credential escalation",
            status: on_off(hook),
            detail: if hook { format!("commit_creds {commit_creds}") } else { "no commit_creds hook".into() },
        },
        Feature {
            name: "credential integrity",
            status: if hook { "on" } else { "partial" },
            detail: if hook {
                "real_cred replaced, ids written in place, cred != real_cred at syscall entry".into()
            } else {
                "cred != real_cred at syscall entry only (needs the commit_creds hook for the rest)".into()
            },
        },
        Feature { name: "behaviour rules", status: behaviour.0, detail: behaviour.1 },
    ]
}

/// Tell the kernel whether the rules want unix connects to sockets other than a runtime's.
pub fn set_every_unix_connect(ebpf: &mut aya::Ebpf, on: bool) -> Result<(), String> {
    let map = ebpf.map_mut(names::RUNTIME_MAP).ok_or_else(|| format!("map {} missing", names::RUNTIME_MAP))?;
    let mut slots: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map).map_err(|e| e.to_string())?;
    slots
        .set(dcea_common::runtime::EVERY_UNIX_CONNECT_SLOT, u32::from(on), 0)
        .map_err(|e| format!("{}: {e}", names::RUNTIME_MAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status<'a>(features: &'a [Feature], name: &str) -> &'a str {
        features.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}")).status
    }

    #[test]
    fn missing_optional_members_turn_features_off_not_the_agent() {
        // A kernel without time namespaces, cgroup names or exe paths in BTF (e.g. 5.4-era).
        let mut o = Offsets::absent();
        o.nsproxy_ns[NsKind::Mnt.index()] = 8;
        let f = features(&o, "unavailable", &[]);
        assert_eq!(status(&f, "namespace transitions"), "on");
        assert_eq!(status(&f, "time namespace"), "off");
        assert!(f.iter().any(|x| x.detail.contains("kernel < 5.6")));
        assert_eq!(status(&f, "container attribution in the kernel"), "off");
        assert_eq!(status(&f, "executable path in the kernel"), "off");
        assert_eq!(status(&f, "credential escalation"), "off");
        assert_eq!(status(&f, "credential integrity"), "partial");
        // File members missing: behaviour rules run, opened files are not judged.
        assert_eq!(status(&f, "behaviour rules"), "partial");
        let all: Vec<&str> = programs::BEHAVIOUR.iter().map(|p| p.name).collect();
        assert_eq!(status(&features(&o, "unavailable", &all), "behaviour rules"), "off");

        o.nsproxy_ns[NsKind::Time.index()] = 48;
        o.ns_inum[NsKind::Time.index()] = 16;
        (o.task_cgroups, o.css_set_dfl_cgrp, o.cgroup_kn, o.kernfs_node_name) = (1, 2, 3, 4);
        let f = features(&o, "kprobe", &[]);
        assert_eq!(status(&f, "time namespace"), "on");
        assert_eq!(status(&f, "container attribution in the kernel"), "on");
        assert_eq!(status(&f, "credential escalation"), "on");
        assert!(f.iter().any(|x| x.detail == "commit_creds kprobe"));
        assert_eq!(status(&f, "credential integrity"), "on");
    }

    #[test]
    fn commit_creds_choice() {
        let fentry = Attach::FEntry { function: "commit_creds" };
        let kprobe = Attach::KProbe { function: "commit_creds" };
        assert!(CommitCredsHook::Auto.allows(&fentry) && CommitCredsHook::Auto.allows(&kprobe));
        assert!(CommitCredsHook::Kprobe.allows(&kprobe) && !CommitCredsHook::Kprobe.allows(&fentry));
        assert!(CommitCredsHook::Fentry.allows(&fentry) && !CommitCredsHook::Fentry.allows(&kprobe));
        assert!(!CommitCredsHook::Off.allows(&fentry) && !CommitCredsHook::Off.allows(&kprobe));
    }
}
