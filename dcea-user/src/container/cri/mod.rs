//! Pods and containers from the node's CRI runtime (containerd, CRI-O), for Kubernetes nodes
//! where Docker is not the runtime: pod name, namespace, uid and labels, container name and
//! image, the host namespaces a pod shares by design, and the container's OCI spec.
//!
//! As with the Docker source ([`super::metadata`]), [`CriCache::lookup`] is a map read and
//! never waits for the runtime. One background thread per socket runs its own small async
//! runtime (tonic is async; the alert path is not) and keeps the map: a full ListPodSandbox +
//! ListContainers (with a verbose ContainerStatus for each new container) on connect, then the
//! runtime's GetContainerEvents stream where it has one (containerd ≥ 1.7), else the listings
//! every 2 s (containerd 1.6). An id a lookup missed is asked for at once. Without
//! `--cri-socket`, the well-known socket paths are looked at again every few seconds, so a
//! runtime that starts after the agent (node boot, a k3s install) is followed from then on.

pub mod client;
pub mod model;
pub mod socket;
pub mod spec;
pub mod untrusted;
pub mod worker;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, Weak},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

pub use self::{client::CriError, worker::Listing};
use super::metadata::ContainerMeta;

/// One followed socket.
pub struct Source {
    pub socket: PathBuf,
    map: RwLock<HashMap<String, Arc<ContainerMeta>>>,
    work: Mutex<Option<UnboundedSender<worker::Work>>>,
    ready: Mutex<bool>,
    ready_cv: Condvar,
}

impl Source {
    fn new(socket: PathBuf) -> Source {
        Source {
            socket,
            map: RwLock::default(),
            work: Mutex::new(None),
            ready: Mutex::new(false),
            ready_cv: Condvar::new(),
        }
    }

    fn set_ready(&self) {
        *self.ready.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.ready_cv.notify_all();
    }

    /// Has the cache gone away (the worker should stop)?
    fn closed(&self) -> bool {
        self.work.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_none_or(|tx| tx.is_closed())
    }
}

/// How long a lookup miss waits before asking about the same id again.
const ASK_AGAIN: Duration = Duration::from_secs(30);

/// How often the well-known socket paths are looked at again for a runtime that appeared.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Shared {
    sources: RwLock<Vec<Arc<Source>>>,
    asked: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    fn sources(&self) -> RwLockReadGuard<'_, Vec<Arc<Source>>> {
        self.sources.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The worker thread of one socket: its own current-thread async runtime.
fn spawn_worker(source: &Arc<Source>) {
    let (tx, rx) = unbounded_channel();
    *source.work.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    let s = source.clone();
    let spawned =
        thread::Builder::new().name("dcea-cri".into()).spawn(
            move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(worker::run(s, rx)),
                Err(e) => {
                    tracing::warn!("CRI metadata from {} unavailable: {e}", s.socket.display());
                    s.set_ready();
                }
            },
        );
    if let Err(e) = spawned {
        tracing::warn!("CRI metadata from {} unavailable: cannot start its thread: {e}", source.socket.display());
        source.set_ready();
    }
}

/// Looks at the well-known paths every [`REDISCOVER_EVERY`] until the cache goes away.
fn spawn_rediscovery(shared: Weak<Shared>) {
    let spawned = thread::Builder::new().name("dcea-cri-discover".into()).spawn(move || {
        loop {
            thread::sleep(REDISCOVER_EVERY);
            let Some(shared) = shared.upgrade() else { return };
            for sock in (CriCache { shared }).follow_new(socket::discover(None)) {
                tracing::info!("CRI runtime socket {} appeared: following it", sock.display());
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("CRI sockets that appear later will not be followed: cannot start a thread: {e}");
    }
}

/// See the module comment. Cloning shares the cache.
#[derive(Clone, Default)]
pub struct CriCache {
    shared: Arc<Shared>,
}

impl CriCache {
    /// Follow `sockets` in the background (see [`socket::discover`]).
    pub fn start(sockets: Vec<PathBuf>) -> CriCache {
        let cache = CriCache::default();
        cache.follow_new(sockets);
        cache
    }

    /// Start following each of `sockets` not followed yet (the same socket under another
    /// name, `/var/run` → `/run`, counts as followed); returns the ones started.
    pub fn follow_new(&self, sockets: Vec<PathBuf>) -> Vec<PathBuf> {
        let mut sources = self.shared.sources.write().unwrap_or_else(|e| e.into_inner());
        let mut known: Vec<PathBuf> = sources.iter().map(|s| socket::identity(&s.socket)).collect();
        let mut started = Vec::new();
        for sock in sockets {
            let id = socket::identity(&sock);
            if known.contains(&id) {
                continue;
            }
            known.push(id);
            let source = Arc::new(Source::new(sock.clone()));
            spawn_worker(&source);
            sources.push(source);
            started.push(sock);
        }
        started
    }

    /// The sockets dcea follows: `--cri-socket`, else the well-known ones that exist, saying
    /// which on stderr.
    pub fn discover_and_start(given: Option<&Path>) -> CriCache {
        let sockets = socket::discover(given);
        if sockets.is_empty() {
            tracing::info!(
                "no CRI runtime socket found (looked for {} under {}): pods are not named; --cri-socket PATH names one",
                socket::WELL_KNOWN.join(", "),
                socket::HOST_PREFIXES.iter().map(|p| if p.is_empty() { "/" } else { p }).collect::<Vec<_>>().join(", ")
            );
        }
        let cache = CriCache::start(sockets);
        if given.is_none() {
            spawn_rediscovery(Arc::downgrade(&cache.shared));
        }
        cache
    }

    pub fn sockets(&self) -> Vec<PathBuf> {
        self.shared.sources().iter().map(|s| s.socket.clone()).collect()
    }

    /// A map read per socket. A miss for a container id asks the workers about it (at most
    /// every 30 s per id).
    pub fn lookup(&self, id: &str) -> Option<Arc<ContainerMeta>> {
        let sources = self.shared.sources();
        for s in sources.iter() {
            if let Some(m) = s.map.read().unwrap_or_else(|e| e.into_inner()).get(id) {
                return Some(m.clone());
            }
        }
        if sources.is_empty() || !super::metadata::is_container_id(id) {
            return None;
        }
        // try_lock: a contended miss skips asking rather than wait.
        if let Ok(mut asked) = self.shared.asked.try_lock() {
            let now = Instant::now();
            if asked.get(id).is_none_or(|t| now.duration_since(*t) > ASK_AGAIN) {
                if asked.len() > 4096 {
                    asked.clear();
                }
                asked.insert(id.to_string(), now);
                for s in sources.iter() {
                    if let Some(tx) = s.work.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        let _ = tx.send(worker::Work::Refresh(id.to_string()));
                    }
                }
            }
        }
        None
    }

    /// Put metadata in directly (benchmarks and tests).
    pub fn insert(&self, meta: ContainerMeta) {
        if let Some(s) = self.shared.sources().first() {
            s.map.write().unwrap_or_else(|e| e.into_inner()).insert(meta.id.clone(), Arc::new(meta));
        }
    }

    pub fn len(&self) -> usize {
        self.shared.sources().iter().map(|s| s.map.read().unwrap_or_else(|e| e.into_inner()).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait (at start-up only) until every socket's first listing is in or it proved absent.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared.sources().iter().all(|s| {
            let ready = s.ready.lock().unwrap_or_else(|e| e.into_inner());
            let left = deadline.saturating_duration_since(Instant::now());
            let (ready, _) = s.ready_cv.wait_timeout_while(ready, left, |r| !*r).unwrap_or_else(|e| e.into_inner());
            *ready
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channels ends the workers at their next wakeup.
        for s in self.sources.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            s.work.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

/// Stop container `id` through whichever runtime knows it (kill-container under --enforce: the
/// runtime learns why its container died, and a kubelet sees it stopped, not crashed). The
/// socket of the runtime that stopped it; `Ok(None)` when none knows it. Blocking: call from
/// a thread of its own.
pub fn stop_container(sockets: &[PathBuf], id: &str) -> Result<Option<PathBuf>, CriError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CriError::Runtime(e.to_string()))?;
    let mut last = None;
    for sock in sockets {
        match rt.block_on(async { client::stop_container(&mut client::connect(sock).await?, id).await }) {
            Ok(true) => return Ok(Some(sock.clone())),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
    }
    last.map_or(Ok(None), Err)
}

/// One synchronous listing of every socket, verbose statuses included (one-shot commands:
/// `dcea trust verify`, `dcea scan config`; never the alert path, never inside an async
/// runtime).
pub fn fetch(sockets: &[PathBuf]) -> Vec<(PathBuf, Result<Listing, CriError>)> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return sockets.iter().map(|s| (s.clone(), Err(CriError::Runtime(e.to_string())))).collect();
        }
    };
    sockets
        .iter()
        .map(|sock| {
            let got = rt.block_on(async {
                let (mut c, runtime) = worker::open(sock).await?;
                let mut l = Listing::new(runtime);
                l.keep_spec = true;
                worker::resync(&mut c, &mut l).await?;
                Ok(l)
            });
            (sock.clone(), got)
        })
        .collect()
}

/// [`fetch`] as a cache (no background threads): `dcea trust verify`.
pub fn fetch_cache(sockets: &[PathBuf]) -> CriCache {
    let cache = CriCache {
        shared: Arc::new(Shared {
            sources: RwLock::new(sockets.iter().map(|s| Arc::new(Source::new(s.clone()))).collect()),
            asked: Mutex::default(),
        }),
    };
    let sources = cache.shared.sources().clone();
    for ((sock, got), source) in fetch(sockets).into_iter().zip(&sources) {
        match got {
            Ok(l) => *source.map.write().unwrap_or_else(|e| e.into_inner()) = l.metas(),
            Err(e) => {
                eprintln!("dcea: CRI runtime at {} not reachable ({e}): its pods are named by id only", sock.display())
            }
        }
        source.set_ready();
    }
    cache
}
