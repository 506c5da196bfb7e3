//! Load the kernel programs with this kernel's offsets and attach them from the shared table.

use std::{fs, path::Path};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{BtfTracePoint, FEntry, KProbe, TracePoint},
};
use dcea_common::{
    CGROUP_DFL, KernelConfig, names,
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

#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    pub name: &'static str,
    pub attach: String,
    pub capability: &'static str,
    /// "attached", "failed" or "skipped".
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
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
    pub programs: Vec<ProgramStatus>,
    /// Which commit_creds hook runs: "fentry", "kprobe" or "unavailable".
    pub commit_creds: &'static str,
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
            if !p.detail.is_empty() {
                s.push_str(&format!(" ({})", p.detail));
            }
            s.push('\n');
        }
        s.push_str(&format!("dcea: commit_creds hook: {}\n", self.commit_creds));
        s.push_str(&format!(
            "dcea: enforce: {}\n",
            if self.enforce { "on (escaping tasks are killed)" } else { "off (alert only)" }
        ));
        s
    }
}

pub struct LoadOptions<'a> {
    pub btf_path: &'a Path,
    pub host: HostNamespaces,
    pub enforce: bool,
    pub max_tasks: u32,
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
    })
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
        _pad: 0,
    };
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .override_global(names::CONFIG_GLOBAL, &config, true)
        .map_max_entries(names::TASKS_MAP, opts.max_tasks)
        .load(EBPF_OBJECT)
        .map_err(|e| Error::Load(e.to_string()))?;

    let mut statuses = Vec::new();
    for spec in programs::required() {
        let verified_insns = attach_one(&mut ebpf, spec, &btf).map_err(|(stage, reason)| Error::Program {
            program: spec.name.to_string(),
            stage,
            reason,
        })?;
        statuses.push(ProgramStatus {
            name: spec.name,
            attach: describe(&spec.attach),
            capability: spec.capability,
            status: "attached",
            detail: verified_insns.map(|n| format!("{n} insns verified")).unwrap_or_default(),
        });
    }

    // commit_creds: fentry, else kprobe, else say so once and go on.
    let mut commit_creds = "unavailable";
    for spec in &programs::COMMIT_CREDS {
        let status = if commit_creds != "unavailable" {
            ProgramStatus {
                name: spec.name,
                attach: describe(&spec.attach),
                capability: spec.capability,
                status: "skipped",
                detail: format!("{commit_creds} is attached"),
            }
        } else {
            match attach_one(&mut ebpf, spec, &btf) {
                Ok(_) => {
                    commit_creds = match spec.attach {
                        Attach::FEntry { .. } => "fentry",
                        _ => "kprobe",
                    };
                    ProgramStatus {
                        name: spec.name,
                        attach: describe(&spec.attach),
                        capability: spec.capability,
                        status: "attached",
                        detail: String::new(),
                    }
                }
                Err((stage, reason)) => ProgramStatus {
                    name: spec.name,
                    attach: describe(&spec.attach),
                    capability: spec.capability,
                    status: "failed",
                    detail: explain(spec, stage, &reason),
                },
            }
        };
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
    if commit_creds == "unavailable" {
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
        _ => format!("{stage}: {first}"),
    }
}
