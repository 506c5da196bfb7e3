//! One alert builder for every path that finds an escape: the kernel programs (`ebpf`), the
//! trust checker's periodic passes over /proc (`poll`) and its re-check of a process another
//! module flagged (`recheck`). Same rule names, same `output_fields` keys; what a path cannot
//! know is `null`, never a made-up value.

use std::collections::BTreeMap;

use dcea_common::{NS_KINDS, NsKind, changed_mask, flags};
use serde_json::{Value, json};

use crate::{
    container::{
        ContainerRef,
        metadata::{MetadataCache, add_container_fields, describe},
    },
    output::{Alert, Priority, SOURCE, rfc3339_nanos},
    trust::{HostNamespaces, Verdict},
};

pub const RULE_ESCAPE: &str = "Container escape into host namespace";
pub const RULE_TAMPERED: &str = "Namespaces changed outside namespace syscalls";
pub const RULE_CRED_ESCALATION: &str = "Container process gained privileges";
pub const RULE_CRED_TAMPERED: &str = "Credentials changed outside commit_creds";

/// The `flags::CRED_*` bits by name, as alerts list them.
pub fn cred_tamper_names(how: u32) -> Vec<&'static str> {
    [
        (flags::CRED_REPLACED, "real_cred replaced"),
        (flags::CRED_IN_PLACE, "ids written in place"),
        (flags::CRED_SUBJECTIVE, "cred differs from real_cred"),
    ]
    .iter()
    .filter(|(bit, _)| how & bit != 0)
    .map(|&(_, name)| name)
    .collect()
}

/// Everything alert building needs that does not change while dcea runs.
#[derive(Clone)]
pub struct AlertContext {
    pub host: HostNamespaces,
    pub hostname: String,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC at start, to put kernel timestamps on the wall clock.
    pub realtime_offset_ns: i128,
    /// Container names, images and labels (never blocks; empty without an engine).
    pub metadata: MetadataCache,
}

impl AlertContext {
    pub fn new(host: HostNamespaces, metadata: MetadataCache) -> AlertContext {
        AlertContext {
            host,
            hostname: crate::sys::hostname(),
            realtime_offset_ns: crate::sys::realtime_ns() as i128 - crate::sys::monotonic_ns() as i128,
            metadata,
        }
    }

    pub fn epoch_ns(&self, ktime_ns: u64) -> u64 {
        (ktime_ns as i128 + self.realtime_offset_ns).max(0) as u64
    }
}

/// Which path found it: `dcea.detected_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectedBy {
    /// A kernel program saw the transition as it happened.
    Ebpf,
    /// A trust pass over /proc found the process in a namespace it is not trusted in.
    Poll,
    /// The immediate trust check of a process another alert or rule was about.
    Recheck,
}

impl DetectedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectedBy::Ebpf => "ebpf",
            DetectedBy::Poll => "poll",
            DetectedBy::Recheck => "recheck",
        }
    }
}

/// The process an alert is about.
#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    /// Thread-group id and the thread that moved.
    pub pid: u32,
    pub tid: u32,
    pub name: String,
    pub exe: String,
    pub ppid: u32,
    pub pname: String,
    pub uid: Option<u32>,
}

/// What the kernel reported about the syscall; absent for findings read from /proc, where no
/// syscall was observed (`evt.type`, `evt.res`, `dcea.at_syscall_entry` and `dcea.unexplained`
/// are then `null`).
#[derive(Clone, Copy, Debug)]
pub struct SyscallFacts {
    pub hook: &'static str,
    pub ret: i64,
    pub at_entry: bool,
}

#[derive(Clone, Debug)]
pub struct Observation {
    pub detected_by: DetectedBy,
    /// CLOCK_MONOTONIC of the event (kernel) or of the check (/proc).
    pub ktime_ns: u64,
    pub syscall: Option<SyscallFacts>,
    /// What --enforce did to the process.
    pub action: crate::enforce::Action,
    /// Namespaces before (kernel: before the syscall; /proc: the trusted ones) and after.
    pub from: [u32; NS_KINDS],
    pub to: [u32; NS_KINDS],
    /// Credentials before and after; read only for the kernel's credential verdicts (the
    /// /proc paths leave them 0 and never produce those).
    pub uid: (u32, u32),
    pub euid: (u32, u32),
    pub caps: (u64, u64),
}

pub fn kinds(mask: u32) -> Vec<&'static str> {
    NsKind::ALL.iter().filter(|k| mask & k.bit() != 0).map(|k| k.name()).collect()
}

fn snapshot(ns: &[u32; NS_KINDS]) -> dcea_common::TaskSnapshot {
    dcea_common::TaskSnapshot { ns: *ns, ..Default::default() }
}

pub fn build_alert(
    verdict: Verdict,
    obs: &Observation,
    proc: &ProcessInfo,
    container: Option<&ContainerRef>,
    ctx: &AlertContext,
) -> Alert {
    let epoch_ns = ctx.epoch_ns(obs.ktime_ns);
    let meta = container.and_then(|c| ctx.metadata.lookup(&c.id));
    let hook = obs.syscall.map(|s| s.hook);

    let mut f: BTreeMap<String, Value> = BTreeMap::new();
    add_container_fields(&mut f, container, meta.as_deref());
    f.insert("proc.pid".into(), json!(proc.pid));
    f.insert("proc.tid".into(), json!(proc.tid));
    f.insert("proc.name".into(), json!(proc.name));
    f.insert("proc.exepath".into(), json!(proc.exe));
    f.insert("proc.ppid".into(), json!(proc.ppid));
    f.insert("proc.pname".into(), json!(proc.pname));
    f.insert("user.uid".into(), json!(proc.uid));
    f.insert("evt.type".into(), json!(hook));
    f.insert("evt.res".into(), json!(obs.syscall.map(|s| s.ret)));
    f.insert("evt.rawtime".into(), json!(epoch_ns));
    f.insert("dcea.ktime_ns".into(), json!(obs.ktime_ns));
    f.insert("dcea.detected_by".into(), json!(obs.detected_by.as_str()));
    f.insert("dcea.action".into(), json!(obs.action.name()));
    f.insert("dcea.at_syscall_entry".into(), json!(obs.syscall.map(|s| s.at_entry)));

    let changed = changed_mask(&snapshot(&obs.from), &snapshot(&obs.to));
    let mut moves = Vec::new();
    for k in NsKind::ALL.iter().filter(|k| changed & k.bit() != 0) {
        let (from, to) = (obs.from[k.index()], obs.to[k.index()]);
        f.insert(format!("dcea.ns.{}.from", k.name()), json!(from));
        f.insert(format!("dcea.ns.{}.to", k.name()), json!(to));
        moves.push(format!("{} {from}->{to}", k.name()));
    }
    f.insert("dcea.ns.changed".into(), json!(kinds(changed)));

    let uid = proc.uid.map_or("?".to_string(), |u| u.to_string());
    let who = format!(
        "{} (pid={} tid={} exe={} parent={} ppid={} uid={uid})",
        proc.name, proc.pid, proc.tid, proc.exe, proc.pname, proc.ppid
    );
    let where_ = match container {
        Some(c) => format!("container {}", describe(c, meta.as_deref())),
        None => format!("a non-host pid namespace {}", obs.from[NsKind::Pid.index()]),
    };
    let action = match (obs.action, obs.syscall) {
        (crate::enforce::Action::Alert, _) => "",
        (crate::enforce::Action::KillProcess, Some(_)) => "; killed before returning to user space (enforce)",
        (crate::enforce::Action::KillContainer, Some(_)) => {
            "; killed before returning to user space, its container condemned (enforce)"
        }
        (_, None) => "; killed (enforce; found after the fact)",
    };
    let how = |unexplained: bool| match (hook, obs.detected_by) {
        (Some(h), _) if unexplained => format!("without a namespace syscall (noticed at {h})"),
        (Some(h), _) => format!("via {h}"),
        (None, DetectedBy::Recheck) => "(found by the trust re-check)".to_string(),
        (None, _) => "(found by the trust poll)".to_string(),
    };

    let (rule, priority, tags, output) = match verdict {
        Verdict::Escape { entered, unexplained } => {
            f.insert("dcea.ns.entered_host".into(), json!(kinds(entered)));
            f.insert("dcea.unexplained".into(), json!(obs.syscall.map(|_| unexplained)));
            (
                RULE_ESCAPE,
                Priority::Critical,
                vec!["container", "escape", "namespace", "mitre_privilege_escalation", "T1611"],
                format!(
                    "Container escape: {who} in {where_} entered host {} namespace(s) {} [{}]{action}",
                    kinds(entered).join(","),
                    how(unexplained),
                    moves.join(", ")
                ),
            )
        }
        Verdict::Tampered { changed } => (
            RULE_TAMPERED,
            Priority::Critical,
            vec!["kernel_exploit", "namespace", "mitre_privilege_escalation", "T1068"],
            format!(
                "Namespaces of {who} changed without a namespace syscall (noticed at {}): {} [{}]",
                hook.unwrap_or("?"),
                kinds(changed).join(","),
                moves.join(", ")
            ),
        ),
        Verdict::CredEscalation { gained_root, gained_caps } => {
            f.insert("dcea.cred.euid.from".into(), json!(obs.euid.0));
            f.insert("dcea.cred.euid.to".into(), json!(obs.euid.1));
            f.insert("dcea.cred.caps_gained".into(), json!(format!("{gained_caps:#x}")));
            (
                RULE_CRED_ESCALATION,
                // Gaining root is worse than gaining a capability.
                if gained_root { Priority::Critical } else { Priority::Warning },
                vec!["container", "privilege_escalation", "mitre_privilege_escalation", "T1068"],
                format!(
                    "Privileges raised in {where_}: {who} euid {}->{}{} via commit_creds",
                    obs.euid.0,
                    obs.euid.1,
                    if gained_caps != 0 { format!(", gained capabilities {gained_caps:#x}") } else { String::new() },
                ),
            )
        }
        Verdict::CredTampered { how } => {
            f.insert("dcea.cred.tampered".into(), json!(cred_tamper_names(how)));
            f.insert("dcea.cred.uid.from".into(), json!(obs.uid.0));
            f.insert("dcea.cred.uid.to".into(), json!(obs.uid.1));
            f.insert("dcea.cred.euid.from".into(), json!(obs.euid.0));
            f.insert("dcea.cred.euid.to".into(), json!(obs.euid.1));
            f.insert("dcea.cred.caps.from".into(), json!(format!("{:#x}", obs.caps.0)));
            f.insert("dcea.cred.caps.to".into(), json!(format!("{:#x}", obs.caps.1)));
            (
                RULE_CRED_TAMPERED,
                Priority::Critical,
                vec!["kernel_exploit", "credentials", "mitre_privilege_escalation", "T1068"],
                format!(
                    "Credentials of {who} changed without commit_creds (noticed at {}): {}; uid {}->{} euid {}->{} caps {:#x}->{:#x}",
                    hook.unwrap_or("?"),
                    cred_tamper_names(how).join(", "),
                    obs.uid.0,
                    obs.uid.1,
                    obs.euid.0,
                    obs.euid.1,
                    obs.caps.0,
                    obs.caps.1,
                ),
            )
        }
        Verdict::Benign => (
            "Namespace transition",
            Priority::Informational,
            vec!["namespace"],
            format!("{who} namespace transition {} [{}]", how(false), moves.join(", ")),
        ),
    };
    Alert {
        time: rfc3339_nanos(epoch_ns),
        rule: rule.to_string(),
        priority,
        output,
        output_fields: f,
        source: SOURCE,
        tags: tags.into_iter().map(String::from).collect(),
        hostname: ctx.hostname.clone(),
    }
}

/// The escape alert's identity for de-duplication across paths: pid and the host namespace
/// kinds it entered.
pub fn escape_key(alert: &Alert) -> Option<(u32, u32)> {
    if alert.rule != RULE_ESCAPE {
        return None;
    }
    let f = &alert.output_fields;
    let pid = f.get("proc.pid")?.as_u64().and_then(|p| u32::try_from(p).ok())?;
    let entered = f
        .get("dcea.ns.entered_host")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .fold(0, |m, name| m | NsKind::ALL.iter().find(|k| k.name() == name).map_or(0, |k| k.bit()));
    Some((pid, entered))
}
