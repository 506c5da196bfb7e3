//! The trust table and its checks: periodic passes over /proc (`poll`) and the immediate check
//! of one process tree (`recheck`).
//!
//! Which process belongs to which container: its cgroup (every runtime names the container
//! there), else the container of its nearest tracked ancestor (a process that moved itself to a
//! host cgroup stays its container's), and once known, for as long as the process lives (its
//! pid and start time; across restarts through the database).
//!
//! What it is trusted to be in: the namespaces its container's init started with (the
//! baseline). The init is the engine's `State.Pid` when the engine answers, else the container's
//! earliest-started process. A kind the init shares with the host is trusted to be shared
//! (`--pid=host`, `--network=host`, the host user namespace of a rootful container) except the
//! mount namespace, which no runtime shares, and kinds the engine says the container has its own
//! namespace for: an init already in the host's namespace of such a kind is reported, not
//! trusted. A process in a host namespace of a kind its container does not share is an escape,
//! whether it moved there (its trusted namespace changed) or was born there (a new process
//! compared with the baseline). Moving into any other namespace (a nested namespace the
//! container made) re-trusts the new one, as the kernel path treats it as benign.
//!
//! Every thread is checked: `setns` moves one thread, and /proc/<pid>/ns shows the leader's.

use std::{
    collections::{HashMap, hash_map::Entry},
    io,
    sync::Arc,
    time::Instant,
};

use dcea_common::{NS_KINDS, NsKind};
use serde::Serialize;

use super::{
    db::{ContainerRecord, Digests, ProcessRecord, TrustFile},
    procfs::{self, ProcDir, RunGate, Stat, gone},
};
use crate::{
    container::{self, ContainerRef, Runtime},
    monitor::alert::{AlertContext, DetectedBy, Observation, ProcessInfo, build_alert, kinds},
    output::{Alert, rfc3339_nanos},
    sys,
    trust::Verdict,
};

/// How long a new process may look like runtime work (runc stages, a host process about to be
/// moved into a container's cgroup) before it is judged like any other.
const GRACE_SECS: u64 = 10;
/// The most processes one re-check follows down a tree.
const MAX_TREE: usize = 4096;
/// Descriptors kept free for everything else when holding /proc handles.
const FD_RESERVE: u64 = 256;

/// Names runc and crun give their own set-up stages, which live briefly in a container's cgroup
/// before its namespaces exist.
fn runtime_stage(comm: &str) -> bool {
    comm.starts_with("runc:[") || matches!(comm, "runc" | "runc-init" | "crun" | "youki")
}

/// Kinds with a known host reference.
fn known_mask(host: &[u32; NS_KINDS]) -> u32 {
    NsKind::ALL.iter().filter(|k| host[k.index()] != 0).fold(0, |m, k| m | k.bit())
}

fn mask_of(names: &[String]) -> u32 {
    names.iter().filter_map(|n| NsKind::ALL.iter().find(|k| k.name() == n)).fold(0, |m, k| m | k.bit())
}

/// Whether a process's namespaces were all read: an exiting task (a zombie, or one being
/// killed) has lost its nsproxy, and its net, uts, ipc, cgroup, time and pid_for_children links
/// read as absent while its pid and user ones remain. A baseline taken from it would trust
/// none of those and take every later process in the host's for an escape.
pub fn complete(ns: &[u32; NS_KINDS], host: &[u32; NS_KINDS]) -> bool {
    NsKind::ALL.iter().all(|k| host[k.index()] == 0 || ns[k.index()] != 0)
}

/// What a container is trusted to be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    pub init_pid: u32,
    pub init_start: u64,
    /// The init's namespaces; 0 where it was in a host namespace it may not share.
    pub ns: [u32; NS_KINDS],
    /// [`NsKind`] bits trusted to be the host's.
    pub shares_host: u32,
}

impl Baseline {
    /// From the init's namespaces. `private` kinds (the mount namespace, and what the engine
    /// says is the container's own) are never trusted as the host's; `narrow_to` keeps a
    /// re-taken baseline from trusting more than the one before it.
    pub fn take(
        init: (u32, u64),
        init_ns: &[u32; NS_KINDS],
        host: &[u32; NS_KINDS],
        private: u32,
        narrow_to: Option<u32>,
    ) -> Baseline {
        let private = private | NsKind::Mnt.bit();
        let mut ns = *init_ns;
        let mut shares_host = 0;
        for k in NsKind::ALL {
            let i = k.index();
            if host[i] != 0 && init_ns[i] == host[i] {
                if private & k.bit() != 0 || narrow_to.is_some_and(|m| m & k.bit() == 0) {
                    ns[i] = 0;
                } else {
                    shares_host |= k.bit();
                }
            }
        }
        Baseline { init_pid: init.0, init_start: init.1, ns, shares_host }
    }

    /// Kinds a member's namespaces are checked for.
    pub fn watched(&self, host: &[u32; NS_KINDS]) -> u32 {
        known_mask(host) & !self.shares_host
    }

    /// A process seen for the first time: the host namespaces it is in but may not be, and
    /// what it is trusted to be in (its own namespaces, the baseline's where it escaped).
    pub fn judge_new(&self, cur: &[u32; NS_KINDS], host: &[u32; NS_KINDS]) -> (u32, [u32; NS_KINDS]) {
        let mut trusted = *cur;
        let mut entered = 0;
        for k in NsKind::ALL.iter().filter(|k| self.watched(host) & k.bit() != 0) {
            if cur[k.index()] == host[k.index()] {
                entered |= k.bit();
                trusted[k.index()] = self.ns[k.index()];
            }
        }
        (entered, trusted)
    }
}

/// A known process re-read: kinds now in the host namespace (escapes), and whether a move
/// elsewhere re-trusted the new namespace.
pub fn judge_known(
    trusted: &mut [u32; NS_KINDS],
    cur: &[u32; NS_KINDS],
    watched: u32,
    host: &[u32; NS_KINDS],
) -> (u32, bool) {
    let (mut entered, mut retrusted) = (0, false);
    for k in NsKind::ALL.iter().filter(|k| watched & k.bit() != 0) {
        let i = k.index();
        if cur[i] == trusted[i] {
            continue;
        }
        if cur[i] == host[i] {
            entered |= k.bit();
        } else {
            trusted[i] = cur[i];
            retrusted = true;
        }
    }
    (entered, retrusted)
}

/// A process (or one of its threads) in a host namespace it is not trusted in.
#[derive(Clone, Debug)]
pub struct Violation {
    pub pid: u32,
    pub tid: u32,
    pub start_time: u64,
    pub container: ContainerRef,
    pub entered: u32,
    pub trusted: [u32; NS_KINDS],
    pub current: [u32; NS_KINDS],
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PassStats {
    pub processes: usize,
    pub container_processes: usize,
    pub containers: usize,
    pub new_containers: usize,
    pub violations: usize,
    pub alerts: usize,
    pub elapsed_us: u64,
}

struct ContainerState {
    cref: ContainerRef,
    name: Option<String>,
    image: Option<String>,
    pod: Option<super::db::PodRef>,
    first_seen: String,
    baseline: Option<Baseline>,
    /// The baseline's sharing before the init went away (a new baseline never trusts more).
    previous_sharing: Option<u32>,
}

struct Member {
    container: Arc<str>,
    comm: String,
    trusted: Option<[u32; NS_KINDS]>,
}

enum Class {
    /// Not a container process; re-examined until `until` (clock ticks since boot): runc
    /// moves its init into the container's cgroup after creating it.
    Host {
        until: u64,
    },
    /// A runtime stage in a container's cgroup: re-examined every pass.
    Runtime,
    Container(Member),
}

struct Tracked {
    start_time: u64,
    ppid: u32,
    /// Held schedstat handle (see [`RunGate`]); `None` once the descriptor budget is spent
    /// (then every check opens /proc/<pid> and compares start times).
    gate: Option<RunGate>,
    /// Threads at the last full check (0: not checked yet).
    threads: u32,
    seen: u64,
    class: Class,
}

impl Tracked {
    fn alive(&self) -> bool {
        self.gate.as_ref().is_some_and(RunGate::alive)
    }
}

struct Restored {
    container: Arc<str>,
    ns: [u32; NS_KINDS],
}

pub struct TrustChecker {
    ctx: AlertContext,
    enforce: bool,
    containers: HashMap<Arc<str>, ContainerState>,
    procs: HashMap<u32, Tracked>,
    /// Process records from the database not yet matched to a live process.
    restored: HashMap<(u32, u64), Restored>,
    /// (pid, start time) → host namespace kinds already reported, by any path.
    reported: HashMap<(u32, u64), u32>,
    dirty: bool,
    pass_no: u64,
    hz: u64,
    held: usize,
    held_limit: usize,
    fd_warned: bool,
    /// Skip the namespace reads of single-threaded processes that have not run.
    gate_runs: bool,
    pids: Vec<u32>,
    tids: Vec<u32>,
    buf: Vec<u8>,
    pub last: PassStats,
}

impl TrustChecker {
    pub fn new(ctx: AlertContext, enforce: bool) -> TrustChecker {
        let nofile = sys::raise_nofile();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        TrustChecker {
            ctx,
            enforce,
            containers: HashMap::new(),
            procs: HashMap::new(),
            restored: HashMap::new(),
            reported: HashMap::new(),
            dirty: false,
            pass_no: 0,
            hz,
            held: 0,
            held_limit: nofile.saturating_sub(FD_RESERVE) as usize,
            fd_warned: false,
            gate_runs: procfs::schedstat_counts(),
            pids: Vec::new(),
            tids: Vec::new(),
            buf: Vec::new(),
            last: PassStats::default(),
        }
    }

    /// Limit the /proc handles held (tests of the fallback; nodes with a low descriptor limit).
    pub fn set_handle_limit(&mut self, limit: usize) {
        self.held_limit = limit;
    }

    /// Read every process's namespaces every pass, whether it ran or not (measurement).
    pub fn set_skip_idle(&mut self, skip: bool) {
        self.gate_runs = skip && procfs::schedstat_counts();
    }

    pub fn ctx(&self) -> &AlertContext {
        &self.ctx
    }

    /// Save again later (a write failed).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Has the table changed since the last [`snapshot`](Self::snapshot)?
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    fn now_ticks(&self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid pointer. start_time in /proc/<pid>/stat counts from boot (boottime).
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        ts.tv_sec as u64 * self.hz + ts.tv_nsec as u64 * self.hz / 1_000_000_000
    }

    /// Take over a database written before (this boot): containers with their baselines, and
    /// process records matched to live processes by pid and start time on the next pass.
    pub fn restore(&mut self, file: &TrustFile) {
        if file.host.as_slice() != self.ctx.host.ns.as_slice() {
            tracing::warn!(
                "the trust database was written against host namespaces {:?}, now {:?}; baselines kept",
                file.host,
                self.ctx.host.ns
            );
        }
        for (id, c) in &file.containers {
            let Ok(ns) = <[u32; NS_KINDS]>::try_from(c.baseline.as_slice()) else { continue };
            let key: Arc<str> = Arc::from(id.as_str());
            let runtime = runtime_from_name(&c.runtime);
            self.containers.insert(
                key.clone(),
                ContainerState {
                    cref: ContainerRef { id: id.clone(), runtime },
                    name: c.name.clone(),
                    image: c.image.clone(),
                    pod: c.pod.clone(),
                    first_seen: c.first_seen.clone(),
                    baseline: Some(Baseline {
                        init_pid: c.init_pid,
                        init_start: c.init_start_time,
                        ns,
                        shares_host: mask_of(&c.shares_host),
                    }),
                    previous_sharing: None,
                },
            );
            for p in &c.processes {
                if let Ok(ns) = <[u32; NS_KINDS]>::try_from(p.ns.as_slice()) {
                    self.restored.insert((p.pid, p.start_time), Restored { container: key.clone(), ns });
                }
            }
        }
    }

    /// The table as a database file; clears the dirty flag.
    pub fn snapshot(&mut self) -> TrustFile {
        let mut file = TrustFile::new(&self.ctx.host.ns);
        let mut digests = Digests::default();
        let mut processes: HashMap<&str, Vec<ProcessRecord>> = HashMap::new();
        for (&pid, t) in &self.procs {
            if let Class::Container(Member { container, comm, trusted: Some(ns) }) = &t.class {
                processes.entry(container).or_default().push(ProcessRecord::new(
                    pid,
                    t.start_time,
                    comm,
                    ns,
                    &mut digests,
                ));
            }
        }
        for (id, c) in &self.containers {
            let Some(b) = c.baseline else { continue };
            let mut procs = processes.remove(id.as_ref()).unwrap_or_default();
            procs.sort_by_key(|p| (p.start_time, p.pid));
            file.containers.insert(
                id.to_string(),
                ContainerRecord {
                    runtime: c.cref.runtime.as_str().to_string(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                    first_seen: c.first_seen.clone(),
                    init_pid: b.init_pid,
                    init_start_time: b.init_start,
                    baseline: b.ns.to_vec(),
                    shares_host: kinds(b.shares_host).into_iter().map(str::to_string).collect(),
                    pod: c.pod.clone(),
                    processes: procs,
                },
            );
        }
        self.dirty = false;
        file
    }

    /// One pass over every process: baseline new containers, check every container process
    /// and thread, and return the alerts for escapes not reported before.
    pub fn pass(&mut self) -> Vec<Alert> {
        let started = Instant::now();
        self.pass_no += 1;
        let now = self.now_ticks();
        let mut pids = std::mem::take(&mut self.pids);
        if let Err(e) = procfs::list_pids(&mut pids) {
            tracing::warn!("trust pass: listing /proc: {e}");
            self.pids = pids;
            return Vec::new();
        }
        let mut fresh = Vec::new();
        for &pid in &pids {
            match self.procs.get_mut(&pid) {
                Some(t) => {
                    t.seen = self.pass_no;
                    let again = match t.class {
                        Class::Host { until } => until > now || !t.alive(),
                        Class::Runtime => true,
                        Class::Container(_) => false,
                    };
                    if again {
                        fresh.push(pid);
                    }
                }
                None => fresh.push(pid),
            }
        }
        self.forget_unseen();
        let new_containers = self.classify(&fresh, now);
        // Anything from the database not alive now is gone for good.
        self.restored.clear();

        let members: Vec<u32> =
            self.procs.iter().filter(|(_, t)| matches!(t.class, Class::Container(_))).map(|(&p, _)| p).collect();
        let mut violations = Vec::new();
        let mut retry = Vec::new();
        for &pid in &members {
            if let Err(e) = self.check(pid, &mut violations) {
                if gone(&e) {
                    retry.push(pid);
                } else {
                    tracing::debug!("trust check of pid {pid}: {e}");
                }
            }
        }
        // A pid whose process died since listing may already belong to a new process.
        if !retry.is_empty() {
            for pid in &retry {
                self.forget(*pid);
            }
            self.classify(&retry, now);
            for &pid in &retry {
                let _ = self.check(pid, &mut violations);
            }
        }
        self.forget_empty_containers();
        let procs = &self.procs;
        self.reported.retain(|(pid, start), _| procs.get(pid).is_some_and(|t| t.start_time == *start));

        let violation_count = violations.len();
        let alerts = self.report(violations, DetectedBy::Poll);
        self.last = PassStats {
            processes: pids.len(),
            container_processes: members.len(),
            containers: self.containers.len(),
            new_containers,
            violations: violation_count,
            alerts: alerts.len(),
            elapsed_us: started.elapsed().as_micros() as u64,
        };
        self.pids = pids;
        alerts
    }

    /// Check `pid` and every descendant now; alerts for escapes not reported before
    /// (`dcea.detected_by: recheck`). A pid that is gone yields nothing.
    pub fn recheck(&mut self, pid: u32) -> Vec<Alert> {
        let now = self.now_ticks();
        let mut tree = Vec::new();
        let mut queue = vec![pid];
        let mut tids = std::mem::take(&mut self.tids);
        while let Some(p) = queue.pop() {
            if tree.len() >= MAX_TREE || tree.contains(&p) {
                continue;
            }
            let Ok(dir) = ProcDir::open(p) else { continue };
            if dir.tids(&mut tids).is_ok() {
                let _ = dir.children(&tids, &mut queue);
            }
            tree.push(p);
        }
        self.tids = tids;
        // The ancestors, up to the first process known to be the host's, so attribution by
        // ancestry and the choice of the container's init have what they need.
        let mut todo = Vec::new();
        let mut cursor = pid;
        for _ in 0..64 {
            let Ok(stat) = ProcDir::open(cursor).and_then(|d| d.stat()) else { break };
            if stat.ppid <= 1 || matches!(self.procs.get(&stat.ppid).map(|t| &t.class), Some(Class::Host { .. })) {
                break;
            }
            todo.push(stat.ppid);
            cursor = stat.ppid;
        }
        todo.extend(tree.iter().copied().filter(|p| !self.is_live_member(*p)));
        let pass_no = self.pass_no;
        for p in &todo {
            if self.procs.contains_key(p) {
                self.forget(*p);
            }
        }
        self.classify_as_of(&todo, now, pass_no);
        let mut violations = Vec::new();
        for &p in &tree {
            match self.check(p, &mut violations) {
                Err(e) if gone(&e) => self.forget(p),
                _ => {}
            }
        }
        self.report(violations, DetectedBy::Recheck)
    }

    /// Another path (the kernel programs) reported `pid` entering host namespaces `entered`:
    /// remember it so no pass or re-check reports the same escape again.
    pub fn note_reported(&mut self, pid: u32, entered: u32) {
        let start = match self.procs.get(&pid) {
            Some(t) if t.alive() => Some(t.start_time),
            _ => procfs::start_time(pid),
        };
        if let Some(start) = start {
            *self.reported.entry((pid, start)).or_default() |= entered;
        }
    }

    fn is_live_member(&self, pid: u32) -> bool {
        self.procs.get(&pid).is_some_and(|t| matches!(t.class, Class::Container(_)) && t.alive())
    }

    fn forget(&mut self, pid: u32) {
        if let Some(t) = self.procs.remove(&pid) {
            self.held -= usize::from(t.gate.is_some());
            self.dirty |= matches!(t.class, Class::Container(_));
        }
    }

    fn forget_unseen(&mut self) {
        let pass_no = self.pass_no;
        let (mut released, mut members) = (0, false);
        self.procs.retain(|_, t| {
            let keep = t.seen == pass_no;
            if !keep {
                released += usize::from(t.gate.is_some());
                members |= matches!(t.class, Class::Container(_));
            }
            keep
        });
        self.held -= released;
        self.dirty |= members;
    }

    fn forget_empty_containers(&mut self) {
        let mut alive: HashMap<&str, ()> = HashMap::new();
        for t in self.procs.values() {
            if let Class::Container(m) = &t.class {
                alive.insert(&m.container, ());
            }
        }
        let before = self.containers.len();
        let live: std::collections::HashSet<Arc<str>> =
            self.containers.keys().filter(|id| alive.contains_key(id.as_ref())).cloned().collect();
        self.containers.retain(|id, _| live.contains(id));
        self.dirty |= self.containers.len() != before;
    }

    fn classify(&mut self, pids: &[u32], now: u64) -> usize {
        self.classify_as_of(pids, now, self.pass_no)
    }

    /// Read and attribute new (or re-examined) processes, parents before children; then take
    /// the baseline of containers that lack one. Returns how many baselines were taken.
    fn classify_as_of(&mut self, pids: &[u32], now: u64, pass_no: u64) -> usize {
        let mut fresh: Vec<(u32, ProcDir, Stat)> = Vec::with_capacity(pids.len());
        for &pid in pids {
            if let Some(t) = self.procs.remove(&pid) {
                self.held -= usize::from(t.gate.is_some());
            }
            let Ok(dir) = ProcDir::open(pid) else { continue };
            if let Ok(stat) = dir.stat() {
                fresh.push((pid, dir, stat));
            }
        }
        fresh.sort_by_key(|(pid, _, s)| (s.start_time, *pid));
        let grace = GRACE_SECS * self.hz;
        for (pid, dir, stat) in fresh {
            let class = self.class_of(pid, &dir, &stat, now, grace);
            let gate = if self.held < self.held_limit {
                let Ok(gate) = RunGate::open(&dir) else { continue };
                self.held += 1;
                Some(gate)
            } else {
                if !self.fd_warned {
                    tracing::warn!(
                        "descriptor limit reached: tracking further processes without held /proc handles (slower passes)"
                    );
                    self.fd_warned = true;
                }
                None
            };
            self.procs.insert(
                pid,
                Tracked { start_time: stat.start_time, ppid: stat.ppid, gate, threads: 0, seen: pass_no, class },
            );
        }
        self.take_baselines()
    }

    fn class_of(&mut self, pid: u32, dir: &ProcDir, stat: &Stat, now: u64, grace: u64) -> Class {
        if let Some(r) = self.restored.remove(&(pid, stat.start_time))
            && self.containers.contains_key(&r.container)
        {
            return Class::Container(Member { container: r.container, comm: stat.comm.clone(), trusted: Some(r.ns) });
        }
        let young = now.saturating_sub(stat.start_time) < grace;
        let by_cgroup = dir.read("cgroup", &mut self.buf).ok().and_then(|()| {
            container::from_proc_cgroup(&String::from_utf8_lossy(&self.buf)).map(|c| self.container_entry(c))
        });
        let id = by_cgroup.or_else(|| match self.procs.get(&stat.ppid) {
            Some(Tracked { class: Class::Container(m), start_time, .. }) if *start_time <= stat.start_time => {
                Some(m.container.clone())
            }
            _ => None,
        });
        match id {
            Some(_) if young && runtime_stage(&stat.comm) => Class::Runtime,
            Some(container) => Class::Container(Member { container, comm: stat.comm.clone(), trusted: None }),
            None => Class::Host { until: if young { stat.start_time + grace } else { 0 } },
        }
    }

    fn container_entry(&mut self, cref: ContainerRef) -> Arc<str> {
        if let Some((k, _)) = self.containers.get_key_value(cref.id.as_str()) {
            return k.clone();
        }
        let key: Arc<str> = Arc::from(cref.id.as_str());
        let meta = self.ctx.metadata.lookup(&cref.id);
        // The source that knows the container names its runtime (a kubepods path does not).
        let cref = ContainerRef { runtime: meta.as_ref().and_then(|m| m.runtime).unwrap_or(cref.runtime), ..cref };
        self.containers.insert(
            key.clone(),
            ContainerState {
                name: meta.as_ref().and_then(|m| m.name.clone()),
                image: meta.as_ref().and_then(|m| m.image.clone()),
                pod: meta.as_deref().and_then(super::db::PodRef::of),
                cref,
                first_seen: rfc3339_nanos(sys::realtime_ns()),
                baseline: None,
                previous_sharing: None,
            },
        );
        self.dirty = true;
        key
    }

    /// Baselines for containers without one (new, or whose init is gone).
    fn take_baselines(&mut self) -> usize {
        for c in self.containers.values_mut() {
            if let Some(b) = c.baseline
                && self.procs.get(&b.init_pid).is_none_or(|t| t.start_time != b.init_start)
                && !self.restored.contains_key(&(b.init_pid, b.init_start))
            {
                // The init is gone (a restart): take the baseline again, never trusting more.
                c.previous_sharing = Some(b.shares_host);
                c.baseline = None;
            }
        }
        if self.containers.values().all(|c| c.baseline.is_some()) {
            return 0;
        }
        // Per container: the engine's init if it is a member, else the earliest member.
        let mut init: HashMap<Arc<str>, (u64, u32)> = HashMap::new();
        let engine_init: HashMap<Arc<str>, u32> = self
            .containers
            .iter()
            .filter(|(_, c)| c.baseline.is_none())
            .filter_map(|(id, _)| self.ctx.metadata.lookup(id).and_then(|m| m.pid).map(|p| (id.clone(), p)))
            .collect();
        for (&pid, t) in &self.procs {
            let Class::Container(m) = &t.class else { continue };
            if self.containers.get(&m.container).is_none_or(|c| c.baseline.is_some()) {
                continue;
            }
            let rank = if engine_init.get(&m.container) == Some(&pid) { 0 } else { t.start_time + 1 };
            match init.entry(m.container.clone()) {
                Entry::Occupied(mut e) if (rank, pid) < *e.get() => {
                    e.insert((rank, pid));
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(e) => {
                    e.insert((rank, pid));
                }
            }
        }
        let mut taken = 0;
        for (id, (_, pid)) in init {
            let Some(t) = self.procs.get(&pid) else { continue };
            let ns = open_verified(pid, t.start_time).and_then(|d| d.all_ns(None));
            let Ok(ns) = ns else { continue };
            if !complete(&ns, &self.ctx.host.ns) {
                continue; // an init on its way out: the next pass takes another
            }
            let meta = self.ctx.metadata.lookup(&id);
            let Some(c) = self.containers.get_mut(&id) else { continue };
            c.baseline = Some(Baseline::take(
                (pid, t.start_time),
                &ns,
                &self.ctx.host.ns,
                meta.as_ref().map_or(0, |m| m.private_ns),
                c.previous_sharing,
            ));
            if let Some(m) = meta {
                c.name = m.name.clone().or(c.name.take());
                c.image = m.image.clone().or(c.image.take());
                c.pod = super::db::PodRef::of(&m).or(c.pod.take());
                c.cref.runtime = m.runtime.unwrap_or(c.cref.runtime);
            }
            self.dirty = true;
            taken += 1;
        }
        taken
    }

    /// Check one container process and its threads.
    fn check(&mut self, pid: u32, out: &mut Vec<Violation>) -> io::Result<()> {
        let host = self.ctx.host.ns;
        let gate_runs = self.gate_runs;
        let Some(t) = self.procs.get_mut(&pid) else { return Ok(()) };
        let Class::Container(m) = &mut t.class else { return Ok(()) };
        let Some(c) = self.containers.get(&m.container) else { return Ok(()) };
        let Some(base) = c.baseline else { return Ok(()) };
        // A single-threaded process that has not run since its last check cannot have moved
        // (a new thread would have needed it to run, too).
        let ran = match &mut t.gate {
            Some(g) => g.ran()?,
            None => true,
        };
        if gate_runs && !ran && t.threads == 1 && m.trusted.is_some() {
            return Ok(());
        }
        let watched = base.watched(&host);
        let dir = match &t.gate {
            // The held gate proves afterwards that the pid still named this process.
            Some(_) => ProcDir::open(pid)?,
            None => open_verified(pid, t.start_time)?,
        };
        let mut found = Vec::new();
        let mut trusted = m.trusted.unwrap_or_default();
        let changed;
        match m.trusted {
            None => {
                let cur = dir.all_ns(None)?;
                let (entered, t) = base.judge_new(&cur, &host);
                trusted = t;
                changed = true;
                if entered != 0 {
                    found.push((entered, cur, pid));
                }
            }
            Some(_) => {
                // A process's own pid namespace never changes: only new processes need it.
                let mut cur = trusted;
                for k in NsKind::ALL.iter().filter(|k| watched & k.bit() != 0 && **k != NsKind::Pid) {
                    cur[k.index()] = dir.ns(*k)?;
                }
                let (entered, retrusted) = judge_known(&mut trusted, &cur, watched, &host);
                changed = retrusted;
                if entered != 0 {
                    found.push((entered, cur, pid));
                }
            }
        }
        let threads = dir.thread_count()?;
        if threads > 1 {
            dir.tids(&mut self.tids)?;
            for &tid in self.tids.iter().filter(|&&tid| tid != pid) {
                let mut cur = trusted;
                let mut entered = 0;
                for k in NsKind::ALL.iter().filter(|k| watched & k.bit() != 0 && **k != NsKind::Pid) {
                    match dir.thread_ns(tid, *k) {
                        Ok(v) => {
                            cur[k.index()] = v;
                            if v == host[k.index()] && trusted[k.index()] != v {
                                entered |= k.bit();
                            }
                        }
                        Err(e) if gone(&e) => break,
                        Err(e) => return Err(e),
                    }
                }
                if entered != 0 {
                    found.push((entered, cur, tid));
                }
            }
        }
        if t.gate.as_ref().is_some_and(|g| !g.alive()) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        m.trusted = Some(trusted);
        t.threads = threads;
        self.dirty |= changed;
        for (entered, current, tid) in found {
            out.push(Violation {
                pid,
                tid,
                start_time: t.start_time,
                container: c.cref.clone(),
                entered,
                trusted,
                current,
            });
        }
        Ok(())
    }

    /// Violations → alerts, one per escape: a process already reported for these kinds (by
    /// any path), or whose parent was (a child of an escaped process inherits its
    /// namespaces), is remembered but not reported again.
    fn report(&mut self, mut violations: Vec<Violation>, by: DetectedBy) -> Vec<Alert> {
        violations.sort_by_key(|v| (v.start_time, v.pid, v.tid));
        let mut alerts = Vec::new();
        for v in violations {
            let key = (v.pid, v.start_time);
            let before = self.reported.get(&key).copied().unwrap_or(0);
            if v.entered & !before == 0 {
                continue;
            }
            let dir = ProcDir::open(v.pid).ok();
            let stat = dir.as_ref().and_then(|d| d.stat().ok());
            let ppid = stat.as_ref().map_or_else(|| self.procs.get(&v.pid).map_or(0, |t| t.ppid), |s| s.ppid);
            let parent_reported = self
                .procs
                .get(&ppid)
                .and_then(|p| self.reported.get(&(ppid, p.start_time)))
                .is_some_and(|m| v.entered & !m == 0);
            *self.reported.entry(key).or_default() |= v.entered;
            if parent_reported {
                tracing::debug!("pid {} inherits the escape of its parent {ppid}: not reported again", v.pid);
                continue;
            }
            let killed = self.enforce && procfs::kill_verified(v.pid, v.start_time);
            let proc = ProcessInfo {
                pid: v.pid,
                tid: v.tid,
                name: dir
                    .as_ref()
                    .and_then(|d| d.comm(Some(v.tid)))
                    .or(stat.as_ref().map(|s| s.comm.clone()))
                    .unwrap_or_default(),
                exe: dir.as_ref().and_then(ProcDir::exe).unwrap_or_default(),
                ppid,
                pname: ProcDir::open(ppid).ok().and_then(|d| d.comm(None)).unwrap_or_default(),
                uid: dir.as_ref().and_then(ProcDir::uid),
            };
            let obs = Observation {
                detected_by: by,
                ktime_ns: sys::monotonic_ns(),
                syscall: None,
                action: if killed { crate::enforce::Action::KillProcess } else { crate::enforce::Action::Alert },
                from: v.trusted,
                to: v.current,
                uid: (0, 0),
                euid: (0, 0),
                caps: (0, 0),
            };
            let verdict = Verdict::Escape { entered: v.entered, unexplained: false };
            alerts.push(build_alert(verdict, &obs, &proc, Some(&v.container), &self.ctx));
        }
        alerts
    }
}

fn runtime_from_name(name: &str) -> Runtime {
    [Runtime::Docker, Runtime::Containerd, Runtime::CriO, Runtime::Podman, Runtime::Kubernetes]
        .into_iter()
        .find(|r| r.as_str() == name)
        .unwrap_or(Runtime::Unknown)
}

/// Open /proc/<pid> and make sure it is still the process that started at `start_time`.
fn open_verified(pid: u32, start_time: u64) -> io::Result<ProcDir> {
    let dir = ProcDir::open(pid)?;
    if dir.stat()?.start_time != start_time {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcea_common::init_ns;

    fn host() -> [u32; NS_KINDS] {
        let mut h = crate::trust::HostNamespaces::fixed();
        h[NsKind::Mnt.index()] = 4026531832;
        h[NsKind::Net.index()] = 4026531833;
        h
    }

    /// A Docker container's init on a cgroup-v1 host: own mnt/pid/net/uts/ipc, host
    /// user/cgroup/time.
    fn docker_init() -> [u32; NS_KINDS] {
        let mut ns = host();
        for (k, v) in [
            (NsKind::Mnt, 4026532177),
            (NsKind::Pid, 4026532180),
            (NsKind::PidForChildren, 4026532180),
            (NsKind::Net, 4026532181),
            (NsKind::Uts, 4026532178),
            (NsKind::Ipc, 4026532179),
        ] {
            ns[k.index()] = v;
        }
        ns
    }

    fn with(mut ns: [u32; NS_KINDS], kinds: &[NsKind], from: [u32; NS_KINDS]) -> [u32; NS_KINDS] {
        for k in kinds {
            ns[k.index()] = from[k.index()];
        }
        ns
    }

    fn bits(kinds: &[NsKind]) -> u32 {
        kinds.iter().fold(0, |m, k| m | k.bit())
    }

    #[test]
    fn a_baseline_is_not_taken_from_an_exiting_init() {
        let h = host();
        assert!(complete(&docker_init(), &h));
        let mut zombie = docker_init();
        for k in [NsKind::PidForChildren, NsKind::Net, NsKind::Uts, NsKind::Ipc, NsKind::Cgroup, NsKind::Time] {
            zombie[k.index()] = 0;
        }
        assert!(!complete(&zombie, &h));
        // A kind the kernel does not have (the host has none either) is not missing.
        let mut old_kernel = h;
        old_kernel[NsKind::Time.index()] = 0;
        let mut init = docker_init();
        init[NsKind::Time.index()] = 0;
        assert!(complete(&init, &old_kernel));
    }

    #[test]
    fn baselines() {
        let h = host();
        let b = Baseline::take((10, 1), &docker_init(), &h, 0, None);
        assert_eq!(b.shares_host, bits(&[NsKind::User, NsKind::Cgroup, NsKind::Time]));
        assert_eq!(
            b.watched(&h),
            bits(&[NsKind::Mnt, NsKind::Pid, NsKind::PidForChildren, NsKind::Net, NsKind::Uts, NsKind::Ipc])
        );

        // --pid=host: trusted to share the host pid namespace.
        let pid_host = with(docker_init(), &[NsKind::Pid, NsKind::PidForChildren], h);
        let b = Baseline::take((10, 1), &pid_host, &h, 0, None);
        assert!(b.shares_host & NsKind::Pid.bit() != 0);

        // An init already in the host mount namespace: never trusted (reported instead).
        let escaped_init = with(docker_init(), &[NsKind::Mnt, NsKind::Net], h);
        let b = Baseline::take((10, 1), &escaped_init, &h, 0, None);
        assert_eq!(b.shares_host & NsKind::Mnt.bit(), 0);
        assert_eq!(b.ns[NsKind::Mnt.index()], 0, "no trusted mount namespace to show");
        assert!(b.shares_host & NsKind::Net.bit() != 0, "without the engine, net looks like --network=host");
        // ... unless the engine says the container has its own network namespace.
        let b = Baseline::take((10, 1), &escaped_init, &h, NsKind::Net.bit(), None);
        assert_eq!(b.shares_host & NsKind::Net.bit(), 0);
        let (entered, trusted) = b.judge_new(&escaped_init, &h);
        assert_eq!(entered, bits(&[NsKind::Mnt, NsKind::Net]));
        assert_eq!(trusted[NsKind::Mnt.index()], 0);

        // A re-taken baseline never trusts more than the previous one.
        let b = Baseline::take((11, 2), &pid_host, &h, 0, Some(bits(&[NsKind::User, NsKind::Cgroup, NsKind::Time])));
        assert_eq!(b.shares_host & NsKind::Pid.bit(), 0);
        assert_eq!(b.ns[NsKind::Pid.index()], 0);
        let _ = init_ns::PID;
    }

    #[test]
    fn new_and_known_processes() {
        let h = host();
        let init = docker_init();
        let b = Baseline::take((10, 1), &init, &h, 0, None);
        // docker exec: the container's namespaces.
        assert_eq!(b.judge_new(&init, &h), (0, init));
        // A process born in the host mount+net namespaces (nsenter, then exec).
        let escaped = with(init, &[NsKind::Mnt, NsKind::Net], h);
        let (entered, trusted) = b.judge_new(&escaped, &h);
        assert_eq!(entered, bits(&[NsKind::Mnt, NsKind::Net]));
        assert_eq!(trusted, init, "trusted where it should have been");
        // A process in a nested namespace the container made: trusted as it is.
        let nested = with(init, &[NsKind::Net], [4026539999; NS_KINDS]);
        assert_eq!(b.judge_new(&nested, &h), (0, nested));
        // A child of a setns(CLONE_NEWPID) into the host pid namespace.
        let host_pid = with(init, &[NsKind::Pid, NsKind::PidForChildren], h);
        assert_eq!(b.judge_new(&host_pid, &h).0, bits(&[NsKind::Pid, NsKind::PidForChildren]));

        let watched = b.watched(&h);
        let mut trusted = init;
        assert_eq!(judge_known(&mut trusted, &init, watched, &h), (0, false));
        assert_eq!(judge_known(&mut trusted, &nested, watched, &h), (0, true));
        assert_eq!(trusted, nested, "re-trusted");
        let later = with(nested, &[NsKind::Mnt, NsKind::Net], h);
        assert_eq!(judge_known(&mut trusted, &later, watched, &h), (bits(&[NsKind::Mnt, NsKind::Net]), false));
        assert_eq!(trusted, nested, "an escape is never trusted");
        // Kinds the container shares with the host are not watched at all.
        let user_moved = with(init, &[NsKind::User], [4026530000; NS_KINDS]);
        let mut t = init;
        assert_eq!(judge_known(&mut t, &user_moved, watched, &h), (0, false));
    }

    #[test]
    fn runtime_stage_names() {
        for yes in ["runc:[0:PARENT]", "runc:[2:INIT]", "runc", "crun"] {
            assert!(runtime_stage(yes), "{yes}");
        }
        for no in ["sh", "runcx", "containerd-shim", "nsenter", ""] {
            assert!(!runtime_stage(no), "{no}");
        }
    }

    #[test]
    fn a_pass_over_this_host_and_a_vanished_pid() {
        if !sys::is_root() || sys::ns_inode("self", "pid").ok() != Some(init_ns::PID) {
            eprintln!("SKIP a_pass_over_this_host: needs root in the host pid namespace");
            return;
        }
        let hostns = crate::trust::HostNamespaces::detect(None).unwrap();
        let ctx = AlertContext::new(hostns, crate::container::metadata::MetadataCache::disabled());
        let mut checker = TrustChecker::new(ctx, false);
        checker.set_handle_limit(8);
        let _ = checker.pass();
        assert!(checker.last.processes > 0);
        let _ = checker.pass();
        // Processes that vanish between passes, and a re-check of a pid that never existed.
        for _ in 0..3 {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            c.wait().unwrap();
        }
        let _ = checker.pass();
        assert!(checker.recheck(u32::MAX - 1).is_empty());
        let snap = checker.snapshot();
        snap.validate().unwrap();
        assert!(!checker.dirty());
    }
}
