//! `dcea scan config`: every running container checked from the host for dangerous
//! settings (privileges, capabilities, mounts, shared namespaces, confinement), without
//! entering it. `--self` runs the same checks from inside a container (for CI images).

pub mod caps;
pub mod checks;
pub mod cri;
pub mod discover;
pub mod docker;
pub mod mounts;
pub mod procfs;

use std::{collections::BTreeMap, fs, path::PathBuf};

use serde_json::json;

use dcea_common::{NsKind, init_ns};

use self::{
    checks::{HostRef, Mac},
    discover::Target,
    procfs::{Mount, parse_mountinfo, parse_status, snapshot},
};
use super::{
    Error,
    report::{OutputArgs, Report, Subject},
};

/// Inodes of the initial namespaces (include/linux/proc_ns.h): fixed on every kernel.
pub const INIT_NS: [(&str, u64); 5] = [
    (NsKind::Pid.name(), init_ns::PID as u64),
    (NsKind::User.name(), init_ns::USER as u64),
    (NsKind::Uts.name(), init_ns::UTS as u64),
    (NsKind::Ipc.name(), init_ns::IPC as u64),
    (NsKind::Cgroup.name(), init_ns::CGROUP as u64),
];

#[derive(Clone, Debug, clap::Args)]
pub struct ConfigScanArgs {
    /// Only this container (id, id prefix of 3+ characters, or name); repeatable.
    #[arg(long = "container", value_name = "ID")]
    pub containers: Vec<String>,
    /// Check the container dcea itself runs in, from the inside (reads /proc/1): for CI images.
    #[arg(long = "self", conflicts_with = "containers")]
    pub self_mode: bool,
    /// Docker Engine API socket (names and images; /proc finds the containers without it).
    #[arg(long, value_name = "PATH", default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
    #[command(flatten)]
    pub cri: crate::container::cri::socket::CriSocketArg,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn detect_mac() -> Mac {
    let lsm = fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let apparmor = lsm.split(',').any(|l| l.trim() == "apparmor")
        || fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|v| v.trim() == "Y");
    if apparmor {
        Mac::AppArmor
    } else if lsm.split(',').any(|l| l.trim() == "selinux") || fs::metadata("/sys/fs/selinux/enforce").is_ok() {
        Mac::SeLinux
    } else {
        Mac::None
    }
}

/// The host reference when dcea runs on the host (or with hostPID in a pod). Mount and
/// network namespaces have no fixed inode, so they come from dcea itself, and only when
/// dcea is not in a container; PID 1 is never read in this mode.
pub fn host_reference(warnings: &mut Vec<String>) -> Result<HostRef, Error> {
    let status = fs::read_to_string("/proc/self/status").map_err(|e| Error::io("reading /proc/self/status", e))?;
    let cap_bnd = parse_status(&status)?.cap_bnd;
    let contained = crate::container::self_is_containerised();
    let mut ns: BTreeMap<String, Vec<u64>> = INIT_NS.iter().map(|(k, v)| (k.to_string(), vec![*v])).collect();
    let mut mounts: Vec<Mount> = Vec::new();
    if contained {
        warnings
            .push("dcea runs in a container: host mnt/net namespaces and host mount paths cannot be compared".into());
    } else {
        for kind in procfs::NAMESPACES {
            if let Ok(ino) = crate::sys::ns_inode("self", kind) {
                let v = ns.entry(kind.to_string()).or_default();
                if !v.contains(&u64::from(ino)) {
                    v.push(u64::from(ino));
                }
            }
        }
        match fs::read_to_string("/proc/self/mountinfo") {
            Ok(t) => mounts = parse_mountinfo(&t).0,
            Err(e) => warnings.push(format!("/proc/self/mountinfo: {e}; host paths of bind mounts unknown")),
        }
    }
    Ok(HostRef { cap_bnd, ns, mounts, mac: detect_mac(), self_mode: false, docker_root: "/var/lib/docker".into() })
}

/// The reference from inside a container: every capability the kernel knows and the fixed
/// initial-namespace inodes.
pub fn inside_reference() -> HostRef {
    let last = fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse::<u32>().ok());
    let cap_bnd = match last {
        Some(l) if l < 63 => (1u64 << (l + 1)) - 1,
        _ => (1u64 << 41) - 1,
    };
    HostRef {
        cap_bnd,
        ns: INIT_NS.iter().map(|(k, v)| (k.to_string(), vec![*v])).collect(),
        mounts: Vec::new(),
        mac: detect_mac(),
        self_mode: true,
        docker_root: "/var/lib/docker".into(),
    }
}

/// The cgroup v1 devices.list of a process, through the devices hierarchy in `view`
/// (the mountinfo of the reader).
fn devices_list(proc_cgroup: &str, view: &[Mount]) -> Option<String> {
    let path = proc_cgroup.lines().find_map(|l| {
        let mut p = l.splitn(3, ':');
        let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
        ctrl.split(',').any(|c| c == "devices").then_some(path)
    })?;
    let m = view.iter().find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "devices"))?;
    let rel = if m.root == "/" { path } else { path.strip_prefix(m.root.as_str())? };
    fs::read_to_string(format!("{}/{}/devices.list", m.mount_point.trim_end_matches('/'), rel.trim_start_matches('/')))
        .ok()
}

fn select(targets: Vec<Target>, wanted: &[String]) -> Result<Vec<Target>, Error> {
    if wanted.is_empty() {
        return Ok(targets);
    }
    for w in wanted {
        let w = w.trim_start_matches('/');
        let hit = targets.iter().any(|t| t.name.as_deref() == Some(w) || (w.len() >= 3 && t.id.starts_with(w)));
        if !hit {
            return Err(Error::Usage(format!("no running container matches {w:?}")));
        }
    }
    Ok(targets
        .into_iter()
        .filter(|t| {
            wanted
                .iter()
                .map(|w| w.trim_start_matches('/'))
                .any(|w| t.name.as_deref() == Some(w) || (w.len() >= 3 && t.id.starts_with(w)))
        })
        .collect())
}

fn scan_self() -> Result<Report, Error> {
    let host = inside_reference();
    let snap = snapshot(std::path::Path::new("/proc/1"), 1)?;
    let own = fs::read_to_string("/proc/self/cgroup").ok();
    let id =
        own.as_deref().and_then(crate::container::from_proc_cgroup).map(|c| c.id).unwrap_or_else(crate::sys::hostname);
    let subject = Subject { kind: "container".into(), id, name: None };
    let view = fs::read_to_string("/proc/self/mountinfo").map(|t| parse_mountinfo(&t).0).unwrap_or_default();
    let devices = devices_list(&snap.cgroup, &view);
    let mut report = Report::new("config", json!({ "mode": "self", "reference": host, "pid": 1 }));
    report.findings = checks::check(&snap, &host, &subject, devices.as_deref());
    report.warnings = snap.missing.clone();
    report.sort();
    Ok(report)
}

pub fn scan(args: &ConfigScanArgs) -> Result<Report, Error> {
    if args.self_mode {
        return scan_self();
    }
    let mut warnings = Vec::new();
    let mut host = host_reference(&mut warnings)?;
    if args.docker_socket.exists()
        && let Ok(Some(root)) = docker::root_dir(&args.docker_socket)
    {
        host.docker_root = root;
    }
    let cri_sockets = crate::container::cri::socket::discover(args.cri.cri_socket.as_deref());
    let targets = select(discover::discover(&args.docker_socket, &cri_sockets, &mut warnings), &args.containers)?;
    let mut report = Report::new("config", json!({}));
    let mut scanned = Vec::new();
    for t in &targets {
        let subject = Subject { kind: "container".into(), id: t.id.clone(), name: t.name.clone() };
        let snap = match snapshot(&PathBuf::from(format!("/proc/{}", t.pid)), t.pid) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("container {} (pid {}) not checked: {e}", t.id, t.pid));
                continue;
            }
        };
        warnings.extend(snap.missing.iter().map(|m| format!("container {}: {m}", subject.short())));
        let devices = devices_list(&snap.cgroup, &host.mounts);
        report.findings.extend(checks::check(&snap, &host, &subject, devices.as_deref()));
        report.findings.extend(cri::findings(t, &subject));
        scanned.push(t);
    }
    report.target = json!({
        "mode": "host",
        "hostname": crate::sys::hostname(),
        "containers": scanned,
        "reference": host,
    });
    report.warnings = warnings;
    report.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, name: &str) -> Target {
        Target {
            id: id.into(),
            name: Some(name.into()),
            image: None,
            runtime: crate::container::Runtime::Docker,
            pid: 1,
            pod: None,
            declared: None,
        }
    }

    #[test]
    fn selection() {
        let ts = vec![target("abcdef01", "web"), target("12345678", "db")];
        assert_eq!(select(ts.clone(), &[]).unwrap().len(), 2);
        assert_eq!(select(ts.clone(), &["web".into()]).unwrap()[0].id, "abcdef01");
        assert_eq!(select(ts.clone(), &["/db".into()]).unwrap()[0].id, "12345678");
        assert_eq!(select(ts.clone(), &["abc".into()]).unwrap().len(), 1);
        assert!(select(ts.clone(), &["ab".into()]).is_err(), "prefix too short");
        assert!(select(ts, &["nope".into()]).is_err());
    }

    #[test]
    fn devices_list_path() {
        let view = parse_mountinfo("36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n").0;
        // The root of the hierarchy exists on a v1 host; on v2-only hosts this is None.
        let got = devices_list("4:devices:/\n", &view);
        assert_eq!(got.is_some(), fs::metadata("/sys/fs/cgroup/devices/devices.list").is_ok());
        assert_eq!(devices_list("garbage", &view), None);
        assert_eq!(devices_list("4:devices:/x\n", &[]), None);
    }

    #[test]
    fn host_reference_here() {
        let mut w = Vec::new();
        let h = host_reference(&mut w).unwrap();
        assert_ne!(h.cap_bnd, 0);
        assert!(h.ns["pid"].contains(&0xEFFF_FFFC));
        let inside = inside_reference();
        assert!(inside.self_mode && inside.cap_bnd.count_ones() >= 38);
    }
}
