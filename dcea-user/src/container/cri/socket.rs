//! Where the node's CRI runtime listens. A DaemonSet sees the host's /run under a mount of
//! its own (`/host/run/…`, `/run/host/…`, or a hostPath mounted at the same path), so each
//! well-known socket is also looked for under those prefixes.

use std::{
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

/// `--cri-socket` (for `monitor`, `trust verify`, `scan config`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CriSocketArg {
    /// The CRI runtime socket (containerd, CRI-O) to read pod and container metadata from
    /// [default: each of /run/containerd/containerd.sock, /var/run/crio/crio.sock,
    /// /run/k3s/containerd/containerd.sock that exists, also under /host for a DaemonSet].
    #[arg(long, value_name = "PATH", env = "DCEA_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,
}

/// The sockets runtimes listen on by default: containerd, CRI-O, k3s's embedded containerd.
pub const WELL_KNOWN: [&str; 5] = [
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
];

/// Where DaemonSet manifests mount the host's root or its /run (deploy/ mounts /host).
pub const HOST_PREFIXES: [&str; 4] = ["", "/host", "/hostfs", "/rootfs"];

/// Every well-known socket under every host prefix, in order of preference.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for prefix in HOST_PREFIXES {
        for sock in WELL_KNOWN {
            out.push(PathBuf::from(format!("{prefix}{sock}")));
        }
        // A DaemonSet that mounts only the host's /run at /host/run (or /run/host) instead of /.
        if !prefix.is_empty() {
            continue;
        }
        for sock in WELL_KNOWN.iter().filter_map(|s| s.strip_prefix("/run/")) {
            out.push(PathBuf::from(format!("/run/host/{sock}")));
        }
    }
    out
}

/// Is `path` a unix socket (following symlinks)?
pub fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The sockets to follow: the one given (even if it is not there yet: it is retried), else
/// every candidate that is a socket now, one per runtime instance (`/var/run` is a symlink to
/// `/run` on most hosts, so the same socket is found under two names).
pub fn discover(given: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = given {
        return vec![p.to_path_buf()];
    }
    select(candidates(), is_socket, |p| Some(identity(p)))
}

/// What makes two socket paths one runtime: the canonical path (`/var/run` → `/run`), else the
/// path as given.
pub fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// [`discover`] over an explicit candidate list (unit tests point it at a temporary tree).
pub fn select(
    candidates: Vec<PathBuf>,
    exists: impl Fn(&Path) -> bool,
    identity: impl Fn(&Path) -> Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for c in candidates.into_iter().filter(|c| exists(c)) {
        let id = identity(&c).unwrap_or_else(|| c.clone());
        if !seen.contains(&id) {
            seen.push(id);
            out.push(c);
        }
    }
    out
}

/// The runtime a socket most likely belongs to, before its Version answer says so.
pub fn runtime_of_path(path: &Path) -> super::super::Runtime {
    if path.to_string_lossy().contains("crio") {
        super::super::Runtime::CriO
    } else {
        super::super::Runtime::Containerd
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn candidates_cover_runtimes_and_daemonset_mounts() {
        let c: Vec<String> = candidates().iter().map(|p| p.display().to_string()).collect();
        for want in [
            "/run/containerd/containerd.sock",
            "/var/run/crio/crio.sock",
            "/run/k3s/containerd/containerd.sock",
            "/host/run/containerd/containerd.sock",
            "/host/var/run/crio/crio.sock",
            "/host/run/k3s/containerd/containerd.sock",
            "/run/host/containerd/containerd.sock",
            "/run/host/crio/crio.sock",
        ] {
            assert!(c.iter().any(|p| p == want), "{want} missing from {c:?}");
        }
        assert_eq!(c[0], "/run/containerd/containerd.sock", "the host's own socket is preferred");
    }

    #[test]
    fn discovery_finds_sockets_under_a_host_prefix_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A DaemonSet view: the host's CRI-O socket under /host, /var/run a symlink to /run.
        std::fs::create_dir_all(root.join("host/run/crio")).unwrap();
        std::os::unix::fs::symlink(root.join("host/run"), root.join("host/var-run")).unwrap();
        let _l = UnixListener::bind(root.join("host/run/crio/crio.sock")).unwrap();
        std::fs::write(root.join("host/run/crio/not-a-socket.sock"), b"").unwrap();
        let cands: Vec<PathBuf> = [
            "run/containerd/containerd.sock",
            "host/run/crio/crio.sock",
            "host/var-run/crio/crio.sock",
            "host/run/crio/not-a-socket.sock",
        ]
        .iter()
        .map(|p| root.join(p))
        .collect();
        let got = select(cands, is_socket, |p| std::fs::canonicalize(p).ok());
        assert_eq!(got, vec![root.join("host/run/crio/crio.sock")]);
        assert_eq!(runtime_of_path(&got[0]), crate::container::Runtime::CriO);
        assert_eq!(
            runtime_of_path(Path::new("/run/k3s/containerd/containerd.sock")),
            crate::container::Runtime::Containerd
        );
    }

    #[test]
    fn a_given_socket_is_followed_even_when_absent() {
        assert_eq!(discover(Some(Path::new("/nonexistent/cri.sock"))), vec![PathBuf::from("/nonexistent/cri.sock")]);
    }
}
