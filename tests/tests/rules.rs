//! The default behaviour rules against real containers: every rule fires on the behaviour
//! it describes, done for real in a Docker container, and stays silent on the nearest benign
//! behaviour. As root, with the real kernel programs and the local Docker engine.

use std::{fs, path::PathBuf, process::Command, time::Duration};

use dcea_tests::{
    HostAnchor, Monitor, Received,
    disk::LoopDisk,
    docker::{self, Container, IMAGE, helper_mounts},
    helper_bin, require_root,
};

/// A monitor and one container running `script`; the alerts about that container.
struct Scenario {
    monitor: Monitor,
}

impl Scenario {
    fn start(test: &str) -> Option<Scenario> {
        if !require_root(test) || !docker::available(test) {
            return None;
        }
        // Detection is judged here, not delivery: no storm control folding repeats away.
        Some(Scenario { monitor: Monitor::start(&["--storm-window", "0s"]) })
    }

    /// Run `sh -c script` in a new container with `extra` docker options; wait for it to exit
    /// and return its id and every alert about it (read until `rule` arrives or 3 s pass).
    fn run(&mut self, extra: &[&str], script: &str, rule: &str) -> (String, Vec<Received>) {
        let c = Container::run(extra, &["sh", "-c", script]);
        let code = c.wait();
        let logs = c.logs();
        assert_eq!(code, 0, "scenario script failed ({code}): {script}\n{logs}");
        let id = c.id.clone();
        let (hit, seen) = self
            .monitor
            .wait_for(Duration::from_secs(3), |a| a.field("container.id") == id.as_str() && a.rule() == rule);
        let mut mine: Vec<Received> = seen.into_iter().filter(|a| a.field("container.id") == id.as_str()).collect();
        if let Some(a) = hit {
            mine.push(a);
            // Whatever else the container caused is already queued.
            let rest = self.monitor.collect(Duration::from_millis(300));
            mine.extend(rest.into_iter().filter(|a| a.field("container.id") == id.as_str()));
        }
        (id, mine)
    }
}

/// How many identical runs the repeat checks make ($DCEA_TEST_REPEAT, default 20).
fn repeat_count() -> usize {
    std::env::var("DCEA_TEST_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

impl Scenario {
    /// The positive case, again and again in fresh short-lived containers: every run must
    /// raise `rule`. Detection may not depend on what is still in /proc when the alert is built.
    fn repeat(&mut self, extra: &[&str], script: &str, rule: &str) {
        let n = repeat_count();
        let mut missed = Vec::new();
        for _ in 0..n {
            let c = Container::run(extra, &["sh", "-c", script]);
            let code = c.wait();
            assert_eq!(code, 0, "repeat of '{rule}': script failed ({code}): {script}\n{}", c.logs());
            let id = c.id.clone();
            let (hit, _) = self
                .monitor
                .wait_for(Duration::from_secs(5), |a| a.field("container.id") == id.as_str() && a.rule() == rule);
            if hit.is_none() {
                missed.push(id);
            }
        }
        assert!(missed.is_empty(), "'{rule}' fired in {} of {n} identical runs; missed: {missed:?}", n - missed.len());
    }
}

fn with_rule<'a>(alerts: &'a [Received], rule: &str) -> Vec<&'a Received> {
    alerts.iter().filter(|a| a.rule() == rule).collect()
}

/// Exactly the positive scenario raises `rule`, with the container's id; the negative one
/// does not.
fn assert_rule(rule: &str, positive: &(String, Vec<Received>), negative: &(String, Vec<Received>)) {
    let hits = with_rule(&positive.1, rule);
    assert!(
        !hits.is_empty(),
        "'{rule}' did not fire for container {}; its alerts: {:#?}",
        positive.0,
        positive.1.iter().map(|a| &a.raw).collect::<Vec<_>>()
    );
    let hit = hits[0];
    assert_eq!(hit.field("container.id"), positive.0.as_str(), "{}", hit.raw);
    assert_eq!(hit.json["source"], "dcea");
    assert!(
        hit.json["tags"].as_array().is_some_and(|t| t.iter().any(|t| t.as_str().is_some_and(|t| t.starts_with('T'))))
    );
    let false_hits = with_rule(&negative.1, rule);
    assert!(
        false_hits.is_empty(),
        "'{rule}' fired on the benign scenario: {:#?}",
        false_hits.iter().map(|a| &a.raw).collect::<Vec<_>>()
    );
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn shell_spawned_in_a_container() {
    let Some(mut s) = Scenario::start("shell_spawned_in_a_container") else { return };
    const RULE: &str = "Shell spawned in a container";
    // The entrypoint is not a shell; it starts one (positive) or a non-shell (negative).
    let c = Container::run(&[], &["sleep", "30"]);
    c.exec(&["sh", "-c", "true"]);
    let (hit, _) =
        s.monitor.wait_for(Duration::from_secs(3), |a| a.rule() == RULE && a.field("container.id") == c.id.as_str());
    let hit = hit.expect("shell alert");
    assert_eq!(hit.field("proc.name"), "sh");
    // Every one of many short-lived shells.
    let n = repeat_count();
    let mut missed = 0;
    for _ in 0..n {
        c.exec(&["sh", "-c", "true"]);
        let (hit, _) = s
            .monitor
            .wait_for(Duration::from_secs(5), |a| a.rule() == RULE && a.field("container.id") == c.id.as_str());
        missed += usize::from(hit.is_none());
    }
    assert_eq!(missed, 0, "the shell rule fired in {} of {n} identical runs", n - missed);
    assert!(hit.json["output"].as_str().unwrap().contains(&c.id), "{}", hit.raw);
    let d = Container::run(&[], &["sleep", "30"]);
    d.exec(&["cat", "/etc/hostname"]);
    let later = s.monitor.collect(Duration::from_millis(800));
    assert!(with_rule(&later, RULE).iter().all(|a| a.field("container.id") != d.id.as_str()), "cat is not a shell");
}

#[test]
fn credential_file_opened_in_a_container() {
    let Some(mut s) = Scenario::start("credential_file_opened_in_a_container") else { return };
    const RULE: &str = "Credential file opened in a container";
    // Spelled relatively and through a symlink: the kernel resolves the file it opened.
    let pos = s.run(&[], "cd /etc && cat shadow >/dev/null && ln -s /etc/shadow /tmp/s && cat /tmp/s >/dev/null", RULE);
    s.repeat(&[], "cd /etc && cat shadow >/dev/null && ln -s /etc/shadow /tmp/s && cat /tmp/s >/dev/null", RULE);
    let neg = s.run(&[], "cat /etc/passwd /etc/hostname >/dev/null", RULE);
    assert_rule(RULE, &pos, &neg);
    let hit = with_rule(&pos.1, RULE)[0];
    assert_eq!(hit.field("fd.name"), "/etc/shadow");
    assert_eq!(hit.field("proc.name"), "cat");
}

#[test]
fn ssh_keys_accessed_in_a_container() {
    let Some(mut s) = Scenario::start("ssh_keys_accessed_in_a_container") else { return };
    const RULE: &str = "SSH keys accessed in a container";
    let pos = s.run(&[], "mkdir -p /root/.ssh && echo ssh-ed25519 AAAA >> /root/.ssh/authorized_keys", RULE);
    s.repeat(&[], "mkdir -p /root/.ssh && echo ssh-ed25519 AAAA >> /root/.ssh/authorized_keys", RULE);
    let neg = s.run(&[], "mkdir -p /root/notes && echo hello > /root/notes/todo", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("fd.name"), "/root/.ssh/authorized_keys");
}

#[test]
fn non_device_file_created_below_dev() {
    let Some(mut s) = Scenario::start("non_device_file_created_below_dev") else { return };
    const RULE: &str = "Non-device file created below /dev";
    let pos = s.run(&[], "echo payload > /dev/.hidden", RULE);
    s.repeat(&[], "echo payload > /dev/.hidden", RULE);
    let neg = s.run(&[], "echo x > /dev/null && echo y > /dev/shm/scratch", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("fd.name"), "/dev/.hidden");
}

#[test]
fn device_node_created_in_a_container() {
    let Some(mut s) = Scenario::start("device_node_created_in_a_container") else { return };
    const RULE: &str = "Device node created in a container";
    let pos = s.run(&[], "mknod /tmp/disk b 8 0", RULE);
    s.repeat(&[], "mknod /tmp/disk b 8 0", RULE);
    let neg = s.run(&[], "mkfifo /tmp/fifo", RULE);
    assert_rule(RULE, &pos, &neg);
}

#[test]
fn host_block_device_mounted_in_a_container() {
    let Some(mut s) = Scenario::start("host_block_device_mounted_in_a_container") else { return };
    const RULE: &str = "Host block device mounted in a container";
    let disk = LoopDisk::new();
    let device = disk.device_option();
    let pos = s.run(&["--privileged", "--device", &device], "mount /dev/hostdisk /mnt && umount /mnt", RULE);
    s.repeat(&["--privileged", "--device", &device], "mount /dev/hostdisk /mnt && umount /mnt", RULE);
    let neg = s.run(&["--privileged"], "mount -t tmpfs scratch /mnt && umount /mnt", RULE);
    assert_rule(RULE, &pos, &neg);
}

#[test]
fn kernel_pseudo_filesystem_mounted_in_a_container() {
    let Some(mut s) = Scenario::start("kernel_pseudo_filesystem_mounted_in_a_container") else { return };
    const RULE: &str = "Kernel pseudo-filesystem mounted in a container";
    let pos = s.run(&["--privileged"], "mkdir /p && mount -t proc proc /p && umount /p", RULE);
    s.repeat(&["--privileged"], "mkdir /p && mount -t proc proc /p && umount /p", RULE);
    let neg = s.run(&["--privileged"], "mount -t tmpfs scratch /mnt && umount /mnt", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("evt.arg.fstype"), "proc");
}

#[test]
fn host_path_bind_mounted_in_a_container() {
    let Some(mut s) = Scenario::start("host_path_bind_mounted_in_a_container") else { return };
    const RULE: &str = "Host path bind-mounted in a container";
    // The node's root mounted where DaemonSets put it, then re-exposed elsewhere.
    let pos = s.run(&["--privileged", "-v", "/:/host:ro"], "mkdir /h && mount -o bind /host/etc /h && umount /h", RULE);
    s.repeat(&["--privileged", "-v", "/:/host:ro"], "mkdir /h && mount -o bind /host/etc /h && umount /h", RULE);
    let neg = s.run(&["--privileged"], "mkdir /a /b && mount -o bind /a /b && umount /b", RULE);
    assert_rule(RULE, &pos, &neg);
}

/// Each step names itself when it fails: the exit code says which one.
/// The unmount is tidiness (the container's mount namespace goes with it): it never fails
/// the run.
const CHROOT_INTO_HOST_DISK: &str = "mount /dev/hostdisk /mnt || exit 11; cp /bin/busybox /mnt/ || exit 12; \
     chroot /mnt /busybox true || exit 13; umount /mnt || echo \"umount failed: $?\" >&2";

#[test]
fn chroot_into_a_host_filesystem_from_a_container() {
    let Some(mut s) = Scenario::start("chroot_into_a_host_filesystem_from_a_container") else { return };
    const RULE: &str = "Chroot into a host filesystem from a container";
    let disk = LoopDisk::new();
    let device = disk.device_option();
    // Short-lived on purpose: the new root's device comes from the kernel at syscall exit,
    // not from /proc after the fact.
    let pos = s.run(&["--privileged", "--device", &device], CHROOT_INTO_HOST_DISK, RULE);
    s.repeat(&["--privileged", "--device", &device], CHROOT_INTO_HOST_DISK, RULE);
    let neg = s.run(&["--privileged"], "chroot / /bin/true", RULE);
    assert_rule(RULE, &pos, &neg);
    let hit = with_rule(&pos.1, RULE)[0];
    assert_eq!(hit.field("fd.name"), "/mnt", "{}", hit.raw);
    assert!(hit.field("fd.dev.major").as_i64().is_some_and(|m| m != 0), "{}", hit.raw);
}

#[test]
fn host_file_written_from_a_container() {
    let Some(mut s) = Scenario::start("host_file_written_from_a_container") else { return };
    const RULE: &str = "Host file written from a container";
    // The host's /etc bind-mounted under another name; opened for writing, nothing written
    // (no O_TRUNC, no write): the open is what is judged.
    let mut opts = helper_mounts();
    opts.extend(["-v".to_string(), "/etc:/anything".to_string()]);
    let pos = s.run(&args(&opts), "/dcea-test-helper open /anything/hostname write", RULE);
    s.repeat(&args(&opts), "/dcea-test-helper open /anything/hostname write", RULE);
    // Benign: a named volume, the container's own overlay and its own runtime files (the
    // hosts file the runtime bind-mounts from its state directory), a read of the host file.
    let volume = docker::unique_name("dcea-vol");
    docker::docker(&["volume", "create", &volume]);
    let mut benign = opts.clone();
    benign.extend(["-v".to_string(), format!("{volume}:/data")]);
    let neg = s.run(
        &args(&benign),
        "echo x > /data/f && echo y > /tmp/f && echo '# test' >> /etc/hosts && cat /anything/hostname >/dev/null",
        RULE,
    );
    let _ = Command::new("docker").args(["volume", "rm", "-f", &volume]).output();
    assert_rule(RULE, &pos, &neg);
    let hit = with_rule(&pos.1, RULE)[0];
    assert_eq!(hit.field("fd.host_path"), "/etc/hostname", "{}", hit.raw);
    assert_eq!(hit.json["priority"], "Critical", "{}", hit.raw);
}

/// A v1 cgroup hierarchy on this host, for the release_agent tests; `None` on cgroup v2-only.
fn cgroup_v1_controller() -> Option<&'static str> {
    ["memory", "pids", "cpu"]
        .into_iter()
        .find(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}/notify_on_release")).exists())
}

#[test]
fn cgroup_release_agent_written_from_a_container() {
    let Some(mut s) = Scenario::start("cgroup_release_agent_written_from_a_container") else { return };
    const RULE: &str = "Cgroup release_agent written from a container";
    let Some(ctrl) = cgroup_v1_controller() else {
        dcea_tests::skip(
            "cgroup_release_agent_written_from_a_container",
            dcea_tests::Need::Kernel,
            "no cgroup v1 hierarchy on this host",
        );
        return;
    };
    // The container's own cgroup: writing its current value back changes nothing on the host.
    let pos = s.run(
        &["--privileged"],
        &format!("f=/sys/fs/cgroup/{ctrl}/notify_on_release; cat $f > /tmp/v && cat /tmp/v > $f"),
        RULE,
    );
    s.repeat(
        &["--privileged"],
        &format!("f=/sys/fs/cgroup/{ctrl}/notify_on_release; cat $f > /tmp/v && cat /tmp/v > $f"),
        RULE,
    );
    let neg = s.run(
        &["--privileged"],
        &format!("ls /sys/fs/cgroup/{ctrl}/ >/dev/null && cat /sys/fs/cgroup/{ctrl}/notify_on_release >/dev/null"),
        RULE,
    );
    assert_rule(RULE, &pos, &neg);
}

#[test]
fn kernel_core_pattern_written() {
    let Some(mut s) = Scenario::start("kernel_core_pattern_written") else { return };
    const RULE: &str = "Kernel core_pattern written";
    let before = fs::read_to_string("/proc/sys/kernel/core_pattern").expect("core_pattern");
    // Writes the current value back: the host setting is unchanged, the write is real.
    let pos = s.run(&["--privileged"], "f=/proc/sys/kernel/core_pattern; cat $f > /tmp/v && cat /tmp/v > $f", RULE);
    s.repeat(&["--privileged"], "f=/proc/sys/kernel/core_pattern; cat $f > /tmp/v && cat /tmp/v > $f", RULE);
    let neg = s.run(&["--privileged"], "cat /proc/sys/kernel/core_pattern >/dev/null", RULE);
    assert_eq!(fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), before, "core_pattern must be unchanged");
    assert_rule(RULE, &pos, &neg);
}

#[test]
fn kernel_parameter_written_from_a_container() {
    let Some(mut s) = Scenario::start("kernel_parameter_written_from_a_container") else { return };
    const RULE: &str = "Kernel parameter written from a container";
    let pos = s.run(&["--privileged"], "f=/proc/sys/vm/swappiness; cat $f > /tmp/v && cat /tmp/v > $f", RULE);
    s.repeat(&["--privileged"], "f=/proc/sys/vm/swappiness; cat $f > /tmp/v && cat /tmp/v > $f", RULE);
    // The container's own UTS namespace: its hostname sysctl is its own business.
    let neg = s.run(&["--privileged"], "f=/proc/sys/kernel/hostname; cat $f > /tmp/v && cat /tmp/v > $f", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("fd.name"), "/proc/sys/vm/swappiness");
}

#[test]
fn container_runtime_socket_connected_from_a_container() {
    let Some(mut s) = Scenario::start("container_runtime_socket_connected_from_a_container") else { return };
    const RULE: &str = "Container runtime socket connected from a container";
    let mut opts = helper_mounts();
    opts.extend(["-v".to_string(), "/var/run/docker.sock:/var/run/docker.sock".to_string()]);
    let pos = s.run(&args(&opts), "/dcea-test-helper connect-unix /var/run/docker.sock", RULE);
    s.repeat(&args(&opts), "/dcea-test-helper connect-unix /var/run/docker.sock", RULE);
    let neg = s.run(&args(&helper_mounts()), "/dcea-test-helper connect-unix /tmp/app.sock; true", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("fd.name"), "/var/run/docker.sock");
}

#[test]
fn kernel_module_loaded_from_a_container() {
    let Some(mut s) = Scenario::start("kernel_module_loaded_from_a_container") else { return };
    const RULE: &str = "Kernel module loaded from a container";
    // A module tool: the helper installed as insmod, which tries finit_module. Its exec fires
    // the rule on every kernel, also where the module syscalls have no tracepoints.
    let mut tool = helper_mounts();
    tool.extend(["--privileged".to_string(), "-v".to_string(), format!("{}:/sbin/insmod:ro", helper_bin().display())]);
    let pos = s.run(&args(&tool), "echo notamodule > /tmp/m.ko && /sbin/insmod /tmp/m.ko", RULE);
    s.repeat(&args(&tool), "echo notamodule > /tmp/m.ko && /sbin/insmod /tmp/m.ko", RULE);
    let neg = s.run(&args(&tool), "cat /proc/modules >/dev/null; /dcea-test-helper open /etc/hostname read", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("proc.name"), "insmod", "{}", with_rule(&pos.1, RULE)[0].raw);
    // The syscall itself, where the kernel has its tracepoint.
    let program = |l: &&String| l.starts_with("dcea: program sys_enter_finit_module ");
    if s.monitor.stderr_lines.iter().filter(program).any(|l| l.contains(" attached")) {
        let mut opts = helper_mounts();
        opts.push("--privileged".into());
        let pos = s.run(&args(&opts), "echo notamodule > /tmp/m.ko && /dcea-test-helper finit-module /tmp/m.ko", RULE);
        s.repeat(&args(&opts), "echo notamodule > /tmp/m.ko && /dcea-test-helper finit-module /tmp/m.ko", RULE);
        assert_rule(RULE, &pos, &neg);
    }
}

#[test]
fn process_outside_the_container_traced() {
    let Some(mut s) = Scenario::start("process_outside_the_container_traced") else { return };
    const RULE: &str = "Process outside the container traced";
    let anchor = HostAnchor::start();
    let mut opts = helper_mounts();
    opts.extend(["--pid=host".to_string(), "--cap-add".to_string(), "SYS_PTRACE".to_string()]);
    let pos = s.run(&args(&opts), &format!("/dcea-test-helper ptrace-attach {}", anchor.pid()), RULE);
    s.repeat(&args(&opts), &format!("/dcea-test-helper ptrace-attach {}", anchor.pid()), RULE);
    let mut own = helper_mounts();
    own.extend(["--cap-add".to_string(), "SYS_PTRACE".to_string()]);
    let neg = s.run(&args(&own), "sleep 5 & /dcea-test-helper ptrace-attach $!; kill $!", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("dcea.target.container.id"), "host");
}

#[test]
fn bpf_syscall_from_a_container() {
    let Some(mut s) = Scenario::start("bpf_syscall_from_a_container") else { return };
    const RULE: &str = "BPF syscall from a container";
    let mut opts = helper_mounts();
    opts.push("--privileged".into());
    let pos = s.run(&args(&opts), "/dcea-test-helper bpf-prog-load", RULE);
    s.repeat(&args(&opts), "/dcea-test-helper bpf-prog-load", RULE);
    let neg = s.run(&args(&opts), "cat /proc/self/status >/dev/null", RULE);
    assert_rule(RULE, &pos, &neg);
    // The same call from the host is not a container's business.
    let st = Command::new(helper_bin()).arg("bpf-prog-load").status().expect("helper");
    assert!(st.success());
    let later = s.monitor.collect(Duration::from_millis(500));
    assert!(with_rule(&later, RULE).is_empty(), "host bpf() raised an alert");
}

#[test]
fn user_or_mount_namespace_created_in_a_container() {
    let Some(mut s) = Scenario::start("user_or_mount_namespace_created_in_a_container") else { return };
    const RULE: &str = "User or mount namespace created in a container";
    let pos = s.run(&["--privileged"], "unshare -m true", RULE);
    s.repeat(&["--privileged"], "unshare -m true", RULE);
    let neg = s.run(&["--privileged"], "unshare -u true", RULE);
    assert_rule(RULE, &pos, &neg);
}

/// Alert priorities that page someone (Falco's names).
const WARNING_OR_ABOVE: &[&str] = &["Warning", "Error", "Critical", "Alert", "Emergency"];

/// A privileged container making its own nested namespaces (Docker-in-Docker, buildkit,
/// bubblewrap, systemd) raises nothing at Warning or above: the namespace rule is a Notice,
/// and the procfs of a PID namespace the container created is not a pseudo-filesystem alert.
#[test]
fn nested_namespaces_in_a_container_stay_below_warning() {
    let Some(mut s) = Scenario::start("nested_namespaces_in_a_container_stay_below_warning") else { return };
    const NS_RULE: &str = "User or mount namespace created in a container";
    for script in [
        "unshare -m sh -c 'mount -t tmpfs scratch /mnt && umount /mnt'",
        "unshare -fp --mount-proc sh -c 'test -r /proc/1/status'",
    ] {
        let (id, alerts) = s.run(&["--privileged"], script, NS_RULE);
        let ns = with_rule(&alerts, NS_RULE);
        assert!(!ns.is_empty(), "the monitor saw no namespace creation for {script} ({id}): {alerts:#?}");
        assert_eq!(ns[0].json["priority"], "Notice", "{}", ns[0].raw);
        let loud: Vec<&str> = alerts
            .iter()
            .filter(|a| a.json["priority"].as_str().is_some_and(|p| WARNING_OR_ABOVE.contains(&p)))
            .map(|a| a.raw.as_str())
            .collect();
        assert!(loud.is_empty(), "benign nested namespaces ({script}) raised: {loud:#?}");
    }
}

#[test]
fn binary_not_in_the_container_image_executed() {
    let Some(mut s) = Scenario::start("binary_not_in_the_container_image_executed") else { return };
    const RULE: &str = "Binary not in the container image executed";
    let pos = s.run(&[], "cp /bin/busybox /tmp/true && /tmp/true && sleep 2", RULE);
    s.repeat(&[], "cp /bin/busybox /tmp/true && /tmp/true && sleep 2", RULE);
    let neg = s.run(&[], "/bin/busybox true", RULE);
    assert_rule(RULE, &pos, &neg);
    assert_eq!(with_rule(&pos.1, RULE)[0].field("proc.exepath"), "/tmp/true");
}

#[test]
fn rules_validate_and_list_from_the_command_line() {
    if !require_root("rules_validate_and_list_from_the_command_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, "- rule: Broken\n  desc: x\n  condition: (evt.type = open and\n  output: x\n  priority: WARNING\n")
        .unwrap();
    let out = Command::new(dcea_tests::dcea_bin()).args(["rules", "validate"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("bad.yaml:3:"), "error names file and line: {text}");
    let out = Command::new(dcea_tests::dcea_bin()).args(["rules", "list", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v.to_string().contains("Shell spawned in a container"));
    let _ = IMAGE;
}

/// The records a stopping monitor says it decoded.
fn records_decoded(stop: &[String]) -> u64 {
    stop.iter()
        .find_map(|l| l.split_once("dcea: stopping: ").and_then(|(_, r)| r.split(' ').next()?.parse().ok()))
        .unwrap_or_else(|| panic!("no stop summary: {stop:?}"))
}

/// The kernel sends a container's unix connects to other sockets than a runtime's only when a
/// rule can match them: none with the default rules (the records stay far below the loop's
/// 2,000 connects), every one with a local rule on such a socket, which then fires.
#[test]
fn unix_connects_reach_the_agent_only_when_a_rule_wants_them() {
    const TEST: &str = "unix_connects_reach_the_agent_only_when_a_rule_wants_them";
    if !require_root(TEST) || !docker::available(TEST) {
        return;
    }
    const CONNECTS: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let _socket = std::os::unix::net::UnixDatagram::bind(dir.path().join("app.sock")).expect("bind");
    let mut opts = helper_mounts();
    opts.extend(["-v".to_string(), format!("{}:/sock", dir.path().display())]);
    let script = format!("/dcea-test-helper connect-loop /sock/app.sock {CONNECTS}");
    let run = |monitor: &mut Monitor| {
        let c = Container::run(&args(&opts), &["sh", "-c", &script]);
        assert_eq!(c.wait(), 0, "{}", c.logs());
        let id = c.id.clone();
        monitor.wait_for(Duration::from_secs(3), |a| a.field("container.id") == id.as_str() && a.rule() == "App socket")
    };

    let mut defaults = Monitor::start(&["--storm-window", "0s"]);
    let (hit, _) = run(&mut defaults);
    assert!(hit.is_none());
    let quiet = records_decoded(&defaults.stop());
    assert!(quiet < CONNECTS / 2, "the default rules got {quiet} records for {CONNECTS} connects to a plain socket");

    let rules = tempfile::tempdir().unwrap();
    let local = "- rule: App socket\n  desc: a connect to the app's socket\n  condition: evt.type = connect and container and fd.name = /sock/app.sock\n  output: app socket (%fd.name)\n  priority: NOTICE\n";
    fs::write(rules.path().join("app.yaml"), local).unwrap();
    let mut wanting = Monitor::start(&["--storm-window", "0s", "--rules-dir", rules.path().to_str().unwrap()]);
    let (hit, _) = run(&mut wanting);
    let hit = hit.expect("the local connect rule fired");
    assert_eq!(hit.field("fd.name"), "/sock/app.sock", "{}", hit.raw);
    let all = records_decoded(&wanting.stop());
    assert!(all >= CONNECTS, "with a rule on the socket every connect is a record: {all} for {CONNECTS}");
}
