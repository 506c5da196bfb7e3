//! Sensitive mounts, from the container's mountinfo: host paths (mapped back to the host
//! through the host's own mountinfo by device and root), runtime sockets, writable procfs
//! (core_pattern), sysfs and cgroupfs (release_agent), the host's /dev, shared propagation.

use super::{
    checks::{HostRef, Issue},
    procfs::{Mount, Snapshot, covering_mount},
};
use crate::scan::report::Severity;

/// Filesystems that are never a host directory bind mount.
const PSEUDO: [&str; 18] = [
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "devpts",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "fusectl",
    "configfs",
    "pstore",
    "hugetlbfs",
    "binfmt_misc",
    "autofs",
    "nsfs",
    "devtmpfs",
];
/// Filesystems that are a container's own root (never a host path by themselves).
const ROOTFS: [&str; 4] = ["overlay", "aufs", "fuse-overlayfs", "shiftfs"];

const SOCKETS: [&str; 8] = [
    "docker.sock",
    "containerd.sock",
    "crio.sock",
    "podman.sock",
    "dockershim.sock",
    "cri-dockerd.sock",
    "buildkitd.sock",
    "kubelet.sock",
];
const SOCKET_DIRS: [&str; 8] = [
    "/run",
    "/var/run",
    "/run/containerd",
    "/var/run/containerd",
    "/run/docker",
    "/run/crio",
    "/run/podman",
    "/var/run/crio",
];

/// Host directories whose exposure enables an escape, with the severity of a read-write
/// mount of the directory itself (or of an ancestor of it).
pub const SENSITIVE: [(&str, Severity); 21] = [
    ("/", Severity::Critical),
    ("/etc", Severity::High),
    ("/root", Severity::High),
    ("/home", Severity::Medium),
    ("/var/log", Severity::High),
    ("/var/lib/docker", Severity::High),
    ("/var/lib/kubelet", Severity::High),
    ("/var/lib/containerd", Severity::High),
    ("/var/lib/containers", Severity::High),
    ("/etc/kubernetes", Severity::High),
    ("/boot", Severity::High),
    ("/lib/modules", Severity::High),
    ("/usr", Severity::High),
    ("/bin", Severity::High),
    ("/sbin", Severity::High),
    ("/lib", Severity::High),
    ("/proc", Severity::Critical),
    ("/sys", Severity::High),
    ("/dev", Severity::High),
    ("/run", Severity::High),
    ("/var/run", Severity::High),
];

pub fn is_under(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn lower(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        _ => Severity::Low,
    }
}

/// Where on the host the mounted directory lives, if it is a host directory.
pub fn host_path(m: &Mount, host: &HostRef) -> Option<String> {
    if m.mount_point == "/" || PSEUDO.contains(&m.fstype.as_str()) || ROOTFS.contains(&m.fstype.as_str()) {
        return None;
    }
    if host.self_mode {
        // No host view from the inside: a disk filesystem's root field is the path on that
        // disk, which for the host's root disk is the host path.
        return (m.fstype != "tmpfs" && m.source.starts_with("/dev/")).then(|| m.root.clone());
    }
    let best = host
        .mounts
        .iter()
        .filter(|h| h.dev == m.dev && (h.root == "/" || is_under(&m.root, &h.root)))
        .max_by_key(|h| h.root.len())?;
    let rest = if best.root == "/" { m.root.as_str() } else { &m.root[best.root.len()..] };
    let base = best.mount_point.trim_end_matches('/');
    Some(match (base, rest) {
        ("", "" | "/") => "/".to_string(),
        (b, "" | "/") => b.to_string(),
        (b, r) => format!("{b}{r}"),
    })
}

/// Paths the runtime itself bind-mounts into every container (hosts, resolv.conf, volumes,
/// service-account tokens): expected, not findings.
fn runtime_owned(path: &str, host: &HostRef, container_id: &str) -> bool {
    let own = [
        format!("{}/containers/{container_id}", host.docker_root),
        format!("{}/volumes/", host.docker_root),
        "/var/lib/kubelet/pods/".into(),
        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/".into(),
        "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/".into(),
        "/var/lib/containers/storage/overlay-containers/".into(),
        "/run/containers/storage/overlay-containers/".into(),
    ];
    own.iter().any(|p| path.starts_with(p.as_str()))
}

fn mount_desc(m: &Mount) -> String {
    format!(
        "{} {} ({} {}{})",
        m.mount_point,
        if m.read_only() { "ro" } else { "rw" },
        m.fstype,
        m.source,
        if m.root != "/" { format!(" root {}", m.root) } else { String::new() }
    )
}

pub fn check(snap: &Snapshot, host: &HostRef, container_id: &str) -> Vec<Issue> {
    let mut out = Vec::new();
    let mounts = &snap.mounts;
    for m in mounts {
        let name_is_socket = |p: &str| SOCKETS.iter().any(|s| p.rsplit('/').next() == Some(s));
        let hp = host_path(m, host);
        if let Some(hp) = &hp
            && runtime_owned(hp, host, container_id)
        {
            continue;
        }
        if hp.as_deref().is_some_and(|p| name_is_socket(p) || SOCKET_DIRS.contains(&p))
            || (hp.is_none() && !PSEUDO.contains(&m.fstype.as_str()) && name_is_socket(&m.mount_point))
        {
            out.push(
                Issue::new(
                    "DCEA-CFG-RUNTIME-SOCKET",
                    "container runtime socket mounted",
                    Severity::Critical,
                    Some("5.31"),
                )
                .evidence(format!("host {} at {}", hp.as_deref().unwrap_or("?"), mount_desc(m)))
                .evidence("the runtime API can start a privileged container that mounts the host")
                .fix("Do not mount docker/containerd/CRI-O/podman sockets; use a narrow API proxy if one is needed."),
            );
            continue;
        }
        if m.mount_point.ends_with("/core_pattern") || m.root.ends_with("/core_pattern") {
            out.push(
                Issue::new(
                    "DCEA-CFG-CORE-PATTERN",
                    "core_pattern mounted into the container",
                    Severity::Critical,
                    Some("5.5"),
                )
                .evidence(mount_desc(m))
                .evidence("a '|program' core_pattern runs as root on the host on the next crash")
                .fix("Remove the mount of /proc/sys/kernel/core_pattern."),
            );
            continue;
        }
        if m.mount_point.ends_with("/release_agent") || m.root.ends_with("/release_agent") {
            out.push(
                Issue::new(
                    "DCEA-CFG-RELEASE-AGENT",
                    "cgroup release_agent mounted into the container",
                    Severity::Critical,
                    Some("5.5"),
                )
                .evidence(mount_desc(m))
                .fix("Remove the mount of release_agent."),
            );
            continue;
        }
        if m.fstype == "proc" && !is_under(&m.mount_point, "/proc") {
            let sev = if m.read_only() { Severity::High } else { Severity::Critical };
            out.push(
                Issue::new("DCEA-CFG-PROCFS-MOUNT", "extra procfs mounted (host /proc?)", sev, Some("5.5"))
                    .evidence(mount_desc(m))
                    .evidence("host procfs exposes /proc/sys/kernel/core_pattern and every host process")
                    .fix("Do not mount the host's /proc into containers."),
            );
            continue;
        }
        let Some(hp) = hp else { continue };
        let mut best: Option<(Severity, &str)> = None;
        for (dir, sev) in SENSITIVE {
            let s = if is_under(dir, &hp) {
                sev // the mount is the directory or an ancestor of it
            } else if dir != "/" && is_under(&hp, dir) {
                lower(sev) // a subdirectory
            } else {
                continue;
            };
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, dir));
            }
        }
        let Some((sev, dir)) = best else { continue };
        let sev = if m.read_only() { lower(sev) } else { sev };
        let (id, title) = if hp == "/" {
            ("DCEA-CFG-HOST-ROOT", "host root filesystem mounted".to_string())
        } else {
            ("DCEA-CFG-HOST-PATH", format!("sensitive host path {hp} mounted"))
        };
        out.push(
            Issue::new(id, title, sev, Some("5.5"))
                .evidence(format!("host {hp} at {}", mount_desc(m)))
                .evidence(format!("covers {dir}"))
                .fix("Mount only the application's own data directories, read-only where possible."),
        );
    }

    if let Some(m) = covering_mount(mounts, "/proc/sys/kernel/core_pattern")
        && m.fstype == "proc"
        && !m.read_only()
    {
        out.push(
            Issue::new(
                "DCEA-CFG-PROC-WRITABLE",
                "/proc/sys is writable (core_pattern)",
                Severity::Critical,
                Some("5.4"),
            )
            .evidence(format!("/proc/sys/kernel/core_pattern is on {}", mount_desc(m)))
            .evidence("root in the container can set a '|program' core_pattern that the host kernel runs as root")
            .fix("Remove --privileged / procMount: Unmasked; the runtime mounts /proc/sys read-only by default."),
        );
    }
    if let Some(m) = covering_mount(mounts, "/sys/kernel")
        && m.fstype == "sysfs"
        && !m.read_only()
    {
        out.push(
            Issue::new("DCEA-CFG-SYSFS-WRITABLE", "/sys is writable", Severity::High, Some("5.4"))
                .evidence(format!("/sys is {}", mount_desc(m)))
                .evidence("writable sysfs reaches host kernel and device settings (uevent_helper, firmware, module parameters)")
                .fix("Remove --privileged; the runtime mounts /sys read-only by default."),
        );
    }
    let rw_cgroups: Vec<&Mount> =
        mounts.iter().filter(|m| (m.fstype == "cgroup" || m.fstype == "cgroup2") && !m.read_only()).collect();
    if !rw_cgroups.is_empty() {
        let hierarchy_roots: Vec<&&Mount> =
            rw_cgroups.iter().filter(|m| m.fstype == "cgroup" && m.root == "/").collect();
        let (id, title, sev) = if hierarchy_roots.is_empty() {
            ("DCEA-CFG-CGROUP-WRITABLE", "cgroup filesystem is writable", Severity::High)
        } else {
            ("DCEA-CFG-RELEASE-AGENT", "cgroup v1 hierarchy root writable (release_agent)", Severity::Critical)
        };
        let mut issue = Issue::new(id, title, sev, Some("5.24"))
            .fix("Remove --privileged; the runtime mounts cgroupfs read-only by default.");
        for m in rw_cgroups.iter().take(4) {
            issue.evidence.push(mount_desc(m));
        }
        issue.evidence.push(if hierarchy_roots.is_empty() {
            "writable cgroupfs lets the container change its own limits and, with CAP_SYS_ADMIN, mount a hierarchy root whose release_agent runs on the host".into()
        } else {
            "release_agent at the hierarchy root runs a host program as root when a cgroup empties".to_string()
        });
        out.push(issue);
    }
    if let Some(m) = covering_mount(mounts, "/dev/null").filter(|m| m.fstype == "devtmpfs") {
        out.push(
            Issue::new("DCEA-CFG-HOST-DEV", "host /dev (devtmpfs) mounted", Severity::High, Some("5.17"))
                .evidence(format!("/dev is {}", mount_desc(m)))
                .evidence("every host device node, including disks, is visible")
                .fix("Do not mount the host's /dev; pass single devices with --device."),
        );
    }
    let shared: Vec<String> =
        mounts.iter().filter(|m| m.mount_point != "/" && m.shared()).map(|m| m.mount_point.clone()).collect();
    if !shared.is_empty() {
        out.push(
            Issue::new("DCEA-CFG-MOUNT-PROPAGATION", "shared mount propagation", Severity::Medium, Some("5.19"))
                .evidence(format!("shared: {}", shared.join(", ")))
                .evidence("mounts made inside the container propagate to the host")
                .fix("Use private or rslave propagation for bind mounts."),
        );
    }
    if let Some(m) = mounts.iter().rev().find(|m| m.mount_point == "/")
        && !m.read_only()
    {
        out.push(
            Issue::new("DCEA-CFG-ROOTFS-WRITABLE", "root filesystem is writable", Severity::Low, Some("5.12"))
                .evidence(mount_desc(m))
                .fix("Run with --read-only (readOnlyRootFilesystem: true) and tmpfs for scratch space."),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::config::{checks::Mac, procfs::parse_mountinfo};

    const HOST: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw
50 27 0:25 / /run rw,nosuid,nodev - tmpfs tmpfs rw
";

    fn host(self_mode: bool) -> HostRef {
        HostRef {
            cap_bnd: 0,
            ns: Default::default(),
            mounts: if self_mode { vec![] } else { parse_mountinfo(HOST).0 },
            mac: Mac::None,
            self_mode,
            docker_root: "/var/lib/docker".into(),
        }
    }

    fn run(lines: &str, self_mode: bool) -> Vec<(String, Severity)> {
        let snap = Snapshot { mounts: parse_mountinfo(lines).0, ..Default::default() };
        check(&snap, &host(self_mode), "CID").into_iter().map(|i| (i.id, i.severity)).collect()
    }

    #[test]
    fn host_paths_map_through_the_host_mountinfo() {
        let h = host(false);
        let m = |l: &str| parse_mountinfo(l).0.remove(0);
        assert_eq!(host_path(&m("1 1 254:0 / /host rw - ext4 /dev/vda rw"), &h).as_deref(), Some("/"));
        assert_eq!(host_path(&m("1 1 254:0 /etc /h rw - ext4 /dev/vda rw"), &h).as_deref(), Some("/etc"));
        assert_eq!(
            host_path(&m("1 1 254:0 /var/lib/docker/containers/X/hosts /etc/hosts rw - ext4 /dev/vda rw"), &h)
                .as_deref(),
            Some("/var/lib/docker/containers/X/hosts")
        );
        assert_eq!(
            host_path(&m("1 1 0:25 /docker.sock /var/run/docker.sock rw - tmpfs tmpfs rw"), &h).as_deref(),
            Some("/run/docker.sock")
        );
        assert_eq!(host_path(&m("1 1 0:99 / /tmp rw - tmpfs tmpfs rw"), &h), None, "container-private tmpfs");
        assert_eq!(host_path(&m("1 1 0:90 / / rw - overlay overlay rw"), &h), None);
    }

    #[test]
    fn sensitive_mounts() {
        let has = |v: &[(String, Severity)], id: &str, sev: Severity| v.iter().any(|(i, s)| i == id && *s == sev);
        let r = run("1 0 254:0 / /host rw,relatime - ext4 /dev/vda rw\n", false);
        assert!(has(&r, "DCEA-CFG-HOST-ROOT", Severity::Critical), "{r:?}");
        let r = run("1 0 254:0 / /host ro,relatime - ext4 /dev/vda rw\n", false);
        assert!(has(&r, "DCEA-CFG-HOST-ROOT", Severity::High), "{r:?}");
        let r = run("1 0 0:25 /docker.sock /var/run/docker.sock rw - tmpfs tmpfs rw\n", false);
        assert!(has(&r, "DCEA-CFG-RUNTIME-SOCKET", Severity::Critical), "{r:?}");
        let r = run("1 0 254:0 /var/log /logs rw - ext4 /dev/vda rw\n", false);
        assert!(has(&r, "DCEA-CFG-HOST-PATH", Severity::High), "{r:?}");
        let r = run("1 0 254:0 /etc/ssl/certs /certs ro - ext4 /dev/vda rw\n", false);
        assert!(has(&r, "DCEA-CFG-HOST-PATH", Severity::Low), "{r:?}");
        let r = run("1 0 254:0 /srv/app /data rw - ext4 /dev/vda rw\n", false);
        assert!(r.is_empty(), "application data is fine: {r:?}");
        let r = run("1 0 254:0 /var/lib/docker/containers/CID/hostname /etc/hostname rw - ext4 /dev/vda rw\n", false);
        assert!(r.is_empty(), "runtime-owned: {r:?}");
        let r = run("1 0 254:0 /var/lib/docker/containers/OTHER/config.v2.json /x rw - ext4 /dev/vda rw\n", false);
        assert!(has(&r, "DCEA-CFG-HOST-PATH", Severity::Medium), "another container's files: {r:?}");
        let r = run("1 0 0:5 / /hostproc rw - proc proc rw\n", false);
        assert!(has(&r, "DCEA-CFG-PROCFS-MOUNT", Severity::Critical), "{r:?}");
    }

    #[test]
    fn privileged_style_pseudo_filesystems() {
        let lines = "\
1 0 0:90 / / rw - overlay overlay rw
2 1 0:91 / /proc rw,nosuid - proc proc rw
3 1 0:93 / /sys rw,nosuid - sysfs sysfs rw
4 3 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
5 1 0:6 / /dev rw - devtmpfs udev rw
6 1 254:0 /data /data rw shared:5 - ext4 /dev/vda rw
";
        let ids: Vec<String> = run(lines, false).into_iter().map(|(i, _)| i).collect();
        for want in [
            "DCEA-CFG-PROC-WRITABLE",
            "DCEA-CFG-SYSFS-WRITABLE",
            "DCEA-CFG-RELEASE-AGENT",
            "DCEA-CFG-HOST-DEV",
            "DCEA-CFG-MOUNT-PROPAGATION",
            "DCEA-CFG-ROOTFS-WRITABLE",
        ] {
            assert!(ids.contains(&want.to_string()), "{want} missing: {ids:?}");
        }
    }

    #[test]
    fn self_mode_uses_the_bind_root() {
        let r = run(
            "1 0 254:0 / /host rw - ext4 /dev/vda rw\n2 0 0:25 /docker.sock /run/docker.sock rw - tmpfs tmpfs rw\n",
            true,
        );
        assert!(r.iter().any(|(i, _)| i == "DCEA-CFG-HOST-ROOT"), "{r:?}");
        assert!(r.iter().any(|(i, _)| i == "DCEA-CFG-RUNTIME-SOCKET"), "{r:?}");
        let r = run("1 0 0:99 / /dev rw - tmpfs tmpfs rw\n", true);
        assert!(r.is_empty(), "{r:?}");
    }
}
