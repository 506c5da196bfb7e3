//! `dcea scan kernel`: is this host's kernel (or another machine's, given on the command line)
//! and its container runtime exposed to known container-escape vulnerabilities?

pub mod cve5;
pub mod host;
pub mod rules;
pub mod runtime;
pub mod version;

use std::{fs, path::PathBuf};

use serde_json::json;

use self::{
    host::{Exposure, HostFacts},
    rules::{KernelRule, RuleSet, VersionVerdict},
    version::{KernelInfo, KernelInput},
};
use super::{
    Error,
    report::{Finding, OutputArgs, Report, Severity, Status, Subject},
};

#[derive(Clone, Debug, clap::Args)]
pub struct KernelScanArgs {
    /// Check this kernel release (`uname -r` of another machine) instead of the running one.
    /// Host settings and runtimes are then not checked: they describe this machine.
    #[arg(long, value_name = "RELEASE")]
    pub kernel_release: Option<String>,
    /// `uname -v` to go with --kernel-release (Debian puts the package version there).
    #[arg(long, value_name = "VERSION", requires = "kernel_release")]
    pub kernel_version: Option<String>,
    /// Ubuntu's /proc/version_signature to go with --kernel-release.
    #[arg(long, value_name = "SIGNATURE", requires = "kernel_release")]
    pub version_signature: Option<String>,
    /// os-release file to read instead of /etc/os-release.
    #[arg(long, value_name = "FILE")]
    pub os_release: Option<PathBuf>,
    /// Rules file replacing the embedded one (format: docs/kernel-cve-rules.md).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Kernel CVE records in CVE JSON 5 (the Linux kernel CNA's format): a directory (read
    /// recursively) or a zip of cvelistV5. Escape-relevant ones are added to the rules, and
    /// their versions update the rules' own entries.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// With --db: report every kernel CVE in the records, not only escape-relevant ones.
    #[arg(long, requires = "db")]
    pub all: bool,
    /// Skip the runc / containerd / Docker engine version checks.
    #[arg(long)]
    pub no_runtimes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn kernel_input(args: &KernelScanArgs) -> Result<KernelInput, Error> {
    let os_release = match &args.os_release {
        Some(p) => Some(fs::read_to_string(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?),
        None => read_trimmed("/etc/os-release").or_else(|| read_trimmed("/usr/lib/os-release")),
    };
    Ok(match &args.kernel_release {
        Some(release) => KernelInput {
            release: release.clone(),
            version: args.kernel_version.clone().unwrap_or_default(),
            signature: args.version_signature.clone(),
            os_release,
        },
        None => KernelInput {
            release: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_err(|e| Error::io("reading /proc/sys/kernel/osrelease", e))?
                .trim()
                .to_string(),
            version: read_trimmed("/proc/sys/kernel/version").unwrap_or_default(),
            signature: read_trimmed("/proc/version_signature"),
            os_release,
        },
    })
}

fn lower(s: Severity) -> Severity {
    match s {
        Severity::Critical => Severity::High,
        Severity::High => Severity::Medium,
        Severity::Medium | Severity::Low => Severity::Low,
        Severity::Info => Severity::Info,
    }
}

/// One finding per kernel rule: the version verdict, refined by host settings when the
/// kernel is the running one.
pub fn kernel_finding(rule: &KernelRule, k: &KernelInfo, facts: Option<&HostFacts>, subject: &Subject) -> Finding {
    let mut evidence = vec![match &k.package {
        Some(p) => format!("kernel {} ({} package {p}, upstream {})", k.release, k.vendor.as_str(), k.upstream),
        None => format!("kernel {} (upstream {})", k.release, k.upstream),
    }];
    let (mut status, why) = match rules::judge(rule, k) {
        VersionVerdict::Vulnerable(w) => (Status::Vulnerable, w),
        VersionVerdict::Fixed(w) => (Status::Fixed, w),
        VersionVerdict::NotApplicable(w) => (Status::NotApplicable, w),
        VersionVerdict::Unknown(w) => (Status::Unknown, w),
    };
    evidence.push(why);
    let mut severity = rule.severity;
    if matches!(status, Status::Vulnerable | Status::Unknown) {
        match facts {
            None => {
                if !rule.prerequisites.is_empty() {
                    evidence.push("host settings not checked (kernel given on the command line)".into());
                }
            }
            Some(facts) => {
                let mut reduced = false;
                for p in &rule.prerequisites {
                    match facts.exposure(p) {
                        Exposure::Blocked(w) => {
                            status = Status::NotApplicable;
                            evidence.push(w);
                        }
                        Exposure::Reduced(w) => {
                            reduced = true;
                            evidence.push(format!("mitigation: {w}"));
                        }
                        Exposure::Open(w) => evidence.push(format!("exposure: {w}")),
                        Exposure::Unknown(w) => evidence.push(format!("not checked: {w}")),
                    }
                }
                if reduced {
                    severity = lower(severity);
                }
            }
        }
        evidence.push(format!("escape: {}", rule.escape));
    }
    if !rule.source.is_empty() {
        evidence.push(format!("data: {}", rule.source));
    }
    Finding {
        id: rule.cve.clone(),
        title: format!("{}: {}", rule.name, rule.summary),
        severity,
        status,
        subject: subject.clone(),
        evidence,
        remediation: rule.fix.clone(),
        cis: None,
        cves: vec![rule.cve.clone()],
    }
}

pub fn scan(args: &KernelScanArgs) -> Result<Report, Error> {
    let mut rules = match &args.rules {
        Some(p) => RuleSet::load(p)?,
        None => RuleSet::embedded()?,
    };
    let mut db_warnings = Vec::new();
    let cve_db = match &args.db {
        None => serde_json::Value::Null,
        Some(path) => {
            let known: Vec<String> = rules.kernel.iter().map(|r| r.cve.clone()).collect();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            let import = cve5::load(path, args.all, &known)?;
            db_warnings.extend(import.errors.iter().map(|e| format!("CVE database: {e}")));
            if import.stats.errors as usize > import.errors.len() {
                db_warnings.push(format!(
                    "CVE database: {} more bad records not listed",
                    import.stats.errors as usize - import.errors.len()
                ));
            }
            let stats = import.stats.clone();
            let merged = cve5::merge(&mut rules.kernel, import.rules);
            json!({ "path": path.display().to_string(), "all": args.all, "stats": stats, "merged_into_rules": merged })
        }
    };
    let input = kernel_input(args)?;
    let info = version::identify(&input)?;
    let local = args.kernel_release.is_none();
    let host = if local { crate::sys::hostname() } else { String::new() };
    let subject = if local {
        Subject::host(if host.is_empty() { "localhost" } else { &host })
    } else {
        Subject::host(&info.release)
    };
    let facts = local.then(|| HostFacts::gather(&info.release));
    let mut report = Report::new("kernel", json!({}));
    report.findings = rules.kernel.iter().map(|r| kernel_finding(r, &info, facts.as_ref(), &subject)).collect();
    let mut components = Vec::new();
    if local && !args.no_runtimes {
        let (found, absent) = runtime::detect();
        report.findings.extend(runtime::findings(&rules, &found, &absent, &info.os_release, &subject.id));
        components = found;
    }
    report.warnings.extend(info.notes.iter().cloned());
    report.warnings.extend(db_warnings);
    report.target = json!({
        "kernel": info,
        "host_settings": facts,
        "runtimes": components,
        "rules_revision": rules.revision,
        "rules_file": args.rules.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded".into()),
        "cve_db": cve_db,
    });
    report.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(release: Option<&str>) -> KernelScanArgs {
        KernelScanArgs {
            kernel_release: release.map(Into::into),
            kernel_version: None,
            version_signature: None,
            os_release: None,
            rules: None,
            db: None,
            all: false,
            no_runtimes: true,
            output: OutputArgs { format: None, fail_on: None },
        }
    }

    #[test]
    fn scan_this_host() {
        let r = scan(&args(None)).unwrap();
        assert_eq!(r.findings.len(), RuleSet::embedded().unwrap().kernel.len());
        // This host runs 6.18: past every mainline fix in the file.
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let v = version::KernelVersion::parse_prefix(release.trim()).unwrap().0;
        if v >= version::KernelVersion::new(6, 8, 0) {
            // Vendor-only rules (Ubuntu's overlayfs patches) do not apply to other kernels.
            assert!(
                r.findings.iter().all(|f| f.status == Status::Fixed
                    || (f.status == Status::NotApplicable && f.evidence.iter().any(|e| e.contains("only ")))),
                "{:#?}",
                r.findings
            );
        }
        assert!(r.target["kernel"]["release"].is_string());
    }

    #[test]
    fn scan_another_kernel() {
        let mut a = args(Some("5.10.0-11-amd64"));
        a.kernel_version = Some("#1 SMP Debian 5.10.92-1 (2022-01-18)".into());
        let r = scan(&a).unwrap();
        let dp = r.findings.iter().find(|f| f.id == "CVE-2022-0847").unwrap();
        assert_eq!(dp.status, Status::Vulnerable);
        assert!(dp.evidence.iter().any(|e| e.contains("5.10.92-2")), "{:?}", dp.evidence);
        let fsctx = r.findings.iter().find(|f| f.id == "CVE-2022-0185").unwrap();
        assert_eq!(fsctx.status, Status::Fixed, "Debian fixed it in 5.10.92-1");
        assert_eq!(r.exit_code(Some(Severity::Critical)), 1);
    }

    #[test]
    fn scan_with_cve_json5_db() {
        let mut a = args(Some("6.6.75"));
        a.db = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/cve5"));
        let r = scan(&a).unwrap();
        let sched = r.findings.iter().find(|f| f.id == "CVE-2025-21700").expect("imported CVE reported");
        assert_eq!(sched.status, Status::Vulnerable, "{:?}", sched.evidence);
        assert!(sched.evidence.iter().any(|e| e.contains("6.6.76")), "{:?}", sched.evidence);
        assert!(r.findings.iter().all(|f| f.id != "CVE-2024-47000"), "driver bug only with --all");
        assert!(r.warnings.iter().any(|w| w.contains("CVE-2024-99991.json")), "{:?}", r.warnings);
        assert_eq!(r.target["cve_db"]["stats"]["imported"], 3);
        assert_eq!(r.findings.iter().find(|f| f.id == "CVE-2024-1086").unwrap().status, Status::Fixed);
        a.all = true;
        assert!(scan(&a).unwrap().findings.iter().any(|f| f.id == "CVE-2024-47000"));
        a.db = Some("/nonexistent/cvelist".into());
        assert!(matches!(scan(&a), Err(Error::Io { .. })));
    }

    #[test]
    fn missing_os_release_or_rules_file_is_an_error() {
        let mut a = args(Some("6.1.0"));
        a.os_release = Some("/nonexistent/os-release".into());
        assert!(matches!(scan(&a), Err(Error::Io { .. })));
        let mut b = args(Some("6.1.0"));
        b.rules = Some("/nonexistent/rules.yaml".into());
        assert!(scan(&b).is_err());
        assert!(scan(&args(Some("not-a-kernel"))).is_err());
    }

    #[test]
    fn blocked_prerequisite_makes_not_applicable() {
        let set = RuleSet::embedded().unwrap();
        let wq = set.kernel.iter().find(|r| r.cve == "CVE-2022-0995").unwrap();
        let k = version::identify(&KernelInput { release: "5.15.20".into(), ..Default::default() }).unwrap();
        let facts = HostFacts { config: Some(host::parse_kconfig("CONFIG_USER_NS=y\n")), ..Default::default() };
        let f = kernel_finding(wq, &k, Some(&facts), &Subject::host("h"));
        assert_eq!(f.status, Status::NotApplicable, "{:?}", f.evidence);
        let f = kernel_finding(wq, &k, None, &Subject::host("h"));
        assert_eq!(f.status, Status::Vulnerable);
        let facts = HostFacts { max_user_namespaces: Some(0), ..Default::default() };
        let nft = set.kernel.iter().find(|r| r.cve == "CVE-2022-25636").unwrap();
        let f = kernel_finding(nft, &k, Some(&facts), &Subject::host("h"));
        assert_eq!((f.status, f.severity), (Status::Vulnerable, Severity::Medium), "{:?}", f.evidence);
    }
}
