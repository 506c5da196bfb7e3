//! `dcea scan config` against real Docker containers, one dangerous setting each, checked from
//! the host. Run as root with the test engine (`cargo xtask env up`).

use std::process::Command;

use dcea_tests::docker::{self, Container, IMAGE};
use dcea_user::scan::{
    Error,
    config::{ConfigScanArgs, scan},
    report::{Finding, OutputArgs, Report, Severity, Status},
};

fn ready(test: &str) -> bool {
    dcea_tests::require_root(test) && docker::available(test)
}

fn args(containers: &[&str]) -> ConfigScanArgs {
    ConfigScanArgs {
        containers: containers.iter().map(|s| s.to_string()).collect(),
        self_mode: false,
        docker_socket: "/var/run/docker.sock".into(),
        cri: Default::default(),
        output: OutputArgs { format: None, fail_on: None },
    }
}

fn scan_one(c: &Container) -> Report {
    scan(&args(&[&c.id])).unwrap_or_else(|e| panic!("scan of {}: {e}", c.id))
}

fn finding<'a>(r: &'a Report, id: &str) -> Option<&'a Finding> {
    r.findings.iter().find(|f| f.id == id)
}

/// Assert a finding with this id, CIS recommendation and at least this severity.
fn expect(r: &Report, id: &str, cis: Option<&str>, min: Severity) -> Finding {
    let f = finding(r, id).unwrap_or_else(|| {
        panic!("{id} missing; got {:?}", r.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>())
    });
    assert_eq!(f.status, Status::Fail, "{id}");
    assert_eq!(f.cis.as_deref(), cis, "{id}");
    assert!(f.severity >= min, "{id} is {:?}, want at least {min:?}", f.severity);
    f.clone()
}

fn run(extra: &[&str]) -> Container {
    Container::run(extra, &["sleep", "300"])
}

#[test]
fn default_container_has_no_high_findings() {
    if !ready("default_container_has_no_high_findings") {
        return;
    }
    let c = run(&[]);
    let r = scan_one(&c);
    let name = docker::docker(&["inspect", "-f", "{{.Name}}", &c.id]);
    assert!(r.findings.iter().all(|f| f.subject.id == c.id), "only the selected container");
    assert_eq!(r.findings[0].subject.name.as_deref(), Some(name.trim_start_matches('/')));
    let high: Vec<_> = r.findings.iter().filter(|f| f.severity >= Severity::High).collect();
    assert!(high.is_empty(), "default container has high findings: {high:#?}");
    // It was really looked at: Docker's defaults are visible.
    expect(&r, "DCEA-CFG-ROOTFS-WRITABLE", Some("5.12"), Severity::Low);
    expect(&r, "DCEA-CFG-CAP-NET_RAW", Some("5.3"), Severity::Low);
    assert!(finding(&r, "DCEA-CFG-PRIVILEGED").is_none());
    assert!(finding(&r, "DCEA-CFG-SECCOMP-DISABLED").is_none());
    assert!(finding(&r, "DCEA-CFG-HOST-NS-PID").is_none());
    assert_eq!(r.exit_code(Some(Severity::High)), 0);
}

#[test]
fn privileged() {
    if !ready("privileged") {
        return;
    }
    let c = run(&["--privileged"]);
    let r = scan_one(&c);
    expect(&r, "DCEA-CFG-PRIVILEGED", Some("5.4"), Severity::Critical);
    expect(&r, "DCEA-CFG-PROC-WRITABLE", Some("5.4"), Severity::Critical);
    expect(&r, "DCEA-CFG-SYSFS-WRITABLE", Some("5.4"), Severity::High);
    expect(&r, "DCEA-CFG-SECCOMP-DISABLED", Some("5.21"), Severity::High);
    expect(&r, "DCEA-CFG-DEVICES-ALL", Some("5.17"), Severity::High);
    assert!(
        finding(&r, "DCEA-CFG-CGROUP-WRITABLE").or(finding(&r, "DCEA-CFG-RELEASE-AGENT")).is_some(),
        "writable cgroupfs not flagged"
    );
    assert!(!r.findings.iter().any(|f| f.id.starts_with("DCEA-CFG-CAP-")), "privileged subsumes capabilities");
    assert_eq!(r.exit_code(Some(Severity::Critical)), 1);
}

#[test]
fn cap_add_sys_admin() {
    if !ready("cap_add_sys_admin") {
        return;
    }
    let c = run(&["--cap-add", "SYS_ADMIN"]);
    let r = scan_one(&c);
    let f = expect(&r, "DCEA-CFG-CAP-SYS_ADMIN", Some("5.3"), Severity::Critical);
    assert!(f.evidence.iter().any(|e| e.contains("release_agent")), "{:?}", f.evidence);
    assert!(finding(&r, "DCEA-CFG-PRIVILEGED").is_none(), "one capability is not --privileged");
    assert!(finding(&r, "DCEA-CFG-SECCOMP-DISABLED").is_none());
}

#[test]
fn host_root_mount() {
    if !ready("host_root_mount") {
        return;
    }
    let c = run(&["-v", "/:/host"]);
    let r = scan_one(&c);
    let f = expect(&r, "DCEA-CFG-HOST-ROOT", Some("5.5"), Severity::Critical);
    assert!(f.evidence.iter().any(|e| e.contains("at /host rw")), "{:?}", f.evidence);
    let ro = run(&["-v", "/etc:/hostetc:ro"]);
    let r = scan_one(&ro);
    let f = expect(&r, "DCEA-CFG-HOST-PATH", Some("5.5"), Severity::Medium);
    assert!(f.severity < Severity::High, "read-only /etc is one step lower: {:?}", f.severity);
    assert!(f.evidence.iter().any(|e| e.contains("host /etc at /hostetc ro")), "{:?}", f.evidence);
}

#[test]
fn docker_socket_mount() {
    if !ready("docker_socket_mount") {
        return;
    }
    let c = run(&["-v", "/var/run/docker.sock:/var/run/docker.sock"]);
    let r = scan_one(&c);
    let f = expect(&r, "DCEA-CFG-RUNTIME-SOCKET", Some("5.31"), Severity::Critical);
    assert!(f.evidence.iter().any(|e| e.contains("docker.sock")), "{:?}", f.evidence);
}

#[test]
fn host_pid_namespace() {
    if !ready("host_pid_namespace") {
        return;
    }
    let c = run(&["--pid=host"]);
    let r = scan_one(&c);
    expect(&r, "DCEA-CFG-HOST-NS-PID", Some("5.15"), Severity::High);
    assert!(finding(&r, "DCEA-CFG-HOST-NS-NET").is_none());
}

#[test]
fn host_net_namespace() {
    if !ready("host_net_namespace") {
        return;
    }
    // The one test that cannot use --network none.
    let c = Container { id: docker::docker(&["run", "-d", "--net=host", IMAGE, "sleep", "300"]) };
    let r = scan_one(&c);
    expect(&r, "DCEA-CFG-HOST-NS-NET", Some("5.9"), Severity::High);
    assert!(finding(&r, "DCEA-CFG-HOST-NS-PID").is_none());
}

#[test]
fn seccomp_unconfined() {
    if !ready("seccomp_unconfined") {
        return;
    }
    let c = run(&["--security-opt", "seccomp=unconfined"]);
    let r = scan_one(&c);
    expect(&r, "DCEA-CFG-SECCOMP-DISABLED", Some("5.21"), Severity::High);
    assert!(finding(&r, "DCEA-CFG-PRIVILEGED").is_none());
}

/// A loop device over a scratch file (the real disk cannot be opened here), detached on drop.
struct Loop {
    dev: String,
    file: std::path::PathBuf,
}

impl Loop {
    fn new() -> Loop {
        let file = std::env::temp_dir().join(format!("dcea-scan-loop-{}.img", std::process::id()));
        std::fs::write(&file, vec![0u8; 4 << 20]).expect("scratch file");
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&file).output().expect("losetup");
        assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
        Loop { dev: String::from_utf8_lossy(&out.stdout).trim().to_string(), file }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn host_block_device() {
    if !ready("host_block_device") {
        return;
    }
    let lo = Loop::new();
    let c = run(&[&format!("--device={}", lo.dev)]);
    let r = scan_one(&c);
    let f = expect(&r, "DCEA-CFG-BLOCK-DEVICE", Some("5.17"), Severity::High);
    assert!(f.evidence.iter().any(|e| e.contains(&lo.dev)), "{:?}", f.evidence);
    assert!(finding(&r, "DCEA-CFG-DEVICES-ALL").is_none(), "only one device is allowed");
    drop(c);
}

#[test]
fn whole_host_scan_and_errors() {
    if !ready("whole_host_scan_and_errors") {
        return;
    }
    let a = run(&[]);
    let b = run(&["--pid=host"]);
    let r = scan(&args(&[])).expect("scan all");
    for c in [&a, &b] {
        assert!(r.findings.iter().any(|f| f.subject.id == c.id), "{} not scanned", c.id);
    }
    assert!(r.findings.iter().any(|f| f.subject.id == b.id && f.id == "DCEA-CFG-HOST-NS-PID"));
    assert!(!r.findings.iter().any(|f| f.subject.id == a.id && f.id == "DCEA-CFG-HOST-NS-PID"));
    let containers = r.target["containers"].as_array().expect("target.containers");
    assert!(containers.len() >= 2);
    assert!(matches!(scan(&args(&["no-such-container-name"])), Err(Error::Usage(_))));
}

#[test]
fn binary_exit_codes_and_sarif() {
    if !ready("binary_exit_codes_and_sarif") {
        return;
    }
    let bin = dcea_tests::dcea_bin();
    if !bin.exists() {
        panic!("{} missing: build dcea first or set DCEA_BIN", bin.display());
    }
    let c = run(&["--privileged"]);
    let out = Command::new(&bin)
        .args(["scan", "config", "--container", &c.id, "--format", "sarif", "--fail-on", "critical"])
        .output()
        .expect("run dcea");
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).expect("SARIF is JSON");
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(results.iter().any(|r| r["ruleId"] == "DCEA-CFG-PRIVILEGED" && r["level"] == "error"));
    let clean = run(&[]);
    let out = Command::new(&bin)
        .args(["scan", "config", "--container", &clean.id, "--format", "json", "--fail-on", "high"])
        .output()
        .expect("run dcea");
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&bin).args(["scan", "config", "--container", "no-such-container"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// `dcea scan config --self` run as the container's own PID 1, the way a CI image would.
fn self_scan(extra: &[&str]) -> serde_json::Value {
    let bin = dcea_tests::dcea_bin();
    assert!(bin.exists(), "{} missing: build dcea first or set DCEA_BIN", bin.display());
    let mount = format!("{}:/dcea:ro", bin.display());
    // The debug binary is linked against the host's glibc; the busybox image has none.
    let mut opts = vec!["-v", &mount, "-v", "/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro", "-v", "/lib64:/lib64:ro"];
    opts.extend_from_slice(extra);
    let c = Container::run(&opts, &["/dcea", "scan", "config", "--self", "--format", "json"]);
    assert_eq!(c.wait(), 0, "dcea --self failed: {}", c.logs());
    let out = Command::new("docker").args(["logs", &c.id]).output().expect("docker logs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn self_ids(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn self_mode_inside_containers() {
    if !ready("self_mode_inside_containers") {
        return;
    }
    let plain = self_scan(&[]);
    assert_eq!(plain["target"]["mode"], "self");
    let ids = self_ids(&plain);
    assert!(ids.contains(&"DCEA-CFG-ROOTFS-WRITABLE".to_string()), "{ids:?}");
    assert!(!ids.contains(&"DCEA-CFG-PRIVILEGED".to_string()), "{ids:?}");
    assert!(!ids.contains(&"DCEA-CFG-SECCOMP-DISABLED".to_string()), "{ids:?}");
    let privileged = self_scan(&["--privileged"]);
    let ids = self_ids(&privileged);
    for want in ["DCEA-CFG-PRIVILEGED", "DCEA-CFG-PROC-WRITABLE", "DCEA-CFG-SECCOMP-DISABLED"] {
        assert!(ids.contains(&want.to_string()), "{want} missing: {ids:?}");
    }
}
