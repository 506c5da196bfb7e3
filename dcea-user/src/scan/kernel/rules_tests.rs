//! Unit tests of the rules file and the kernel verdict (kept apart: the tables are long).
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
        "CVE-2022-32250",
        "CVE-2022-1015",
        "CVE-2023-0179",
        "CVE-2023-35001",
        "CVE-2023-4244",
        "CVE-2022-2602",
        "CVE-2023-2598",
        "CVE-2024-0582",
        "CVE-2023-3269",
        "CVE-2022-27666",
        "CVE-2023-2640",
        "CVE-2023-32629",
    ] {
        let r = rule(&set, cve);
        assert!(!r.source.is_empty(), "{cve} has no source");
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
    // 2017-1000112 has no 4.12 entry recorded and is not marked complete.
    assert_eq!(status(&rule(&set, "CVE-2017-1000112"), "4.12.5"), "unknown");
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

fn table(cve: &str, cases: &[(&str, &str)]) {
    let set = RuleSet::embedded().unwrap();
    let r = rule(&set, cve);
    for (v, want) in cases {
        assert_eq!(status(&r, v), *want, "{cve} at {v}");
    }
}

/// The table: vulnerable on the last release of each series before the backport,
/// fixed from the fixing release on. 5.10's fix is 5.10.210 (its stable review series),
/// not 5.10.209.
#[test]
fn nf_tables_1086_per_series() {
    table(
        "CVE-2024-1086",
        &[
            ("6.7.2", "vulnerable"),
            ("6.7.3", "fixed"),
            ("6.6.14", "vulnerable"),
            ("6.6.15", "fixed"),
            ("6.6.60", "fixed"),
            ("6.1.75", "vulnerable"),
            ("6.1.76", "fixed"),
            ("5.15.148", "vulnerable"),
            ("5.15.149", "fixed"),
            ("5.10.209", "vulnerable"),
            ("5.10.210", "fixed"),
            ("5.4.268", "vulnerable"),
            ("5.4.269", "fixed"),
            ("4.19.306", "vulnerable"),
            ("4.19.307", "fixed"),
            ("4.14.336", "vulnerable"), // 4.14 ended without the fix
            ("6.5.13", "vulnerable"),   // ended before the fix
            ("6.8.0-rc1", "vulnerable"),
            ("6.8.0-rc2", "fixed"),
            ("6.8.0", "fixed"),
            ("3.14.79", "not-applicable"),
            ("3.15.0", "vulnerable"),
        ],
    );
}

#[test]
fn overlayfs_0386_per_series() {
    table(
        "CVE-2023-0386",
        &[
            ("5.10.200", "not-applicable"),
            ("5.11.0", "vulnerable"),
            ("5.15.90", "vulnerable"),
            ("5.15.91", "fixed"),
            ("6.0.19", "vulnerable"),
            ("6.1.8", "vulnerable"),
            ("6.1.9", "fixed"),
            ("6.2.0", "fixed"),
        ],
    );
}

#[test]
fn nf_tables_32233_per_series() {
    table(
        "CVE-2023-32233",
        &[
            ("6.3.1", "vulnerable"),
            ("6.3.2", "fixed"),
            ("6.1.27", "vulnerable"),
            ("6.1.28", "fixed"),
            ("5.10.179", "vulnerable"),
            ("5.10.180", "fixed"),
            ("5.4.243", "fixed"),
            ("4.9.337", "vulnerable"),
            ("3.12.74", "not-applicable"),
        ],
    );
}

#[test]
fn nf_tables_32250_1015_0179_35001_4244() {
    table(
        "CVE-2022-32250",
        &[("5.15.44", "vulnerable"), ("5.15.45", "fixed"), ("4.4.302", "vulnerable"), ("4.0.9", "not-applicable")],
    );
    table(
        "CVE-2022-1015",
        &[("5.15.31", "vulnerable"), ("5.15.32", "fixed"), ("5.10.200", "not-applicable"), ("5.18.0", "fixed")],
    );
    table(
        "CVE-2023-0179",
        &[("6.1.6", "vulnerable"), ("6.1.7", "fixed"), ("5.10.163", "vulnerable"), ("5.4.250", "not-applicable")],
    );
    table(
        "CVE-2023-35001",
        &[("6.1.38", "vulnerable"), ("6.1.39", "fixed"), ("4.14.321", "vulnerable"), ("6.5.0", "fixed")],
    );
    table(
        "CVE-2023-4244",
        &[("6.1.55", "vulnerable"), ("6.1.56", "fixed"), ("6.3.13", "vulnerable"), ("5.4.250", "not-applicable")],
    );
}

#[test]
fn io_uring_2602_2598_0582() {
    table(
        "CVE-2022-2602",
        &[("5.15.74", "vulnerable"), ("5.15.75", "fixed"), ("5.4.219", "vulnerable"), ("4.19.300", "not-applicable")],
    );
    table(
        "CVE-2023-2598",
        &[("6.3.1", "vulnerable"), ("6.3.2", "fixed"), ("6.2.16", "not-applicable"), ("6.4.0", "fixed")],
    );
    table(
        "CVE-2024-0582",
        &[("6.6.4", "vulnerable"), ("6.6.5", "fixed"), ("6.5.13", "vulnerable"), ("6.1.100", "not-applicable")],
    );
}

#[test]
fn stackrot_3269_and_esp_27666() {
    table(
        "CVE-2023-3269",
        &[
            ("6.1.36", "vulnerable"),
            ("6.1.37", "fixed"),
            ("6.2.16", "vulnerable"),
            ("6.3.11", "fixed"),
            ("5.15.200", "not-applicable"),
        ],
    );
    table(
        "CVE-2022-27666",
        &[("5.10.107", "vulnerable"), ("5.10.108", "fixed"), ("4.9.300", "not-applicable"), ("4.14.274", "fixed")],
    );
}

/// GameOver(lay): Ubuntu kernels only; their package version decides, every other kernel
/// is not applicable.
#[test]
fn ubuntu_only_overlayfs() {
    let set = RuleSet::embedded().unwrap();
    let ubuntu = |release: &str, sig: &str| {
        identify(&KernelInput { release: release.into(), signature: Some(sig.into()), ..Default::default() }).unwrap()
    };
    for cve in ["CVE-2023-2640", "CVE-2023-32629"] {
        let r = rule(&set, cve);
        let lunar_old = ubuntu("6.2.0-25-generic", "Ubuntu 6.2.0-25.25-generic 6.2.12");
        assert!(matches!(judge(&r, &lunar_old), VersionVerdict::Vulnerable(_)), "{cve}");
        let lunar_new = ubuntu("6.2.0-26-generic", "Ubuntu 6.2.0-26.26-generic 6.2.13");
        assert!(matches!(judge(&r, &lunar_new), VersionVerdict::Fixed(_)), "{cve}");
        let focal = ubuntu("5.4.0-150-generic", "Ubuntu 5.4.0-150.167-generic 5.4.233");
        assert!(matches!(judge(&r, &focal), VersionVerdict::Vulnerable(_)), "{cve}");
        let jammy = ubuntu("5.15.0-76-generic", "Ubuntu 5.15.0-76.83-generic 5.15.99");
        assert!(matches!(judge(&r, &jammy), VersionVerdict::Unknown(_)), "{cve}: no jammy entry");
        assert_eq!(status(&r, "6.2.10"), "not-applicable", "{cve}");
    }
}

#[test]
fn backported_bug_starts_late_in_its_series() {
    let mut r = rule(&RuleSet::embedded().unwrap(), "CVE-2022-0847");
    r.introduced_stable = vec!["5.10.50".into()];
    assert_eq!(status(&r, "5.10.49"), "not-applicable");
    assert_eq!(status(&r, "5.10.50"), "vulnerable");
    assert_eq!(status(&r, "5.10.102"), "fixed");
    r.vendors = vec!["nobody".into()];
    assert!(r.validate().is_err());
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
