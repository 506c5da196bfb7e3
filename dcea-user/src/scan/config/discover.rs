//! Which containers are running, and which host pid is each one's init: the Docker Engine
//! API when its socket is there (names, images), the CRI runtimes' (pods, names, images, the
//! declared settings), always completed from /proc and cgroups (every runtime: containerd,
//! CRI-O, Podman, Docker without its API).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use serde::Serialize;

use super::docker;
use crate::container::{self, Runtime};

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub runtime: Runtime,
    pub pid: u32,
    /// `namespace/name` of the Kubernetes pod (CRI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// What the CRI runtime says the container was created with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<super::cri::Declared>,
}

/// The parent pid from /proc/<pid>/stat (the comm field may contain spaces and parentheses).
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Container id → (runtime, init pid), from every process's cgroup. The init is the
/// container process whose parent is outside the container (a shim or conmon).
pub fn from_proc(proc_root: &Path) -> BTreeMap<String, (Runtime, u32)> {
    let mut members: BTreeMap<String, (Runtime, Vec<(u32, u32)>)> = BTreeMap::new();
    let Ok(dir) = fs::read_dir(proc_root) else { return BTreeMap::new() };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cg) = fs::read_to_string(e.path().join("cgroup")) else { continue };
        let Some(c) = container::from_proc_cgroup(&cg) else { continue };
        let ppid = fs::read_to_string(e.path().join("stat")).ok().as_deref().and_then(parse_ppid).unwrap_or(0);
        members.entry(c.id).or_insert_with(|| (c.runtime, Vec::new())).1.push((pid, ppid));
    }
    members
        .into_iter()
        .filter_map(|(id, (rt, procs))| {
            let pids: BTreeSet<u32> = procs.iter().map(|p| p.0).collect();
            let init = procs.iter().filter(|(_, pp)| !pids.contains(pp)).map(|p| p.0).min()?;
            Some((id, (rt, init)))
        })
        .collect()
}

/// Discover targets. Docker and CRI problems are warnings: /proc still finds every container.
pub fn discover(socket: &Path, cri_sockets: &[std::path::PathBuf], warnings: &mut Vec<String>) -> Vec<Target> {
    let procs = from_proc(Path::new("/proc"));
    let mut targets: BTreeMap<String, Target> = procs
        .iter()
        .map(|(id, (rt, pid))| {
            (
                id.clone(),
                Target { id: id.clone(), name: None, image: None, runtime: *rt, pid: *pid, pod: None, declared: None },
            )
        })
        .collect();
    super::cri::enrich(&mut targets, cri_sockets, warnings);
    if !socket.exists() {
        return targets.into_values().collect();
    }
    match docker::list(socket) {
        Ok(list) => {
            for c in list {
                if let Some(t) = targets.get_mut(&c.id) {
                    t.name = c.name;
                    t.image = c.image;
                    continue;
                }
                // Not found through cgroups (an unusual cgroup layout): ask the engine.
                match docker::pid(socket, &c.id) {
                    Ok(Some(pid)) => {
                        targets.insert(
                            c.id.clone(),
                            Target {
                                id: c.id,
                                name: c.name,
                                image: c.image,
                                runtime: Runtime::Docker,
                                pid,
                                pod: None,
                                declared: None,
                            },
                        );
                    }
                    Ok(None) => warnings.push(format!("container {} has no running process", c.id)),
                    Err(e) => warnings.push(format!("container {}: {e}", c.id)),
                }
            }
        }
        Err(e) => warnings.push(format!("{e}; containers found from /proc only, without names")),
    }
    targets.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_from_stat() {
        assert_eq!(parse_ppid("1234 (sleep) S 1200 1234 1234 0 -1"), Some(1200));
        assert_eq!(parse_ppid("1234 (a) b) (c) S 77 1 1"), Some(77));
        assert_eq!(parse_ppid(""), None);
        assert_eq!(parse_ppid("1234 (x"), None);
        assert_eq!(parse_ppid("1 (x) S"), None);
    }

    #[test]
    fn proc_walk_of_a_missing_root_is_empty() {
        assert!(from_proc(Path::new("/nonexistent")).is_empty());
        // The test process itself is not in a container on a dev host; either way no panic.
        let _ = from_proc(Path::new("/proc"));
    }
}
