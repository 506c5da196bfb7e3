//! What the integrity checks found, one JSON object per line in
//! `<state>/integrity/findings.jsonl` (rotated to `.1` past 4 MiB), for `dcea integrity show`.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const MAX_BYTES: u64 = 4 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub time: String,
    pub container_id: String,
    pub pid: u32,
    /// `modified`, `not-in-image`, `fileless` (a file), or `memory` (a mapping).
    pub verdict: String,
    /// The file, or the mapped file and its range.
    pub what: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub image_sha256: Option<String>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    super::baseline::dir(state_dir).join("findings.jsonl")
}

/// Appends a finding; a failure is logged, never fatal (the alert is the record that counts).
pub fn append(state_dir: &Path, finding: &Finding) {
    let path = path(state_dir);
    let result = (|| {
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        if fs::metadata(&path).is_ok_and(|m| m.len() > MAX_BYTES) {
            fs::rename(&path, path.with_extension("jsonl.1"))?;
        }
        let mut line = serde_json::to_vec(finding).map_err(std::io::Error::other)?;
        line.push(b'\n');
        fs::OpenOptions::new().create(true).append(true).open(&path)?.write_all(&line)
    })();
    if let Err(e) = result {
        tracing::warn!("recording an integrity finding in {}: {e}", path.display());
    }
}

/// One stored line; anything else is an error saying why (a torn last line after a crash).
pub fn parse_line(line: &str) -> Result<Finding, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// Every readable finding, oldest first, and how many lines were unreadable.
pub fn load(state_dir: &Path) -> (Vec<Finding>, usize) {
    let p = path(state_dir);
    let mut out = Vec::new();
    let mut bad = 0;
    for file in [p.with_extension("jsonl.1"), p] {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_line(line) {
                Ok(f) => out.push(f),
                Err(_) => bad += 1,
            }
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_round_trip_and_torn_lines_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let f = Finding {
            time: "t".into(),
            container_id: "c".into(),
            pid: 7,
            verdict: "modified".into(),
            what: "/bin/ls".into(),
            sha256: Some("a".into()),
            image_sha256: None,
        };
        append(dir.path(), &f);
        let mut raw = fs::OpenOptions::new().append(true).open(path(dir.path())).unwrap();
        raw.write_all(b"{\"time\":\n").unwrap();
        let (all, bad) = load(dir.path());
        assert_eq!((all, bad), (vec![f], 1));
        for junk in ["", "[]", "{}", "\u{0}", "{\"pid\":-1}"] {
            assert!(parse_line(junk).is_err(), "{junk:?}");
        }
    }
}
