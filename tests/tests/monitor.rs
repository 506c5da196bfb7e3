//! `dcea monitor` against real namespace escapes, as root, with the real kernel programs.

use std::{process::Command, time::Duration};

use dcea_tests::{
    ESCAPE_RULE, HostAnchor, Monitor, Received,
    docker::{self, Container},
    helper_bin, ns_inode, require_root,
};

/// A fake container (new pid, mnt, uts, ipc, net namespaces made with unshare(2)) whose
/// process enters the anchor's `kinds` namespaces; returns (escaping pid, CLOCK_MONOTONIC
/// after setns returned, exit status).
fn fake_container_setns(anchor: u32, kinds: &str) -> (Option<u32>, Option<u64>, std::process::ExitStatus) {
    let out = Command::new(helper_bin())
        .args(["fake-container-escape", &anchor.to_string(), kinds, "200"])
        .output()
        .expect("spawn helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<u64> {
        stdout.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| v.parse().ok())
    };
    (field("pid=").map(|p| p as u32), field("after_ns="), out.status)
}

#[test]
fn fake_container_setns_into_host_is_one_escape_alert_within_1s() {
    if !require_root("fake_container_setns_into_host") {
        return;
    }
    let anchor = HostAnchor::start();
    let mut monitor = Monitor::start(&[]);
    let (pid, after_ns, status) = fake_container_setns(anchor.pid(), "mnt,net,uts,ipc");
    assert!(status.success(), "helper failed: {status}");
    let (pid, after_ns) = (pid.expect("helper pid"), after_ns.expect("helper time"));

    // Only this helper's alerts: other work on a shared node may escape too (and the first
    // trust pass reports escapes older than the monitor).
    let ours = |a: &Received| a.rule() == ESCAPE_RULE && a.field("proc.pid") == pid;
    let (alert, _) = monitor.wait_for(Duration::from_secs(1), ours);
    let alert = alert.expect("an escape alert within 1 s");
    assert!(alert.read_at_ns >= after_ns && alert.read_at_ns - after_ns < 1_000_000_000, "latency");
    let more = monitor.collect(Duration::from_millis(700));
    assert!(
        more.iter().filter(|a| ours(a)).count() == 0,
        "exactly one escape alert, got more: {:?}",
        more.iter().map(|a| &a.raw).collect::<Vec<_>>()
    );

    assert_eq!(alert.field("proc.pid"), pid);
    assert_eq!(alert.field("evt.type"), "setns");
    assert_eq!(alert.field("proc.name"), "dcea-test-helpe");
    assert!(alert.field("proc.exepath").as_str().unwrap().ends_with("/dcea-test-helper"), "{}", alert.raw);
    assert_eq!(alert.field("proc.pname"), "dcea-test-helpe");
    assert_eq!(alert.json["priority"], "Critical");
    assert_eq!(alert.json["source"], "dcea");
    let entered: Vec<&str> =
        alert.field("dcea.ns.entered_host").as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(entered, ["mnt", "net", "uts", "ipc"]);
    for kind in ["mnt", "net", "uts", "ipc"] {
        assert_eq!(alert.field(&format!("dcea.ns.{kind}.to")), ns_inode(anchor.pid(), kind), "{kind}");
        assert_ne!(alert.field(&format!("dcea.ns.{kind}.from")), ns_inode(anchor.pid(), kind), "{kind}");
    }
    assert!(alert.json["tags"].as_array().unwrap().iter().any(|t| t == "T1611"));
    assert_eq!(alert.field("dcea.action"), "alert");
    // wall clock and monotonic timestamps agree with each other
    let raw = alert.field("evt.rawtime").as_u64().unwrap();
    assert!(alert.json["time"].as_str().unwrap().starts_with("20"));
    assert!(raw > 1_600_000_000_000_000_000);
    monitor.stop();
}

#[test]
fn enforce_kills_the_escaping_process_before_it_returns() {
    if !require_root("enforce_kills_the_escaping_process") {
        return;
    }
    let anchor = HostAnchor::start();
    let mut monitor = Monitor::start(&["--enforce"]);
    let (_, after_ns, status) = fake_container_setns(anchor.pid(), "mnt");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "helper must die by SIGKILL, got {status}");
    assert_eq!(after_ns, None, "the helper must not run after setns returned");
    let (alert, _) = monitor.wait_for(Duration::from_secs(2), |a| a.rule() == ESCAPE_RULE);
    let alert = alert.expect("escape alert");
    assert_eq!(alert.field("dcea.action"), "kill-process");
    let summary = monitor.stop().join("\n");
    assert!(summary.contains("1 killed"), "{summary}");
}

#[test]
fn host_processes_changing_namespaces_are_not_escapes() {
    if !require_root("host_processes_changing_namespaces") {
        return;
    }
    let mut monitor = Monitor::start(&[]);
    // A host process makes namespaces and enters a fake container: runtime-style work.
    let sleeper = Command::new("unshare")
        .args(["--pid", "--mount", "--uts", "--ipc", "--net", "--fork", "--", "sleep", "30"])
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let inner = std::fs::read_to_string(format!("/proc/{}/task/{}/children", sleeper.id(), sleeper.id()))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .map(str::to_string)
        .expect("unshare's child");
    for _ in 0..5 {
        let st =
            Command::new("nsenter").args(["-t", &inner, "-m", "-u", "-i", "-n", "-p", "--", "true"]).status().unwrap();
        assert!(st.success());
    }
    let alerts = monitor.collect(Duration::from_millis(800));
    let mut sleeper = sleeper;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(alerts.is_empty(), "no alerts for host work: {:?}", alerts.iter().map(|a| &a.raw).collect::<Vec<_>>());
    monitor.stop();
}

#[test]
fn docker_privileged_pid_host_nsenter_mount_is_an_escape_with_container_id() {
    if !require_root("docker_nsenter_escape") || !docker::available("docker_nsenter_escape") {
        return;
    }
    let anchor = HostAnchor::start();
    let mut monitor = Monitor::start(&[]);
    let script = format!("sleep 1; nsenter --mount=/proc/{}/ns/mnt -- sh -c true; sleep 1", anchor.pid());
    let c = Container::run(&["--privileged", "--pid=host"], &["sh", "-c", &script]);
    let (alert, _) = monitor
        .wait_for(Duration::from_secs(15), |a| a.rule() == ESCAPE_RULE && a.field("container.id") == c.id.as_str());
    let alert = alert.unwrap_or_else(|| panic!("escape alert for container {}", c.id));
    assert_eq!(c.wait(), 0);
    assert_eq!(alert.field("container.id"), c.id.as_str());
    assert_eq!(alert.field("container.runtime"), "docker");
    assert_eq!(alert.field("evt.type"), "setns");
    assert_eq!(alert.field("proc.name"), "nsenter");
    assert_eq!(alert.field("dcea.ns.entered_host"), &serde_json::json!(["mnt"]));
    assert_eq!(alert.field("dcea.ns.mnt.to"), ns_inode(anchor.pid(), "mnt"));
    monitor.stop();
}

#[test]
fn docker_run_exec_and_host_nsenter_raise_no_alerts() {
    if !require_root("docker_benign") || !docker::available("docker_benign") {
        return;
    }
    let mut monitor = Monitor::start(&[]);
    for _ in 0..10 {
        docker::docker(&["run", "--rm", "--network", "none", docker::IMAGE, "true"]);
    }
    let c = Container::run(&[], &["sleep", "300"]);
    for i in 0..10 {
        assert_eq!(c.exec(&["echo", &i.to_string()]), i.to_string());
    }
    let pid = c.pid().to_string();
    for _ in 0..3 {
        let st = Command::new("nsenter").args(["-t", &pid, "-a", "--", "true"]).status().unwrap();
        assert!(st.success(), "nsenter into the container");
    }
    let alerts = monitor.collect(Duration::from_secs(1));
    assert!(alerts.is_empty(), "benign runtime work alerted: {:?}", alerts.iter().map(|a| &a.raw).collect::<Vec<_>>());
    let summary = monitor.stop().join("\n");
    // The kernel saw the runtime's transitions (so the hooks ran) and found none escaping.
    let transitions: u64 = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" transitions"))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no transition count in {summary}"));
    assert!(transitions >= 20, "expected runtime transitions, got {transitions}: {summary}");
}
