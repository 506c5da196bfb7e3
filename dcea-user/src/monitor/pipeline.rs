//! From ring-buffer record to alert: decode, classify, enrich, render.

use std::{collections::HashMap, fs};

use dcea_common::{Event, EventKind, Hook, entered_host_mask, flags};

use crate::enforce::{Action, kernel_outcome};

pub use super::alert::{AlertContext, RULE_CRED_ESCALATION, RULE_CRED_TAMPERED, RULE_ESCAPE, RULE_TAMPERED};
use super::{
    alert::{self, DetectedBy, Observation, ProcessInfo, SyscallFacts},
    behaviour::{DecodedBehaviour, decode_behaviour, record_kind},
    decode::{cgroup_path, decode, exe_path},
};
use std::sync::Arc;

use super::rules_event::KernelEvent;
use crate::{
    container::{self, ContainerRef, metadata::add_container_fields},
    output::Alert,
    rules::{AlertMeta, EventView, RuleSet},
    sys::c_bytes_to_string,
    trust::{Verdict, classify},
};

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PipelineStats {
    pub records: u64,
    pub decode_errors: u64,
    pub transitions: u64,
    pub behaviours: u64,
    pub alerts: u64,
    /// mprotect records whose range was not read: the caller had exited, or spent its
    /// per-second budget of maps reads.
    pub unresolved_ranges: u64,
    /// Container execs the allowlist could not judge: too many waited for metadata at once.
    pub execs_unjudged: u64,
}

/// What /proc and the event tell about the process, gathered only for alerts.
#[derive(Debug, Clone, Default)]
pub struct ProcessDetails {
    pub exe: String,
    pub parent_name: String,
    pub container: Option<ContainerRef>,
}

impl ProcessDetails {
    /// Kernel data first (it cannot race with the process exiting), /proc as the fallback.
    pub fn collect(ev: &Event) -> ProcessDetails {
        let exe = exe_path(ev)
            .or_else(|| fs::read_link(format!("/proc/{}/exe", ev.tgid)).ok().map(|p| p.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let parent_name = Some(c_bytes_to_string(&ev.parent_comm))
            .filter(|n| !n.is_empty())
            .or_else(|| fs::read_to_string(format!("/proc/{}/comm", ev.ppid)).ok().map(|s| s.trim_end().to_string()))
            .unwrap_or_default();
        let container = container_of(ev.flags, &cgroup_path(ev), ev.tgid);
        ProcessDetails { exe, parent_name, container }
    }
}

/// The container of a kernel record's task: from the cgroup names the kernel sent (race-free),
/// else from /proc while the task is still there.
fn container_of(record_flags: u32, cgroup_path: &str, tgid: u32) -> Option<ContainerRef> {
    if record_flags & flags::CGROUP_RESOLVED != 0 {
        container::from_cgroup_path(cgroup_path)
    } else {
        container::of_pid(tgid)
    }
}

/// What the kernel did to a record's task, and who it was.
#[derive(Clone, Copy)]
struct Enforced {
    record_flags: u32,
    tgid: u32,
}

pub struct Pipeline {
    pub ctx: AlertContext,
    pub stats: PipelineStats,
    /// Behaviour rules; `None` evaluates none (swapped whole on SIGHUP).
    pub rules: Option<Arc<RuleSet>>,
    /// Container id → the first non-host PID namespace seen in one of its kernel records:
    /// the runtime's init is the container's first task, so this is the container's own PID
    /// namespace (`dcea.ns.pid.is_nested` when the init has already exited).
    own_pid_ns: HashMap<String, u32>,
    /// --enforce: rules' actions the kernel did not take run from here, after the fact.
    pub enforce: bool,
    /// Guards a BPF LSM program refuses inside the syscall (the operation never happened).
    pub denied_in_kernel: [bool; dcea_common::GUARDS],
    /// Containers a rule exception spares from its kernel guard (--enforce).
    pub exemptions: crate::enforce::exempt::Exemptions,
    /// After-the-fact actions for the kernel side to carry out after this drain.
    pub responses: Vec<Response>,
    /// A record said the kernel condemned a container: finish it off after this drain.
    pub condemned_seen: bool,
    /// The containers those records named: (container id, cgroup path).
    pub condemned: Vec<(String, String)>,
    /// Targets of a ptrace attach whose tracer was killed at the hook: the attach's SIGSTOP
    /// is still theirs to undo.
    pub stopped_targets: Vec<u32>,
    /// Runtime integrity: programs and mapped files judged against the image; tampering
    /// records ask it for an immediate memory measurement.
    pub integrity: Option<Arc<crate::integrity::Integrity>>,
    /// Where notable integrity verdicts are recorded for `dcea integrity show`.
    pub state_dir: Option<std::path::PathBuf>,
    /// Names the file behind an mprotect record's range.
    mappings: crate::integrity::mapping::MappingResolver,
    /// The per-workload process allowlist (exec records of containers).
    pub allowlist: Option<crate::allowlist::Allowlist>,
    /// Exec records waiting for their container's metadata: (record, container, time, since).
    deferred_execs: Vec<(DecodedBehaviour, ContainerRef, u64, std::time::Instant)>,
}

/// Exec records held for metadata at most, and for how long.
const DEFERRED_EXECS_MAX: usize = 4096;
const DEFERRED_EXEC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// An action a rule asks for that the kernel did not take at its hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub action: Action,
    pub tgid: u32,
    /// The process's start time when it was judged (None: already gone): the kill checks it,
    /// so a pid reused since is left alone.
    pub start_time: Option<u64>,
}

/// Containers whose PID namespace is remembered; past this the map starts over.
const OWN_PID_NS_MAX: usize = 4096;

impl Pipeline {
    pub fn new(ctx: AlertContext) -> Pipeline {
        Pipeline {
            ctx,
            stats: PipelineStats::default(),
            rules: None,
            own_pid_ns: HashMap::new(),
            enforce: false,
            denied_in_kernel: [false; dcea_common::GUARDS],
            exemptions: Default::default(),
            responses: Vec::new(),
            condemned_seen: false,
            condemned: Vec::new(),
            stopped_targets: Vec::new(),
            mappings: Default::default(),
            integrity: None,
            state_dir: None,
            allowlist: None,
            deferred_execs: Vec::new(),
        }
    }

    fn learn_pid_ns(&mut self, container: Option<&ContainerRef>, pid_ns: u32) -> Option<u32> {
        let c = container?;
        let host = self.ctx.host.ns[dcea_common::NsKind::Pid.index()];
        if pid_ns != 0 && pid_ns != host && !self.own_pid_ns.contains_key(&c.id) {
            if self.own_pid_ns.len() >= OWN_PID_NS_MAX {
                self.own_pid_ns.clear();
            }
            self.own_pid_ns.insert(c.id.clone(), pid_ns);
        }
        self.own_pid_ns.get(&c.id).copied()
    }

    /// The first alert a record raises (see [`Pipeline::process_into`]).
    pub fn process(&mut self, record: &[u8]) -> Option<Alert> {
        let mut out = Vec::new();
        self.process_into(record, &mut out);
        out.into_iter().next()
    }

    /// Decode and classify one record, appending every alert it raises (an escape verdict
    /// and any behaviour rules it matches). Cheap for the benign majority: /proc is read only
    /// when the verdict depends on it or an alert is raised.
    pub fn process_into(&mut self, record: &[u8], out: &mut Vec<Alert>) {
        self.stats.records += 1;
        if record_kind(record) == Some(EventKind::Behaviour as u32) {
            return self.behaviour(record, out);
        }
        let ev = match decode(record) {
            Ok(ev) => ev,
            Err(e) => {
                self.stats.decode_errors += 1;
                tracing::warn!("dropping malformed ring-buffer record: {e}");
                return;
            }
        };
        if ev.flags & flags::CONDEMNED != 0 {
            self.condemned_seen = true;
            let path = cgroup_path(&ev);
            if let Some(c) = container_of(ev.flags, &path, ev.tgid) {
                self.condemned.push((c.id, path));
            }
        }
        let (verdict, details) = self.judge(&ev);
        if verdict != Verdict::Benign {
            self.stats.alerts += 1;
            let details = details.unwrap_or_else(|| ProcessDetails::collect(&ev));
            out.push(build_alert(&ev, verdict, &self.ctx, &details));
        }
        // Namespaces a container task made for itself (unshare/clone), past the runtime's
        // setup: the rules judge those.
        let rules_see = ev.kind == EventKind::Transition as u32
            && ev.flags & flags::CONTAINER != 0
            && ev.flags & (flags::RUNTIME_SETUP | flags::SUMMARY) == 0;
        if rules_see && let Some(rules) = self.rules.clone() {
            let container = container_of(ev.flags, &cgroup_path(&ev), ev.tgid);
            let meta = container.as_ref().and_then(|c| self.ctx.metadata.lookup(&c.id));
            let epoch_ns = self.epoch_ns(ev.ktime_ns);
            let exe = exe_path(&ev).unwrap_or_default();
            let host_ns = self.ctx.host.ns;
            if let Some(kev) = KernelEvent::transition(&ev, exe, epoch_ns, &host_ns, container.as_ref(), meta.clone()) {
                // The namespaces before the transition are the container's.
                let own = self.learn_pid_ns(container.as_ref(), ev.old.ns[dcea_common::NsKind::Pid.index()]);
                let kev = kev.with_learned_pid_ns(own);
                let at = Enforced { record_flags: ev.flags, tgid: ev.tgid };
                self.evaluate(&rules, &kev, at, epoch_ns, container.as_ref(), meta.as_deref(), out);
            }
        }
    }

    fn epoch_ns(&self, ktime_ns: u64) -> u64 {
        (ktime_ns as i128 + self.ctx.realtime_offset_ns).max(0) as u64
    }

    fn behaviour(&mut self, record: &[u8], out: &mut Vec<Alert>) {
        self.stats.behaviours += 1;
        let mut decoded = match decode_behaviour(record).map(DecodedBehaviour::new) {
            Ok(Some(d)) => d,
            Ok(None) | Err(_) => {
                self.stats.decode_errors += 1;
                tracing::warn!("dropping malformed behaviour record of {} bytes", record.len());
                return;
            }
        };
        tracing::trace!("behaviour: {decoded:?}");
        let Some(rules) = self.rules.clone() else { return };
        if decoded.hook == Hook::Mprotect
            && self.mappings.resolve(&mut decoded) == crate::integrity::mapping::Resolved::Unknown
        {
            self.stats.unresolved_ranges += 1;
        }
        if decoded.hook == Hook::Exec && decoded.raw.flags & flags::ENTRY_EXEC != 0 && self.allowlist.is_some() {
            // Now, while the task is surely there: a record may wait for metadata.
            decoded.pid_ns_init = super::behaviour::is_pid_ns_init(decoded.raw.tgid);
        }
        let container = container_of(decoded.raw.flags, &decoded.cgroup_path, decoded.raw.tgid);
        let meta = container.as_ref().and_then(|c| self.ctx.metadata.lookup(&c.id));
        let epoch_ns = self.epoch_ns(decoded.raw.ktime_ns);
        let host_ns = self.ctx.host.ns;
        let integrity = self.integrity.clone();
        let Some(kev) = KernelEvent::behaviour(&decoded, epoch_ns, &host_ns, container.as_ref(), meta.clone()) else {
            return;
        };
        let own = self.learn_pid_ns(container.as_ref(), kev.pid_ns());
        let kev = kev.with_learned_pid_ns(own).with_integrity(integrity.as_deref());
        if let Some(i) = &integrity {
            request_measurement(i, &decoded, &kev, host_ns[dcea_common::NsKind::Pid.index()]);
        }
        if self.enforce
            && meta.is_some()
            && let Some(c) = &container
        {
            self.exemptions.decide(&rules, &kev, &c.id, &decoded.cgroup_path);
        }
        if decoded.raw.flags & flags::CONDEMNED != 0 {
            self.condemned_seen = true;
            if let Some(c) = &container {
                self.condemned.push((c.id.clone(), decoded.cgroup_path.clone()));
            }
        }
        if decoded.raw.flags & flags::KILLED != 0
            && dcea_common::Guard::from_flags(decoded.raw.flags) == Some(dcea_common::Guard::PtraceOutside)
            && !self.denied_in_kernel[dcea_common::Guard::PtraceOutside as usize]
        {
            // A host pid: the guard fires only for callers in the host's PID namespace. Without
            // the LSM deny the attach happened, and its SIGSTOP is still the target's.
            self.stopped_targets.push(decoded.raw.args[dcea_common::arg::MODE] as u32);
        }
        let at = Enforced { record_flags: decoded.raw.flags, tgid: decoded.raw.tgid };
        self.evaluate(&rules, &kev, at, epoch_ns, container.as_ref(), meta.as_deref(), out);
        if decoded.hook == Hook::Exec
            && let (Some(allowlist), Some(c)) = (self.allowlist.as_ref(), &container)
        {
            if meta.is_none() && !allowlist.containers.contains_key(&c.id) {
                // A container's first execs come before the engine has named it: judge them
                // once it has (the workload, hence the profile, comes from the metadata).
                if self.deferred_execs.len() < DEFERRED_EXECS_MAX {
                    self.deferred_execs.push((decoded.clone(), c.clone(), epoch_ns, std::time::Instant::now()));
                } else {
                    self.stats.execs_unjudged += 1;
                }
            } else {
                self.judge_exec(&decoded, &kev, c, meta.as_deref(), epoch_ns, out);
            }
        }
        if let (Some(found), Some(dir), Some(c)) = (kev.judged_integrity(), &self.state_dir, &container) {
            record_finding(dir, found, &decoded, &c.id, epoch_ns);
        }
    }

    /// The allowlist's judgement of one exec record of container `c`.
    fn judge_exec(
        &mut self,
        decoded: &DecodedBehaviour,
        kev: &KernelEvent<'_>,
        c: &ContainerRef,
        meta: Option<&crate::container::metadata::ContainerMeta>,
        epoch_ns: u64,
        out: &mut Vec<Alert>,
    ) {
        let Some(allowlist) = self.allowlist.as_mut() else { return };
        let alert_meta = AlertMeta { time_ns: epoch_ns, hostname: &self.ctx.hostname };
        let Some(mut alert) = allowlist.judge(decoded, kev, c, meta, &alert_meta) else { return };
        let f = &mut alert.output_fields;
        add_container_fields(f, Some(c), meta);
        f.insert("proc.pid".into(), serde_json::json!(decoded.raw.tgid));
        f.insert("evt.type".into(), serde_json::json!(kev.evt_type().name()));
        f.insert("dcea.detected_by".into(), serde_json::json!("ebpf"));
        f.insert("evt.rawtime".into(), serde_json::json!(epoch_ns));
        self.stats.alerts += 1;
        out.push(alert);
    }

    /// Judge the execs that waited for their container's metadata: those whose container is
    /// now named, and, past [`DEFERRED_EXEC_WAIT`], the rest without it (counted).
    pub fn judge_deferred_execs(&mut self, out: &mut Vec<Alert>) {
        if self.deferred_execs.is_empty() {
            return;
        }
        for (decoded, c, epoch_ns, at) in std::mem::take(&mut self.deferred_execs) {
            let meta = self.ctx.metadata.lookup(&c.id);
            if meta.is_none() && at.elapsed() < DEFERRED_EXEC_WAIT {
                self.deferred_execs.push((decoded, c, epoch_ns, at));
                continue;
            }
            let host_ns = self.ctx.host.ns;
            let integrity = self.integrity.clone();
            let Some(kev) = KernelEvent::behaviour(&decoded, epoch_ns, &host_ns, Some(&c), meta.clone()) else {
                continue;
            };
            let kev = kev.with_integrity(integrity.as_deref());
            self.judge_exec(&decoded, &kev, &c, meta.as_deref(), epoch_ns, out);
        }
    }

    /// Every rule the event matches becomes a Falco-shaped alert carrying the container's
    /// metadata, like the escape alerts.
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        rules: &RuleSet,
        kev: &KernelEvent<'_>,
        at: Enforced,
        epoch_ns: u64,
        container: Option<&ContainerRef>,
        meta: Option<&crate::container::metadata::ContainerMeta>,
        out: &mut Vec<Alert>,
    ) {
        for rule in rules.matching(kev) {
            let mut alert = rule.alert(kev, &AlertMeta { time_ns: epoch_ns, hostname: &self.ctx.hostname });
            let f = &mut alert.output_fields;
            add_container_fields(f, container, meta);
            let (done, guard) = kernel_outcome(at.record_flags);
            let (action, enforced_at) = if done != Action::Alert {
                let denied = guard.is_some_and(|g| self.denied_in_kernel[g as usize]);
                (done, Some(if denied { "kernel hook; refused by the BPF LSM" } else { "kernel hook" }))
            } else if self.enforce && rule.action != Action::Alert && container.is_some() {
                let start_time = crate::trust::procfs::start_time(at.tgid);
                self.responses.push(Response { action: rule.action, tgid: at.tgid, start_time });
                (rule.action, Some("user space, after the fact"))
            } else {
                (Action::Alert, None)
            };
            f.insert("dcea.action".into(), serde_json::json!(action.name()));
            if let Some(g) = guard {
                f.insert("dcea.guard".into(), serde_json::json!(g.name()));
            }
            if let Some(at) = enforced_at {
                f.insert("dcea.enforced_at".into(), serde_json::json!(at));
            }
            f.insert("proc.pid".into(), serde_json::json!(at.tgid));
            f.insert("evt.type".into(), serde_json::json!(kev.evt_type().name()));
            f.insert("dcea.detected_by".into(), serde_json::json!("ebpf"));
            // When the hook ran (the escape alerts carry it too): what latency is measured from.
            f.insert("evt.rawtime".into(), serde_json::json!(epoch_ns));
            self.stats.alerts += 1;
            out.push(alert);
        }
    }

    /// Classify; consult /proc only when the kernel sent no cgroup names for a task that
    /// entered a host namespace (a hierarchy the runtime does not populate, or an old kernel).
    pub fn judge(&mut self, ev: &Event) -> (Verdict, Option<ProcessDetails>) {
        if ev.kind == EventKind::Transition as u32 {
            self.stats.transitions += 1;
        }
        let verdict = classify(ev, &self.ctx.host, false);
        if verdict == Verdict::Benign
            && ev.flags & flags::CGROUP_RESOLVED == 0
            && entered_host_mask(&ev.old, &ev.new, &self.ctx.host.ns) != 0
        {
            let details = ProcessDetails::collect(ev);
            let verdict = classify(ev, &self.ctx.host, details.container.is_some());
            return (verdict, Some(details));
        }
        (verdict, None)
    }
}

/// The kernel's record as the shared alert builder's input.
pub fn build_alert(ev: &Event, verdict: Verdict, ctx: &AlertContext, details: &ProcessDetails) -> Alert {
    let obs = Observation {
        detected_by: DetectedBy::Ebpf,
        ktime_ns: ev.ktime_ns,
        syscall: Some(SyscallFacts {
            hook: Hook::from_u32(ev.hook).map(Hook::name).unwrap_or("unknown"),
            ret: ev.ret,
            at_entry: ev.flags & flags::AT_ENTRY != 0,
        }),
        action: kernel_outcome(ev.flags).0,
        from: ev.old.ns,
        to: ev.new.ns,
        uid: (ev.old.uid, ev.new.uid),
        euid: (ev.old.euid, ev.new.euid),
        caps: (ev.old.cap_effective, ev.new.cap_effective),
    };
    let proc = ProcessInfo {
        pid: ev.tgid,
        tid: ev.pid,
        name: c_bytes_to_string(&ev.comm),
        exe: details.exe.clone(),
        ppid: ev.ppid,
        pname: details.parent_name.clone(),
        uid: Some(ev.new.uid),
    };
    alert::build_alert(verdict, &obs, &proc, details.container.as_ref(), ctx)
}

/// ptrace requests that write the target's memory or registers.
const PTRACE_WRITES: [u64; 5] = [4, 5, 6, 13, 0x4205];

/// A record of a write into another process's memory (ptrace pokes, process_vm_writev, a
/// write-mode open of /proc/<pid>/mem): measure the writer's container now, and the target's
/// when the writer names it by host pid.
fn request_measurement(
    integrity: &crate::integrity::Integrity,
    b: &DecodedBehaviour,
    kev: &KernelEvent<'_>,
    host_pid_ns: u32,
) {
    let writes = match b.hook {
        Hook::Ptrace => PTRACE_WRITES.contains(&b.raw.args[dcea_common::arg::FLAGS]),
        Hook::ProcessVmWritev => true,
        Hook::Open | Hook::Openat | Hook::Openat2 => kev.target_pid().is_some(),
        _ => false,
    };
    if !writes {
        return;
    }
    integrity.request_pass(b.raw.tgid);
    if b.raw.snap.ns[dcea_common::NsKind::Pid.index()] == host_pid_ns
        && let Some(target) = kev.target_pid().filter(|p| *p > 1)
    {
        integrity.request_pass(target as u32);
    }
}

fn record_finding(
    state_dir: &std::path::Path,
    found: &crate::integrity::FileIntegrity,
    b: &DecodedBehaviour,
    container_id: &str,
    epoch_ns: u64,
) {
    use crate::integrity::Verdict;
    if matches!(found.verdict, Verdict::Image | Verdict::OutsideImage) {
        return;
    }
    let what = b.file.clone().unwrap_or_else(|| b.exe.clone());
    crate::integrity::findings::append(
        state_dir,
        &crate::integrity::findings::Finding {
            time: crate::output::rfc3339_nanos(epoch_ns),
            container_id: container_id.to_string(),
            pid: b.raw.tgid,
            verdict: found.verdict.name().to_string(),
            what: format!("{} {what}", b.hook.evt_type()),
            sha256: found.sha256.clone(),
            image_sha256: found.image_sha256.clone(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        container::metadata::{ContainerMeta, MetadataCache},
        monitor::decode::tests::{bytes_of, zeroed},
        output::Priority,
        trust::HostNamespaces,
    };
    use dcea_common::{EventKind, NsKind, TaskSnapshot};
    use serde_json::json;

    const ID: &str = "3f4e5d6c7b8a99001122334455667788aabbccddeeff00112233445566778899";

    fn pipeline() -> Pipeline {
        let mut ns = HostNamespaces::fixed();
        ns[NsKind::Mnt.index()] = 4026531832;
        ns[NsKind::Net.index()] = 4026531833;
        Pipeline::new(AlertContext {
            host: HostNamespaces { ns, mnt_net_source: "test".into() },
            hostname: "node-1".into(),
            realtime_offset_ns: 1_700_000_000_000_000_000,
            metadata: MetadataCache::disabled(),
        })
    }

    fn put(dst: &mut [u8], s: &str) {
        dst[..s.len()].copy_from_slice(s.as_bytes());
    }

    /// A `--pid=host` Docker container's nsenter entering the host mount namespace.
    fn escape_event(p: &Pipeline) -> Event {
        let host = p.ctx.host.ns;
        let mut old = host;
        old[NsKind::Mnt.index()] = 4026532177;
        let mut ev = zeroed();
        ev.kind = EventKind::Transition as u32;
        ev.hook = Hook::Setns as u32;
        ev.pid = 4242;
        ev.tgid = 4242;
        ev.ppid = 4200;
        ev.ktime_ns = 5_000;
        ev.old = TaskSnapshot { ns: old, ..Default::default() };
        ev.new = TaskSnapshot { ns: host, ..Default::default() };
        ev.flags = flags::CGROUP_RESOLVED;
        put(&mut ev.comm, "nsenter");
        put(&mut ev.parent_comm, "sh");
        put(&mut ev.exe[0], "busybox");
        put(&mut ev.exe[1], "bin");
        put(&mut ev.cgroup, ID);
        put(&mut ev.cgroup_parent, "docker");
        ev
    }

    #[test]
    fn escape_record_becomes_a_falco_shaped_alert_from_kernel_data_alone() {
        let mut p = pipeline();
        let ev = escape_event(&p);
        let alert = p.process(&bytes_of(&ev)).expect("escape alert");
        assert_eq!(alert.rule, RULE_ESCAPE);
        assert_eq!(alert.priority, Priority::Critical);
        let f = &alert.output_fields;
        assert_eq!(f["container.id"], ID);
        assert_eq!(f["container.runtime"], "docker");
        assert_eq!(f["proc.exepath"], "/bin/busybox");
        assert_eq!(f["proc.pname"], "sh");
        assert_eq!(f["proc.pid"], 4242);
        assert_eq!(f["evt.type"], "setns");
        assert_eq!(f["dcea.ns.entered_host"], json!(["mnt"]));
        assert_eq!(f["dcea.ns.mnt.from"], 4026532177u32);
        assert_eq!(f["evt.rawtime"], 1_700_000_000_000_005_000u64);
        assert!(alert.output.contains("container 3f4e5d6c7b8a (docker)"), "{}", alert.output);
        assert_eq!(alert.hostname, "node-1");
        assert_eq!(p.stats.alerts, 1);
        assert_eq!(f["container.name"], serde_json::Value::Null, "no engine: ids only");
        assert_eq!(f["dcea.detected_by"], "ebpf");
        assert_eq!(f["dcea.unexplained"], false);
        assert_eq!(f["user.uid"], 0);
    }

    #[test]
    fn kernel_alerts_carry_engine_metadata() {
        let mut p = pipeline();
        p.ctx.metadata.insert(ContainerMeta {
            id: ID.into(),
            name: Some("web".into()),
            image: Some("nginx:1.25".into()),
            labels: [("io.kubernetes.pod.name".to_string(), "web-0".to_string())].into(),
            k8s_pod_name: Some("web-0".into()),
            ..Default::default()
        });
        let ev = escape_event(&p);
        let alert = p.process(&bytes_of(&ev)).expect("escape alert");
        let f = &alert.output_fields;
        assert_eq!(f["container.name"], "web");
        assert_eq!(f["container.image"], "nginx:1.25");
        assert_eq!(f["k8s.pod.name"], "web-0");
        assert_eq!(f["container.labels"]["io.kubernetes.pod.name"], "web-0");
        assert!(alert.output.contains("container web (3f4e5d6c7b8a, docker, image nginx:1.25)"), "{}", alert.output);
    }

    #[test]
    fn credential_tampering_record_becomes_a_critical_alert() {
        let mut p = pipeline();
        let host = p.ctx.host.ns;
        let mut ev = zeroed();
        ev.kind = EventKind::Transition as u32;
        ev.hook = Hook::Unshare as u32;
        ev.pid = 77;
        ev.tgid = 77;
        ev.flags = flags::AT_ENTRY | flags::CRED_REPLACED | flags::CGROUP_RESOLVED;
        ev.old = TaskSnapshot { ns: host, uid: 1000, euid: 1000, ..Default::default() };
        ev.new = TaskSnapshot { ns: host, uid: 0, euid: 0, cap_effective: 0x1ff_ffff_ffff, ..Default::default() };
        put(&mut ev.comm, "exploit");
        let alert = p.process(&bytes_of(&ev)).expect("tamper alert");
        assert_eq!(alert.rule, RULE_CRED_TAMPERED);
        assert_eq!(alert.priority, Priority::Critical);
        let f = &alert.output_fields;
        assert_eq!(f["dcea.cred.tampered"], json!(["real_cred replaced"]));
        assert_eq!(f["dcea.cred.euid.from"], 1000);
        assert_eq!(f["dcea.cred.euid.to"], 0);
        assert_eq!(f["dcea.cred.caps.to"], "0x1ffffffffff");
        assert_eq!(f["container.id"], "host");
        assert!(alert.output.contains("changed without commit_creds (noticed at unshare)"), "{}", alert.output);
        assert!(alert.tags.iter().any(|t| t == "kernel_exploit"));
    }

    #[test]
    fn host_task_returning_home_and_summaries_stay_silent() {
        let mut p = pipeline();
        // The same transition by a task in the root cgroup and the host pid ns: not a container.
        let mut ev = escape_event(&p);
        ev.cgroup = [0; dcea_common::CGROUP_NAME_LEN];
        ev.cgroup_parent = [0; dcea_common::CGROUP_PARENT_LEN];
        assert!(p.process(&bytes_of(&ev)).is_none());
        // A runtime creating a container: a summary record.
        let mut runc = zeroed();
        runc.kind = EventKind::Transition as u32;
        runc.hook = Hook::Unshare as u32;
        runc.flags = flags::SUMMARY;
        runc.old = TaskSnapshot { ns: p.ctx.host.ns, ..Default::default() };
        runc.new = escape_event(&p).old;
        assert!(p.process(&bytes_of(&runc)).is_none());
        // Garbage is counted, not fatal.
        assert!(p.process(&[1, 2, 3]).is_none());
        assert_eq!((p.stats.records, p.stats.transitions, p.stats.alerts, p.stats.decode_errors), (3, 2, 0, 1));
    }
}
