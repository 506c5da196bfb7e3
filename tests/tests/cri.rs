//! Kubernetes pods on a real containerd (its CRI plugin, driven as kubelet drives it): the
//! alerts name the pod, its namespace and uid, the container and its image, and the runtime;
//! benign pod life raises nothing; a CRI socket that is missing, unreadable or answering
//! garbage costs the names, never the alerts. As root, with the real kernel programs.

use std::{
    io::Write,
    os::unix::{fs::PermissionsExt, net::UnixListener},
    path::Path,
    time::Duration,
};

use dcea_tests::{
    ESCAPE_RULE, HostAnchor, Monitor, Received,
    containerd::{Containerd, IMAGE, NAMESPACE, Pod, PodSpec},
};
use serde_json::json;

const CREDENTIAL_RULE: &str = "Credential file opened in a container";

fn monitor_for(socket: &Path) -> Monitor {
    Monitor::start(&["--cri-socket", &socket.to_string_lossy()])
}

fn wait_rule(m: &mut Monitor, rule: &str, id: &str, timeout: Duration) -> (Received, Vec<Received>) {
    let (hit, seen) = m.wait_for(timeout, |a| a.rule() == rule && a.field("container.id") == id);
    let hit = hit.unwrap_or_else(|| {
        panic!(
            "no '{rule}' alert for container {id} within {timeout:?}; alerts seen: {:#?}",
            seen.iter().map(|a| &a.raw).collect::<Vec<_>>()
        )
    });
    (hit, seen)
}

/// Every pod and container field the CRI gives, on one alert.
fn assert_pod_fields(a: &Received, pod: &Pod, container: &str) {
    let f = |k: &str| a.field(k).clone();
    assert_eq!(f("k8s.pod.name"), json!(pod.name), "{}", a.raw);
    assert_eq!(f("k8s.ns.name"), json!(NAMESPACE), "{}", a.raw);
    assert_eq!(f("k8s.pod.uid"), json!(pod.uid), "{}", a.raw);
    assert_eq!(f("k8s.pod.labels"), json!({"app": pod.name.split('-').next().unwrap()}), "{}", a.raw);
    assert_eq!(f("container.name"), json!(container), "{}", a.raw);
    assert_eq!(f("container.image"), json!(IMAGE), "{}", a.raw);
    assert_eq!(f("container.image.repository"), json!("docker.io/dcea-test/busybox"), "{}", a.raw);
    assert_eq!(f("container.image.tag"), json!("latest"), "{}", a.raw);
    assert!(f("container.image.digest").as_str().is_some_and(|d| d.starts_with("sha256:")), "{}", a.raw);
    assert_eq!(f("container.runtime"), json!("containerd"), "{}", a.raw);
    let text = a.json["output"].as_str().unwrap_or_default();
    if a.rule() == ESCAPE_RULE {
        assert!(text.contains(&format!("in pod {NAMESPACE}/{}", pod.name)), "{text}");
    }
}

#[test]
fn cri_privileged_host_pid_pod_nsenter_escape_names_the_pod() {
    let Some(mut cri) = Containerd::start("cri_host_pid_escape") else { return };
    let anchor = HostAnchor::start();
    let mut monitor = monitor_for(&cri.socket);
    let pod = cri.run_pod("escape", PodSpec { host_pid: true, privileged: true, ..Default::default() });
    let script = format!("sleep 3; nsenter --mount=/proc/{}/ns/mnt -- sh -c true; sleep 1", anchor.pid());
    let id = cri.run_container(&pod, "breakout", &script);
    let (a, _) = wait_rule(&mut monitor, ESCAPE_RULE, &id, Duration::from_secs(20));
    assert_eq!(cri.wait_exit(&id, Duration::from_secs(10)), 0, "{}", cri.log_tail());
    assert_pod_fields(&a, &pod, "breakout");
    assert_eq!(a.field("dcea.ns.entered_host"), &json!(["mnt"]), "{}", a.raw);
    assert_eq!(a.field("evt.type"), "setns");
    assert_eq!(a.field("container.privileged"), true, "{}", a.raw);
    monitor.stop();
}

#[test]
fn cri_default_pod_reading_etc_shadow_raises_the_credential_rule() {
    let Some(mut cri) = Containerd::start("cri_default_pod_shadow") else { return };
    let mut monitor = monitor_for(&cri.socket);
    let pod = cri.run_pod("shadow", PodSpec::default());
    let id = cri.run_container(&pod, "reader", "sleep 3; cat /etc/shadow >/dev/null; sleep 1");
    let (a, _) = wait_rule(&mut monitor, CREDENTIAL_RULE, &id, Duration::from_secs(20));
    assert_eq!(cri.wait_exit(&id, Duration::from_secs(10)), 0);
    assert_pod_fields(&a, &pod, "reader");
    assert_eq!(a.field("fd.name"), "/etc/shadow");
    assert_eq!(a.field("container.privileged"), false, "{}", a.raw);
    monitor.stop();
}

#[test]
fn cri_pod_start_exec_sync_and_stop_raise_nothing() {
    let Some(mut cri) = Containerd::start("cri_benign") else { return };
    let mut monitor = monitor_for(&cri.socket);
    let pod = cri.run_pod("benign", PodSpec::default());
    // Not a shell as the entrypoint: that is the shell rule's business.
    let id = cri.run_command(&pod, "app", &["/bin/sleep", "300"]);
    for i in 0..5 {
        let (code, out) = cri.exec_sync(&id, &["echo", &i.to_string()]);
        assert_eq!((code, out.trim()), (0, i.to_string().as_str()));
    }
    let host_pid = cri.run_pod("hostpid", PodSpec { host_pid: true, ..Default::default() });
    let other = cri.run_command(&host_pid, "app", &["/bin/sleep", "300"]);
    assert_eq!(cri.exec_sync(&other, &["true"]).0, 0);
    cri.stop_pod(&pod);
    cri.stop_pod(&host_pid);
    let alerts = monitor.collect(Duration::from_secs(2));
    let ours: Vec<&Received> = alerts
        .iter()
        .filter(|a| {
            [&id, &other, &pod.id, &host_pid.id].iter().any(|c| a.field("container.id") == c.as_str())
                || [&pod.name, &host_pid.name].iter().any(|p| a.field("k8s.pod.name") == p.as_str())
        })
        .collect();
    assert!(ours.is_empty(), "benign pod life alerted: {:#?}", ours.iter().map(|a| &a.raw).collect::<Vec<_>>());
    monitor.stop();
}

/// With dcea pointed at a bad socket: one message naming it, alerts with ids and no names.
fn ids_only_with_a_bad_socket(cri: &mut Containerd, bad: &Path, label: &str) -> Monitor {
    let mut monitor = monitor_for(bad);
    // Usually said before `ready` (the start-up read it already).
    let line = match monitor.stderr_lines.iter().find(|l| l.contains("not reachable")) {
        Some(l) => l.clone(),
        None => monitor.wait_stderr("not reachable", Duration::from_secs(10)),
    };
    assert!(line.contains(&bad.display().to_string()), "{label}: the message names the socket: {line}");
    let pod = cri.run_pod(label, PodSpec::default());
    let id = cri.run_container(&pod, "reader", "sleep 1; cat /etc/shadow >/dev/null");
    let (a, _) = wait_rule(&mut monitor, CREDENTIAL_RULE, &id, Duration::from_secs(20));
    assert_eq!(a.field("container.id"), id.as_str());
    assert_eq!(a.field("k8s.pod.name"), &serde_json::Value::Null, "{label}: {}", a.raw);
    // Retries (1 s, 2 s, 4 s…) have happened by now; none repeats the message.
    std::thread::sleep(Duration::from_secs(4));
    monitor
}

fn count_unreachable(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.contains("not reachable")).count()
}

#[test]
fn cri_socket_missing_unreadable_or_garbage_still_alerts_with_ids() {
    let Some(mut cri) = Containerd::start("cri_bad_socket") else { return };
    let dir = tempfile::tempdir().unwrap();

    // Missing, then appearing: the retry finds it and names pods again.
    let missing = dir.path().join("later.sock");
    let monitor = ids_only_with_a_bad_socket(&mut cri, &missing, "missing");
    std::os::unix::fs::symlink(&cri.socket, &missing).unwrap();
    let mut monitor = monitor;
    monitor.wait_stderr("answers again", Duration::from_secs(40));
    let pod = cri.run_pod("missing", PodSpec::default());
    let id = cri.run_container(&pod, "reader", "sleep 3; cat /etc/shadow >/dev/null");
    let (a, _) = wait_rule(&mut monitor, CREDENTIAL_RULE, &id, Duration::from_secs(20));
    assert_eq!(a.field("k8s.pod.name"), pod.name.as_str(), "names resume once the runtime answers: {}", a.raw);
    let lines = monitor.stop();
    assert_eq!(count_unreachable(&lines), 1, "said once: {lines:#?}");

    // Unreadable: a stale socket file (nobody listens), mode 000.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o000)).unwrap();
    let monitor = ids_only_with_a_bad_socket(&mut cri, &stale, "stale");
    let lines = monitor.stop();
    assert_eq!(count_unreachable(&lines), 1, "said once: {lines:#?}");

    // Garbage: something that is not gRPC answers on the socket.
    let garbage = dir.path().join("garbage.sock");
    let listener = UnixListener::bind(&garbage).unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n\x00\xff\xfe not a CRI runtime \x01\x02\x03");
        }
    });
    let monitor = ids_only_with_a_bad_socket(&mut cri, &garbage, "garbage");
    let lines = monitor.stop();
    assert_eq!(count_unreachable(&lines), 1, "said once: {lines:#?}");
}

#[test]
fn cri_runtime_started_after_the_agent_is_discovered_at_its_well_known_path() {
    let Some(mut cri) = Containerd::start("cri_socket_appears") else { return };
    // The agent in a mount namespace of its own whose /run is empty: no runtime at any
    // well-known path until the test puts one there (the host's /run is never touched).
    let mut cmd = std::process::Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs dcea-test-run /run && exec \"$0\" monitor",
    ])
    .arg(dcea_tests::dcea_bin());
    let mut monitor = Monitor::spawn(cmd);
    assert!(
        monitor.stderr_lines.iter().any(|l| l.contains("no CRI runtime socket found")),
        "nothing to follow at start: {:#?}",
        monitor.stderr_lines
    );
    let pod = cri.run_pod("before", PodSpec::default());
    let id = cri.run_container(&pod, "reader", "sleep 1; cat /etc/shadow >/dev/null");
    let (a, _) = wait_rule(&mut monitor, CREDENTIAL_RULE, &id, Duration::from_secs(20));
    assert_eq!(a.field("k8s.pod.name"), &serde_json::Value::Null, "no runtime known yet: {}", a.raw);

    // k3s's socket appears, as when the runtime starts after the agent on a booting node.
    let link =
        format!("mkdir -p /run/k3s/containerd && ln -s {} /run/k3s/containerd/containerd.sock", cri.socket.display());
    let st = std::process::Command::new("nsenter")
        .args(["-t", &monitor.pid().to_string(), "-m", "--", "sh", "-c", &link])
        .status()
        .expect("nsenter");
    assert!(st.success(), "placing the socket in the agent's /run");
    let line = monitor.wait_stderr("appeared", Duration::from_secs(15));
    assert!(line.contains("/run/k3s/containerd/containerd.sock"), "{line}");
    let pod = cri.run_pod("after", PodSpec::default());
    let id = cri.run_container(&pod, "reader", "sleep 3; cat /etc/shadow >/dev/null");
    let (a, _) = wait_rule(&mut monitor, CREDENTIAL_RULE, &id, Duration::from_secs(20));
    assert_pod_fields(&a, &pod, "reader");
    monitor.stop();
}

/// Writes containerd's real answers as JSON into $DCEA_CRI_RECORD (the fixtures of
/// dcea-user/src/container/cri/testdata were made with it). Run by hand: `--ignored`.
#[test]
#[ignore]
fn record_containerd_answers() {
    let Some(out) = std::env::var_os("DCEA_CRI_RECORD") else { return };
    let Some(mut cri) = Containerd::start("record_containerd_answers") else { return };
    let pod = cri.run_pod("web", PodSpec { host_pid: true, privileged: true, ..Default::default() });
    let id = cri.run_container(&pod, "app", "sleep 60");
    let mut c = cri.client();
    use k8s_cri::v1 as api;
    let save = |name: &str, v: serde_json::Value| {
        std::fs::write(Path::new(&out).join(name), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    };
    let r = cri.block_on(c.version(api::VersionRequest { version: "v1".into() })).unwrap().into_inner();
    save("containerd-version.json", serde_json::to_value(&r).unwrap());
    let r = cri.block_on(c.list_containers(api::ListContainersRequest { filter: None })).unwrap().into_inner();
    save("containerd-list-containers.json", serde_json::to_value(&r).unwrap());
    let r = cri.block_on(c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None })).unwrap().into_inner();
    save("containerd-list-pod-sandbox.json", serde_json::to_value(&r).unwrap());
    let r = cri
        .block_on(c.container_status(api::ContainerStatusRequest { container_id: id.clone(), verbose: true }))
        .unwrap()
        .into_inner();
    save("containerd-container-status.json", serde_json::to_value(&r).unwrap());
    let r = cri
        .block_on(c.pod_sandbox_status(api::PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: false }))
        .unwrap()
        .into_inner();
    save("containerd-pod-sandbox-status.json", serde_json::to_value(&r).unwrap());
    let e = cri.block_on(c.get_container_events(api::GetEventsRequest {}));
    save("containerd-events.json", json!({"code": e.err().map(|s| format!("{:?}", s.code()))}));
}

#[test]
fn cri_trust_table_knows_pods_and_what_they_share_by_design() {
    let Some(mut cri) = Containerd::start("cri_trust_table") else { return };
    let host_pid = cri.run_pod("hostpid", PodSpec { host_pid: true, ..Default::default() });
    let a = cri.run_command(&host_pid, "app", &["/bin/sleep", "300"]);
    let plain = cri.run_pod("plain", PodSpec::default());
    let b = cri.run_command(&plain, "app", &["/bin/sleep", "300"]);
    let state = tempfile::tempdir().unwrap();
    let dcea = |args: &[&str]| {
        let out = std::process::Command::new(dcea_tests::dcea_bin())
            .args(args)
            .args(["--state-dir", &state.path().to_string_lossy()])
            .output()
            .expect("dcea");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = dcea(&["trust", "verify", "--cri-socket", &cri.socket.to_string_lossy()]);
    assert!(code == Some(0) || code == Some(1), "trust verify: {err}");
    let (_, json, err) = dcea(&["trust", "show", "--format", "json"]);
    let table: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json} {err}"));
    let rec = |id: &str| table["containers"][id].clone();
    let (ra, rb) = (rec(&a), rec(&b));
    assert_eq!(ra["pod"]["name"], host_pid.name.as_str(), "{ra}");
    assert_eq!(ra["pod"]["namespace"], NAMESPACE);
    assert_eq!(ra["pod"]["uid"], host_pid.uid.as_str());
    assert_eq!(ra["runtime"], "containerd");
    assert_eq!(ra["name"], "app");
    let shares = |r: &serde_json::Value| -> Vec<String> {
        r["shares_host"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    // hostNetwork (both pods, no CNI here) shares net and uts; hostPID adds pid.
    assert!(["net", "uts", "pid"].iter().all(|k| shares(&ra).iter().any(|s| s == k)), "{ra}");
    assert!(["net", "uts"].iter().all(|k| shares(&rb).iter().any(|s| s == k)), "{rb}");
    assert!(!shares(&rb).iter().any(|s| s == "pid"), "a default pod has its own pid namespace: {rb}");
    assert_eq!(rb["pod"]["name"], plain.name.as_str());
    let (_, text, _) = dcea(&["trust", "show", "--container", &format!("{NAMESPACE}/{}", plain.name)]);
    assert!(text.contains(&format!("pod {NAMESPACE}/{} (uid {})", plain.name, plain.uid)), "{text}");
    assert!(text.contains(&b) && !text.contains(&a), "filtered by pod: {text}");
}

#[test]
fn cri_scan_config_names_pods_and_reads_what_the_runtime_declared() {
    let Some(mut cri) = Containerd::start("cri_scan_config") else { return };
    let pod = cri.run_pod("scan", PodSpec { host_pid: true, privileged: true, ..Default::default() });
    let id = cri.run_with_mounts(&pod, "app", &["/bin/sleep", "300"], &[("/etc", "/host-etc", false)]);
    let plain = cri.run_pod("scanplain", PodSpec::default());
    let other = cri.run_command(&plain, "app", &["/bin/sleep", "300"]);
    let name = format!("{NAMESPACE}/{}/app", pod.name);
    let out = std::process::Command::new(dcea_tests::dcea_bin())
        .args([
            "scan",
            "config",
            "--format",
            "json",
            "--cri-socket",
            &cri.socket.to_string_lossy(),
            "--container",
            &name,
        ])
        .output()
        .expect("dcea scan config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let targets = report["target"]["containers"].as_array().expect("containers");
    assert_eq!(targets.len(), 1, "selected by namespace/pod/container: {targets:#?}");
    let t = &targets[0];
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["runtime"], "containerd");
    assert_eq!(t["pod"], format!("{NAMESPACE}/{}", pod.name).as_str());
    assert_eq!(t["image"], IMAGE);
    assert_eq!(t["declared"]["privileged"], true, "{t}");
    let node_ns: Vec<&str> =
        t["declared"]["node_namespaces"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(node_ns.contains(&"pid") && node_ns.contains(&"net"), "{t}");
    assert!(t["declared"]["capabilities"].as_array().unwrap().iter().any(|c| c == "CAP_SYS_ADMIN"), "{t}");
    let ids: Vec<&str> = report["findings"].as_array().unwrap().iter().filter_map(|f| f["id"].as_str()).collect();
    assert!(ids.contains(&"DCEA-CFG-CRI-HOSTPATH"), "{ids:?}");
    let hostpath = report["findings"].as_array().unwrap().iter().find(|f| f["id"] == "DCEA-CFG-CRI-HOSTPATH").unwrap();
    assert_eq!(hostpath["subject"]["name"], name.as_str());
    assert_eq!(hostpath["severity"], "high");
    // The /proc checks see the same container as privileged, from its capabilities.
    assert!(ids.iter().any(|i| i.contains("PRIVILEGED")), "{ids:?}");
    assert!(!stdout.contains(&other), "only the selected container");
}

/// kill-container on a Kubernetes node: the pod's container dies at the hook, the kernel
/// condemns its cgroup, and the agent stops it through the CRI runtime, so the runtime (and a
/// kubelet) knows why it stopped. The device node it tried is not left behind where the LSM
/// refuses it; here (kill at the hook alone) the test asserts the kill and the stop.
#[test]
fn cri_kill_container_stops_the_pod_container_through_the_runtime() {
    let Some(mut cri) = Containerd::start("cri_kill_container") else { return };
    let state = tempfile::tempdir().expect("state dir");
    let mut monitor = Monitor::start(&[
        "--cri-socket",
        &cri.socket.to_string_lossy(),
        "--enforce",
        "--storm-window",
        "0s",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let pod = cri.run_pod("condemned", PodSpec { privileged: true, ..Default::default() });
    let id = cri.run_container(&pod, "mknod", "sleep 3; mknod /tmp/sda b 8 0; echo survived; sleep 30");
    let (a, _) = wait_rule(&mut monitor, "Device node created in a container", &id, Duration::from_secs(20));
    assert_eq!(a.field("dcea.action"), "kill-container", "{}", a.raw);
    assert_eq!(cri.wait_exit(&id, Duration::from_secs(10)), 137, "{}", cri.log_tail());
    let stderr = monitor.stop().join("\n");
    assert!(
        stderr
            .contains(&format!("condemned container {id} stopped through the CRI runtime at {}", cri.socket.display())),
        "{stderr}"
    );
    cri.stop_pod(&pod);
}
