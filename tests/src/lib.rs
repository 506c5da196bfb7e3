//! Harness for dcea's privileged end-to-end tests: start the real agent, do the real thing,
//! read the real alerts.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod bench;
pub mod containerd;
pub mod disk;
pub mod docker;
pub mod k8s;
pub mod netns;
pub mod skip;
pub mod systemd;
pub mod task_map;

pub use skip::{Need, skip};

/// True when the test may run as root; records a skip otherwise.
pub fn require_root(test: &str) -> bool {
    dcea_user::sys::is_root()
        || skip(test, Need::Root, "needs root (loads eBPF programs); run `cargo xtask test` as root")
}

fn mounted_nosuid(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return true };
    // SAFETY: a NUL-terminated path and a zeroed out-struct of the right type.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0) || st.f_flag & libc::ST_NOSUID != 0
}

/// A directory every user can reach, on a filesystem that honours setuid: tests that run code
/// as another user put it here (the checkout may sit under a mode-0700 home or temp dir).
pub fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let reachable = |dir: &std::path::Path| {
        dir.ancestors().all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
            && !mounted_nosuid(dir)
    };
    let base = ["/var/tmp", "/tmp", "/var/lib"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|d| reachable(d))
        .unwrap_or_else(|| panic!("no world-traversable directory without nosuid among /var/tmp, /tmp, /var/lib"));
    let dir = tempfile::Builder::new().prefix("dcea-test-").tempdir_in(base).expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    dir
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The dcea binary under test: $DCEA_BIN (set by `cargo xtask test`), else the debug build.
pub fn dcea_bin() -> PathBuf {
    std::env::var_os("DCEA_BIN").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target/debug/dcea"))
}

/// The test helper binary built beside the tests (target/<profile>/) or the benchmarks.
pub fn helper_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // tests run from target/<profile>/deps/, binaries from target/<profile>/
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|d| d.join("dcea-test-helper")).collect();
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| {
        panic!("dcea-test-helper missing (looked at {candidates:?}): build with `cargo build -p dcea-tests --bins`")
    })
}

pub use dcea_user::sys::monotonic_ns;

/// One alert line with the CLOCK_MONOTONIC time the harness read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub json: Value,
    pub raw: String,
    pub read_at_ns: u64,
}

impl Received {
    pub fn rule(&self) -> &str {
        self.json["rule"].as_str().unwrap_or("")
    }

    pub fn field(&self, name: &str) -> &Value {
        &self.json["output_fields"][name]
    }
}

/// How long the agent may take to load: $DCEA_TEST_READY_SECS (the VM matrix raises it for
/// emulated guests, where verification is ~10x slower), else 60 s.
pub fn ready_timeout() -> Duration {
    let secs = std::env::var("DCEA_TEST_READY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

/// A running `dcea monitor`.
pub struct Monitor {
    child: Child,
    alerts: Receiver<Received>,
    stderr: Receiver<String>,
    pub stderr_lines: Vec<String>,
}

pub const ESCAPE_RULE: &str = "Container escape into host namespace";

impl Monitor {
    /// Start `dcea monitor` with `args` and wait for its ready line.
    pub fn start(args: &[&str]) -> Monitor {
        Monitor::start_with_env(args, &[])
    }

    /// [`Monitor::start`] with extra environment variables (e.g. `DOCKER_HOST`).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Monitor {
        let mut cmd = Command::new(dcea_bin());
        cmd.arg("monitor").args(args).envs(env.iter().copied());
        Monitor::spawn(cmd)
    }

    /// Run `cmd` (dcea monitor itself, or what runs it: `docker run`, a sandbox) with its
    /// stdout and stderr read as dcea's, and wait for the ready line.
    pub fn spawn(mut cmd: Command) -> Monitor {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let (tx, alerts) = mpsc::channel();
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let read_at_ns = monotonic_ns();
                let json: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(Received { json, raw: line, read_at_ns }).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut m = Monitor { child, alerts, stderr, stderr_lines: Vec::new() };
        m.wait_stderr("dcea: ready", ready_timeout());
        m
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The start-up report line `dcea: <key>: <value>` (e.g. "commit_creds hook").
    pub fn report_value(&self, key: &str) -> Option<String> {
        let prefix = format!("dcea: {key}: ");
        self.stderr_lines.iter().find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
    }

    /// Wait for a stderr line containing `needle`; panics with everything seen on timeout.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("dcea exited ({st}) before '{needle}'; stderr:\n{}", self.stderr_lines.join("\n"));
        }
        panic!("no '{needle}' on dcea's stderr within {timeout:?}; stderr:\n{}", self.stderr_lines.join("\n"));
    }

    /// Every alert that arrives within `window`.
    pub fn collect(&mut self, window: Duration) -> Vec<Received> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.alerts.recv_timeout(left) {
                Ok(a) => out.push(a),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        out
    }

    /// The first alert matching `pred` within `timeout`, plus everything read before it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> (Option<Received>, Vec<Received>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.alerts.recv_timeout(left) {
                Ok(a) if pred(&a) => return (Some(a), seen),
                Ok(a) => seen.push(a),
                Err(_) => break,
            }
        }
        (None, seen)
    }

    /// SIGINT, wait, and return the remaining stderr (the stop summary).
    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.stderr_lines.push(line);
        }
        std::mem::take(&mut self.stderr_lines)
    }
}

impl Drop for Monitor {
    /// A clean stop (SIGINT) where it answers: a killed agent leaves its run marker unclean,
    /// and the next test's agent would report the gap as an alert.
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// SIGINT a dcea we started, give it 10 s to stop cleanly, then SIGKILL.
pub fn stop_child(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A process of ours that stays put in the host namespaces: the escape target (never PID 1).
pub struct HostAnchor(Child);

impl HostAnchor {
    pub fn start() -> HostAnchor {
        HostAnchor(Command::new("sleep").arg("600").spawn().expect("spawn sleep"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for HostAnchor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// The hierarchy dcea names containers by (the agent's own choice, see the loader): the v2 tree
/// on unified hosts, else the first of these v1 controllers that is mounted.
fn container_hierarchy() -> Option<PathBuf> {
    use dcea_user::sys::fs_magic;
    if fs_magic(std::path::Path::new(CGROUP_ROOT)) == Some(CGROUP2_SUPER_MAGIC) {
        return Some(CGROUP_ROOT.into());
    }
    ["pids", "memory", "cpu", "devices", "freezer", "blkio"]
        .iter()
        .map(|c| std::path::Path::new(CGROUP_ROOT).join(c))
        .find(|p| fs_magic(p) == Some(CGROUP_SUPER_MAGIC))
}

/// A container without a container engine, so that a test runs on every kernel of the matrix:
/// a cgroup whose leaf name carries a 64-hex-digit id, the way runtimes name theirs
/// (`docker-<id>.scope`). A process moves itself there between fork and exec, and the kernel
/// program at exec recognises it as containerised, exactly as it recognises a `--pid=host
/// --net=host` container. Removed (with its parent) on drop.
pub struct FakeContainer {
    pub id: String,
    parent: PathBuf,
    leaf: PathBuf,
}

impl FakeContainer {
    /// None (after printing SKIP) when no cgroup hierarchy dcea uses is mounted.
    pub fn create(test: &str) -> Option<FakeContainer> {
        let Some(hierarchy) = container_hierarchy() else {
            skip(
                test,
                Need::Kernel,
                &format!(
                    "neither cgroup v2 nor a v1 pids/memory/cpu/devices/freezer/blkio hierarchy under {CGROUP_ROOT}"
                ),
            );
            return None;
        };
        let pid = std::process::id();
        // Unique per test process; "dcea" are hex digits too.
        let id = format!("dcea{:060x}", (u64::from(pid) << 8) | 0xbe);
        let parent = hierarchy.join(format!("dcea-test-{pid}"));
        let leaf = parent.join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&leaf).unwrap_or_else(|e| panic!("mkdir {}: {e}", leaf.display()));
        Some(FakeContainer { id, parent, leaf })
    }

    /// Run `program args` inside and assert it succeeded.
    pub fn run(&self, program: &std::path::Path, args: &[&str]) -> std::process::Output {
        let out = self.try_run(program, args);
        assert!(
            out.status.success(),
            "{} {args:?} in the fake container: {}\n{}{}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run `program args` inside: the child joins the cgroup before exec.
    pub fn try_run(&self, program: &std::path::Path, args: &[&str]) -> std::process::Output {
        self.command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("run {} in the fake container: {e}", program.display()))
    }

    /// `program args` as a command whose child joins the cgroup before exec (to spawn a
    /// process that stays inside; every one must have exited before the drop).
    pub fn command(&self, program: &std::path::Path, args: &[&str]) -> Command {
        use std::os::unix::process::CommandExt;
        let procs = std::ffi::CString::new(self.leaf.join("cgroup.procs").into_os_string().into_encoded_bytes())
            .expect("cgroup path");
        let mut cmd = Command::new(program);
        cmd.args(args);
        // SAFETY: between fork and exec only open/write/close on a path prepared before the
        // fork (no allocation: the harness has other threads).
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        // Every process we ran inside has exited; a cgroup without processes can be removed.
        let _ = std::fs::remove_dir(&self.leaf);
        let _ = std::fs::remove_dir(&self.parent);
    }
}

pub fn ns_inode(pid: u32, kind: &str) -> u64 {
    dcea_user::sys::ns_inode(&pid.to_string(), kind)
        .map(u64::from)
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
}
