//! Runtime integrity: code that did not come from the container's image (fileless, modified,
//! written at run time) and memory written into other processes.
//!
//! The first test needs no container engine (a [`FakeContainer`]), so that it can run on every
//! kernel of the matrix; the others do it for real in Docker containers of the test image, and
//! the last one is the benign negative: ordinary container life raises none of these rules.

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::FileExt,
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use dcea_tests::{
    FakeContainer, Monitor, Received,
    docker::{self, Container, helper_mounts},
    helper_bin, require_root,
};

const FILELESS: &str = "Fileless code run in a container";
const MODIFIED: &str = "Modified image file run in a container";
const LIBRARY: &str = "Shared library not in the container image loaded";
const NOT_IN_IMAGE: &str = "Binary not in the container image executed";
const OUTSIDE_WRITE: &str = "Memory of a process outside the container written";
const INSIDE_WRITE: &str = "Process memory written inside a container";
const CODE_MODIFIED: &str = "Container process code modified in memory";
/// The rules this file is about: none may fire on benign container activity.
const INTEGRITY_RULES: [&str; 7] =
    [FILELESS, MODIFIED, LIBRARY, NOT_IN_IMAGE, OUTSIDE_WRITE, INSIDE_WRITE, CODE_MODIFIED];
/// Alert priorities that page someone (Falco's names).
const WARNING_OR_ABOVE: &[&str] = &["Warning", "Error", "Critical", "Alert", "Emergency"];
/// What the helper's vm-write and proc-mem-write put into a target.
const PAYLOAD: &[u8; 8] = b"dcea-pwn";

/// A monitor that judges detection (no storm control folding repeats away) with a measurement
/// pass every 2 s; `extra` flags after those.
fn start_monitor(extra: &[&str]) -> Monitor {
    let mut args = vec!["--storm-window", "0s", "--integrity-interval", "2"];
    args.extend_from_slice(extra);
    Monitor::start(&args)
}

fn raws(log: &[Received]) -> Vec<&str> {
    log.iter().map(|a| a.raw.as_str()).collect()
}

/// The first alert of `rule` that `pred` accepts within `timeout`; it and everything read
/// before it go to `log`, which the panic shows.
fn expect(
    monitor: &mut Monitor,
    log: &mut Vec<Received>,
    rule: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Received) -> bool,
) -> Received {
    let (hit, seen) = monitor.wait_for(timeout, |a| a.rule() == rule && pred(a));
    log.extend(seen);
    let hit = hit.unwrap_or_else(|| panic!("no '{rule}' alert {what} within {timeout:?}; got {:#?}", raws(log)));
    log.push(hit.clone());
    hit
}

/// [`expect`] for an alert about container `id`.
fn expect_in(monitor: &mut Monitor, log: &mut Vec<Received>, rule: &str, id: &str) -> Received {
    expect(monitor, log, rule, Duration::from_secs(5), &format!("for container {id}"), |a| {
        a.field("container.id") == id
    })
}

/// The alerts in `log` of `rule` for which `pred` holds, as raw lines.
fn matching<'a>(log: &'a [Received], rule: &str, pred: impl Fn(&Received) -> bool) -> Vec<&'a str> {
    log.iter().filter(|a| a.rule() == rule && pred(a)).map(|a| a.raw.as_str()).collect()
}

/// `dcea.integrity` of a default rule's alert: where the rule's output does not carry the
/// field, its condition (`dcea.integrity = …`) firing is the verdict; a wrong value never is.
fn assert_integrity(alert: &Received, verdict: &str) {
    let v = alert.field("dcea.integrity");
    assert!(v.is_null() || v == verdict, "dcea.integrity {verdict}: {}", alert.raw);
}

fn assert_priority(alert: &Received, priority: &str) {
    assert_eq!(alert.json["priority"], priority, "{}", alert.raw);
}

/// A hex address as the agent and the helper print it, with or without `0x`.
fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("hex address {s:?}: {e}"))
}

/// `dcea-test-helper hold-target`: a process to inject into, which stays until dropped.
struct HoldTarget {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    /// A page-aligned writable buffer in it.
    buffer: u64,
    /// A function in its text that never runs.
    code: u64,
}

impl HoldTarget {
    fn on_host() -> HoldTarget {
        let mut cmd = Command::new(helper_bin());
        cmd.arg("hold-target");
        HoldTarget::spawn(cmd)
    }

    fn in_container(container: &FakeContainer) -> HoldTarget {
        HoldTarget::spawn(container.command(&helper_bin(), &["hold-target"]))
    }

    /// Spawn `cmd` (a hold-target) and read its `pid= buffer= code=` line.
    fn spawn(mut cmd: Command) -> HoldTarget {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn hold-target");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("hold-target's line");
        let value = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {key}= in hold-target's line {line:?}"))
        };
        let pid = value("pid").parse().expect("pid");
        let (buffer, code) = (hex(value("buffer")), hex(value("code")));
        HoldTarget { child, stdin, pid, buffer, code }
    }

    /// `len` bytes at `addr` in the target, read by the test (a host process) from /proc.
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let path = format!("/proc/{}/mem", self.pid);
        let mem = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut out = vec![0; len];
        mem.read_exact_at(&mut out, addr).unwrap_or_else(|e| panic!("{path} at {addr:#x}: {e}"));
        out
    }
}

impl Drop for HoldTarget {
    /// Closing stdin ends it; killed (our own child, by its handle) if it does not go.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local rules file in `dir` that reports every executable mapping of a file under `dir`
/// (`scratch`) by a container, by mmap or by mprotect.
fn mapping_rule(dir: &Path, scratch: &str) -> &'static str {
    const RULE: &str = "Test file mapped executable in a container";
    let yaml = format!(
        "- rule: {RULE}\n  desc: the test's own files mapped PROT_EXEC\n  \
         condition: 'evt.type in (mmap, mprotect) and container and fd.name startswith \"{scratch}/\"'\n  \
         output: mapped (file=%fd.name integrity=%dcea.integrity container=%container.id)\n  priority: NOTICE\n"
    );
    fs::write(dir.join("mapping.yaml"), yaml).expect("write local rules");
    RULE
}

/// Fileless execution, an executable mapping, memory writes into a host process and code
/// patched into a neighbour, all done in a fake container; the same fileless execution on the
/// host raises nothing.
#[test]
fn integrity_records_and_injection_rules_in_a_fake_container() {
    const TEST: &str = "integrity_records_and_injection_rules_in_a_fake_container";
    if !require_root(TEST) {
        return;
    }
    let Some(container) = FakeContainer::create(TEST) else { return };
    let id = container.id.clone();
    let helper = helper_bin();
    let scratch = tempfile::tempdir().expect("tempdir");
    let rules = tempfile::tempdir().expect("rules dir");
    let library = scratch.path().join("lib.so");
    let library = library.to_str().unwrap();
    let protected = scratch.path().join("protected.so");
    let protected = protected.to_str().unwrap();
    let mapping = mapping_rule(rules.path(), scratch.path().to_str().unwrap());
    let mut monitor = start_monitor(&["--rules-dir", rules.path().to_str().unwrap()]);
    let mut log = Vec::new();

    // Negative first: a host process running code from a memfd is not a container.
    let out = Command::new(&helper).args(["memfd-exec", "/bin/true"]).output().expect("spawn");
    assert!(out.status.success(), "memfd-exec on the host: {out:?}");

    container.run(&helper, &["memfd-exec", "/bin/true"]);
    let alert = expect_in(&mut monitor, &mut log, FILELESS, &id);
    assert_integrity(&alert, "fileless");
    assert_priority(&alert, "Critical");

    // The fake container's root is the host's, not an overlay: no image to judge against,
    // so the record arrives (it is the kernel side that is tested here) without a verdict.
    container.run(&helper, &["write-mmap-exec", library]);
    let alert = expect_in(&mut monitor, &mut log, mapping, &id);
    assert_eq!(alert.field("fd.name"), library, "{}", alert.raw);
    assert_eq!(alert.field("evt.type"), "mmap", "{}", alert.raw);
    assert!(alert.field("dcea.integrity").is_null(), "{}", alert.raw);
    // Mapped readable, then made executable: the mprotect record names the same kind of file.
    container.run(&helper, &["write-mprotect-exec", protected]);
    let alert = expect_in(&mut monitor, &mut log, mapping, &id);
    assert_eq!(alert.field("fd.name"), protected, "{}", alert.raw);
    assert_eq!(alert.field("evt.type"), "mprotect", "{}", alert.raw);

    // Memory of a host process, written both ways; the writes land.
    let host = HoldTarget::on_host();
    let (pid, buffer) = (host.pid.to_string(), format!("{:x}", host.buffer));
    container.run(&helper, &["vm-write", &pid, &buffer]);
    let outside =
        |a: &Received| a.field("container.id") == id.as_str() && a.field("evt.arg.pid") == u64::from(host.pid);
    let first = expect(&mut monitor, &mut log, OUTSIDE_WRITE, Duration::from_secs(5), "for vm-write", outside);
    container.run(&helper, &["proc-mem-write", &pid, &format!("{:x}", host.buffer + 8)]);
    let second = expect(&mut monitor, &mut log, OUTSIDE_WRITE, Duration::from_secs(5), "for proc-mem-write", outside);
    for alert in [&first, &second] {
        assert_eq!(alert.field("dcea.target.container.id"), "host", "{}", alert.raw);
        assert_priority(alert, "Critical");
    }
    assert_eq!(host.read(host.buffer, 16), [&PAYLOAD[..], &PAYLOAD[..]].concat(), "both writes landed");

    // Code of a process in the same container patched with ptrace; its neighbour stays clean.
    let target = HoldTarget::in_container(&container);
    let neighbour = HoldTarget::in_container(&container);
    container.run(&helper, &["poke-text", &target.pid.to_string(), &format!("{:x}", target.code)]);
    let alert = expect(&mut monitor, &mut log, INSIDE_WRITE, Duration::from_secs(5), "for poke-text", |a| {
        a.field("container.id") == id.as_str() && a.field("evt.arg.pid") == u64::from(target.pid)
    });
    assert_priority(&alert, "Error");
    let alert = expect(&mut monitor, &mut log, CODE_MODIFIED, Duration::from_secs(10), "for the patched target", |a| {
        a.field("proc.pid") == u64::from(target.pid)
    });
    assert_code_modified(&alert, &id, target.code);

    // Two more measurement passes: nothing about the neighbour or the host process.
    log.extend(monitor.collect(Duration::from_secs(5)));
    let stopped = monitor.stop().join("\n");
    assert!(stopped.contains("0 decode errors"), "{stopped}");
    let about = |pid: u32| move |a: &Received| a.field("proc.pid") == u64::from(pid);
    assert!(matching(&log, CODE_MODIFIED, about(neighbour.pid)).is_empty(), "the neighbour: {:#?}", raws(&log));
    assert!(matching(&log, CODE_MODIFIED, about(host.pid)).is_empty(), "a host process: {:#?}", raws(&log));
    let into_host = |a: &Received| a.field("evt.arg.pid") == u64::from(host.pid);
    assert!(matching(&log, INSIDE_WRITE, into_host).is_empty(), "the host is not inside: {:#?}", raws(&log));
    let elsewhere = |a: &Received| a.field("container.id") != id.as_str();
    assert!(matching(&log, FILELESS, elsewhere).is_empty(), "the host's memfd exec: {:#?}", raws(&log));
    let here = |a: &Received| a.field("container.id") == id.as_str();
    for rule in [LIBRARY, NOT_IN_IMAGE, MODIFIED] {
        assert!(matching(&log, rule, here).is_empty(), "'{rule}' without an image: {:#?}", raws(&log));
    }
}

/// The measurement pass's alert names the process, its text mapping and the patched page.
fn assert_code_modified(alert: &Received, container: &str, code: u64) {
    assert_eq!(alert.field("container.id"), container, "{}", alert.raw);
    assert_priority(alert, "Critical");
    let path = alert.field("dcea.mapping.path").as_str().unwrap_or("");
    assert!(path.ends_with("dcea-test-helper"), "the helper's text mapping: {}", alert.raw);
    let range = alert.field("dcea.mapping.range").as_str().unwrap_or("");
    let (start, end) = range.split_once('-').unwrap_or_else(|| panic!("range {range:?}: {}", alert.raw));
    assert!((hex(start)..hex(end)).contains(&code), "the mapping holds {code:#x}: {}", alert.raw);
    let first_page = alert.field("dcea.mapping.first_page").as_str().unwrap_or("");
    assert_eq!(hex(first_page), code & !0xfff, "the patched page: {}", alert.raw);
}

// --- Docker --------------------------------------------------------------------------------

/// A monitor, when this host can run the Docker tests (else a counted SKIP).
fn docker_monitor(test: &str) -> Option<Monitor> {
    (require_root(test) && docker::available(test)).then(|| start_monitor(&[]))
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `sh -c script` in a new container with `extra` docker options, run to completion (exit 0);
/// the container (removed when dropped) and what it printed.
fn run_script(extra: &[String], script: &str) -> (Container, String) {
    let c = Container::run(&args(extra), &["sh", "-c", script]);
    let code = c.wait();
    let logs = c.logs();
    assert_eq!(code, 0, "container script failed ({code}): {script}\n{logs}");
    (c, logs)
}

/// `key=value` from a container's output.
fn printed<'a>(logs: &'a str, key: &str) -> &'a str {
    logs.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or_else(|| panic!("no {key}= in {logs}"))
}

/// The image's /bin/busybox with its last byte changed, put in its place (a rename: writing
/// the file in place is ETXTBSY while the script's own shell runs it); then /bin/ls, one of
/// its applet links, is run. Prints both hashes first, so /bin/ls is the last exec.
const MODIFY_BUSYBOX: &str = r#"set -e
echo image=$(sha256sum /bin/busybox | cut -d ' ' -f 1)
cp /bin/busybox /tmp/b
n=$(stat -c %s /tmp/b)
if [ "$(tail -c 1 /tmp/b | od -An -tu1 | tr -d ' ')" = 255 ]; then b='\001'; else b='\377'; fi
printf "$b" | dd of=/tmp/b bs=1 seek=$((n - 1)) conv=notrunc 2>/dev/null
echo modified=$(sha256sum /tmp/b | cut -d ' ' -f 1)
cp /tmp/b /bin/busybox.new
mv /bin/busybox.new /bin/busybox
/bin/ls / >/dev/null"#;

#[test]
fn a_modified_image_binary_is_reported_with_both_hashes() {
    const TEST: &str = "a_modified_image_binary_is_reported_with_both_hashes";
    let Some(mut monitor) = docker_monitor(TEST) else { return };
    let mut log = Vec::new();
    let (c, logs) = run_script(&[], MODIFY_BUSYBOX);
    let (image, modified) = (printed(&logs, "image"), printed(&logs, "modified"));
    assert_ne!(image, modified, "the change made a different file");
    let alert = expect_in(&mut monitor, &mut log, MODIFIED, &c.id);
    // /bin/ls is a symlink in the test image: the program the kernel ran is /bin/busybox.
    let file = [alert.field("fd.name"), alert.field("proc.exepath")];
    assert!(file.iter().any(|f| *f == "/bin/busybox"), "the modified file: {}", alert.raw);
    assert_eq!(alert.field("dcea.integrity.image_sha256"), image, "{}", alert.raw);
    assert_eq!(alert.field("dcea.integrity.sha256"), modified, "{}", alert.raw);
    assert_integrity(&alert, "modified");
    assert_priority(&alert, "Critical");
    log.extend(monitor.collect(Duration::from_millis(500)));
    let here = |a: &Received| a.field("container.id") == c.id.as_str();
    assert!(matching(&log, NOT_IN_IMAGE, here).is_empty(), "a modified image file is not new: {:#?}", raws(&log));
}

#[test]
fn a_library_written_at_run_time_and_mapped_executable_is_reported() {
    const TEST: &str = "a_library_written_at_run_time_and_mapped_executable_is_reported";
    let Some(mut monitor) = docker_monitor(TEST) else { return };
    let mut log = Vec::new();
    // The helper and the host libraries ld.so maps for it are bind mounts: outside-image.
    let (c, _) = run_script(&helper_mounts(), "/dcea-test-helper write-mmap-exec /tmp/libinjected.so");
    let alert = expect_in(&mut monitor, &mut log, LIBRARY, &c.id);
    assert_eq!(alert.field("fd.name"), "/tmp/libinjected.so", "{}", alert.raw);
    assert_priority(&alert, "Critical");
    log.extend(monitor.collect(Duration::from_millis(500)));
    let other = |a: &Received| a.field("container.id") == c.id.as_str() && a.field("fd.name") != "/tmp/libinjected.so";
    assert!(matching(&log, LIBRARY, other).is_empty(), "bind-mounted libraries: {:#?}", raws(&log));
    let here = |a: &Received| a.field("container.id") == c.id.as_str();
    assert!(matching(&log, NOT_IN_IMAGE, here).is_empty(), "a bind-mounted helper: {:#?}", raws(&log));
}

#[test]
fn a_library_mapped_readable_then_made_executable_is_reported() {
    const TEST: &str = "a_library_mapped_readable_then_made_executable_is_reported";
    let Some(mut monitor) = docker_monitor(TEST) else { return };
    let mut log = Vec::new();
    let (c, _) = run_script(&helper_mounts(), "/dcea-test-helper write-mprotect-exec /tmp/libprotected.so");
    let alert = expect_in(&mut monitor, &mut log, LIBRARY, &c.id);
    assert_eq!(alert.field("fd.name"), "/tmp/libprotected.so", "{}", alert.raw);
    assert_eq!(alert.field("evt.type"), "mprotect", "past the mmap hook: {}", alert.raw);
    assert_priority(&alert, "Critical");
}

#[test]
fn memfd_exec_in_a_container_is_fileless() {
    const TEST: &str = "memfd_exec_in_a_container_is_fileless";
    let Some(mut monitor) = docker_monitor(TEST) else { return };
    let mut log = Vec::new();
    let (c, _) = run_script(&helper_mounts(), "/dcea-test-helper memfd-exec /bin/true");
    let alert = expect_in(&mut monitor, &mut log, FILELESS, &c.id);
    assert_integrity(&alert, "fileless");
    assert_priority(&alert, "Critical");
}

#[test]
fn a_pid_host_container_writing_host_process_memory_is_critical() {
    const TEST: &str = "a_pid_host_container_writing_host_process_memory_is_critical";
    let Some(mut monitor) = docker_monitor(TEST) else { return };
    let mut log = Vec::new();
    let host = HoldTarget::on_host();
    let mut opts = helper_mounts();
    opts.extend(["--pid=host", "--cap-add", "SYS_PTRACE"].map(String::from));
    let script = format!(
        "/dcea-test-helper proc-mem-write {pid} {a:x} && /dcea-test-helper vm-write {pid} {b:x}",
        pid = host.pid,
        a = host.buffer,
        b = host.buffer + 8
    );
    let (c, _) = run_script(&opts, &script);
    let into_host =
        |a: &Received| a.field("container.id") == c.id.as_str() && a.field("evt.arg.pid") == u64::from(host.pid);
    for what in ["for proc-mem-write", "for vm-write"] {
        let alert = expect(&mut monitor, &mut log, OUTSIDE_WRITE, Duration::from_secs(5), what, into_host);
        assert_eq!(alert.field("dcea.target.container.id"), "host", "{}", alert.raw);
        assert_priority(&alert, "Critical");
    }
    assert_eq!(host.read(host.buffer, 16), [&PAYLOAD[..], &PAYLOAD[..]].concat(), "both writes landed");
}

/// A library of the host's, mapped by the test process itself (its libc).
fn host_library() -> String {
    let maps = fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.starts_with('/') && p.contains("/libc.so"))
        .unwrap_or_else(|| panic!("no libc mapped: {maps}"))
        .to_string()
}

/// Image binaries, a shell, `docker exec`, a restart and a bind-mounted library mapped
/// executable (outside-image) over two measurement passes: none of the integrity rules.
#[test]
fn benign_container_activity_raises_nothing_at_warning_or_above() {
    const TEST: &str = "benign_container_activity_raises_nothing_at_warning_or_above";
    let Some(mut monitor) = docker_monitor(TEST) else { return };
    let c = Container::run(&args(&helper_mounts()), &["sleep", "120"]);
    c.exec(&["ls", "/"]);
    c.exec(&["sh", "-c", "cat /etc/passwd >/dev/null && ls /bin >/dev/null"]);
    c.exec(&["cat", "/etc/passwd"]);
    // The agent watches this container: the shell is a Notice of the default set.
    let mine = |a: &Received| a.field("container.id") == c.id.as_str();
    let mut log = Vec::new();
    expect(&mut monitor, &mut log, "Shell spawned in a container", Duration::from_secs(5), "(liveness)", mine);
    docker::docker(&["restart", "-t", "1", &c.id]);
    c.exec(&["/dcea-test-helper", "mmap-exec", &host_library()]);
    c.exec(&["sh", "-c", "ls / >/dev/null"]);
    log.extend(monitor.collect(Duration::from_secs(5)));
    let loud: Vec<&str> = log
        .iter()
        .filter(|a| a.field("container.id") == c.id.as_str() && INTEGRITY_RULES.contains(&a.rule()))
        .filter(|a| a.json["priority"].as_str().is_some_and(|p| WARNING_OR_ABOVE.contains(&p)))
        .map(|a| a.raw.as_str())
        .collect();
    assert!(loud.is_empty(), "benign container activity raised: {loud:#?}");
}
