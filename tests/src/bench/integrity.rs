//! The runtime-integrity rows of `cargo xtask bench`: what the executable-mapping records add
//! to an exec in a container, what a measurement pass over many container processes costs in
//! time and agent memory, and how long the reference measurement of a large image takes.
//! Every function returns finished markdown rows (`| benchmark | result | target |`).

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{Monitor, bench::loops::helper_in_container, dcea_bin, docker};

/// The rows when Docker is missing: every benchmark here runs in a container.
fn skipped(what: &str) -> String {
    format!("| {what} | SKIP: no Docker engine with {} | — |", docker::IMAGE)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Mean µs per fork+exec+wait of `program` in a fresh busybox container. The helper mounts the
/// host's /usr, /lib and /lib64 read-only at the same paths, so the host's /usr/bin/true runs
/// there with its own ld.so and libc (whose PROT_EXEC mappings the agent reports).
fn exec_us(program: &str, count: u64) -> Option<f64> {
    helper_in_container(&[], &["exec-loop", program, &count.to_string()]).map(|(secs, _)| secs * 1e6 / count as f64)
}

/// (static, dynamic) µs per exec, in that order, back to back.
fn exec_pair(count: u64) -> Option<(f64, f64)> {
    Some((exec_us("/bin/true", count)?, exec_us("/usr/bin/true", count)?))
}

/// Per round: (static off, static on, dynamic off, dynamic on), µs; off is the mean of the runs
/// before and after the agent, so drift on a shared machine cancels out.
fn exec_rounds(rounds: u32, count: u64) -> Option<Vec<[f64; 4]>> {
    let state = tempfile::tempdir().ok()?;
    let mut out = Vec::new();
    for _ in 0..rounds {
        let before = exec_pair(count)?;
        let monitor = Monitor::start(&["--state-dir", state.path().to_str()?]);
        let on = exec_pair(count);
        // The stop summary's record counts: the mmap records did flow (or did not).
        eprintln!("bench: exec round agent: {}", monitor.stop().last().map(String::as_str).unwrap_or(""));
        let (on, after) = (on?, exec_pair(count)?);
        out.push([(before.0 + after.0) / 2.0, on.0, (before.1 + after.1) / 2.0, on.1]);
    }
    Some(out)
}

/// Row 1: the added exec cost, static vs dynamic; their difference is what the mmap records
/// (one per executable library mapping, none for a static binary) cost.
pub fn exec_row(rounds: u32, count: u64) -> String {
    let what = format!("container exec, dynamically linked (/usr/bin/true, {count} × {rounds} rounds)");
    if !docker::available("bench: container exec") {
        return skipped(&what);
    }
    let Some(r) = exec_rounds(rounds, count) else { return skipped(&what) };
    eprintln!("bench: container exec rounds (static off, on, dynamic off, on) µs: {r:?}");
    let col = |i: usize| median(r.iter().map(|x| x[i]).collect());
    let added = |i: usize| median(r.iter().map(|x| x[i + 1] - x[i]).collect());
    let share = median(r.iter().map(|x| (x[3] - x[2]) - (x[1] - x[0])).collect());
    let (s0, s1, d0, d1, ds, dd) = (col(0), col(1), col(2), col(3), added(0), added(2));
    format!(
        "| {what} | {dd:+.1} µs per exec (static busybox: {ds:+.1} µs; mmap records: {share:+.1} µs); dynamic {d0:.0} → {d1:.0} µs ({:+.1} %), static {s0:.0} → {s1:.0} µs ({:+.1} %) (medians) | ≤ 5 % (the fork+exec target) |",
        dd / d0 * 100.0,
        ds / s0 * 100.0
    )
}

/// One `integrity pass N: P processes, M mappings, C compared (B bytes), T ms` line.
#[derive(Debug, Clone, Copy)]
struct Pass {
    processes: u64,
    mappings: u64,
    compared: u64,
    bytes: u64,
    ms: f64,
}

/// The number written just before `word` in `words`.
fn before<T: std::str::FromStr>(words: &[&str], word: &str) -> Option<T> {
    words.windows(2).find(|w| w[1].starts_with(word)).and_then(|w| w[0].trim_start_matches('(').parse().ok())
}

fn parse_pass(line: &str) -> Option<Pass> {
    let rest = &line[line.find("integrity pass ")? + "integrity pass ".len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    Some(Pass {
        processes: before(&words, "processes")?,
        mappings: before(&words, "mappings")?,
        compared: before(&words, "compared")?,
        bytes: before(&words, "bytes")?,
        ms: before(&words, "ms")?,
    })
}

/// `dcea monitor` with the pass every 5 s and its debug line on; stderr read line by line,
/// stdout drained (alerts of the code-modified rule counted: sleeping busybox must raise none).
struct Agent {
    child: Child,
    stderr: mpsc::Receiver<String>,
    alerts: std::thread::JoinHandle<usize>,
}

impl Agent {
    fn start(state: &Path) -> Option<Agent> {
        let mut child = Command::new(dcea_bin())
            .args(["monitor", "--state-dir", state.to_str()?, "--integrity-interval", "5s"])
            .env("DCEA_LOG", "info,dcea_user::integrity=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let out = BufReader::new(child.stdout.take()?);
        let alerts = std::thread::spawn(move || {
            out.lines().map_while(Result::ok).filter(|l| l.contains("modified in memory")).count()
        });
        let (tx, stderr) = mpsc::channel();
        let err = BufReader::new(child.stderr.take()?);
        std::thread::spawn(move || err.lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
        Some(Agent { child, stderr, alerts })
    }

    /// The first stderr line containing `needle` within `timeout`; None on timeout or exit.
    fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// MB of `key` (VmRSS:, VmHWM:) in the agent's /proc status.
    fn mem_mb(&self, key: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kb: Option<f64> = status.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok());
        kb.unwrap_or(f64::NAN) / 1024.0
    }

    /// SIGINT (then SIGKILL) by pid; the code-modified alerts it printed.
    fn stop(mut self) -> usize {
        crate::stop_child(&mut self.child);
        self.alerts.join().unwrap_or(0)
    }
}

/// The container of row 2: `statics` busybox sleeps and `dynamics` of the host's
/// /usr/bin/sleep (the host's libraries mounted read-only), all children of its sh.
fn sleepers(statics: u32, dynamics: u32) -> docker::Container {
    let script = format!(
        "for i in $(seq {statics}); do /bin/sleep 3600 & done; for i in $(seq {dynamics}); do /usr/bin/sleep 3600 & done; wait"
    );
    let mounts = docker::helper_mounts();
    let mut extra: Vec<&str> = mounts.iter().map(String::as_str).collect();
    extra.push("--init=false");
    docker::Container::run_named("dcea-bench-integrity", &extra, &["sh", "-c", &script])
}

/// Waits (at most 60 s) until the container's sh has `want` children.
fn wait_children(c: &docker::Container, want: usize) -> usize {
    let pid = c.pid();
    let path = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = std::fs::read_to_string(&path).unwrap_or_default().split_whitespace().count();
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Row 2: passes 1 and 3 (every 5 s) over 1,000 static and 10 dynamic container sleepers,
/// with the agent's RSS after each; a row saying so when a pass line does not come in 60 s.
pub fn pass_rows() -> Vec<String> {
    let what = "integrity pass, 1,000 container processes";
    if !docker::available("bench: integrity pass") {
        return vec![skipped(what)];
    }
    let c = sleepers(1000, 10);
    let children = wait_children(&c, 1010);
    let mix = format!("{children} sleepers: busybox /bin/sleep ×1000 + host /usr/bin/sleep ×10");
    let state = tempfile::tempdir().expect("tempdir");
    let Some(agent) = Agent::start(state.path()) else {
        return vec![format!("| {what} | agent did not start | — |")];
    };
    let ready = agent.wait_line("dcea: ready", crate::ready_timeout()).is_some();
    let first = agent.wait_line("integrity pass 1:", Duration::from_secs(60)).and_then(|l| parse_pass(&l));
    let rss_first = agent.mem_mb("VmRSS:");
    let steady = first.and_then(|_| agent.wait_line("integrity pass 3:", Duration::from_secs(60)));
    let steady = steady.and_then(|l| parse_pass(&l));
    let (rss_steady, hwm) = (agent.mem_mb("VmRSS:"), agent.mem_mb("VmHWM:"));
    let alerts = agent.stop();
    drop(c);
    let (Some(f), Some(s)) = (first, steady) else {
        let missing = if first.is_none() { "pass 1" } else { "pass 3" };
        return vec![format!(
            "| {what} ({mix}) | no `integrity pass` line for {missing} within 60 s (agent ready: {ready}) | — |"
        )];
    };
    eprintln!("bench: integrity passes first {f:?} steady {s:?}; code-modified alerts: {alerts}");
    let (n, mb) = (s.processes, s.bytes as f64 / 1e6);
    vec![
        format!(
            "| {what} ({mix}; the pass saw {n} processes) | first {:.1} ms, steady {:.1} ms ({} mappings, {} compared, {mb:.1} MB; {alerts} code-modified alerts) | — |",
            f.ms, s.ms, s.mappings, s.compared
        ),
        format!(
            "| agent memory with the integrity pass | RSS {rss_first:.1} MB after the first pass, {rss_steady:.1} MB steady (VmHWM {hwm:.1} MB) | — |"
        ),
    ]
}

const FAT: &str = "dcea-bench/fat:latest";

/// A build context of `dirs` × `files` files of `mib` MiB from /dev/urandom (random: nothing
/// for the layer's compression or the hashing to shortcut).
fn fat_context(dir: &Path, dirs: u32, files: u32, mib: usize) -> std::io::Result<()> {
    std::fs::write(dir.join("Dockerfile"), format!("FROM {}\nCOPY data /data\n", docker::IMAGE))?;
    let mut random = std::fs::File::open("/dev/urandom")?;
    let mut buf = vec![0u8; 1 << 20];
    for d in 0..dirs {
        let sub = dir.join(format!("data/d{d}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..files {
            let mut out = std::fs::File::create(sub.join(format!("f{f}")))?;
            for _ in 0..mib {
                random.read_exact(&mut buf)?;
                out.write_all(&buf)?;
            }
        }
    }
    Ok(())
}

/// `cmd`'s success; its stderr is printed when it fails.
fn ok(cmd: &mut Command) -> bool {
    let err = match cmd.stdout(Stdio::null()).output() {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!("bench: {cmd:?} failed: {err}");
    false
}

/// Builds FAT (the classic builder, no network: the base image is local) and saves it to
/// `tar`; seconds of `dcea measure image <tar> --save`, or None.
fn measure_fat(work: &Path, tar: &Path) -> Option<f64> {
    fat_context(work, 5, 10, 10).map_err(|e| eprintln!("bench: build context: {e}")).ok()?;
    let build = ["build", "--network", "none", "--force-rm", "-q", "-t", FAT];
    if !ok(Command::new("docker").env("DOCKER_BUILDKIT", "0").args(build).arg(work)) {
        return None;
    }
    let saved = ok(Command::new("docker").args(["save", "-o"]).arg(tar).arg(FAT));
    let _ = Command::new("docker").args(["rmi", FAT]).output();
    std::fs::remove_dir_all(work.join("data")).ok()?;
    let state = tempfile::tempdir().ok()?;
    let mut measure = Command::new(dcea_bin());
    measure.args(["measure", "image"]).arg(tar).args(["--save", "--state-dir"]).arg(state.path());
    let start = Instant::now();
    (saved && ok(&mut measure)).then(|| start.elapsed().as_secs_f64())
}

/// Row 3: the reference measurement (a SHA-256 of every file) of a 500 MB image, from a
/// `docker save` tarball just written (so in the page cache).
pub fn reference_row() -> String {
    let what = "reference measurement of a 500 MB image";
    if !docker::available("bench: reference measurement") {
        return skipped(what);
    }
    let work = tempfile::Builder::new().prefix("dcea-bench-fat-").tempdir().expect("tempdir");
    let tar = work.path().join("fat.tar");
    let Some(secs) = measure_fat(work.path(), &tar) else { return format!("| {what} | failed, see stderr | — |") };
    let mb = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    format!(
        "| {what} (50 × 10 MiB random files, `docker save` tarball {mb:.0} MB, warm cache) | {secs:.2} s ({:.0} MB/s) | — |",
        mb / secs
    )
}
