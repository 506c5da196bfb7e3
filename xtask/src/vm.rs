//! `cargo xtask vm-test`: the privileged tests on other kernels, in qemu.
//!
//! For each kernel: fetch Debian's cloud kernel package through apt with a private sources
//! list and state directory (cached under target/vm-cache/), build an initramfs (static
//! busybox, the dcea binary with its embedded eBPF object, the test executables with the
//! shared libraries they link, util-linux's unshare/nsenter/setpriv), boot it under qemu (KVM
//! when it works, else TCG), stream the guest's console, and collect one result line per test.
//! The guest's init mounts proc/sys/tracefs/debugfs/bpffs/cgroup2, prints `dcea probe`'s JSON
//! report, runs every test of the chosen test targets one by one, and powers off.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dcea_common::programs;

use crate::{cargo, status, which};

/// The column of the development host in the support table (not part of the matrix).
const HOST_COLUMN: KernelSpec = KernelSpec { name: "host", suite: "", expect_commit_creds: "" };

/// `dcea probe` on the machine running the matrix.
fn host_probe(dcea: &Path) -> Option<GuestRun> {
    let out =
        Command::new(dcea).args(["probe", "--enforce", "--format", "json"]).stderr(Stdio::null()).output().ok()?;
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let release = probe["kernel"].as_str().unwrap_or_default().to_string();
    Some(GuestRun { release, probe: Some(probe), finished: true, ..GuestRun::default() })
}

/// One kernel of the matrix.
pub struct KernelSpec {
    pub name: &'static str,
    /// Debian suite whose `linux-image-cloud-amd64` provides it.
    pub suite: &'static str,
    /// Programs whose load status the guest's report must show.
    pub expect_commit_creds: &'static str,
}

pub const KERNELS: [KernelSpec; 3] = [
    KernelSpec { name: "5.10", suite: "bullseye", expect_commit_creds: "fentry" },
    KernelSpec { name: "6.1", suite: "bookworm", expect_commit_creds: "fentry" },
    KernelSpec { name: "6.12", suite: "trixie", expect_commit_creds: "fentry" },
];

/// Test targets of the dcea-tests crate that run in the guest: every capability that needs no
/// Docker engine (Docker-only tests print SKIP there) and no files of the source tree.
const GUEST_TEST_TARGETS: [&str; 6] = ["cli", "monitor", "creds", "behaviour", "integrity", "quarantine"];

/// Tests that must run (not SKIP) on every matrix kernel: they are why the matrix exists.
const MUST_RUN: [&str; 9] = [
    "behaviour_rules_fire_in_a_fake_container",
    "integrity_records_and_injection_rules_in_a_fake_container",
    "lsm_deny_refuses_guarded_operations_in_a_fake_container",
    "commit_creds_fentry_reports_root_gain_in_container",
    "commit_creds_kprobe_fallback_reports_root_gain_in_container",
    "credentials_changed_outside_commit_creds_are_alerted",
    "setuid_exec_su_and_setresuid_are_not_tampering",
    "nsproxy_swapped_without_a_syscall_is_an_escape",
    "quarantine_of_a_fake_container_refuses_its_connects_with_eperm",
];

pub struct VmOptions {
    pub kernels: Vec<&'static KernelSpec>,
    pub keep: bool,
    pub accel: String,
    /// Rewrite the README's kernel support table from what this run observed.
    pub update_readme: bool,
}

pub fn select(names: &[String]) -> Result<Vec<&'static KernelSpec>> {
    let names: Vec<&str> = if names.is_empty() { vec!["all"] } else { names.iter().map(String::as_str).collect() };
    let mut out = Vec::new();
    for n in names {
        if n == "all" {
            out.extend(KERNELS.iter());
        } else {
            let spec = KERNELS
                .iter()
                .find(|k| k.name == n)
                .with_context(|| format!("unknown kernel {n}: choose {} or all", KERNELS.map(|k| k.name).join(", ")))?;
            out.push(spec);
        }
    }
    let mut seen = Vec::new();
    out.retain(|k| {
        let first = !seen.contains(&k.name);
        seen.push(k.name);
        first
    });
    Ok(out)
}

/// Result of one test in one guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Skip(String),
    Fail,
}

/// What one guest observed.
#[derive(Default)]
pub struct GuestRun {
    pub release: String,
    pub probe: Option<serde_json::Value>,
    /// (target, test) -> outcome, seconds.
    pub tests: BTreeMap<(String, String), (Outcome, f64)>,
    pub finished: bool,
    pub error: Option<String>,
    pub wall: Duration,
}

impl GuestRun {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.tests.values().filter(|(o, _)| f(o)).count()
    }

    /// Why this kernel failed, if it did.
    pub fn failures(&self, spec: &KernelSpec) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(e) = &self.error {
            why.push(e.clone());
        }
        if !self.finished {
            why.push("the guest did not finish its test list".into());
        }
        for ((target, test), (o, _)) in &self.tests {
            match o {
                Outcome::Fail => why.push(format!("{target}::{test} failed")),
                Outcome::Skip(reason) if MUST_RUN.contains(&test.as_str()) => {
                    why.push(format!("{target}::{test} skipped on a matrix kernel: {reason}"))
                }
                _ => {}
            }
        }
        for must in MUST_RUN {
            if !self.tests.keys().any(|(_, t)| t == must) {
                why.push(format!("{must} did not run"));
            }
        }
        match self.commit_creds() {
            Some(h) if h == spec.expect_commit_creds => {}
            other => why.push(format!("commit_creds hook {other:?}, expected {}", spec.expect_commit_creds)),
        }
        why
    }

    pub fn commit_creds(&self) -> Option<String> {
        self.probe.as_ref()?.get("commit_creds")?.as_str().map(str::to_string)
    }

    /// name -> (status, verified insns) from the guest's `dcea probe` report.
    pub fn programs(&self) -> BTreeMap<String, (String, Option<u64>)> {
        let mut out = BTreeMap::new();
        if let Some(list) = self.probe.as_ref().and_then(|p| p["programs"].as_array()) {
            for p in list {
                out.insert(
                    p["name"].as_str().unwrap_or("?").to_string(),
                    (p["status"].as_str().unwrap_or("?").to_string(), p["verified_insns"].as_u64()),
                );
            }
        }
        out
    }

    pub fn features(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(list) = self.probe.as_ref().and_then(|p| p["features"].as_array()) {
            for f in list {
                out.insert(
                    f["name"].as_str().unwrap_or("?").to_string(),
                    f["status"].as_str().unwrap_or("?").to_string(),
                );
            }
        }
        out
    }
}

/// Boot every kernel of `opts`; fails when any kernel failed.
pub fn run(root: &Path, opts: VmOptions) -> Result<()> {
    let runs = run_matrix(root, opts)?;
    let failed = failures(&runs);
    if !failed.is_empty() {
        bail!("kernel matrix failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// Why the matrix failed, one line per kernel and reason.
pub fn failures(runs: &[(&KernelSpec, GuestRun)]) -> Vec<String> {
    runs.iter()
        .flat_map(|(spec, run)| run.failures(spec).into_iter().map(move |f| format!("{}: {f}", spec.name)))
        .collect()
}

/// Boot every kernel of `opts` and return what each guest observed.
pub fn run_matrix(root: &Path, opts: VmOptions) -> Result<Vec<(&'static KernelSpec, GuestRun)>> {
    let qemu = which("qemu-system-x86_64")
        .context("qemu-system-x86_64 not found: apt-get install --no-install-recommends qemu-system-x86")?;
    let busybox = crate::testenv::apt::static_busybox().context("no static busybox: apt-get install busybox-static")?;
    let cache = root.join("target").join("vm-cache");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;

    eprintln!("xtask: vm-test: building the agent and the test executables");
    crate::build(root, false)?;
    let tests = test_executables(root)?;
    let bin = root.join("target").join("debug");

    let work = tempfile_dir(&cache)?;
    let initramfs = work.join("initramfs.cpio");
    let mut image = Initramfs::default();
    image.add_busybox(&busybox)?;
    image.add_binary(&bin.join("dcea"), "/dcea/dcea")?;
    image.add_binary(&bin.join("dcea-test-helper"), "/dcea/dcea-test-helper")?;
    for (target, exe) in &tests {
        image.add_binary(exe, &format!("/dcea/deps/{target}"))?;
    }
    for tool in ["unshare", "nsenter", "setpriv"] {
        let path = which(tool).with_context(|| format!("{tool} not found (util-linux)"))?;
        image.add_binary(&path, &format!("/usr/bin/{tool}"))?;
    }
    image.add_file("/init", INIT.as_bytes(), 0o755);

    let accel = choose_accel(&qemu, &opts.accel, &cache, &busybox)?;
    let mut runs: Vec<(&'static KernelSpec, GuestRun)> = Vec::new();
    for spec in opts.kernels.iter().copied() {
        let vmlinuz = fetch_kernel(spec, &cache)?;
        let env = guest_env(spec);
        let mut kernel_image = image.clone();
        kernel_image.add_file("/dcea/env", env.as_bytes(), 0o644);
        fs::write(&initramfs, kernel_image.finish()).with_context(|| format!("writing {}", initramfs.display()))?;
        eprintln!("xtask: vm-test: booting {} ({}) with {accel}", spec.name, vmlinuz.display());
        let run = boot(&qemu, &accel, spec.name, &vmlinuz, &initramfs);
        runs.push((spec, run));
    }

    let summary = summary_table(&runs);
    eprintln!("\n{summary}");
    let results = root.join("target").join("vm-results");
    fs::create_dir_all(&results)?;
    // The host's own kernel beside the guests, for the support table only.
    let host = host_probe(&bin.join("dcea"));
    let mut columns: Vec<(&KernelSpec, GuestRun)> = Vec::new();
    if let Some(h) = host {
        columns.push((&HOST_COLUMN, h));
    }
    let support = support_table(&runs, &columns);
    fs::write(results.join("summary.txt"), &summary)?;
    fs::write(results.join("kernel-support.md"), &support)?;
    eprintln!("xtask: vm-test: kernel support table written to {}", results.join("kernel-support.md").display());
    if opts.update_readme {
        update_readme(root, &support)?;
    }
    if opts.keep {
        eprintln!("xtask: vm-test: kept the work directory {} (initramfs.cpio, last kernel's env)", work.display());
    } else {
        let _ = fs::remove_dir_all(&work);
    }
    Ok(runs)
}

fn tempfile_dir(cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(format!("work-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub(crate) fn is_static(path: &Path) -> bool {
    Command::new("ldd").arg(path).output().is_ok_and(|o| {
        let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
        text.contains("not a dynamic executable") || text.contains("statically linked")
    })
}

/// The executables of the guest test targets, built with `cargo test --no-run`.
fn test_executables(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut cmd = cargo(root);
    cmd.args(["test", "-p", "dcea-tests", "--no-run", "--message-format=json"]);
    for t in GUEST_TEST_TARGETS {
        cmd.args(["--test", t]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed: {}", out.status);
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) else { continue };
        if msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"))
            && GUEST_TEST_TARGETS.contains(&name)
        {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    for t in GUEST_TEST_TARGETS {
        if !found.iter().any(|(n, _)| n == t) {
            bail!("cargo did not report the executable of test target {t}");
        }
    }
    Ok(found)
}

/// Per-kernel expectations for the guest's probe test (tests/tests/cli.rs reads them).
fn guest_env(spec: &KernelSpec) -> String {
    let mut expected: Vec<String> = Vec::new();
    // Every namespace, behaviour and LSM program verifies and attaches on the matrix kernels
    // (Debian's have module support, so init_module/finit_module exist, and run the BPF LSM).
    for program in programs::required()
        .chain(programs::BEHAVIOUR.iter())
        .chain(programs::SELF_PROTECTION.iter())
        .chain(programs::LSM.iter())
    {
        expected.push(format!("{}=attached", program.name));
    }
    let (fentry, kprobe) = match spec.expect_commit_creds {
        "fentry" => ("attached", "skipped"),
        "kprobe" => ("failed", "attached"),
        _ => ("failed", "failed"),
    };
    expected.push(format!("commit_creds_fentry={fentry}"));
    expected.push(format!("commit_creds_kprobe={kprobe}"));
    let features = [
        "namespace transitions=on",
        "time namespace=on",
        "container attribution in the kernel=on",
        "executable path in the kernel=on",
        "credential escalation=on",
        "credential integrity=on",
        "behaviour rules=on",
    ];
    format!(
        "export DCEA_BIN=/dcea/dcea\nexport DCEA_TEST_READY_SECS=600\nexport RUST_BACKTRACE=1\nexport DCEA_TEST_GUEST=1\n\
         export DCEA_EXPECT_COMMIT_CREDS='{}'\nexport DCEA_EXPECT_PROGRAMS='{}'\nexport DCEA_EXPECT_FEATURES='{}'\n",
        spec.expect_commit_creds,
        expected.join(","),
        features.join(",")
    )
}

/// The guest's init (busybox sh). Every result is one `@@DCEA-TEST` line the host parses.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
hostname dcea-vm
. /dcea/env
echo "@@DCEA-VM release $(uname -r)"
/dcea/dcea probe --enforce --format json > /tmp/probe.json 2> /tmp/probe.err
echo "@@DCEA-VM probe-rc $?"
cat /tmp/probe.err
echo "@@DCEA-VM probe-begin"
cat /tmp/probe.json
echo "@@DCEA-VM probe-end"
for exe in /dcea/deps/*; do
  target=${exe##*/}
  for t in $("$exe" --list --format terse 2>/dev/null | sed -n 's/: test$//p'); do
    start=$(cut -d' ' -f1 /proc/uptime)
    echo "@@DCEA-VM begin $target $t"
    timeout 900 "$exe" --exact "$t" --test-threads=1 --nocapture > /tmp/out 2>&1
    rc=$?
    cat /tmp/out
    end=$(cut -d' ' -f1 /proc/uptime)
    result=ok
    if [ $rc -ne 0 ]; then
      result=FAILED
    elif grep -q 'LEFT-OUT [A-Za-z0-9_]*: ' /tmp/out; then
      result=LEFTOUT
    elif grep -q 'SKIP [A-Za-z0-9_]*: ' /tmp/out; then
      result=SKIP
    fi
    echo "@@DCEA-TEST $target $t $result $start $end $(grep -o 'SKIP [A-Za-z0-9_]*: .*' /tmp/out | head -1)"
  done
done
echo "@@DCEA-VM done"
poweroff -f
"#;

/// The guests' kernel command line: the BPF LSM among the active LSMs (Debian's default list
/// already has it on 6.1; unknown names are ignored by older kernels).
const GUEST_CMDLINE: &str =
    "console=ttyS0 panic=-1 quiet loglevel=3 lsm=lockdown,capability,landlock,yama,apparmor,tomoyo,bpf";

/// Boot one guest and parse its console.
fn boot(qemu: &Path, accel: &str, name: &str, vmlinuz: &Path, initramfs: &Path) -> GuestRun {
    let started = Instant::now();
    let mut run = GuestRun::default();
    let mut cmd = Command::new(qemu);
    cmd.args(["-machine", "q35", "-m", "2048", "-smp", "2", "-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-monitor", "none", "-nodefaults"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", GUEST_CMDLINE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if accel == "kvm" {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(format!("spawning qemu: {e}"));
            return run;
        }
    };
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let tx2 = tx.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if tx.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string()).is_err() {
                break;
            }
        }
    });
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("qemu: {line}"));
        }
    });
    let deadline = started + GUEST_TIMEOUT;
    let mut probe_json: Option<String> = None;
    let stdout = std::io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                let _ = writeln!(stdout.lock(), "[{name}] {line}");
                parse_line(&line, &mut run, &mut probe_json);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                run.error = Some(format!("the guest did not power off within {GUEST_TIMEOUT:?}"));
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = child.wait();
    run.wall = started.elapsed();
    run
}

const GUEST_TIMEOUT: Duration = Duration::from_secs(45 * 60);

fn parse_line(line: &str, run: &mut GuestRun, probe_json: &mut Option<String>) {
    if let Some(json) = probe_json.as_mut() {
        if line.starts_with("@@DCEA-VM probe-end") {
            run.probe = serde_json::from_str(json).ok();
            if run.probe.is_none() {
                run.error = Some("the guest's dcea probe report is not JSON".into());
            }
            *probe_json = None;
        } else {
            json.push_str(line);
            json.push('\n');
        }
        return;
    }
    if let Some(rest) = line.strip_prefix("@@DCEA-VM ") {
        let mut words = rest.splitn(2, ' ');
        match (words.next(), words.next()) {
            (Some("release"), Some(r)) => run.release = r.trim().to_string(),
            (Some("probe-begin"), _) => *probe_json = Some(String::new()),
            (Some("probe-rc"), Some(rc)) if rc.trim() != "0" => {
                run.error = Some(format!("dcea probe exited with {} in the guest", rc.trim()))
            }
            (Some("done"), _) => run.finished = true,
            _ => {}
        }
    } else if let Some(rest) = line.strip_prefix("@@DCEA-TEST ") {
        // target test result start end [SKIP reason]
        let w: Vec<&str> = rest.splitn(6, ' ').collect();
        if w.len() >= 5 {
            let secs = w[4].parse::<f64>().unwrap_or(0.0) - w[3].parse::<f64>().unwrap_or(0.0);
            let outcome = match w[2] {
                // Not part of a guest's set by design (needs Docker): neither a pass nor a skip.
                "LEFTOUT" => return,
                "ok" => Outcome::Pass,
                "SKIP" => Outcome::Skip(w.get(5).map(|s| s.trim().to_string()).unwrap_or_default()),
                _ => Outcome::Fail,
            };
            run.tests.insert((w[0].to_string(), w[1].to_string()), (outcome, secs));
        }
    }
}

/// KVM when asked or when a probe boot with it completes; TCG otherwise. The probe's result is
/// cached per host kernel (a broken KVM hangs rather than fails, which costs the timeout).
fn choose_accel(qemu: &Path, wanted: &str, cache: &Path, busybox: &Path) -> Result<String> {
    match wanted {
        "kvm" | "tcg" => return Ok(wanted.to_string()),
        "auto" => {}
        other => bail!("--accel {other}: choose auto, kvm or tcg"),
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok("tcg".into());
    }
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let marker = cache.join("accel");
    if let Ok(saved) = fs::read_to_string(&marker)
        && let Some((kernel, accel)) = saved.trim().split_once(' ')
        && kernel == host
    {
        return Ok(accel.to_string());
    }
    // Boot the 6.1 kernel into an init that only powers off.
    let vmlinuz = fetch_kernel(&KERNELS[1], cache)?;
    let mut image = Initramfs::default();
    image.add_busybox(busybox)?;
    image.add_file("/init", b"#!/bin/busybox sh\n/bin/busybox echo @@KVM-OK\n/bin/busybox poweroff -f\n", 0o755);
    let probe = cache.join("kvm-probe.cpio");
    fs::write(&probe, image.finish())?;
    eprintln!("xtask: vm-test: checking whether KVM works here (once per host kernel)");
    let mut child = Command::new(qemu)
        .args(["-machine", "q35", "-m", "512", "-display", "none", "-serial", "stdio", "-no-reboot", "-nodefaults"])
        .args(["-accel", "kvm", "-cpu", "host", "-kernel"])
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&probe)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning qemu")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let ok = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("@@KVM-OK"));
        let _ = tx.send(ok);
    });
    // A working KVM boots this in a few seconds; a broken one hangs.
    let ok = rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    let accel = if ok { "kvm" } else { "tcg" };
    eprintln!("xtask: vm-test: KVM {}; using {accel}", if ok { "works" } else { "does not work" });
    fs::write(&marker, format!("{host} {accel}\n"))?;
    Ok(accel.into())
}

/// The kernel image of `spec`, downloaded once with apt into target/vm-cache/<name>/.
pub fn fetch_kernel(spec: &KernelSpec, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join(spec.name);
    let vmlinuz = dir.join("vmlinuz");
    if vmlinuz.is_file() {
        return Ok(vmlinuz);
    }
    fs::create_dir_all(&dir)?;
    let apt = cache.join(format!("apt-{}", spec.suite));
    for sub in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt.join(sub))?;
    }
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let sources = apt.join("sources.list");
    fs::write(
        &sources,
        format!(
            "deb [signed-by={keyring}] http://deb.debian.org/debian {s} main\n\
             deb [signed-by={keyring}] http://deb.debian.org/debian-security {s}-security main\n",
            s = spec.suite
        ),
    )?;
    let apt_opts = |cmd: &mut Command| {
        cmd.arg("-o")
            .arg(format!("Dir::Etc::SourceList={}", sources.display()))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null", "-o"])
            .arg(format!("Dir::State::Lists={}", apt.join("lists").display()))
            .arg("-o")
            .arg(format!("Dir::Cache={}", apt.join("cache").display()))
            .args(["-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]);
    };
    eprintln!("xtask: vm-test: fetching Debian {}'s cloud kernel ({}) through apt", spec.suite, spec.name);
    let mut update = Command::new("apt-get");
    apt_opts(&mut update);
    update.args(["-qq", "update"]);
    status(&mut update)?;
    let mut depends = Command::new("apt-cache");
    apt_opts(&mut depends);
    depends.args(["depends", "linux-image-cloud-amd64"]);
    let out = depends.output().context("apt-cache depends")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.trim().to_string())
        .filter(|p| p.starts_with("linux-image-"))
        .with_context(|| format!("no kernel package behind linux-image-cloud-amd64 in {}: {text}", spec.suite))?;
    let mut download = Command::new("apt-get");
    apt_opts(&mut download);
    download.current_dir(&dir).args(["-qq", "download", &package]);
    status(&mut download)?;
    let deb = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb in {}", dir.display()))?;
    let extract = dir.join("extract");
    fs::create_dir_all(&extract)?;
    status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extract))?;
    let boot = extract.join("boot");
    let image = fs::read_dir(&boot)
        .with_context(|| format!("{} has no boot/", deb.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .with_context(|| format!("{} has no boot/vmlinuz-*", deb.display()))?;
    fs::copy(&image, &vmlinuz)?;
    fs::write(dir.join("package"), format!("{package}\n"))?;
    let _ = fs::remove_dir_all(&extract);
    let _ = fs::remove_file(&deb);
    Ok(vmlinuz)
}

/// A newc (SVR4 "070701") cpio archive built in memory: what the kernel unpacks as initramfs.
#[derive(Clone, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, (u32, Vec<u8>)>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Initramfs {
    fn add_dirs(&mut self, path: &str) {
        let mut at = String::new();
        for part in path.trim_start_matches('/').split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, d)| d)
        {
            at.push('/');
            at.push_str(part);
            self.entries.entry(at.clone()).or_insert((S_IFDIR | 0o755, Vec::new()));
        }
    }

    pub fn add_file(&mut self, path: &str, data: &[u8], mode: u32) {
        self.add_dirs(path);
        self.entries.insert(path.to_string(), (S_IFREG | mode, data.to_vec()));
    }

    pub fn add_dir(&mut self, path: &str) {
        self.add_dirs(&format!("{path}/x"));
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.add_dirs(path);
        self.entries.insert(path.to_string(), (S_IFLNK | 0o777, target.as_bytes().to_vec()));
    }

    fn add_busybox(&mut self, busybox: &Path) -> Result<()> {
        let data = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
        self.add_file("/bin/busybox", &data, 0o755);
        self.add_symlink("/bin/sh", "busybox");
        for d in ["/proc", "/sys", "/dev", "/tmp", "/usr/sbin", "/sbin", "/root", "/etc"] {
            self.add_dir(d);
        }
        Ok(())
    }

    /// A dynamically linked host binary, stripped of debug info, with the shared libraries
    /// `ldd` lists at their host paths.
    fn add_binary(&mut self, src: &Path, dst: &str) -> Result<()> {
        let stripped = std::env::temp_dir().join(format!("dcea-vm-strip-{}", std::process::id()));
        let strip_ok = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(src)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let data =
            fs::read(if strip_ok { &stripped } else { src }).with_context(|| format!("reading {}", src.display()))?;
        let _ = fs::remove_file(&stripped);
        self.add_file(dst, &data, 0o755);
        let out = Command::new("ldd").arg(src).output().context("running ldd")?;
        for lib in String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
            if self.entries.contains_key(lib) {
                continue;
            }
            let real = fs::canonicalize(lib).with_context(|| format!("resolving {lib}"))?;
            let data = fs::read(&real).with_context(|| format!("reading {}", real.display()))?;
            self.add_file(lib, &data, 0o755);
        }
        Ok(())
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ino = 1u32;
        let mut entry = |out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]| {
            let name = name.trim_start_matches('/');
            let mut header = String::new();
            let _ = write!(
                header,
                "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            );
            ino += 1;
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            pad4(out);
            out.extend_from_slice(data);
            pad4(out);
        };
        for (name, (mode, data)) in &self.entries {
            entry(&mut out, name, *mode, data);
        }
        entry(&mut out, "TRAILER!!!", 0, &[]);
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Per-kernel totals, then one row per test.
pub fn summary_table(runs: &[(&KernelSpec, GuestRun)]) -> String {
    let mut s = String::from("kernel matrix\n");
    let _ = writeln!(
        s,
        "{:<6} {:<26} {:>7} {:>5} {:>5} {:>5} {:>5}  {:<12} {:<10} result",
        "kernel", "release", "time", "tests", "pass", "skip", "fail", "commit_creds", "programs"
    );
    for (spec, run) in runs {
        let programs = run.programs();
        let attached = programs.values().filter(|(st, _)| st == "attached").count();
        let failures = run.failures(spec);
        let _ = writeln!(
            s,
            "{:<6} {:<26} {:>7} {:>5} {:>5} {:>5} {:>5}  {:<12} {:<10} {}",
            spec.name,
            run.release,
            fmt_duration(run.wall),
            run.tests.len(),
            run.count(|o| *o == Outcome::Pass),
            run.count(|o| matches!(o, Outcome::Skip(_))),
            run.count(|o| *o == Outcome::Fail),
            run.commit_creds().unwrap_or_else(|| "?".into()),
            format!("{attached}/{}", programs.len()),
            if failures.is_empty() { "PASS".to_string() } else { format!("FAIL ({})", failures.len()) }
        );
    }
    let mut tests: Vec<&(String, String)> = runs.iter().flat_map(|(_, r)| r.tests.keys()).collect();
    tests.sort();
    tests.dedup();
    let _ = write!(s, "\n{:<80}", "test");
    for (spec, _) in runs {
        let _ = write!(s, " {:>12}", spec.name);
    }
    s.push('\n');
    for key in tests {
        let _ = write!(s, "{:<80}", format!("{}::{}", key.0, key.1));
        for (_, run) in runs {
            let cell = match run.tests.get(key) {
                Some((Outcome::Pass, secs)) => format!("ok {secs:.0}s"),
                Some((Outcome::Skip(_), _)) => "SKIP".into(),
                Some((Outcome::Fail, _)) => "FAIL".into(),
                None => "-".into(),
            };
            let _ = write!(s, " {cell:>12}");
        }
        s.push('\n');
    }
    for (spec, run) in runs {
        for f in run.failures(spec) {
            let _ = writeln!(s, "{}: {f}", spec.name);
        }
    }
    let total = |f: &dyn Fn(&Outcome) -> bool| runs.iter().map(|(_, r)| r.count(f)).sum::<usize>();
    let _ = writeln!(
        s,
        "\nvm-test: {} passed, {} failed, {} skipped",
        total(&|o| *o == Outcome::Pass),
        total(&|o| *o == Outcome::Fail),
        total(&|o| matches!(o, Outcome::Skip(_)))
    );
    s
}

/// The README's kernel support table: per program and feature, what each kernel did; `extra`
/// columns (the host) show their start-up report only.
pub fn support_table(guests: &[(&KernelSpec, GuestRun)], extra: &[(&KernelSpec, GuestRun)]) -> String {
    let runs: Vec<&(&KernelSpec, GuestRun)> = guests.iter().chain(extra).collect();
    let mut s = String::new();
    let _ = write!(s, "| | ");
    let heads: Vec<String> = runs
        .iter()
        .map(|(spec, r)| {
            if spec.suite.is_empty() {
                format!("this host (`{}`)", r.release)
            } else {
                format!("{} (`{}`)", spec.name, r.release)
            }
        })
        .collect();
    let _ = writeln!(s, "{} |", heads.join(" | "));
    let _ = writeln!(s, "|---|{}|", vec!["---"; runs.len()].join("|"));
    let mut names: Vec<String> = Vec::new();
    for (_, r) in &runs {
        for n in r.programs().keys() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    for name in &names {
        let cells: Vec<String> = runs
            .iter()
            .map(|(_, r)| match r.programs().get(name) {
                Some((st, Some(n))) => format!("{st} ({n} insns)"),
                Some((st, None)) => st.clone(),
                None => "-".into(),
            })
            .collect();
        let _ = writeln!(s, "| program `{name}` | {} |", cells.join(" | "));
    }
    // The fallback is skipped at a default start where fentry attaches; its own test forces it.
    let cells: Vec<String> = runs
        .iter()
        .map(|(spec, r)| {
            let test =
                r.tests.iter().find(|((_, t), _)| t == "commit_creds_kprobe_fallback_reports_root_gain_in_container");
            match test {
                Some((_, (Outcome::Pass, _))) => "attached, alert tested".to_string(),
                Some((_, (Outcome::Skip(_), _))) => "cannot attach".to_string(),
                Some((_, (Outcome::Fail, _))) => "test failed".to_string(),
                None if spec.suite.is_empty() => {
                    let kprobe = r.programs().get("commit_creds_kprobe").map(|p| p.0.clone());
                    kprobe.unwrap_or_else(|| "-".into())
                }
                None => "-".to_string(),
            }
        })
        .collect();
    let _ = writeln!(s, "| `--commit-creds kprobe` (fallback) | {} |", cells.join(" | "));
    let mut features: Vec<String> = Vec::new();
    for (_, r) in &runs {
        for n in r.features().keys() {
            if !features.contains(n) {
                features.push(n.clone());
            }
        }
    }
    for name in &features {
        let cells: Vec<String> =
            runs.iter().map(|(_, r)| r.features().get(name).cloned().unwrap_or_else(|| "-".into())).collect();
        let _ = writeln!(s, "| feature: {name} | {} |", cells.join(" | "));
    }
    let cells: Vec<String> = runs
        .iter()
        .map(|(spec, r)| {
            if spec.suite.is_empty() {
                return "`cargo xtask test`".to_string();
            }
            format!(
                "{} pass, {} skip, {} fail",
                r.count(|o| *o == Outcome::Pass),
                r.count(|o| matches!(o, Outcome::Skip(_))),
                r.count(|o| *o == Outcome::Fail)
            )
        })
        .collect();
    let _ = writeln!(s, "| privileged tests | {} |", cells.join(" | "));
    s
}

const README_BEGIN: &str = "<!-- kernel-matrix:begin (cargo xtask vm-test --update-readme) -->";
const README_END: &str = "<!-- kernel-matrix:end -->";

fn update_readme(root: &Path, table: &str) -> Result<()> {
    let path = root.join("README.md");
    let text = fs::read_to_string(&path)?;
    let (Some(a), Some(b)) = (text.find(README_BEGIN), text.find(README_END)) else {
        bail!("README.md has no {README_BEGIN} … {README_END} section");
    };
    let new = format!("{}{README_BEGIN}\n{table}{}", &text[..a], &text[b..]);
    fs::write(&path, new)?;
    eprintln!("xtask: vm-test: README.md kernel support table updated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_archive_layout() {
        let mut img = Initramfs::default();
        img.add_file("/a/b", b"hello", 0o644);
        let bytes = img.finish();
        // Directory /a first, then /a/b, then the trailer; every header 4-byte aligned.
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("070701").count(), 3);
        let b = text.find("a/b\0").expect("file name");
        assert_eq!((b - 110) % 4, 0, "name follows a 110-byte header at a 4-byte boundary");
        assert!(text.contains("hello"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
        // file size field of a/b: 5
        let header = &text[b - 110..b];
        assert_eq!(&header[54..62], "00000005");
        assert_eq!(u32::from_str_radix(&header[14..22], 16).unwrap() & S_IFREG, S_IFREG);
    }

    #[test]
    fn guest_lines_become_results() {
        let mut run = GuestRun::default();
        let mut probe = None;
        for line in [
            "@@DCEA-VM release 6.1.0-56-cloud-amd64",
            "@@DCEA-VM probe-rc 0",
            "@@DCEA-VM probe-begin",
            r#"{"commit_creds": "fentry", "programs": [{"name": "sys_enter_setns", "status": "attached", "verified_insns": 35163}],"#,
            r#" "features": [{"name": "credential integrity", "status": "on"}]}"#,
            "@@DCEA-VM probe-end",
            "@@DCEA-TEST creds commit_creds_fentry_reports_root_gain_in_container ok 10.5 31.25 ",
            "@@DCEA-TEST monitor docker_benign FAILED 31.3 32.0 ",
            "@@DCEA-TEST monitor docker_x SKIP 32.0 33.0 SKIP docker_x: no Docker engine",
            "@@DCEA-VM done",
        ] {
            parse_line(line, &mut run, &mut probe);
        }
        assert_eq!(run.release, "6.1.0-56-cloud-amd64");
        assert_eq!(run.commit_creds().as_deref(), Some("fentry"));
        assert_eq!(run.programs()["sys_enter_setns"], ("attached".to_string(), Some(35163)));
        assert_eq!(run.features()["credential integrity"], "on");
        let key = |t: &str, n: &str| (t.to_string(), n.to_string());
        let pass = &run.tests[&key("creds", "commit_creds_fentry_reports_root_gain_in_container")];
        assert_eq!(pass.0, Outcome::Pass);
        assert!((pass.1 - 20.75).abs() < 1e-9);
        assert_eq!(run.tests[&key("monitor", "docker_benign")].0, Outcome::Fail);
        assert_eq!(run.tests[&key("monitor", "docker_x")].0, Outcome::Skip("SKIP docker_x: no Docker engine".into()));
        assert!(run.finished);
        let why = run.failures(&KERNELS[1]);
        assert!(why.iter().any(|w| w.contains("docker_benign failed")), "{why:?}");
        assert!(
            why.iter().any(|w| w.contains("nsproxy_swapped_without_a_syscall_is_an_escape did not run")),
            "{why:?}"
        );
        let table = support_table(&[(&KERNELS[1], run)], &[]);
        assert!(table.contains("| program `sys_enter_setns` | attached (35163 insns) |"), "{table}");
    }

    #[test]
    fn kernel_selection() {
        assert_eq!(select(&[]).unwrap().len(), 3);
        assert_eq!(select(&["6.1".into()]).unwrap()[0].suite, "bookworm");
        assert_eq!(select(&["all".into(), "5.10".into()]).unwrap().len(), 3);
        assert!(select(&["4.19".into()]).is_err());
    }
}
