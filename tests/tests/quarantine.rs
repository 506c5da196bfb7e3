//! Network quarantine (`dcea quarantine`) against real containers with a real network: a veth
//! pair between a network namespace the test makes and the container's own, addresses of
//! 10.213.0.0/16 the test owns, and a TCP/UDP listener on the host side.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use dcea_tests::{
    ESCAPE_RULE, HostAnchor, Monitor, Need, Received, dcea_bin,
    docker::{self, Container},
    helper_bin,
    netns::Wire,
    require_root, skip,
};
use serde_json::Value;

const QUARANTINED: &str = "Container network quarantined";
const RELEASED: &str = "Container network quarantine released";
const PIN_ROOT: &str = "/sys/fs/bpf/dcea/quarantine";
const PORT: &str = "7913";
const EPERM: &str = "errno=1";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dcea quarantine ARGS… --state-dir STATE`: its stdout.
fn dcea_quarantine(state: &Path, args: &[&str]) -> String {
    run(Command::new(dcea_bin()).arg("quarantine").args(args).arg("--state-dir").arg(state))
}

/// A quarantine this test made, released on drop whatever happened.
struct Quarantine {
    container: String,
    state: PathBuf,
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        let _ = Command::new(dcea_bin())
            .args(["quarantine", "release", &self.container, "--state-dir"])
            .arg(&self.state)
            .output();
    }
}

/// `docker exec C /dcea-test-helper ARGS…`: its stdout (the probes exit 1 on a refusal).
fn helper_in(c: &Container, args: &[&str]) -> String {
    let out =
        Command::new("docker").args(["exec", &c.id, "/dcea-test-helper"]).args(args).output().expect("docker exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container that can run the helper, sleeping.
fn probe_container(prefix: &str, extra: &[&str], cmd: &[&str]) -> Container {
    let mounts = docker::helper_mounts();
    let mut args: Vec<&str> = mounts.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Container::run_named(prefix, &args, cmd)
}

/// A long-lived connection from the container, reading its `ok`/`fail` lines.
struct Stream {
    child: Child,
    lines: Receiver<String>,
}

impl Stream {
    fn start(c: &Container, ip: &str) -> Stream {
        let mut child = Command::new("docker")
            .args(["exec", &c.id, "/dcea-test-helper", "tcp-stream", ip, PORT, "90"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn stream");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Stream { child, lines }
    }

    /// Wait for a line starting with `prefix`.
    fn wait(&self, prefix: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metrics_url(monitor: &Monitor) -> String {
    let line = monitor
        .stderr_lines
        .iter()
        .find_map(|l| l.strip_prefix("dcea: metrics on "))
        .expect("the metrics line")
        .to_string();
    line.split(',').next().unwrap().trim().to_string()
}

fn metric(url: &str, series: &str) -> f64 {
    let body = reqwest::blocking::get(url).and_then(|r| r.text()).unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

fn is_ours(a: &Received, rule: &str, id: &str) -> bool {
    a.rule() == rule && a.field("container.id") == id
}

fn listed(state: &Path) -> Vec<Value> {
    let out = dcea_quarantine(state, &["list", "--format", "json"]);
    serde_json::from_str::<Value>(&out).expect("list JSON").as_array().cloned().unwrap_or_default()
}

#[test]
fn quarantine_cuts_a_container_off_but_its_loopback_and_survives_a_restart() {
    let test = "quarantine_cuts_a_container_off";
    if !require_root(test) || !docker::available(test) || !dcea_tests::skip::require_program(test, "ip", "iproute2") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    let mut monitor = Monitor::start(&["--state-dir", s, "--metrics-addr", "127.0.0.1:0"]);
    let c = probe_container("dcea-q", &[], &["sleep", "600"]);
    let name = docker::docker(&["inspect", "-f", "{{.Name}}", &c.id]).trim_start_matches('/').to_string();
    let mut wire = Wire::connect(c.pid(), 0);
    let host_ip = wire.host_ip.clone();
    wire.listen(&["net-listen", &host_ip, PORT], true);

    // Before: TCP and UDP reach the listener.
    assert_eq!(helper_in(&c, &["net-probe", "tcp", &host_ip, PORT]), "ok");
    assert!(wire.hear("tcp", Duration::from_secs(2)), "the listener saw no connection");
    assert_eq!(helper_in(&c, &["net-probe", "udp", &host_ip, PORT]), "ok");
    assert!(wire.hear("udp dcea-udp-probe", Duration::from_secs(2)), "the listener got no datagram");
    let stream = Stream::start(&c, &host_ip);
    assert!(stream.wait("connected", Duration::from_secs(5)) && stream.wait("ok", Duration::from_secs(3)));

    // During: by name, with a reason.
    let _guard = Quarantine { container: c.id.clone(), state: state.path().to_path_buf() };
    let out = dcea_quarantine(state.path(), &[&name, "--reason", "e2e: suspicious beaconing"]);
    assert!(out.contains("quarantined"), "{out}");
    for p in ["quarantine_connect4", "quarantine_sendmsg4", "quarantine_ingress", "quarantine_egress"] {
        assert!(Path::new(PIN_ROOT).join(&c.id).join(p).exists(), "{p} pinned");
    }
    let (alert, _) = monitor.wait_for(Duration::from_secs(3), |a| is_ours(a, QUARANTINED, &c.id));
    let alert = alert.expect("a quarantine alert within 3 s");
    assert_eq!(alert.field("quarantine.by"), "cli");
    assert_eq!(alert.field("quarantine.reason"), "e2e: suspicious beaconing");
    assert_eq!(alert.field("container.name"), name.as_str());
    assert_eq!(alert.json["source"], "dcea");
    let tcp = helper_in(&c, &["net-probe", "tcp", &host_ip, PORT]);
    assert!(tcp.contains(EPERM), "a new TCP connect must fail with EPERM: {tcp}");
    wire.drain();
    let udp = helper_in(&c, &["net-probe", "udp", &host_ip, PORT]);
    assert!(udp.contains(EPERM), "UDP must be refused: {udp}");
    assert!(!wire.hear("udp", Duration::from_secs(1)), "a datagram got through");
    assert!(stream.wait("fail", Duration::from_secs(3)), "the established connection still passes data");
    assert_eq!(helper_in(&c, &["loopback-check"]), "ok", "loopback inside the container must work");

    // kill -9 of the agent and a restart: still quarantined, still listed.
    // SAFETY: signalling the monitor this test started.
    unsafe { libc::kill(monitor.pid() as i32, libc::SIGKILL) };
    drop(monitor);
    let tcp = helper_in(&c, &["net-probe", "tcp", &host_ip, PORT]);
    assert!(tcp.contains(EPERM), "the quarantine must outlive the agent: {tcp}");
    let mut monitor = Monitor::start(&["--state-dir", s, "--metrics-addr", "127.0.0.1:0"]);
    let list = listed(state.path());
    let entry = list.iter().find(|e| e["container_id"] == c.id.as_str()).unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(entry["pinned"], true);
    assert_eq!(entry["record"]["reason"], "e2e: suspicious beaconing");
    assert_eq!(entry["record"]["by"]["origin"], "cli");
    let url = metrics_url(&monitor);
    assert!(metric(&url, "dcea_quarantined_containers") >= 1.0);

    // After release: everything works again, and the restarted agent says so.
    let out = dcea_quarantine(state.path(), &["release", &c.id[..12]]);
    assert!(out.contains("released"), "{out}");
    assert!(!Path::new(PIN_ROOT).join(&c.id).exists(), "pins removed");
    let (alert, _) = monitor.wait_for(Duration::from_secs(3), |a| is_ours(a, RELEASED, &c.id));
    assert_eq!(alert.expect("a release alert").field("quarantine.by"), "cli");
    assert_eq!(metric(&url, "dcea_quarantines_total{action=\"release\"}"), 1.0);
    assert_eq!(helper_in(&c, &["net-probe", "tcp", &host_ip, PORT]), "ok");
    wire.drain();
    assert_eq!(helper_in(&c, &["net-probe", "udp", &host_ip, PORT]), "ok");
    assert!(wire.hear("udp dcea-udp-probe", Duration::from_secs(2)), "no datagram after release");
    assert!(stream.wait("ok", Duration::from_secs(30)), "the established connection did not recover");
    assert_eq!(helper_in(&c, &["loopback-check"]), "ok");
    assert!(listed(state.path()).iter().all(|e| e["container_id"] != c.id.as_str()));
    monitor.stop();
}

#[test]
fn quarantine_on_critical_cuts_off_an_escaping_container_within_1s() {
    let test = "quarantine_on_critical";
    if !require_root(test) || !docker::available(test) {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let anchor = HostAnchor::start();
    let mut monitor = Monitor::start(&["--state-dir", state.path().to_str().unwrap(), "--quarantine-on", "critical"]);
    let script = format!("sleep 2; nsenter --mount=/proc/{}/ns/mnt -- true; sleep 600", anchor.pid());
    let c = probe_container("dcea-q-escape", &["--privileged", "--pid=host"], &["sh", "-c", &script]);
    let _guard = Quarantine { container: c.id.clone(), state: state.path().to_path_buf() };
    let (escape, _) = monitor.wait_for(Duration::from_secs(15), |a| is_ours(a, ESCAPE_RULE, &c.id));
    let escape = escape.expect("the escape alert");
    let (q, _) = monitor.wait_for(Duration::from_secs(2), |a| is_ours(a, QUARANTINED, &c.id));
    let q = q.expect("a quarantine alert after the escape");
    let latency_ms = (q.read_at_ns - escape.read_at_ns) / 1_000_000;
    assert!(latency_ms < 1000, "quarantined {latency_ms} ms after the escape alert");
    assert_eq!(q.field("quarantine.by"), "agent");
    assert_eq!(q.field("quarantine.reason"), ESCAPE_RULE);
    assert!(Path::new(PIN_ROOT).join(&c.id).join("quarantine_connect4").exists());
    let tcp = helper_in(&c, &["net-probe", "tcp", "10.213.250.1", PORT]);
    assert!(tcp.contains(EPERM), "the escaped container must be cut off: {tcp}");
    eprintln!("quarantine_on_critical: quarantine alert {latency_ms} ms after the escape alert");
    monitor.stop();
}

/// A container without an engine in the cgroup v2 tree (the matrix VMs have no Docker): a
/// directory named as runtimes name theirs, `docker-<64 hex>.scope`.
struct V2Fake {
    id: String,
    parent: PathBuf,
    leaf: PathBuf,
}

impl V2Fake {
    fn create(root: &Path) -> V2Fake {
        let pid = std::process::id();
        let id = format!("dcea{:060x}", (u64::from(pid) << 8) | 0x9a);
        let parent = root.join(format!("dcea-qtest-{pid}"));
        let leaf = parent.join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&leaf).unwrap_or_else(|e| panic!("mkdir {}: {e}", leaf.display()));
        V2Fake { id, parent, leaf }
    }

    /// The helper's quarantine probe, run inside (it joins the cgroup before exec).
    fn probe(&self) -> String {
        use std::os::unix::process::CommandExt;
        let procs =
            std::ffi::CString::new(self.leaf.join("cgroup.procs").into_os_string().into_encoded_bytes()).expect("path");
        let mut cmd = Command::new(helper_bin());
        cmd.args(["quarantine-probe", "10.213.251.1", PORT]);
        // SAFETY: only open/write/close between fork and exec, on a path made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if n != 1 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
        }
        run(&mut cmd).trim().to_string()
    }
}

impl Drop for V2Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.leaf);
        let _ = std::fs::remove_dir(&self.parent);
    }
}

#[test]
fn quarantine_of_a_fake_container_refuses_its_connects_with_eperm() {
    let test = "quarantine_of_a_fake_container";
    if !require_root(test) {
        return;
    }
    let root = match dcea_user::quarantine::cgroup::v2_root() {
        Ok(r) => r,
        Err(e) => {
            skip(test, Need::Kernel, &e.to_string());
            return;
        }
    };
    let state = tempfile::tempdir().unwrap();
    let fake = V2Fake::create(&root);
    // In its own network namespace nothing routes to the address: ENETUNREACH (101).
    assert_eq!(fake.probe(), "remote=errno=101 loopback=ok");
    let _guard = Quarantine { container: fake.id.clone(), state: state.path().to_path_buf() };
    let out = dcea_quarantine(state.path(), &[&fake.id, "--reason", "matrix"]);
    assert!(out.contains("quarantined"), "{out}");
    // The verifier's instruction counts, for the matrix logs.
    eprintln!("{out}");
    assert_eq!(fake.probe(), "remote=errno=1 loopback=ok", "refused with EPERM before routing; loopback works");
    let list = listed(state.path());
    assert!(list.iter().any(|e| e["container_id"] == fake.id.as_str() && e["pinned"] == true), "{list:?}");
    dcea_quarantine(state.path(), &["release", &fake.id]);
    assert_eq!(fake.probe(), "remote=errno=101 loopback=ok");
}

#[test]
fn quarantine_of_an_unknown_container_is_a_clear_error() {
    if !require_root("quarantine_of_an_unknown_container") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(dcea_bin())
        .args(["quarantine", &"fe".repeat(32), "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no cgroup v2 directory for container") || err.contains("no cgroup v2 hierarchy"), "{err}");
    assert!(!Path::new(PIN_ROOT).join("fe".repeat(32)).exists());
}

#[test]
fn allow_dns_lets_port_53_through_and_nothing_else() {
    let test = "allow_dns_lets_port_53_through";
    if !require_root(test) || !docker::available(test) || !dcea_tests::skip::require_program(test, "ip", "iproute2") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let c = probe_container("dcea-q-dns", &[], &["sleep", "600"]);
    let mut wire = Wire::connect(c.pid(), 1);
    let host_ip = wire.host_ip.clone();
    wire.listen(&["net-listen", &host_ip, "53"], true);
    let _guard = Quarantine { container: c.id.clone(), state: state.path().to_path_buf() };
    let out = dcea_quarantine(state.path(), &[&c.id, "--allow-dns", "--reason", "dns only"]);
    assert!(out.contains("and DNS"), "{out}");
    assert_eq!(helper_in(&c, &["net-probe", "udp", &host_ip, "53"]), "ok");
    assert!(wire.hear("udp dcea-udp-probe", Duration::from_secs(2)), "the DNS datagram did not arrive");
    assert_eq!(helper_in(&c, &["net-probe", "tcp", &host_ip, "53"]), "ok", "TCP DNS passes both ways");
    let other = helper_in(&c, &["net-probe", "tcp", &host_ip, PORT]);
    assert!(other.contains(EPERM), "only port 53: {other}");
    let list = listed(state.path());
    assert!(list.iter().any(|e| e["container_id"] == c.id.as_str() && e["record"]["allow_dns"] == true), "{list:?}");
}
