//! What is quarantined, by whom and why: one record per quarantine
//! (`<state-dir>/quarantine/<container-id>.json`), and an append-only events log
//! (`<state-dir>/quarantine/events.jsonl`, one JSON object a line) that the running agent reads
//! every second to raise the quarantine and release alerts. The kernel's pins are the truth of
//! what is blocked; these files say who asked and why.
//!
//! A corrupt record is set aside (`.corrupt`) with a clear message; a corrupt events line is
//! skipped and reported. Neither stops anything.

use std::{
    fs,
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const DIR: &str = "quarantine";
pub const EVENTS_FILE: &str = "events.jsonl";
/// The agent's read position in the events log, so a restarted agent neither repeats nor
/// misses an event.
pub const OFFSET_FILE: &str = "events.offset";
const VERSION: u32 = 1;
/// Largest record or events line taken (a record is a few hundred bytes).
pub const MAX_LINE: usize = 64 << 10;
/// Bytes of the events log read per turn.
const READ_CHUNK: u64 = 1 << 20;

/// Who asked for a quarantine or its release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// `cli` (`dcea quarantine`) or `agent` (`--quarantine-on critical`).
    pub origin: String,
    pub uid: u32,
    pub user: String,
}

impl Requester {
    /// The user running this process (and who ran sudo, when that is known).
    pub fn cli() -> Requester {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let mut user = user_name(uid).unwrap_or_else(|| uid.to_string());
        if let Ok(sudo) = std::env::var("SUDO_USER")
            && !sudo.is_empty()
            && sudo != user
        {
            user = format!("{user} (sudo by {sudo})");
        }
        Requester { origin: "cli".into(), uid, user }
    }

    pub fn agent() -> Requester {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        Requester { origin: "agent".into(), uid, user: user_name(uid).unwrap_or_else(|| uid.to_string()) }
    }
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _ = f.next()?;
        (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// One quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub container_id: String,
    /// The container's name when the engine knew it.
    #[serde(default)]
    pub name: Option<String>,
    /// Its cgroup directory (absolute: the v2 root differs between pure and hybrid hosts).
    pub cgroup: String,
    pub cgroup_id: u64,
    pub allow_dns: bool,
    pub by: Requester,
    pub reason: String,
    /// RFC 3339, UTC.
    pub at: String,
}

impl Record {
    pub fn new(container_id: &str, name: Option<String>, cgroup: &Path, cgroup_id: u64) -> Record {
        Record {
            version: VERSION,
            container_id: container_id.to_string(),
            name,
            cgroup: cgroup.display().to_string(),
            cgroup_id,
            allow_dns: false,
            by: Requester::cli(),
            reason: String::new(),
            at: now(),
        }
    }

    /// The name, else the 12-digit short id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.container_id[..self.container_id.len().min(12)])
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Quarantine,
    Release,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Quarantine => "quarantine",
            Action::Release => "release",
        }
    }
}

/// One line of the events log: what happened, to which quarantine, by whom and why (for a
/// release: who released it and why; the record's other fields are the quarantine's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub action: Action,
    pub record: Record,
}

/// A record file's content; errors say what is wrong.
pub fn parse_record(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() > MAX_LINE {
        return Err(format!("{} bytes: not a quarantine record (at most {MAX_LINE})", bytes.len()));
    }
    let r: Record = serde_json::from_slice(bytes).map_err(|e| format!("not a quarantine record: {e}"))?;
    if r.version != VERSION {
        return Err(format!("quarantine record version {} (this dcea reads {VERSION})", r.version));
    }
    if !crate::container::metadata::is_container_id(&r.container_id) {
        return Err(format!("{:?} is not a container id", r.container_id));
    }
    Ok(r)
}

/// Complete lines of the events log: the events, the lines that did not parse (1-based within
/// `bytes`, with why), and how many bytes were consumed (a torn last line is left for later).
pub fn parse_events(bytes: &[u8]) -> (Vec<Event>, Vec<(usize, String)>, usize) {
    let (mut events, mut errors, mut used) = (Vec::new(), Vec::new(), 0);
    for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if line.last() != Some(&b'\n') {
            break;
        }
        used += line.len();
        let body = &line[..line.len() - 1];
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if body.len() > MAX_LINE {
            errors.push((n + 1, format!("line of {} bytes", body.len())));
            continue;
        }
        match serde_json::from_slice::<Event>(body) {
            Ok(e) if parse_record(&serde_json::to_vec(&e.record).unwrap_or_default()).is_ok() => events.push(e),
            Ok(e) => errors.push((n + 1, format!("bad record for {:?}", e.record.container_id))),
            Err(e) => errors.push((n + 1, e.to_string())),
        }
    }
    (events, errors, used)
}

/// The quarantine files of one state directory.
#[derive(Clone, Debug)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store { dir: state_dir.join(DIR) }
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn save(&self, r: &Record) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
        crate::sys::write_atomic(&self.record_path(&r.container_id), 0o600, |w| w.write_all(&body))
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.record_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The record of `id`: `Ok(None)` when there is none; a corrupt one is set aside and
    /// reported as the error.
    pub fn load(&self, id: &str) -> Result<Option<Record>, String> {
        let path = self.record_path(id);
        match fs::read(&path) {
            Ok(bytes) => match parse_record(&bytes) {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    let _ = fs::rename(&path, &aside);
                    Err(format!("{}: {e}; set aside as {}", path.display(), aside.display()))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Every record, and the problems met (corrupt files set aside).
    pub fn all(&self) -> (Vec<Record>, Vec<String>) {
        let (mut out, mut problems) = (Vec::new(), Vec::new());
        let Ok(rd) = fs::read_dir(&self.dir) else { return (out, problems) };
        let mut ids: Vec<String> =
            rd.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string)).collect();
        ids.sort();
        for id in ids {
            match self.load(&id) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
        (out, problems)
    }

    /// Append one event (one `write` of one line, so concurrent writers do not interleave).
    pub fn append(&self, event: &Event) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = fs::OpenOptions::new().create(true).append(true).open(self.dir.join(EVENTS_FILE))?;
        f.write_all(&line)
    }
}

/// The agent's reader of the events log.
pub struct EventReader {
    store: Store,
    offset: u64,
}

impl EventReader {
    /// From the saved position; without one, from the end (what happened before this state
    /// directory had an agent is not news).
    pub fn open(store: Store) -> EventReader {
        let saved = fs::read_to_string(store.dir.join(OFFSET_FILE)).ok().and_then(|s| s.trim().parse().ok());
        let offset = saved.unwrap_or_else(|| fs::metadata(store.dir.join(EVENTS_FILE)).map(|m| m.len()).unwrap_or(0));
        EventReader { store, offset }
    }

    /// New events since the last call, and problems (corrupt lines) to report.
    pub fn read_new(&mut self) -> (Vec<Event>, Vec<String>) {
        let path = self.store.dir.join(EVENTS_FILE);
        let Ok(mut f) = fs::File::open(&path) else { return (Vec::new(), Vec::new()) };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated or replaced: start again from its beginning.
            self.offset = 0;
        }
        if len == self.offset {
            return (Vec::new(), Vec::new());
        }
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.take(READ_CHUNK).read_to_end(&mut buf).is_err() {
            return (Vec::new(), vec![format!("{}: unreadable", path.display())]);
        }
        let (events, errors, mut used) = parse_events(&buf);
        if used == 0 && buf.len() as u64 == READ_CHUNK {
            // One line longer than a chunk: skip it whole.
            used = buf.len();
        }
        let problems = errors
            .into_iter()
            .map(|(n, e)| format!("{}: line {n} after byte {}: {e}", path.display(), self.offset))
            .collect();
        self.offset += used as u64;
        let _ = crate::sys::write_atomic(&self.store.dir.join(OFFSET_FILE), 0o600, |w| {
            w.write_all(self.offset.to_string().as_bytes())
        });
        (events, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record::new(id, Some("web".into()), Path::new("/sys/fs/cgroup/docker/x"), 7)
    }

    #[test]
    fn records_round_trip_and_corrupt_ones_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let id = "ab".repeat(32);
        store.save(&record(&id)).unwrap();
        assert_eq!(store.load(&id).unwrap().unwrap().name.as_deref(), Some("web"));
        fs::write(store.dir.join(format!("{id}.json")), b"{\"version\":1,").unwrap();
        let e = store.load(&id).unwrap_err();
        assert!(e.contains("not a quarantine record") && e.contains("set aside"), "{e}");
        assert!(store.dir.join(format!("{id}.json.corrupt")).exists());
        assert_eq!(store.load(&id).unwrap(), None);
        assert!(parse_record(br#"{"version":9}"#).is_err());
    }

    #[test]
    fn the_reader_takes_whole_lines_once_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let id = "ab".repeat(32);
        let mut reader = EventReader::open(store.clone());
        store.append(&Event { action: Action::Quarantine, record: record(&id) }).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(store.dir.join(EVENTS_FILE)).unwrap();
        f.write_all(b"garbage\n{\"action\":\"release\"").unwrap();
        let (events, problems) = reader.read_new();
        assert_eq!(events.len(), 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(reader.read_new().0.is_empty());
        // The torn line is completed later; a restarted reader resumes where this one stopped.
        let rest = serde_json::to_string(&record(&id)).unwrap();
        f.write_all(format!(",\"record\":{rest}}}\n").as_bytes()).unwrap();
        let mut again = EventReader::open(store.clone());
        let (events, problems) = again.read_new();
        assert_eq!((events.len(), problems.len()), (1, 0), "{problems:?}");
        assert_eq!(events[0].action, Action::Release);
    }
}
