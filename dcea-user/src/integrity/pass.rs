//! The in-memory measurement pass: every container process's read-only file-backed mappings
//! checked against the files they map (see [`super::memory`]), every `--integrity-interval`
//! and at once for a process a tampering record names. Each finding is an alert once per
//! process and mapping.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    Integrity,
    memory::{self, MismatchKind, ProcessMemory},
};
use crate::{
    container::{self, ContainerRef, metadata::MetadataCache},
    output::{Alert, Priority, SOURCE, rfc3339_nanos},
};

pub const RULE_CODE_MODIFIED: &str = "Container process code modified in memory";
pub const RULE_ANON_EXEC: &str = "Anonymous executable memory in a container process";
/// A write named by a record lands right after the syscall entry that reported it.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Clone, Debug)]
pub struct PassOptions {
    /// Zero: no periodic pass (requested passes still run).
    pub interval: Duration,
    /// Report anonymous executable mappings (JIT runtimes have them: off by default).
    pub anon_exec: bool,
    pub hostname: String,
    /// Findings are also kept here for `dcea integrity show`.
    pub state_dir: std::path::PathBuf,
}

/// What the passes did, for the stop summary and the benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassStats {
    pub passes: u64,
    pub processes: usize,
    pub mappings: usize,
    pub mappings_compared: usize,
    pub bytes_compared: u64,
    pub elapsed_us: u64,
}

struct Passer {
    opts: PassOptions,
    metadata: MetadataCache,
    tx: tokio::sync::mpsc::UnboundedSender<Alert>,
    memory: HashMap<u32, ProcessMemory>,
    reported: HashSet<(u32, u64, u64)>,
    last: PassStats,
    denied_said: bool,
}

/// Starts the pass thread; it ends when `tx`'s receiver is gone.
pub fn spawn(
    integrity: &Arc<Integrity>,
    metadata: MetadataCache,
    opts: PassOptions,
    tx: tokio::sync::mpsc::UnboundedSender<Alert>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let (req_tx, req_rx) = mpsc::channel();
    integrity.set_pass_requests(req_tx);
    let mut passer = Passer {
        opts,
        metadata,
        tx,
        memory: HashMap::new(),
        reported: HashSet::new(),
        last: PassStats::default(),
        denied_said: false,
    };
    thread::Builder::new().name("dcea-integrity".into()).spawn(move || passer.run(&req_rx))
}

impl Passer {
    fn run(&mut self, requests: &mpsc::Receiver<u32>) {
        let periodic = !self.opts.interval.is_zero();
        let mut next = Instant::now() + self.opts.interval;
        loop {
            if self.tx.is_closed() {
                return;
            }
            let wait = if periodic { next.saturating_duration_since(Instant::now()) } else { Duration::from_secs(1) };
            match requests.recv_timeout(wait) {
                Ok(pid) => {
                    thread::sleep(SETTLE);
                    // The whole container: a writer in its own PID namespace names its
                    // target by a pid the agent cannot map back.
                    if let Some(c) = container::of_pid(pid) {
                        for (p, _) in container_processes().into_iter().filter(|(_, other)| other.id == c.id) {
                            self.measure(p, &c);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if periodic && Instant::now() >= next => {
                    self.full_pass();
                    next = Instant::now() + self.opts.interval;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn full_pass(&mut self) {
        let started = Instant::now();
        let mut live = HashSet::new();
        let mut stats = PassStats { passes: self.last.passes + 1, ..Default::default() };
        for pid in container_processes() {
            let (pid, c) = pid;
            live.insert(pid);
            if let Some(report) = self.measure(pid, &c) {
                stats.processes += 1;
                stats.mappings += report.mappings;
                stats.mappings_compared += report.mappings_compared;
                stats.bytes_compared += report.bytes_compared;
            }
        }
        self.memory.retain(|pid, _| live.contains(pid));
        self.reported.retain(|(pid, _, _)| live.contains(pid));
        stats.elapsed_us = started.elapsed().as_micros() as u64;
        // A stable line: `cargo xtask bench` reads the pass's cost from it.
        tracing::debug!(
            "integrity pass {}: {} processes, {} mappings, {} compared ({} bytes), {:.1} ms",
            stats.passes,
            stats.processes,
            stats.mappings,
            stats.mappings_compared,
            stats.bytes_compared,
            stats.elapsed_us as f64 / 1000.0
        );
        self.last = stats;
    }

    fn measure(&mut self, pid: u32, c: &ContainerRef) -> Option<memory::PassReport> {
        let state = self.memory.entry(pid).or_default();
        let report = match memory::measure_process(pid, state) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                // Without CAP_SYS_ADMIN (map_files) or ptrace rights (mem) nothing is measured:
                // say so once rather than pass in silence.
                if !self.denied_said {
                    tracing::warn!("integrity: cannot read the memory of container process {pid}: {e}");
                    self.denied_said = true;
                }
                return None;
            }
            Err(_) => return None,
        };
        for m in &report.mismatches {
            if self.reported.insert((pid, m.start, m.end)) {
                let what = match m.kind {
                    MismatchKind::Code => "code",
                    MismatchKind::ReadOnlyData => "read-only data",
                };
                let output = format!(
                    "Container process code modified in memory ({what} of {} {:x}-{:x} differs from {}, first at page {:#x}; pid={pid} container={})",
                    m.perms,
                    m.start,
                    m.end,
                    if m.kind == MismatchKind::Code { "the file" } else { "its content after start-up" },
                    m.first_page,
                    c.id
                );
                let mut f = self.fields(pid, c);
                f.insert("dcea.mapping.path".into(), json!(m.path));
                f.insert("dcea.mapping.range".into(), json!(format!("{:x}-{:x}", m.start, m.end)));
                f.insert("dcea.mapping.perms".into(), json!(m.perms));
                f.insert("dcea.mapping.offset".into(), json!(m.file_offset));
                f.insert("dcea.mapping.first_page".into(), json!(format!("{:#x}", m.first_page)));
                f.insert("dcea.mapping.kind".into(), json!(what));
                self.send(RULE_CODE_MODIFIED, Priority::Critical, output, f, "integrity");
                super::findings::append(
                    &self.opts.state_dir,
                    &super::findings::Finding {
                        time: rfc3339_nanos(crate::sys::realtime_ns()),
                        container_id: c.id.clone(),
                        pid,
                        verdict: "memory".into(),
                        what: format!(
                            "{what} of {} {:x}-{:x} (first page {:#x})",
                            m.path, m.start, m.end, m.first_page
                        ),
                        sha256: None,
                        image_sha256: None,
                    },
                );
            }
        }
        if self.opts.anon_exec {
            for a in &report.anon_exec {
                if self.reported.insert((pid, a.start, a.end)) {
                    let output = format!(
                        "Anonymous executable memory in a container process ({} {:x}-{:x} {}; pid={pid} container={})",
                        a.perms, a.start, a.end, a.name, c.id
                    );
                    let mut f = self.fields(pid, c);
                    f.insert("dcea.mapping.range".into(), json!(format!("{:x}-{:x}", a.start, a.end)));
                    f.insert("dcea.mapping.perms".into(), json!(a.perms));
                    self.send(RULE_ANON_EXEC, Priority::Warning, output, f, "integrity");
                }
            }
        }
        Some(report)
    }

    fn fields(&self, pid: u32, c: &ContainerRef) -> BTreeMap<String, Value> {
        let mut f = BTreeMap::new();
        let meta = self.metadata.lookup(&c.id);
        container::metadata::add_container_fields(&mut f, Some(c), meta.as_deref());
        f.insert("proc.pid".into(), json!(pid));
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim_end().to_string()).ok();
        f.insert("proc.name".into(), json!(comm));
        let exe = fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.display().to_string());
        f.insert("proc.exepath".into(), json!(exe));
        f.insert("dcea.detected_by".into(), json!("integrity"));
        f
    }

    fn send(&self, rule: &str, priority: Priority, output: String, fields: BTreeMap<String, Value>, tag: &str) {
        let alert = Alert {
            time: rfc3339_nanos(crate::sys::realtime_ns()),
            rule: rule.into(),
            priority,
            output,
            output_fields: fields,
            source: SOURCE,
            tags: vec!["container".into(), tag.into(), "mitre_defense_evasion".into(), "T1055".into()],
            hostname: self.opts.hostname.clone(),
        };
        let _ = self.tx.send(alert);
    }
}

/// Every process of a container, but the agent's own.
pub(crate) fn container_processes() -> Vec<(u32, ContainerRef)> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid > 1 && !crate::sentinel::is_agent_process(*pid))
        .filter_map(|pid| Some((pid, container::of_pid(pid)?)))
        .collect()
}
