//! The verdict on one program or mapped file of a container: from its image and unchanged,
//! a modified image file, not in the image, or fileless.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::{Mutex, mpsc},
};

use super::{
    baseline::{self, Baseline},
    hash::HashCache,
    layers,
};
use crate::container::overlay::{self, RootLayers};

/// `OVERLAYFS_SUPER_MAGIC`: a file of the container's root (or of another overlay).
pub const OVERLAY_MAGIC: u64 = 0x794c_7630;
const HASH_CACHE_ENTRIES: usize = 16_384;
const CONTAINERS_KEPT: usize = 4096;
const IMAGES_KEPT: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// From an image layer, or an upper copy identical to it.
    Image,
    /// An upper-layer copy of an image path with other content.
    Modified,
    /// In the writable layer, and the image has nothing at that path.
    NotInImage,
    /// A memfd, an `O_TMPFILE` file or a deleted one: no file to check.
    Fileless,
    /// On a mount that is not the container's root overlay (a volume, a bind mount, tmpfs).
    OutsideImage,
}

impl Verdict {
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::Image => "image",
            Verdict::Modified => "modified",
            Verdict::NotInImage => "not-in-image",
            Verdict::Fileless => "fileless",
            Verdict::OutsideImage => "outside-image",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileIntegrity {
    pub verdict: Verdict,
    /// The file as the container has it (hashed only when it is in the writable layer).
    pub sha256: Option<String>,
    /// The image's file at the same path.
    pub image_sha256: Option<String>,
}

impl FileIntegrity {
    fn of(verdict: Verdict) -> FileIntegrity {
        FileIntegrity { verdict, sha256: None, image_sha256: None }
    }
}

/// One file a kernel record names.
pub struct FileQuery<'a> {
    pub container_id: &'a str,
    /// The container's image id (config digest) and the names it may be measured under.
    pub image_id: Option<&'a str>,
    pub image_names: Vec<String>,
    /// Processes of the container whose root is the container's (the record's first).
    pub pids: Vec<u32>,
    /// The path in the container's root, as the kernel walked it.
    pub path: &'a str,
    /// Superblock device (kernel encoding major << 20 | minor) and magic; 0 when unknown.
    pub dev: u64,
    pub magic: u64,
    pub unlinked: bool,
}

struct State {
    hashes: HashCache,
    /// Container id → its root's layers (`None`: the root is not an overlay).
    layers: HashMap<String, Option<RootLayers>>,
    baselines: HashMap<String, Baseline>,
}

/// Shared by the pipeline (judgements) and the measurement pass (requests).
pub struct Integrity {
    state_dir: std::path::PathBuf,
    state: Mutex<State>,
    passes: Mutex<Option<mpsc::Sender<u32>>>,
}

impl Integrity {
    pub fn new(state_dir: &Path) -> Integrity {
        Integrity {
            state_dir: state_dir.to_path_buf(),
            state: Mutex::new(State {
                hashes: HashCache::new(HASH_CACHE_ENTRIES),
                layers: HashMap::new(),
                baselines: HashMap::new(),
            }),
            passes: Mutex::new(None),
        }
    }

    /// Where the measurement pass listens for processes to measure now.
    pub fn set_pass_requests(&self, tx: mpsc::Sender<u32>) {
        *self.passes.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// A record says something wrote into `pid`'s memory: measure it without waiting.
    pub fn request_pass(&self, pid: u32) {
        if let Some(tx) = self.passes.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(pid);
        }
    }

    fn layers_of(st: &mut State, container_id: &str, pids: &[u32]) -> Option<RootLayers> {
        if let Some(known) = st.layers.get(container_id) {
            return known.clone();
        }
        // A root that is not an overlay (another storage driver) is remembered as such.
        let found = pids.iter().find_map(|pid| {
            let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
            Some(overlay::root_layers(&mountinfo))
        })?;
        if st.layers.len() >= CONTAINERS_KEPT {
            st.layers.clear();
        }
        st.layers.insert(container_id.to_string(), found.clone());
        found
    }

    /// The overlay a file of the container lives on, by the file's device in the host's
    /// mount table (no process needed), remembered per container and device.
    fn layers_by_device(st: &mut State, container_id: &str, dev: u64) -> Option<RootLayers> {
        let key = format!("{container_id}@{dev}");
        if let Some(known) = st.layers.get(&key) {
            return known.clone();
        }
        let mountinfo = fs::read_to_string(crate::container::host_fs::host_mountinfo_path()).ok()?;
        let found = overlay::layers_of_device(&mountinfo, ((dev >> 20) as u32, (dev & 0xf_ffff) as u32));
        if st.layers.len() >= CONTAINERS_KEPT {
            st.layers.clear();
        }
        st.layers.insert(key, found.clone());
        found
    }

    /// The SHA-256 the file at `q.path` has in the container: an upper-layer file's own, else
    /// the image's (read once from the lower layers and kept in the image's baseline). For
    /// the allowlist, which records it once per learned program; never on the exec path.
    pub fn file_sha256(&self, q: &FileQuery<'_>) -> Option<String> {
        if q.unlinked || !q.path.starts_with('/') {
            return None;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let layers = if q.magic == OVERLAY_MAGIC && q.dev != 0 {
            Self::layers_by_device(&mut st, q.container_id, q.dev)
                .or_else(|| Self::layers_of(&mut st, q.container_id, &q.pids))?
        } else {
            Self::layers_of(&mut st, q.container_id, &q.pids)?
        };
        let relative = q.path.trim_start_matches('/');
        let State { hashes, baselines, .. } = &mut *st;
        if layers::in_upper(&layers.upper, relative) {
            return hashes.sha256(&layers.upper.join(relative)).ok().map(|(_, sha)| sha);
        }
        let key = q.image_id.map(str::to_string).unwrap_or_else(|| baseline::layers_key(&layers.lowers));
        if !baselines.contains_key(&key) && baselines.len() >= IMAGES_KEPT {
            baselines.clear();
        }
        baselines
            .entry(key.clone())
            .or_insert_with(|| Baseline::open(&self.state_dir, &key, &q.image_names))
            .lookup(q.path, &layers.lowers, hashes)
            .map(|i| i.sha256)
    }

    /// `None` when it cannot be told: the path is unknown or truncated, or the file's overlay
    /// is not known (another storage driver, or a container already removed).
    pub fn judge(&self, q: &FileQuery<'_>) -> Option<FileIntegrity> {
        if q.unlinked {
            return Some(FileIntegrity::of(Verdict::Fileless));
        }
        if !q.path.starts_with('/') {
            return None;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let layers = if q.magic == OVERLAY_MAGIC && q.dev != 0 {
            Self::layers_by_device(&mut st, q.container_id, q.dev)
                .or_else(|| Self::layers_of(&mut st, q.container_id, &q.pids))?
        } else if q.magic == 0 {
            // A kernel that did not give the filesystem: the container's root, if an overlay.
            Self::layers_of(&mut st, q.container_id, &q.pids)?
        } else {
            // Not on an overlay: outside the image when the container's root is one (a
            // volume, a bind mount, tmpfs); unknown under another storage driver.
            let root = Self::layers_of(&mut st, q.container_id, &q.pids);
            return root.map(|_| FileIntegrity::of(Verdict::OutsideImage));
        };
        let relative = q.path.trim_start_matches('/');
        if !layers::in_upper(&layers.upper, relative) {
            return Some(FileIntegrity::of(Verdict::Image));
        }
        let State { hashes, baselines, .. } = &mut *st;
        let found = hashes.sha256(&layers.upper.join(relative));
        let key = q.image_id.map(str::to_string).unwrap_or_else(|| baseline::layers_key(&layers.lowers));
        if !baselines.contains_key(&key) && baselines.len() >= IMAGES_KEPT {
            baselines.clear();
        }
        let image = baselines
            .entry(key.clone())
            .or_insert_with(|| Baseline::open(&self.state_dir, &key, &q.image_names))
            .lookup(q.path, &layers.lowers, hashes);
        let (sha256, size) = match found {
            Ok((file, sha)) => (Some(sha), Some(file.size)),
            Err(_) => (None, fs::symlink_metadata(layers.upper.join(relative)).ok().map(|m| m.len())),
        };
        let verdict = match (&image, &sha256) {
            (None, _) => Verdict::NotInImage,
            (Some(i), Some(s)) if &i.sha256 == s => Verdict::Image,
            (Some(_), Some(_)) => Verdict::Modified,
            // Not hashed (too big, unreadable): a different size still proves a change.
            (Some(i), None) if size.is_some_and(|s| s != i.size) => Verdict::Modified,
            (Some(_), None) => return None,
        };
        Some(FileIntegrity { verdict, sha256, image_sha256: image.map(|i| i.sha256) })
    }
}
