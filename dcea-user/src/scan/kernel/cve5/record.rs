//! One CVE JSON 5 record (cvelistV5) read as a kernel CVE: which upstream version brought the
//! bug, which mainline version fixed it, and the first fixed release of each stable series.
//!
//! The Linux kernel CNA writes two `affected` blocks per record: one of git commit ranges
//! (`versionType: git`, ignored here: a version number is what a scan compares) and one of
//! version numbers with `defaultStatus: affected`:
//! - `{version: "5.8", status: affected}`: the release that brought the bug;
//! - `{version: "0", lessThan: "5.8", status: unaffected}`: everything before it is clean;
//! - `{version: "5.10.102", lessThanOrEqual: "5.10.*", status: unaffected}`: the stable fix;
//! - `{version: "5.17", lessThanOrEqual: "*", status: unaffected, versionType:
//!   original_commit_for_fix}`: the mainline fix.
//!
//! Other CNAs (Google for CVE-2024-1086) write a plain range instead:
//! `{version: "3.15", lessThan: "6.8", status: affected}` with `defaultStatus: unaffected`.

use serde::Deserialize;

use crate::scan::{kernel::version::KernelVersion, report::Severity};

/// A record the importer keeps, reduced to what the verdict needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelRecord {
    pub cve: String,
    pub title: String,
    pub summary: String,
    pub severity: Option<Severity>,
    pub cwes: Vec<String>,
    pub program_files: Vec<String>,
    /// None: the record does not say (every version before the fix is affected).
    pub introduced: Option<KernelVersion>,
    pub fixed_mainline: Option<KernelVersion>,
    pub fixed_stable: Vec<KernelVersion>,
    /// First affected release of series that got the bug through a backport.
    pub introduced_stable: Vec<KernelVersion>,
    /// `defaultStatus: affected`: a series the record does not list is affected.
    pub stable_complete: bool,
    pub references: Vec<String>,
}

/// What one file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Kernel(Box<KernelRecord>),
    /// A CVE record for another product.
    NotKernel,
    /// A rejected or reserved CVE id.
    NotPublished,
    /// Valid JSON that is no CVE record (cvelistV5's delta.json, deltaLog.json).
    NotARecord,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    data_type: Option<String>,
    cve_metadata: Option<Metadata>,
    #[serde(default)]
    containers: Containers,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    cve_id: String,
    #[serde(default)]
    state: String,
}

#[derive(Default, Deserialize)]
struct Containers {
    cna: Option<Container>,
    #[serde(default)]
    adp: Vec<Container>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    #[serde(default)]
    title: String,
    #[serde(default)]
    descriptions: Vec<Description>,
    #[serde(default)]
    affected: Vec<Affected>,
    #[serde(default)]
    problem_types: Vec<ProblemType>,
    #[serde(default)]
    metrics: Vec<serde_json::Value>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Description {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Affected {
    #[serde(default)]
    vendor: String,
    #[serde(default)]
    product: String,
    default_status: Option<String>,
    #[serde(default)]
    program_files: Vec<String>,
    #[serde(default)]
    versions: Vec<VersionEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionEntry {
    version: String,
    status: String,
    less_than: Option<String>,
    less_than_or_equal: Option<String>,
    version_type: Option<String>,
}

#[derive(Deserialize)]
struct ProblemType {
    #[serde(default)]
    descriptions: Vec<ProblemDescription>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProblemDescription {
    cwe_id: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    url: String,
}

fn is_linux_kernel(a: &Affected) -> bool {
    a.vendor.eq_ignore_ascii_case("linux")
        && ["linux", "kernel", "linux kernel", "linux_kernel"].iter().any(|p| a.product.eq_ignore_ascii_case(p))
}

/// `6.8`, `5.10.102`, `6.8-rc4`; `0` (the CNA's "from the beginning") is None.
fn version(s: &str, cve: &str) -> Result<Option<KernelVersion>, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(None);
    }
    KernelVersion::parse(s).map(Some).map_err(|e| format!("{cve}: {e}"))
}

/// `5.10.*` names the 5.10 series.
fn series(s: &str) -> Option<(u32, u32)> {
    let (major, rest) = s.strip_suffix(".*")?.split_once('.')?;
    Some((major.parse().ok()?, rest.parse().ok()?))
}

fn severity_of(metrics: &[serde_json::Value]) -> Option<Severity> {
    metrics.iter().find_map(|m| {
        ["cvssV4_0", "cvssV3_1", "cvssV3_0"].iter().find_map(|k| match m[k]["baseSeverity"].as_str()? {
            s if s.eq_ignore_ascii_case("critical") => Some(Severity::Critical),
            s if s.eq_ignore_ascii_case("high") => Some(Severity::High),
            s if s.eq_ignore_ascii_case("medium") => Some(Severity::Medium),
            s if s.eq_ignore_ascii_case("low") => Some(Severity::Low),
            _ => None,
        })
    })
}

/// Parse one file. `Err` says why the record cannot be used; the importer reports it with
/// the file name and carries on.
pub fn parse_record(bytes: &[u8]) -> Result<Parsed, String> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| format!("not CVE JSON 5: {e}"))?;
    if record.data_type.as_deref() != Some("CVE_RECORD") {
        return Ok(Parsed::NotARecord);
    }
    let meta = record.cve_metadata.ok_or("CVE record without cveMetadata")?;
    let cve = meta.cve_id.trim().to_string();
    if !cve.starts_with("CVE-") || cve.len() > 32 {
        return Err(format!("bad cveId {cve:?}"));
    }
    if !meta.state.eq_ignore_ascii_case("PUBLISHED") {
        return Ok(Parsed::NotPublished);
    }
    let Some(cna) = record.containers.cna else {
        return Err(format!("{cve}: published record without a CNA container"));
    };
    let blocks: Vec<&Affected> = cna.affected.iter().filter(|a| is_linux_kernel(a)).collect();
    if blocks.is_empty() {
        return Ok(Parsed::NotKernel);
    }
    let mut r = KernelRecord { cve: cve.clone(), title: cna.title.trim().to_string(), ..Default::default() };
    let description = cna
        .descriptions
        .iter()
        .find(|d| d.lang.starts_with("en"))
        .or(cna.descriptions.first())
        .map(|d| d.value.as_str());
    // Kernel CNA descriptions open with a fixed sentence, then the fix's subject line.
    let text = description
        .unwrap_or_default()
        .trim_start_matches("In the Linux kernel, the following vulnerability has been resolved:");
    r.summary = text.trim().lines().next().unwrap_or_default().chars().take(300).collect();
    if r.title.is_empty() {
        r.title = r.summary.clone();
    }
    let containers = std::iter::once(&cna).chain(&record.containers.adp);
    for c in containers.clone() {
        for d in c.problem_types.iter().flat_map(|p| &p.descriptions) {
            if let Some(id) = &d.cwe_id
                && !r.cwes.contains(id)
            {
                r.cwes.push(id.clone());
            }
        }
    }
    r.severity = containers.clone().find_map(|c| severity_of(&c.metrics));
    r.references = cna.references.iter().map(|x| x.url.clone()).take(8).collect();
    let mut numbered = false;
    for block in blocks {
        for f in &block.program_files {
            if !r.program_files.contains(f) {
                r.program_files.push(f.clone());
            }
        }
        let mut block_numbered = false;
        for v in &block.versions {
            if v.version_type.as_deref() == Some("git") {
                continue;
            }
            block_numbered = true;
            read_entry(&mut r, v, &cve)?;
        }
        if block_numbered {
            numbered = true;
            r.stable_complete |= block.default_status.as_deref() == Some("affected");
        }
    }
    if !numbered {
        return Err(format!("{cve}: no version numbers in its Linux entries (only git commit ranges)"));
    }
    if r.fixed_mainline.is_none() && r.fixed_stable.is_empty() {
        return Err(format!("{cve}: no fixed version recorded"));
    }
    r.fixed_stable.sort();
    r.fixed_stable.dedup_by_key(|v| v.branch());
    r.introduced_stable.sort();
    Ok(Parsed::Kernel(Box::new(r)))
}

fn read_entry(r: &mut KernelRecord, v: &VersionEntry, cve: &str) -> Result<(), String> {
    let at = version(&v.version, cve)?;
    let affected = match v.status.as_str() {
        "affected" => true,
        "unaffected" => false,
        // `unknown` says nothing a verdict can use.
        _ => return Ok(()),
    };
    match (affected, v.less_than.as_deref(), v.less_than_or_equal.as_deref()) {
        // The release that brought the bug.
        (true, None, None) => {
            if let Some(at) = at {
                r.introduced = Some(r.introduced.map_or(at, |i| i.min(at)));
            }
        }
        // A range: in one series it is a backported bug and its stable fix; across series
        // the bug's whole life up to the mainline fix.
        (true, Some(end), _) => {
            let end = version(end, cve)?.ok_or_else(|| format!("{cve}: lessThan \"0\""))?;
            match at {
                Some(at) if at.branch() == end.branch() && at.patch > 0 => {
                    r.introduced_stable.push(at);
                    r.fixed_stable.push(end);
                }
                _ => {
                    if let Some(at) = at {
                        r.introduced = Some(r.introduced.map_or(at, |i| i.min(at)));
                    }
                    if end.patch > 0 && end.rc.is_none() {
                        r.fixed_stable.push(end);
                    } else {
                        r.fixed_mainline = Some(r.fixed_mainline.map_or(end, |m| m.min(end)));
                    }
                }
            }
        }
        // Affected up to the end of a series: nothing to compare with.
        (true, None, Some(_)) => {}
        // Everything before `lessThan` is clean: the bug came with it.
        (false, Some(end), _) if at.is_none() => {
            let end = version(end, cve)?.ok_or_else(|| format!("{cve}: lessThan \"0\""))?;
            r.introduced = Some(r.introduced.map_or(end, |i| i.max(end)));
        }
        (false, _, Some("*")) => {
            if let Some(at) = at {
                r.fixed_mainline = Some(r.fixed_mainline.map_or(at, |m| m.min(at)));
            }
        }
        (false, _, Some(upto)) => {
            let Some(at) = at else { return Ok(()) };
            match series(upto) {
                Some(s) if s == at.branch() => r.fixed_stable.push(at),
                _ => return Err(format!("{cve}: lessThanOrEqual {upto:?} does not name the series of {}", v.version)),
            }
        }
        (false, _, None) => {}
    }
    Ok(())
}
