//! Container runtimes on the host (runc, containerd, Docker engine) against their escape CVEs.

use std::{cmp::Ordering, collections::BTreeMap, fs, process::Command};

use serde::Serialize;

use super::{
    rules::{RuleSet, RuntimeRule},
    version::compare_package_versions,
};
use crate::scan::report::{Finding, Status, Subject};

/// `1.1.12`, `1.0.0-rc93`, `1.0-rc6`, `1.4.0-rc.3`; build metadata (`+ds1`, `~ds1`) is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    nums: [u32; 3],
    /// Release candidate number; `None` is the final release and sorts after every rc.
    rc: Option<u32>,
}

impl RuntimeVersion {
    pub fn parse(s: &str) -> Option<RuntimeVersion> {
        let s = s.trim().trim_start_matches('v');
        let core = s.split(['+', '~']).next()?;
        let (nums_part, pre) = match core.split_once('-') {
            Some((n, p)) => (n, Some(p)),
            None => (core, None),
        };
        let mut nums = [0u32; 3];
        let parts: Vec<&str> = nums_part.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        for (slot, p) in nums.iter_mut().zip(&parts) {
            if p.is_empty() || p.len() > 9 || !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            *slot = p.parse().ok()?;
        }
        let rc = match pre {
            None => None,
            Some(p) => {
                let n = p.strip_prefix("rc")?.trim_start_matches('.');
                if n.is_empty() || n.len() > 9 || !n.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                Some(n.parse().ok()?)
            }
        };
        Some(RuntimeVersion { nums, rc })
    }
}

impl Ord for RuntimeVersion {
    fn cmp(&self, o: &Self) -> Ordering {
        self.nums.cmp(&o.nums).then(match (self.rc, o.rc) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.cmp(&b),
        })
    }
}

impl PartialOrd for RuntimeVersion {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// One runtime component found on the host.
#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub name: String,
    /// The version string as the binary prints it (`1.1.5+ds1`).
    pub version: String,
    /// The first line of `--version`, as evidence.
    pub banner: String,
    /// Distribution package and its version when the binary comes from one (`runc`,
    /// `1.1.5+ds1-1+deb12u1`): backported fixes live there.
    pub package: Option<(String, String)>,
}

/// Pull the version out of each component's `--version` banner.
pub fn parse_banner(component: &str, output: &str) -> Option<String> {
    let first = output.lines().next()?.trim();
    let words: Vec<&str> = first.split_whitespace().collect();
    let v = match component {
        // "runc version 1.1.5+ds1"
        "runc" => words.iter().position(|w| *w == "version").and_then(|i| words.get(i + 1)),
        // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
        // "containerd containerd.io 1.6.28 ae07eda36dd25f8a1b98dfbf587313b99c0190bb"
        "containerd" => words.get(2),
        // "Docker version 20.10.24+dfsg1, build 5d6db84"
        "docker" => words.iter().position(|w| *w == "version").and_then(|i| words.get(i + 1)),
        _ => None,
    }?;
    let v = v.trim_end_matches(',').trim_start_matches('v');
    RuntimeVersion::parse(v).map(|_| v.to_string())
}

/// Versions of installed dpkg packages from /var/lib/dpkg/status.
pub fn dpkg_versions(status: &str, wanted: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in status.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed)
            && wanted.contains(&n)
        {
            out.insert(n.to_string(), v.to_string());
        }
    }
    out
}

/// Which binary to ask and which packages may own it.
const COMPONENTS: [(&str, &str, &[&str]); 3] = [
    ("runc", "runc", &["runc"]),
    ("containerd", "containerd", &["containerd", "containerd.io"]),
    ("docker", "dockerd", &["docker.io", "docker-ce"]),
];

/// Find the runtimes on this host. A missing binary is not an error: it is reported as
/// not applicable.
pub fn detect() -> (Vec<Component>, Vec<String>) {
    let dpkg = fs::read_to_string("/var/lib/dpkg/status").unwrap_or_default();
    let all_pkgs: Vec<&str> = COMPONENTS.iter().flat_map(|c| c.2.iter().copied()).collect();
    let pkgs = dpkg_versions(&dpkg, &all_pkgs);
    let mut found = Vec::new();
    let mut absent = Vec::new();
    for (name, binary, packages) in COMPONENTS {
        let Ok(out) = Command::new(binary).arg("--version").output() else {
            absent.push(name.to_string());
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let Some(version) = parse_banner(name, &text) else {
            absent.push(format!("{name} (unrecognised `{binary} --version` output)"));
            continue;
        };
        let upstream = version.split(['+', '~']).next().unwrap_or(&version).to_string();
        // Only trust the package when it carries the same upstream version as the binary.
        let package = packages
            .iter()
            .find_map(|p| pkgs.get(*p).filter(|v| v.contains(&upstream)).map(|v| (p.to_string(), v.clone())));
        found.push(Component {
            name: name.into(),
            version,
            banner: text.lines().next().unwrap_or_default().trim().to_string(),
            package,
        });
    }
    (found, absent)
}

fn in_affected(rule: &RuntimeRule, v: &RuntimeVersion) -> Option<bool> {
    let mut any = false;
    for a in &rule.affected {
        let fixed = RuntimeVersion::parse(&a.fixed)?;
        let lo_ok = match &a.introduced {
            Some(i) => RuntimeVersion::parse(i)? <= *v,
            None => true,
        };
        any |= lo_ok && *v < fixed;
    }
    Some(any)
}

/// Judge one component against one rule. `codename` is the os-release VERSION_CODENAME.
pub fn judge(rule: &RuntimeRule, c: &Component, distro: &str, codename: &str, host: &str) -> Finding {
    let mut evidence = vec![format!("{}: {}", c.name, c.banner)];
    if let Some((p, v)) = &c.package {
        evidence.push(format!("{distro} package {p} {v}"));
    }
    if let Some(req) = &rule.requires {
        evidence.push(format!("exposure requires: {req}"));
    }
    let (status, why) = match RuntimeVersion::parse(&c.version).and_then(|v| in_affected(rule, &v)) {
        None => (Status::Unknown, format!("cannot compare version {:?}", c.version)),
        Some(false) => (Status::Fixed, format!("{} {} is outside the affected ranges", c.name, c.version)),
        Some(true) => {
            let distro_fix = c.package.as_ref().and_then(|(_, pv)| {
                rule.distro_fixed
                    .iter()
                    .find(|d| d.distro == distro && d.release == codename)
                    .map(|d| (pv, &d.version, &d.release))
            });
            match (distro_fix, &c.package) {
                (Some((pv, fixed, rel)), _) if compare_package_versions(pv, fixed).is_ge() => {
                    (Status::Fixed, format!("{distro} {rel} fixed this in {fixed}; installed {pv}"))
                }
                (Some((pv, fixed, rel)), _) => {
                    (Status::Vulnerable, format!("{distro} {rel} fixed this in {fixed}; installed {pv}"))
                }
                (None, Some((p, pv))) => (
                    Status::Unknown,
                    format!(
                        "upstream {} is in the affected range, but {p} {pv} is a distribution package that may carry a backport and no {distro} {codename} fixed version is recorded",
                        c.version
                    ),
                ),
                (None, None) => (Status::Vulnerable, format!("{} {} is in the affected range", c.name, c.version)),
            }
        }
    };
    evidence.push(why);
    Finding {
        id: rule.cve.clone(),
        title: format!("{} ({}): {}", rule.name, c.name, rule.summary),
        severity: rule.severity,
        status,
        subject: Subject::host(host),
        evidence,
        remediation: rule.fix.clone(),
        cis: None,
        cves: vec![rule.cve.clone()],
    }
}

/// Findings for every runtime rule: judged against the installed component, or not
/// applicable when the component is absent.
pub fn findings(
    rules: &RuleSet,
    comps: &[Component],
    absent: &[String],
    os: &BTreeMap<String, String>,
    host: &str,
) -> Vec<Finding> {
    let distro = os.get("ID").map(String::as_str).unwrap_or("");
    let codename = os.get("VERSION_CODENAME").map(String::as_str).unwrap_or("");
    rules
        .runtime
        .iter()
        .map(|r| match comps.iter().find(|c| c.name == r.component) {
            Some(c) => judge(r, c, distro, codename, host),
            None => Finding {
                id: r.cve.clone(),
                title: format!("{} ({}): {}", r.name, r.component, r.summary),
                severity: r.severity,
                status: Status::NotApplicable,
                subject: Subject::host(host),
                evidence: vec![format!(
                    "{} not found on this host ({})",
                    r.component,
                    absent.iter().find(|a| a.starts_with(&r.component)).map(String::as_str).unwrap_or("not on PATH")
                )],
                remediation: r.fix.clone(),
                cis: None,
                cves: vec![r.cve.clone()],
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RuntimeVersion {
        RuntimeVersion::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn versions() {
        assert!(v("1.0.0-rc6") < v("1.0.0-rc7"));
        assert!(v("1.0.0-rc93") < v("1.0.0"));
        assert!(v("1.0-rc6") < v("1.0.0-rc7"));
        assert!(v("1.1.11") < v("1.1.12"));
        assert!(v("1.4.0-rc.2") < v("1.4.0-rc.3"));
        assert!(v("1.4.0-rc.3") < v("1.4.0"));
        assert_eq!(v("1.1.5+ds1"), v("1.1.5"));
        assert_eq!(v("1.6.20~ds1"), v("1.6.20"));
        assert_eq!(v("v1.7.0"), v("1.7.0"));
        for bad in ["", "x", "1..2", "1.2.3.4", "1.2-beta", "1.2-rc", "-rc1"] {
            assert!(RuntimeVersion::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn banners() {
        assert_eq!(parse_banner("runc", "runc version 1.1.5+ds1\ncommit: x\n").as_deref(), Some("1.1.5+ds1"));
        assert_eq!(parse_banner("runc", "runc version 1.0.0-rc93\n").as_deref(), Some("1.0.0-rc93"));
        assert_eq!(
            parse_banner("containerd", "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3")
                .as_deref(),
            Some("1.6.20~ds1")
        );
        assert_eq!(parse_banner("containerd", "containerd containerd.io 1.6.28 ae07eda3").as_deref(), Some("1.6.28"));
        assert_eq!(
            parse_banner("containerd", "containerd github.com/containerd/containerd v1.7.2 0cae528").as_deref(),
            Some("1.7.2")
        );
        assert_eq!(
            parse_banner("docker", "Docker version 20.10.24+dfsg1, build 5d6db84").as_deref(),
            Some("20.10.24+dfsg1")
        );
        assert_eq!(parse_banner("docker", "Docker version 18.09.1, build 4c52b90").as_deref(), Some("18.09.1"));
        for junk in ["", "\n", "runc", "runc version", "garbage here"] {
            assert_eq!(parse_banner("runc", junk), None, "{junk:?}");
        }
    }

    #[test]
    fn dpkg_status_stanzas() {
        let status = "Package: runc\nStatus: install ok installed\nVersion: 1.1.5+ds1-1+deb12u1\n\nPackage: containerd\nStatus: deinstall ok config-files\nVersion: 1.6.20~ds1-1\n\nPackage: other\nStatus: install ok installed\nVersion: 1\n\ngarbage\n";
        let got = dpkg_versions(status, &["runc", "containerd"]);
        assert_eq!(got.get("runc").map(String::as_str), Some("1.1.5+ds1-1+deb12u1"));
        assert!(!got.contains_key("containerd"), "not installed");
        assert!(dpkg_versions("", &["runc"]).is_empty());
    }

    fn comp(name: &str, version: &str, package: Option<(&str, &str)>) -> Component {
        Component {
            name: name.into(),
            version: version.into(),
            banner: format!("{name} version {version}"),
            package: package.map(|(a, b)| (a.into(), b.into())),
        }
    }

    #[test]
    fn runtime_judgements() {
        let rules = RuleSet::embedded().unwrap();
        let get = |cve: &str, c: &str| rules.runtime.iter().find(|r| r.cve == cve && r.component == c).unwrap();
        let leaky = get("CVE-2024-21626", "runc");
        let st = |c: &Component, d: &str, cn: &str| judge(leaky, c, d, cn, "h").status;
        assert_eq!(st(&comp("runc", "1.1.11", None), "", ""), Status::Vulnerable);
        assert_eq!(st(&comp("runc", "1.1.12", None), "", ""), Status::Fixed);
        assert_eq!(st(&comp("runc", "1.0.0-rc92", None), "", ""), Status::Fixed, "before introduction");
        let deb = comp("runc", "1.1.5+ds1", Some(("runc", "1.1.5+ds1-1+deb12u1")));
        assert_eq!(st(&deb, "debian", "bookworm"), Status::Fixed, "Debian backport");
        let deb_old = comp("runc", "1.1.5+ds1", Some(("runc", "1.1.5+ds1-1")));
        assert_eq!(st(&deb_old, "debian", "bookworm"), Status::Vulnerable);
        let mount_race = get("CVE-2025-52881", "runc");
        assert_eq!(judge(mount_race, &deb, "debian", "bookworm", "h").status, Status::Unknown, "no distro data");
        assert_eq!(judge(mount_race, &comp("runc", "1.2.7", None), "", "", "h").status, Status::Vulnerable);
        assert_eq!(judge(mount_race, &comp("runc", "1.2.8", None), "", "", "h").status, Status::Fixed);
        assert_eq!(judge(mount_race, &comp("runc", "1.3.2", None), "", "", "h").status, Status::Vulnerable);
        assert_eq!(judge(mount_race, &comp("runc", "1.3.3", None), "", "", "h").status, Status::Fixed);
        assert_eq!(judge(mount_race, &comp("runc", "1.4.0-rc.2", None), "", "", "h").status, Status::Vulnerable);
        assert_eq!(judge(mount_race, &comp("runc", "1.4.0", None), "", "", "h").status, Status::Fixed);
        let shim = get("CVE-2020-15257", "containerd");
        assert_eq!(judge(shim, &comp("containerd", "1.4.2", None), "", "", "h").status, Status::Vulnerable);
        assert_eq!(judge(shim, &comp("containerd", "1.4.3", None), "", "", "h").status, Status::Fixed);
        assert_eq!(judge(shim, &comp("containerd", "1.3.8", None), "", "", "h").status, Status::Vulnerable);
        assert_eq!(judge(shim, &comp("containerd", "1.6.20~ds1", None), "", "", "h").status, Status::Fixed);
        let old_docker = get("CVE-2019-5736", "docker");
        assert_eq!(judge(old_docker, &comp("docker", "18.09.1", None), "", "", "h").status, Status::Vulnerable);
        assert_eq!(judge(old_docker, &comp("docker", "20.10.24+dfsg1", None), "", "", "h").status, Status::Fixed);
    }

    #[test]
    fn absent_components_are_not_applicable() {
        let rules = RuleSet::embedded().unwrap();
        let f = findings(&rules, &[], &["runc".into()], &BTreeMap::new(), "h");
        assert_eq!(f.len(), rules.runtime.len());
        assert!(f.iter().all(|f| f.status == Status::NotApplicable));
    }
}
