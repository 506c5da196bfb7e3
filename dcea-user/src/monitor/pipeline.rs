//! From ring-buffer record to alert: decode, classify, enrich, render.

use std::{collections::BTreeMap, fs};

use dcea_common::{Event, Hook, NsKind, entered_host_mask, flags};
use serde_json::{Value, json};

use super::decode::{cgroup_path, decode, exe_path};
use crate::{
    container::{self, ContainerRef},
    output::{Alert, Priority, SOURCE, rfc3339_nanos},
    sys::c_bytes_to_string,
    trust::{HostNamespaces, Verdict, classify},
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

/// Everything the pipeline needs that does not change while it runs.
pub struct AlertContext {
    pub host: HostNamespaces,
    pub hostname: String,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC at start, to put kernel timestamps on the wall clock.
    pub realtime_offset_ns: i128,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PipelineStats {
    pub records: u64,
    pub decode_errors: u64,
    pub transitions: u64,
    pub alerts: u64,
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
        let container = if ev.flags & flags::CGROUP_RESOLVED != 0 {
            container::from_cgroup_path(&cgroup_path(ev))
        } else {
            container::of_pid(ev.tgid)
        };
        ProcessDetails { exe, parent_name, container }
    }
}

pub struct Pipeline {
    pub ctx: AlertContext,
    pub stats: PipelineStats,
}

impl Pipeline {
    pub fn new(ctx: AlertContext) -> Pipeline {
        Pipeline { ctx, stats: PipelineStats::default() }
    }

    /// Decode and classify one record. Cheap for the benign majority: /proc is read only
    /// when the verdict depends on it or an alert is raised.
    pub fn process(&mut self, record: &[u8]) -> Option<Alert> {
        self.stats.records += 1;
        let ev = match decode(record) {
            Ok(ev) => ev,
            Err(e) => {
                self.stats.decode_errors += 1;
                tracing::warn!("dropping malformed ring-buffer record: {e}");
                return None;
            }
        };
        let (verdict, details) = self.judge(&ev);
        if verdict == Verdict::Benign {
            return None;
        }
        self.stats.alerts += 1;
        let details = details.unwrap_or_else(|| ProcessDetails::collect(&ev));
        Some(build_alert(&ev, verdict, &self.ctx, &details))
    }

    /// Classify; consult /proc only when the kernel sent no cgroup names for a task that
    /// entered a host namespace (a hierarchy the runtime does not populate, or an old kernel).
    pub fn judge(&mut self, ev: &Event) -> (Verdict, Option<ProcessDetails>) {
        if ev.kind == dcea_common::EventKind::Transition as u32 {
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

fn kinds(mask: u32) -> Vec<&'static str> {
    NsKind::ALL.iter().filter(|k| mask & k.bit() != 0).map(|k| k.name()).collect()
}

pub fn build_alert(ev: &Event, verdict: Verdict, ctx: &AlertContext, details: &ProcessDetails) -> Alert {
    let comm = c_bytes_to_string(&ev.comm);
    let hook = Hook::from_u32(ev.hook).map(Hook::name).unwrap_or("unknown");
    let epoch_ns = (ev.ktime_ns as i128 + ctx.realtime_offset_ns).max(0) as u64;
    let killed = ev.flags & flags::KILLED != 0;
    let (container_id, runtime) = match &details.container {
        Some(c) => (c.id.clone(), c.runtime.as_str()),
        None => ("host".to_string(), ""),
    };

    let mut f: BTreeMap<String, Value> = BTreeMap::new();
    f.insert("container.id".into(), json!(container_id));
    f.insert("container.runtime".into(), json!(runtime));
    f.insert("proc.pid".into(), json!(ev.tgid));
    f.insert("proc.tid".into(), json!(ev.pid));
    f.insert("proc.name".into(), json!(comm));
    f.insert("proc.exepath".into(), json!(details.exe));
    f.insert("proc.ppid".into(), json!(ev.ppid));
    f.insert("proc.pname".into(), json!(details.parent_name));
    f.insert("user.uid".into(), json!(ev.new.uid));
    f.insert("evt.type".into(), json!(hook));
    f.insert("evt.res".into(), json!(ev.ret));
    f.insert("evt.rawtime".into(), json!(epoch_ns));
    f.insert("dcea.ktime_ns".into(), json!(ev.ktime_ns));
    f.insert("dcea.detected_by".into(), json!("ebpf"));
    f.insert("dcea.action".into(), json!(if killed { "killed" } else { "alert" }));
    f.insert("dcea.at_syscall_entry".into(), json!(ev.flags & flags::AT_ENTRY != 0));

    let changed = dcea_common::changed_mask(&ev.old, &ev.new);
    let mut moves = Vec::new();
    for k in NsKind::ALL.iter().filter(|k| changed & k.bit() != 0) {
        let (from, to) = (ev.old.ns[k.index()], ev.new.ns[k.index()]);
        f.insert(format!("dcea.ns.{}.from", k.name()), json!(from));
        f.insert(format!("dcea.ns.{}.to", k.name()), json!(to));
        moves.push(format!("{} {from}->{to}", k.name()));
    }
    f.insert("dcea.ns.changed".into(), json!(kinds(changed)));
    let tampered_creds = ev.flags & flags::CRED_TAMPERED;
    if tampered_creds != 0 {
        f.insert("dcea.cred.tampered".into(), json!(cred_tamper_names(tampered_creds)));
        f.insert("dcea.cred.uid.from".into(), json!(ev.old.uid));
        f.insert("dcea.cred.uid.to".into(), json!(ev.new.uid));
        f.insert("dcea.cred.euid.from".into(), json!(ev.old.euid));
        f.insert("dcea.cred.euid.to".into(), json!(ev.new.euid));
        f.insert("dcea.cred.caps.from".into(), json!(format!("{:#x}", ev.old.cap_effective)));
        f.insert("dcea.cred.caps.to".into(), json!(format!("{:#x}", ev.new.cap_effective)));
    }

    let who = format!(
        "{comm} (pid={} tid={} exe={} parent={} ppid={} uid={})",
        ev.tgid, ev.pid, details.exe, details.parent_name, ev.ppid, ev.new.uid
    );
    let where_ = match &details.container {
        Some(c) => format!("container {} ({})", short_id(&c.id), c.runtime.as_str()),
        None => format!("a non-host pid namespace {}", ev.old.ns[NsKind::Pid.index()]),
    };
    let action = if killed { "; killed before returning to user space (enforce)" } else { "" };

    let (rule, priority, tags, output) = match verdict {
        Verdict::Escape { entered, unexplained } => {
            f.insert("dcea.ns.entered_host".into(), json!(kinds(entered)));
            f.insert("dcea.unexplained".into(), json!(unexplained));
            let how = if unexplained {
                format!("without a namespace syscall (noticed at {hook})")
            } else {
                format!("via {hook}")
            };
            (
                RULE_ESCAPE,
                Priority::Critical,
                vec!["container", "escape", "namespace", "mitre_privilege_escalation", "T1611"],
                format!(
                    "Container escape: {who} in {where_} entered host {} namespace(s) {how} [{}]{action}",
                    kinds(entered).join(","),
                    moves.join(", ")
                ),
            )
        }
        Verdict::Tampered { changed } => (
            RULE_TAMPERED,
            Priority::Critical,
            vec!["kernel_exploit", "namespace", "mitre_privilege_escalation", "T1068"],
            format!(
                "Namespaces of {who} changed without a namespace syscall (noticed at {hook}): {} [{}]",
                kinds(changed).join(","),
                moves.join(", ")
            ),
        ),
        Verdict::CredEscalation { gained_root, gained_caps } => {
            f.insert("dcea.cred.euid.from".into(), json!(ev.old.euid));
            f.insert("dcea.cred.euid.to".into(), json!(ev.new.euid));
            f.insert("dcea.cred.caps_gained".into(), json!(format!("{gained_caps:#x}")));
            (
                RULE_CRED_ESCALATION,
                // Gaining root is worse than gaining a capability.
                if gained_root { Priority::Critical } else { Priority::Warning },
                vec!["container", "privilege_escalation", "mitre_privilege_escalation", "T1068"],
                format!(
                    "Privileges raised in {where_}: {who} euid {}->{}{} via commit_creds",
                    ev.old.euid,
                    ev.new.euid,
                    if gained_caps != 0 { format!(", gained capabilities {gained_caps:#x}") } else { String::new() },
                ),
            )
        }
        Verdict::CredTampered { how } => (
            RULE_CRED_TAMPERED,
            Priority::Critical,
            vec!["kernel_exploit", "credentials", "mitre_privilege_escalation", "T1068"],
            format!(
                "Credentials of {who} changed without commit_creds (noticed at {hook}): {}; uid {}->{} euid {}->{} caps {:#x}->{:#x}",
                cred_tamper_names(how).join(", "),
                ev.old.uid,
                ev.new.uid,
                ev.old.euid,
                ev.new.euid,
                ev.old.cap_effective,
                ev.new.cap_effective,
            ),
        ),
        Verdict::Benign => (
            "Namespace transition",
            Priority::Informational,
            vec!["namespace"],
            format!("{who} namespace transition via {hook} [{}]", moves.join(", ")),
        ),
    };
    Alert {
        time: rfc3339_nanos(epoch_ns),
        rule: rule.to_string(),
        priority,
        output,
        output_fields: f,
        source: SOURCE,
        tags,
        hostname: ctx.hostname.clone(),
    }
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::decode::tests::{bytes_of, zeroed};
    use dcea_common::{EventKind, NsKind, TaskSnapshot};

    const ID: &str = "3f4e5d6c7b8a99001122334455667788aabbccddeeff00112233445566778899";

    fn pipeline() -> Pipeline {
        let mut ns = HostNamespaces::fixed();
        ns[NsKind::Mnt.index()] = 4026531832;
        ns[NsKind::Net.index()] = 4026531833;
        Pipeline::new(AlertContext {
            host: HostNamespaces { ns, mnt_net_source: "test".into() },
            hostname: "node-1".into(),
            realtime_offset_ns: 1_700_000_000_000_000_000,
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
        assert!(alert.tags.contains(&"kernel_exploit"));
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
