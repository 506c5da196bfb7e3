//! The verbose `info` a CRI runtime returns with `ContainerStatus(verbose)`: a JSON document
//! under the key `info`, with the container's init pid and the OCI runtime spec it was
//! created from. containerd adds the CreateContainer config (`config`, with the declared
//! security context); CRI-O a top-level `privileged`. Everything is read from
//! `serde_json::Value` so that a field a runtime leaves out, or sends with another type, is
//! just unknown.

use serde::Serialize;
use serde_json::Value;

/// The OCI spec's namespace kinds, and the name dcea uses for each.
pub const OCI_NAMESPACES: [(&str, &str); 8] = [
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpecMount {
    pub destination: String,
    pub source: String,
    #[serde(rename = "type")]
    pub fstype: String,
    pub options: Vec<String>,
}

/// What the scanners and the trust baseline need from an OCI runtime spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SpecSummary {
    pub capabilities_effective: Vec<String>,
    pub capabilities_bounding: Vec<String>,
    /// dcea names of the kinds the spec gives no namespace of its own: runc leaves the
    /// container in the runtime's (the host's) namespace for those.
    pub host_namespaces: Vec<String>,
    /// Kinds joined by path (`/proc/<pid>/ns/net` of the pod sandbox): shared within the pod.
    pub joined_namespaces: Vec<String>,
    pub mounts: Vec<SpecMount>,
    /// No masked or read-only /proc paths: what a privileged container's spec looks like.
    pub unmasked_proc: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerboseInfo {
    pub pid: Option<u32>,
    pub sandbox_id: Option<String>,
    /// Declared privileged (containerd: the config's security context; CRI-O: top level).
    pub privileged: Option<bool>,
    pub spec: Option<SpecSummary>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// An OCI runtime spec (config.json) → what dcea checks. `None` when it is not an object.
pub fn summarize_spec(spec: &Value) -> Option<SpecSummary> {
    spec.as_object()?;
    let caps = spec.pointer("/process/capabilities");
    let namespaces: Vec<(String, bool)> = spec
        .pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| {
                    let kind = n.get("type")?.as_str()?.to_string();
                    let joined = n.get("path").and_then(Value::as_str).is_some_and(|p| !p.is_empty());
                    Some((kind, joined))
                })
                .collect()
        })
        .unwrap_or_default();
    let has_linux_ns = spec.pointer("/linux/namespaces").is_some_and(Value::is_array);
    let mut host_namespaces = Vec::new();
    let mut joined_namespaces = Vec::new();
    for (oci, name) in OCI_NAMESPACES {
        match namespaces.iter().find(|(k, _)| k == oci) {
            Some((_, true)) => joined_namespaces.push(name.to_string()),
            Some((_, false)) => {}
            // user, cgroup and time are optional kinds: leaving them out is the common case,
            // not a host namespace worth naming (the scanners read the inodes from /proc).
            None if has_linux_ns && matches!(oci, "pid" | "network" | "ipc" | "uts" | "mount") => {
                host_namespaces.push(name.to_string())
            }
            None => {}
        }
    }
    let mounts = spec
        .get("mounts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|m| m.is_object())
                .map(|m| SpecMount {
                    destination: text(m, "destination"),
                    source: text(m, "source"),
                    fstype: text(m, "type"),
                    options: strings(m.get("options")),
                })
                .collect()
        })
        .unwrap_or_default();
    let masked = strings(spec.pointer("/linux/maskedPaths"));
    let readonly = strings(spec.pointer("/linux/readonlyPaths"));
    Some(SpecSummary {
        capabilities_effective: strings(caps.and_then(|c| c.get("effective"))),
        capabilities_bounding: strings(caps.and_then(|c| c.get("bounding"))),
        host_namespaces,
        joined_namespaces,
        mounts,
        unmasked_proc: spec.get("linux").is_some_and(Value::is_object) && masked.is_empty() && readonly.is_empty(),
    })
}

/// The `info` entry of a verbose ContainerStatus answer. `None` when it is absent or is not a
/// JSON object (a runtime that answers garbage loses the extras, never the container).
pub fn parse_verbose_info(info: &str) -> Option<VerboseInfo> {
    let v: Value = serde_json::from_str(info).ok()?;
    v.as_object()?;
    let pid = v.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0);
    let privileged = v.get("privileged").and_then(Value::as_bool).or_else(|| {
        // containerd's config is Go JSON with omitempty: a security context without
        // `privileged` is an unprivileged one.
        let sc = v.pointer("/config/linux/security_context")?;
        sc.is_object().then(|| sc.get("privileged").and_then(Value::as_bool).unwrap_or(false))
    });
    Some(VerboseInfo {
        pid,
        sandbox_id: v.get("sandboxID").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        privileged,
        spec: v.get("runtimeSpec").and_then(summarize_spec),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spec_namespaces_mounts_and_caps() {
        let spec = json!({
            "process": {"capabilities": {"effective": ["CAP_SYS_ADMIN", 7], "bounding": ["CAP_SYS_ADMIN"]}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
                {"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "rw"]},
                "junk"
            ],
            "linux": {
                "namespaces": [{"type": "mount"}, {"type": "network", "path": "/proc/42/ns/net"}, {"type": "uts"}],
                "maskedPaths": [], "readonlyPaths": []
            }
        });
        let s = summarize_spec(&spec).unwrap();
        assert_eq!(s.capabilities_effective, vec!["CAP_SYS_ADMIN"], "non-strings are skipped");
        assert_eq!(s.host_namespaces, vec!["pid", "ipc"]);
        assert_eq!(s.joined_namespaces, vec!["net"]);
        assert_eq!(s.mounts.len(), 2);
        assert_eq!((s.mounts[1].destination.as_str(), s.mounts[1].source.as_str()), ("/host", "/"));
        assert!(s.unmasked_proc);
        assert!(summarize_spec(&json!([1, 2])).is_none());
        let bare = summarize_spec(&json!({})).unwrap();
        assert!(bare.host_namespaces.is_empty() && !bare.unmasked_proc, "no linux section: nothing to say");
    }

    #[test]
    fn verbose_info_of_both_runtimes_and_garbage() {
        let containerd =
            json!({"sandboxID": "s1", "pid": 4242, "config": {"linux": {"security_context": {"privileged": true}}},
            "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}]}}})
            .to_string();
        let v = parse_verbose_info(&containerd).unwrap();
        assert_eq!((v.pid, v.privileged, v.sandbox_id.as_deref()), (Some(4242), Some(true), Some("s1")));
        let crio = json!({"sandboxID": "s2", "pid": 0, "privileged": false, "runtimeSpec": {}}).to_string();
        let v = parse_verbose_info(&crio).unwrap();
        assert_eq!((v.pid, v.privileged), (None, Some(false)), "pid 0 is a stopped container");
        for bad in ["", "null", "[]", "{", "\"x\"", "{\"pid\": -1, \"runtimeSpec\": 5}"] {
            let got = parse_verbose_info(bad);
            assert!(got.as_ref().is_none_or(|v| v.pid.is_none() && v.spec.is_none()), "{bad}: {got:?}");
        }
    }
}
