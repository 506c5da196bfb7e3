//! Condemned containers in user space: the kernel condemns a cgroup at the hook; here the
//! rest of the container is killed (`cgroup.kill`, else SIGKILL to every task), the engine is
//! told, and the set is kept in the state directory so that a restarted agent (or a restarted
//! container, whose cgroup comes back under a new id) is still refused.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use dcea_common::{names, runtime};
use serde::{Deserialize, Serialize};

/// One condemned container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The container's cgroup, relative to the cgroup v2 root (`docker/<id>`).
    pub cgroup: String,
    /// Its cgroup id when last seen (the directory's inode; new after a container restart).
    pub cgroup_id: u64,
    /// The container id from the cgroup path; empty when the path names none.
    pub container_id: String,
    /// Seconds since the epoch.
    pub condemned_at: u64,
}

/// The state file's shape (versioned: a future format is refused, not misread).
#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    containers: Vec<Entry>,
}

const VERSION: u32 = 1;
pub const STATE_FILE: &str = "condemned.json";
/// `dcea release` drops one file per request here; the running agent applies and removes it.
pub const RELEASE_DIR: &str = "release";

/// The condemned set as the agent keeps it.
pub struct Condemned {
    state_dir: PathBuf,
    cgroup2: Option<PathBuf>,
    /// Keyed by cgroup path.
    entries: BTreeMap<String, Entry>,
}

/// What one sync did, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub condemned: Vec<Entry>,
    pub released: Vec<String>,
    pub killed_tasks: usize,
}

impl Condemned {
    /// The set from the state directory; a corrupt file is set aside (`.corrupt`) with a
    /// warning and the set starts empty.
    pub fn load(state_dir: &Path) -> Condemned {
        let path = state_dir.join(STATE_FILE);
        let entries = match fs::read(&path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(list) => list.into_iter().map(|e| (e.cgroup.clone(), e)).collect(),
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = fs::rename(&path, &aside);
                    tracing::warn!(
                        "{}: {e}; set aside as {}, no container is condemned",
                        path.display(),
                        aside.display()
                    );
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("{}: {e}; no container is condemned", path.display());
                BTreeMap::new()
            }
        };
        Condemned { state_dir: state_dir.to_path_buf(), cgroup2: cgroup2_root(), entries }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Bring the kernel and this set together: cgroups the kernel condemned are killed and
    /// recorded, recorded ones are (re)entered into the kernel under their current id, release
    /// requests are applied. Cheap when nothing changed: one map walk and a stat per entry.
    pub fn sync(&mut self, ebpf: &mut aya::Ebpf) -> SyncReport {
        let mut report = SyncReport::default();
        let Some(root) = self.cgroup2.clone() else { return report };
        let Some(mut map) = condemned_map(ebpf) else { return report };
        let mut changed = self.apply_releases(&mut map, &mut report);
        let in_kernel: Vec<u64> = map.keys().filter_map(Result::ok).collect();
        let known: std::collections::HashSet<u64> = self.entries.values().map(|e| e.cgroup_id).collect();
        for id in in_kernel.iter().copied().filter(|id| !known.contains(id)) {
            let Some(dir) = find_by_inode(&root, id) else {
                // Gone already (the kill emptied it and the runtime removed it): nothing to keep.
                let _ = map.remove(&id);
                continue;
            };
            let entry = entry_for(&root, &dir, id);
            self.entries.insert(entry.cgroup.clone(), entry.clone());
            report.condemned.push(entry);
            changed = true;
        }
        for entry in self.entries.values_mut() {
            let dir = root.join(&entry.cgroup);
            let Ok(meta) = fs::metadata(&dir) else { continue };
            if meta.ino() != entry.cgroup_id || !in_kernel.contains(&entry.cgroup_id) {
                // A restarted container (new cgroup id), or an agent restarted since.
                entry.cgroup_id = meta.ino();
                let _ = map.insert(entry.cgroup_id, 0, 0);
                changed = true;
            }
            report.killed_tasks += kill_cgroup(&dir);
        }
        set_condemned_flag(ebpf, !self.entries.is_empty());
        if changed && let Err(e) = self.save() {
            tracing::warn!("saving the condemned set: {e}");
        }
        report
    }

    /// Where the cgroup v2 hierarchy is mounted, as found at start.
    pub fn cgroup2(&self) -> Option<&Path> {
        self.cgroup2.as_deref()
    }

    /// A container the kernel condemned, as its record named it (container id, cgroup path):
    /// kept even when its cgroup is already gone, so that a restart of it is refused too.
    /// Returns the entry when it is new.
    pub fn note(&mut self, container_id: &str, cgroup: &str) -> Option<Entry> {
        let cgroup = record_cgroup(cgroup)?;
        if self.entries.contains_key(cgroup) {
            return None;
        }
        let root = self.cgroup2.clone()?;
        let dir = root.join(cgroup);
        let id = fs::metadata(&dir).map(|m| m.ino()).unwrap_or(0);
        let mut entry = entry_for(&root, &dir, id);
        entry.container_id = container_id.to_string();
        self.entries.insert(entry.cgroup.clone(), entry.clone());
        if let Err(e) = self.save() {
            tracing::warn!("saving the condemned set: {e}");
        }
        Some(entry)
    }

    /// Condemn the container of a running process from user space (a rule whose technique the
    /// kernel cannot decide, acted on after the fact). Returns the entry when it is new.
    pub fn condemn_pid(&mut self, ebpf: &mut aya::Ebpf, tgid: u32) -> Option<Entry> {
        let root = self.cgroup2.clone()?;
        let rel = fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok().and_then(|s| v2_path(&s))?;
        if rel.is_empty() {
            return None; // the root cgroup: the host itself
        }
        let dir = proc_cgroup_dir(&root, &rel)?;
        let id = fs::metadata(&dir).ok()?.ino();
        let mut map = condemned_map(ebpf)?;
        let _ = map.insert(id, 0, 0);
        set_condemned_flag(ebpf, true);
        let entry = entry_for(&root, &dir, id);
        let new = self.entries.insert(entry.cgroup.clone(), entry.clone()).is_none();
        kill_cgroup(&dir);
        let _ = self.save();
        new.then_some(entry)
    }

    fn apply_releases(&mut self, map: &mut BpfHashMap<&mut MapData, u64, u64>, report: &mut SyncReport) -> bool {
        let dir = self.state_dir.join(RELEASE_DIR);
        let Ok(requests) = fs::read_dir(&dir) else { return false };
        let mut changed = false;
        for req in requests.flatten() {
            let name = req.file_name().to_string_lossy().into_owned();
            let _ = fs::remove_file(req.path());
            let matched: Vec<String> =
                self.entries.values().filter(|e| matches(e, &name)).map(|e| e.cgroup.clone()).collect();
            for cgroup in matched {
                if let Some(e) = self.entries.remove(&cgroup) {
                    let _ = map.remove(&e.cgroup_id);
                    report.released.push(e.cgroup);
                    changed = true;
                }
            }
        }
        changed
    }

    fn save(&self) -> io::Result<()> {
        fs::create_dir_all(&self.state_dir)?;
        let file = StateFile { version: VERSION, containers: self.entries.values().cloned().collect() };
        let tmp = self.state_dir.join(format!("{STATE_FILE}.tmp"));
        fs::write(&tmp, serde_json::to_vec_pretty(&file).map_err(io::Error::other)?)?;
        fs::rename(tmp, self.state_dir.join(STATE_FILE))
    }
}

/// Does a release request name this entry: its container id (or a prefix of 12 or more hex
/// digits, as `docker ps` prints it) or its cgroup path?
pub fn matches(e: &Entry, name: &str) -> bool {
    let name = name.trim();
    !name.is_empty()
        && (e.cgroup == name.replace('%', "/")
            || (!e.container_id.is_empty()
                && (e.container_id == name || (name.len() >= 12 && e.container_id.starts_with(name)))))
}

/// Parse a state file: the list of entries, or why it cannot be read.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let file: StateFile = serde_json::from_slice(bytes).map_err(|e| format!("not a condemned-set file: {e}"))?;
    if file.version != VERSION {
        return Err(format!("version {} (this dcea reads {VERSION})", file.version));
    }
    for e in &file.containers {
        if e.cgroup.is_empty() || e.cgroup.split('/').any(|c| c == "..") {
            return Err(format!("cgroup path {:?} is not a container's", e.cgroup));
        }
    }
    Ok(file.containers)
}

fn entry_for(root: &Path, dir: &Path, id: u64) -> Entry {
    let cgroup = dir.strip_prefix(root).unwrap_or(dir).to_string_lossy().trim_start_matches('/').to_string();
    let container_id = crate::container::from_cgroup_path(&cgroup).map(|c| c.id).unwrap_or_default();
    let condemned_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Entry { cgroup, cgroup_id: id, container_id, condemned_at }
}

/// A cgroup path as a kernel record names it, relative to the cgroup v2 root: None for the
/// root itself (the host) or a path that climbs out of it.
pub fn record_cgroup(cgroup: &str) -> Option<&str> {
    let rel = cgroup.trim_matches('/');
    (!rel.is_empty() && !rel.split('/').any(|c| c == "..")).then_some(rel)
}

/// The `0::/path` line of a /proc/<pid>/cgroup, without the leading slash.
pub fn v2_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().trim_start_matches('/').to_string())
}

/// The directory of a /proc/<pid>/cgroup path under the cgroup v2 root. An agent in a cgroup
/// namespace of its own (a pod, with the node's /sys/fs/cgroup mounted) reads other
/// containers' paths relative to its namespace root, as `../../kubepods.slice/…`: the part
/// after the climb is found in the tree, and only a single match is taken.
pub fn proc_cgroup_dir(root: &Path, rel: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let climb = parts.iter().take_while(|c| **c == "..").count();
    let rest = &parts[climb..];
    if rest.is_empty() || rest.iter().any(|c| *c == ".." || *c == ".") {
        return None;
    }
    if climb == 0 {
        return Some(root.join(rest.join("/")));
    }
    let suffix: PathBuf = rest.iter().collect();
    let mut found = Vec::new();
    walk_cgroups(root, |dir| {
        let hit = dir.ends_with(&suffix) && dir != root;
        if hit {
            found.push(dir.to_path_buf());
        }
        hit && found.len() > 1
    });
    if found.len() == 1 { found.pop() } else { None }
}

/// Depth-first over the cgroup directories under `root` (8 levels at most) until `stop`
/// returns true for one, which is returned.
fn walk_cgroups(root: &Path, mut stop: impl FnMut(&Path) -> bool) -> Option<PathBuf> {
    let mut stack = vec![(root.to_path_buf(), 0u32)];
    while let Some((dir, depth)) = stack.pop() {
        if stop(&dir) {
            return Some(dir);
        }
        if depth >= 8 {
            continue;
        }
        for child in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((child.path(), depth + 1));
            }
        }
    }
    None
}

/// Where the cgroup v2 hierarchy is mounted (a hybrid host has it at /sys/fs/cgroup/unified).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(at.replace("\\040", " ")))
    })
}

/// The cgroup directory whose inode is `id` (a cgroup's id is its kernfs inode).
fn find_by_inode(root: &Path, id: u64) -> Option<PathBuf> {
    walk_cgroups(root, |dir| fs::metadata(dir).is_ok_and(|m| m.ino() == id))
}

/// Kill every task of a cgroup: `cgroup.kill` (5.14+), else SIGKILL to each listed pid until
/// none is left. Returns how many pids were signalled (0 with cgroup.kill, which counts none).
pub fn kill_cgroup(dir: &Path) -> usize {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return 0;
    }
    let mut signalled = 0;
    for _ in 0..10 {
        let pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|p| *p > 1)
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid read from the condemned cgroup, never 0, -1 or 1.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                signalled += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signalled
}

fn condemned_map(ebpf: &mut aya::Ebpf) -> Option<BpfHashMap<&mut MapData, u64, u64>> {
    BpfHashMap::try_from(ebpf.map_mut(names::CONDEMNED_MAP)?).ok()
}

fn set_condemned_flag(ebpf: &mut aya::Ebpf, any: bool) {
    if let Some(m) = ebpf.map_mut(names::RUNTIME_MAP)
        && let Ok(mut a) = Array::<_, u32>::try_from(m)
    {
        let _ = a.set(runtime::CONDEMNED_SLOT, u32::from(any), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cgroup: &str, id: &str) -> Entry {
        Entry { cgroup: cgroup.into(), cgroup_id: 7, container_id: id.into(), condemned_at: 1 }
    }

    #[test]
    fn state_files_round_trip_and_bad_ones_say_why() {
        let list = vec![entry("docker/abc", "abc")];
        let bytes = serde_json::to_vec(&StateFile { version: VERSION, containers: list.clone() }).unwrap();
        assert_eq!(parse(&bytes).unwrap(), list);
        assert!(parse(b"{").unwrap_err().contains("not a condemned-set file"));
        assert!(parse(br#"{"version":9,"containers":[]}"#).unwrap_err().contains("version 9"));
        let hostile =
            br#"{"version":1,"containers":[{"cgroup":"../../etc","cgroup_id":1,"container_id":"","condemned_at":0}]}"#;
        assert!(parse(hostile).unwrap_err().contains("not a container's"));
        assert!(parse(&[0xff, 0xfe, 0]).is_err());
    }

    #[test]
    fn a_corrupt_state_file_is_set_aside_and_nothing_is_condemned() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE_FILE), b"\0garbage").unwrap();
        let set = Condemned::load(dir.path());
        assert_eq!(set.entries().count(), 0);
        assert!(dir.path().join("condemned.json.corrupt").exists());
    }

    #[test]
    fn release_requests_name_a_container_by_id_prefix_or_cgroup() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let e = entry(&format!("docker/{id}"), id);
        assert!(matches(&e, id));
        assert!(matches(&e, &id[..12]));
        assert!(!matches(&e, &id[..6]), "a short prefix is ambiguous");
        assert!(matches(&e, &format!("docker%{id}")));
        assert!(!matches(&e, ""));
    }

    #[test]
    fn the_v2_line_of_proc_cgroup_names_the_path() {
        assert_eq!(v2_path("12:pids:/docker/x\n0::/docker/x\n").as_deref(), Some("docker/x"));
        assert_eq!(v2_path("0::/\n").as_deref(), Some(""));
        assert_eq!(v2_path("1:name=systemd:/\n"), None);
    }

    #[test]
    fn a_path_read_from_inside_a_cgroup_namespace_is_found_by_what_follows_the_climb() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in [
            "kubepods.slice/pod-a/cri-containerd-1.scope",
            "kubepods.slice/pod-b/cri-containerd-2.scope",
            "x/dup",
            "y/dup",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        assert_eq!(proc_cgroup_dir(r, "kubepods.slice/pod-a"), Some(r.join("kubepods.slice/pod-a")));
        assert_eq!(
            proc_cgroup_dir(r, "../../kubepods.slice/pod-b/cri-containerd-2.scope"),
            Some(r.join("kubepods.slice/pod-b/cri-containerd-2.scope"))
        );
        assert_eq!(proc_cgroup_dir(r, "../../dup"), None, "two matches: neither is taken");
        assert_eq!(proc_cgroup_dir(r, "../../missing.scope"), None);
        assert_eq!(proc_cgroup_dir(r, "../.."), None, "the namespace's ancestors are not a container");
        assert_eq!(proc_cgroup_dir(r, "a/../b"), None);
    }
}
