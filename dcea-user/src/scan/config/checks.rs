//! Dangerous-configuration checks on one container's snapshot, compared with the host.

use std::collections::BTreeMap;

use super::{
    caps, mounts,
    procfs::{Mount, Snapshot},
};
use crate::scan::report::{Finding, Severity, Status, Subject};

/// Which mandatory access control is active on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mac {
    AppArmor,
    SeLinux,
    None,
}

/// The host as the reference for every comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostRef {
    /// The host's capability bounding set: a container holding all of it is privileged.
    pub cap_bnd: u64,
    /// Namespace inodes that mean "the host's", per kind.
    pub ns: BTreeMap<String, Vec<u64>>,
    /// The host's mounts (dcea's own view), to turn bind sources into host paths. Empty when
    /// dcea does not run in the host mount namespace.
    #[serde(skip)]
    pub mounts: Vec<Mount>,
    pub mac: Mac,
    /// `--self`: reading our own container from the inside.
    pub self_mode: bool,
    pub docker_root: String,
}

/// A problem before it is attached to a subject.
pub struct Issue {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub cis: Option<&'static str>,
    pub evidence: Vec<String>,
    pub remediation: &'static str,
}

impl Issue {
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        severity: Severity,
        cis: Option<&'static str>,
    ) -> Issue {
        Issue { id: id.into(), title: title.into(), severity, cis, evidence: Vec::new(), remediation: "" }
    }

    pub fn evidence(mut self, e: impl Into<String>) -> Issue {
        self.evidence.push(e.into());
        self
    }

    pub fn fix(mut self, r: &'static str) -> Issue {
        self.remediation = r;
        self
    }

    fn into_finding(self, subject: &Subject) -> Finding {
        Finding {
            id: self.id,
            title: self.title,
            severity: self.severity,
            status: Status::Fail,
            subject: subject.clone(),
            evidence: self.evidence,
            remediation: self.remediation.to_string(),
            cis: self.cis.map(str::to_string),
            cves: Vec::new(),
        }
    }
}

const NS_RULES: [(&str, Severity, Option<&str>, &str); 7] = [
    ("mnt", Severity::Critical, None, "sees and changes the host's mounts: the process is effectively on the host"),
    ("pid", Severity::High, Some("5.15"), "sees host processes; with CAP_SYS_PTRACE or nsenter it can enter them"),
    (
        "net",
        Severity::High,
        Some("5.9"),
        "host network stack: local services, containerd-shim abstract sockets (CVE-2020-15257)",
    ),
    ("ipc", Severity::Medium, Some("5.16"), "host shared memory and semaphores"),
    ("uts", Severity::Low, Some("5.20"), "can change the host's hostname"),
    ("user", Severity::Info, Some("5.30"), "no user-namespace remapping: root in the container is root on the host"),
    ("cgroup", Severity::Low, None, "sees the host's cgroup tree (cgroup paths of other containers and the host)"),
];

fn ns_remediation(kind: &str) -> &'static str {
    match kind {
        "pid" => "Do not use --pid=host / hostPID.",
        "net" => "Do not use --net=host / hostNetwork.",
        "ipc" => "Do not use --ipc=host / hostIPC.",
        "uts" => "Do not use --uts=host.",
        "user" => {
            "Enable user-namespace remapping (dockerd --userns-remap) or rootless mode; do not use --userns=host."
        }
        "cgroup" => "Run with --cgroupns=private (the default on cgroup v2).",
        _ => "Recreate the container; a process in the host mount namespace has escaped.",
    }
}

/// Does a cgroup v1 `devices.list` allow read or write on this device?
pub fn device_allowed(list: &str, block: bool, major: u32, minor: u32) -> bool {
    list.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (Some(ty), Some(mm), Some(access)) = (f.next(), f.next(), f.next()) else { return false };
        let ty_ok = ty == "a" || (ty == "b" && block) || (ty == "c" && !block);
        let Some((ma, mi)) = mm.split_once(':') else { return false };
        let num_ok = |p: &str, v: u32| p == "*" || p.parse::<u32>().is_ok_and(|n| n == v);
        ty_ok && num_ok(ma, major) && num_ok(mi, minor) && (access.contains('r') || access.contains('w'))
    })
}

pub fn allows_all_devices(list: &str) -> bool {
    list.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["a", "*:*", "rwm"])
}

/// All checks for one container. `devices_list` is its cgroup v1 devices.list when readable.
pub fn check(snap: &Snapshot, host: &HostRef, subject: &Subject, devices_list: Option<&str>) -> Vec<Finding> {
    let mut issues = Vec::new();
    let st = &snap.status;
    let eff = st.cap_eff;
    // Runtimes grant only the capabilities they know: Docker 20.10 stops at AUDIT_READ (37)
    // on a kernel that has PERFMON, BPF and CHECKPOINT_RESTORE. Compare on what every
    // runtime knows, and say what the rest was.
    let missing = host.cap_bnd & caps::RUNTIME_KNOWN & !eff;
    let has_sys_admin = eff & (1 << 21) != 0;
    // In --self mode the reference is every capability the kernel knows; a host may lack
    // one in its own bounding set (this sandbox lacks CAP_SYS_RESOURCE).
    let privileged =
        host.cap_bnd != 0 && (missing == 0 || (host.self_mode && missing.count_ones() <= 1 && has_sys_admin));
    if privileged {
        let newer = caps::names(host.cap_bnd & !caps::RUNTIME_KNOWN & !eff);
        let mut issue = Issue::new(
            "DCEA-CFG-PRIVILEGED",
            "privileged container: holds every capability of the host",
            Severity::Critical,
            Some("5.4"),
        )
        .evidence(format!("CapEff {eff:016x}, host bounding set {:016x}", host.cap_bnd))
        .evidence(format!("{} capabilities including SYS_ADMIN, SYS_MODULE, SYS_PTRACE", caps::names(eff).len()))
        .fix("Remove --privileged (privileged: true); add only the capabilities the workload needs.");
        if !newer.is_empty() {
            issue.evidence.push(format!("not granted by the runtime, which predates them: {}", newer.join(", ")));
        }
        if missing != 0 {
            issue
                .evidence
                .push(format!("lacks {} (absent from the kernel's own set here)", caps::names(missing).join(", ")));
        }
        issues.push(issue);
    } else {
        for name in caps::names(eff) {
            if let Some((sev, why)) = caps::risk(&name) {
                issues.push(
                    Issue::new(
                        format!("DCEA-CFG-CAP-{name}"),
                        format!("dangerous capability CAP_{name}"),
                        sev,
                        Some("5.3"),
                    )
                    .evidence(why)
                    .evidence(format!("CapEff {eff:016x}"))
                    .fix("Drop it (--cap-drop / securityContext.capabilities.drop); start from --cap-drop ALL."),
                );
            }
        }
    }

    for (kind, sev, cis, why) in NS_RULES {
        let (Some(ino), Some(host_inos)) = (snap.ns.get(kind), host.ns.get(kind)) else { continue };
        if host_inos.contains(ino) {
            issues.push(
                Issue::new(
                    format!("DCEA-CFG-HOST-NS-{}", kind.to_uppercase()),
                    format!("shares the host {kind} namespace"),
                    sev,
                    cis,
                )
                .evidence(format!("{kind}:[{ino}] is the host's"))
                .evidence(why)
                .fix(ns_remediation(kind)),
            );
        }
    }
    let host_userns = matches!((snap.ns.get("user"), host.ns.get("user")), (Some(i), Some(h)) if h.contains(i));
    if host_userns && st.uid.is_some_and(|u| u[1] == 0) {
        issues.push(
            Issue::new(
                "DCEA-CFG-ROOT-NO-USERNS",
                "runs as root without a user namespace",
                Severity::Medium,
                Some("4.1"),
            )
            .evidence("effective uid 0 in the host user namespace: uid 0 on the host")
            .fix("Run as a non-root user (USER in the image, --user) or enable --userns-remap / rootless mode."),
        );
    }
    match st.seccomp {
        Some(0) => issues.push(
            Issue::new("DCEA-CFG-SECCOMP-DISABLED", "seccomp disabled", Severity::High, Some("5.21"))
                .evidence("Seccomp: 0 in /proc/<pid>/status: every system call reaches the kernel")
                .fix("Remove --security-opt seccomp=unconfined; use the runtime's default profile (RuntimeDefault)."),
        ),
        Some(_) => {}
        None => {}
    }
    match host.mac {
        Mac::None => issues.push(
            Issue::new("DCEA-CFG-NO-MAC", "no AppArmor or SELinux confinement", Severity::Medium, Some("5.1"))
                .evidence("neither AppArmor nor SELinux is active on this host")
                .fix("Enable AppArmor (docker-default profile) or SELinux on the host."),
        ),
        Mac::AppArmor => {
            if snap.lsm_label.as_deref().is_none_or(|l| l == "unconfined" || l.ends_with("(unconfined)")) {
                issues.push(
                    Issue::new("DCEA-CFG-APPARMOR-UNCONFINED", "AppArmor unconfined", Severity::Medium, Some("5.1"))
                        .evidence(format!("AppArmor label: {}", snap.lsm_label.as_deref().unwrap_or("(none)")))
                        .fix("Remove --security-opt apparmor=unconfined; use docker-default or a custom profile."),
                );
            }
        }
        Mac::SeLinux => {
            let l = snap.lsm_label.as_deref().unwrap_or("");
            if l.is_empty() || [":unconfined_t:", ":spc_t:", ":kernel_t:", ":initrc_t:"].iter().any(|t| l.contains(t)) {
                issues.push(
                    Issue::new("DCEA-CFG-SELINUX-UNCONFINED", "SELinux unconfined", Severity::Medium, Some("5.2"))
                        .evidence(format!("SELinux label: {}", if l.is_empty() { "(none)" } else { l }))
                        .fix("Remove --security-opt label=disable; run with container_t."),
                );
            }
        }
    }
    if st.no_new_privs == Some(false) {
        issues.push(
            Issue::new("DCEA-CFG-NO-NEW-PRIVS", "no_new_privs not set", Severity::Low, Some("5.25"))
                .evidence("NoNewPrivs: 0: setuid binaries in the container can raise privileges")
                .fix("Run with --security-opt no-new-privileges (allowPrivilegeEscalation: false)."),
        );
    }
    if let Some(list) = devices_list
        && allows_all_devices(list)
    {
        issues.push(
            Issue::new("DCEA-CFG-DEVICES-ALL", "device cgroup allows every device", Severity::High, Some("5.17"))
                .evidence("devices.list: a *:* rwm")
                .evidence("with CAP_MKNOD the container can create and open any host device (disks, /dev/mem)")
                .fix("Remove --privileged and --device-cgroup-rule 'a *:* rwm'; pass single devices with --device."),
        );
    }
    let exposed: Vec<String> = snap
        .dev_nodes
        .iter()
        .filter(|d| d.block && devices_list.is_none_or(|l| device_allowed(l, true, d.major, d.minor)))
        .map(|d| format!("{} (block {}:{})", d.path, d.major, d.minor))
        .collect();
    if !exposed.is_empty() {
        let mut issue = Issue::new("DCEA-CFG-BLOCK-DEVICE", "host block device exposed", Severity::High, Some("5.17"))
            .fix("Do not pass host disks with --device; use volumes instead.");
        issue.evidence.push(format!(
            "{} in the container's /dev{}",
            exposed.join(", "),
            if devices_list.is_some() { ", allowed by its device cgroup" } else { " (device cgroup not readable)" }
        ));
        issue.evidence.push("mount it to read or change the host filesystem".into());
        issues.push(issue);
    }
    issues.extend(mounts::check(snap, host, &subject.id));
    issues.into_iter().map(|i| i.into_finding(subject)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::config::procfs::{DevNode, ProcStatus, parse_mountinfo};

    const DEFAULT_MOUNTS: &str = "\
1 0 0:90 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A
2 1 0:91 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
3 1 0:92 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
4 1 0:93 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
5 4 0:29 /docker/ID /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
6 1 254:0 /var/lib/docker/containers/ID/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw
7 3 0:94 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
8 2 0:91 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
9 2 0:91 /sysrq-trigger /proc/sysrq-trigger ro,nosuid,nodev,noexec,relatime - proc proc rw
";
    const HOST_MOUNTS: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw
50 27 0:25 / /run rw,nosuid,nodev - tmpfs tmpfs rw
";

    fn host() -> HostRef {
        HostRef {
            cap_bnd: 0x1fffeffffff,
            ns: NS_RULES.iter().map(|(k, ..)| (k.to_string(), vec![100])).collect(),
            mounts: parse_mountinfo(HOST_MOUNTS).0,
            mac: Mac::AppArmor,
            self_mode: false,
            docker_root: "/var/lib/docker".into(),
        }
    }

    fn snap(mounts: &str) -> Snapshot {
        Snapshot {
            pid: 42,
            status: ProcStatus {
                name: "sleep".into(),
                cap_eff: 0xa80425fb,
                cap_bnd: 0xa80425fb,
                seccomp: Some(2),
                no_new_privs: Some(true),
                uid: Some([1000; 4]),
            },
            mounts: parse_mountinfo(mounts).0,
            ns: NS_RULES.iter().map(|(k, ..)| (k.to_string(), 200)).collect(),
            lsm_label: Some("docker-default (enforce)".into()),
            ..Default::default()
        }
    }

    fn ids(f: &[Finding]) -> Vec<String> {
        f.iter().map(|f| f.id.clone()).collect()
    }

    fn subject() -> Subject {
        Subject { kind: "container".into(), id: "ID".into(), name: None }
    }

    #[test]
    fn default_container_has_no_high_findings() {
        let f = check(&snap(DEFAULT_MOUNTS), &host(), &subject(), Some("c 1:3 rwm\nc 5:0 rwm\n"));
        assert!(f.iter().all(|f| f.severity < Severity::High), "{:#?}", f);
        assert!(ids(&f).contains(&"DCEA-CFG-ROOTFS-WRITABLE".to_string()));
        assert!(ids(&f).contains(&"DCEA-CFG-CAP-NET_RAW".to_string()));
    }

    #[test]
    fn privileged_host_namespaces_and_devices() {
        let mut s = snap(DEFAULT_MOUNTS);
        s.status.cap_eff = 0x1fffeffffff;
        s.status.seccomp = Some(0);
        s.ns.insert("pid".into(), 100);
        s.ns.insert("net".into(), 100);
        s.status.uid = Some([0; 4]);
        s.ns.insert("user".into(), 100);
        s.dev_nodes = vec![DevNode { path: "/dev/loop3".into(), block: true, major: 7, minor: 3 }];
        let f = check(&s, &host(), &subject(), Some("a *:* rwm\n"));
        let got = ids(&f);
        for want in [
            "DCEA-CFG-PRIVILEGED",
            "DCEA-CFG-SECCOMP-DISABLED",
            "DCEA-CFG-HOST-NS-PID",
            "DCEA-CFG-HOST-NS-NET",
            "DCEA-CFG-HOST-NS-USER",
            "DCEA-CFG-ROOT-NO-USERNS",
            "DCEA-CFG-DEVICES-ALL",
            "DCEA-CFG-BLOCK-DEVICE",
        ] {
            assert!(got.contains(&want.to_string()), "{want} missing from {got:?}");
        }
        assert!(!got.iter().any(|i| i.starts_with("DCEA-CFG-CAP-")), "privileged covers capabilities");
        let p = f.iter().find(|f| f.id == "DCEA-CFG-PRIVILEGED").unwrap();
        assert_eq!((p.cis.as_deref(), p.severity), (Some("5.4"), Severity::Critical));
    }

    #[test]
    fn runtime_without_newer_capabilities_is_still_privileged() {
        // Docker 20.10 --privileged on a 6.x kernel: everything up to AUDIT_READ.
        let mut s = snap(DEFAULT_MOUNTS);
        s.status.cap_eff = 0x3ffeffffff;
        let f = check(&s, &host(), &subject(), None);
        let p = f.iter().find(|f| f.id == "DCEA-CFG-PRIVILEGED").expect("privileged");
        assert!(p.evidence.iter().any(|e| e.contains("PERFMON, BPF, CHECKPOINT_RESTORE")), "{:?}", p.evidence);
    }

    #[test]
    fn one_capability_short_of_the_host_is_not_privileged() {
        let mut s = snap(DEFAULT_MOUNTS);
        s.status.cap_eff = 0x1fffeffffff & !(1 << 19);
        let got = ids(&check(&s, &host(), &subject(), None));
        assert!(!got.contains(&"DCEA-CFG-PRIVILEGED".to_string()));
        assert!(got.contains(&"DCEA-CFG-CAP-SYS_ADMIN".to_string()));
    }

    #[test]
    fn device_cgroup_rules() {
        assert!(device_allowed("b 7:3 rwm\n", true, 7, 3));
        assert!(!device_allowed("b 7:3 rwm\n", true, 7, 4));
        assert!(!device_allowed("b 7:3 m\n", true, 7, 3), "mknod only");
        assert!(device_allowed("b *:* rw\n", true, 254, 0));
        assert!(!device_allowed("c *:* rwm\n", true, 7, 3));
        assert!(device_allowed("a *:* rwm\n", false, 1, 1));
        assert!(!device_allowed("garbage\nb x:y rw\nb 7\n", true, 7, 3));
        assert!(allows_all_devices("c 1:3 rwm\na *:* rwm\n"));
        assert!(!allows_all_devices("a *:* r\n"));
    }

    #[test]
    fn mac_labels() {
        let mut h = host();
        let mut s = snap(DEFAULT_MOUNTS);
        s.lsm_label = Some("unconfined".into());
        assert!(ids(&check(&s, &h, &subject(), None)).contains(&"DCEA-CFG-APPARMOR-UNCONFINED".into()));
        h.mac = Mac::SeLinux;
        s.lsm_label = Some("system_u:system_r:spc_t:s0".into());
        assert!(ids(&check(&s, &h, &subject(), None)).contains(&"DCEA-CFG-SELINUX-UNCONFINED".into()));
        s.lsm_label = Some("system_u:system_r:container_t:s0:c1,c2".into());
        assert!(!ids(&check(&s, &h, &subject(), None)).iter().any(|i| i.contains("SELINUX")));
        h.mac = Mac::None;
        assert!(ids(&check(&s, &h, &subject(), None)).contains(&"DCEA-CFG-NO-MAC".into()));
    }
}
