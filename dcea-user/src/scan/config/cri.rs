//! What the CRI runtime says about its containers, beside what /proc shows: the pod, the
//! container's name and image, and the settings it was created with (privileged, capabilities,
//! the namespaces the pod shares with the node, the hostPath volumes kubelet asked for), from
//! ContainerStatus's verbose info and the OCI spec the runtime keeps.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Serialize;

use super::{
    checks::Issue,
    discover::Target,
    mounts::{SENSITIVE, is_under},
};
use crate::{
    container::{
        cri::{self, Listing},
        metadata::ContainerMeta,
    },
    scan::report::{Finding, Severity, Status, Subject},
};

/// The settings the runtime was asked for, as the scan report shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Declared {
    pub privileged: Option<bool>,
    /// Kinds the pod shares with the node by design (hostNetwork, hostPID, hostIPC).
    pub node_namespaces: Vec<String>,
    pub capabilities: Vec<String>,
    /// hostPath volumes and kubelet's own files: (host path, container path, read-only).
    pub host_mounts: Vec<HostMount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostMount {
    pub host_path: String,
    pub container_path: String,
    pub readonly: bool,
}

/// `namespace/pod/container`, the name `--container` matches for a CRI container.
pub fn display_name(m: &ContainerMeta) -> Option<String> {
    let name = m.name.as_deref()?;
    Some(match (m.k8s_ns_name.as_deref(), m.k8s_pod_name.as_deref()) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}/{name}"),
        (None, Some(pod)) => format!("{pod}/{name}"),
        _ => name.to_string(),
    })
}

fn declared(l: &Listing, id: &str) -> Option<(Declared, Option<u32>)> {
    let (facts, verbose) = l.containers.get(id)?;
    let sandbox = facts.sandbox_id.as_deref().or_else(|| verbose.as_ref().and_then(|v| v.sandbox_id.as_deref()));
    let node_ns = sandbox.and_then(|s| l.pods.get(s)).and_then(|p| p.node_ns).unwrap_or(0);
    let d = Declared {
        privileged: verbose.as_ref().and_then(|v| v.privileged),
        node_namespaces: crate::monitor::alert::kinds(node_ns & !dcea_common::NsKind::PidForChildren.bit())
            .into_iter()
            .map(str::to_string)
            .collect(),
        capabilities: verbose
            .as_ref()
            .and_then(|v| v.spec.as_ref())
            .map(|s| s.capabilities_effective.clone())
            .unwrap_or_default(),
        host_mounts: facts
            .mounts
            .iter()
            .map(|(h, c, ro)| HostMount { host_path: h.clone(), container_path: c.clone(), readonly: *ro })
            .collect(),
    };
    Some((d, verbose.as_ref().and_then(|v| v.pid)))
}

/// Name the targets /proc found after what the runtimes say; add running containers /proc did
/// not attribute (an unusual cgroup layout) by the pid the runtime gives.
pub fn enrich(targets: &mut BTreeMap<String, Target>, sockets: &[PathBuf], warnings: &mut Vec<String>) {
    for (sock, got) in cri::fetch(sockets) {
        let l = match got {
            Ok(l) => l,
            Err(e) => {
                warnings.push(format!("CRI runtime at {}: {e}; its containers are named by id only", sock.display()));
                continue;
            }
        };
        let metas = l.metas();
        for (id, m) in &metas {
            let Some((decl, pid)) = declared(&l, id) else { continue };
            let t = match (targets.get_mut(id), pid) {
                (Some(t), _) => t,
                (None, Some(pid)) if l.containers.get(id).is_some_and(|(f, _)| f.running) => {
                    targets.entry(id.clone()).or_insert(Target {
                        id: id.clone(),
                        name: None,
                        image: None,
                        runtime: l.runtime,
                        pid,
                        pod: None,
                        declared: None,
                    })
                }
                _ => continue,
            };
            t.name = display_name(m).or(t.name.take());
            t.image = m.image.clone().or(t.image.take());
            t.runtime = l.runtime;
            t.pod = m.k8s_pod_name.as_ref().map(|p| match &m.k8s_ns_name {
                Some(ns) => format!("{ns}/{p}"),
                None => p.clone(),
            });
            t.declared = Some(decl);
        }
    }
}

/// Findings only the declaration shows: a hostPath volume of a sensitive host directory (the
/// container's mountinfo names the filesystem, not always the host path).
pub fn findings(t: &Target, subject: &Subject) -> Vec<Finding> {
    let Some(d) = &t.declared else { return Vec::new() };
    let mut out = Vec::new();
    for m in &d.host_mounts {
        // A sensitive directory, a path below it (not below `/`: that is every path), or an
        // ancestor of it; the most severe, then the shortest, names the finding.
        let Some((dir, sev)) = SENSITIVE
            .iter()
            .filter(|(dir, _)| (*dir != "/" && is_under(&m.host_path, dir)) || is_under(dir, &m.host_path))
            .max_by_key(|(dir, sev)| (*sev, std::cmp::Reverse(dir.len())))
        else {
            continue;
        };
        // Read-only: one step less.
        let sev = if m.readonly { lower(*sev) } else { *sev };
        let issue = Issue::new("DCEA-CFG-CRI-HOSTPATH", format!("hostPath volume of host {dir}"), sev, Some("5.5"))
            .evidence(format!(
                "the runtime mounts host {} at {}{}",
                m.host_path,
                m.container_path,
                if m.readonly { " read-only" } else { " read-write" }
            ))
            .fix("Remove the hostPath volume, or mount only the file the workload needs, read-only");
        out.push(Finding {
            id: issue.id,
            title: issue.title,
            severity: issue.severity,
            status: Status::Fail,
            subject: subject.clone(),
            evidence: issue.evidence,
            remediation: issue.remediation.to_string(),
            cis: issue.cis.map(str::to_string),
            cves: Vec::new(),
        });
    }
    out
}

fn lower(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        _ => Severity::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Runtime;

    #[test]
    fn host_path_volumes_become_findings() {
        let mut t = Target {
            id: "c".repeat(64),
            name: Some("prod/web/app".into()),
            image: None,
            runtime: Runtime::CriO,
            pid: 1,
            pod: Some("prod/web".into()),
            declared: None,
        };
        let subject = Subject { kind: "container".into(), id: t.id.clone(), name: t.name.clone() };
        assert!(findings(&t, &subject).is_empty(), "nothing declared, nothing found");
        let mount = |h: &str, ro| HostMount { host_path: h.into(), container_path: "/x".into(), readonly: ro };
        t.declared = Some(Declared {
            host_mounts: vec![mount("/etc", false), mount("/var/run/docker.sock", true), mount("/srv/data", false)],
            ..Default::default()
        });
        let f = findings(&t, &subject);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!((f[0].title.as_str(), f[0].severity), ("hostPath volume of host /etc", Severity::High));
        assert_eq!(f[1].title, "hostPath volume of host /var/run");
        assert_eq!(f[1].severity, Severity::Medium, "read-only is one step less");
        let m = ContainerMeta {
            name: Some("app".into()),
            k8s_pod_name: Some("web".into()),
            k8s_ns_name: Some("prod".into()),
            ..Default::default()
        };
        assert_eq!(display_name(&m).as_deref(), Some("prod/web/app"));
    }
}
