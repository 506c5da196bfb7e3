//! The trust table end to end, as root, with real Docker containers: poll mode, restart
//! persistence, a corrupt database, hostile labels, vanishing processes, both modes agreeing.

use std::{
    ffi::OsString,
    os::unix::ffi::OsStringExt,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use dcea_tests::{
    ESCAPE_RULE, HostAnchor, Monitor, Received, dcea_bin,
    docker::{self, Container},
    ns_inode, require_root,
};
use serde_json::Value;

const NO_ENGINE: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/dcea-test/docker.sock");

fn dcea(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(dcea_bin()).args(args).envs(env.iter().copied()).output().expect("spawn dcea")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn escapes(alerts: &[Received]) -> Vec<&Received> {
    alerts.iter().filter(|a| a.rule() == ESCAPE_RULE).collect()
}

fn ready(test: &str) -> bool {
    require_root(test) && docker::available(test)
}

/// Wait until `pid`'s `kind` namespace is the anchor's (the escape happened).
fn wait_ns(pid: u32, kind: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if dcea_user::sys::ns_inode(&pid.to_string(), kind).map(u64::from).ok() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("pid {pid} never entered {kind} namespace {want}");
}

/// An init that runs `escape &` each time /tmp/go appears. `docker exec` cannot start
/// processes in a --privileged container on this machine (its runc wrapper fixes capabilities
/// for `create` only), so the host triggers the escape through the container's root.
fn escape_loop(escape: &str) -> String {
    format!("while true; do if [ -e /tmp/go ]; then rm -f /tmp/go; {escape} & fi; sleep 0.05; done")
}

fn trigger(c: &Container) {
    std::fs::write(format!("/proc/{}/root/tmp/go", c.pid()), b"").expect("write the trigger into the container");
}

#[test]
fn poll_mode_catches_a_docker_escape_within_two_intervals_with_name_image_and_hostile_labels() {
    if !ready("poll_mode_docker_escape") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let anchor = HostAnchor::start();
    // Labels with a newline, quotes, a backslash and bytes that are not UTF-8 (the engine
    // turns those into U+FFFD; the JSON must stay one valid line either way).
    let name = docker::unique_name("dcea-trust-poll");
    let mut args: Vec<OsString> =
        ["run", "-d", "--network", "none", "--privileged", "--pid=host", "--name", &name].map(OsString::from).to_vec();
    args.push("--label".into());
    args.push(OsString::from_vec(b"dcea.hostile=line1\nline2 \"quoted\" \\ \xff\xfe end".to_vec()));
    args.push("--label".into());
    args.push("io.kubernetes.pod.name=web-0".into());
    args.push("--label".into());
    args.push("io.kubernetes.pod.namespace=prod".into());
    let escape = format!("nsenter --mount=/proc/{0}/ns/mnt --net=/proc/{0}/ns/net -- sleep 60", anchor.pid());
    args.extend([docker::IMAGE, "sh", "-c"].map(OsString::from));
    args.push(escape_loop(&escape).into());
    let out = Command::new("docker").args(&args).output().unwrap();
    assert!(out.status.success(), "docker run: {}", text(&out.stderr));
    let c = Container { id: text(&out.stdout).trim().to_string() };

    let interval = Duration::from_secs(1);
    let mut monitor =
        Monitor::start(&["--mode", "poll", "--interval", "1s", "--state-dir", state.path().to_str().unwrap()]);
    assert!(monitor.stderr_lines.iter().any(|l| l.contains("ready (mode poll")), "{:?}", monitor.stderr_lines);
    std::thread::sleep(Duration::from_millis(1500));
    trigger(&c);
    let escaped_at = Instant::now();
    let (alert, before) = monitor.wait_for(2 * interval + Duration::from_secs(3), |a| a.rule() == ESCAPE_RULE);
    let alert = alert.unwrap_or_else(|| panic!("no escape alert; before: {before:?}"));
    let took = escaped_at.elapsed();
    assert!(took <= 2 * interval + Duration::from_millis(500), "detected after {took:?}, more than two intervals");

    assert!(!alert.raw.contains('\n'));
    assert_eq!(alert.field("container.id"), c.id.as_str());
    assert_eq!(alert.field("container.name"), name.as_str());
    assert_eq!(alert.field("container.image"), docker::IMAGE);
    assert_eq!(alert.field("container.image.repository"), "dcea-test/busybox");
    assert_eq!(alert.field("container.image.tag"), "latest");
    assert!(alert.field("container.image.id").as_str().unwrap().starts_with("sha256:"));
    assert_eq!(alert.field("container.privileged"), true);
    assert_eq!(alert.field("container.runtime"), "docker");
    assert_eq!(alert.field("container.labels")["dcea.hostile"], "line1\nline2 \"quoted\" \\ \u{FFFD}\u{FFFD} end");
    assert_eq!(alert.field("k8s.pod.name"), "web-0");
    assert_eq!(alert.field("k8s.ns.name"), "prod");
    assert_eq!(alert.field("dcea.detected_by"), "poll");
    assert_eq!(alert.field("evt.type"), &Value::Null, "no syscall was observed by polling");
    assert_eq!(alert.field("dcea.ns.entered_host"), &serde_json::json!(["mnt", "net"]));
    assert_eq!(alert.field("dcea.ns.mnt.to"), ns_inode(anchor.pid(), "mnt"));
    assert_eq!(alert.field("dcea.ns.net.to"), ns_inode(anchor.pid(), "net"));
    assert_eq!(alert.field("dcea.ns.mnt.from"), ns_inode(c.pid(), "mnt"));
    assert_eq!(alert.field("proc.name"), "sleep");
    // One escape, one alert: later passes remember it.
    let more = monitor.collect(3 * interval);
    assert!(escapes(&more).is_empty(), "reported again: {:?}", more.iter().map(|a| &a.raw).collect::<Vec<_>>());
    let summary = monitor.stop().join("\n");
    assert!(summary.contains("stopping (poll mode)"), "{summary}");
    let table =
        dcea(&["trust", "show", "--state-dir", state.path().to_str().unwrap(), "--container", &c.id[..12]], &[]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    assert!(text(&table.stdout).contains(&name), "{}", text(&table.stdout));
}

#[test]
fn restart_keeps_the_baseline_so_an_escape_made_while_down_is_caught() {
    if !ready("restart_persistence") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let anchor = HostAnchor::start();
    // The container's own init escapes into the host network namespace on a signal file.
    // Without the engine (it is hidden from dcea here) a first look at such an init cannot
    // tell it from a --network=host container: only the stored baseline can.
    let script = format!(
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; exec nsenter --net=/proc/{}/ns/net -- sleep 300",
        anchor.pid()
    );
    let c = Container::run_named("dcea-trust-restart", &["--privileged", "--pid=host"], &["sh", "-c", &script]);
    let init = c.pid();
    let own_net = ns_inode(init, "net");
    let args = ["--mode", "poll", "--interval", "1s", "--state-dir", sd];

    let mut first = Monitor::start_with_env(&args, &[NO_ENGINE]);
    let quiet = first.collect(Duration::from_millis(2500));
    assert!(escapes(&quiet).is_empty(), "{quiet:?}");
    first.stop();
    let db = std::fs::read_to_string(state.path().join("trust.json")).expect("trust.json saved at stop");
    assert!(db.contains(&c.id), "baseline has the container");

    // dcea is down: the escape happens.
    trigger(&c);
    wait_ns(init, "net", ns_inode(anchor.pid(), "net"));

    let mut second = Monitor::start_with_env(&args, &[NO_ENGINE]);
    assert!(second.stderr_lines.iter().any(|l| l.contains("processes restored")), "{:?}", second.stderr_lines);
    let (alert, seen) = second.wait_for(Duration::from_secs(3), |a| a.rule() == ESCAPE_RULE);
    let alert = alert.unwrap_or_else(|| panic!("escape made while down not reported: {seen:?}"));
    assert_eq!(alert.field("proc.pid"), init);
    assert_eq!(alert.field("container.id"), c.id.as_str());
    assert_eq!(alert.field("dcea.ns.entered_host"), &serde_json::json!(["net"]));
    assert_eq!(alert.field("dcea.ns.net.from"), own_net, "the stored trusted namespace");
    assert_eq!(alert.field("container.name"), &Value::Null, "no engine: ids only");
    second.stop();

    // The same host seen for the first time, engine hidden: nothing to compare with.
    let fresh = tempfile::tempdir().unwrap();
    let out = dcea(&["trust", "verify", "--state-dir", fresh.path().to_str().unwrap()], &[NO_ENGINE]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // With the engine, NetworkMode=none says the init may not be in the host's network.
    let fresh = tempfile::tempdir().unwrap();
    let out = dcea(&["trust", "verify", "--state-dir", fresh.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&c.id));
}

#[test]
fn a_corrupt_trust_file_is_reported_set_aside_and_rebuilt() {
    if !ready("corrupt_trust_file") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let db = state.path().join("trust.json");
    let c = Container::run_named("dcea-trust-corrupt", &[], &["sleep", "300"]);
    let out = dcea(&["trust", "verify", "--state-dir", sd], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let good = std::fs::read(&db).unwrap();

    let set_aside = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("trust.json.corrupt-"))
            .collect()
    };
    // Truncated (a crash of something that did not write atomically, a full disk).
    let truncated = good[..good.len() / 2].to_vec();
    std::fs::write(&db, &truncated).unwrap();
    // Readers say so and leave the file alone.
    let show = dcea(&["trust", "show", "--state-dir", sd], &[]);
    assert_eq!(show.status.code(), Some(2));
    assert!(text(&show.stderr).contains("unusable (truncated"), "{}", text(&show.stderr));
    assert_eq!(std::fs::read(&db).unwrap(), truncated);

    let out = dcea(&["trust", "verify", "--state-dir", sd], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("WARNING: trust database") && err.contains("unusable (truncated"), "{err}");
    assert!(err.contains("rebuilt"), "{err}");
    let aside = set_aside(state.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), truncated, "kept byte for byte");
    let rebuilt: Value = serde_json::from_slice(&std::fs::read(&db).unwrap()).expect("rebuilt database is JSON");
    assert!(rebuilt["containers"].get(&c.id).is_some(), "rebuilt with the running container");

    // Garbage under the monitor: same story, no crash.
    std::fs::write(&db, b"\x00\xff{not json").unwrap();
    let m = Monitor::start(&["--mode", "poll", "--interval", "1s", "--state-dir", sd]);
    assert!(m.stderr_lines.iter().any(|l| l.contains("unusable (not valid trust JSON")), "{:?}", m.stderr_lines);
    m.stop();
    assert_eq!(set_aside(state.path()).len(), 2);
    let rebuilt: Value = serde_json::from_slice(&std::fs::read(&db).unwrap()).unwrap();
    assert!(rebuilt["containers"].get(&c.id).is_some());
}

#[test]
fn both_modes_report_the_same_escape_with_the_same_fields() {
    if !ready("both_modes_agree") {
        return;
    }
    let anchor = HostAnchor::start();
    // Short-lived escapes, so the next mode starts with no escaped process left over.
    let escape = format!("nsenter --mount=/proc/{}/ns/mnt -- sleep 3", anchor.pid());
    let c = Container::run_named(
        "dcea-trust-modes",
        &["--privileged", "--pid=host", "--label", "team=blue"],
        &["sh", "-c", &escape_loop(&escape)],
    );
    let mut alerts = Vec::new();
    for mode in ["ebpf", "poll"] {
        let state = tempfile::tempdir().unwrap();
        let mut m =
            Monitor::start(&["--mode", mode, "--interval", "1s", "--state-dir", state.path().to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(1500));
        trigger(&c);
        let escaped_at = Instant::now();
        let (alert, seen) = m.wait_for(Duration::from_secs(5), |a| a.rule() == ESCAPE_RULE);
        let alert = alert.unwrap_or_else(|| panic!("{mode}: no escape alert: {seen:?}"));
        // The other paths (re-check, the periodic pass) find the same process: one report.
        let more = m.collect(Duration::from_millis(2500));
        assert!(escapes(&more).is_empty(), "{mode}: duplicates {:?}", more.iter().map(|a| &a.raw).collect::<Vec<_>>());
        assert_eq!(alert.field("dcea.detected_by"), mode);
        m.stop();
        std::thread::sleep(Duration::from_secs(4).saturating_sub(escaped_at.elapsed()));
        alerts.push(alert);
    }
    let (ebpf, poll) = (&alerts[0], &alerts[1]);
    let keys = |a: &Received| a.json["output_fields"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(ebpf), keys(poll), "same output_fields keys");
    for k in [
        "container.id",
        "container.name",
        "container.image",
        "container.image.repository",
        "container.image.tag",
        "container.image.id",
        "container.privileged",
        "container.runtime",
        "container.labels",
        "k8s.pod.name",
        "k8s.ns.name",
        "user.uid",
        "dcea.action",
        "dcea.ns.changed",
        "dcea.ns.entered_host",
        "dcea.ns.mnt.from",
        "dcea.ns.mnt.to",
    ] {
        assert_eq!(ebpf.field(k), poll.field(k), "{k}");
    }
    for k in ["rule", "priority", "tags", "source", "hostname"] {
        assert_eq!(ebpf.json[k], poll.json[k], "{k}");
    }
    assert_eq!(ebpf.field("container.labels")["team"], "blue");
    // What polling cannot know is null, not invented.
    assert_eq!(ebpf.field("evt.type"), "setns");
    for k in ["evt.type", "evt.res", "dcea.at_syscall_entry", "dcea.unexplained"] {
        assert_eq!(poll.field(k), &Value::Null, "{k}");
    }
}

#[test]
fn churning_and_vanishing_processes_cause_no_errors_and_no_alerts() {
    if !ready("vanishing_processes") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    // Hundreds of short-lived processes a second: most vanish between listing and reading.
    let churn = Container::run_named(
        "dcea-trust-churn",
        &[],
        &["sh", "-c", "while true; do for i in 1 2 3 4 5; do sleep 0 & done; wait; sleep 0.02; done"],
    );
    let benign = Container::run_named("dcea-trust-exec", &[], &["sleep", "300"]);
    let mut m = Monitor::start(&["--mode", "poll", "--interval", "100ms", "--state-dir", sd]);
    for i in 0..5 {
        assert_eq!(benign.exec(&["echo", &i.to_string()]), i.to_string());
    }
    let alerts = m.collect(Duration::from_secs(3));
    let stderr = m.stop().join("\n");
    assert!(alerts.is_empty(), "{:?}", alerts.iter().map(|a| &a.raw).collect::<Vec<_>>());
    assert!(!stderr.contains("WARN") && !stderr.contains("ERROR") && !stderr.contains("error"), "{stderr}");
    let passes: u64 = stderr
        .split("trust: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pass count in {stderr}"));
    assert!(passes >= 20, "{passes} passes in 3 s at 100ms");
    for _ in 0..10 {
        let out = dcea(&["trust", "verify", "--state-dir", sd], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(!text(&out.stderr).to_lowercase().contains("error"), "{}", text(&out.stderr));
    }
    drop(churn);
}

#[test]
fn auto_mode_falls_back_to_polling_loudly_and_ebpf_mode_refuses() {
    if !require_root("auto_fallback") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let m = Monitor::start(&["--btf", "/nonexistent/vmlinux", "--state-dir", sd]);
    let err = m.stderr_lines.join("\n");
    assert!(
        err.contains("WARNING: the eBPF programs could not load") && err.contains("FALLING BACK TO POLLING"),
        "{err}"
    );
    assert!(err.contains("ready (mode poll; trust pass every 2s"), "{err}");
    m.stop();
    let out = dcea(&["monitor", "--mode", "ebpf", "--btf", "/nonexistent/vmlinux", "--state-dir", sd], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("kernel BTF not found"), "{}", text(&out.stderr));
    let bad = dcea(&["monitor", "--interval", "1ms"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("between 100ms and 1h"), "{}", text(&bad.stderr));
}

#[test]
fn trust_verify_exit_codes_and_show_formats() {
    if !ready("trust_cli") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let sd = state.path().to_str().unwrap();
    let none = dcea(&["trust", "show", "--state-dir", sd], &[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("no trust database"), "{}", text(&none.stderr));

    let c = Container::run_named("dcea-trust-cli", &[], &["sleep", "300"]);
    let pid = c.pid();
    let out = dcea(&["trust", "verify", "--state-dir", sd, "--format", "text"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 violations"), "{}", text(&out.stderr));

    let json = dcea(&["trust", "show", "--state-dir", sd, "--format", "json", "--container", &c.id[..12]], &[]);
    assert!(json.status.success());
    let v: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["version"], 1);
    let rec = &v["containers"][&c.id];
    assert_eq!(rec["init_pid"], pid);
    assert_eq!(rec["runtime"], "docker");
    let proc0 = &rec["processes"][0];
    assert_eq!(proc0["pid"], pid);
    assert_eq!(proc0["ns"][0], ns_inode(pid, "mnt"));
    assert_eq!(proc0["pid_sha256"].as_str().unwrap().len(), 64);
    let table = dcea(&["trust", "show", "--state-dir", sd], &[]);
    assert!(text(&table.stdout).contains(&format!("container {}", c.id)), "{}", text(&table.stdout));
    let missing = dcea(&["trust", "show", "--state-dir", sd, "--container", "nosuchcontainer"], &[]);
    assert_eq!(missing.status.code(), Some(2));

    let blocker = state.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = dcea(&["trust", "verify", "--state-dir", blocker.join("sub").to_str().unwrap()], &[]);
    assert_eq!(err.status.code(), Some(2));
    assert!(text(&err.stderr).contains("creating state directory"), "{}", text(&err.stderr));
}

#[test]
fn poll_mode_enforce_kills_the_escaped_process() {
    if !ready("poll_enforce") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let anchor = HostAnchor::start();
    let escape = format!("nsenter --mount=/proc/{}/ns/mnt -- sleep 60", anchor.pid());
    let c = Container::run_named(
        "dcea-trust-enforce",
        &["--privileged", "--pid=host"],
        &["sh", "-c", &escape_loop(&escape)],
    );
    let mut m = Monitor::start(&[
        "--mode",
        "poll",
        "--enforce",
        "--interval",
        "500ms",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    trigger(&c);
    let (alert, seen) = m.wait_for(Duration::from_secs(5), |a| a.rule() == ESCAPE_RULE);
    let alert = alert.unwrap_or_else(|| panic!("no escape alert: {seen:?}"));
    assert_eq!(alert.field("dcea.action"), "kill-process");
    assert!(alert.json["output"].as_str().unwrap().contains("found after the fact"), "{}", alert.raw);
    let pid = alert.field("proc.pid").as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Path::new(&format!("/proc/{pid}/ns")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z"), "escaped process {pid} still runs: {stat}");
    m.stop();
}
