//! Network quarantine of a container (`dcea quarantine`): cgroup BPF programs on the
//! container's cgroup v2 directory refuse connect/sendmsg (EPERM) and drop every packet except
//! loopback inside the container's own network namespace (and port 53 with `--allow-dns`).
//! The links are pinned in bpffs, so a quarantine survives the agent's restart or crash until
//! it is released. `state` keeps who asked and why; `agent` is the running monitor's side
//! (alerts, metrics, `--quarantine-on critical`).

pub mod agent;
pub mod cgroup;
pub mod cli;
pub mod pin;
pub mod state;

use std::path::{Path, PathBuf};

use state::{Action, Event, Record, Requester, Store};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("dcea quarantine must run as root (it attaches BPF programs to the container's cgroup)")]
    NotRoot,
    #[error(
        "no cgroup v2 hierarchy is mounted (looked at /sys/fs/cgroup and /sys/fs/cgroup/unified): network quarantine attaches BPF programs to the container's cgroup v2 directory, which a cgroup v1-only host does not have; boot with systemd.unified_cgroup_hierarchy=1 (or mount cgroup2 and run the runtime with it)"
    )]
    NoCgroup2,
    #[error(
        "no cgroup v2 directory for container {id} under {root}: is it running, and does its runtime use cgroup v2 (on a hybrid host, runc places containers in /sys/fs/cgroup/unified)?"
    )]
    NoCgroup { id: String, root: PathBuf },
    #[error("{0}")]
    Target(String),
    #[error("quarantine programs: {0}")]
    Kernel(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl QuarantineError {
    pub fn io(path: &Path, source: std::io::Error) -> QuarantineError {
        QuarantineError::Io { path: path.to_path_buf(), source }
    }
}

/// A container as named on the command line, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub name: Option<String>,
    /// Its init's host pid, when the engine said.
    pub pid: Option<u32>,
}

/// `CONTAINER`: a 64-digit id, a prefix of 12+ digits, or a Docker name. The engine names and
/// completes ids; without it an id or a prefix is looked up in the cgroup tree.
pub fn resolve(name: &str, cgroup_root: Option<&Path>) -> Result<Target, QuarantineError> {
    let name = name.trim().trim_start_matches('/');
    if name.is_empty() || name.contains(['/', '\0', '?', '#', '%']) {
        return Err(QuarantineError::Target(format!("{name:?} is not a container id or name")));
    }
    let socket = crate::container::engine::socket_path();
    let engine = crate::container::engine::get_json(
        &socket,
        &format!("/containers/{}/json", crate::container::engine::path_segment(name)),
    );
    if let Ok(v) = &engine
        && let Some(id) = v["Id"].as_str().filter(|id| crate::container::metadata::is_container_id(id))
    {
        return Ok(Target {
            id: id.to_string(),
            name: v["Name"].as_str().map(|n| n.trim_start_matches('/').to_string()).filter(|n| !n.is_empty()),
            pid: v["State"]["Pid"].as_u64().and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 1),
        });
    }
    let hex = name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex && crate::container::metadata::is_container_id(name) {
        return Ok(Target { id: name.to_string(), name: None, pid: None });
    }
    if hex
        && name.len() >= 12
        && let Some(root) = cgroup_root
    {
        let ids = cgroup::ids_with_prefix(root, name);
        match ids.as_slice() {
            [one] => return Ok(Target { id: one.clone(), name: None, pid: None }),
            [] => {}
            many => {
                return Err(QuarantineError::Target(format!(
                    "{name:?} is the prefix of {} containers: give more digits",
                    many.len()
                )));
            }
        }
    }
    let why = match engine {
        Err(e) => format!("the engine: {e}"),
        Ok(_) => "the engine does not know it".to_string(),
    };
    Err(QuarantineError::Target(format!(
        "no container {name:?} ({why}; give a container id, a 12+ digit prefix or a Docker name)"
    )))
}

/// What [`quarantine`] did.
#[derive(Debug)]
pub struct Outcome {
    pub record: Record,
    pub programs: Vec<pin::Attached>,
    /// It was quarantined already (nothing attached again).
    pub already: bool,
}

/// Quarantine `target`: attach and pin, then record who asked and why, and log the event the
/// running agent raises an alert for.
pub fn quarantine(
    state_dir: &Path,
    target: &Target,
    allow_dns: bool,
    by: Requester,
    reason: &str,
) -> Result<Outcome, QuarantineError> {
    let store = Store::new(state_dir);
    if pin::is_pinned(&target.id) {
        let record = store.load(&target.id).ok().flatten().unwrap_or_else(|| {
            let mut r = Record::new(&target.id, target.name.clone(), Path::new(""), 0);
            r.reason = "(no record)".into();
            r
        });
        return Ok(Outcome { record, programs: Vec::new(), already: true });
    }
    let root = cgroup::v2_root()?;
    let dir = cgroup::find(&root, &target.id, target.pid)?;
    let cgroup_id = cgroup::id_of(&dir)?;
    let programs = pin::attach(&dir, &target.id, allow_dns)?;
    let mut record = Record::new(&target.id, target.name.clone(), &dir, cgroup_id);
    record.allow_dns = allow_dns;
    record.by = by;
    record.reason = reason.to_string();
    let io = |e| QuarantineError::io(&store.dir, e);
    store.save(&record).map_err(io)?;
    store.append(&Event { action: Action::Quarantine, record: record.clone() }).map_err(io)?;
    Ok(Outcome { record, programs, already: false })
}

/// Release a quarantine named by id, prefix or name (as recorded, or as the engine resolves
/// it): unpin the links (the programs detach), drop the record, log the event.
pub fn release(state_dir: &Path, name: &str, by: Requester, reason: &str) -> Result<Record, QuarantineError> {
    let store = Store::new(state_dir);
    let (records, _) = store.all();
    let name = name.trim().trim_start_matches('/');
    let pinned = pin::pinned();
    let by_record = records
        .iter()
        .find(|r| r.container_id == name || r.name.as_deref() == Some(name))
        .or_else(|| (name.len() >= 12).then(|| records.iter().find(|r| r.container_id.starts_with(name))).flatten())
        .cloned();
    let id = match &by_record {
        Some(r) => r.container_id.clone(),
        None => match pinned.iter().find(|id| name.len() >= 12 && id.starts_with(name)) {
            Some(id) => id.clone(),
            None => resolve(name, None).map(|t| t.id).map_err(|_| {
                QuarantineError::Target(format!(
                    "no quarantined container matches {name:?} (quarantined: {})",
                    if pinned.is_empty() { "none".to_string() } else { pinned.join(", ") }
                ))
            })?,
        },
    };
    let had_pins = pin::release(&id)?;
    if !had_pins && by_record.is_none() {
        return Err(QuarantineError::Target(format!("container {id} is not quarantined")));
    }
    let mut record = by_record.unwrap_or_else(|| Record::new(&id, None, Path::new(""), 0));
    record.by = by;
    record.reason = reason.to_string();
    record.at = state::now();
    let io = |e| QuarantineError::io(&store.dir, e);
    store.remove(&id).map_err(io)?;
    store.append(&Event { action: Action::Release, record: record.clone() }).map_err(io)?;
    Ok(record)
}

/// One quarantine as `dcea quarantine list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub container_id: String,
    pub name: Option<String>,
    /// The links are pinned (the container is cut off); false for a record whose pins are
    /// gone (a reboot, or bpffs unmounted).
    pub pinned: bool,
    pub record: Option<Record>,
}

pub fn list(state_dir: &Path) -> (Vec<Listed>, Vec<String>) {
    let (records, problems) = Store::new(state_dir).all();
    let pinned = pin::pinned();
    let mut out: Vec<Listed> = records
        .iter()
        .map(|r| Listed {
            container_id: r.container_id.clone(),
            name: r.name.clone(),
            pinned: pinned.contains(&r.container_id),
            record: Some(r.clone()),
        })
        .collect();
    for id in pinned {
        if !out.iter().any(|l| l.container_id == id) {
            out.push(Listed { container_id: id, name: None, pinned: true, record: None });
        }
    }
    (out, problems)
}
