//! The measurement record, its atomic storage and the comparison of two records.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scan::image::{
    ImageError, LoadedImage,
    archive::Mismatch,
    layer::{NodeKind, hex},
};

pub const SCHEMA: &str = "dcea.measure.image/v1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    pub index: usize,
    pub name: String,
    pub digest: Option<String>,
    pub diff_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub sha256: String,
    pub size: u64,
    pub layer: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    pub name: String,
    pub source: String,
    pub format: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerRecord>,
    /// Regular files of the final filesystem (hard links included), by path.
    pub files: BTreeMap<String, FileRecord>,
    /// Digests that contradict the image's own manifest or config when measured.
    #[serde(default)]
    pub mismatches: Vec<Mismatch>,
}

impl Record {
    pub fn from_image(img: &LoadedImage, name: Option<&str>) -> Record {
        let files = img
            .view
            .iter()
            .filter(|(_, n)| n.kind == NodeKind::File)
            .map(|(p, n)| {
                (
                    format!("/{p}"),
                    FileRecord { sha256: n.sha256.map(|h| hex(&h)).unwrap_or_default(), size: n.size, layer: n.layer },
                )
            })
            .collect();
        Record {
            schema: SCHEMA.into(),
            name: name.map(str::to_string).or_else(|| img.repo_tags.first().cloned()).unwrap_or_else(|| {
                std::fs::canonicalize(&img.source)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| img.source.clone())
            }),
            source: img.source.clone(),
            format: img.format.into(),
            manifest_digest: img.manifest_digest.clone(),
            config_digest: img.config_digest.clone(),
            layers: img
                .layers
                .iter()
                .map(|l| LayerRecord {
                    index: l.index,
                    name: l.name.clone(),
                    digest: l.digest.clone(),
                    diff_id: l.diff_id.clone(),
                })
                .collect(),
            files,
            mismatches: img.mismatches.clone(),
        }
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "image {}\n  manifest {}\n  config   {}\n  {} layer(s), {} regular file(s) measured\n",
            self.name,
            self.manifest_digest,
            self.config_digest,
            self.layers.len(),
            self.files.len()
        );
        for l in &self.layers {
            let _ = writeln!(
                s,
                "  layer {}: {} (diff_id {})",
                l.index,
                l.digest.as_deref().unwrap_or("?"),
                l.diff_id.as_deref().unwrap_or("?")
            );
        }
        s
    }
}

/// `<state>/measurements/<sha256 of the name>.json`: names are tags or paths, not file names.
pub fn record_path(state_dir: &Path, name: &str) -> PathBuf {
    let key = hex(&Sha256::digest(name.as_bytes()));
    state_dir.join("measurements").join(format!("{}.json", &key[..32]))
}

/// Writes the record atomically (see [`crate::sys::write_atomic`]).
pub fn save_record(state_dir: &Path, rec: &Record) -> Result<PathBuf, ImageError> {
    let path = record_path(state_dir, &rec.name);
    crate::sys::write_atomic(&path, 0o644, |w| serde_json::to_writer_pretty(w, rec).map_err(std::io::Error::other))
        .map_err(|e| ImageError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

pub fn load_record(path: &Path) -> Result<Option<Record>, ImageError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ImageError::metadata(path.display().to_string(), format!("unreadable measurement record: {e}"))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError::io(format!("reading {}", path.display()), e)),
    }
}

#[derive(Debug, Default, Serialize)]
pub struct LayerChange {
    pub index: usize,
    pub what: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Default, Serialize)]
pub struct FileChange {
    pub path: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// Layer that holds the current version of the file (the changed layer).
    pub layer: Option<usize>,
}

#[derive(Debug, Default, Serialize)]
pub struct Diff {
    pub name: String,
    pub manifest_changed: bool,
    pub config_changed: bool,
    pub layers: Vec<LayerChange>,
    pub modified: Vec<FileChange>,
    pub added: Vec<FileChange>,
    pub removed: Vec<FileChange>,
    /// Digests in the current image that contradict its own manifest or config.
    pub inconsistent: Vec<Mismatch>,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        !self.manifest_changed
            && !self.config_changed
            && self.layers.is_empty()
            && self.modified.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.inconsistent.is_empty()
    }

    pub fn render_text(&self) -> String {
        if self.is_clean() {
            return format!("{}: OK, matches the saved measurement\n", self.name);
        }
        let mut s = format!("{}: CHANGED since the saved measurement\n", self.name);
        if self.manifest_changed {
            s.push_str("  manifest digest changed\n");
        }
        if self.config_changed {
            s.push_str("  config digest changed\n");
        }
        for m in &self.inconsistent {
            let _ = writeln!(
                s,
                "  {} does not match the image metadata: expected {}, found {}",
                m.what, m.expected, m.actual
            );
        }
        for l in &self.layers {
            let _ = writeln!(s, "  layer {} {} changed: {} -> {}", l.index, l.what, l.expected, l.actual);
        }
        let layer = |l: Option<usize>| l.map(|l| format!(" (layer {l})")).unwrap_or_default();
        for f in &self.modified {
            let _ = writeln!(s, "  modified {}{}", f.path, layer(f.layer));
        }
        for f in &self.added {
            let _ = writeln!(s, "  added    {}{}", f.path, layer(f.layer));
        }
        for f in &self.removed {
            let _ = writeln!(s, "  removed  {}", f.path);
        }
        s
    }
}

pub fn diff(saved: &Record, now: &Record) -> Diff {
    let mut d = Diff {
        name: now.name.clone(),
        manifest_changed: saved.manifest_digest != now.manifest_digest,
        config_changed: saved.config_digest != now.config_digest,
        inconsistent: now.mismatches.clone(),
        ..Default::default()
    };
    let count = saved.layers.len().max(now.layers.len());
    for i in 0..count {
        let (a, b) = (saved.layers.get(i), now.layers.get(i));
        let fmt = |v: Option<&Option<String>>| v.and_then(|x| x.clone()).unwrap_or_else(|| "(none)".into());
        for (what, x, y) in [
            ("blob digest", a.map(|l| &l.digest), b.map(|l| &l.digest)),
            ("diff_id", a.map(|l| &l.diff_id), b.map(|l| &l.diff_id)),
        ] {
            if x != y {
                d.layers.push(LayerChange { index: i, what: what.into(), expected: fmt(x), actual: fmt(y) });
            }
        }
    }
    for (path, was) in &saved.files {
        match now.files.get(path) {
            Some(is) if is.sha256 == was.sha256 && is.size == was.size => {}
            Some(is) => d.modified.push(FileChange {
                path: path.clone(),
                expected: Some(was.sha256.clone()),
                actual: Some(is.sha256.clone()),
                layer: Some(is.layer),
            }),
            None => d.removed.push(FileChange {
                path: path.clone(),
                expected: Some(was.sha256.clone()),
                actual: None,
                layer: None,
            }),
        }
    }
    for (path, is) in &now.files {
        if !saved.files.contains_key(path) {
            d.added.push(FileChange {
                path: path.clone(),
                expected: None,
                actual: Some(is.sha256.clone()),
                layer: Some(is.layer),
            });
        }
    }
    d
}
