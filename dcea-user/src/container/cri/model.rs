//! CRI answers → dcea's container metadata. Pure functions over the runtime.v1 messages, so
//! recorded containerd and CRI-O answers test them without a runtime.

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use dcea_common::NsKind;
use k8s_cri::v1 as api;

use super::spec::{VerboseInfo, parse_verbose_info};
use crate::container::{
    Runtime,
    metadata::{ContainerMeta, split_image},
};

/// kubelet's labels on every sandbox and container it creates.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The key of the JSON document in a verbose status answer (containerd and CRI-O alike).
pub const INFO_KEY: &str = "info";

/// One pod sandbox as dcea keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    pub id: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    /// The pod's own labels (kubelet's `io.kubernetes.*` bookkeeping left out).
    pub labels: BTreeMap<String, String>,
    /// [`NsKind`] bits the pod shares with the node by design (hostNetwork: net and uts,
    /// hostPID: pid, hostIPC: ipc); `None` until a PodSandboxStatus said.
    pub node_ns: Option<u32>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn sorted(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn pod_labels(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().filter(|(k, _)| !k.starts_with("io.kubernetes.")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// NamespaceOption → the kinds shared with the node. UTS follows the network (kubelet gives a
/// hostNetwork pod the node's hostname).
pub fn node_namespaces(opts: &api::NamespaceOption) -> u32 {
    let node = api::NamespaceMode::Node as i32;
    let mut bits = 0;
    if opts.network == node {
        bits |= NsKind::Net.bit() | NsKind::Uts.bit();
    }
    if opts.pid == node {
        bits |= NsKind::Pid.bit() | NsKind::PidForChildren.bit();
    }
    if opts.ipc == node {
        bits |= NsKind::Ipc.bit();
    }
    bits
}

impl Pod {
    fn new(id: &str, meta: Option<&api::PodSandboxMetadata>, labels: &HashMap<String, String>) -> Pod {
        let from_label = |k: &str| labels.get(k).and_then(|v| non_empty(v));
        Pod {
            id: id.to_string(),
            name: meta.and_then(|m| non_empty(&m.name)).or_else(|| from_label(LABEL_POD_NAME)),
            namespace: meta.and_then(|m| non_empty(&m.namespace)).or_else(|| from_label(LABEL_POD_NAMESPACE)),
            uid: meta.and_then(|m| non_empty(&m.uid)).or_else(|| from_label(LABEL_POD_UID)),
            labels: pod_labels(labels),
            node_ns: None,
        }
    }

    /// From ListPodSandbox (no namespace options there).
    pub fn from_list(s: &api::PodSandbox) -> Pod {
        Pod::new(&s.id, s.metadata.as_ref(), &s.labels)
    }

    /// From PodSandboxStatus, with the namespace options kubelet asked for.
    pub fn from_status(s: &api::PodSandboxStatus) -> Pod {
        let mut pod = Pod::new(&s.id, s.metadata.as_ref(), &s.labels);
        pod.node_ns =
            s.linux.as_ref().and_then(|l| l.namespaces.as_ref()).and_then(|n| n.options.as_ref()).map(node_namespaces);
        pod
    }
}

/// The parts of a container that ListContainers and ContainerStatus both carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    pub id: String,
    pub sandbox_id: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub image_ref: Option<String>,
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// The mounts kubelet asked for (hostPath volumes among them): (host path, container
    /// path, read-only). Only ContainerStatus has them.
    pub mounts: Vec<(String, String, bool)>,
}

/// containerd lists the image by id (`sha256:…`) and names it in ContainerStatus; kubelet
/// ≥ 1.30 also sends the name the user wrote.
fn image_name(spec: Option<&api::ImageSpec>) -> Option<String> {
    let spec = spec?;
    non_empty(&spec.image).filter(|i| !i.starts_with("sha256:")).or_else(|| non_empty(&spec.user_specified_image))
}

impl ContainerFacts {
    pub fn from_list(c: &api::Container) -> ContainerFacts {
        ContainerFacts {
            id: c.id.clone(),
            sandbox_id: non_empty(&c.pod_sandbox_id),
            name: c.metadata.as_ref().and_then(|m| non_empty(&m.name)),
            image: image_name(c.image.as_ref()),
            image_ref: non_empty(&c.image_ref),
            image_id: non_empty(&c.image_id),
            labels: sorted(&c.labels),
            running: c.state == api::ContainerState::ContainerRunning as i32,
            mounts: Vec::new(),
        }
    }

    /// From ContainerStatus; the sandbox id is not in the status (the verbose info has it).
    pub fn from_status(s: &api::ContainerStatus) -> ContainerFacts {
        ContainerFacts {
            id: s.id.clone(),
            sandbox_id: None,
            name: s.metadata.as_ref().and_then(|m| non_empty(&m.name)),
            image: image_name(s.image.as_ref()),
            image_ref: non_empty(&s.image_ref),
            image_id: non_empty(&s.image_id),
            labels: sorted(&s.labels),
            running: s.state == api::ContainerState::ContainerRunning as i32,
            mounts: s.mounts.iter().map(|m| (m.host_path.clone(), m.container_path.clone(), m.readonly)).collect(),
        }
    }

    /// The later answer wins where it knows more.
    pub fn merge(mut self, later: ContainerFacts) -> ContainerFacts {
        if !later.id.is_empty() {
            self.id = later.id;
        }
        self.sandbox_id = later.sandbox_id.or(self.sandbox_id);
        self.name = later.name.or(self.name);
        self.image = later.image.or(self.image);
        self.image_ref = later.image_ref.or(self.image_ref);
        self.image_id = later.image_id.or(self.image_id);
        if !later.labels.is_empty() {
            self.labels = later.labels;
        }
        self.running = later.running;
        if !later.mounts.is_empty() {
            self.mounts = later.mounts;
        }
        self
    }
}

/// The verbose info of a ContainerStatus answer, if it sent one that parses.
pub fn verbose_of(resp: &api::ContainerStatusResponse) -> Option<VerboseInfo> {
    resp.info.get(INFO_KEY).and_then(|s| parse_verbose_info(s))
}

/// Kinds a container has its own namespace for: everything the pod does not share with the
/// node; from the OCI spec when the sandbox's options are not known.
fn private_namespaces(pod: Option<&Pod>, verbose: Option<&VerboseInfo>) -> u32 {
    let declared =
        NsKind::Net.bit() | NsKind::Uts.bit() | NsKind::Ipc.bit() | NsKind::Pid.bit() | NsKind::PidForChildren.bit();
    if let Some(node) = pod.and_then(|p| p.node_ns) {
        return declared & !node;
    }
    let Some(spec) = verbose.and_then(|v| v.spec.as_ref()) else { return 0 };
    let mut shared = 0;
    for name in &spec.host_namespaces {
        shared |= match name.as_str() {
            "net" => NsKind::Net.bit(),
            "uts" => NsKind::Uts.bit(),
            "ipc" => NsKind::Ipc.bit(),
            "pid" => NsKind::Pid.bit() | NsKind::PidForChildren.bit(),
            _ => 0,
        };
    }
    declared & !shared
}

/// Everything known about one container → the metadata every alert carries.
pub fn container_meta(
    facts: &ContainerFacts,
    pod: Option<&Pod>,
    verbose: Option<&VerboseInfo>,
    runtime: Runtime,
) -> ContainerMeta {
    let image = facts.image.clone();
    let (image_repository, image_tag, mut image_digest) = image.as_deref().map(split_image).unwrap_or_default();
    // image_ref is `repo@sha256:…` when the image came from a registry (or was imported with
    // digests), else the image id.
    if image_digest.is_none() {
        image_digest = facts.image_ref.as_deref().and_then(|r| r.split_once('@')).map(|(_, d)| d.to_string());
    }
    let image_id = facts.image_id.clone().or_else(|| facts.image_ref.clone().filter(|r| r.starts_with("sha256:")));
    let label = |k: &str| facts.labels.get(k).and_then(|v| non_empty(v));
    ContainerMeta {
        id: facts.id.clone(),
        runtime: Some(runtime),
        name: facts.name.clone().or_else(|| label(LABEL_CONTAINER_NAME)),
        image,
        image_repository,
        image_tag,
        image_digest,
        image_id,
        labels: facts.labels.clone(),
        privileged: verbose.and_then(|v| v.privileged),
        k8s_pod_name: pod.and_then(|p| p.name.clone()).or_else(|| label(LABEL_POD_NAME)),
        k8s_ns_name: pod.and_then(|p| p.namespace.clone()).or_else(|| label(LABEL_POD_NAMESPACE)),
        k8s_pod_uid: pod.and_then(|p| p.uid.clone()).or_else(|| label(LABEL_POD_UID)),
        k8s_pod_labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
        k8s_container_name: facts.name.clone().or_else(|| label(LABEL_CONTAINER_NAME)),
        pid: verbose.and_then(|v| v.pid),
        private_ns: private_namespaces(pod, verbose),
    }
}

/// The runtime a Version answer names.
pub fn runtime_of(version: &api::VersionResponse) -> Option<Runtime> {
    let name = version.runtime_name.to_ascii_lowercase();
    if name.contains("containerd") {
        Some(Runtime::Containerd)
    } else if name.contains("cri-o") || name == "crio" {
        Some(Runtime::CriO)
    } else {
        None
    }
}

/// A whole listing: containers (with their statuses where asked) joined with their pods.
pub fn join(
    containers: &[(ContainerFacts, Option<VerboseInfo>)],
    pods: &HashMap<String, Arc<Pod>>,
    runtime: Runtime,
) -> HashMap<String, Arc<ContainerMeta>> {
    containers
        .iter()
        .map(|(f, v)| {
            let sandbox = f.sandbox_id.clone().or_else(|| v.as_ref().and_then(|v| v.sandbox_id.clone()));
            let pod = sandbox.as_deref().and_then(|s| pods.get(s)).map(Arc::as_ref);
            (f.id.clone(), Arc::new(container_meta(f, pod, v.as_ref(), runtime)))
        })
        .collect()
}
