//! Deployment as users run it: the Kubernetes manifests (typed, kustomized), the image run as
//! the DaemonSet would run it, the systemd unit (verified, and its sandbox emulated around a
//! running agent), and `cargo xtask install`.

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use dcea_tests::{
    ESCAPE_RULE, HostAnchor, Monitor, Need,
    docker::{self, Container},
    k8s::{self, Object},
    require_root, skip,
    skip::require_program,
    systemd, workspace_root,
};

fn kube_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifests `kustomization.yaml` lists, parsed one file at a time.
fn source_objects() -> Vec<Object> {
    let kustomization = read(&kube_dir().join("kustomization.yaml"));
    let k: serde_json::Value = serde_yaml::from_str(&kustomization).expect("kustomization.yaml");
    k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|r| {
            let name = r.as_str().expect("resource path");
            k8s::parse(name, &read(&kube_dir().join(name)))
        })
        .collect()
}

/// The DaemonSet's capabilities; the unit's bounding set also names BPF and PERFMON (implied
/// by SYS_ADMIN).
const CAPABILITIES: [&str; 5] = ["SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE", "DAC_READ_SEARCH", "KILL"];

#[test]
fn manifests_are_typed_and_hardened() {
    let objects = source_objects();
    let ds = objects
        .iter()
        .find_map(|o| match o {
            Object::DaemonSet(d) => Some(d.as_ref()),
            _ => None,
        })
        .expect("a DaemonSet");
    let sa = objects
        .iter()
        .find_map(|o| match o {
            Object::ServiceAccount(s) => Some(s),
            _ => None,
        })
        .expect("a ServiceAccount");
    assert!(objects.iter().any(|o| matches!(o, Object::Namespace(_))), "a Namespace");
    assert_eq!(sa.automount_service_account_token, Some(false), "no API token: dcea does not call the API server");

    let spec = ds.spec.as_ref().unwrap();
    let strategy = spec.update_strategy.as_ref().expect("updateStrategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pod = k8s::pod_spec(ds);
    assert_eq!(pod.host_pid, Some(true), "dcea refuses to run outside the host PID namespace");
    assert_eq!(pod.host_network, Some(true), "/healthz on the node's loopback");
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-node-critical"));
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert_eq!(pod.automount_service_account_token, Some(false));
    let tolerations = pod.tolerations.as_ref().expect("tolerations");
    assert!(
        tolerations.iter().any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none()),
        "a toleration of every taint: {tolerations:?}"
    );
    assert!(pod.termination_grace_period_seconds.unwrap_or(30) >= 30, "time to save the trust table");

    let c = k8s::agent_container(ds);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(c.image.as_deref(), Some(format!("dcea:{version}").as_str()), "the image cargo xtask image builds");
    let sc = c.security_context.as_ref().expect("securityContext");
    assert_ne!(sc.privileged, Some(true), "the capability set, not privileged");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_user, Some(0));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(added, CAPABILITIES.into_iter().collect(), "exactly the documented capability set");
    // Each capability has its comment in the manifest.
    let text = read(&kube_dir().join("daemonset.yaml"));
    for cap in CAPABILITIES {
        let line = text.lines().position(|l| l.trim() == format!("- {cap}")).expect("capability line");
        let above = text.lines().nth(line - 1).unwrap().trim();
        assert!(above.starts_with('#'), "capability {cap} has no comment above it");
    }

    // Mounts: read-only except the state dir, bpffs and the cgroup tree (--enforce writes
    // cgroup.kill); the state dir is where dcea.yaml says.
    let volumes = pod.volumes.as_ref().expect("volumes");
    let host_path = |name: &str| {
        volumes.iter().find(|v| v.name == name).and_then(|v| v.host_path.as_ref()).map(|h| h.path.as_str())
    };
    let mut writable = BTreeSet::new();
    let mut mounted = BTreeSet::new();
    for m in c.volume_mounts.iter().flatten() {
        mounted.insert(m.mount_path.as_str());
        if m.read_only != Some(true) {
            writable.insert(m.mount_path.as_str());
        }
        if let Some(hp) = host_path(&m.name) {
            assert_eq!(hp, m.mount_path, "host paths are mounted where the host has them");
        }
    }
    assert_eq!(writable, ["/sys/fs/bpf", "/sys/fs/cgroup", "/var/lib/dcea"].into_iter().collect());
    for want in
        ["/sys/kernel", "/sys/fs/bpf", "/sys/fs/cgroup", "/etc/os-release", "/run", "/var/lib/dcea", "/etc/dcea"]
    {
        assert!(mounted.contains(want), "{want} is not mounted: {mounted:?}");
    }
    let config = read(&kube_dir().join("config/dcea.yaml"));
    assert_eq!(dcea_user::config::check_text("config/dcea.yaml", &config).map(|_| ()), Ok(()));
    assert!(config.contains("state_dir: /var/lib/dcea\n") && config.contains("format: json\n"), "{config}");
    assert_eq!(c.args.as_deref(), Some(&["monitor".into(), "--config".into(), "/etc/dcea/dcea.yaml".into()][..]));
    let rules = read(&kube_dir().join("config/local_rules.yaml"));
    let set = dcea_user::rules::RuleSet::from_sources(vec![dcea_user::rules::Source {
        name: "local_rules.yaml".into(),
        text: rules,
    }]);
    assert!(set.is_ok(), "local_rules.yaml: {:?}", set.err().map(|e| e.to_string()));

    // Probes on /healthz at the node's loopback, the start-up one patient enough for loading.
    for (name, probe) in
        [("startup", &c.startup_probe), ("readiness", &c.readiness_probe), ("liveness", &c.liveness_probe)]
    {
        let probe = probe.as_ref().unwrap_or_else(|| panic!("{name} probe"));
        let get = probe.http_get.as_ref().unwrap_or_else(|| panic!("{name} probe is not httpGet"));
        assert_eq!((get.host.as_deref(), get.path.as_deref()), (Some("127.0.0.1"), Some("/healthz")), "{name}");
        assert_eq!(get.port, k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9376), "{name}");
    }
    let startup = c.startup_probe.as_ref().unwrap();
    assert!(startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3) >= 60);
    let metrics = c.env.iter().flatten().find(|e| e.name == "DCEA_METRICS_ADDR").expect("DCEA_METRICS_ADDR");
    assert_eq!(metrics.value.as_deref(), Some("127.0.0.1:9376"));

    let resources = c.resources.as_ref().expect("resources");
    let requests = resources.requests.as_ref().expect("requests");
    let limits = resources.limits.as_ref().expect("limits");
    assert!(requests.contains_key("cpu") && requests.contains_key("memory") && limits.contains_key("memory"));
    assert!(k8s::memory_bytes(&limits["memory"].0) > k8s::memory_bytes(&requests["memory"].0));
}

#[test]
fn kustomize_builds_the_set() {
    if !require_program("kustomize_builds_the_set", "kubectl", "kubernetes-client") {
        return;
    }
    let objects = k8s::parse("kubectl kustomize", &k8s::kustomize(&kube_dir()));
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| match o {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::DaemonSet(_) => "DaemonSet",
        })
        .collect();
    assert_eq!(kinds, ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"].into_iter().collect());
    let (ds, cm) = k8s::daemonset_and_config(&objects);
    assert_eq!(ds.metadata.namespace.as_deref(), Some("dcea"));
    assert_eq!(cm.metadata.namespace.as_deref(), Some("dcea"));
    // The generated ConfigMap's name carries a hash of its content, and the DaemonSet follows it.
    let name = cm.metadata.name.clone().unwrap();
    assert!(name.starts_with("dcea-") && name.len() > "dcea-".len(), "{name}");
    let volume = k8s::pod_spec(ds).volumes.iter().flatten().find_map(|v| v.config_map.as_ref()).expect("config volume");
    assert_eq!(volume.name, name);
    let data = cm.data.as_ref().unwrap();
    assert_eq!(data["dcea.yaml"], read(&kube_dir().join("config/dcea.yaml")));
    assert!(data.contains_key("local_rules.yaml"));
}

/// The image, run with exactly the DaemonSet's security context, host namespaces and mounts,
/// sees an escape from another container and names it.
#[test]
fn image_runs_as_the_daemonset_runs_it() {
    const T: &str = "image_runs_as_the_daemonset_runs_it";
    if !require_root(T) || !docker::available(T) || !require_program(T, "kubectl", "kubernetes-client") {
        return;
    }
    let context = workspace_root().join("target/image");
    if !context.join("rootfs/usr/bin/dcea").is_file() {
        skip(T, Need::Package, "no image context: run `cargo xtask image` (or `cargo xtask image --context-only`)");
        return;
    }
    let objects = k8s::parse("kubectl kustomize", &k8s::kustomize(&kube_dir()));
    let (ds, cm) = k8s::daemonset_and_config(&objects);
    let image = k8s::agent_container(ds).image.clone().unwrap();
    let built = Instant::now();
    docker::docker(&["build", "--quiet", "--tag", &image, context.to_str().unwrap()]);
    eprintln!("deploy: built {image} in {:.1} s", built.elapsed().as_secs_f64());
    let size: u64 = docker::docker(&["image", "inspect", "--format", "{{.Size}}", &image]).parse().unwrap();
    eprintln!("deploy: image size {:.1} MB", size as f64 / 1e6);

    // The node's /var/lib/dcea is shared with every other agent on this machine: the test's
    // own directory plays it.
    let scratch = tempfile::Builder::new().prefix("dcea-deploy-").tempdir_in("/var/lib").expect("tempdir");
    let state = scratch.path().join("state");
    let state_for = state.clone();
    let host_path = move |p: &str| if p == "/var/lib/dcea" { state_for.clone() } else { PathBuf::from(p) };
    let run = k8s::docker_run(ds, cm, &host_path, scratch.path());
    let name = docker::unique_name("dcea-agent");
    let _agent = Container { id: name.clone() };
    let anchor = HostAnchor::start();
    let mut cmd = Command::new("docker");
    // The sandbox's PID 1 hides its namespaces: the test's own host process is the reference
    // (on a node, PID 1 is).
    cmd.args(["run", "--name", &name, "--env", &format!("DCEA_HOST_NS_PID={}", anchor.pid())]).args(&run.args);
    eprintln!("deploy: {cmd:?}");
    let started = Instant::now();
    let mut agent = Monitor::spawn(cmd);
    eprintln!("deploy: container start to ready: {:.2} s", started.elapsed().as_secs_f64());
    // What the kubelet's probes ask, where the manifest points them (host network, loopback).
    let probe = k8s::agent_container(ds).liveness_probe.as_ref().and_then(|p| p.http_get.clone()).expect("probe");
    let port = match probe.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => p,
        other => panic!("probe port {other:?}"),
    };
    let base = format!("http://127.0.0.1:{port}");
    let health = reqwest::blocking::get(format!("{base}/healthz")).unwrap_or_else(|e| panic!("{base}/healthz: {e}"));
    assert_eq!(health.status(), 200, "the probes see a healthy agent");
    let metrics = reqwest::blocking::get(format!("{base}/metrics")).and_then(|r| r.text()).expect("/metrics");
    assert!(metrics.contains("dcea_programs_attached"), "metrics served from the image: {metrics}");

    let victim = docker::unique_name("dcea-victim");
    let script = format!("sleep 1; nsenter --mount=/proc/{}/ns/mnt -- sh -c true; sleep 1", anchor.pid());
    let c = Container::run(&["--name", &victim, "--privileged", "--pid=host"], &["sh", "-c", &script]);
    let (alert, _) = agent
        .wait_for(Duration::from_secs(20), |a| a.rule() == ESCAPE_RULE && a.field("container.id") == c.id.as_str());
    let alert =
        alert.unwrap_or_else(|| panic!("no escape alert for {victim} on the agent's stdout: {:?}", agent.stderr_lines));
    assert_eq!(alert.field("container.name"), victim.as_str(), "named through the mounted runtime socket");
    assert_eq!(alert.field("container.runtime"), "docker");
    assert_eq!(alert.field("proc.name"), "nsenter");
    assert_eq!(alert.field("dcea.detected_by"), "ebpf");
    assert_eq!(c.wait(), 0);

    // Stopping as the kubelet does (SIGTERM, then the grace period) saves the trust table.
    let stopped = Instant::now();
    docker::docker(&["stop", "--time", &run.stop_timeout_secs.to_string(), &name]);
    let took = stopped.elapsed();
    let lines = agent.stop();
    assert!(lines.iter().any(|l| l.contains("dcea: stopping")), "no stop summary: {lines:?}");
    assert!(took < Duration::from_secs(run.stop_timeout_secs as u64), "stop took {took:?}");
    let trust = state.join("trust.json");
    let mode = std::fs::metadata(&trust).unwrap_or_else(|e| panic!("{}: {e}", trust.display())).permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    eprintln!("deploy: docker stop took {:.2} s", took.as_secs_f64());
}

fn unit() -> Vec<(String, String, String)> {
    systemd::parse_unit(&read(&workspace_root().join("deploy/systemd/dcea.service")))
}

#[test]
fn systemd_unit_verifies() {
    const T: &str = "systemd_unit_verifies";
    if !require_program(T, "systemd-analyze", "systemd") {
        return;
    }
    let u = unit();
    for (key, want) in [("Restart", "on-failure"), ("ExecReload", "/bin/kill -HUP $MAINPID"), ("UMask", "0077")] {
        assert_eq!(systemd::service_value(&u, key), Some(want), "{key}");
    }
    // systemd-analyze wants the ExecStart binary to exist: point it at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let text = read(&workspace_root().join("deploy/systemd/dcea.service"))
        .replace("/usr/local/bin/dcea", dcea_tests::dcea_bin().to_str().unwrap());
    let path = dir.path().join("dcea.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    // It does catch a bad directive (so its silence above means something).
    std::fs::write(&path, read(&path).replace("ProtectSystem=strict", "ProtectSystem=bogus")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"), "verify missed a bad value");
}

/// The agent inside the unit's sandbox, rebuilt with unshare/mount/setpriv: it starts, sees an
/// escape, reloads on SIGHUP, saves the trust table (mode 0600) on SIGTERM; the sandbox itself
/// is checked to be what the unit asks for.
#[test]
fn systemd_sandbox_keeps_the_agent_working() {
    const T: &str = "systemd_sandbox_keeps_the_agent_working";
    if !require_root(T) || !docker::available(T) || !require_program(T, "setpriv", "util-linux") {
        return;
    }
    let u = unit();
    // StateDirectory=dcea: the test's own directory in /var/lib (not /tmp: PrivateTmp hides it).
    let state = tempfile::Builder::new().prefix("dcea-unit-").tempdir_in("/var/lib").expect("tempdir");
    let state_dir = state.path().to_str().unwrap().to_string();

    // The sandbox is real: read-only system, hidden home and tmp, no new privileges, the
    // bounding set, the umask.
    let probe = "touch /usr/dcea-probe 2>/dev/null && echo usr-writable; [ -n \"$(ls -A /root /tmp 2>/dev/null | grep -v ':$')\" ] && echo home-or-tmp-visible; \
         touch \"$STATE/probe\" && echo state-writable; \
         grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status; umask; \
         awk '$5 == \"/sys\" || $5 == \"/proc/sys\" {print \"ro-check\", $5, $6}' /proc/self/mountinfo; \
         readlink /proc/self/ns/uts";
    let (script, not_applied) = systemd::sandbox_script(&u, &state_dir, &format!("sh -c {}", systemd::quote(probe)));
    let out = systemd::sandboxed(&script).env("STATE", &state_dir).output().expect("sandbox probe");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sandbox probe failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    assert!(!report.contains("usr-writable") && !report.contains("visible"), "{report}");
    assert!(
        report.contains("state-writable") && report.contains("NoNewPrivs:\t1") && report.contains("0077"),
        "{report}"
    );
    // ProtectHostname: a UTS namespace of its own.
    let host_uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
    assert!(report.contains("uts:[") && !report.contains(host_uts.to_str().unwrap()), "{report}");
    // ProtectKernelTunables: /sys and /proc/sys read-only.
    let ro: Vec<&str> = report.lines().filter(|l| l.starts_with("ro-check")).collect();
    assert!(ro.len() >= 2 && ro.iter().all(|l| l.ends_with(" ro") || l.contains(" ro,")), "{report}");
    let cap_bnd = report.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).expect("CapBnd");
    let mask = u64::from_str_radix(cap_bnd.trim(), 16).unwrap();
    // CAP_BPF 39, PERFMON 38, SYS_ADMIN 21, SYS_PTRACE 19, SYS_RESOURCE 24, DAC_READ_SEARCH 2, KILL 5.
    let allowed: u64 = [39, 38, 21, 19, 24, 2, 5].iter().map(|b| 1u64 << b).sum();
    assert_eq!(mask & !allowed, 0, "bounding set {cap_bnd} has more than the unit allows");
    eprintln!("deploy: not applied in the emulation: {not_applied:?}");

    // The unit's own command line; only the host reference differs: PID 1 is the sandbox's
    // init here, whose namespaces cannot be read (on a host it is systemd).
    let exec = systemd::service_value(&u, "ExecStart").expect("ExecStart");
    let anchor = HostAnchor::start();
    let mut words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    words[0] = dcea_tests::dcea_bin().to_string_lossy().into_owned();
    let pid1 = words.iter().position(|w| w == "--host-ns-pid").expect("the unit names the host reference");
    words[pid1 + 1] = anchor.pid().to_string();
    let config_at = words.iter().position(|w| w == "--config").expect("--config");
    let config = state.path().join("dcea.yaml");
    std::fs::write(&config, format!("state_dir: {state_dir}\n")).unwrap();
    words[config_at + 1] = config.to_string_lossy().into_owned();
    let command: Vec<String> = words.iter().map(|w| systemd::quote(w)).collect();
    let (script, _) = systemd::sandbox_script(&u, &state_dir, &command.join(" "));
    let mut agent = Monitor::spawn(systemd::sandboxed(&script));

    let script = format!("sleep 1; nsenter --mount=/proc/{}/ns/mnt -- sh -c true; sleep 1", anchor.pid());
    let c = Container::run(&["--privileged", "--pid=host"], &["sh", "-c", &script]);
    let (alert, _) = agent
        .wait_for(Duration::from_secs(20), |a| a.rule() == ESCAPE_RULE && a.field("container.id") == c.id.as_str());
    assert!(alert.is_some(), "no escape alert from the sandboxed agent: {:?}", agent.stderr_lines);

    // ExecReload: SIGHUP reloads the rules.
    // SAFETY: signalling the agent this test started.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGHUP) };
    agent.wait_stderr("dcea: behaviour rules:", Duration::from_secs(10));
    let reloads = agent.stderr_lines.iter().filter(|l| l.starts_with("dcea: behaviour rules:")).count();
    assert_eq!(reloads, 2, "loaded at start and on SIGHUP");
    // KillSignal=SIGTERM within TimeoutStopSec.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
    let lines = agent.stop();
    assert!(lines.iter().any(|l| l.contains("dcea: stopping")), "{lines:?}");
    let mode = std::fs::metadata(state.path().join("trust.json")).expect("trust.json").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// `cargo xtask install --destdir`: binary, unit (ExecStart following --prefix), default config
/// (valid, never overwritten), rules and state directories with their modes.
#[test]
fn xtask_install_stages_everything() {
    let xtask = workspace_root().join("target/debug/xtask");
    assert!(xtask.is_file(), "{} missing: `cargo build -p xtask` (cargo xtask builds it)", xtask.display());
    let dest = tempfile::tempdir().unwrap();
    let install = || {
        let st = Command::new(&xtask)
            .args(["install", "--prefix", "/opt/dcea", "--bin"])
            .arg(dcea_tests::dcea_bin())
            .arg("--destdir")
            .arg(dest.path())
            .status()
            .expect("xtask install");
        assert!(st.success());
    };
    install();
    let d = dest.path();
    let mode =
        |p: &str| std::fs::metadata(d.join(p)).unwrap_or_else(|e| panic!("{p}: {e}")).permissions().mode() & 0o7777;
    assert_eq!(mode("opt/dcea/bin/dcea"), 0o755);
    assert_eq!(mode("etc/dcea/dcea.yaml"), 0o600);
    assert_eq!(mode("etc/dcea/rules.d"), 0o755);
    assert_eq!(mode("var/lib/dcea"), 0o700);
    let unit = read(&d.join("etc/systemd/system/dcea.service"));
    assert!(unit.contains("ExecStart=/opt/dcea/bin/dcea monitor --config /etc/dcea/dcea.yaml"), "{unit}");
    let config = read(&d.join("etc/dcea/dcea.yaml"));
    assert_eq!(config, dcea_user::config::default_config());
    // An operator's config survives a reinstall.
    std::fs::write(d.join("etc/dcea/dcea.yaml"), "mode: poll\n").unwrap();
    install();
    assert_eq!(read(&d.join("etc/dcea/dcea.yaml")), "mode: poll\n");
}

/// Self-protection: a `--pid=host --privileged` container stops and then kills the agent.
/// The sentinel writes a Critical alert naming the container to the file sink (which outlives
/// the agent) before the agent dies, and resumes the stopped agent; the next agent reports
/// that the last one stopped abnormally, for how long, and who did it.
#[test]
fn a_container_that_stops_and_kills_the_agent_is_reported_and_the_restart_reports_the_gap() {
    const T: &str = "a_container_that_stops_and_kills_the_agent_is_reported_and_the_restart_reports_the_gap";
    if !require_root(T) || !docker::available(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("alerts.json");
    let state = dir.path().join("state");
    let output = format!("file:{}", sink.display());
    let args = ["--output", output.as_str(), "--state-dir", state.to_str().unwrap()];
    let agent = Monitor::start(&args);
    assert!(
        agent.stderr_lines.iter().any(|l| l.contains("signal_generate") && l.contains("attached")),
        "the self-protection program attaches: {:?}",
        agent.stderr_lines
    );
    let pid = agent.pid();
    let name = docker::unique_name("dcea-attacker");
    let script = format!("kill -STOP {pid}; sleep 2; grep State /proc/{pid}/status; kill -KILL {pid}");
    let c = Container::run(&["--name", &name, "--pid=host", "--privileged"], &["sh", "-c", &script]);
    assert_eq!(c.wait(), 0, "{}", c.logs());
    let logs = c.logs();
    assert!(!logs.contains("stopped"), "the sentinel resumed the stopped agent: {logs}");
    // Our child: a zombie until the harness reaps it.
    let dead = || std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dead(), "the agent died by SIGKILL");
    // The sentinel has written both before it exits with the agent.
    let mut alerts: Vec<serde_json::Value> = Vec::new();
    while Instant::now() < deadline + Duration::from_secs(5) {
        let text = std::fs::read_to_string(&sink).unwrap_or_default();
        alerts = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if alerts.iter().filter(|a| a["rule"] == "dcea agent signalled from a container").count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let signalled: Vec<&serde_json::Value> =
        alerts.iter().filter(|a| a["rule"] == "dcea agent signalled from a container").collect();
    assert_eq!(signalled.len(), 2, "one per signal: {alerts:#?}");
    for (a, sig) in signalled.iter().zip(["SIGSTOP", "SIGKILL"]) {
        assert_eq!(a["priority"], "Critical");
        assert_eq!(a["output_fields"]["container.name"], name.as_str(), "{a:#}");
        assert_eq!(a["output_fields"]["container.id"], c.id.as_str(), "{a:#}");
        assert_eq!(a["output_fields"]["dcea.reported_by"], "sentinel");
        assert!(a["output"].as_str().unwrap().contains(&format!("signal={sig}")), "{a:#}");
    }
    drop(agent);

    let again = Monitor::start(&args);
    let gap = sink_alert(&sink, "dcea agent stopped abnormally");
    let f = &gap["output_fields"];
    assert_eq!(gap["priority"], "Critical", "{gap:#}");
    assert_eq!(f["container.name"], name.as_str(), "{gap:#}");
    assert_eq!(f["dcea.previous.pid"], pid);
    assert!(f["dcea.down_seconds"].as_f64().unwrap() > 0.0, "{gap:#}");
    assert!(f["dcea.previous.ended"].is_string(), "the sentinel saw the exit: {gap:#}");
    let stop = again.stop();
    assert!(stop.iter().any(|l| l.contains("dcea: stopping")), "{stop:?}");
}

/// Under `--enforce` the sender of a signal to the agent loses its container. This kernel has
/// no BPF LSM, so the SIGSTOP itself is delivered (the sentinel resumes the agent) and the
/// kill comes from `signal_generate`; the refusal is tested in the matrix guests
/// (`lsm_deny_refuses_guarded_operations_in_a_fake_container`).
#[test]
fn under_enforce_a_container_that_signals_the_agent_is_killed() {
    const T: &str = "under_enforce_a_container_that_signals_the_agent_is_killed";
    if !require_root(T) || !docker::available(T) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("alerts.json");
    let output = format!("file:{}", sink.display());
    let state = dir.path().join("state");
    let agent = Monitor::start(&["--enforce", "--output", output.as_str(), "--state-dir", state.to_str().unwrap()]);
    let pid = agent.pid();
    let name = docker::unique_name("dcea-stopper");
    // The shell outlives its kill only if the kernel let it go.
    let script = format!("kill -STOP {pid}; sleep 5; echo survived");
    let c = Container::run(&["--name", &name, "--pid=host", "--privileged"], &["sh", "-c", &script]);
    let code = c.wait();
    let logs = c.logs();
    assert!(code == 137 && !logs.contains("survived"), "the sender was killed: exit {code}: {logs}");
    let alert = sink_alert(&sink, "dcea agent signalled from a container");
    let f = &alert["output_fields"];
    assert_eq!(f["dcea.action"], "kill-container", "{alert:#}");
    assert_eq!(f["dcea.guard"], "agent-signal", "{alert:#}");
    assert_eq!(f["dcea.enforced_at"], "kernel hook", "{alert:#}");
    assert_eq!(f["container.name"], name.as_str(), "{alert:#}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(!status.contains("State:\tT"), "the sentinel resumed the agent: {status}");
    let stop = agent.stop();
    assert!(stop.iter().any(|l| l.contains("dcea: stopping")), "{stop:?}");
}

/// The first alert of `rule` in a file sink, waited for up to 10 s.
fn sink_alert(sink: &Path, rule: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(sink).unwrap_or_default();
        let found =
            text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find(|a| a["rule"] == rule);
        match found {
            Some(a) => return a,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => panic!("no `{rule}` alert in {}: {text}", sink.display()),
        }
    }
}
