//! How the last agent ended. The agent keeps `agent-run.json` in its state directory (its pid,
//! start, a heartbeat every few seconds, and a clean stop); its sentinel keeps
//! `sentinel.json` (what it saw done to the agent, and when the agent exited). A start that
//! finds a run without a clean stop reports the gap: the previous agent stopped abnormally,
//! when, for how long, and why where the sentinel knows.
//!
//! Both files are written whole and renamed into place; a corrupt one is set aside with a
//! warning and the start goes on.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::output::{Alert, Priority, SOURCE, rfc3339_nanos};

pub const RULE_AGENT_STOPPED: &str = "dcea agent stopped abnormally";
const RUN_FILE: &str = "agent-run.json";
const SENTINEL_FILE: &str = "sentinel.json";
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// What the sentinel keeps of what it saw (the latest last).
const THREATS_KEPT: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRun {
    pub pid: u32,
    /// Wall clock, ns since the epoch.
    pub started_ns: u64,
    pub heartbeat_ns: u64,
    /// Set by a clean stop.
    #[serde(default)]
    pub stopped_ns: Option<u64>,
}

/// One thing the sentinel saw done to the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threat {
    pub at_ns: u64,
    pub rule: String,
    /// The alert's output line.
    pub what: String,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelNote {
    pub agent_pid: u32,
    #[serde(default)]
    pub threats: Vec<Threat>,
    /// When the sentinel saw the agent exit.
    #[serde(default)]
    pub agent_exited_ns: Option<u64>,
}

/// Parse a marker file's contents (the fuzz target's entry).
pub fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    match parse(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            let aside = path.with_extension(format!("corrupt-{}", crate::sys::realtime_ns() / 1_000_000_000));
            let _ = fs::rename(path, &aside);
            eprintln!("dcea: WARNING: {} is corrupt ({e}); set aside as {}", path.display(), aside.display());
            None
        }
    }
}

fn write<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    fs::rename(&tmp, path)
}

/// The agent's side: the run marker it keeps while it runs.
pub struct RunMarker {
    path: PathBuf,
    run: AgentRun,
    last_write: Instant,
}

impl RunMarker {
    /// Read how the last run ended (its gap alert, if it did not stop cleanly), then claim
    /// the marker for this run. Only the agent that holds the state directory calls this.
    pub fn begin(state_dir: &Path, hostname: &str) -> (RunMarker, Option<Alert>) {
        let now = crate::sys::realtime_ns();
        let path = state_dir.join(RUN_FILE);
        let sentinel_path = state_dir.join(SENTINEL_FILE);
        let previous: Option<AgentRun> = read(&path);
        let note: Option<SentinelNote> = read(&sentinel_path);
        let gap = previous.and_then(|p| gap_alert(&p, note.filter(|n| n.agent_pid == p.pid).as_ref(), now, hostname));
        let _ = fs::remove_file(&sentinel_path);
        let run = AgentRun { pid: std::process::id(), started_ns: now, heartbeat_ns: now, stopped_ns: None };
        let marker = RunMarker { path, run, last_write: Instant::now() };
        marker.save();
        (marker, gap)
    }

    fn save(&self) {
        if let Err(e) = write(&self.path, &self.run) {
            tracing::warn!("writing {}: {e}", self.path.display());
        }
    }

    /// Called every second; writes every few.
    pub fn heartbeat(&mut self) {
        if self.last_write.elapsed() >= HEARTBEAT_EVERY {
            self.run.heartbeat_ns = crate::sys::realtime_ns();
            self.last_write = Instant::now();
            self.save();
        }
    }

    pub fn clean_stop(mut self) {
        let now = crate::sys::realtime_ns();
        self.run.heartbeat_ns = now;
        self.run.stopped_ns = Some(now);
        self.save();
    }
}

/// The alert a start raises for a previous run that did not stop cleanly.
pub fn gap_alert(prev: &AgentRun, note: Option<&SentinelNote>, now_ns: u64, hostname: &str) -> Option<Alert> {
    if prev.stopped_ns.is_some() || prev.pid == std::process::id() {
        return None;
    }
    // The sentinel's exit time is exact; without it the last heartbeat is when it was last
    // known alive (the gap is at most one heartbeat period longer than said).
    let exited = note.and_then(|n| n.agent_exited_ns);
    let ended_ns = exited.unwrap_or(prev.heartbeat_ns).max(prev.heartbeat_ns);
    let down_s = now_ns.saturating_sub(ended_ns) as f64 / 1e9;
    let threats = note.map(|n| n.threats.as_slice()).unwrap_or_default();
    let from_container = threats.iter().find(|t| t.container_id.as_deref().is_some_and(|c| c != "host"));
    let cause = if threats.is_empty() {
        "no signal from a container was seen; a crash, an out-of-memory kill or a host process".to_string()
    } else {
        threats.iter().map(|t| t.what.as_str()).collect::<Vec<_>>().join("; ")
    };
    let mut f = BTreeMap::new();
    f.insert("dcea.previous.pid".into(), json!(prev.pid));
    f.insert("dcea.previous.started".into(), json!(rfc3339_nanos(prev.started_ns)));
    f.insert("dcea.previous.last_seen".into(), json!(rfc3339_nanos(prev.heartbeat_ns)));
    f.insert("dcea.previous.ended".into(), json!(exited.map(rfc3339_nanos)));
    f.insert("dcea.down_seconds".into(), json!((down_s * 10.0).round() / 10.0));
    f.insert("dcea.cause".into(), json!(cause));
    f.insert(
        "container.id".into(),
        json!(from_container.and_then(|t| t.container_id.clone()).unwrap_or("host".into())),
    );
    f.insert("container.name".into(), json!(from_container.and_then(|t| t.container_name.clone())));
    let ended = match exited {
        Some(t) => format!("exited at {} (seen by its sentinel)", rfc3339_nanos(t)),
        None => format!("was last seen at {}", rfc3339_nanos(prev.heartbeat_ns)),
    };
    Some(Alert {
        time: rfc3339_nanos(now_ns),
        rule: RULE_AGENT_STOPPED.into(),
        priority: if from_container.is_some() { Priority::Critical } else { Priority::Warning },
        output: format!(
            "dcea agent stopped abnormally: the previous agent (pid {}) {ended}; detection was down for {down_s:.1} s until this start (cause: {cause})",
            prev.pid
        ),
        output_fields: f,
        source: SOURCE,
        tags: vec!["dcea".into(), "self_protection".into()],
        hostname: hostname.into(),
    })
}

/// The sentinel's side: what it saw, kept where the next agent reads it.
pub struct SentinelLog {
    path: PathBuf,
    note: SentinelNote,
}

impl SentinelLog {
    pub fn new(state_dir: &Path, agent_pid: u32) -> SentinelLog {
        SentinelLog { path: state_dir.join(SENTINEL_FILE), note: SentinelNote { agent_pid, ..Default::default() } }
    }

    pub fn threat(&mut self, alert: &Alert) {
        let field = |k: &str| alert.output_fields.get(k).and_then(|v| v.as_str()).map(str::to_string);
        self.note.threats.push(Threat {
            at_ns: crate::sys::realtime_ns(),
            rule: alert.rule.clone(),
            what: alert.output.clone(),
            container_id: field("container.id"),
            container_name: field("container.name"),
        });
        let extra = self.note.threats.len().saturating_sub(THREATS_KEPT);
        self.note.threats.drain(..extra);
        self.save();
    }

    pub fn agent_exited(&mut self) {
        self.note.agent_exited_ns = Some(crate::sys::realtime_ns());
        self.save();
    }

    fn save(&self) {
        if let Err(e) = write(&self.path, &self.note) {
            eprintln!("dcea: sentinel: writing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pid: u32, stopped: Option<u64>) -> AgentRun {
        AgentRun { pid, started_ns: 1_000_000_000, heartbeat_ns: 5_000_000_000, stopped_ns: stopped }
    }

    #[test]
    fn a_clean_stop_raises_nothing_and_an_unclean_one_says_for_how_long() {
        assert!(gap_alert(&run(7, Some(6_000_000_000)), None, 10_000_000_000, "n").is_none());
        let a = gap_alert(&run(7, None), None, 10_000_000_000, "n").expect("unclean");
        assert_eq!(a.rule, RULE_AGENT_STOPPED);
        assert_eq!(a.priority, Priority::Warning);
        assert_eq!(a.output_fields["dcea.down_seconds"], json!(5.0));
        assert_eq!(a.output_fields["container.id"], json!("host"));
    }

    #[test]
    fn the_sentinels_note_gives_the_exit_time_and_a_containers_signal_makes_it_critical() {
        let note = SentinelNote {
            agent_pid: 7,
            threats: vec![Threat {
                at_ns: 5_500_000_000,
                rule: "dcea agent signalled from a container".into(),
                what: "SIGKILL from pid 9 (kill)".into(),
                container_id: Some("abc".into()),
                container_name: Some("attacker".into()),
            }],
            agent_exited_ns: Some(6_000_000_000),
        };
        let a = gap_alert(&run(7, None), Some(&note), 9_000_000_000, "n").unwrap();
        assert_eq!(a.priority, Priority::Critical);
        assert_eq!(a.output_fields["dcea.down_seconds"], json!(3.0));
        assert_eq!(a.output_fields["container.name"], json!("attacker"));
        assert!(a.output.contains("SIGKILL from pid 9"), "{}", a.output);
    }

    #[test]
    fn markers_round_trip_and_a_corrupt_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (m, gap) = RunMarker::begin(dir.path(), "n");
        assert!(gap.is_none(), "first start");
        drop(m); // no clean stop: like a SIGKILL
        // A marker written by another pid is the previous run.
        let p = dir.path().join(RUN_FILE);
        let mut prev: AgentRun = parse(&fs::read(&p).unwrap()).unwrap();
        prev.pid = u32::MAX - 1;
        write(&p, &prev).unwrap();
        let (m, gap) = RunMarker::begin(dir.path(), "n");
        assert_eq!(gap.expect("unclean previous run").output_fields["dcea.previous.pid"], json!(u32::MAX - 1));
        m.clean_stop();
        let stopped: AgentRun = parse(&fs::read(&p).unwrap()).unwrap();
        assert!(stopped.stopped_ns.is_some());
        fs::write(&p, b"{\"pid\": \"x\"").unwrap();
        let (_m, gap) = RunMarker::begin(dir.path(), "n");
        assert!(gap.is_none());
        let aside =
            fs::read_dir(dir.path()).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains("corrupt"));
        assert!(aside, "the corrupt marker is kept aside");
        assert!(parse::<SentinelNote>(b"{\"agent_pid\":1,\"bogus\":2}").is_err(), "unknown keys are errors");
    }
}
