//! deploy/kubernetes as typed Kubernetes objects, and its DaemonSet as the `docker run` that
//! does on one node what the kubelet would: same image, arguments, environment, security
//! context, host namespaces and mounts. Everything the translation does not know is a panic,
//! so a field added to the manifest cannot silently go untested.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Container, Namespace, PodSpec, SecurityContext, ServiceAccount},
};
use serde::Deserialize;
use serde_json::Value;

/// One object of the manifests.
#[derive(Debug, Clone)]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    DaemonSet(Box<DaemonSet>),
}

/// Every document of a YAML stream as a typed object. A field the Kubernetes types do not
/// have (a typo, a wrong level) is an error: the typed object must serialise back to exactly
/// the document.
pub fn parse(origin: &str, text: &str) -> Vec<Object> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: document {i}: {e}"));
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_else(|| panic!("{origin}: document {i} has no kind")).to_string();
        fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(origin: &str, kind: &str, v: &Value) -> T {
            let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{origin}: {kind}: {e}"));
            let back = serde_json::to_value(&t).expect("serialise");
            if &back != v {
                panic!("{origin}: {kind} has fields Kubernetes does not know:\n{}", diff(v, &back, ""));
            }
            t
        }
        out.push(match kind.as_str() {
            "Namespace" => Object::Namespace(typed(origin, &kind, &value)),
            "ServiceAccount" => Object::ServiceAccount(typed(origin, &kind, &value)),
            "ConfigMap" => Object::ConfigMap(typed(origin, &kind, &value)),
            "DaemonSet" => Object::DaemonSet(Box::new(typed(origin, &kind, &value))),
            other => panic!("{origin}: unexpected kind {other}"),
        });
    }
    out
}

/// Paths where `a` (as written) and `b` (as typed) differ.
fn diff(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .map(|(k, v)| match y.get(k) {
                Some(w) => diff(v, w, &format!("{path}.{k}")),
                None => format!("  {path}.{k} (unknown field)\n"),
            })
            .collect(),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().map(|(i, (v, w))| diff(v, w, &format!("{path}[{i}]"))).collect()
        }
        _ if a == b => String::new(),
        _ => format!("  {path}: {a} read as {b}\n"),
    }
}

/// `kubectl kustomize DIR`: what `kubectl apply -k DIR` applies.
pub fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().expect("spawn kubectl");
    assert!(out.status.success(), "kubectl kustomize {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The set's DaemonSet and ConfigMap (exactly one of each).
pub fn daemonset_and_config(objects: &[Object]) -> (&DaemonSet, &ConfigMap) {
    let ds: Vec<&DaemonSet> = objects
        .iter()
        .filter_map(|o| match o {
            Object::DaemonSet(d) => Some(d.as_ref()),
            _ => None,
        })
        .collect();
    let cm: Vec<&ConfigMap> = objects
        .iter()
        .filter_map(|o| match o {
            Object::ConfigMap(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!((ds.len(), cm.len()), (1, 1), "one DaemonSet and one ConfigMap");
    (ds[0], cm[0])
}

pub fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("DaemonSet has a pod spec")
}

pub fn agent_container(ds: &DaemonSet) -> &Container {
    let spec = pod_spec(ds);
    assert_eq!(spec.containers.len(), 1, "one container");
    assert!(spec.init_containers.is_none(), "init containers are not translated");
    &spec.containers[0]
}

/// The DaemonSet's pod as `docker run` arguments (everything between `run` and the image's
/// arguments, image included) plus the stop timeout.
pub struct DockerRun {
    pub args: Vec<String>,
    pub stop_timeout_secs: i64,
}

/// Translate the pod. `host_path` maps a hostPath to the host directory to use (the test's
/// own state directory instead of the node's); ConfigMap volumes are written under `scratch`.
pub fn docker_run(ds: &DaemonSet, cm: &ConfigMap, host_path: &dyn Fn(&str) -> PathBuf, scratch: &Path) -> DockerRun {
    let spec = pod_spec(ds);
    let c = agent_container(ds);
    let mut args: Vec<String> = Vec::new();
    let flag = |on: Option<bool>| on.unwrap_or(false);
    if flag(spec.host_pid) {
        args.push("--pid=host".into());
    }
    if flag(spec.host_ipc) {
        args.push("--ipc=host".into());
    }
    if flag(spec.host_network) {
        // The kubelet's runtimes leave a hostNetwork pod in the host's UTS namespace too.
        args.extend(["--network=host".into(), "--uts=host".into()]);
    } else {
        args.push("--network=none".into());
    }
    assert!(spec.share_process_namespace.is_none() && spec.host_users.is_none(), "namespace fields not translated");
    // Scheduling and API-side fields have no meaning for one container on one node.
    let _scheduling = (
        &spec.priority_class_name,
        &spec.tolerations,
        &spec.service_account_name,
        &spec.automount_service_account_token,
        &spec.dns_policy,
        &spec.node_selector,
        &spec.affinity,
    );
    assert!(spec.security_context.is_none(), "pod securityContext not translated");
    if let Some(sc) = &c.security_context {
        args.extend(security_context(sc));
    }
    for e in c.env.iter().flatten() {
        assert!(e.value_from.is_none(), "env {}: valueFrom not translated", e.name);
        args.push(format!("--env={}={}", e.name, e.value.as_deref().unwrap_or("")));
    }
    if let Some(limits) = c.resources.as_ref().and_then(|r| r.limits.as_ref()) {
        for (k, q) in limits {
            match k.as_str() {
                "memory" => args.push(format!("--memory={}", memory_bytes(&q.0))),
                "cpu" => args.push(format!("--cpus={}", cpus(&q.0))),
                other => panic!("limit {other} not translated"),
            }
        }
    }
    let volumes: BTreeMap<&str, _> = spec.volumes.iter().flatten().map(|v| (v.name.as_str(), v)).collect();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes.get(m.name.as_str()).unwrap_or_else(|| panic!("mount {} has no volume", m.name));
        assert!(m.sub_path.is_none() && m.sub_path_expr.is_none(), "subPath not translated");
        let source = if let Some(hp) = &v.host_path {
            let src = host_path(&hp.path);
            match hp.type_.as_deref().unwrap_or("") {
                "Directory" => assert!(src.is_dir(), "hostPath {} (Directory) missing on this node", hp.path),
                "File" => assert!(src.is_file(), "hostPath {} (File) missing on this node", hp.path),
                "DirectoryOrCreate" => std::fs::create_dir_all(&src).expect("create hostPath"),
                other => panic!("hostPath type '{other}' not translated"),
            }
            src
        } else if let Some(cmv) = &v.config_map {
            assert_eq!(
                cmv.name,
                cm.metadata.name.clone().unwrap_or_default(),
                "configMap volume names the set's ConfigMap"
            );
            let dir = scratch.join(&v.name);
            let data = cm.data.as_ref().expect("ConfigMap data");
            for item in cmv.items.as_ref().expect("configMap items") {
                let path = dir.join(&item.path);
                std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
                std::fs::write(&path, &data[&item.key]).expect("write ConfigMap item");
            }
            dir
        } else {
            panic!("volume {}: only hostPath and configMap are translated", v.name);
        };
        let mut opt = format!("--mount=type=bind,source={},target={}", source.display(), m.mount_path);
        if flag(m.read_only) {
            opt.push_str(",readonly");
        }
        match m.mount_propagation.as_deref() {
            None | Some("None") => {}
            // Propagation needs a shared (or slave) host mount, as on a systemd node; this
            // machine's are private, where neither Docker nor the kubelet can give it.
            Some(p @ ("HostToContainer" | "Bidirectional")) if !propagates(&source) => {
                eprintln!("k8s: {}: mountPropagation {p} left out: the host mount is private here", m.mount_path)
            }
            Some("HostToContainer") => opt.push_str(",bind-propagation=rslave"),
            Some("Bidirectional") => opt.push_str(",bind-propagation=rshared"),
            Some(other) => panic!("mountPropagation {other}"),
        }
        args.push(opt);
    }
    if let Some(cmd) = &c.command {
        args.push(format!("--entrypoint={}", cmd.join(" ")));
    }
    args.push(c.image.clone().expect("image"));
    args.extend(c.args.iter().flatten().cloned());
    DockerRun { args, stop_timeout_secs: spec.termination_grace_period_seconds.unwrap_or(30) }
}

/// Is the mount that holds `path` shared or a slave (so that propagation can be set up)?
fn propagates(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mount_point = Path::new(*f.get(4)?);
            let optional = f.get(6..)?.iter().take_while(|x| **x != "-");
            let shared = optional.clone().any(|o| o.starts_with("shared:") || o.starts_with("master:"));
            path.starts_with(mount_point).then_some((mount_point.as_os_str().len(), shared))
        })
        .max_by_key(|(len, _)| *len)
        .is_some_and(|(_, shared)| shared)
}

fn security_context(sc: &SecurityContext) -> Vec<String> {
    let mut args = Vec::new();
    if sc.privileged == Some(true) {
        args.push("--privileged".into());
    }
    if let Some(caps) = &sc.capabilities {
        args.extend(caps.drop.iter().flatten().map(|c| format!("--cap-drop={c}")));
        args.extend(caps.add.iter().flatten().map(|c| format!("--cap-add={c}")));
    }
    if sc.read_only_root_filesystem == Some(true) {
        args.push("--read-only".into());
    }
    match (sc.run_as_user, sc.run_as_group) {
        (Some(u), Some(g)) => args.push(format!("--user={u}:{g}")),
        (Some(u), None) => args.push(format!("--user={u}")),
        (None, None) => {}
        (None, Some(_)) => panic!("runAsGroup without runAsUser"),
    }
    if sc.allow_privilege_escalation == Some(false) {
        args.push("--security-opt=no-new-privileges".into());
    }
    match sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()) {
        None | Some("RuntimeDefault") => {} // Docker's default profile
        Some("Unconfined") => args.push("--security-opt=seccomp=unconfined".into()),
        Some(other) => panic!("seccompProfile {other} not translated"),
    }
    match sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()) {
        None | Some("RuntimeDefault") => {}
        Some("Unconfined") => args.push("--security-opt=apparmor=unconfined".into()),
        Some(other) => panic!("appArmorProfile {other} not translated"),
    }
    assert!(sc.se_linux_options.is_none() && sc.proc_mount.is_none() && sc.run_as_non_root.is_none(), "not translated");
    args
}

/// A Kubernetes memory quantity in bytes (Ki/Mi/Gi and plain numbers).
pub fn memory_bytes(q: &str) -> u64 {
    let (num, mult) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .into_iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, m)))
        .unwrap_or((q, 1));
    num.parse::<u64>().unwrap_or_else(|_| panic!("memory quantity {q}")) * mult
}

/// A Kubernetes CPU quantity in cores (`500m`, `1`).
pub fn cpus(q: &str) -> f64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().unwrap_or_else(|_| panic!("cpu quantity {q}")) / 1000.0,
        None => q.parse().unwrap_or_else(|_| panic!("cpu quantity {q}")),
    }
}
