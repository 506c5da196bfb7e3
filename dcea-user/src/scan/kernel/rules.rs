//! The rules file (docs/kernel-cve-rules.md) and the version decision for one kernel CVE.

use std::path::Path;

use serde::Deserialize;

use super::version::{KernelInfo, KernelVersion, Vendor, compare_package_versions, compare_rpm_versions};
use crate::scan::{Error, report::Severity};

/// The rules shipped inside the binary; `--rules FILE` replaces them.
pub const EMBEDDED: &str = include_str!("rules.yaml");
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    pub schema: u32,
    pub revision: String,
    #[serde(default)]
    pub kernel: Vec<KernelRule>,
    #[serde(default)]
    pub runtime: Vec<RuntimeRule>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRule {
    pub cve: String,
    pub name: String,
    pub severity: Severity,
    pub summary: String,
    pub escape: String,
    /// Empty only for a vendor-specific rule (`vendors`), whose upstream versions mean nothing.
    pub introduced: String,
    pub fixed_mainline: String,
    #[serde(default)]
    pub fixed_stable: Vec<String>,
    /// Stable series that got the bug later than `introduced` (a backport that brought it):
    /// the first affected release of that series.
    #[serde(default)]
    pub introduced_stable: Vec<String>,
    /// The bug exists only in these vendors' kernels (e.g. an Ubuntu SAUCE patch); any other
    /// kernel is not applicable. Empty: upstream bug.
    #[serde(default)]
    pub vendors: Vec<String>,
    /// Every stable series maintained when the fix landed is in `fixed_stable`: any other
    /// series in the affected range ended without a fix.
    #[serde(default)]
    pub stable_complete: bool,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub distro_fixed: Vec<DistroFix>,
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    pub fix: String,
    #[serde(default)]
    pub references: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistroFix {
    /// debian, ubuntu, rhel, amazon, suse
    pub distro: String,
    /// Informational for kernels (the package version decides); matched against the
    /// os-release codename / VERSION_ID for runtime packages.
    #[serde(default)]
    pub release: String,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Prerequisite {
    UnprivilegedUserns,
    UnprivilegedBpf,
    CgroupV1,
    Config { option: String },
    Capability { capability: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeRule {
    pub cve: String,
    /// runc, containerd, docker
    pub component: String,
    pub name: String,
    pub severity: Severity,
    pub summary: String,
    pub affected: Vec<AffectedRange>,
    #[serde(default)]
    pub distro_fixed: Vec<DistroFix>,
    #[serde(default)]
    pub requires: Option<String>,
    pub fix: String,
    #[serde(default)]
    pub references: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffectedRange {
    /// Absent: every version before `fixed`.
    #[serde(default)]
    pub introduced: Option<String>,
    pub fixed: String,
}

impl RuleSet {
    pub fn embedded() -> Result<RuleSet, Error> {
        RuleSet::parse(EMBEDDED, Path::new("<embedded rules.yaml>"))
    }

    pub fn load(path: &Path) -> Result<RuleSet, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        RuleSet::parse(&text, path)
    }

    /// Parse and validate: every version in the file must parse, so a typo fails loudly at
    /// load time instead of silently never matching.
    pub fn parse(text: &str, path: &Path) -> Result<RuleSet, Error> {
        let bad = |reason: String| Error::Rules { path: path.to_path_buf(), reason };
        let set: RuleSet = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if set.schema != SCHEMA {
            return Err(bad(format!("schema {} is not supported (this dcea reads schema {SCHEMA})", set.schema)));
        }
        for r in &set.kernel {
            r.validate().map_err(|e| bad(format!("{}: {e}", r.cve)))?;
        }
        for r in &set.runtime {
            if r.affected.is_empty() {
                return Err(bad(format!("{} ({}): no affected ranges", r.cve, r.component)));
            }
            for a in &r.affected {
                for v in a.introduced.iter().chain([&a.fixed]) {
                    super::runtime::RuntimeVersion::parse(v)
                        .ok_or_else(|| bad(format!("{} ({}): bad version {v:?}", r.cve, r.component)))?;
                }
            }
        }
        Ok(set)
    }
}

impl KernelRule {
    /// Every version must parse; `introduced`/`fixed_mainline` may be empty only for a
    /// vendor-specific rule.
    pub fn validate(&self) -> Result<(), Error> {
        let upstream = [&self.introduced, &self.fixed_mainline];
        let vendor_only = !self.vendors.is_empty() && upstream.iter().all(|v| v.is_empty());
        let required = if vendor_only { &[][..] } else { &upstream[..] };
        for v in required.iter().copied().chain(&self.fixed_stable).chain(&self.introduced_stable) {
            KernelVersion::parse(v)?;
        }
        for v in &self.vendors {
            if !VENDORS.contains(&v.as_str()) {
                return Err(Error::parse("vendor", format!("{v:?} is not one of {}", VENDORS.join(", "))));
            }
        }
        Ok(())
    }
}

const VENDORS: &[&str] = &["debian", "ubuntu", "rhel", "amazon", "suse", "upstream"];

/// The version-only verdict for one kernel CVE, before prerequisites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionVerdict {
    Vulnerable(String),
    Fixed(String),
    NotApplicable(String),
    Unknown(String),
}

fn kv(s: &str) -> KernelVersion {
    // Validated in RuleSet::parse.
    KernelVersion::parse(s).unwrap_or(KernelVersion::new(0, 0, 0))
}

fn vendor_key(v: Vendor) -> &'static str {
    v.as_str()
}

/// Decide from versions alone. Distribution fixed versions win when the rule has one for the
/// kernel's vendor and series; then the upstream version decides when it is meaningful.
pub fn judge(rule: &KernelRule, k: &KernelInfo) -> VersionVerdict {
    use VersionVerdict::*;
    if let Some(pkg) = &k.package {
        let base = format!("{}.{}.", k.upstream.major, k.upstream.minor);
        let candidates: Vec<&DistroFix> = rule
            .distro_fixed
            .iter()
            .filter(|d| d.distro == vendor_key(k.vendor) && d.version.starts_with(&base))
            .collect();
        if let Some(fix) = candidates.first() {
            let what = format!("{} kernel {pkg}, fixed in {} ({})", k.vendor.as_str(), fix.version, fix.release);
            let ord = match k.vendor {
                Vendor::Rhel | Vendor::Amazon | Vendor::Suse => compare_rpm_versions(pkg, &fix.version),
                _ => compare_package_versions(pkg, &fix.version),
            };
            return if ord.is_ge() { Fixed(what) } else { Vulnerable(what) };
        }
    }
    if !rule.vendors.is_empty() {
        if !rule.vendors.iter().any(|v| v == vendor_key(k.vendor)) {
            return NotApplicable(format!(
                "only {} kernels carry this bug; this is a {} kernel",
                rule.vendors.join("/"),
                k.vendor.as_str()
            ));
        }
        if rule.introduced.is_empty() {
            return Unknown(format!(
                "{} kernel {}: no distribution fixed version for this series in the rules; check the vendor advisory",
                k.vendor.as_str(),
                k.package.as_deref().unwrap_or(&k.release)
            ));
        }
    }
    let v = k.upstream;
    let introduced = kv(&rule.introduced);
    let mainline = kv(&rule.fixed_mainline);
    if !k.upstream_reliable {
        // Only "introduced later than the base" is safe to conclude for RHEL/SUSE, and even
        // that not: they backport features too. Say what is missing.
        return Unknown(format!(
            "{} kernel {}: no distribution fixed version for this series in the rules, and its upstream base {} does not show backported fixes; check the vendor advisory",
            k.vendor.as_str(),
            k.package.as_deref().unwrap_or(&k.release),
            v
        ));
    }
    if v < introduced {
        return NotApplicable(format!("kernel {v} predates the bug (introduced in {introduced})"));
    }
    if v >= mainline {
        return Fixed(format!("kernel {v} includes the mainline fix ({mainline})"));
    }
    if v.branch() == mainline.branch() {
        return Vulnerable(format!("kernel {v} is a pre-release before the fix in {mainline}"));
    }
    if let Some(first) = rule.introduced_stable.iter().map(|s| kv(s)).find(|f| f.branch() == v.branch())
        && v < first
    {
        return NotApplicable(format!("kernel {v} predates the bug in the {}.{} series ({first})", v.major, v.minor));
    }
    if let Some(fix) = rule.fixed_stable.iter().map(|s| kv(s)).find(|f| f.branch() == v.branch()) {
        return if v >= fix {
            Fixed(format!("kernel {v} includes the {}.{} stable fix ({fix})", fix.major, fix.minor))
        } else {
            Vulnerable(format!("kernel {v} is before the {}.{} stable fix {fix}", fix.major, fix.minor))
        };
    }
    if rule.stable_complete {
        return Vulnerable(format!(
            "kernel {v}: the {}.{} series ended without a fix (fixed in mainline {mainline} and {})",
            v.major,
            v.minor,
            rule.fixed_stable.join(", ")
        ));
    }
    Unknown(format!(
        "kernel {v} is in the affected range ({introduced} to {mainline}) but no fixed version for the {}.{} series is recorded; assume vulnerable unless your vendor backported the fix",
        v.major, v.minor
    ))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
