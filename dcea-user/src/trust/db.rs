//! The persistent trust database: `<state-dir>/trust.json`.
//!
//! For every container: its init, the namespaces it started with (the baseline), which of
//! them it is trusted to share with the host, and every process with the namespaces it is
//! trusted to be in. Each process/namespace pair is stored as the paper specifies,
//! SHA-256(pid) ‖ SHA-256(namespace inode) (both over the decimal text), with the SHA-256(pid)
//! half written once per process, beside the plain numbers that explain an alert. Loading
//! recomputes every digest: a record whose digest does not match its numbers marks the file
//! corrupt. (This is consistency, not secrecy: the file is root's, mode 0600, and anyone who
//! can write it can write matching digests.)
//!
//! Writes are atomic (temp file, fsync, rename). A file that cannot be read back — truncated,
//! corrupt, or from a newer dcea — is renamed aside (`trust.json.corrupt-<unix time>`), the
//! reason is said once, and the baseline is rebuilt from the running containers. A lock file
//! keeps two agents from writing the same database.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io::{self, Write},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

use dcea_common::{NS_KINDS, NsKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, scan::image::layer::hex, sys};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/dcea";
pub const FILE_NAME: &str = "trust.json";
const LOCK_NAME: &str = "trust.lock";
pub const FORMAT: &str = "dcea-trust";
pub const VERSION: u32 = 1;

/// Namespace kinds in file order (the order of every per-kind array below).
pub fn kind_names() -> Vec<String> {
    NsKind::ALL.iter().map(|k| k.name().to_string()).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustFile {
    pub format: String,
    pub version: u32,
    /// /proc/sys/kernel/random/boot_id: pids and start times mean nothing after a reboot.
    pub boot_id: String,
    pub written_at: String,
    /// The order of every per-kind array in this file.
    pub kinds: Vec<String>,
    /// The host reference the baselines were judged against (0 = unknown).
    pub host: Vec<u32>,
    pub containers: BTreeMap<String, ContainerRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub runtime: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub first_seen: String,
    pub init_pid: u32,
    pub init_start_time: u64,
    /// The init's namespaces when the baseline was taken; 0 for a kind it may never share
    /// with the host but already did (reported, never trusted).
    pub baseline: Vec<u32>,
    /// Kinds this container is trusted to share with the host (e.g. pid for `--pid=host`).
    pub shares_host: Vec<String>,
    /// The Kubernetes pod the container belongs to (CRI or dockershim labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    pub processes: Vec<ProcessRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl PodRef {
    pub fn of(meta: &crate::container::metadata::ContainerMeta) -> Option<PodRef> {
        Some(PodRef {
            namespace: meta.k8s_ns_name.clone(),
            name: meta.k8s_pod_name.clone()?,
            uid: meta.k8s_pod_uid.clone(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// /proc/<pid>/stat field 22: tells a reused pid from the original.
    pub start_time: u64,
    pub comm: String,
    /// Trusted namespace inode per kind (file order).
    pub ns: Vec<u32>,
    /// SHA-256(pid), the first half of every record of this process.
    pub pid_sha256: String,
    /// SHA-256(inode) per kind: the record for kind k is `pid_sha256 ‖ ns_sha256[k]`.
    pub ns_sha256: Vec<String>,
}

/// SHA-256 of a number's decimal text, as hex.
pub fn digest_number(n: u64) -> String {
    hex(&Sha256::digest(n.to_string().as_bytes()))
}

/// Memoised inode digests (a node has few distinct namespaces and many processes).
#[derive(Default)]
pub struct Digests(HashMap<u32, String>);

impl Digests {
    pub fn inode(&mut self, ino: u32) -> &str {
        self.0.entry(ino).or_insert_with(|| digest_number(u64::from(ino)))
    }
}

impl ProcessRecord {
    pub fn new(pid: u32, start_time: u64, comm: &str, ns: &[u32; NS_KINDS], digests: &mut Digests) -> ProcessRecord {
        ProcessRecord {
            pid,
            start_time,
            comm: comm.to_string(),
            ns: ns.to_vec(),
            pid_sha256: digest_number(u64::from(pid)),
            ns_sha256: ns.iter().map(|&i| digests.inode(i).to_string()).collect(),
        }
    }

    /// The paper's record for one kind: SHA-256(pid) ‖ SHA-256(inode), hex.
    pub fn record(&self, kind: NsKind) -> Option<String> {
        Some(format!("{}{}", self.pid_sha256, self.ns_sha256.get(kind.index())?))
    }

    fn check(&self, digests: &mut Digests) -> Result<(), String> {
        if self.ns.len() != NS_KINDS || self.ns_sha256.len() != NS_KINDS {
            return Err(format!("process {}: {} namespaces, expected {NS_KINDS}", self.pid, self.ns.len()));
        }
        if self.pid_sha256 != digest_number(u64::from(self.pid)) {
            return Err(format!("process {}: SHA-256(pid) does not match the pid", self.pid));
        }
        for (k, (&ino, d)) in self.ns.iter().zip(&self.ns_sha256).enumerate() {
            if digests.inode(ino) != d {
                return Err(format!(
                    "process {}: SHA-256 of its {} namespace does not match inode {ino}",
                    self.pid,
                    NsKind::ALL[k].name()
                ));
            }
        }
        Ok(())
    }
}

impl TrustFile {
    pub fn new(host: &[u32; NS_KINDS]) -> TrustFile {
        TrustFile {
            format: FORMAT.into(),
            version: VERSION,
            boot_id: boot_id(),
            written_at: crate::output::rfc3339_nanos(sys::realtime_ns()),
            kinds: kind_names(),
            host: host.to_vec(),
            containers: BTreeMap::new(),
        }
    }

    /// Everything a reader must refuse, as one reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("not a dcea trust database (format {:?})", self.format));
        }
        if self.version != VERSION {
            return Err(format!("format version {} (this dcea reads version {VERSION})", self.version));
        }
        if self.kinds != kind_names() || self.host.len() != NS_KINDS {
            return Err(format!("namespace kinds {:?} differ from this dcea's {:?}", self.kinds, kind_names()));
        }
        let mut digests = Digests::default();
        for (id, c) in &self.containers {
            if c.baseline.len() != NS_KINDS {
                return Err(format!("container {id}: baseline has {} namespaces", c.baseline.len()));
            }
            if let Some(bad) = c.shares_host.iter().find(|k| !NsKind::ALL.iter().any(|n| n.name() == k.as_str())) {
                return Err(format!("container {id}: unknown namespace kind {bad:?}"));
            }
            for p in &c.processes {
                p.check(&mut digests).map_err(|e| format!("container {id}: {e}"))?;
            }
        }
        Ok(())
    }

    pub fn process_count(&self) -> usize {
        self.containers.values().map(|c| c.processes.len()).sum()
    }
}

pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// A valid database of this boot.
    Database(TrustFile),
    /// No database yet: first start.
    Missing,
    /// A valid database from before the last reboot: its pids mean nothing now.
    PreviousBoot,
    /// Unreadable; renamed aside.
    SetAside { reason: String, moved_to: PathBuf },
}

impl Loaded {
    /// One line for stderr; `None` when there is nothing to say.
    pub fn describe(&self, path: &Path) -> Option<String> {
        match self {
            Loaded::Database(f) => Some(format!(
                "trust database {}: {} containers, {} processes restored",
                path.display(),
                f.containers.len(),
                f.process_count()
            )),
            Loaded::Missing => Some(format!("trust database {}: none yet; taking a new baseline", path.display())),
            Loaded::PreviousBoot => Some(format!(
                "trust database {}: written before the last reboot; taking a new baseline",
                path.display()
            )),
            Loaded::SetAside { reason, moved_to } => Some(format!(
                "WARNING: trust database {} is unusable ({reason}); kept as {} and rebuilt from the running containers",
                path.display(),
                moved_to.display()
            )),
        }
    }
}

/// The state directory's trust database.
pub struct TrustStore {
    pub path: PathBuf,
    /// The held lock (None: read-only, another dcea writes this database).
    lock: Option<fs::File>,
}

impl TrustStore {
    /// Open `dir`, creating it (0700) when needed, and take the writer's lock. `Ok(None)` when
    /// another process holds it.
    pub fn open(dir: &Path) -> Result<Option<TrustStore>, Error> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating state directory {}", dir.display()), e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        // SAFETY: valid descriptor.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(Error::io(format!("locking {}", lock_path.display()), e));
        }
        Ok(Some(TrustStore { path: dir.join(FILE_NAME), lock: Some(lock) }))
    }

    /// A store that only reads (the lock is another agent's).
    pub fn read_only(dir: &Path) -> TrustStore {
        TrustStore { path: dir.join(FILE_NAME), lock: None }
    }

    pub fn writable(&self) -> bool {
        self.lock.is_some()
    }

    /// Read the database. Never fails on content: what cannot be used is set aside (when this
    /// store may write) and reported.
    pub fn load(&self) -> Result<Loaded, Error> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
        };
        let parsed = serde_json::from_slice::<TrustFile>(&bytes)
            .map_err(|e| if e.is_eof() { format!("truncated: {e}") } else { format!("not valid trust JSON: {e}") })
            .and_then(|f| f.validate().map(|()| f));
        match parsed {
            Ok(f) if f.boot_id != boot_id() => Ok(Loaded::PreviousBoot),
            Ok(f) => Ok(Loaded::Database(f)),
            Err(reason) => {
                let stamp = sys::realtime_ns() / 1_000_000_000;
                let moved_to = (0..)
                    .map(|n| match n {
                        0 => self.path.with_file_name(format!("{FILE_NAME}.corrupt-{stamp}")),
                        n => self.path.with_file_name(format!("{FILE_NAME}.corrupt-{stamp}.{n}")),
                    })
                    .find(|p| !p.exists())
                    .unwrap_or_else(|| self.path.with_extension("corrupt"));
                if self.writable() {
                    fs::rename(&self.path, &moved_to)
                        .map_err(|e| Error::io(format!("setting aside {}", self.path.display()), e))?;
                    Ok(Loaded::SetAside { reason, moved_to })
                } else {
                    Err(Error::Usage(format!(
                        "trust database {} is unusable ({reason}); the next writer (dcea monitor, dcea trust verify) sets it aside and rebuilds it",
                        self.path.display()
                    )))
                }
            }
        }
    }

    /// Atomic write (no-op for a read-only store).
    pub fn save(&self, file: &TrustFile) -> Result<(), Error> {
        if !self.writable() {
            return Ok(());
        }
        sys::write_atomic(&self.path, 0o600, |w| {
            serde_json::to_writer(&mut *w, file).map_err(io::Error::other)?;
            w.write_all(b"\n")
        })
        .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TrustFile {
        let mut host = [0u32; NS_KINDS];
        host[NsKind::Pid.index()] = 4026531836;
        let mut f = TrustFile::new(&host);
        let ns = [
            4026532177, 4026532180, 4026532180, 4026532181, 4026532178, 4026532179, 4026531837, 4026531835, 4026531834,
        ];
        let mut d = Digests::default();
        f.containers.insert(
            "c1".into(),
            ContainerRecord {
                runtime: "docker".into(),
                name: Some("web\n\"x\"".into()),
                image: Some("img:1".into()),
                first_seen: "2026-01-01T00:00:00Z".into(),
                init_pid: 100,
                init_start_time: 5,
                baseline: ns.to_vec(),
                shares_host: vec!["user".into(), "time".into()],
                pod: None,
                processes: vec![ProcessRecord::new(100, 5, "sh", &ns, &mut d)],
            },
        );
        f
    }

    #[test]
    fn records_are_the_papers_concatenated_digests() {
        let f = sample();
        let p = &f.containers["c1"].processes[0];
        let rec = p.record(NsKind::Mnt).unwrap();
        assert_eq!(rec.len(), 128);
        // SHA-256("100") and SHA-256("4026532177"), independently known values.
        assert!(rec.starts_with("ad57366865126e55649ecb23ae1d48887544976efea46a48eb5d85a6eeb4d306"), "{rec}");
        assert_eq!(&rec[64..], digest_number(4026532177));
        f.validate().unwrap();
    }

    #[test]
    fn round_trip_set_aside_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path()).unwrap().expect("lock");
        assert!(matches!(store.load().unwrap(), Loaded::Missing));
        let f = sample();
        store.save(&f).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&store.path).unwrap().permissions().mode() & 0o777, 0o600);
        match store.load().unwrap() {
            Loaded::Database(back) => assert_eq!(back, f),
            other => panic!("{other:?}"),
        }
        // A second writer does not get the lock; a read-only store reads.
        assert!(TrustStore::open(dir.path()).unwrap().is_none());
        assert!(matches!(TrustStore::read_only(dir.path()).load().unwrap(), Loaded::Database(_)));

        let bytes = fs::read(&store.path).unwrap();
        let tampered = String::from_utf8(bytes.clone()).unwrap().replace("4026532177", "4026531832");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", bytes[..bytes.len() / 2].to_vec()),
            ("not valid trust JSON", b"\x00\xffgarbage".to_vec()),
            ("does not match", tampered.into_bytes()),
            (
                "format version 99",
                String::from_utf8(bytes.clone()).unwrap().replace("\"version\":1", "\"version\":99").into_bytes(),
            ),
            ("not valid trust JSON", b"{}".to_vec()),
        ];
        for (want, content) in cases {
            fs::write(&store.path, &content).unwrap();
            // The read-only store refuses without touching the file.
            assert!(TrustStore::read_only(dir.path()).load().is_err());
            match store.load().unwrap() {
                Loaded::SetAside { reason, moved_to } => {
                    assert!(reason.contains(want), "{want}: {reason}");
                    assert_eq!(fs::read(&moved_to).unwrap(), content, "set aside, not deleted");
                    assert!(!store.path.exists());
                    let msg = Loaded::SetAside { reason, moved_to: moved_to.clone() }.describe(&store.path).unwrap();
                    assert!(msg.contains("unusable") && msg.contains("rebuilt"), "{msg}");
                    fs::remove_file(moved_to).unwrap();
                }
                other => panic!("{want}: {other:?}"),
            }
        }
        // Another boot's database is not corrupt, just stale.
        let mut old = sample();
        old.boot_id = "00000000-0000-0000-0000-000000000000".into();
        store.save(&old).unwrap();
        assert!(matches!(store.load().unwrap(), Loaded::PreviousBoot));
    }
}
