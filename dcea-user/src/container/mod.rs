//! Which container a process belongs to, from its cgroup path.
//!
//! Docker, containerd (CRI), CRI-O and Podman put every container in a cgroup whose name
//! carries the 64-hex container id, under cgroup v1 and v2, with the cgroupfs or the systemd
//! driver. The kernel programs send the task's cgroup leaf and parent names with each event,
//! so attribution does not race with a short-lived process; /proc/<pid>/cgroup is the fallback.

pub mod cri;
pub mod engine;
pub mod host_fs;
pub mod init_pid;
pub mod metadata;
pub mod overlay;

use std::fs;

use dcea_common::CONTAINER_ID_LEN;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
    Podman,
    /// A Kubernetes pod under the cgroupfs driver: the CRI runtime is not in the path.
    Kubernetes,
    Unknown,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    pub id: String,
    pub runtime: Runtime,
}

/// Find a run of exactly 64 lowercase hex digits in `s`.
fn find_id(s: &str) -> Option<(usize, &str)> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i <= b.len() {
        let hex = i < b.len() && (b[i].is_ascii_digit() || (b'a'..=b'f').contains(&b[i]));
        if !hex {
            if i - start == CONTAINER_ID_LEN {
                return Some((start, &s[start..i]));
            }
            start = i + 1;
        }
        i += 1;
    }
    None
}

/// Parse one cgroup path (`/docker/<id>`, `/system.slice/docker-<id>.scope`,
/// `/kubepods.slice/…/cri-containerd-<id>.scope`, `/kubepods/burstable/pod<uid>/<id>`,
/// `…/crio-<id>.scope`, `/machine.slice/libpod-<id>.scope/container`, …).
pub fn from_cgroup_path(path: &str) -> Option<ContainerRef> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // The innermost component with an id names the container; nested cgroups a container
    // makes for itself (`…/libpod-<id>.scope/container`) sit below it.
    for (i, comp) in components.iter().enumerate().rev() {
        let Some((at, id)) = find_id(comp) else {
            continue;
        };
        let prefix = &comp[..at];
        // conmon is the runtime's monitor process on the host, not the container.
        if prefix.ends_with("conmon-") {
            return None;
        }
        let ancestors = &components[..i];
        let runtime = match prefix {
            "docker-" => Runtime::Docker,
            "cri-containerd-" => Runtime::Containerd,
            "crio-" => Runtime::CriO,
            "libpod-" => Runtime::Podman,
            _ if ancestors.iter().any(|a| *a == "docker" || a.starts_with("docker")) => Runtime::Docker,
            _ if ancestors.iter().any(|a| a.starts_with("kubepods")) => Runtime::Kubernetes,
            _ if ancestors.iter().any(|a| *a == "libpod_parent" || a.starts_with("machine")) => Runtime::Podman,
            _ if ancestors.iter().any(|a| a.contains("containerd")) => Runtime::Containerd,
            _ => Runtime::Unknown,
        };
        return Some(ContainerRef { id: id.to_string(), runtime });
    }
    None
}

/// Parse the content of /proc/<pid>/cgroup (v1 and v2 lines). The v2 line wins when it names a
/// container; on v1 and hybrid hosts any controller line will do (runtimes use the same path).
pub fn from_proc_cgroup(content: &str) -> Option<ContainerRef> {
    let mut lines: Vec<(&str, &str)> = content
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let hierarchy = parts.next()?;
            let _controllers = parts.next()?;
            Some((hierarchy, parts.next()?))
        })
        .collect();
    lines.sort_by_key(|(h, _)| *h != "0");
    lines.iter().find_map(|(_, path)| from_cgroup_path(path))
}

/// Attribution of a live process through /proc; `None` if it is on the host or gone.
pub fn of_pid(pid: u32) -> Option<ContainerRef> {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().as_deref().and_then(from_proc_cgroup)
}

/// Is the agent itself running in a container (e.g. a DaemonSet pod)?
pub fn self_is_containerised() -> bool {
    fs::read_to_string("/proc/self/cgroup").ok().as_deref().and_then(from_proc_cgroup).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99001122334455667788aabbccddeeff00112233445566778899";

    #[test]
    fn cgroup_path_table() {
        let cases: Vec<(String, Option<Runtime>)> = vec![
            (format!("/docker/{ID}"), Some(Runtime::Docker)),
            (format!("/system.slice/docker-{ID}.scope"), Some(Runtime::Docker)),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-{ID}.scope"
                ),
                Some(Runtime::Containerd),
            ),
            (format!("/kubepods/besteffort/pod6f2a6b4c-1111-2222-3333-444455556666/{ID}"), Some(Runtime::Kubernetes)),
            (format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"), Some(Runtime::CriO)),
            (format!("/machine.slice/libpod-{ID}.scope/container"), Some(Runtime::Podman)),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                Some(Runtime::Podman),
            ),
            (format!("/libpod_parent/{ID}"), Some(Runtime::Podman)),
            (format!("/system.slice/containerd.service/k8s.io/{ID}"), Some(Runtime::Containerd)),
            (format!("/machine.slice/libpod-conmon-{ID}.scope"), None),
            (format!("/system.slice/crio-conmon-{ID}.scope"), None),
            ("/".into(), None),
            ("/user.slice/user-0.slice/session-1.scope".into(), None),
            ("/system.slice/docker.service".into(), None),
            ("/kubepods/besteffort/pod6f2a6b4c-1111-2222-3333-444455556666".into(), None),
            (format!("/docker/{}", &ID[..63]), None),
            (format!("/docker/{ID}0"), None),
            (format!("/docker/{}", ID.to_uppercase()), None),
        ];
        for (path, want) in cases {
            let got = from_cgroup_path(&path);
            assert_eq!(got.as_ref().map(|c| c.runtime), want, "{path}");
            if let Some(c) = got {
                assert_eq!(c.id, ID, "{path}");
            }
        }
    }

    #[test]
    fn proc_cgroup_v1_hybrid_and_v2() {
        let v1 = format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        assert_eq!(from_proc_cgroup(&v1).unwrap().id, ID);
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(from_proc_cgroup(&v2).unwrap().runtime, Runtime::Docker);
        let host = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/1fe14b46bb32b17c12923d7233a5d680\n0::/\n";
        assert_eq!(from_proc_cgroup(host), None);
        // Odd content: no colons, empty, binary junk.
        for junk in ["", "garbage", "::::", "\u{0}\u{1}\u{2}", "0::"] {
            assert_eq!(from_proc_cgroup(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn vanished_process_is_none() {
        assert_eq!(of_pid(u32::MAX), None);
    }
}
