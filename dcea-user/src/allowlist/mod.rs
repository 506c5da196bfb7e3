//! The per-workload process allowlist (the second paper's "whitelist for the container
//! process"): each workload learns the programs it runs, then every other exec is reported
//! (monitor) or killed in the kernel before it runs (enforce).
//!
//! A judge of exec records: it takes the decoded record with its container and metadata and
//! returns alerts; the kernel side ([`sync`]) is kept in step by the monitor after each drain.

pub mod cli;
pub mod key;
pub mod profile;
pub mod store;
pub mod sync;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use dcea_common::flags;
use serde_json::json;

use crate::{
    container::{ContainerRef, metadata::ContainerMeta},
    monitor::{behaviour::DecodedBehaviour, rules_event::KernelEvent},
    output::{Alert, Priority},
    rules::{AlertMeta, RuleSet, Source},
};
pub use profile::{Entry, Mode, Profile};

pub const RULE_NOT_ALLOWED: &str = "Process not in the workload's allowlist";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowlistOptions {
    pub enabled: bool,
    /// How long a new workload learns; None: until promoted.
    pub learn: Option<Duration>,
    /// What a profile becomes when learning ends.
    pub after: Mode,
    /// In enforce mode, kill the runtime's execs into a container (`docker exec`) too.
    pub block_runtime_exec: bool,
    /// Profiles supplied from files (a ConfigMap): imported into the state directory at start
    /// and whenever one changes there.
    pub supplied_dir: Option<PathBuf>,
}

impl Default for AllowlistOptions {
    fn default() -> AllowlistOptions {
        AllowlistOptions {
            enabled: true,
            learn: Some(Duration::from_secs(3600)),
            after: Mode::Monitor,
            block_runtime_exec: false,
            supplied_dir: None,
        }
    }
}

/// Profiles kept at most: past it new workloads are not profiled (said once). Containers that
/// are each their own workload (`docker run` with a generated name) would otherwise grow the
/// directory without bound.
const PROFILES_MAX: usize = 4096;

/// Containers remembered; past this the oldest knowledge is dropped and relearned.
const CONTAINERS_MAX: usize = 4096;

/// A container the judge has seen: its profile, and a process and cgroup to sync it with.
#[derive(Clone, Debug)]
pub struct Seen {
    pub profile: String,
    /// Processes of the container to read its files through, best first: the record's task,
    /// its parent, the init the engine names (a short-lived exec is gone by the time the
    /// kernel entries are written; its parent and the init usually are not).
    pub pids: Vec<u32>,
    /// The cgroup path as the kernel record names it.
    pub cgroup: String,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct AllowlistStats {
    pub execs_judged: u64,
    pub learned: u64,
    pub not_allowed: u64,
    pub killed: u64,
    /// Container execs with no workload to key a profile on (no metadata yet).
    pub unkeyed: u64,
}

pub struct Allowlist {
    pub opts: AllowlistOptions,
    pub store: store::Store,
    rules: RuleSet,
    pub containers: HashMap<String, Seen>,
    /// Profiles learned into since the last save.
    dirty: std::collections::HashSet<String>,
    /// Containers whose kernel entries must be (re)written or removed.
    pub to_sync: std::collections::HashSet<String>,
    pub stats: AllowlistStats,
    supplied_stamps: HashMap<PathBuf, (SystemTime, u64)>,
    full_said: bool,
    /// The first tick looks for running containers of enforced profiles (the engine's first
    /// listing is in by then).
    first_tick: bool,
}

fn internal_rules() -> RuleSet {
    let text = include_str!("alert.yaml").to_string();
    // The text is part of the binary and tested: it compiles.
    RuleSet::from_sources(vec![Source { name: "allowlist (internal)".into(), text }])
        .unwrap_or_else(|e| panic!("the allowlist's internal rule: {e}"))
}

impl Allowlist {
    pub fn new(state_dir: &Path, opts: AllowlistOptions) -> Allowlist {
        let mut a = Allowlist {
            opts,
            store: store::Store::new(state_dir),
            rules: internal_rules(),
            containers: HashMap::new(),
            dirty: Default::default(),
            to_sync: Default::default(),
            stats: AllowlistStats::default(),
            supplied_stamps: HashMap::new(),
            full_said: false,
            first_tick: true,
        };
        a.import_supplied();
        a.poll();
        eprintln!(
            "dcea: allowlist: {} profile(s) in {} ({} monitor, {} enforce); new workloads learn {}, then {}",
            a.store.len(),
            a.store.dir.display(),
            a.store.profiles().filter(|p| p.mode_at(SystemTime::now()) == Mode::Monitor).count(),
            a.store.profiles().filter(|p| p.mode_at(SystemTime::now()) == Mode::Enforce).count(),
            a.opts.learn.map_or("until promoted".to_string(), |d| format!("for {}", humantime::format_duration(d))),
            a.opts.after.name()
        );
        a
    }

    /// Judge one exec record of a container: learn it, or report (and, in enforce mode, say
    /// the kernel killed) a program not in the profile.
    pub fn judge(
        &mut self,
        b: &DecodedBehaviour,
        kev: &KernelEvent<'_>,
        container: &ContainerRef,
        meta: Option<&ContainerMeta>,
        alert_meta: &AlertMeta<'_>,
    ) -> Option<Alert> {
        let killed = b.raw.flags & (flags::NOT_ALLOWED | flags::KILLED) == flags::NOT_ALLOWED | flags::KILLED;
        let now = SystemTime::now();
        let name = match meta.and_then(key::workload) {
            Some(work) => {
                if self.store.by_workload(&work.key).is_none_or(|p| p.name != work.name) {
                    if self.store.len() >= PROFILES_MAX {
                        self.stats.unkeyed += 1;
                        if !self.full_said {
                            tracing::warn!("allowlist: {PROFILES_MAX} profiles: new workloads are not profiled");
                            self.full_said = true;
                        }
                        return None;
                    }
                    self.store.insert(Profile::new(&work.name, &work.key, self.opts.learn, self.opts.after, now));
                    self.dirty.insert(work.name.clone());
                    eprintln!("dcea: allowlist: new workload {} learns as profile {}", work.key, work.name);
                }
                work.name
            }
            // The engine forgot a container it named before (removed meanwhile).
            None => match self.containers.get(&container.id) {
                Some(seen) => seen.profile.clone(),
                None => {
                    self.stats.unkeyed += 1;
                    // The kernel killed it by a profile the agent synced: still owed a report.
                    return killed
                        .then(|| self.alert(kev, alert_meta, None, "unknown", true, false, "not in the profile"));
                }
            },
        };
        self.stats.execs_judged += 1;
        // The runtime's exec into the container: its first exec there, by a task that is not
        // the container's init (whose first exec is the workload's entrypoint). A task gone
        // before it was read is taken as the init unless the engine names another: a
        // short-lived container's entrypoint is learned, and a doubt is reported louder.
        let init = b.pid_ns_init.unwrap_or_else(|| meta.and_then(|m| m.pid).is_none_or(|p| p == b.raw.tgid));
        let runtime_exec = b.raw.flags & flags::ENTRY_EXEC != 0 && !init;
        self.remember(container, &name, b, meta.and_then(|m| m.pid));
        let mode = self.current_mode(&name, now)?;
        let exe = b.exe.as_str();
        // Fileless code, or a path the kernel could not walk whole, is never learned.
        let nameless = b.raw.flags & (flags::FILE_UNLINKED | flags::EXE_TRUNCATED) != 0 || !exe.starts_with('/');
        if mode == Mode::Learn {
            if runtime_exec || nameless {
                return None; // a `docker exec` is not the workload's
            }
            let known = self.store.get(&name).is_some_and(|p| p.find(exe, &b.comm).is_some());
            if !known {
                let sha256 = kev.integrity().zip(kev.file_query()).and_then(|(i, q)| i.file_sha256(&q));
                let entry = Entry {
                    path: exe.into(),
                    name: b.comm.clone(),
                    sha256,
                    parent: Some(b.parent_comm.clone()).filter(|p| !p.is_empty()),
                };
                let p = self.store.get_mut(&name)?;
                if p.learn(entry, now) {
                    self.stats.learned += 1;
                    self.dirty.insert(name.clone());
                } else if p.entries.len() >= profile::MAX_ENTRIES {
                    tracing::warn!(
                        "allowlist: profile {} is full ({} entries): {exe} not learned",
                        p.name,
                        profile::MAX_ENTRIES
                    );
                }
            }
            return None;
        }
        let profile = self.store.get(&name)?;
        // An unchanged image file needs no hash; a file of the writable layer must match.
        let measured = kev.file_integrity();
        let sha = match measured {
            Some(fi) if fi.verdict == crate::integrity::Verdict::Image => None,
            Some(fi) => Some(fi.sha256.clone().unwrap_or_else(|| "unmeasured".into())),
            None => None,
        };
        let found = profile.find(exe, &b.comm).is_some();
        if profile::allows(profile, exe, &b.comm, sha.as_deref()) && !killed {
            return None;
        }
        let reason = match (found, nameless) {
            (_, true) => "fileless or unnamed program",
            (true, false) => "the file differs from the profile's",
            (false, false) => "not in the profile",
        };
        let (name, mode) = (profile.name.clone(), mode);
        if mode == Mode::Enforce && !self.to_sync.contains(&container.id) && !killed {
            // Not killed: the kernel does not know this container yet.
            self.to_sync.insert(container.id.clone());
        }
        self.stats.not_allowed += 1;
        if killed {
            self.stats.killed += 1;
        }
        Some(self.alert(kev, alert_meta, Some(&name), mode.name(), killed, runtime_exec, reason))
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        kev: &KernelEvent<'_>,
        alert_meta: &AlertMeta<'_>,
        profile: Option<&str>,
        mode: &str,
        killed: bool,
        runtime_exec: bool,
        reason: &str,
    ) -> Alert {
        let rule = &self.rules.rules()[0];
        let mut alert = rule.alert(kev, alert_meta);
        alert.priority = match (killed, runtime_exec) {
            (true, _) => Priority::Critical,
            (false, true) => Priority::Notice,
            (false, false) => Priority::Error,
        };
        let done = if killed { "killed" } else { "reported" };
        let what = if runtime_exec { "runtime exec" } else { "exec" };
        alert.output =
            format!("{} profile={} mode={mode} {what} {done}: {reason}", alert.output, profile.unwrap_or("?"));
        let f = &mut alert.output_fields;
        f.insert("dcea.allowlist.profile".into(), json!(profile));
        f.insert("dcea.allowlist.mode".into(), json!(mode));
        f.insert("dcea.allowlist.reason".into(), json!(reason));
        f.insert("dcea.allowlist.runtime_exec".into(), json!(runtime_exec));
        f.insert("dcea.action".into(), json!(if killed { "kill-process" } else { "alert" }));
        if killed {
            f.insert("dcea.enforced_at".into(), json!("kernel hook"));
        }
        alert
    }

    fn remember(&mut self, container: &ContainerRef, profile: &str, b: &DecodedBehaviour, init: Option<u32>) {
        if self.containers.len() >= CONTAINERS_MAX && !self.containers.contains_key(&container.id) {
            self.containers.clear();
        }
        let mut pids = vec![b.raw.tgid];
        pids.extend([b.raw.ppid].into_iter().chain(init).filter(|p| *p > 1 && *p != b.raw.tgid));
        let seen = Seen { profile: profile.to_string(), pids, cgroup: b.cgroup_path.clone() };
        let fresh = match self.containers.insert(container.id.clone(), seen) {
            None => true,
            Some(old) => old.profile != profile,
        };
        if fresh && self.store.get(profile).is_some_and(|p| p.mode_at(SystemTime::now()) == Mode::Enforce) {
            self.to_sync.insert(container.id.clone());
        }
    }

    /// The profile's mode now, writing the end of its learning down when it just came.
    fn current_mode(&mut self, name: &str, now: SystemTime) -> Option<Mode> {
        let p = self.store.get_mut(name)?;
        let mode = p.mode_at(now);
        if mode != p.mode {
            p.set_mode(mode, now);
            eprintln!(
                "dcea: allowlist: profile {name} finished learning ({} entries): now {}",
                p.entries.len(),
                mode.name()
            );
            self.dirty.insert(name.to_string());
            self.sync_profile(name);
        }
        Some(mode)
    }

    fn sync_profile(&mut self, name: &str) {
        let ids: Vec<String> =
            self.containers.iter().filter(|(_, s)| s.profile == name).map(|(id, _)| id.clone()).collect();
        self.to_sync.extend(ids);
    }

    /// Once a second: profiles changed on disk are re-read (a promote takes effect here),
    /// learning that ended is written down, learned entries are saved. True when a profile
    /// became enforced: running containers of it should be found ([`Allowlist::adopt_running`]).
    pub fn tick(&mut self) -> bool {
        let enforced_before = self.enforced_count();
        self.import_supplied();
        self.poll();
        let now = SystemTime::now();
        let names: Vec<String> = self.store.profiles().map(|p| p.name.clone()).collect();
        for name in names {
            self.current_mode(&name, now);
        }
        for name in std::mem::take(&mut self.dirty) {
            if let Err(e) = self.store.save(&name) {
                tracing::warn!("allowlist: saving profile {name}: {e}");
            }
        }
        let first = std::mem::take(&mut self.first_tick);
        first || self.enforced_count() > enforced_before
    }

    fn enforced_count(&self) -> usize {
        let now = SystemTime::now();
        self.store.profiles().filter(|p| p.mode_at(now) == Mode::Enforce).count()
    }

    /// Find the running containers of enforced profiles (at start, and when a profile becomes
    /// enforced), so the kernel enforces them before their next exec, not after it.
    pub fn adopt_running(&mut self, metadata: &crate::container::metadata::MetadataCache) {
        if self.enforced_count() == 0 {
            return;
        }
        let mut found: HashMap<String, (u32, String)> = HashMap::new();
        for (pid, c) in crate::integrity::pass::container_processes() {
            if found.contains_key(&c.id)
                || self
                    .containers
                    .get(&c.id)
                    .is_some_and(|s| s.pids.iter().any(|p| crate::trust::procfs::start_time(*p).is_some()))
            {
                continue;
            }
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|s| crate::enforce::condemned::v2_path(&s))
                .unwrap_or_default();
            found.insert(c.id, (pid, cgroup));
        }
        let now = SystemTime::now();
        for (id, (pid, cgroup)) in found {
            let Some(work) = metadata.lookup(&id).as_deref().and_then(key::workload) else { continue };
            let Some(p) = self.store.by_workload(&work.key) else { continue };
            if p.mode_at(now) == Mode::Enforce {
                self.containers.insert(id.clone(), Seen { profile: p.name.clone(), pids: vec![pid], cgroup });
                self.to_sync.insert(id);
            }
        }
    }

    fn poll(&mut self) {
        let changes = self.store.poll();
        for (path, why, aside) in &changes.corrupt {
            eprintln!(
                "dcea: allowlist: profile {} is corrupt ({why}): set aside{}; its workload learns afresh",
                path.display(),
                aside.as_ref().map(|a| format!(" as {}", a.display())).unwrap_or_default()
            );
        }
        for name in changes.updated.iter().chain(&changes.removed) {
            self.sync_profile(name);
        }
    }

    /// Profiles supplied in `--allowlist-dir` (a ConfigMap) replace the state's copy when their
    /// file changes; a bad one is reported and left where it is.
    fn import_supplied(&mut self) {
        let Some(dir) = self.opts.supplied_dir.clone() else { return };
        for (_, path) in store::list(&dir) {
            let Ok(m) = std::fs::metadata(&path) else { continue };
            let stamp = (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len());
            if self.supplied_stamps.get(&path) == Some(&stamp) {
                continue;
            }
            self.supplied_stamps.insert(path.clone(), stamp);
            // A mounted ConfigMap's files are symlinks (`web.yaml -> ..data/web.yaml`): read
            // the file they name, which the store's reader (regular files only) accepts.
            let target = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            match store::read(&target) {
                Ok(Some(p)) => {
                    let _lock = store::lock(&self.store.dir);
                    match store::write(&self.store.dir, &p) {
                        Ok(_) => eprintln!("dcea: allowlist: profile {} supplied by {}", p.name, path.display()),
                        Err(e) => tracing::warn!("allowlist: importing {}: {e}", path.display()),
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("dcea: allowlist: supplied profile {} is not used: {e}", path.display()),
            }
        }
    }

    /// Kill the runtime's execs into this profile's containers too?
    pub fn blocks_runtime_exec(&self, profile: &Profile) -> bool {
        self.opts.block_runtime_exec || profile.block_runtime_exec
    }
}

#[cfg(test)]
mod tests;
