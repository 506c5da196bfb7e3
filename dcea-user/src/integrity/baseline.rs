//! The reference measurement of one image: path → SHA-256 of the file the image has there.
//!
//! When `dcea measure image --save` recorded the container's image (the same config digest
//! as the running container's image id), that record is the reference: every file of the
//! final filesystem, checked against the manifest. Otherwise the reference is built lazily
//! from the overlay's image layers, one path at a time as the container uses it, and kept in
//! `<state>/integrity/<key>.json` so a restart does not hash the image again.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{hash::HashCache, layers};
use crate::{measure, scan::image::layer::hex};

pub const SCHEMA: &str = "dcea.integrity.baseline/v1";
/// Paths remembered per image (the lazily built part); past it, lookups are not stored.
pub const MAX_ENTRIES: usize = 65_536;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineEntry {
    pub sha256: String,
    pub size: u64,
}

/// What is kept on disk. `files[path] = None`: the image has no regular file there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineFile {
    pub schema: String,
    /// The image id (config digest), or `layers:<digest of the layer paths>` without one.
    pub image: String,
    pub files: BTreeMap<String, Option<BaselineEntry>>,
}

/// Parses a stored baseline; anything else is an error that names what is wrong.
pub fn parse(bytes: &[u8]) -> Result<BaselineFile, String> {
    let file: BaselineFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.schema != SCHEMA {
        return Err(format!("schema {:?}, expected {SCHEMA:?}", file.schema));
    }
    if let Some((path, _)) = file.files.iter().find(|(p, e)| !p.starts_with('/') || e.as_ref().is_some_and(bad_entry)) {
        return Err(format!("entry {path:?}: paths are absolute and digests 64 hex digits"));
    }
    Ok(file)
}

fn bad_entry(e: &BaselineEntry) -> bool {
    e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("integrity")
}

pub fn path_of(state_dir: &Path, image: &str) -> PathBuf {
    dir(state_dir).join(format!("{}.json", &hex(&Sha256::digest(image.as_bytes()))[..32]))
}

/// The key of an image without an id: its layer stack.
pub fn layers_key(lowers: &[PathBuf]) -> String {
    let joined: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
    format!("layers:{}", hex(&Sha256::digest(joined.join(":").as_bytes())))
}

pub struct Baseline {
    path: PathBuf,
    pub file: BaselineFile,
    /// The saved `measure` record of this image, when there is one.
    pub reference: Option<String>,
    reference_files: BTreeMap<String, measure::FileRecord>,
}

impl Baseline {
    /// Opens the stored baseline of `image`; a corrupt one is set aside (`.corrupt`) and
    /// rebuilt. `references`: names `measure image --save` may have kept the image under.
    pub fn open(state_dir: &Path, image: &str, references: &[String]) -> Baseline {
        let path = path_of(state_dir, image);
        let file = match fs::read(&path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(f) if f.image == image => f,
                Ok(_) | Err(_) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(
                        "integrity baseline {} is unreadable; set aside as {}",
                        path.display(),
                        aside.display()
                    );
                    let _ = fs::rename(&path, &aside);
                    BaselineFile::default()
                }
            },
            Err(_) => BaselineFile::default(),
        };
        let file = BaselineFile { schema: SCHEMA.into(), image: image.into(), files: file.files };
        let (reference, reference_files) = references
            .iter()
            .find_map(|name| {
                let rec = measure::load_record(&measure::record_path(state_dir, name)).ok()??;
                // Only the record of this very image: a tag may have moved since it was saved.
                (rec.config_digest == image && rec.mismatches.is_empty()).then(|| (name.clone(), rec.files))
            })
            .map_or((None, BTreeMap::new()), |(n, f)| (Some(n), f));
        Baseline { path, file, reference, reference_files }
    }

    /// The image's file at `path`: from the saved measurement, else from the layers (hashed
    /// once, then remembered on disk).
    pub fn lookup(&mut self, path: &str, lowers: &[PathBuf], hashes: &mut HashCache) -> Option<BaselineEntry> {
        // The saved measurement lists regular files; a symlink of the image is resolved below.
        if let Some(r) = self.reference_files.get(path) {
            return Some(BaselineEntry { sha256: r.sha256.clone(), size: r.size });
        }
        if let Some(known) = self.file.files.get(path) {
            return known.clone();
        }
        let entry = layers::in_lowers(lowers, path.trim_start_matches('/'))
            .and_then(|file| hashes.sha256(&file).ok())
            .map(|(key, sha256)| BaselineEntry { sha256, size: key.size });
        if self.file.files.len() < MAX_ENTRIES {
            self.file.files.insert(path.to_string(), entry.clone());
            self.save();
        }
        entry
    }

    fn save(&self) {
        let result = crate::sys::write_atomic(&self.path, 0o600, |w| {
            serde_json::to_writer(w, &self.file).map_err(std::io::Error::other)
        });
        if let Err(e) = result {
            tracing::warn!("writing the integrity baseline {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn built_from_the_layers_kept_and_reloaded() {
        let state = tempfile::tempdir().unwrap();
        let layer = state.path().join("layer");
        fs::create_dir_all(layer.join("bin")).unwrap();
        fs::write(layer.join("bin/sh"), "abc").unwrap();
        let mut hashes = HashCache::new(16);
        let mut b = Baseline::open(state.path(), "sha256:img", &[]);
        let lowers = vec![layer.clone()];
        assert_eq!(b.lookup("/bin/sh", &lowers, &mut hashes), Some(BaselineEntry { sha256: SHA.into(), size: 3 }));
        assert_eq!(b.lookup("/bin/none", &lowers, &mut hashes), None);
        // Reopened: answered from disk, without the layers.
        let mut again = Baseline::open(state.path(), "sha256:img", &[]);
        assert_eq!(again.lookup("/bin/sh", &[], &mut hashes).map(|e| e.sha256), Some(SHA.into()));
        assert_eq!(again.lookup("/bin/none", &[], &mut hashes), None);
        assert_eq!(hashes.hashed, 1);
    }

    #[test]
    fn a_corrupt_baseline_is_set_aside_and_rebuilt() {
        let state = tempfile::tempdir().unwrap();
        let path = path_of(state.path(), "sha256:img");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        for junk in [&b"{"[..], b"[]", b"{\"schema\":\"x\",\"image\":\"sha256:img\",\"files\":{}}"] {
            fs::write(&path, junk).unwrap();
            let b = Baseline::open(state.path(), "sha256:img", &[]);
            assert!(b.file.files.is_empty());
            assert!(path.with_extension("json.corrupt").exists());
        }
        let bad_digest = format!(r#"{{"schema":"{SCHEMA}","image":"i","files":{{"/a":{{"sha256":"zz","size":1}}}}}}"#);
        assert!(parse(bad_digest.as_bytes()).is_err());
        let relative = format!(r#"{{"schema":"{SCHEMA}","image":"i","files":{{"a":null}}}}"#);
        assert!(parse(relative.as_bytes()).is_err());
    }
}
