//! Profiles on disk: `<state-dir>/profiles/<name>.yaml`, one per workload, written atomically
//! (a temporary file renamed over the old one) under a lock the CLI takes too. The agent polls
//! the directory every second, so a `dcea profile promote` or an edit takes effect within one.
//! A file that does not parse is set aside as `<name>.yaml.corrupt`, and its workload learns
//! afresh: a bad profile never stops the agent.

use std::{
    collections::HashMap,
    fs,
    io::{self, Write},
    os::unix::{fs::OpenOptionsExt, io::AsRawFd},
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::profile::Profile;

pub const DIR: &str = "profiles";
const EXT: &str = "yaml";
/// Profile files read at most: a directory flooded with files is not read to the end.
const FILES_MAX: usize = 16_384;
/// A profile file larger than this is not read (4,096 entries take well under 1 MiB).
const FILE_BYTES_MAX: u64 = 4 << 20;

/// The lock every writer of the directory holds (agent and CLI).
pub struct Lock(#[allow(dead_code)] fs::File);

pub fn lock(dir: &Path) -> io::Result<Lock> {
    fs::create_dir_all(dir)?;
    let f = fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(dir.join(".lock"))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Lock(f))
}

pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.{EXT}"))
}

/// Read one profile file: Ok(None) when it is absent.
pub fn read(path: &Path) -> Result<Option<Profile>, String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > FILE_BYTES_MAX {
        return Err(format!("{} bytes (at most {FILE_BYTES_MAX})", meta.len()));
    }
    let text = fs::read(path).map_err(|e| e.to_string())?;
    let text = String::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    Profile::parse(&text).map(Some)
}

/// Write atomically: a reader sees the old file or the new one, never half of one.
pub fn write(dir: &Path, p: &Profile) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = path_of(dir, &p.name);
    let tmp = dir.join(format!(".{}.tmp", p.name));
    let mut f = fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(p.to_yaml().as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Move a bad file out of the way; where it went.
pub fn set_aside(path: &Path) -> Option<PathBuf> {
    let mut aside = PathBuf::from(format!("{}.corrupt", path.display()));
    if aside.exists() {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        aside = PathBuf::from(format!("{}.corrupt-{now}", path.display()));
    }
    fs::rename(path, &aside).ok().map(|()| aside)
}

/// The profile files of a directory, by name.
pub fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .take(FILES_MAX)
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?.strip_suffix(&format!(".{EXT}"))?.to_string();
            (!name.starts_with('.')).then_some((name, path))
        })
        .collect();
    out.sort();
    out
}

/// What changed on disk since the last poll.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Profiles read anew (changed by the CLI or an editor, or new).
    pub updated: Vec<String>,
    /// Profiles whose file is gone (`dcea profile reset`).
    pub removed: Vec<String>,
    /// Files that did not parse: (file, why, where it was set aside).
    pub corrupt: Vec<(PathBuf, String, Option<PathBuf>)>,
}

/// The agent's view of the directory.
pub struct Store {
    pub dir: PathBuf,
    profiles: HashMap<String, Profile>,
    by_workload: HashMap<String, String>,
    /// Each file's modification time and length when last read or written.
    stamps: HashMap<String, (SystemTime, u64)>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = fs::symlink_metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join(DIR),
            profiles: HashMap::new(),
            by_workload: HashMap::new(),
            stamps: HashMap::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Profile> {
        self.profiles.get_mut(name)
    }

    pub fn by_workload(&self, key: &str) -> Option<&Profile> {
        self.profiles.get(self.by_workload.get(key)?)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    pub fn insert(&mut self, p: Profile) {
        if let Some(old) = self.profiles.get(&p.name)
            && old.workload != p.workload
        {
            self.by_workload.remove(&old.workload);
        }
        self.by_workload.insert(p.workload.clone(), p.name.clone());
        self.profiles.insert(p.name.clone(), p);
    }

    fn remove(&mut self, name: &str) {
        if let Some(p) = self.profiles.remove(name) {
            self.by_workload.remove(&p.workload);
        }
        self.stamps.remove(name);
    }

    /// Re-read what changed on disk (the first call reads everything).
    pub fn poll(&mut self) -> Changes {
        let mut changes = Changes::default();
        let files = list(&self.dir);
        let present: std::collections::HashSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<String> = self.stamps.keys().filter(|n| !present.contains(n.as_str())).cloned().collect();
        for name in gone {
            self.remove(&name);
            changes.removed.push(name);
        }
        for (name, path) in &files {
            let now = stamp(path);
            if now.is_some() && self.stamps.get(name) == now.as_ref() {
                continue;
            }
            match read(path) {
                Ok(Some(p)) if &p.name == name => {
                    self.stamps.insert(name.clone(), now.unwrap_or((SystemTime::UNIX_EPOCH, 0)));
                    self.insert(p);
                    changes.updated.push(name.clone());
                }
                Ok(Some(p)) => {
                    let why = format!("it names itself {:?}, but its file is {name:?}", p.name);
                    self.remove(name);
                    changes.corrupt.push((path.clone(), why, set_aside(path)));
                }
                Ok(None) => {}
                Err(why) => {
                    self.remove(name);
                    changes.corrupt.push((path.clone(), why, set_aside(path)));
                }
            }
        }
        changes
    }

    /// Write `name` to disk under the lock, keeping what the CLI changed since the agent last
    /// read it (the mode, the learn time, its edits), plus the entries learned meanwhile.
    pub fn save(&mut self, name: &str) -> io::Result<()> {
        let Some(mine) = self.profiles.get(name).cloned() else { return Ok(()) };
        let _lock = lock(&self.dir)?;
        let path = path_of(&self.dir, name);
        let merged = match (stamp(&path), self.stamps.get(name)) {
            (Some(disk), Some(seen)) if disk != *seen => match read(&path) {
                Ok(Some(mut theirs)) if theirs.workload == mine.workload => {
                    for e in mine.entries {
                        theirs.learn(e, SystemTime::now());
                    }
                    theirs
                }
                _ => mine,
            },
            (None, Some(_)) => return Ok(()), // reset meanwhile: the next poll forgets it
            _ => mine,
        };
        write(&self.dir, &merged)?;
        self.stamps.insert(name.to_string(), stamp(&path).unwrap_or((SystemTime::UNIX_EPOCH, 0)));
        self.insert(merged);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::allowlist::profile::{Entry, Mode};

    fn profile(name: &str) -> Profile {
        Profile::new(
            name,
            &format!("docker/img@sha256:1/{name}"),
            Some(Duration::from_secs(3600)),
            Mode::Monitor,
            SystemTime::now(),
        )
    }

    fn entry(path: &str) -> Entry {
        Entry { path: path.into(), name: "x".into(), sha256: None, parent: None }
    }

    #[test]
    fn saved_profiles_are_read_back_and_changes_are_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::new(dir.path());
        assert_eq!(store.poll(), Changes::default());
        store.insert(profile("web-1"));
        store.save("web-1").expect("save");
        let mut other = Store::new(dir.path());
        assert_eq!(other.poll().updated, vec!["web-1".to_string()]);
        assert_eq!(other.by_workload("docker/img@sha256:1/web-1").map(|p| p.mode), Some(Mode::Learn));
        assert_eq!(store.poll(), Changes::default(), "its own write is not a change");
        // The CLI promotes while the agent learns: both survive the agent's next save.
        let mut p = read(&path_of(&store.dir, "web-1")).expect("read").expect("present");
        p.set_mode(Mode::Enforce, SystemTime::now());
        std::thread::sleep(Duration::from_millis(20));
        write(&store.dir, &p).expect("write");
        store.get_mut("web-1").expect("profile").learn(entry("/bin/a"), SystemTime::now());
        store.save("web-1").expect("save");
        let back = read(&path_of(&store.dir, "web-1")).expect("read").expect("present");
        assert_eq!((back.mode, back.entries.len()), (Mode::Enforce, 1));
        fs::remove_file(path_of(&store.dir, "web-1")).expect("reset");
        assert_eq!(store.poll().removed, vec!["web-1".to_string()]);
        assert!(store.by_workload("docker/img@sha256:1/web-1").is_none());
    }

    #[test]
    fn corrupt_files_are_set_aside_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::new(dir.path());
        fs::create_dir_all(&store.dir).expect("mkdir");
        fs::write(path_of(&store.dir, "bad-1"), "name: [unclosed").expect("write");
        fs::write(path_of(&store.dir, "bin-1"), [0xff, 0xfe, 0]).expect("write");
        write(&store.dir, &profile("liar-1")).expect("write");
        fs::rename(path_of(&store.dir, "liar-1"), path_of(&store.dir, "renamed-1")).expect("rename");
        let changes = store.poll();
        assert_eq!(changes.corrupt.len(), 3, "{changes:?}");
        assert!(changes.corrupt.iter().any(|(_, why, _)| why.contains("not UTF-8")), "{changes:?}");
        assert!(changes.corrupt.iter().any(|(_, why, _)| why.contains("names itself")), "{changes:?}");
        for (path, _, aside) in &changes.corrupt {
            assert!(!path.exists() && aside.as_ref().is_some_and(|a| a.exists()), "{path:?} {aside:?}");
        }
        assert!(store.is_empty());
        assert_eq!(store.poll(), Changes::default(), "set aside once");
    }
}
