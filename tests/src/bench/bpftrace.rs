//! A bpftrace program run as a benchmark peer: started, confirmed attached, stopped by its pid.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

/// bpftrace on this host: $DCEA_BPFTRACE, else on PATH.
pub fn binary() -> Option<PathBuf> {
    match std::env::var_os("DCEA_BPFTRACE") {
        Some(p) => Some(PathBuf::from(p)),
        None => crate::skip::find_program("bpftrace"),
    }
}

/// A running bpftrace whose probes are attached. Its stdout is read as fast as it prints
/// (a peer that prints per event must not be slowed by a full pipe).
pub struct Bpftrace {
    child: Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a stopped bpftrace printed: its event lines and the maps it dumped at exit.
#[derive(Debug, Default)]
pub struct Output {
    pub lines: Vec<String>,
    pub stderr: String,
}

impl Output {
    /// The value of a plain `@name: N` map line (a `count()` without keys), if printed.
    pub fn count(&self, map: &str) -> Option<u64> {
        let prefix = format!("@{map}: ");
        self.lines.iter().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
    }

    /// Lines starting with `prefix` (a peer's per-event output).
    pub fn lines_starting(&self, prefix: &str) -> usize {
        self.lines.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

/// `anon_inode:[perf_event]` descriptors of `pid`: bpftrace 0.17 holds one per online CPU for
/// its output buffer and one per attached tracepoint.
fn perf_event_fds(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:[perf_event]"))
        .count()
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

impl Bpftrace {
    /// Start `bpftrace program` and return once every probe is attached: after its
    /// "Attaching N probes..." line, when the process holds N tracepoint perf events beyond
    /// its per-CPU output buffers.
    pub fn start(bpftrace: &Path, program: &Path, timeout: Duration) -> Result<Bpftrace, String> {
        let mut child = Command::new(bpftrace)
            .arg(program)
            // Kernels since 5.11 charge BPF memory to the cgroup; the warning about the
            // memlock limit bpftrace prints there is harmless.
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bpftrace.display()))?;
        let (tx, attaching) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let stdout = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("Attaching ").and_then(|r| r.split_whitespace().next()) {
                    let _ = tx.send(n.parse::<usize>().unwrap_or(0));
                }
                lines.push(line);
            }
            lines
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut peer = Bpftrace { child, stdout: Some(stdout), stderr: Some(stderr) };
        let deadline = Instant::now() + timeout;
        let probes = match attaching.recv_timeout(timeout) {
            Ok(n) if n > 0 => n,
            _ => {
                let out = peer.stop();
                return Err(format!(
                    "{} did not report attaching within {timeout:?}: {}",
                    program.display(),
                    out.stderr.trim()
                ));
            }
        };
        let want = probes + online_cpus();
        let pid = peer.child.id();
        while perf_event_fds(pid) < want {
            if Instant::now() > deadline || peer.child.try_wait().ok().flatten().is_some() {
                let have = perf_event_fds(pid);
                let out = peer.stop();
                return Err(format!(
                    "{}: {have} of {want} perf events after {timeout:?} ({probes} probes): {}",
                    program.display(),
                    out.stderr.trim()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(peer)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT to this bpftrace (by its pid), wait for it to print its maps and exit (killed
    /// after 20 s), and return what it printed.
    pub fn stop(mut self) -> Output {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        Output {
            lines: self.stdout.take().and_then(|h| h.join().ok()).unwrap_or_default(),
            stderr: self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default(),
        }
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
