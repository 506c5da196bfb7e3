//! The commit_creds hook and the credential/namespace integrity checks, as root with the real
//! kernel programs.
//!
//! The commit_creds hook needs fentry or kprobes. Kernels that refuse both (this development
//! host: fentry EPERM, CONFIG_KPROBES off) make the hook tests print SKIP after reading the
//! agent's start-up report; `cargo xtask vm-test` runs them on 5.10, 6.1 and 6.12, where both
//! hooks load. The integrity tests simulate a kernel exploit by rewriting the agent's record of
//! a task (see `dcea_tests::task_map`): no test can write `task->real_cred` without a kernel
//! module, and the kernel-side comparison is symmetric.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::Duration,
};

use dcea_common::{NsKind, TASK_CREDS_TRACKED};
use dcea_tests::{ESCAPE_RULE, Monitor, Received, helper_bin, require_root, task_map};

const ESCALATION_RULE: &str = "Container process gained privileges";
const CRED_TAMPER_RULE: &str = "Credentials changed outside commit_creds";
const NS_TAMPER_RULE: &str = "Namespaces changed outside namespace syscalls";

/// Start the agent with `--commit-creds hook`; None (after printing SKIP with the report's
/// reasons) when that hook cannot attach on this kernel.
fn monitor_with_hook(test: &str, hook: &str) -> Option<Monitor> {
    let monitor = Monitor::start(&["--commit-creds", hook]);
    let attached = monitor.report_value("commit_creds hook").unwrap_or_default();
    if hook != "auto" && attached == hook || hook == "auto" && attached != "unavailable" {
        return Some(monitor);
    }
    let reasons: Vec<String> = monitor
        .stderr_lines
        .iter()
        .filter_map(|l| l.strip_prefix("dcea: program commit_creds_"))
        .map(|l| {
            // "<kind> <attach type> commit_creds <status> (<why>)" -> "<kind>: <status> (<why>)"
            let words: Vec<&str> = l.split_whitespace().collect();
            format!("{}: {}", words[0], words.get(3..).unwrap_or_default().join(" "))
        })
        .collect();
    dcea_tests::skip(
        test,
        dcea_tests::Need::Kernel,
        &format!("commit_creds hook cannot load on this kernel ({})", reasons.join("; ")),
    );
    None
}

/// Run the helper; returns the pid it printed and its stdout.
fn helper(args: &[&str]) -> (u32, String) {
    let out = Command::new(helper_bin()).args(args).output().expect("spawn helper");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "helper {args:?}: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    let pid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("helper {args:?} printed no pid: {stdout}"));
    (pid, stdout)
}

fn pid_of(alert: &Received) -> u64 {
    alert.field("proc.pid").as_u64().unwrap_or(0)
}

fn raw(alerts: &[Received]) -> Vec<&str> {
    alerts.iter().map(|a| a.raw.as_str()).collect()
}

/// A containerised task gains euid 0 through commit_creds → one escalation alert naming it;
/// the same on the host → none.
fn root_gain_in_container_is_alerted(test: &str, hook: &str) {
    if !require_root(test) {
        return;
    }
    let Some(mut monitor) = monitor_with_hook(test, hook) else { return };
    let (host_pid, _) = helper(&["creds-dance", "host"]);
    let (pid, _) = helper(&["creds-dance", "container"]);
    let (alert, before) =
        monitor.wait_for(Duration::from_secs(5), |a| a.rule() == ESCALATION_RULE && pid_of(a) == u64::from(pid));
    let alert = alert.unwrap_or_else(|| panic!("{test}: no escalation alert for pid {pid}; got {:?}", raw(&before)));
    assert_eq!(alert.field("evt.type"), "commit_creds", "{}", alert.raw);
    assert_eq!(alert.field("dcea.cred.euid.from"), 1000, "{}", alert.raw);
    assert_eq!(alert.field("dcea.cred.euid.to"), 0, "{}", alert.raw);
    assert_eq!(alert.json["priority"], "Critical");
    assert_eq!(alert.field("proc.name"), "dcea-test-helpe");
    let mut all = before;
    all.extend(monitor.collect(Duration::from_millis(700)));
    assert!(
        !all.iter().any(|a| pid_of(a) == u64::from(host_pid)),
        "the host process's identical setresuid must not alert: {:?}",
        raw(&all)
    );
    assert!(
        !all.iter().any(|a| a.rule() == CRED_TAMPER_RULE || a.rule() == NS_TAMPER_RULE),
        "setresuid is a legitimate commit_creds: {:?}",
        raw(&all)
    );
    let stopped = monitor.stop().join("\n");
    assert!(stopped.contains("0 decode errors"), "{stopped}");
}

#[test]
fn commit_creds_fentry_reports_root_gain_in_container() {
    root_gain_in_container_is_alerted("commit_creds_fentry_reports_root_gain_in_container", "fentry");
}

#[test]
fn commit_creds_kprobe_fallback_reports_root_gain_in_container() {
    root_gain_in_container_is_alerted("commit_creds_kprobe_fallback_reports_root_gain_in_container", "kprobe");
}

/// Legitimate credential changes — setuid-root exec, an `su`-like switch to root, setresuid —
/// on the host and in a fake container: never an integrity alert. With the commit_creds hook
/// the container's setuid exec is an escalation (that is what the rule is for); the host's is
/// not.
#[test]
fn setuid_exec_su_and_setresuid_are_not_tampering() {
    let test = "setuid_exec_su_and_setresuid_are_not_tampering";
    if !require_root(test) {
        return;
    }
    let mut monitor = Monitor::start(&[]);
    let hook = monitor.report_value("commit_creds hook").unwrap_or_default() != "unavailable";
    // A setuid-root copy of the helper where uid 1000 can reach it: the checkout may be under a
    // mode-0700 directory, and /tmp may be nosuid.
    let dir = dcea_tests::shared_tempdir();
    let suid = dir.path().join("suid-helper");
    std::fs::copy(helper_bin(), &suid).expect("copy helper");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    let suid = suid.to_str().expect("utf-8 path");

    let (host_su, out) = helper(&["run-as", "1000", "host", suid, "su-like", "true"]);
    assert!(out.contains("ids=1000/0/0"), "the setuid exec must give euid 0 (nosuid mount?): {out}");
    let (container_su, out) = helper(&["run-as", "1000", "container", suid, "su-like", "true"]);
    assert!(out.contains("ids=1000/0/0"), "{out}");
    let (host_dance, _) = helper(&["creds-dance", "host"]);
    let (container_dance, _) = helper(&["creds-dance", "container"]);

    let alerts = monitor.collect(Duration::from_millis(1500));
    let integrity: Vec<&Received> =
        alerts.iter().filter(|a| [CRED_TAMPER_RULE, NS_TAMPER_RULE, ESCAPE_RULE].contains(&a.rule())).collect();
    assert!(integrity.is_empty(), "legitimate credential changes raised integrity alerts: {:?}", raw(&alerts));
    let escalated = |pid: u32| alerts.iter().any(|a| a.rule() == ESCALATION_RULE && pid_of(a) == u64::from(pid));
    assert!(!escalated(host_su) && !escalated(host_dance), "host tasks never escalate: {:?}", raw(&alerts));
    if hook {
        assert!(escalated(container_su), "setuid-root exec in a container: {:?}", raw(&alerts));
        assert!(escalated(container_dance), "setresuid(0,0,0) in a container: {:?}", raw(&alerts));
    } else {
        assert!(alerts.is_empty(), "no commit_creds hook, no credential alerts: {:?}", raw(&alerts));
    }
    monitor.stop();
}

/// A helper task that waits (tracked by the agent) until the test has rewritten its record,
/// then makes one namespace syscall.
struct Waiting {
    child: std::process::Child,
    pid: u32,
}

impl Waiting {
    fn start(place: &str) -> Waiting {
        let mut child = Command::new(helper_bin())
            .args(["wait-then-unshare", place])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        // `pid=N` from the parent, `ready` from the child once it is back in user space (a
        // record rewritten earlier would be checked at fork's own syscall exit instead).
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let (mut pid, mut ready) = (None, false);
        while pid.is_none() || !ready {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("helper output") == 0 {
                panic!("helper exited before it was ready");
            }
            match line.trim() {
                "ready" => ready = true,
                l => pid = pid.or_else(|| l.strip_prefix("pid=").and_then(|p| p.parse().ok())),
            }
        }
        Waiting { child, pid: pid.expect("pid=N") }
    }

    fn go(mut self) {
        self.child.stdin.as_mut().expect("stdin").write_all(b"go\n").expect("signal helper");
        let status = self.child.wait().expect("wait helper");
        assert!(status.success(), "helper: {status}");
    }
}

/// `task->real_cred` swapped for another cred (the `current->cred = &init_cred` exploit
/// pattern) and a cred's ids overwritten in place (`cred->euid = 0`): both caught at the next
/// syscall entry.
#[test]
fn credentials_changed_outside_commit_creds_are_alerted() {
    let test = "credentials_changed_outside_commit_creds_are_alerted";
    if !require_root(test) {
        return;
    }
    let Some(mut monitor) = monitor_with_hook(test, "auto") else { return };
    let mut tasks = task_map::of_agent(monitor.pid());

    // The record says: uid 1000 at another cred. The task is root at its own cred.
    let replaced = Waiting::start("container");
    let mut state = task_map::record(&tasks, replaced.pid);
    assert_ne!(state.flags & TASK_CREDS_TRACKED, 0, "a task forked after the hook attached is checked");
    state.cred ^= 0x40;
    (state.snap.uid, state.snap.euid, state.snap.cap_effective) = (1000, 1000, 0);
    tasks.insert(replaced.pid, state, 0).expect("rewrite record");
    let replaced_pid = replaced.pid;
    replaced.go();

    // The record says uid 1000 at the task's own cred: the ids behind the pointer changed.
    let in_place = Waiting::start("host");
    let mut state = task_map::record(&tasks, in_place.pid);
    (state.snap.euid, state.snap.cap_effective) = (1000, 0);
    tasks.insert(in_place.pid, state, 0).expect("rewrite record");
    let in_place_pid = in_place.pid;
    in_place.go();

    for (pid, how) in [(replaced_pid, "real_cred replaced"), (in_place_pid, "ids written in place")] {
        let (alert, seen) =
            monitor.wait_for(Duration::from_secs(5), |a| a.rule() == CRED_TAMPER_RULE && pid_of(a) == u64::from(pid));
        let alert =
            alert.unwrap_or_else(|| panic!("no '{CRED_TAMPER_RULE}' alert for {pid} ({how}): {:?}", raw(&seen)));
        assert_eq!(alert.field("dcea.cred.tampered"), &serde_json::json!([how]), "{}", alert.raw);
        assert_eq!(alert.field("dcea.cred.euid.from"), 1000, "{}", alert.raw);
        assert_eq!(alert.field("dcea.cred.euid.to"), 0, "{}", alert.raw);
        assert_eq!(alert.field("evt.type"), "unshare");
        assert_eq!(alert.field("dcea.at_syscall_entry"), true);
        assert_eq!(alert.json["priority"], "Critical");
        assert!(alert.json["tags"].as_array().unwrap().iter().any(|t| t == "kernel_exploit"), "{}", alert.raw);
    }
    // Reported once per task: the exit and later syscalls of the same tasks add nothing.
    let more = monitor.collect(Duration::from_millis(500));
    assert!(!more.iter().any(|a| a.rule() == CRED_TAMPER_RULE), "{:?}", raw(&more));
    monitor.stop();
}

/// `switch_task_namespaces(current, &init_nsproxy)` from a container task: the record says
/// "in a container", the task is in the host's namespaces, and no namespace syscall moved it.
/// Needs no commit_creds hook: runs on every kernel.
#[test]
fn nsproxy_swapped_without_a_syscall_is_an_escape() {
    let test = "nsproxy_swapped_without_a_syscall_is_an_escape";
    if !require_root(test) {
        return;
    }
    let mut monitor = Monitor::start(&[]);
    let mut tasks = task_map::of_agent(monitor.pid());
    let task = Waiting::start("host");
    let mut state = task_map::record(&tasks, task.pid);
    state.nsproxy ^= 0x40;
    for kind in [NsKind::Mnt, NsKind::Pid, NsKind::PidForChildren, NsKind::Net, NsKind::Uts, NsKind::Ipc] {
        state.snap.ns[kind.index()] = 4_026_539_000 + kind as u32;
    }
    tasks.insert(task.pid, state, 0).expect("rewrite record");
    let pid = task.pid;
    task.go();
    let (alert, seen) =
        monitor.wait_for(Duration::from_secs(5), |a| a.rule() == ESCAPE_RULE && pid_of(a) == u64::from(pid));
    let alert = alert.unwrap_or_else(|| panic!("no escape alert for {pid}: {:?}", raw(&seen)));
    assert_eq!(alert.field("dcea.unexplained"), true, "{}", alert.raw);
    assert_eq!(alert.field("dcea.at_syscall_entry"), true, "{}", alert.raw);
    assert_eq!(alert.field("evt.type"), "unshare");
    let entered: Vec<&str> =
        alert.field("dcea.ns.entered_host").as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    // A task's own pid namespace hangs off its struct pid, not the nsproxy: it stays.
    assert_eq!(entered, ["mnt", "pid_for_children", "net", "uts", "ipc"], "{}", alert.raw);
    assert!(alert.json["output"].as_str().unwrap().contains("without a namespace syscall"), "{}", alert.raw);
    monitor.stop();
}
