//! The mapping over answers recorded from a real containerd 1.6 (tests/tests/cri.rs,
//! `record_containerd_answers`) and CRI-O answers in the shape CRI-O's ContainerStatus writes
//! (`info` = {sandboxID, pid, runtimeSpec, privileged}).

use std::{collections::HashMap, sync::Arc};

use dcea_common::NsKind;
use k8s_cri::v1 as api;

use super::{model::*, spec::VerboseInfo};
use crate::container::Runtime;

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/src/container/cri/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

type Containers = Vec<(ContainerFacts, Option<VerboseInfo>)>;

fn containerd_listing() -> (Containers, HashMap<String, Arc<Pod>>) {
    let list: api::ListContainersResponse = load("containerd-list-containers.json");
    let status: api::ContainerStatusResponse = load("containerd-container-status.json");
    let sandbox: api::PodSandboxStatusResponse = load("containerd-pod-sandbox-status.json");
    let facts = ContainerFacts::from_list(&list.containers[0])
        .merge(ContainerFacts::from_status(status.status.as_ref().unwrap()));
    let pod = Pod::from_status(sandbox.status.as_ref().unwrap());
    (vec![(facts, verbose_of(&status))], [(pod.id.clone(), Arc::new(pod))].into())
}

#[test]
fn containerd_recording_gives_every_falco_field() {
    let version: api::VersionResponse = load("containerd-version.json");
    assert_eq!(runtime_of(&version), Some(Runtime::Containerd));
    let (containers, pods) = containerd_listing();
    let metas = join(&containers, &pods, Runtime::Containerd);
    let m = metas.values().next().unwrap();
    assert_eq!(m.runtime, Some(Runtime::Containerd));
    assert_eq!(m.name.as_deref(), Some("app"));
    assert_eq!(m.k8s_pod_name.as_deref(), Some("web-28937-0"));
    assert_eq!(m.k8s_ns_name.as_deref(), Some("dcea-test"));
    assert_eq!(m.k8s_pod_uid.as_deref(), Some("00007109-0000-4000-8000-3e10a877bb21"));
    assert_eq!(m.k8s_pod_labels.get("app").map(String::as_str), Some("web"));
    assert!(!m.k8s_pod_labels.keys().any(|k| k.starts_with("io.kubernetes.")), "kubelet's labels are not the pod's");
    assert_eq!(m.image.as_deref(), Some("docker.io/dcea-test/busybox:latest"), "named by the status, not the id");
    assert_eq!(m.image_repository.as_deref(), Some("docker.io/dcea-test/busybox"));
    assert_eq!(m.image_tag.as_deref(), Some("latest"));
    assert!(m.image_digest.as_deref().is_some_and(|d| d.starts_with("sha256:")), "{:?}", m.image_digest);
    assert_eq!(m.privileged, Some(true));
    assert_eq!(m.pid, Some(29019));
    // hostPID + hostNetwork pod: only ipc (and mnt, always) is its own.
    assert_eq!(m.private_ns, NsKind::Ipc.bit());
    let spec = containers[0].1.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(spec.joined_namespaces, vec!["pid", "net", "ipc", "uts"]);
    assert!(spec.capabilities_effective.iter().any(|c| c == "CAP_SYS_ADMIN"), "privileged: every capability");
    assert!(spec.unmasked_proc);
}

#[test]
fn crio_answers_give_the_same_fields() {
    let version: api::VersionResponse = load("crio-version.json");
    assert_eq!(runtime_of(&version), Some(Runtime::CriO));
    let status: api::ContainerStatusResponse = load("crio-container-status.json");
    let v = verbose_of(&status).expect("CRI-O's verbose info");
    assert_eq!(v.privileged, Some(false), "CRI-O says privileged at the top level");
    let facts = ContainerFacts::from_status(status.status.as_ref().unwrap());
    // The sandbox comes from the verbose info (ContainerStatus has no sandbox id).
    let sandbox: api::PodSandboxStatusResponse = load("containerd-pod-sandbox-status.json");
    let mut pod = Pod::from_status(sandbox.status.as_ref().unwrap());
    pod.node_ns = None;
    let pods = [(v.sandbox_id.clone().unwrap(), Arc::new(pod))].into();
    let m = join(&[(facts, Some(v))], &pods, Runtime::CriO).into_values().next().unwrap();
    assert_eq!(m.runtime, Some(Runtime::CriO));
    assert_eq!(crate::container::Runtime::CriO.as_str(), "cri-o");
    assert_eq!((m.image_repository.as_deref(), m.image_tag.as_deref()), (Some("quay.io/team/api"), Some("v2")));
    assert_eq!(m.image_digest.as_deref(), Some(format!("sha256:{}", "ab".repeat(32)).as_str()));
    assert_eq!(m.k8s_pod_name.as_deref(), Some("web-28937-0"));
    // No namespace options known: from the spec, which joins the sandbox's namespaces.
    assert_eq!(
        m.private_ns,
        NsKind::Net.bit() | NsKind::Uts.bit() | NsKind::Ipc.bit() | NsKind::Pid.bit() | NsKind::PidForChildren.bit()
    );
}

#[test]
fn namespace_options_to_shared_kinds() {
    let opts = |network, pid, ipc| api::NamespaceOption { network, pid, ipc, ..Default::default() };
    let (pod, ctr, node) =
        (api::NamespaceMode::Pod as i32, api::NamespaceMode::Container as i32, api::NamespaceMode::Node as i32);
    assert_eq!(node_namespaces(&opts(pod, ctr, pod)), 0);
    assert_eq!(node_namespaces(&opts(node, ctr, pod)), NsKind::Net.bit() | NsKind::Uts.bit());
    assert_eq!(
        node_namespaces(&opts(pod, node, node)),
        NsKind::Pid.bit() | NsKind::PidForChildren.bit() | NsKind::Ipc.bit()
    );
    assert_eq!(node_namespaces(&opts(7, -1, 99)), 0, "unknown modes are not the node's");
}

#[test]
fn a_container_without_pod_or_status_still_has_its_labels() {
    let c = api::Container {
        id: "c".repeat(64),
        labels: [
            (LABEL_POD_NAME.to_string(), "p".to_string()),
            (LABEL_POD_NAMESPACE.to_string(), "ns".to_string()),
            (LABEL_POD_UID.to_string(), "u".to_string()),
            (LABEL_CONTAINER_NAME.to_string(), "x".to_string()),
        ]
        .into(),
        image: Some(api::ImageSpec { image: "sha256:1234".into(), ..Default::default() }),
        ..Default::default()
    };
    let m = container_meta(&ContainerFacts::from_list(&c), None, None, Runtime::Containerd);
    assert_eq!(
        (m.k8s_pod_name.as_deref(), m.k8s_ns_name.as_deref(), m.k8s_pod_uid.as_deref()),
        (Some("p"), Some("ns"), Some("u"))
    );
    assert_eq!(m.name.as_deref(), Some("x"));
    assert_eq!(m.image, None, "an image id is not a name");
    assert_eq!(m.private_ns, 0, "nothing known: nothing declared");
    assert_eq!(m.privileged, None);
}

#[test]
fn a_refresh_of_an_unknown_id_keeps_the_id() {
    let status: api::ContainerStatusResponse = load("containerd-container-status.json");
    let facts = ContainerFacts::default().merge(ContainerFacts::from_status(status.status.as_ref().unwrap()));
    assert_eq!(facts.id, status.status.unwrap().id, "the metadata's id must match the key alerts look up");
}

#[test]
fn a_socket_that_appears_later_is_followed_once_under_any_name() {
    let dir = tempfile::tempdir().unwrap();
    let cache = super::CriCache::start(Vec::new());
    assert!(cache.sockets().is_empty());
    let first = dir.path().join("containerd.sock");
    let _l1 = std::os::unix::net::UnixListener::bind(&first).unwrap();
    let alias = dir.path().join("alias.sock");
    std::os::unix::fs::symlink(&first, &alias).unwrap();
    assert_eq!(cache.follow_new(vec![first.clone(), alias.clone()]), vec![first.clone()], "one runtime, two names");
    assert!(cache.follow_new(vec![alias]).is_empty(), "already followed");
    let second = dir.path().join("crio.sock");
    let _l2 = std::os::unix::net::UnixListener::bind(&second).unwrap();
    assert_eq!(cache.follow_new(vec![first.clone(), second.clone()]), vec![second.clone()]);
    assert_eq!(cache.sockets(), vec![first, second]);
}
