//! The background side of one CRI socket: connect (with backoff, saying once what it could
//! not reach), list every pod and container, then follow the runtime's event stream or, where
//! it has none (containerd 1.6), poll the listings. Lookup misses ask for one container.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use tokio::sync::mpsc::UnboundedReceiver;

use super::{
    Source,
    client::{self, Client, CriError},
    model::{ContainerFacts, Pod, container_meta, join, runtime_of, verbose_of},
    socket::runtime_of_path,
    spec::VerboseInfo,
};
use crate::container::{Runtime, metadata::ContainerMeta};

/// How often the listings are read when the runtime has no event stream.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// A full listing now and then even with events (a missed event must not last).
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub enum Work {
    /// A lookup missed this id.
    Refresh(String),
}

/// One runtime's pods and containers as last read.
pub struct Listing {
    pub runtime: Runtime,
    /// Keep each container's whole spec summary (the scanners); the monitor keeps only what
    /// alerts and the trust baseline use (about 8 KiB less per container).
    pub keep_spec: bool,
    pub pods: HashMap<String, Arc<Pod>>,
    pub containers: HashMap<String, (ContainerFacts, Option<VerboseInfo>)>,
}

impl Listing {
    pub fn new(runtime: Runtime) -> Listing {
        Listing { runtime, keep_spec: false, pods: HashMap::new(), containers: HashMap::new() }
    }

    /// The verbose info as this listing keeps it.
    fn keep(&self, v: Option<VerboseInfo>) -> Option<VerboseInfo> {
        if self.keep_spec {
            return v;
        }
        v.map(|mut v| {
            v.spec =
                v.spec.map(|s| super::spec::SpecSummary { host_namespaces: s.host_namespaces, ..Default::default() });
            v
        })
    }

    pub fn metas(&self) -> HashMap<String, Arc<ContainerMeta>> {
        let all: Vec<(ContainerFacts, Option<VerboseInfo>)> = self.containers.values().cloned().collect();
        join(&all, &self.pods, self.runtime)
    }

    fn meta_of(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        let (f, v) = self.containers.get(id)?;
        let sandbox = f.sandbox_id.as_deref().or_else(|| v.as_ref().and_then(|v| v.sandbox_id.as_deref()));
        let pod = sandbox.and_then(|s| self.pods.get(s)).map(Arc::as_ref);
        Some(Arc::new(container_meta(f, pod, v.as_ref(), self.runtime)))
    }
}

/// Connect and learn which runtime answers.
pub async fn open(socket: &Path) -> Result<(Client, Runtime), CriError> {
    let mut c = client::connect(socket).await?;
    let v = client::version(&mut c).await?;
    let runtime = runtime_of(&v).unwrap_or_else(|| runtime_of_path(socket));
    Ok((c, runtime))
}

async fn pod(c: &mut Client, listed: &k8s_cri::v1::PodSandbox) -> Result<Pod, CriError> {
    Ok(match client::pod_sandbox_status(c, &listed.id).await? {
        Some(s) => Pod::from_status(&s),
        None => Pod::from_list(listed),
    })
}

/// Read both listings; ask for the status of pods and containers not seen before (all of
/// them the first time), keep what is known of the rest.
pub async fn resync(c: &mut Client, l: &mut Listing) -> Result<(), CriError> {
    let sandboxes = client::list_pod_sandboxes(c).await?;
    let mut pods = HashMap::with_capacity(sandboxes.len());
    for s in &sandboxes {
        let known = l.pods.remove(&s.id).filter(|p| p.node_ns.is_some());
        let p = match known {
            Some(p) => p,
            None => Arc::new(pod(c, s).await?),
        };
        pods.insert(s.id.clone(), p);
    }
    l.pods = pods;
    let listed = client::list_containers(c).await?;
    let mut containers = HashMap::with_capacity(listed.len());
    for item in &listed {
        let facts = ContainerFacts::from_list(item);
        let entry = match l.containers.remove(&item.id) {
            // Same state as before: nothing new to ask.
            // The status named the image (the listing has only its id): keep what it said.
            Some((old, v)) if old.running == facts.running && v.is_some() => (facts.merge(old), v),
            _ => {
                let (f, v) = status(c, facts).await?;
                (f, l.keep(v))
            }
        };
        containers.insert(item.id.clone(), entry);
    }
    l.containers = containers;
    Ok(())
}

async fn status(c: &mut Client, facts: ContainerFacts) -> Result<(ContainerFacts, Option<VerboseInfo>), CriError> {
    Ok(match client::container_status(c, &facts.id).await? {
        Some(resp) => {
            let v = verbose_of(&resp);
            let merged = match &resp.status {
                Some(s) => facts.merge(ContainerFacts::from_status(s)),
                None => facts,
            };
            (merged, v)
        }
        None => (facts, None),
    })
}

/// One container by id (a lookup miss or an event); `false` when the runtime does not know it.
pub async fn refresh(c: &mut Client, l: &mut Listing, id: &str) -> Result<bool, CriError> {
    let Some(resp) = client::container_status(c, id).await? else {
        l.containers.remove(id);
        return Ok(false);
    };
    let v = l.keep(verbose_of(&resp));
    let Some(s) = &resp.status else { return Ok(false) };
    let old = l.containers.remove(id).map(|(f, _)| f).unwrap_or_default();
    let facts = old.merge(ContainerFacts::from_status(s));
    let sandbox = facts.sandbox_id.clone().or_else(|| v.as_ref().and_then(|v| v.sandbox_id.clone()));
    if let Some(sid) = sandbox
        && !l.pods.contains_key(&sid)
        && let Some(ps) = client::pod_sandbox_status(c, &sid).await?
    {
        l.pods.insert(sid, Arc::new(Pod::from_status(&ps)));
    }
    l.containers.insert(id.to_string(), (facts, v));
    Ok(true)
}

fn publish_all(source: &Source, l: &Listing) {
    *source.map.write().unwrap_or_else(|e| e.into_inner()) = l.metas();
}

fn publish_one(source: &Source, l: &Listing, id: &str) {
    let mut map = source.map.write().unwrap_or_else(|e| e.into_inner());
    match l.meta_of(id) {
        Some(m) => map.insert(id.to_string(), m),
        None => map.remove(id),
    };
}

/// Follow one socket until the cache is dropped.
pub async fn run(source: Arc<Source>, mut rx: UnboundedReceiver<Work>) {
    let socket = source.socket.clone();
    let mut backoff = FIRST_BACKOFF;
    let mut down_reported = false;
    loop {
        let err = match open(&socket).await {
            Ok((mut c, runtime)) => {
                let mut l = Listing::new(runtime);
                match resync(&mut c, &mut l).await {
                    Ok(()) => {
                        publish_all(&source, &l);
                        source.set_ready();
                        if down_reported {
                            tracing::warn!(
                                "CRI runtime at {} answers again ({}): pod names resume",
                                socket.display(),
                                runtime.as_str()
                            );
                            down_reported = false;
                        } else {
                            tracing::info!(
                                "CRI runtime {} at {}: {} pods, {} containers",
                                runtime.as_str(),
                                socket.display(),
                                l.pods.len(),
                                l.containers.len()
                            );
                        }
                        backoff = FIRST_BACKOFF;
                        follow(&source, &mut c, &mut l, &mut rx).await
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if source.closed() {
            return;
        }
        if !down_reported {
            tracing::warn!(
                "CRI runtime at {} not reachable ({err}): alerts carry container ids without pod names until it answers; retrying with backoff (up to {}s)",
                socket.display(),
                MAX_BACKOFF.as_secs()
            );
            down_reported = true;
        } else {
            tracing::debug!("CRI runtime at {}: {err}", socket.display());
        }
        source.set_ready();
        // Misses asked while the runtime is away are stale by the next listing.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Events (or polling) and lookup misses until a call fails; the error that ended it.
async fn follow(source: &Source, c: &mut Client, l: &mut Listing, rx: &mut UnboundedReceiver<Work>) -> CriError {
    let mut events = match client::container_events(c).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let every = if events.is_some() { RESYNC_INTERVAL } else { POLL_INTERVAL };
    if events.is_none() {
        tracing::info!(
            "CRI runtime at {} has no GetContainerEvents: polling its listings every {}s",
            source.socket.display(),
            every.as_secs()
        );
    }
    let mut tick = tokio::time::interval(every);
    tick.reset();
    loop {
        let result = tokio::select! {
            ev = next_event(&mut events) => match ev {
                Ok(Some(ev)) => refresh(c, l, &ev.container_id).await.map(|_| publish_one(source, l, &ev.container_id)),
                Ok(None) => Err(CriError::Runtime("the event stream ended".into())),
                Err(e) => Err(e),
            },
            work = rx.recv() => match work {
                Some(Work::Refresh(id)) => refresh(c, l, &id).await.map(|_| publish_one(source, l, &id)),
                None => return CriError::Runtime("cache dropped".into()),
            },
            _ = tick.tick() => resync(c, l).await.map(|()| publish_all(source, l)),
        };
        if let Err(e) = result {
            return e;
        }
    }
}

async fn next_event(
    events: &mut Option<tonic::Streaming<k8s_cri::v1::ContainerEventResponse>>,
) -> Result<Option<k8s_cri::v1::ContainerEventResponse>, CriError> {
    match events {
        Some(s) => s.message().await.map_err(|st| CriError::Call {
            call: "GetContainerEvents",
            code: st.code(),
            message: st.message().to_string(),
        }),
        None => std::future::pending().await,
    }
}
