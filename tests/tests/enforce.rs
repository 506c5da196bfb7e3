//! `dcea monitor --enforce` against the real techniques, in real containers. Each case asserts
//! that the host-side effect did NOT happen (the setting is unchanged, the payload never ran,
//! no container was created, the data never came back), not only that an alert was raised.
//! Every kernel setting a case could touch is restored afterwards, also when it fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use dcea_tests::{
    HostAnchor, Monitor, Received,
    disk::LoopDisk,
    docker::{self, Container, helper_mounts},
    require_root,
};

/// SIGKILL's exit status as `docker wait` reports it.
const KILLED: i32 = 137;

/// A monitor with --enforce and a state directory of its own (the condemned set lives there).
struct Enforcing {
    monitor: Monitor,
    state: tempfile::TempDir,
}

impl Enforcing {
    fn start(test: &str, extra: &[&str]) -> Option<Enforcing> {
        if !require_root(test) || !docker::available(test) {
            return None;
        }
        let state = tempfile::tempdir().expect("state dir");
        let mut args = vec!["--enforce", "--storm-window", "0s", "--state-dir", state.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        Some(Enforcing { monitor: Monitor::start(&args), state })
    }

    /// The first alert of `rule` about container `id` within 5 s.
    fn alert(&mut self, id: &str, rule: &str) -> Received {
        let (hit, seen) =
            self.monitor.wait_for(Duration::from_secs(5), |a| a.field("container.id") == id && a.rule() == rule);
        hit.unwrap_or_else(|| {
            panic!("no '{rule}' alert for {id}; seen: {:#?}", seen.iter().map(|a| &a.raw).collect::<Vec<_>>())
        })
    }
}

/// The alert says the kernel killed the process at the hook and condemned its container.
#[track_caller]
fn assert_killed_at_hook(alert: &Received, guard: &str) {
    assert_eq!(alert.field("dcea.action"), "kill-container", "{}", alert.raw);
    assert_eq!(alert.field("dcea.guard"), guard, "{}", alert.raw);
    assert_eq!(alert.field("dcea.enforced_at"), "kernel hook", "{}", alert.raw);
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A kernel setting restored on drop to what it was (a test that fails half-way included).
/// `clear` is what undoes a value that was empty before (`release_agent` is cleared by a
/// newline; an empty write does not change it).
struct Restore {
    path: PathBuf,
    before: String,
}

impl Restore {
    fn new(path: &str) -> Restore {
        let before = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Restore { path: path.into(), before }
    }

    fn unchanged(&self) -> bool {
        fs::read_to_string(&self.path).is_ok_and(|now| now == self.before)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.unchanged() {
            let value = if self.before.trim().is_empty() { "\n".to_string() } else { self.before.clone() };
            let _ = fs::write(&self.path, value);
        }
    }
}

/// A v1 hierarchy of this host whose root holds a release_agent.
fn cgroup_v1_with_release_agent() -> Option<&'static str> {
    ["rdma", "misc", "pids", "memory", "cpu"]
        .into_iter()
        .find(|c| Path::new(&format!("/sys/fs/cgroup/{c}/release_agent")).exists())
}

#[test]
fn release_agent_write_is_killed_before_the_write() {
    // The pseudo-filesystem mount before it is let through (alert only), so that the
    // release_agent guard itself is what stops this.
    let Some(mut e) = Enforcing::start(
        "release_agent_write_is_killed",
        &["--action", "Kernel pseudo-filesystem mounted in a container=alert"],
    ) else {
        return;
    };
    let Some(ctrl) = cgroup_v1_with_release_agent() else {
        dcea_tests::skip("release_agent_write_is_killed", dcea_tests::Need::Kernel, "no cgroup v1 hierarchy here");
        return;
    };
    let host = Restore::new(&format!("/sys/fs/cgroup/{ctrl}/release_agent"));
    let script = format!(
        "mkdir /tmp/cg && mount -t cgroup -o {ctrl} cgroup /tmp/cg || exit 11; \
         echo /dcea-payload-never-runs > /tmp/cg/release_agent; echo reached"
    );
    let c = Container::run(&["--privileged"], &["sh", "-c", &script]);
    let code = c.wait();
    let logs = c.logs();
    assert_eq!(code, KILLED, "the shell must die at the open: {logs}");
    assert!(!logs.contains("reached"), "{logs}");
    assert!(host.unchanged(), "the host's release_agent changed");
    let alert = e.alert(&c.id, "Cgroup release_agent written from a container");
    assert_killed_at_hook(&alert, "release-agent");
}

#[test]
fn core_pattern_write_is_killed_and_an_alert_override_lets_it_through() {
    let Some(mut e) = Enforcing::start("core_pattern_write_is_killed", &[]) else { return };
    let host = Restore::new("/proc/sys/kernel/core_pattern");
    let c = Container::run(
        &["--privileged"],
        &["sh", "-c", "echo '|/dcea-payload-never-runs' > /proc/sys/kernel/core_pattern; echo reached"],
    );
    let code = c.wait();
    let logs = c.logs();
    assert_eq!(code, KILLED, "{logs}");
    assert!(!logs.contains("reached"), "{logs}");
    assert!(host.unchanged(), "core_pattern changed");
    assert_killed_at_hook(&e.alert(&c.id, "Kernel core_pattern written"), "core-pattern");
    e.monitor.stop();

    // The same technique with the rule's action overridden to `alert`: it goes through, with
    // the alert (the current value is written back: the host setting stays what it was).
    let Some(mut e) =
        Enforcing::start("core_pattern_alert_override", &["--action", "Kernel core_pattern written=alert"])
    else {
        return;
    };
    let c = Container::run(
        &["--privileged"],
        &["sh", "-c", "f=/proc/sys/kernel/core_pattern; cat $f > /tmp/v && cat /tmp/v > $f && echo reached"],
    );
    assert_eq!(c.wait(), 0, "{}", c.logs());
    assert!(c.logs().contains("reached"));
    let alert = e.alert(&c.id, "Kernel core_pattern written");
    assert_eq!(alert.field("dcea.action"), "alert", "{}", alert.raw);
    assert_eq!(alert.field("dcea.guard"), "core-pattern", "{}", alert.raw);
    assert!(host.unchanged());
}

#[test]
fn docker_socket_connect_is_killed_and_no_container_is_created() {
    let Some(mut e) = Enforcing::start("docker_socket_connect_is_killed", &[]) else { return };
    let name = docker::unique_name("dcea-must-not-exist");
    let mut opts = helper_mounts();
    opts.extend(["-v".to_string(), "/var/run/docker.sock:/var/run/docker.sock".to_string()]);
    let c = Container::run(
        &args(&opts),
        &["sh", "-c", &format!("exec /dcea-test-helper docker-create /var/run/docker.sock {name}")],
    );
    let code = c.wait();
    let logs = c.logs();
    assert!(!logs.contains("HTTP/1.1"), "the engine answered: {logs}");
    assert_eq!(code, KILLED, "{logs}");
    let listed = Command::new("docker").args(["ps", "-a", "-q", "--filter", &format!("name={name}")]).output().unwrap();
    assert!(listed.stdout.is_empty(), "a container was created through the socket");
    assert_killed_at_hook(&e.alert(&c.id, "Container runtime socket connected from a container"), "runtime-socket");
}

const SECRET: &str = "dcea-secret-on-the-host-disk";

#[test]
fn host_disk_mount_is_killed_and_the_condemned_container_runs_nothing_more() {
    let Some(mut e) = Enforcing::start("host_disk_mount_is_killed", &[]) else { return };
    let disk = LoopDisk::with_files(&[("secret.txt", SECRET)]);
    let device = disk.device_option();
    let mut opts = helper_mounts();
    opts.extend(["--privileged".to_string(), "--device".to_string(), device]);
    // The mount runs in a child shell; the parent goes on to read the disk with a new
    // program, which the condemned container may not start.
    let c = Container::run(
        &args(&opts),
        &[
            "sh",
            "-c",
            "sh -c 'mount /dev/hostdisk /mnt'; echo mount=$?; /dcea-test-helper open /mnt/secret.txt read; \
             cat /mnt/secret.txt; echo reached",
        ],
    );
    let code = c.wait();
    let logs = c.logs();
    assert!(!logs.contains(SECRET), "the host disk's data came back: {logs}");
    assert!(!logs.contains("reached"), "{logs}");
    assert_eq!(code, KILLED, "{logs}");
    assert_killed_at_hook(&e.alert(&c.id, "Host block device mounted in a container"), "host-disk-mount");
    // The condemned set is on disk for a restarted agent, and the engine knows it is dead.
    let state = e.state.path().join("condemned.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string(&state).unwrap_or_default().contains(&c.id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fs::read_to_string(&state).unwrap_or_default().contains(&c.id), "{} lacks {}", state.display(), c.id);
}

#[test]
fn chroot_into_a_host_disk_is_killed_before_the_shell_inside_runs() {
    // The mount before it is let through (alert only): the chroot guard is what stops this.
    let Some(mut e) = Enforcing::start(
        "chroot_into_a_host_disk_is_killed",
        &["--action", "Host block device mounted in a container=alert"],
    ) else {
        return;
    };
    let disk = LoopDisk::with_files(&[("secret.txt", SECRET)]);
    let device = disk.device_option();
    let c = Container::run(
        &["--privileged", "--device", &device],
        &[
            "sh",
            "-c",
            "mount /dev/hostdisk /mnt || exit 11; cp /bin/busybox /mnt/ || exit 12; \
             exec chroot /mnt /busybox sh -c 'echo inside; cat /secret.txt'",
        ],
    );
    let code = c.wait();
    let logs = c.logs();
    assert!(!logs.contains("inside") && !logs.contains(SECRET), "the shell inside ran: {logs}");
    assert_ne!(code, 11, "the mount failed: {logs}");
    assert_ne!(code, 12, "the copy failed: {logs}");
    assert_eq!(code, KILLED, "{logs}");
    assert_killed_at_hook(&e.alert(&c.id, "Chroot into a host filesystem from a container"), "host-root");
}

/// The state letter of /proc/<pid>/stat (R, S, T …).
fn proc_state(pid: u32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).unwrap_or('?')
}

#[test]
fn ptrace_of_a_host_process_is_killed_and_the_target_keeps_running() {
    let Some(mut e) = Enforcing::start("ptrace_of_a_host_process_is_killed", &[]) else { return };
    let anchor = HostAnchor::start();
    let mut opts = helper_mounts();
    opts.extend(["--pid=host".to_string(), "--cap-add".to_string(), "SYS_PTRACE".to_string()]);
    let c =
        Container::run(&args(&opts), &["sh", "-c", &format!("exec /dcea-test-helper ptrace-attach {}", anchor.pid())]);
    let code = c.wait();
    let logs = c.logs();
    assert_eq!(code, KILLED, "{logs}");
    assert_killed_at_hook(&e.alert(&c.id, "Process outside the container traced"), "ptrace-outside");
    // Not traced, not stopped: the target runs on as before.
    let deadline = Instant::now() + Duration::from_secs(3);
    while proc_state(anchor.pid()) == 't' || proc_state(anchor.pid()) == 'T' {
        assert!(Instant::now() < deadline, "the target stayed stopped ({})", proc_state(anchor.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = fs::read_to_string(format!("/proc/{}/status", anchor.pid())).unwrap();
    assert!(status.lines().any(|l| l == "TracerPid:\t0"), "{status}");
    assert_eq!(proc_state(anchor.pid()), 'S', "sleep is asleep, as before");
}

#[test]
fn benign_container_work_runs_normally_under_enforce() {
    let Some(mut e) = Enforcing::start("benign_container_work_runs_normally_under_enforce", &[]) else { return };
    let mut opts = helper_mounts();
    opts.push("--privileged".to_string());
    let scripts = [
        // Shells and execs of image binaries.
        "sh -c 'echo hi' && /bin/busybox true && ls / >/dev/null",
        // Nested namespaces: a mount namespace with its own tmpfs, a PID namespace with its
        // own procfs.
        "unshare -m sh -c 'mount -t tmpfs scratch /mnt && umount /mnt'",
        "unshare -fp --mount-proc sh -c 'test -r /proc/1/status'",
        // Package work: files written, made executable and run, config written in /etc.
        "mkdir -p /opt/pkg/bin && cp /bin/busybox /opt/pkg/bin/true && chmod 755 /opt/pkg/bin/true \
         && /opt/pkg/bin/true && echo 'x=1' > /etc/pkg.conf",
        // Unix sockets that are not a runtime's, reads of the kernel's files.
        "/dcea-test-helper connect-unix /tmp/app.sock; cat /proc/sys/kernel/core_pattern /proc/self/status >/dev/null",
    ];
    let mut ids = Vec::new();
    for script in scripts {
        let c = Container::run(&args(&opts), &["sh", "-c", script]);
        assert_eq!(c.wait(), 0, "benign script failed under --enforce: {script}\n{}", c.logs());
        ids.push(c);
    }
    // docker exec and a container restart.
    let c = Container::run(&[], &["sleep", "30"]);
    assert_eq!(c.exec(&["sh", "-c", "echo exec-ok"]), "exec-ok");
    docker::docker(&["restart", "-t", "1", &c.id]);
    assert_eq!(c.exec(&["sh", "-c", "echo exec-ok"]), "exec-ok");
    let alerts = e.monitor.collect(Duration::from_millis(800));
    let acted: Vec<&str> = alerts
        .iter()
        .filter(|a| a.field("dcea.action").as_str().is_some_and(|x| x != "alert"))
        .map(|a| a.raw.as_str())
        .collect();
    assert!(acted.is_empty(), "--enforce acted on benign work: {acted:#?}");
    drop(ids);
    drop(c);
    let summary = e.monitor.stop().join("\n");
    assert!(summary.contains(" 0 killed"), "{summary}");
}

#[test]
fn a_condemned_container_stays_condemned_across_restarts_until_released() {
    let Some(mut e) = Enforcing::start("a_condemned_container_stays_condemned", &[]) else { return };
    let host = Restore::new("/proc/sys/kernel/core_pattern");
    // The container's own command is harmless; a `docker exec` into it does the deed.
    let c = Container::run(&["--privileged"], &["sleep", "60"]);
    let exec = Command::new("docker")
        .args(["exec", &c.id, "sh", "-c", "f=/proc/sys/kernel/core_pattern; cat $f > /tmp/v && cat /tmp/v > $f"])
        .output()
        .unwrap();
    assert_eq!(exec.status.code(), Some(KILLED), "{exec:?}");
    assert_eq!(c.wait(), KILLED, "the whole container is killed: {}", c.logs());
    assert!(host.unchanged());
    assert_killed_at_hook(&e.alert(&c.id, "Kernel core_pattern written"), "core-pattern");
    let state = e.state.path().to_path_buf();
    // Keep the state directory past this monitor: a new agent reads it.
    let dir = std::mem::replace(&mut e.state, tempfile::tempdir().unwrap());
    e.monitor.stop();
    let mut again = Monitor::start(&["--enforce", "--state-dir", state.to_str().unwrap()]);
    assert!(
        again.stderr_lines.iter().any(|l| l.contains("1 condemned container(s) restored")),
        "{}",
        again.stderr_lines.join("\n")
    );
    // Started again, its harmless command is killed within a sync.
    let restarted = Command::new("docker").args(["start", &c.id]).output().unwrap();
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    let code = c.wait();
    assert_eq!(code, KILLED, "a condemned container ran after a restart");
    // Released, it runs.
    let out = Command::new(dcea_tests::dcea_bin())
        .args(["release", &c.id[..12], "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&c.id), "{}", String::from_utf8_lossy(&out.stdout));
    again.wait_stderr("released cgroup", Duration::from_secs(5));
    docker::docker(&["start", &c.id]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        docker::docker(&["inspect", "-f", "{{.State.Running}}", &c.id]),
        "true",
        "the released container was killed"
    );
    // Releasing what is not condemned is an error that says what is.
    let out = Command::new(dcea_tests::dcea_bin())
        .args(["release", "0123456789ab", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no condemned container matches"));
    again.stop();
    drop(dir);
}

/// A rule exception that names the container's image spares it in the kernel too: its
/// pseudo-filesystem mount goes through, no alert, nothing is killed. (Without the exception
/// the rule's default kill-container acts at the hook, as the cases above show for theirs.)
#[test]
fn a_rule_exception_on_the_image_spares_the_container_in_the_kernel() {
    const TEST: &str = "a_rule_exception_on_the_image_spares_the_container";
    let rules = tempfile::tempdir().expect("rules dir");
    fs::write(
        rules.path().join("nested.yaml"),
        format!(
            "- rule: Kernel pseudo-filesystem mounted in a container\n  exceptions:\n    - name: nested_runtimes\n      \
             values: [{}]\n  override:\n    exceptions: append\n",
            docker::IMAGE.split(':').next().unwrap()
        ),
    )
    .expect("write rules");
    let Some(mut e) = Enforcing::start(TEST, &["--rules-dir", rules.path().to_str().unwrap()]) else { return };
    // Several execs first: the agent decides the container from its first records with
    // metadata, and the mount comes after.
    let script = "sleep 1; true; sleep 1; true; mount -t sysfs sysfs /mnt && echo mounted";
    let c = Container::run(&["--privileged"], &["sh", "-c", script]);
    let code = c.wait();
    let logs = c.logs();
    assert_eq!(code, 0, "the excepted container must run to the end: {logs}");
    assert!(logs.contains("mounted"), "{logs}");
    let alerts = e.monitor.collect(Duration::from_millis(800));
    let acted: Vec<&str> = alerts
        .iter()
        .filter(|a| {
            a.field("container.id") == c.id.as_str() && a.rule() == "Kernel pseudo-filesystem mounted in a container"
        })
        .map(|a| a.raw.as_str())
        .collect();
    assert!(acted.is_empty(), "an excepted container raised the rule: {acted:#?}");
    let stderr = e.monitor.stop().join("\n");
    assert!(stderr.contains(" 0 killed"), "{stderr}");
    assert!(stderr.contains("spared by rule exceptions from the kernel's action for: pseudo-fs-mount"), "{stderr}");
}
