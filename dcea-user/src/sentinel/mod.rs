//! Self-protection. A container that signals, traces or rewrites the agent is reported before
//! the agent can die from it, and the next agent says how the last one ended.
//!
//! - The kernel sees every signal to the agent at `signal_generate` and sends it to the
//!   *sentinel*: a second process of the same binary, started by the monitor, that reads only
//!   that ring and writes the alert to the same sinks. A stopped or killed agent cannot report
//!   its own end; the sentinel can, and resumes an agent a container stopped.
//! - Signals to the sentinel go to the agent, the other way round.
//! - Ptrace of either and writes to the agent's files are behaviour rules the agent judges.
//! - The run marker ([`marker`]) tells the next agent that the last one was stopped
//!   abnormally, when, for how long, and what the sentinel saw done to it.

pub mod marker;
pub mod threads;
pub mod watch;

use std::{
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use dcea_common::names;

/// Set in the sentinel's environment: the ring's descriptor and the agent's pid.
const RING_ENV: &str = "DCEA_SENTINEL_RING_FD";
const AGENT_ENV: &str = "DCEA_SENTINEL_AGENT_PID";
/// Set when the agent's `lsm_task_kill` refuses signals (`--enforce` on a BPF LSM kernel), so
/// the sentinel's alerts say the signal was refused rather than delivered.
const DENIED_ENV: &str = "DCEA_SENTINEL_DENIED";

/// What a process started as the sentinel was handed.
#[derive(Clone, Copy, Debug)]
pub struct SentinelEnv {
    pub ring_fd: i32,
    pub agent: u32,
    pub denied_in_kernel: bool,
}

impl SentinelEnv {
    /// This process is a sentinel when both variables are set and parse.
    pub fn from_env() -> Option<SentinelEnv> {
        let ring_fd = std::env::var(RING_ENV).ok()?.parse().ok()?;
        let agent = std::env::var(AGENT_ENV).ok()?.parse().ok()?;
        let denied_in_kernel = std::env::var_os(DENIED_ENV).is_some_and(|v| v == "1");
        Some(SentinelEnv { ring_fd, agent, denied_in_kernel })
    }
}

/// The running sentinel, as the agent sees it.
pub struct Sentinel {
    child: Child,
}

impl Sentinel {
    /// Start the sentinel: this binary again with this process's arguments (so it reads the
    /// same config, rules and sinks), handed the sentinel ring's descriptor.
    pub fn spawn(ebpf: &aya::Ebpf, denied_in_kernel: bool) -> Result<Sentinel, String> {
        let Some(aya::maps::Map::RingBuf(data)) = ebpf.map(names::SENTINEL_EVENTS_MAP) else {
            return Err(format!("map {} missing", names::SENTINEL_EVENTS_MAP));
        };
        // A duplicate without FD_CLOEXEC is what the child inherits; ours is closed after.
        // SAFETY: F_DUPFD on a descriptor we own returns a new one or -1.
        let dup = unsafe { libc::fcntl(data.fd().as_fd().as_raw_fd(), libc::F_DUPFD, 3) };
        if dup < 0 {
            return Err(format!("duplicating the ring descriptor: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `dup` is a fresh descriptor owned by nobody else.
        let inherited = unsafe { OwnedFd::from_raw_fd(dup) };
        let child = Command::new("/proc/self/exe")
            .args(std::env::args_os().skip(1))
            .env(RING_ENV, dup.to_string())
            .env(AGENT_ENV, std::process::id().to_string())
            .env(DENIED_ENV, if denied_in_kernel { "1" } else { "0" })
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the sentinel: {e}"))?;
        drop(inherited);
        SENTINEL_PID.store(child.id(), Ordering::Relaxed);
        Ok(Sentinel { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (reaps it once it has exited).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// At a clean stop: the sentinel would otherwise outlive us by its exit check.
    pub fn stop(mut self) {
        // SAFETY: signalling our own child by pid; it ignores SIGTERM, SIGKILL ends it.
        if self.alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The sentinel's pid while one runs (0: none): its writes under the state directory (its
/// spool) are the agent's own.
static SENTINEL_PID: AtomicU32 = AtomicU32::new(0);

/// Whether `tgid` is the agent or its sentinel.
pub fn is_agent_process(tgid: u32) -> bool {
    tgid == std::process::id() || (tgid != 0 && tgid == SENTINEL_PID.load(Ordering::Relaxed))
}

/// The agent's own files: its binary, state directory and rules directory (host paths; a
/// write to one from a container is `dcea.target.agent`).
static AGENT_FILES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Remember the agent's files, canonical where they exist (set once, by the monitor).
pub fn set_agent_files(state_dir: &Path, rules_dir: Option<&Path>, config: Option<&Path>) {
    let exe = std::fs::read_link("/proc/self/exe").ok().map(|p| {
        // A binary replaced on disk while running reads "… (deleted)".
        let s = p.to_string_lossy();
        PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
    });
    let files = exe
        .into_iter()
        .chain([Some(state_dir), rules_dir, config].into_iter().flatten().map(|p| p.canonicalize().unwrap_or(p.into())))
        .filter(|p| p.as_os_str().len() > 1)
        .collect();
    let _ = AGENT_FILES.set(files);
}

/// Whether a host path is one of the agent's files or lies under one of its directories.
pub fn is_agent_file(host_path: &str) -> bool {
    AGENT_FILES.get().is_some_and(|files| files.iter().any(|f| Path::new(host_path).starts_with(f)))
}
