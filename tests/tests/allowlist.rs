//! The per-workload process allowlist, for real: a container of an image with separate
//! executables learns three of them; in monitor mode a fourth image executable and a dropped
//! binary are reported; in enforce mode the fourth is killed in the kernel before it writes
//! anything, while the learned ones still run; the profile and its mode survive a restart of
//! the agent; a corrupt profile file is set aside and its workload learns afresh.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use dcea_tests::{
    Monitor, Received,
    docker::{self, IMAGE},
    require_root,
};
use serde_json::Value;

const RULE: &str = "Process not in the workload's allowlist";
/// Copies of the static busybox, each its own file: busybox picks the applet by the name it
/// is run as, so each is a separate program of the image.
const APPS: [&str; 4] = ["true", "echo", "date", "touch"];
const APPS_IMAGE: &str = "dcea-test/apps:latest";

/// The test image with /opt/app/{true,echo,date,touch}, made once from the busybox test image.
fn apps_image() {
    let present =
        Command::new("docker").args(["image", "inspect", APPS_IMAGE]).output().is_ok_and(|o| o.status.success());
    if present {
        return;
    }
    let copies: Vec<String> = APPS.iter().map(|a| format!("cp /bin/busybox /opt/app/{a}")).collect();
    let script = format!("mkdir -p /opt/app && {}", copies.join(" && "));
    let name = docker::unique_name("dcea-apps-build");
    docker::docker(&["run", "--name", &name, "--network", "none", IMAGE, "sh", "-c", &script]);
    docker::docker(&["commit", &name, APPS_IMAGE]);
    docker::docker(&["rm", "-f", &name]);
}

/// A state directory of the test's own and the dir a container writes its results to.
struct Setup {
    state: tempfile::TempDir,
    out: tempfile::TempDir,
    name: String,
}

impl Setup {
    fn new(prefix: &str) -> Setup {
        Setup {
            state: tempfile::tempdir().expect("state dir"),
            out: tempfile::Builder::new().prefix("dcea-allow-out").tempdir_in("/tmp").expect("out dir"),
            name: docker::unique_name(prefix),
        }
    }

    fn state(&self) -> &str {
        self.state.path().to_str().expect("utf-8 path")
    }

    fn monitor(&self, extra: &[&str]) -> Monitor {
        let mut args = vec!["--storm-window", "0s", "--allowlist-learn", "until-promoted", "--state-dir", self.state()];
        args.extend_from_slice(extra);
        Monitor::start(&args)
    }

    /// `docker run` the workload (same name each time: one workload) with `script`, waiting
    /// for it to exit.
    fn run(&self, script: &str) -> String {
        let out = format!("{}:/out", self.out.path().display());
        let args =
            ["run", "--rm", "--name", &self.name, "--network", "none", "-v", &out, APPS_IMAGE, "sh", "-c", script];
        let o = Command::new("docker").args(args).output().expect("docker run");
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }

    /// Start the workload waiting for /out/go, so the test can wait until the agent has
    /// named it (and, in enforce mode, written its programs into the kernel) first.
    fn start_gated(&self, script: &str) -> docker::Container {
        let out = format!("{}:/out", self.out.path().display());
        let gated = format!("while [ ! -e /out/go ]; do :; done; {script}; echo done > /out/finished");
        let id = docker::docker(&[
            "run",
            "-d",
            "--name",
            &self.name,
            "--network",
            "none",
            "-v",
            &out,
            APPS_IMAGE,
            "sh",
            "-c",
            &gated,
        ]);
        docker::Container { id }
    }

    fn go_and_wait(&self, c: &docker::Container) {
        fs::write(self.out.path().join("go"), "").expect("go");
        let code = c.wait();
        assert!(self.out_file("finished").is_some(), "the workload did not finish (exit {code}): {}", c.logs());
        let _ = fs::remove_file(self.out.path().join("go"));
        let _ = fs::remove_file(self.out.path().join("finished"));
        docker::docker(&["rm", "-f", &c.id]);
    }

    fn out_file(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.out.path().join(name)).ok()
    }

    fn dcea(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--state-dir", self.state()]);
        let o = Command::new(dcea_tests::dcea_bin()).args(&all).output().expect("dcea");
        assert!(
            o.status.success(),
            "dcea {all:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The workload's profile from `dcea profile list --format json`.
    fn profile(&self) -> Option<Value> {
        let list: Value = serde_json::from_str(&self.dcea(&["profile", "list", "--format", "json"])).expect("json");
        list.as_array()?
            .iter()
            .find(|p| p["workload"].as_str().is_some_and(|w| w.ends_with(&format!("/{}", self.name))))
            .cloned()
    }

    fn wait_profile(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = self.profile().filter(|p| pred(p)) {
                return p;
            }
            assert!(Instant::now() < deadline, "no profile {what} for {}: {:?}", self.name, self.profile());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn entries(p: &Value) -> Vec<(String, String)> {
    p["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| (e["path"].as_str().unwrap_or("").to_string(), e["name"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn of_workload<'a>(log: &'a [Received], name: &str) -> Vec<&'a Received> {
    log.iter()
        .filter(|a| {
            a.rule() == RULE && a.field("container.name").as_str().is_some_and(|n| n.trim_start_matches('/') == name)
        })
        .collect()
}

fn exepaths(alerts: &[&Received]) -> Vec<String> {
    alerts.iter().map(|a| a.field("proc.exepath").as_str().unwrap_or("").to_string()).collect()
}

fn usable(test: &str) -> bool {
    require_root(test) && docker::available(test)
}

const LEARN: &str = "/opt/app/true && /opt/app/echo learned > /out/learned && /opt/app/date > /dev/null";

#[test]
fn a_workload_learns_then_reports_then_kills_what_it_did_not_learn() {
    let test = "a_workload_learns_then_reports_then_kills_what_it_did_not_learn";
    if !usable(test) {
        return;
    }
    apps_image();
    let s = Setup::new("dcea-allow");
    let mut monitor = s.monitor(&[]);

    // Learn: three image executables (and the shell that runs them).
    let out = s.run(LEARN);
    assert_eq!(s.out_file("learned").as_deref(), Some("learned\n"), "{out}");
    let p = s.wait_profile("with the three programs", |p| {
        let e = entries(p);
        ["true", "echo", "date"].iter().all(|a| e.contains(&(format!("/opt/app/{a}"), a.to_string())))
    });
    assert_eq!(p["mode"], "learn", "{p}");
    let e = entries(&p);
    assert!(!e.iter().any(|(path, _)| path == "/opt/app/touch"), "{e:?}");
    assert!(
        p["entries"].as_array().expect("entries").iter().all(|e| e["sha256"].as_str().is_some_and(|h| h.len() == 64)),
        "each entry has the image file's hash: {p}"
    );
    let name = p["name"].as_str().expect("profile name").to_string();
    let learn_log = monitor.collect(Duration::from_secs(1));
    assert!(of_workload(&learn_log, &s.name).is_empty(), "learning raises nothing: {learn_log:#?}");

    // Monitor: the fourth image executable and a dropped binary are reported.
    s.dcea(&["profile", "promote", &name, "--to", "monitor"]);
    s.wait_profile("in monitor mode", |p| p["mode"] == "monitor");
    std::thread::sleep(Duration::from_millis(1500)); // the agent polls every second
    let out = s.run(&format!("{LEARN} && /opt/app/touch /out/monitored; cp /opt/app/true /tmp/true; /tmp/true"));
    assert!(s.out_file("monitored").is_some(), "monitor mode kills nothing: {out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = Vec::new();
    while Instant::now() < deadline
        && exepaths(&of_workload(&log, &s.name)).iter().filter(|p| *p == "/opt/app/touch" || *p == "/tmp/true").count()
            < 2
    {
        log.extend(monitor.collect(Duration::from_millis(500)));
    }
    let alerts = of_workload(&log, &s.name);
    let paths = exepaths(&alerts);
    for want in ["/opt/app/touch", "/tmp/true"] {
        let a = alerts
            .iter()
            .find(|a| a.field("proc.exepath") == want)
            .unwrap_or_else(|| panic!("no allowlist alert for {want}: {paths:?} {log:#?}"));
        assert_eq!(a.field("dcea.allowlist.profile"), name.as_str(), "{}", a.raw);
        assert_eq!(a.field("dcea.allowlist.mode"), "monitor", "{}", a.raw);
        assert_eq!(a.field("dcea.action"), "alert", "{}", a.raw);
        assert_eq!(a.json["priority"], "Error", "{}", a.raw);
        assert!(a.field("proc.cmdline").as_str().is_some_and(|c| !c.is_empty()), "{}", a.raw);
        assert!(a.field("proc.pname").as_str().is_some_and(|p| !p.is_empty()), "{}", a.raw);
    }
    for learned in ["/opt/app/true", "/opt/app/echo", "/opt/app/date"] {
        assert!(!paths.iter().any(|p| p == learned), "{learned} was learned, yet reported: {paths:?}");
    }

    // Enforce: the fourth is killed before it writes its file; the learned ones run.
    s.dcea(&["profile", "promote", &name, "--to", "enforce"]);
    s.wait_profile("in enforce mode", |p| p["mode"] == "enforce");
    let gated = |tag: &str| {
        s.start_gated(&format!("{LEARN}; /opt/app/touch /out/{tag}; /opt/app/echo after > /out/{tag}-after"))
    };
    let enforce_run = |monitor: &mut Monitor, tag: &str, c: docker::Container| {
        said(monitor, &format!("container {} enforced in the kernel by profile {name}", &c.id[..12]));
        let _ = fs::remove_file(s.out.path().join("learned"));
        s.go_and_wait(&c);
        assert_eq!(s.out_file("learned").as_deref(), Some("learned\n"), "the learned programs still run ({tag})");
        assert_eq!(s.out_file(&format!("{tag}-after")).as_deref(), Some("after\n"), "and so does what follows ({tag})");
        assert!(s.out_file(tag).is_none(), "the program outside the profile never ran ({tag})");
        let (hit, seen) =
            monitor.wait_for(Duration::from_secs(10), |a| a.rule() == RULE && a.field("dcea.action") == "kill-process");
        let hit = hit.unwrap_or_else(|| panic!("no kill alert ({tag}): {seen:#?}"));
        assert_eq!(hit.field("proc.exepath"), "/opt/app/touch", "{}", hit.raw);
        assert_eq!(hit.json["priority"], "Critical", "{}", hit.raw);
        assert_eq!(hit.field("dcea.allowlist.mode"), "enforce", "{}", hit.raw);
        assert!(hit.json["output"].as_str().is_some_and(|o| o.contains("killed")), "{}", hit.raw);
        let others: Vec<_> = of_workload(&seen, &s.name).iter().map(|a| a.raw.clone()).collect();
        assert!(others.is_empty(), "only the fourth is judged: {others:#?}");
    };
    enforce_run(&mut monitor, "enforced", gated("enforced"));

    // A restart keeps the profile and its mode, and a container of the workload that is
    // already running (waiting, with no exec to be seen by) is found and enforced at once.
    let running = gated("after-restart");
    said(&mut monitor, &format!("container {} enforced in the kernel", &running.id[..12]));
    monitor.stop();
    let mut monitor = s.monitor(&[]);
    assert_eq!(s.profile().expect("profile after restart")["mode"], "enforce");
    enforce_run(&mut monitor, "after-restart", running);
}

/// Wait for a stderr line with `needle`, which may have come before the ready line.
fn said(monitor: &mut Monitor, needle: &str) {
    if !monitor.stderr_lines.iter().any(|l| l.contains(needle)) {
        monitor.wait_stderr(needle, Duration::from_secs(10));
    }
}

#[test]
fn a_docker_exec_outside_the_profile_is_reported_as_the_runtimes_not_killed() {
    let test = "a_docker_exec_outside_the_profile_is_reported_as_the_runtimes_not_killed";
    if !usable(test) {
        return;
    }
    apps_image();
    let s = Setup::new("dcea-allow-exec");
    let mut monitor = s.monitor(&[]);
    let c = s.start_gated(&format!("{LEARN}; while [ ! -e /out/stop ]; do :; done"));
    fs::write(s.out.path().join("go"), "").expect("go");
    let p = s.wait_profile("with the learned programs", |p| entries(p).iter().any(|(path, _)| path == "/opt/app/date"));
    let name = p["name"].as_str().expect("name").to_string();
    s.dcea(&["profile", "promote", &name, "--to", "enforce"]);
    monitor.wait_stderr(&format!("container {} enforced in the kernel", &c.id[..12]), Duration::from_secs(10));
    c.exec(&["/opt/app/touch", "/out/by-exec"]);
    assert!(s.out_file("by-exec").is_some(), "a docker exec is not killed by default");
    let (hit, seen) =
        monitor.wait_for(Duration::from_secs(5), |a| a.rule() == RULE && a.field("proc.exepath") == "/opt/app/touch");
    let hit = hit.unwrap_or_else(|| panic!("no report of the docker exec: {seen:#?}"));
    assert_eq!(hit.field("dcea.allowlist.runtime_exec"), true, "{}", hit.raw);
    assert_eq!(hit.field("dcea.action"), "alert", "{}", hit.raw);
    assert_eq!(hit.json["priority"], "Notice", "{}", hit.raw);
    fs::write(s.out.path().join("stop"), "").expect("stop");
    c.wait();
}

#[test]
fn a_corrupt_profile_is_set_aside_and_its_workload_learns_afresh() {
    let test = "a_corrupt_profile_is_set_aside_and_its_workload_learns_afresh";
    if !usable(test) {
        return;
    }
    apps_image();
    let s = Setup::new("dcea-allow-corrupt");
    {
        let _monitor = s.monitor(&[]);
        s.run(LEARN);
        s.wait_profile("learned", |p| !entries(p).is_empty());
    }
    let dir: PathBuf = s.state.path().join("profiles");
    let file = fs::read_dir(&dir)
        .expect("profiles dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "yaml"))
        .expect("a profile file");
    fs::write(&file, "name: [this is not\n  a profile: {").expect("corrupt it");
    let mut monitor = s.monitor(&[]);
    // Said at start-up, before the ready line.
    let line = match monitor.stderr_lines.iter().find(|l| l.contains("is corrupt")) {
        Some(l) => l.clone(),
        None => monitor.wait_stderr("is corrupt", Duration::from_secs(5)),
    };
    assert!(line.contains(&file.display().to_string()) && line.contains("learns afresh"), "{line}");
    assert!(Path::new(&format!("{}.corrupt", file.display())).exists(), "set aside: {line}");
    s.run(LEARN);
    let p = s.wait_profile("learned again", |p| !entries(p).is_empty());
    assert_eq!(p["mode"], "learn", "{p}");
    let errors: Vec<String> = monitor.stop().into_iter().filter(|l| l.contains("panicked")).collect();
    assert!(errors.is_empty(), "{errors:?}");
}
