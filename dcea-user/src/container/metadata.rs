//! Container names, images and labels from the Docker engine (and, beside it, pods from the
//! CRI runtimes: [`super::cri`]), for every alert.
//!
//! [`MetadataCache::lookup`] is what alert producers call: a hash-map read, no I/O. Two
//! background threads fill the cache: one follows the engine's event stream (reconnecting with
//! backoff when the engine goes away, re-listing every running container on each connect), the
//! other inspects the containers the events name (and ids alerts asked about that the cache did
//! not know). Threads rather than async tasks because the engine client is blocking; either
//! way, nothing on the alert path waits for the engine. Without an engine, alerts carry the ids
//! the cgroup gave.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, RwLock, Weak,
        mpsc::{self, Receiver, Sender},
    },
    thread,
    time::{Duration, Instant},
};

use dcea_common::{CONTAINER_ID_LEN, NsKind};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ContainerRef, Runtime, engine};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerMeta {
    pub id: String,
    pub runtime: Option<Runtime>,
    pub name: Option<String>,
    /// The image as the user gave it (`repo:tag`, `repo@digest`, or an image id).
    pub image: Option<String>,
    pub image_repository: Option<String>,
    pub image_tag: Option<String>,
    /// Registry digest (`sha256:…`): from the reference, else the image's RepoDigests.
    pub image_digest: Option<String>,
    /// The local image id (`sha256:…`).
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub privileged: Option<bool>,
    pub k8s_pod_name: Option<String>,
    pub k8s_ns_name: Option<String>,
    pub k8s_container_name: Option<String>,
    /// The pod's uid and its own labels (CRI; Docker labels carry neither).
    pub k8s_pod_uid: Option<String>,
    pub k8s_pod_labels: BTreeMap<String, String>,
    /// Host pid of the container's init while it runs (`State.Pid`).
    pub pid: Option<u32>,
    /// [`NsKind`] bits the engine says the container has its own namespace for (e.g. net
    /// when `NetworkMode` is neither `host` nor `container:…`). The trust baseline never
    /// trusts a host namespace of these kinds, even when the init is already in one.
    pub private_ns: u32,
}

const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Is a namespace mode (`NetworkMode`, `PidMode`, …) the container's own namespace? `host` and
/// `container:<id>` share another's; an empty mode is the engine's private default except
/// where noted by the caller.
fn own_namespace(mode: Option<&str>, empty_is_private: bool) -> bool {
    match mode {
        None => false,
        Some("") => empty_is_private,
        Some(m) => m != "host" && !m.starts_with("container:"),
    }
}

impl ContainerMeta {
    /// From `GET /containers/<id>/json`.
    pub fn from_inspect(v: &Value) -> Option<ContainerMeta> {
        let id = str_at(v, "/Id")?;
        let labels: BTreeMap<String, String> = v
            .pointer("/Config/Labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let image = str_at(v, "/Config/Image");
        let (image_repository, image_tag, image_digest) = image.as_deref().map(split_image).unwrap_or_default();
        let host_config = |key: &str| v.pointer(&format!("/HostConfig/{key}")).and_then(Value::as_str);
        let mut private_ns = 0;
        if own_namespace(host_config("NetworkMode"), false) {
            private_ns |= NsKind::Net.bit();
        }
        if own_namespace(host_config("PidMode"), true) {
            private_ns |= NsKind::Pid.bit() | NsKind::PidForChildren.bit();
        }
        if own_namespace(host_config("IpcMode"), true) {
            private_ns |= NsKind::Ipc.bit();
        }
        if own_namespace(host_config("UTSMode"), true) {
            private_ns |= NsKind::Uts.bit();
        }
        Some(ContainerMeta {
            runtime: Some(Runtime::Docker),
            name: str_at(v, "/Name").map(|n| n.trim_start_matches('/').to_string()),
            image_repository,
            image_tag,
            image_digest,
            image_id: str_at(v, "/Image"),
            privileged: v.pointer("/HostConfig/Privileged").and_then(Value::as_bool),
            k8s_pod_name: labels.get(LABEL_POD_NAME).cloned(),
            k8s_ns_name: labels.get(LABEL_POD_NAMESPACE).cloned(),
            k8s_container_name: labels.get(LABEL_CONTAINER_NAME).cloned(),
            k8s_pod_uid: labels.get(crate::container::cri::model::LABEL_POD_UID).cloned(),
            k8s_pod_labels: BTreeMap::new(),
            pid: v.pointer("/State/Pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0),
            labels,
            image,
            private_ns,
            id,
        })
    }
}

/// `[registry[:port]/]repo[:tag][@digest]` → (repository, tag, digest). A bare repository is
/// `latest`, as the engine resolved it; an image id (`sha256:…`) has no repository.
pub fn split_image(reference: &str) -> (Option<String>, Option<String>, Option<String>) {
    if reference.starts_with("sha256:") {
        return (None, None, None);
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(name[last_slash + i + 1..].to_string())),
        None => (name, if digest.is_none() { Some("latest".to_string()) } else { None }),
    };
    (Some(repo.to_string()).filter(|r| !r.is_empty()), tag, digest)
}

/// Add Falco's container fields to an alert's `output_fields`: every key always present (null
/// when unknown), so alerts from every path have the same shape. `container.labels` is a JSON
/// object (Falco's `k:v, …` string cannot carry a comma or colon in a value unambiguously).
pub fn add_container_fields(
    fields: &mut BTreeMap<String, Value>,
    container: Option<&ContainerRef>,
    meta: Option<&ContainerMeta>,
) {
    let m = meta.filter(|m| container.is_some_and(|c| c.id == m.id));
    // The source that knows the container names its runtime (a kubepods cgroup path does not).
    let (id, runtime) = match container {
        Some(c) => (c.id.as_str(), m.and_then(|m| m.runtime).unwrap_or(c.runtime).as_str()),
        None => ("host", ""),
    };
    let opt = |f: fn(&ContainerMeta) -> Option<&String>| m.and_then(f).map_or(Value::Null, |s| json!(s));
    fields.insert("container.id".into(), json!(id));
    fields.insert("container.runtime".into(), json!(runtime));
    fields.insert("container.name".into(), if container.is_none() { json!("host") } else { opt(|m| m.name.as_ref()) });
    fields.insert("container.image".into(), opt(|m| m.image.as_ref()));
    fields.insert("container.image.repository".into(), opt(|m| m.image_repository.as_ref()));
    fields.insert("container.image.tag".into(), opt(|m| m.image_tag.as_ref()));
    fields.insert("container.image.digest".into(), opt(|m| m.image_digest.as_ref()));
    fields.insert("container.image.id".into(), opt(|m| m.image_id.as_ref()));
    fields.insert("container.privileged".into(), m.and_then(|m| m.privileged).map_or(Value::Null, Value::Bool));
    fields.insert("k8s.pod.name".into(), opt(|m| m.k8s_pod_name.as_ref()));
    fields.insert("k8s.ns.name".into(), opt(|m| m.k8s_ns_name.as_ref()));
    fields.insert("k8s.pod.uid".into(), opt(|m| m.k8s_pod_uid.as_ref()));
    fields.insert(
        "k8s.pod.labels".into(),
        m.filter(|m| m.k8s_pod_name.is_some()).map_or(Value::Null, |m| json!(m.k8s_pod_labels)),
    );
    fields.insert("container.labels".into(), m.map_or(Value::Null, |m| json!(m.labels)));
}

/// "name (image)" or the short id, for alert text; "in pod ns/name" when it is in one.
pub fn describe(container: &ContainerRef, meta: Option<&ContainerMeta>) -> String {
    let short = &container.id[..container.id.len().min(12)];
    let runtime = meta.and_then(|m| m.runtime).unwrap_or(container.runtime).as_str();
    let pod = match meta.and_then(|m| m.k8s_pod_name.as_deref().map(|p| (m.k8s_ns_name.as_deref(), p))) {
        Some((Some(ns), pod)) => format!(" in pod {ns}/{pod}"),
        Some((None, pod)) => format!(" in pod {pod}"),
        None => String::new(),
    };
    match meta.and_then(|m| m.name.as_deref().map(|n| (n, m.image.as_deref()))) {
        Some((name, Some(image))) => format!("{name} ({short}, {runtime}, image {image}){pod}"),
        Some((name, None)) => format!("{name} ({short}, {runtime}){pod}"),
        None => format!("{short} ({runtime})"),
    }
}

pub fn is_container_id(id: &str) -> bool {
    id.len() == CONTAINER_ID_LEN && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

enum Work {
    /// (Re)connected: list every running container.
    Resync,
    /// No engine answered: the cache is as ready as it will get.
    EngineDown,
    Refresh(String),
    Remove(String),
}

#[derive(Default)]
struct Inner {
    map: RwLock<HashMap<String, Arc<ContainerMeta>>>,
    work: Option<Sender<Work>>,
    /// Ids a lookup missed, and when the worker was last asked about them.
    asked: Mutex<HashMap<String, Instant>>,
    ready: Mutex<bool>,
    ready_cv: Condvar,
}

/// See the module comment. Cloning shares the cache.
#[derive(Clone, Default)]
pub struct MetadataCache {
    inner: Arc<Inner>,
    /// The CRI runtimes' pods and containers, when any is followed.
    cri: Option<super::cri::CriCache>,
}

/// How long a lookup miss waits before asking the engine about the same id again.
const ASK_AGAIN: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl MetadataCache {
    /// An empty cache that never asks an engine (no engine, unit tests).
    pub fn disabled() -> MetadataCache {
        MetadataCache::default()
    }

    /// Start following the engine at `socket` in the background.
    pub fn start(socket: PathBuf) -> MetadataCache {
        let (tx, rx) = mpsc::channel();
        let cache =
            MetadataCache { inner: Arc::new(Inner { work: Some(tx.clone()), ..Default::default() }), cri: None };
        let weak = Arc::downgrade(&cache.inner);
        let s = socket.clone();
        let spawned = thread::Builder::new()
            .name("dcea-engine-inspect".into())
            .spawn(move || inspect_worker(&s, rx, weak))
            .and_then(|_| thread::Builder::new().name("dcea-engine-events".into()).spawn(move || watch(&socket, tx)));
        if let Err(e) = spawned {
            tracing::warn!("container metadata unavailable: cannot start its thread: {e}");
            cache.set_ready();
        }
        cache
    }

    /// One synchronous listing (for one-shot commands, never the alert path).
    pub fn fetch(socket: &Path) -> Result<MetadataCache, engine::EngineError> {
        let cache = MetadataCache::disabled();
        let all = list_all(socket, &mut HashMap::new())?;
        *cache.inner.map.write().unwrap_or_else(|e| e.into_inner()) = all;
        cache.set_ready();
        Ok(cache)
    }

    /// The same cache, also answering from the CRI runtimes (Docker's answer wins for an id
    /// both know, as on a dockershim node).
    pub fn with_cri(mut self, cri: super::cri::CriCache) -> MetadataCache {
        self.cri = Some(cri);
        self
    }

    /// The CRI part, if any.
    pub fn cri(&self) -> Option<&super::cri::CriCache> {
        self.cri.as_ref()
    }

    /// Never blocks on the engine: a map read. A miss for a container id asks the background
    /// worker to inspect it (at most every 30 s per id), so a later alert has it.
    pub fn lookup(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        if let Some(m) = self.inner.map.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Some(m.clone());
        }
        if let Some(m) = self.cri.as_ref().and_then(|c| c.lookup(id)) {
            return Some(m);
        }
        if let (Some(tx), true) = (&self.inner.work, is_container_id(id)) {
            // try_lock: a contended miss skips asking rather than wait.
            if let Ok(mut asked) = self.inner.asked.try_lock() {
                let now = Instant::now();
                if asked.get(id).is_none_or(|t| now.duration_since(*t) > ASK_AGAIN) {
                    if asked.len() > 4096 {
                        asked.clear();
                    }
                    asked.insert(id.to_string(), now);
                    let _ = tx.send(Work::Refresh(id.to_string()));
                }
            }
        }
        None
    }

    pub fn insert(&self, meta: ContainerMeta) {
        self.inner.map.write().unwrap_or_else(|e| e.into_inner()).insert(meta.id.clone(), Arc::new(meta));
    }

    pub fn len(&self) -> usize {
        self.inner.map.read().unwrap_or_else(|e| e.into_inner()).len() + self.cri.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait (at start-up only) until the first listing is in or the engine proved absent.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        let ready = self.inner.ready.lock().unwrap_or_else(|e| e.into_inner());
        let (ready, _) =
            self.inner.ready_cv.wait_timeout_while(ready, timeout, |r| !*r).unwrap_or_else(|e| e.into_inner());
        let docker = *ready;
        drop(ready);
        let cri = self.cri.as_ref().is_none_or(|c| c.wait_ready(timeout.saturating_sub(start.elapsed())));
        docker && cri
    }

    fn set_ready(&self) {
        set_ready(&self.inner);
    }
}

fn set_ready(inner: &Inner) {
    *inner.ready.lock().unwrap_or_else(|e| e.into_inner()) = true;
    inner.ready_cv.notify_all();
}

const EVENTS_PATH: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22create%22%2C%22start%22%2C%22restart%22%2C%22rename%22%2C%22update%22%2C%22die%22%2C%22destroy%22%5D%7D";

/// One line of the event stream → what to do about it.
fn parse_event(line: &[u8]) -> Option<Work> {
    let v = engine::parse_json(line).ok()?;
    if v.get("Type").and_then(Value::as_str) != Some("container") {
        return None;
    }
    let id = str_at(&v, "/Actor/ID").or_else(|| str_at(&v, "/id")).filter(|id| is_container_id(id))?;
    match v.get("Action").and_then(Value::as_str)? {
        "destroy" => Some(Work::Remove(id)),
        "create" | "start" | "restart" | "rename" | "update" | "die" => Some(Work::Refresh(id)),
        _ => None,
    }
}

/// Follow the event stream; on every (re)connect ask for a full listing.
fn watch(socket: &Path, tx: Sender<Work>) {
    let mut backoff = Duration::from_secs(1);
    let mut down_reported = false;
    loop {
        match engine::get_stream(socket, EVENTS_PATH, None) {
            Ok(body) => {
                if down_reported {
                    tracing::info!(
                        "Docker engine at {} answers again: container names and labels resume",
                        socket.display()
                    );
                    down_reported = false;
                }
                backoff = Duration::from_secs(1);
                if tx.send(Work::Resync).is_err() {
                    return;
                }
                let mut reader = BufReader::new(body);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            if let Some(work) = parse_event(&line)
                                && tx.send(work).is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::debug!("Docker event stream: {e}");
                            break;
                        }
                    }
                }
                tracing::info!("Docker engine event stream ended; reconnecting");
            }
            Err(e) => {
                if !down_reported {
                    tracing::info!("no Docker engine ({e}): alerts carry container ids only until it answers");
                    down_reported = true;
                }
                if tx.send(Work::EngineDown).is_err() {
                    return;
                }
            }
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn inspect_worker(socket: &Path, rx: Receiver<Work>, cache: Weak<Inner>) {
    // Image id → registry digest, asked once per image.
    let mut digests: HashMap<String, Option<String>> = HashMap::new();
    for work in rx {
        let Some(inner) = cache.upgrade() else { return };
        let map = || inner.map.write().unwrap_or_else(|e| e.into_inner());
        match work {
            Work::Resync => {
                match list_all(socket, &mut digests) {
                    Ok(all) => *map() = all,
                    Err(e) => tracing::debug!("listing containers: {e}"),
                }
                set_ready(&inner);
            }
            Work::EngineDown => set_ready(&inner),
            Work::Refresh(id) => match inspect(socket, &id, &mut digests) {
                Ok(Some(meta)) => {
                    map().insert(id, Arc::new(meta));
                }
                Ok(None) => {
                    map().remove(&id);
                }
                Err(e) => tracing::debug!("inspecting container {id}: {e}"),
            },
            Work::Remove(id) => {
                map().remove(&id);
            }
        }
    }
}

/// Every running container, inspected.
fn list_all(
    socket: &Path,
    digests: &mut HashMap<String, Option<String>>,
) -> Result<HashMap<String, Arc<ContainerMeta>>, engine::EngineError> {
    let list = engine::get_json(socket, "/containers/json")?;
    let mut all = HashMap::new();
    for id in list.as_array().into_iter().flatten().filter_map(|c| str_at(c, "/Id")) {
        if let Some(meta) = inspect(socket, &id, digests)? {
            all.insert(id, Arc::new(meta));
        }
    }
    Ok(all)
}

/// `None` when the engine no longer knows the container.
fn inspect(
    socket: &Path,
    id: &str,
    digests: &mut HashMap<String, Option<String>>,
) -> Result<Option<ContainerMeta>, engine::EngineError> {
    let v = match engine::get_json(socket, &format!("/containers/{}/json", engine::path_segment(id))) {
        Ok(v) => v,
        Err(engine::EngineError::Status { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(mut meta) = ContainerMeta::from_inspect(&v) else {
        return Ok(None);
    };
    if meta.image_digest.is_none()
        && let Some(image_id) = meta.image_id.clone()
    {
        let digest = digests
            .entry(image_id.clone())
            .or_insert_with(|| {
                engine::get_json(socket, &format!("/images/{}/json", engine::path_segment(&image_id)))
                    .ok()
                    .and_then(|img| repo_digest(&img, meta.image_repository.as_deref()))
            })
            .clone();
        meta.image_digest = digest;
    }
    Ok(Some(meta))
}

/// The digest of `repository` in an image's RepoDigests (`repo@sha256:…`), else the first.
fn repo_digest(image: &Value, repository: Option<&str>) -> Option<String> {
    let all: Vec<&str> = image.get("RepoDigests")?.as_array()?.iter().filter_map(Value::as_str).collect();
    let pick = all.iter().find(|d| repository.is_some_and(|r| d.split_once('@').is_some_and(|(n, _)| n == r)));
    pick.or(all.first()).and_then(|d| d.split_once('@')).map(|(_, digest)| digest.to_string())
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        os::unix::net::UnixListener,
    };

    use super::*;

    const ID: &str = "3f4e5d6c7b8a99001122334455667788aabbccddeeff00112233445566778899";

    #[test]
    fn image_references() {
        let s = |r: &str| {
            let (a, b, c) = split_image(r);
            (a.unwrap_or_default(), b.unwrap_or_default(), c.unwrap_or_default())
        };
        assert_eq!(s("busybox"), ("busybox".into(), "latest".into(), "".into()));
        assert_eq!(s("dcea-test/busybox:1.36"), ("dcea-test/busybox".into(), "1.36".into(), "".into()));
        assert_eq!(s("registry:5000/team/app:v2"), ("registry:5000/team/app".into(), "v2".into(), "".into()));
        assert_eq!(s("registry:5000/team/app"), ("registry:5000/team/app".into(), "latest".into(), "".into()));
        assert_eq!(s("app@sha256:abcd"), ("app".into(), "".into(), "sha256:abcd".into()));
        assert_eq!(s("app:1@sha256:abcd"), ("app".into(), "1".into(), "sha256:abcd".into()));
        assert_eq!(s("sha256:e0919cd52e43"), ("".into(), "".into(), "".into()));
    }

    fn inspect_json(name: &str, labels: Value, host_config: Value) -> Value {
        json!({
            "Id": ID, "Name": format!("/{name}"), "Image": "sha256:e0919cd52e43",
            "Config": {"Image": "dcea-test/busybox:latest", "Labels": labels},
            "HostConfig": host_config,
            "State": {"Pid": 4242},
        })
    }

    #[test]
    fn inspect_fields_kubernetes_labels_and_declared_namespaces() {
        let v = inspect_json(
            "web",
            json!({LABEL_POD_NAME: "api-7d9", LABEL_POD_NAMESPACE: "prod", LABEL_CONTAINER_NAME: "api", "n": 1}),
            json!({"Privileged": true, "NetworkMode": "none", "PidMode": "host", "IpcMode": "private", "UTSMode": ""}),
        );
        let m = ContainerMeta::from_inspect(&v).unwrap();
        assert_eq!(m.name.as_deref(), Some("web"));
        assert_eq!(m.image_repository.as_deref(), Some("dcea-test/busybox"));
        assert_eq!(m.image_tag.as_deref(), Some("latest"));
        assert_eq!(m.image_id.as_deref(), Some("sha256:e0919cd52e43"));
        assert_eq!(m.privileged, Some(true));
        assert_eq!(m.pid, Some(4242));
        assert_eq!((m.k8s_pod_name.as_deref(), m.k8s_ns_name.as_deref()), (Some("api-7d9"), Some("prod")));
        assert_eq!(m.k8s_container_name.as_deref(), Some("api"));
        assert_eq!(m.labels["n"], "1", "non-string label values are kept as text");
        assert_eq!(m.private_ns, NsKind::Net.bit() | NsKind::Ipc.bit() | NsKind::Uts.bit());
        // Kubernetes pods on dockershim share the pause container's namespaces: not declared.
        let pod = inspect_json(
            "k8s_api",
            json!({}),
            json!({"NetworkMode": "container:abc", "IpcMode": "container:abc", "PidMode": "", "UTSMode": ""}),
        );
        assert_eq!(
            ContainerMeta::from_inspect(&pod).unwrap().private_ns,
            NsKind::Pid.bit() | NsKind::PidForChildren.bit() | NsKind::Uts.bit()
        );
        assert!(ContainerMeta::from_inspect(&json!({"Name": "x"})).is_none(), "no id, no metadata");
    }

    #[test]
    fn falco_fields_for_container_unknown_and_host() {
        let c = ContainerRef { id: ID.into(), runtime: Runtime::Docker };
        let m =
            ContainerMeta::from_inspect(&inspect_json("web", json!({"a": "b"}), json!({"Privileged": false}))).unwrap();
        let mut f = BTreeMap::new();
        add_container_fields(&mut f, Some(&c), Some(&m));
        assert_eq!(f["container.name"], "web");
        assert_eq!(f["container.image"], "dcea-test/busybox:latest");
        assert_eq!(f["container.privileged"], false);
        assert_eq!(f["container.labels"], json!({"a": "b"}));
        let keys: Vec<String> = f.keys().cloned().collect();
        let mut unknown = BTreeMap::new();
        add_container_fields(&mut unknown, Some(&c), None);
        assert_eq!(unknown.keys().cloned().collect::<Vec<_>>(), keys, "same keys with or without metadata");
        assert_eq!(unknown["container.id"], ID);
        assert_eq!(unknown["container.name"], Value::Null);
        let mut host = BTreeMap::new();
        add_container_fields(&mut host, None, Some(&m));
        assert_eq!((host["container.id"].as_str(), host["container.name"].as_str()), (Some("host"), Some("host")));
        assert_eq!(host["container.image"], Value::Null, "metadata of another container is never attached");
    }

    #[test]
    fn events_become_work() {
        let ev = |action: &str, ty: &str| {
            format!(r#"{{"Type":"{ty}","Action":"{action}","Actor":{{"ID":"{ID}","Attributes":{{"name":"x\ny"}}}}}}"#)
        };
        assert!(matches!(parse_event(ev("start", "container").as_bytes()), Some(Work::Refresh(id)) if id == ID));
        assert!(matches!(parse_event(ev("destroy", "container").as_bytes()), Some(Work::Remove(_))));
        assert!(parse_event(ev("exec_start: sh", "container").as_bytes()).is_none());
        assert!(parse_event(ev("start", "network").as_bytes()).is_none());
        assert!(parse_event(br#"{"Type":"container","Action":"start","Actor":{"ID":"../../x"}}"#).is_none());
        assert!(parse_event(b"\xff\xfe not json").is_none());
    }

    /// A fake engine on a unix socket answering from a table; hostile bytes included.
    fn fake_engine(dir: &Path, routes: Vec<(String, Vec<u8>)>) -> PathBuf {
        let sock = dir.join("docker.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        thread::spawn(move || {
            let mut streams = Vec::new();
            for mut conn in listener.incoming().flatten() {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_string();
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
                let (status, body) = match routes.iter().find(|(p, _)| path == *p) {
                    Some((_, body)) => ("200 OK", body.clone()),
                    None if path.starts_with("/events") => {
                        // An event stream that stays open with nothing to say.
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                        streams.push(conn);
                        continue;
                    }
                    None => ("404 Not Found", br#"{"message":"no such container"}"#.to_vec()),
                };
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = conn.write_all(&body);
            }
        });
        sock
    }

    #[test]
    fn hostile_names_and_labels_from_an_engine_stay_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        // Raw bytes as a broken or hostile engine might send: a newline escape, quotes, a
        // backslash, an ANSI escape and bytes that are not UTF-8 inside JSON strings.
        let mut inspect = Vec::new();
        inspect.extend_from_slice(format!(r#"{{"Id":"{ID}","Name":"/evil\n\"name\"\\"#).as_bytes());
        inspect.extend_from_slice(b"\xff\xfe");
        inspect
            .extend_from_slice(br#"","Image":"sha256:1","Config":{"Image":"img:1","Labels":{"k\"ey":"v\nal\u001b[31m"#);
        inspect.extend_from_slice(b"\xc3\x28");
        inspect.extend_from_slice(br#""}},"HostConfig":{"Privileged":true},"State":{"Pid":0}}"#);
        let sock = fake_engine(
            dir.path(),
            vec![
                ("/containers/json".into(), format!(r#"[{{"Id":"{ID}"}}]"#).into_bytes()),
                (format!("/containers/{ID}/json"), inspect),
                ("/images/sha256%3A1/json".into(), br#"{"RepoDigests":["img@sha256:feed"]}"#.to_vec()),
            ],
        );
        let cache = MetadataCache::fetch(&sock).unwrap();
        let m = cache.lookup(ID).expect("hostile container listed");
        assert_eq!(m.name.as_deref(), Some("evil\n\"name\"\\\u{FFFD}\u{FFFD}"));
        assert_eq!(m.labels["k\"ey"], "v\nal\u{1b}[31m\u{FFFD}(");
        assert_eq!(m.image_digest.as_deref(), Some("sha256:feed"));
        assert_eq!(m.pid, None);
        let c = ContainerRef { id: ID.into(), runtime: Runtime::Docker };
        let mut f = BTreeMap::new();
        add_container_fields(&mut f, Some(&c), Some(&m));
        let line = serde_json::to_string(&f).unwrap();
        assert!(!line.contains('\n'), "{line}");
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["container.name"], "evil\n\"name\"\\\u{FFFD}\u{FFFD}");
        assert!(describe(&c, Some(&m)).starts_with("evil\n"), "text output escapes later (output::escape_text)");

        // The background cache: a miss asks the worker, a later lookup has it.
        let bg = MetadataCache::start(sock);
        assert!(bg.wait_ready(Duration::from_secs(5)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while bg.lookup(ID).is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(bg.lookup(ID).is_some());
        assert!(bg.lookup(&"0".repeat(64)).is_none(), "unknown ids are a miss, not an error");
    }

    #[test]
    fn no_engine_means_ids_only_and_no_wait() {
        let cache = MetadataCache::start(PathBuf::from("/nonexistent/docker.sock"));
        assert!(cache.wait_ready(Duration::from_secs(5)), "an absent engine must not hold start-up");
        let t = Instant::now();
        assert!(cache.lookup(ID).is_none());
        assert!(t.elapsed() < Duration::from_millis(50));
        assert!(MetadataCache::fetch(Path::new("/nonexistent/docker.sock")).is_err());
    }
}
