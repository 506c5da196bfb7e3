//! The container's cgroup v2 directory, on pure v2 hosts (`/sys/fs/cgroup`) and hybrid ones
//! (`/sys/fs/cgroup/unified`), for the Docker (cgroupfs and systemd drivers), containerd,
//! CRI-O and kubepods layouts.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::QuarantineError;

/// The cgroup v2 mount points a node may have, in the order they are tried.
pub const V2_CANDIDATES: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Deep enough for `kubepods.slice/kubepods-burstable.slice/…pod<uid>.slice/cri-containerd-<id>.scope`.
const MAX_DEPTH: usize = 6;

/// Where cgroup v2 is mounted; a clear error on a v1-only host.
pub fn v2_root() -> Result<PathBuf, QuarantineError> {
    for c in V2_CANDIDATES {
        if crate::sys::fs_magic(Path::new(c)) == Some(CGROUP2_SUPER_MAGIC) {
            return Ok(PathBuf::from(c));
        }
    }
    crate::enforce::condemned::cgroup2_root().ok_or(QuarantineError::NoCgroup2)
}

/// The v2 path (relative to the v2 root, no leading `/`) in `/proc/<pid>/cgroup` content.
pub fn v2_path_of(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().trim_start_matches('/').to_string())
}

/// The well-known places of a container's cgroup, relative to the v2 root.
pub fn candidates(id: &str) -> Vec<String> {
    vec![
        format!("docker/{id}"),
        format!("system.slice/docker-{id}.scope"),
        format!("system.slice/cri-containerd-{id}.scope"),
        format!("system.slice/crio-{id}.scope"),
        format!("machine.slice/libpod-{id}.scope"),
    ]
}

/// The container's cgroup directory: from its init's `/proc/<pid>/cgroup` when the pid is
/// known, else the well-known layouts, else a bounded walk (kubepods, nested slices) for the
/// directory whose name carries the id.
pub fn find(root: &Path, id: &str, pid: Option<u32>) -> Result<PathBuf, QuarantineError> {
    if let Some(pid) = pid
        && let Ok(content) = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        && let Some(rel) = v2_path_of(&content)
        && crate::container::from_cgroup_path(&rel).is_some_and(|c| c.id == id)
    {
        let dir = root.join(&rel);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    for rel in candidates(id) {
        let dir = root.join(rel);
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    walk(root, id).ok_or_else(|| QuarantineError::NoCgroup { id: id.to_string(), root: root.to_path_buf() })
}

/// The shallowest directory under `root` that names container `id` (per
/// [`crate::container::from_cgroup_path`], so `…/libpod-<id>.scope/container` finds the scope).
fn walk(root: &Path, id: &str) -> Option<PathBuf> {
    let mut found = None;
    each_dir(root, |name, path| {
        if name.contains(id) && crate::container::from_cgroup_path(name).is_some_and(|c| c.id == id) {
            found = Some(path.to_path_buf());
            return Visit::Stop;
        }
        Visit::Descend
    });
    found
}

/// Container ids (64 hex) of the cgroups under `root` that start with `prefix` (12+ digits).
pub fn ids_with_prefix(root: &Path, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    each_dir(root, |name, _| match crate::container::from_cgroup_path(name) {
        Some(c) if c.id.starts_with(prefix) => {
            if !found.contains(&c.id) {
                found.push(c.id)
            }
            Visit::Leave
        }
        _ => Visit::Descend,
    });
    found
}

/// What [`each_dir`] does after showing a directory.
enum Visit {
    Descend,
    /// Do not look below this one.
    Leave,
    /// End the walk.
    Stop,
}

/// Breadth-first over the directories under `root`, [`MAX_DEPTH`] levels, each shown to
/// `visit` by its name and path.
fn each_dir(root: &Path, mut visit: impl FnMut(&str, &Path) -> Visit) {
    let mut level = vec![root.to_path_buf()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = e.path();
                match visit(&e.file_name().to_string_lossy(), &path) {
                    Visit::Descend => next.push(path),
                    Visit::Leave => {}
                    Visit::Stop => return,
                }
            }
        }
        level = next;
    }
}

/// The cgroup id (the directory's kernfs inode).
pub fn id_of(dir: &Path) -> Result<u64, QuarantineError> {
    fs::metadata(dir).map(|m| m.ino()).map_err(|e| QuarantineError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_docker_systemd_and_kubepods_layouts() {
        let id = "ab".repeat(32);
        let other = "cd".repeat(32);
        for rel in [
            format!("docker/{id}"),
            format!("system.slice/docker-{id}.scope"),
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope"),
            format!("kubepods/besteffort/pod-uid/{id}"),
            format!("kubepods.slice/kubepods-pod2.slice/crio-{id}.scope"),
        ] {
            let root = tempfile::tempdir().unwrap();
            fs::create_dir_all(root.path().join(&rel)).unwrap();
            fs::create_dir_all(root.path().join(format!("docker/{other}"))).unwrap();
            assert_eq!(find(root.path(), &id, None).unwrap(), root.path().join(&rel), "{rel}");
            assert_eq!(ids_with_prefix(root.path(), &id[..12]), vec![id.clone()], "{rel}");
        }
        let root = tempfile::tempdir().unwrap();
        let e = find(root.path(), &id, None).unwrap_err().to_string();
        assert!(e.contains("no cgroup v2 directory"), "{e}");
    }

    #[test]
    fn reads_the_v2_line_of_proc_cgroup() {
        let hybrid = "12:pids:/docker/x\n1:name=systemd:/docker/x\n0::/docker/x\n";
        assert_eq!(v2_path_of(hybrid).as_deref(), Some("docker/x"));
        assert_eq!(v2_path_of("4:memory:/docker/x\n"), None);
    }
}
