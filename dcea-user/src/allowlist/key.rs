//! Which workload a container belongs to: the key its profile is stored under. A profile
//! belongs to a workload, not to one container instance, so the key leaves out what changes
//! with each instance (the container id, a pod's hash suffix, a Compose replica number).

use sha2::{Digest, Sha256};

use crate::container::metadata::ContainerMeta;

/// A workload: its key (what a profile is found by) and a file-safe profile name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub key: String,
    pub name: String,
}

const LABEL_TEMPLATE_HASH: &str = "pod-template-hash";
const LABEL_REVISION_HASH: &str = "controller-revision-hash";
const LABEL_TEMPLATE_GENERATION: &str = "pod-template-generation";
const LABEL_STATEFULSET_POD: &str = "statefulset.kubernetes.io/pod-name";
const LABEL_JOB_NAME: &str = "job-name";
const LABEL_BATCH_JOB_NAME: &str = "batch.kubernetes.io/job-name";
const LABEL_COMPOSE_PROJECT: &str = "com.docker.compose.project";
const LABEL_COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// The longest profile name (it is also a file name).
const NAME_MAX: usize = 96;

/// The workload of a container, or None when its metadata says too little (no name, no image).
pub fn workload(meta: &ContainerMeta) -> Option<Workload> {
    if let (Some(ns), Some(pod)) = (&meta.k8s_ns_name, &meta.k8s_pod_name) {
        let container = meta.k8s_container_name.as_deref().unwrap_or("");
        let labels = if meta.k8s_pod_labels.is_empty() { &meta.labels } else { &meta.k8s_pod_labels };
        let (kind, owner) = pod_owner(pod, |k| labels.get(k).map(String::as_str));
        let key = format!("k8s/{ns}/{kind}/{owner}/{container}");
        return Some(Workload { name: profile_name(&format!("{ns}.{owner}.{container}"), &key), key });
    }
    let image = meta.image_repository.clone().or_else(|| meta.image.clone()).or_else(|| meta.image_id.clone())?;
    let digest = meta.image_digest.as_deref().or(meta.image_id.as_deref()).unwrap_or("unknown");
    let label = |k: &str| meta.labels.get(k).filter(|v| !v.is_empty());
    let instance = match (label(LABEL_COMPOSE_PROJECT), label(LABEL_COMPOSE_SERVICE)) {
        (Some(project), Some(service)) => format!("compose:{project}/{service}"),
        _ => meta.name.clone()?.trim_start_matches('/').to_string(),
    };
    let key = format!("docker/{image}@{digest}/{instance}");
    let short = instance.trim_start_matches("compose:").replace('/', ".");
    Some(Workload { name: profile_name(&short, &key), key })
}

/// A pod's owner as (kind, name), from its name and the labels its controller sets: a
/// Deployment's ReplicaSet adds `pod-template-hash` (pods `<deploy>-<hash>-<suffix>`), a
/// StatefulSet `statefulset.kubernetes.io/pod-name` (pods `<sts>-<ordinal>`), a DaemonSet
/// `controller-revision-hash` with `pod-template-generation` (pods `<ds>-<suffix>`), a Job
/// `job-name`. A bare pod is its own owner.
pub fn pod_owner<'a>(pod: &'a str, label: impl Fn(&str) -> Option<&'a str>) -> (&'static str, String) {
    if let Some(hash) = label(LABEL_TEMPLATE_HASH).filter(|h| !h.is_empty())
        && let Some(at) = pod.rfind(&format!("-{hash}-"))
    {
        return ("deployment", pod[..at].to_string());
    }
    if label(LABEL_STATEFULSET_POD).is_some()
        && let Some((name, ordinal)) = pod.rsplit_once('-')
        && !ordinal.is_empty()
        && ordinal.bytes().all(|b| b.is_ascii_digit())
    {
        return ("statefulset", name.to_string());
    }
    if let Some(job) = label(LABEL_JOB_NAME).or_else(|| label(LABEL_BATCH_JOB_NAME)).filter(|j| !j.is_empty()) {
        return ("job", job.to_string());
    }
    if label(LABEL_REVISION_HASH).is_some()
        && label(LABEL_TEMPLATE_GENERATION).is_some()
        && let Some((name, _)) = pod.rsplit_once('-')
    {
        return ("daemonset", name.to_string());
    }
    ("pod", pod.to_string())
}

/// `readable` made file-safe, with 8 hex digits of the key's hash: two workloads whose names
/// read the same (another image digest, a hostile name) never share a profile file.
fn profile_name(readable: &str, key: &str) -> String {
    let mut safe: String = readable
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let trimmed = safe.trim_start_matches('.').len();
    safe = safe[safe.len() - trimmed..].to_string();
    safe.truncate(NAME_MAX);
    if safe.is_empty() {
        safe.push_str("workload");
    }
    let hash = Sha256::digest(key.as_bytes());
    format!("{safe}-{:02x}{:02x}{:02x}{:02x}", hash[0], hash[1], hash[2], hash[3])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn owner(pod: &str, pairs: &[(&str, &str)]) -> (&'static str, String) {
        let l = labels(pairs);
        pod_owner(pod, |k| l.get(k).map(String::as_str))
    }

    #[test]
    fn pods_of_one_controller_share_an_owner() {
        assert_eq!(owner("web-7d9f8c6b5-x2kqp", &[("pod-template-hash", "7d9f8c6b5")]), ("deployment", "web".into()));
        assert_eq!(
            owner("my-api-v2-5c6d7f-abcde", &[("pod-template-hash", "5c6d7f")]),
            ("deployment", "my-api-v2".into())
        );
        assert_eq!(
            owner("db-12", &[("statefulset.kubernetes.io/pod-name", "db-12"), ("controller-revision-hash", "db-6f")]),
            ("statefulset", "db".into())
        );
        assert_eq!(
            owner("node-exporter-q8x7z", &[("controller-revision-hash", "6b"), ("pod-template-generation", "3")]),
            ("daemonset", "node-exporter".into())
        );
        assert_eq!(
            owner("backup-28812345-7wq2f", &[("job-name", "backup-28812345")]),
            ("job", "backup-28812345".into())
        );
        assert_eq!(owner("debug", &[]), ("pod", "debug".into()));
        // A hash label that the name does not carry: the pod is taken as it is.
        assert_eq!(owner("odd", &[("pod-template-hash", "zzz")]), ("pod", "odd".into()));
    }

    #[test]
    fn docker_workloads_are_keyed_by_image_digest_and_name() {
        let meta = ContainerMeta {
            id: "a".repeat(64),
            name: Some("/web".into()),
            image_repository: Some("registry.example/shop/web".into()),
            image_digest: Some("sha256:abc".into()),
            ..Default::default()
        };
        let w = workload(&meta).expect("workload");
        assert_eq!(w.key, "docker/registry.example/shop/web@sha256:abc/web");
        assert!(w.name.starts_with("web-") && w.name.len() == "web-".len() + 8, "{}", w.name);
        let mut other = meta.clone();
        other.image_digest = Some("sha256:def".into());
        assert_ne!(workload(&other).expect("workload").name, w.name, "another image is another profile");
        let mut replica = meta.clone();
        replica.name = Some("shop-web-2".into());
        replica.labels = labels(&[("com.docker.compose.project", "shop"), ("com.docker.compose.service", "web")]);
        let r = workload(&replica).expect("workload");
        assert_eq!(r.key, "docker/registry.example/shop/web@sha256:abc/compose:shop/web");
        assert!(r.name.starts_with("shop.web-"), "{}", r.name);
        assert_eq!(workload(&ContainerMeta::default()), None, "nothing to key on");
    }

    #[test]
    fn kubernetes_workloads_leave_out_the_pod_suffix() {
        let meta = |pod: &str| ContainerMeta {
            k8s_ns_name: Some("shop".into()),
            k8s_pod_name: Some(pod.into()),
            k8s_container_name: Some("app".into()),
            k8s_pod_labels: labels(&[("pod-template-hash", "7d9f8c6b5")]),
            ..Default::default()
        };
        let a = workload(&meta("web-7d9f8c6b5-x2kqp")).expect("workload");
        let b = workload(&meta("web-7d9f8c6b5-zzzzz")).expect("workload");
        assert_eq!(a, b);
        assert_eq!(a.key, "k8s/shop/deployment/web/app");
        assert!(a.name.starts_with("shop.web.app-"), "{}", a.name);
    }

    #[test]
    fn hostile_names_make_safe_file_names() {
        for name in ["../../etc/passwd", "..", "/", "a\nb", "\u{202e}evil", &"x".repeat(4000)] {
            let meta =
                ContainerMeta { name: Some(name.into()), image_repository: Some("img".into()), ..Default::default() };
            let w = workload(&meta).expect("workload");
            assert!(!w.name.contains('/') && !w.name.starts_with('.') && w.name.len() <= NAME_MAX + 9, "{:?}", w.name);
            assert!(w.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{:?}", w.name);
        }
    }
}
