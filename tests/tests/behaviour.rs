//! The behaviour hooks and rules without a container engine, so that they run on every kernel
//! of the matrix (`cargo xtask vm-test`) as well as on the host.
//!
//! The "container" is a cgroup whose leaf name carries a 64-hex-digit id, the way runtimes
//! name theirs (`docker-<id>.scope`): a process moves itself there between fork and exec, and
//! the kernel program at exec recognises it as containerised, exactly as it recognises a
//! `--pid=host --net=host` container. Each behaviour is done for real by that process, and the
//! same behaviour by a host process is the negative.

use std::{fs, path::Path, process::Command, time::Duration};

use dcea_tests::{FakeContainer, HostAnchor, Monitor, Received, helper_bin, require_root};

fn run_on_host(program: &Path, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(out.status.success(), "{} {args:?} on the host: {}", program.display(), out.status);
}

/// The first alert of `rule` about container `id` within 5 s; every other alert read before
/// it goes to `log`.
fn expect_rule(monitor: &mut Monitor, log: &mut Vec<Received>, rule: &str, id: &str) -> Received {
    let (hit, seen) = monitor.wait_for(Duration::from_secs(5), |a| a.rule() == rule && a.field("container.id") == id);
    log.extend(seen);
    hit.unwrap_or_else(|| {
        panic!("no '{rule}' alert for container {id}; got {:#?}", log.iter().map(|a| &a.raw).collect::<Vec<_>>())
    })
}

/// Opens, a runtime socket, ptrace, bpf and mknod done in the fake container raise their
/// rules with the file the kernel resolved; the same opens on the host raise nothing.
#[test]
fn behaviour_rules_fire_in_a_fake_container() {
    const TEST: &str = "behaviour_rules_fire_in_a_fake_container";
    if !require_root(TEST) {
        return;
    }
    let Some(container) = FakeContainer::create(TEST) else { return };
    let id = container.id.clone();
    let helper = helper_bin();
    let scratch = tempfile::tempdir().expect("tempdir");
    // The matrix guests boot an initramfs without an /etc/shadow.
    if !Path::new("/etc/shadow").exists() {
        fs::write("/etc/shadow", "root:*:19000:0:99999:7:::\n").expect("create /etc/shadow");
    }
    let mut monitor = Monitor::start(&[]);
    let mut log = Vec::new();

    // Negative first: a host process reading /etc/shadow is not a container.
    run_on_host(&helper, &["open", "/etc/shadow", "read"]);

    // A relative path through a symlink: the kernel judges the file it opened.
    let link = scratch.path().join("innocent");
    std::os::unix::fs::symlink("/etc/shadow", &link).expect("symlink");
    container.run(&helper, &["open", link.to_str().unwrap(), "read"]);
    let alert = expect_rule(&mut monitor, &mut log, "Credential file opened in a container", &id);
    assert_eq!(alert.field("fd.name"), "/etc/shadow", "{}", alert.raw);
    assert_eq!(alert.field("proc.name"), "dcea-test-helpe", "{}", alert.raw);

    // The path walk crosses the procfs mount: /proc/sys/kernel/core_pattern comes out whole.
    // Opened for writing, nothing written.
    container.run(&helper, &["open", "/proc/sys/kernel/core_pattern", "write"]);
    let alert = expect_rule(&mut monitor, &mut log, "Kernel core_pattern written", &id);
    assert_eq!(alert.field("fd.name"), "/proc/sys/kernel/core_pattern", "{}", alert.raw);

    // A socket named like Docker's.
    let socket = scratch.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    container.run(&helper, &["connect-unix", socket.to_str().unwrap()]);
    drop(listener);
    let alert = expect_rule(&mut monitor, &mut log, "Container runtime socket connected from a container", &id);
    assert_eq!(alert.field("fd.name"), socket.to_str().unwrap(), "{}", alert.raw);

    // ptrace of a host process.
    let anchor = HostAnchor::start();
    container.run(&helper, &["ptrace-attach", &anchor.pid().to_string()]);
    let alert = expect_rule(&mut monitor, &mut log, "Process outside the container traced", &id);
    assert_eq!(alert.field("evt.arg.pid"), u64::from(anchor.pid()), "{}", alert.raw);

    container.run(&helper, &["bpf-prog-load"]);
    expect_rule(&mut monitor, &mut log, "BPF syscall from a container", &id);

    let node = scratch.path().join("sda");
    container.run(Path::new("/bin/mknod"), &[node.to_str().unwrap(), "b", "8", "0"]);
    let alert = expect_rule(&mut monitor, &mut log, "Device node created in a container", &id);
    assert_eq!(alert.field("fd.name"), node.to_str().unwrap(), "{}", alert.raw);

    log.extend(monitor.collect(Duration::from_millis(500)));
    let stopped = monitor.stop().join("\n");
    assert!(stopped.contains("0 decode errors"), "{stopped}");
    let host_shadow: Vec<&Received> = log
        .iter()
        .filter(|a| a.rule() == "Credential file opened in a container" && a.field("container.id") != id.as_str())
        .collect();
    assert!(host_shadow.is_empty(), "a host process is not a container: {host_shadow:#?}");
}

/// Whether the agent's BPF LSM programs load and attach here (`dcea probe --enforce`); prints
/// SKIP with the probe's reason when they do not (a kernel without the BPF LSM among its
/// active LSMs, or one that refuses LSM programs, as the development host does).
fn bpf_lsm_active(test: &str) -> bool {
    let out = Command::new(dcea_tests::dcea_bin())
        .args(["probe", "--enforce", "--format", "json"])
        .output()
        .expect("run dcea probe");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let lsm: Vec<&serde_json::Value> = report["programs"]
        .as_array()
        .map(|p| p.iter().filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("lsm_"))).collect())
        .unwrap_or_default();
    if !lsm.is_empty() && lsm.iter().all(|p| p["status"] == "attached") {
        return true;
    }
    let why = lsm.first().map(|p| p["detail"].as_str().unwrap_or("").to_string()).unwrap_or_default();
    dcea_tests::skip(test, dcea_tests::Need::Kernel, &format!("the BPF LSM programs do not attach here: {why}"));
    false
}

/// The operations a kill at a syscall-entry hook cannot stop (the signal lands when the
/// syscall returns) never happen where the BPF LSM runs: the device node is not created, the
/// mount does not exist, the runtime socket never sees a connection, the host process is never
/// attached, and the module image is refused; the task is still killed.
#[test]
fn lsm_deny_refuses_guarded_operations_in_a_fake_container() {
    const TEST: &str = "lsm_deny_refuses_guarded_operations_in_a_fake_container";
    if !require_root(TEST) || !bpf_lsm_active(TEST) {
        return;
    }
    let Some(container) = FakeContainer::create(TEST) else { return };
    let id = container.id.clone();
    let helper = helper_bin();
    let scratch = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("state dir");
    // kill-process: the fake container must outlive each case (kill-container would condemn it).
    // A guard acts with the strongest action of its rules: every rule of a guard is overridden.
    let rules = [
        "Memory of a process outside the container written",
        "Device node created in a container",
        "Kernel pseudo-filesystem mounted in a container",
        "Container runtime socket connected from a container",
        "Kernel module loaded from a container",
        "Process outside the container traced",
        "dcea agent signalled from a container",
    ];
    let overrides: Vec<String> = rules.iter().map(|r| format!("{r}=kill-process")).collect();
    let mut args = vec!["--enforce", "--storm-window", "0s", "--state-dir", state.path().to_str().unwrap()];
    for o in &overrides {
        args.extend(["--action", o.as_str()]);
    }
    let mut monitor = Monitor::start(&args);
    let mut log = Vec::new();
    let denied = |alert: &Received| {
        assert_eq!(alert.field("dcea.action"), "kill-process", "{}", alert.raw);
        assert_eq!(alert.field("dcea.enforced_at"), "kernel hook; refused by the BPF LSM", "{}", alert.raw);
    };

    let node = scratch.path().join("sda");
    let out = container.try_run(Path::new("/bin/mknod"), &[node.to_str().unwrap(), "b", "8", "0"]);
    denied(&expect_rule(&mut monitor, &mut log, "Device node created in a container", &id));
    assert!(!out.status.success() && !node.exists(), "mknod went through: {out:?}");

    let target = scratch.path().join("sys");
    fs::create_dir(&target).expect("mkdir");
    let out = container.try_run(Path::new("/bin/mount"), &["-t", "sysfs", "sysfs", target.to_str().unwrap()]);
    let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains(target.to_str().unwrap());
    if mounted {
        let _ = Command::new("umount").arg(&target).status();
    }
    denied(&expect_rule(&mut monitor, &mut log, "Kernel pseudo-filesystem mounted in a container", &id));
    assert!(!out.status.success() && !mounted, "the sysfs mount went through: {out:?}");

    let socket = scratch.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let out = container.try_run(&helper, &["connect-unix", socket.to_str().unwrap()]);
    denied(&expect_rule(&mut monitor, &mut log, "Container runtime socket connected from a container", &id));
    let accepted = listener.accept();
    assert!(
        !out.status.success() && accepted.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "the runtime socket saw a connection: {out:?} {accepted:?}"
    );

    // In a mount namespace of its own: outside the host's, so the host process is outside.
    let anchor = HostAnchor::start();
    let out = container.try_run(
        Path::new("/usr/bin/unshare"),
        &["-m", helper.to_str().unwrap(), "ptrace-attach", &anchor.pid().to_string()],
    );
    denied(&expect_rule(&mut monitor, &mut log, "Process outside the container traced", &id));
    let tracer = fs::read_to_string(format!("/proc/{}/status", anchor.pid())).unwrap_or_default();
    assert!(!out.status.success() && tracer.contains("TracerPid:\t0"), "the attach went through: {out:?}\n{tracer}");
    let state_line = tracer.lines().find(|l| l.starts_with("State:")).unwrap_or("");
    assert!(!state_line.contains("stopped"), "the host process was stopped: {state_line}");

    let image = scratch.path().join("m.ko");
    fs::write(&image, b"notamodule").expect("write module image");
    let out = container.try_run(&helper, &["finit-module", image.to_str().unwrap()]);
    denied(&expect_rule(&mut monitor, &mut log, "Kernel module loaded from a container", &id));
    assert!(!out.status.success(), "{out:?}");

    // The sentinel reports it: the record goes to its ring, and its alert to the same stdout.
    let agent = monitor.pid();
    let out = container.try_run(Path::new("/bin/sh"), &["-c", &format!("kill -STOP {agent}")]);
    let alert = expect_rule(&mut monitor, &mut log, "dcea agent signalled from a container", &id);
    denied(&alert);
    assert_eq!(alert.field("dcea.reported_by"), "sentinel", "{}", alert.raw);
    let status = fs::read_to_string(format!("/proc/{agent}/status")).unwrap_or_default();
    let state_line = status.lines().find(|l| l.starts_with("State:")).unwrap_or("");
    assert!(!out.status.success() && !state_line.contains("stopped"), "the agent was stopped: {out:?} {state_line}");

    log.extend(monitor.collect(Duration::from_millis(500)));
    let stopped = monitor.stop().join("\n");
    let denials = stopped
        .split_once(" denied by the BPF LSM")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(denials.is_some_and(|n| n >= 6), "six operations refused in the kernel: {stopped}");
}
