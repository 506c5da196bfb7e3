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
    pub introduced: String,
    pub fixed_mainline: String,
    #[serde(default)]
    pub fixed_stable: Vec<String>,
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
            for v in [&r.introduced, &r.fixed_mainline].into_iter().chain(&r.fixed_stable) {
                KernelVersion::parse(v).map_err(|e| bad(format!("{}: {e}", r.cve)))?;
            }
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
mod tests {
    use super::*;
    use crate::scan::kernel::version::{KernelInput, identify};

    fn upstream(v: &str) -> KernelInfo {
        identify(&KernelInput { release: v.into(), ..Default::default() }).unwrap()
    }

    fn rule(set: &RuleSet, cve: &str) -> KernelRule {
        set.kernel.iter().find(|r| r.cve == cve).cloned().unwrap_or_else(|| panic!("{cve} missing"))
    }

    fn status(r: &KernelRule, release: &str) -> &'static str {
        match judge(r, &upstream(release)) {
            VersionVerdict::Vulnerable(_) => "vulnerable",
            VersionVerdict::Fixed(_) => "fixed",
            VersionVerdict::NotApplicable(_) => "not-applicable",
            VersionVerdict::Unknown(_) => "unknown",
        }
    }

    #[test]
    fn embedded_rules_cover_the_required_cves() {
        let set = RuleSet::embedded().unwrap();
        for cve in [
            "CVE-2016-5195",
            "CVE-2017-1000112",
            "CVE-2020-14386",
            "CVE-2021-22555",
            "CVE-2021-31440",
            "CVE-2022-0185",
            "CVE-2022-0492",
            "CVE-2022-0847",
            "CVE-2022-0995",
            "CVE-2022-25636",
            "CVE-2022-2588",
            "CVE-2023-0386",
            "CVE-2023-32233",
            "CVE-2024-1086",
        ] {
            rule(&set, cve);
        }
        for (cve, comp) in [
            ("CVE-2019-5736", "runc"),
            ("CVE-2024-21626", "runc"),
            ("CVE-2025-31133", "runc"),
            ("CVE-2025-52565", "runc"),
            ("CVE-2025-52881", "runc"),
            ("CVE-2020-15257", "containerd"),
            ("CVE-2022-23648", "containerd"),
        ] {
            assert!(set.runtime.iter().any(|r| r.cve == cve && r.component == comp), "{cve}");
        }
    }

    /// Vulnerable at x.y.(z-1), fixed at x.y.z, for every stable fix in the file.
    #[test]
    fn every_stable_fix_boundary() {
        let set = RuleSet::embedded().unwrap();
        let mut checked = 0;
        for r in &set.kernel {
            for fix in &r.fixed_stable {
                let f = KernelVersion::parse(fix).unwrap();
                if f.patch == 0 || kv(&r.introduced) > KernelVersion::new(f.major, f.minor, f.patch - 1) {
                    continue;
                }
                let before = format!("{}.{}.{}", f.major, f.minor, f.patch - 1);
                assert_eq!(status(r, &before), "vulnerable", "{} at {before}", r.cve);
                assert_eq!(status(r, fix), "fixed", "{} at {fix}", r.cve);
                assert_eq!(status(r, &format!("{}.{}.{}", f.major, f.minor, f.patch + 40)), "fixed", "{}", r.cve);
                checked += 1;
            }
        }
        assert!(checked >= 40, "only {checked} boundaries");
    }

    #[test]
    fn dirty_pipe_ranges() {
        let set = RuleSet::embedded().unwrap();
        let r = rule(&set, "CVE-2022-0847");
        for (v, want) in [
            ("5.7.19", "not-applicable"),
            ("5.8.0", "vulnerable"),
            ("5.10.101", "vulnerable"),
            ("5.10.102", "fixed"),
            ("5.13.19", "vulnerable"), // ended without a fix
            ("5.15.24", "vulnerable"),
            ("5.15.25", "fixed"),
            ("5.16.10", "vulnerable"),
            ("5.16.11", "fixed"),
            ("5.17.0-rc5", "vulnerable"),
            ("5.17.0-rc6", "fixed"),
            ("5.17.0", "fixed"),
            ("6.18.44-fc-v445", "fixed"),
            ("5.4.300", "not-applicable"),
        ] {
            assert_eq!(status(&r, v), want, "{v}");
        }
    }

    #[test]
    fn unlisted_series_is_unknown_not_guessed() {
        let set = RuleSet::embedded().unwrap();
        // 2024-1086 has no 5.4 entry recorded and is not marked complete.
        assert_eq!(status(&rule(&set, "CVE-2024-1086"), "5.4.250"), "unknown");
        // 4.9 is recorded now (fixed in 4.9.43, nluedtke/linux_kernel_cves data/4.9).
        assert_eq!(status(&rule(&set, "CVE-2017-1000112"), "4.9.40"), "vulnerable");
        assert_eq!(status(&rule(&set, "CVE-2017-1000112"), "4.14.0"), "fixed");
    }

    #[test]
    fn distro_versions_decide_for_distro_kernels() {
        let set = RuleSet::embedded().unwrap();
        let info = |release: &str, version: &str| {
            identify(&KernelInput { release: release.into(), version: version.into(), ..Default::default() }).unwrap()
        };
        let r = rule(&set, "CVE-2024-1086");
        let old = info("6.1.0-17-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.69-1 (2023-12-30)");
        assert!(matches!(judge(&r, &old), VersionVerdict::Vulnerable(_)));
        let new = info("6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)");
        assert!(matches!(judge(&r, &new), VersionVerdict::Fixed(_)));
        // Dirty Pipe: Debian fixed bullseye in 5.10.92-2, below upstream's 5.10.102.
        let dp = rule(&set, "CVE-2022-0847");
        let bullseye = info("5.10.0-11-amd64", "#1 SMP Debian 5.10.92-2 (2022-02-28)");
        assert!(matches!(judge(&dp, &bullseye), VersionVerdict::Fixed(_)));
        let el8 = info("4.18.0-348.12.2.el8_5.x86_64", "#1 SMP");
        assert!(matches!(judge(&dp, &el8), VersionVerdict::Vulnerable(_)));
        let el8_fixed = info("4.18.0-513.5.1.el8_9.x86_64", "#1 SMP");
        assert!(matches!(judge(&dp, &el8_fixed), VersionVerdict::Fixed(_)));
        // No RHEL entry: unknown, never a guess from 4.18.
        assert!(matches!(judge(&rule(&set, "CVE-2022-0185"), &el8_fixed), VersionVerdict::Unknown(_)));
    }

    #[test]
    fn bad_rules_files_are_errors() {
        let p = Path::new("x.yaml");
        for text in [
            "",
            "schema: 2\nrevision: x\n",
            "schema: 1\n",
            "schema: 1\nrevision: x\nkernel:\n  - cve: X\n",
            "schema: 1\nrevision: x\nkernel: [{cve: X, name: n, severity: high, summary: s, escape: e, introduced: \"5.x\", fixed_mainline: \"6.0\", fix: f}]\n",
            "schema: 1\nrevision: x\nruntime: [{cve: X, component: runc, name: n, severity: high, summary: s, affected: [], fix: f}]\n",
            "schema: 1\nrevision: x\nbogus: 1\n",
            "\u{0}\u{1}: [",
        ] {
            assert!(RuleSet::parse(text, p).is_err(), "{text:?}");
        }
        assert!(RuleSet::parse("schema: 1\nrevision: x\n", p).unwrap().kernel.is_empty());
    }
}
