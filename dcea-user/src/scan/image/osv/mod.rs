//! An offline vulnerability database in the OSV format (ossf/osv-schema): a directory of
//! JSON files, a zip (osv.dev's per-ecosystem exports), or the embedded default. Entries
//! and ranges this scanner cannot evaluate are skipped and counted, never fatal.

pub mod cvss;
pub mod embedded;
mod range;

use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
    path::Path,
    sync::Arc,
};

use serde::Serialize;
use serde_json::Value;

pub use range::{Event, Verdict, evaluate};

use super::{
    error::{ImageError, Result},
    packages::Package,
};
use crate::scan::{report::Severity, version::Scheme};

/// OSV ecosystems whose version ordering this scanner implements.
const ECOSYSTEMS: [(&str, Scheme); 11] = [
    ("Debian", Scheme::Dpkg),
    ("Ubuntu", Scheme::Dpkg),
    ("Alpine", Scheme::Apk),
    ("Wolfi", Scheme::Apk),
    ("Chainguard", Scheme::Apk),
    ("AlmaLinux", Scheme::Rpm),
    ("Rocky Linux", Scheme::Rpm),
    ("Red Hat", Scheme::Rpm),
    ("openSUSE", Scheme::Rpm),
    ("SUSE", Scheme::Rpm),
    ("Mageia", Scheme::Rpm),
];

const KNOWN_FIELDS: [&str; 15] = [
    "schema_version",
    "id",
    "modified",
    "published",
    "withdrawn",
    "aliases",
    "upstream",
    "related",
    "summary",
    "details",
    "severity",
    "affected",
    "references",
    "credits",
    "database_specific",
];

fn ecosystem_base(eco: &str) -> &str {
    eco.split(':').next().unwrap_or(eco)
}

#[derive(Debug)]
pub struct Affected {
    pub ecosystem: String,
    pub name: String,
    /// ECOSYSTEM ranges, each a list of events.
    pub ranges: Vec<Vec<Event>>,
    pub versions: Vec<String>,
    pub severity: Option<Severity>,
}

#[derive(Debug)]
pub struct Advisory {
    pub id: String,
    pub aliases: Vec<String>,
    pub summary: Option<String>,
    pub severity: Option<Severity>,
    pub affected: Vec<Affected>,
}

#[derive(Debug, Default, Serialize)]
pub struct DbStats {
    pub files: u64,
    pub advisories: u64,
    pub withdrawn: u64,
    pub invalid: u64,
    /// Affected entries skipped because their ecosystem's ordering is not implemented.
    pub skipped_ecosystems: BTreeMap<String, u64>,
    /// Ranges of other types (SEMVER, GIT) skipped.
    pub skipped_ranges: u64,
    /// Top-level fields outside the OSV schema, ignored.
    pub unknown_fields: u64,
}

#[derive(Debug, Serialize)]
pub struct DbInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Date of the data (embedded: when it was compiled; else the newest `modified`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub stats: DbStats,
}

/// An advisory and the index of its `affected` entry that names the package.
type Entry = (Arc<Advisory>, usize);

/// Advisories indexed by (ecosystem base, package name).
#[derive(Debug)]
pub struct Database {
    pub info: DbInfo,
    index: HashMap<(String, String), Vec<Entry>>,
}

/// One vulnerable package.
#[derive(Clone, Debug, Serialize)]
pub struct Match {
    pub advisory: String,
    pub aliases: Vec<String>,
    pub summary: Option<String>,
    pub severity: Option<Severity>,
    /// The version that was compared (the source version for source-package matches).
    pub compared_version: String,
    pub fixed: Option<String>,
    pub osv_ecosystem: String,
    pub osv_package: String,
}

fn severity_of(v: &Value) -> Option<Severity> {
    let from_vectors = v["severity"].as_array().and_then(|list| {
        list.iter().filter_map(|s| s["score"].as_str()).filter_map(cvss::base_score).map(cvss::severity_of_score).max()
    });
    from_vectors.or_else(|| {
        ["severity", "urgency"]
            .iter()
            .filter_map(|k| v["database_specific"][*k].as_str().or(v["ecosystem_specific"][*k].as_str()))
            .find_map(cvss::severity_of_word)
    })
}

impl Database {
    fn empty(name: String) -> Database {
        Database { info: DbInfo { name, version: None, date: None, stats: DbStats::default() }, index: HashMap::new() }
    }

    /// Adds one file's contents (an advisory object or an array of them).
    pub fn add_json(&mut self, text: &[u8]) {
        self.info.stats.files += 1;
        let Ok(value) = serde_json::from_slice::<Value>(text) else {
            self.info.stats.invalid += 1;
            return;
        };
        match value {
            Value::Array(items) => items.iter().for_each(|v| self.add_value(v)),
            v => self.add_value(&v),
        }
    }

    fn add_value(&mut self, v: &Value) {
        let Some(id) = v["id"].as_str() else {
            self.info.stats.invalid += 1;
            return;
        };
        if v.get("withdrawn").is_some_and(|w| !w.is_null()) {
            self.info.stats.withdrawn += 1;
            return;
        }
        if let Some(obj) = v.as_object() {
            self.info.stats.unknown_fields += obj.keys().filter(|k| !KNOWN_FIELDS.contains(&k.as_str())).count() as u64;
        }
        if let Some(m) = v["modified"].as_str()
            && self.info.date.as_deref().is_none_or(|d| m > d)
            && self.info.version.is_none()
        {
            self.info.date = Some(m.to_string());
        }
        let mut affected = Vec::new();
        for a in v["affected"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let (Some(eco), Some(name)) = (a["package"]["ecosystem"].as_str(), a["package"]["name"].as_str()) else {
                self.info.stats.invalid += 1;
                continue;
            };
            if !ECOSYSTEMS.iter().any(|(e, _)| *e == ecosystem_base(eco)) {
                *self.info.stats.skipped_ecosystems.entry(ecosystem_base(eco).to_string()).or_default() += 1;
                continue;
            }
            let mut ranges = Vec::new();
            for r in a["ranges"].as_array().map(Vec::as_slice).unwrap_or_default() {
                if r["type"] != "ECOSYSTEM" {
                    self.info.stats.skipped_ranges += 1;
                    continue;
                }
                ranges.push(range::parse_events(&r["events"]));
            }
            let versions =
                a["versions"].as_array().map(|l| l.iter().filter_map(|x| x.as_str().map(str::to_string)).collect());
            affected.push(Affected {
                ecosystem: eco.to_string(),
                name: name.to_string(),
                ranges,
                versions: versions.unwrap_or_default(),
                severity: severity_of(a),
            });
        }
        if affected.is_empty() {
            return;
        }
        let advisory = Arc::new(Advisory {
            id: id.to_string(),
            aliases: v["aliases"]
                .as_array()
                .map(|l| l.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            summary: v["summary"].as_str().map(str::to_string),
            severity: severity_of(v),
            affected,
        });
        self.info.stats.advisories += 1;
        for (i, a) in advisory.affected.iter().enumerate() {
            self.index
                .entry((ecosystem_base(&a.ecosystem).to_string(), a.name.clone()))
                .or_default()
                .push((advisory.clone(), i));
        }
    }

    pub fn load_dir(path: &Path) -> Result<Database> {
        let mut db = Database::empty(path.display().to_string());
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| ImageError::Database { path: dir.clone(), message: e.to_string() })?;
            let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "json") {
                    match std::fs::read(&p) {
                        Ok(bytes) => db.add_json(&bytes),
                        Err(_) => db.info.stats.invalid += 1,
                    }
                }
            }
        }
        Ok(db)
    }

    pub fn load_zip(path: &Path) -> Result<Database> {
        let err = |m: String| ImageError::Database { path: path.to_path_buf(), message: m };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| err(e.to_string()))?;
        let mut db = Database::empty(path.display().to_string());
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| err(e.to_string()))?;
            if !entry.is_file() || !entry.name().is_ok_and(|n| n.ends_with(".json")) {
                continue;
            }
            // One advisory is a few KiB; a huge entry is a bomb, not data.
            let mut bytes = Vec::new();
            if (&mut entry).take(64 << 20).read_to_end(&mut bytes).is_err() || bytes.len() >= 64 << 20 {
                db.info.stats.invalid += 1;
                continue;
            }
            db.add_json(&bytes);
        }
        Ok(db)
    }

    /// `--db PATH`: a directory or a zip. None: the embedded database.
    pub fn open(path: Option<&Path>) -> Result<Database> {
        match path {
            None => Ok(embedded::load()),
            Some(p) if p.is_dir() => Database::load_dir(p),
            Some(p) if p.is_file() => Database::load_zip(p),
            Some(p) => Err(ImageError::Database { path: p.to_path_buf(), message: "no such file or directory".into() }),
        }
    }

    /// Advisories that apply to `pkg`, matched by source package first (Debian and Alpine
    /// publish by source), then by binary name.
    pub fn matches(&self, pkg: &Package, scheme: Scheme) -> Vec<Match> {
        let Some(eco) = pkg.ecosystem.as_deref() else { return Vec::new() };
        let base = ecosystem_base(eco);
        let mut out: Vec<Match> = Vec::new();
        let candidates = [(&pkg.source, &pkg.source_version), (&pkg.name, &pkg.version)];
        for (i, (name, version)) in candidates.iter().enumerate() {
            if i == 1 && pkg.name == pkg.source {
                break;
            }
            let Some(list) = self.index.get(&(base.to_string(), (*name).clone())) else { continue };
            for (adv, ai) in list {
                let a = &adv.affected[*ai];
                let applies = a.ecosystem == eco
                    || a.ecosystem == base
                    || a.ecosystem.strip_prefix(eco).is_some_and(|r| r.starts_with(':'));
                if !applies || out.iter().any(|m| m.advisory == adv.id) {
                    continue;
                }
                let verdict = evaluate(version, &a.ranges, &a.versions, scheme);
                if verdict.affected {
                    out.push(Match {
                        advisory: adv.id.clone(),
                        aliases: adv.aliases.clone(),
                        summary: adv.summary.clone(),
                        severity: a.severity.or(adv.severity),
                        compared_version: (*version).clone(),
                        fixed: verdict.fixed,
                        osv_ecosystem: a.ecosystem.clone(),
                        osv_package: a.name.clone(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
