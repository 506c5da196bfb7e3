//! `dcea scan kernel --db PATH`: kernel CVE data from CVE JSON 5 records (the Linux kernel
//! CNA's format in CVEProject/cvelistV5), read from a directory tree or a zip of it, so the
//! data can be updated without a new dcea. A bad file is reported with its name and skipped;
//! it never stops the import.

pub mod record;
pub mod relevance;

use std::{
    io::{Read, Seek},
    path::{Path, PathBuf},
};

use serde::Serialize;

use self::record::{KernelRecord, Parsed, parse_record};
use super::{rules::KernelRule, version::KernelVersion};
use crate::scan::{Error, report::Severity};

/// One record is a few KiB; anything this big is not a record.
const MAX_RECORD: u64 = 8 << 20;
/// cvelistV5's release zips hold the tree as an inner zip; deeper nesting is not data.
const MAX_ZIP_DEPTH: u32 = 2;

#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportStats {
    pub files: u64,
    pub kernel_records: u64,
    pub imported: u64,
    pub not_escape_relevant: u64,
    pub other_records: u64,
    pub errors: u64,
}

#[derive(Debug, Default)]
pub struct Import {
    pub rules: Vec<KernelRule>,
    /// `file: reason` for every record that could not be used.
    pub errors: Vec<String>,
    pub stats: ImportStats,
}

/// Errors listed one by one in the report; past this they are only counted.
const MAX_LISTED_ERRORS: usize = 50;

impl Import {
    fn error(&mut self, file: &str, reason: String) {
        self.stats.errors += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(format!("{file}: {reason}"));
        }
    }

    /// One file's bytes. `known` are the CVE ids the rules file already has (always relevant).
    pub fn add(&mut self, file: &str, bytes: &[u8], all: bool, known: &[&str]) {
        self.stats.files += 1;
        // Most of cvelistV5 is not about Linux; skip it without parsing.
        if !contains(bytes, b"Linux") && !contains(bytes, b"linux") {
            self.stats.other_records += 1;
            return;
        }
        let record = match parse_record(bytes) {
            Ok(Parsed::Kernel(r)) => r,
            Ok(_) => {
                self.stats.other_records += 1;
                return;
            }
            Err(e) => return self.error(file, e),
        };
        self.stats.kernel_records += 1;
        let why = relevance::escape_relevant(&record, known);
        if why.is_none() && !all {
            self.stats.not_escape_relevant += 1;
            return;
        }
        match to_rule(&record, file, why.as_deref()) {
            Ok(rule) => {
                self.stats.imported += 1;
                self.rules.push(rule);
            }
            Err(e) => self.error(file, e),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A rule for a CVE the rules file does not have: the record's versions and a generic text.
fn to_rule(r: &KernelRecord, file: &str, why: Option<&str>) -> Result<KernelRule, String> {
    // Only stable fixes: the record does not say which mainline release has the fix, and
    // the verdict for newer kernels would be a guess.
    let fixed_mainline =
        r.fixed_mainline.ok_or_else(|| format!("{}: no mainline fix version (lessThanOrEqual \"*\")", r.cve))?;
    let introduced = r.introduced.map(|v| v.to_string()).unwrap_or_else(|| "0.0".into());
    let subsystem = r
        .program_files
        .first()
        .map(|f| f.rsplit_once('/').map_or(f.as_str(), |(dir, _)| dir).to_string())
        .unwrap_or_else(|| "the kernel".into());
    let rule = KernelRule {
        cve: r.cve.clone(),
        name: r.title.chars().take(120).collect(),
        severity: r.severity.unwrap_or(Severity::High),
        summary: if r.summary.is_empty() { r.title.clone() } else { r.summary.clone() },
        escape: match why {
            Some(why) => format!("Kernel bug in {subsystem} ({why}); reachable from a container process"),
            None => format!("Kernel bug in {subsystem}; not judged escape-relevant (imported with --all)"),
        },
        introduced,
        fixed_mainline: fixed_mainline.to_string(),
        fixed_stable: r.fixed_stable.iter().map(|v| v.to_string()).collect(),
        introduced_stable: r.introduced_stable.iter().map(|v| v.to_string()).collect(),
        vendors: Vec::new(),
        stable_complete: r.stable_complete,
        source: format!("CVE JSON 5 record {file}"),
        distro_fixed: Vec::new(),
        prerequisites: relevance::prerequisites(r),
        fix: format!("Upgrade the kernel to a release that includes the fix for {}.", r.cve),
        references: r.references.clone(),
    };
    rule.validate().map_err(|e| e.to_string())?;
    Ok(rule)
}

/// Read every `*.json` under a directory (recursively) or inside a zip.
pub fn load(path: &Path, all: bool, known: &[&str]) -> Result<Import, Error> {
    let mut import = Import::default();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(format!("reading CVE database {}", path.display()), e))?;
    if meta.is_dir() {
        load_dir(path, &mut import, all, known);
    } else {
        let file =
            std::fs::File::open(path).map_err(|e| Error::io(format!("opening CVE database {}", path.display()), e))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
            Error::parse(format!("CVE database {}", path.display()), format!("neither a directory nor a zip: {e}"))
        })?;
        load_zip(&mut zip, &path.display().to_string(), &mut import, all, known, 0);
    }
    Ok(import)
}

fn load_dir(root: &Path, import: &mut Import, all: bool, known: &[&str]) {
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(e) => e.flatten().map(|e| e.path()).collect(),
            Err(e) => {
                import.error(&dir.display().to_string(), format!("unreadable directory: {e}"));
                continue;
            }
        };
        entries.sort();
        for p in entries {
            // No symlinks: a link cycle must not loop the walk.
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            let name = p.display().to_string();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && p.extension().is_some_and(|e| e == "json") {
                if meta.len() > MAX_RECORD {
                    import.error(&name, format!("{} bytes is too big for a CVE record", meta.len()));
                    continue;
                }
                match std::fs::read(&p) {
                    Ok(bytes) => import.add(&name, &bytes, all, known),
                    Err(e) => import.error(&name, format!("unreadable: {e}")),
                }
            }
        }
    }
}

fn load_zip<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    label: &str,
    import: &mut Import,
    all: bool,
    known: &[&str],
    depth: u32,
) {
    for i in 0..zip.len() {
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            Err(e) => {
                import.error(&format!("{label}#{i}"), format!("bad zip entry: {e}"));
                continue;
            }
        };
        if !entry.is_file() {
            continue;
        }
        let name = format!("{label}:{}", String::from_utf8_lossy(entry.name_raw()));
        if name.ends_with(".zip") && depth < MAX_ZIP_DEPTH {
            // The inner zip needs seeking: spool it to a temporary file.
            let inner = tempfile::tempfile().and_then(|mut t| {
                std::io::copy(&mut entry, &mut t)?;
                t.rewind()?;
                Ok(t)
            });
            match inner.map_err(|e| e.to_string()).and_then(|t| {
                zip::ZipArchive::new(std::io::BufReader::new(t)).map_err(|e| format!("bad inner zip: {e}"))
            }) {
                Ok(mut inner) => load_zip(&mut inner, &name, import, all, known, depth + 1),
                Err(e) => import.error(&name, e),
            }
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let mut bytes = Vec::new();
        match (&mut entry).take(MAX_RECORD + 1).read_to_end(&mut bytes) {
            Ok(_) if bytes.len() as u64 > MAX_RECORD => import.error(&name, "too big for a CVE record".into()),
            Ok(_) => import.add(&name, &bytes, all, known),
            Err(e) => import.error(&name, format!("unreadable zip entry: {e}")),
        }
    }
}

/// Put imported data into the rule set. A CVE the rules file has keeps its text, distribution
/// fixes and prerequisites; the record's versions are added to it, and where both name a fix
/// for the same series the record wins (it is the newer data). Returns the rules merged.
pub fn merge(rules: &mut Vec<KernelRule>, imported: Vec<KernelRule>) -> usize {
    let mut merged = 0;
    for new in imported {
        let Some(old) = rules.iter_mut().find(|r| r.cve == new.cve) else {
            rules.push(new);
            continue;
        };
        merged += 1;
        if new.introduced != "0.0" {
            old.introduced = new.introduced;
        }
        let series = |v: &str| KernelVersion::parse(v).map(|v| v.branch()).ok();
        // "lessThan 6.8" and the rules' "6.8-rc2" are the same fix at two granularities:
        // keep the finer one.
        let keep_rc = series(&old.fixed_mainline) == series(&new.fixed_mainline)
            && KernelVersion::parse(&old.fixed_mainline).ok() < KernelVersion::parse(&new.fixed_mainline).ok();
        if !keep_rc {
            old.fixed_mainline = new.fixed_mainline;
        }
        for fix in new.fixed_stable {
            old.fixed_stable.retain(|f| series(f) != series(&fix));
            old.fixed_stable.push(fix);
        }
        old.introduced_stable.extend(new.introduced_stable);
        old.stable_complete |= new.stable_complete;
        old.source = format!("{}, merged into the rules file's data ({})", new.source, old.source);
    }
    merged
}

#[cfg(test)]
mod tests;
