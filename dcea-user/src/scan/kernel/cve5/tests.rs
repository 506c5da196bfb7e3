use std::{io::Write, path::PathBuf};

use super::*;
use crate::scan::kernel::{
    rules::{RuleSet, VersionVerdict, judge},
    version::{KernelInput, identify},
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/cve5")
}

fn verdict(rule: &KernelRule, release: &str) -> &'static str {
    let k = identify(&KernelInput { release: release.into(), ..Default::default() }).unwrap();
    match judge(rule, &k) {
        VersionVerdict::Vulnerable(_) => "vulnerable",
        VersionVerdict::Fixed(_) => "fixed",
        VersionVerdict::NotApplicable(_) => "not-applicable",
        VersionVerdict::Unknown(_) => "unknown",
    }
}

fn find<'a>(rules: &'a [KernelRule], cve: &str) -> &'a KernelRule {
    rules.iter().find(|r| r.cve == cve).unwrap_or_else(|| panic!("{cve} not imported: {rules:#?}"))
}

#[test]
fn kernel_cna_record_per_branch_versions() {
    let bytes = std::fs::read(fixtures().join("cves/2025/21xxx/CVE-2025-21700.json")).unwrap();
    let Parsed::Kernel(r) = parse_record(&bytes).unwrap() else { panic!("not a kernel record") };
    assert_eq!(r.cve, "CVE-2025-21700");
    assert_eq!(r.introduced, Some(KernelVersion::new(2, 6, 12)));
    assert_eq!(r.fixed_mainline, Some(KernelVersion::new(6, 14, 0)));
    let stable: Vec<String> = r.fixed_stable.iter().map(|v| v.to_string()).collect();
    assert_eq!(stable, ["5.4.291", "5.10.235", "5.15.179", "6.1.129", "6.6.76", "6.12.13", "6.13.2"]);
    assert!(r.stable_complete, "defaultStatus affected");
    assert_eq!(r.severity, Some(Severity::High), "from the CISA ADP metrics");
    assert_eq!(r.cwes, ["CWE-416"]);
    assert_eq!(r.summary, "net: sched: Disallow replacing of child qdisc from one parent to another");
    assert_eq!(r.program_files, ["net/sched/sch_api.c"]);
}

#[test]
fn import_fixture_directory() {
    let set = RuleSet::embedded().unwrap();
    let known: Vec<&str> = set.kernel.iter().map(|r| r.cve.as_str()).collect();
    let import = load(&fixtures(), false, &known).unwrap();
    let s = &import.stats;
    assert_eq!(s.files, 9, "{s:?}");
    assert_eq!(s.kernel_records, 4, "{s:?}");
    assert_eq!((s.imported, s.not_escape_relevant), (3, 1), "{s:?}");
    // Truncated JSON and a bad version; the rejected id, the other product and delta.json
    // are not errors.
    assert_eq!(s.errors, 2, "{:?}", import.errors);
    assert!(import.errors.iter().any(|e| e.contains("CVE-2024-99991.json") && e.contains("not CVE JSON 5")));
    assert!(import.errors.iter().any(|e| e.contains("CVE-2024-99992.json") && e.contains("\"5.x\"")));

    let sched = find(&import.rules, "CVE-2025-21700");
    for (v, want) in [
        ("2.6.11", "not-applicable"),
        ("5.4.290", "vulnerable"),
        ("5.4.291", "fixed"),
        ("6.6.75", "vulnerable"),
        ("6.6.76", "fixed"),
        ("6.7.12", "vulnerable"), // not listed, defaultStatus affected: ended without a fix
        ("6.13.1", "vulnerable"),
        ("6.13.2", "fixed"),
        ("6.14.0-rc1", "vulnerable"),
        ("6.14.0", "fixed"),
    ] {
        assert_eq!(verdict(sched, v), want, "CVE-2025-21700 at {v}");
    }
    assert!(sched.escape.contains("net/sched"), "{}", sched.escape);
    assert!(sched.source.contains("CVE-2025-21700.json"), "{}", sched.source);

    // The early layout: custom versions, an -rc mainline fix, no introduced version.
    let rbtree = find(&import.rules, "CVE-2024-26581");
    for (v, want) in
        [("6.1.77", "vulnerable"), ("6.1.78", "fixed"), ("6.8.0-rc3", "vulnerable"), ("6.8.0-rc4", "fixed")]
    {
        assert_eq!(verdict(rbtree, v), want, "CVE-2024-26581 at {v}");
    }
    assert!(rbtree.prerequisites.contains(&crate::scan::kernel::rules::Prerequisite::UnprivilegedUserns));

    // Google's 1086 record has one range and no stable data.
    let nft = find(&import.rules, "CVE-2024-1086");
    assert_eq!((nft.introduced.as_str(), nft.fixed_mainline.as_str()), ("3.15.0", "6.8.0"));
    assert!(nft.fixed_stable.is_empty() && !nft.stable_complete);
}

#[test]
fn all_imports_every_kernel_cve() {
    let import = load(&fixtures(), true, &[]).unwrap();
    assert_eq!(import.stats.imported, 4, "{:?}", import.stats);
    let drm = find(&import.rules, "CVE-2024-47000");
    assert!(drm.escape.contains("not judged escape-relevant"), "{}", drm.escape);
    assert_eq!(verdict(drm, "6.6.53"), "vulnerable");
    assert_eq!(verdict(drm, "6.1.100"), "not-applicable");
}

/// The record adds to the rules' data and never loses the finer mainline `-rc` fix.
#[test]
fn merge_keeps_rules_text_and_adds_versions() {
    let mut rules = RuleSet::embedded().unwrap().kernel;
    let before = rules.len();
    let known: Vec<String> = rules.iter().map(|r| r.cve.clone()).collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let import = load(&fixtures(), false, &known).unwrap();
    let merged = merge(&mut rules, import.rules);
    assert_eq!(merged, 1);
    assert_eq!(rules.len(), before + 2);
    let nft = find(&rules, "CVE-2024-1086");
    assert_eq!(nft.fixed_mainline, "6.8-rc2");
    assert!(nft.stable_complete && nft.fixed_stable.contains(&"6.6.15".to_string()));
    assert!(!nft.prerequisites.is_empty() && nft.name.contains("Flipping Pages"));
    assert_eq!(verdict(nft, "6.6.14"), "vulnerable");
    assert_eq!(verdict(nft, "6.6.15"), "fixed");

    // A record's stable fix replaces the rules' one for the same series.
    let mut rules = RuleSet::embedded().unwrap().kernel;
    let mut newer = find(&rules, "CVE-2022-0847").clone();
    newer.fixed_stable = vec!["5.10.103".into()];
    newer.source = "CVE JSON 5 record x.json".into();
    merge(&mut rules, vec![newer]);
    let dp = find(&rules, "CVE-2022-0847");
    assert!(dp.fixed_stable.contains(&"5.10.103".to_string()) && !dp.fixed_stable.contains(&"5.10.102".to_string()));
    assert!(dp.fixed_stable.contains(&"5.15.25".to_string()));
}

#[test]
fn zip_of_cvelist_with_inner_zip() {
    let dir = tempfile::tempdir().unwrap();
    let opts = zip::write::SimpleFileOptions::default();
    let mut inner = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for rel in ["cves/2025/21xxx/CVE-2025-21700.json", "cves/2024/26xxx/CVE-2024-26581.json", "bad/CVE-2024-99991.json"]
    {
        inner.start_file(format!("cvelistV5-main/{rel}"), opts).unwrap();
        inner.write_all(&std::fs::read(fixtures().join(rel)).unwrap()).unwrap();
    }
    let inner = inner.finish().unwrap().into_inner();
    let outer_path = dir.path().join("all_CVEs_at_midnight.zip.zip");
    let mut outer = zip::ZipWriter::new(std::fs::File::create(&outer_path).unwrap());
    outer.start_file("cves.zip", opts).unwrap();
    outer.write_all(&inner).unwrap();
    outer.start_file("README.txt", opts).unwrap();
    outer.write_all(b"not json").unwrap();
    outer.finish().unwrap();

    let import = load(&outer_path, false, &[]).unwrap();
    assert_eq!((import.stats.imported, import.stats.errors), (2, 1), "{:?} {:?}", import.stats, import.errors);
    assert!(import.errors[0].contains("cves.zip:cvelistV5-main/bad/CVE-2024-99991.json"), "{:?}", import.errors);

    // Not a zip, not a directory: one clear error, nothing imported.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"PK\x03\x04 truncated").unwrap();
    let e = load(&junk, false, &[]).unwrap_err().to_string();
    assert!(e.contains("junk.zip") && e.contains("neither a directory nor a zip"), "{e}");
    assert!(load(&dir.path().join("missing"), false, &[]).is_err());
}

#[test]
fn hostile_records_are_errors_not_panics() {
    for text in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"dataType\": \"CVE_RECORD\"}",
        b"{\"dataType\": \"CVE_RECORD\", \"cveMetadata\": {\"cveId\": 7}}",
        b"{\"dataType\": \"CVE_RECORD\", \"cveMetadata\": {\"cveId\": \"CVE-1\", \"state\": \"PUBLISHED\"}, \"containers\": {\"cna\": {\"affected\": [{\"vendor\": \"Linux\", \"product\": \"Linux\", \"versions\": [{\"version\": \"6.1\", \"lessThan\": \"0\", \"status\": \"affected\"}]}]}}}",
        b"{\"dataType\": \"CVE_RECORD\", \"cveMetadata\": {\"cveId\": \"CVE-1\", \"state\": \"PUBLISHED\"}, \"containers\": {\"cna\": {\"affected\": [{\"vendor\": \"Linux\", \"product\": \"Linux\", \"versions\": [{\"version\": \"6.1.5\", \"lessThanOrEqual\": \"5.10.*\", \"status\": \"unaffected\"}]}]}}}",
        b"{\"dataType\": \"CVE_RECORD\", \"cveMetadata\": {\"cveId\": \"CVE-1\", \"state\": \"PUBLISHED\"}, \"containers\": {\"cna\": {\"affected\": [{\"vendor\": \"Linux\", \"product\": \"Linux\", \"versions\": [{\"version\": \"abc\", \"lessThan\": \"def\", \"status\": \"affected\", \"versionType\": \"git\"}]}]}}}",
    ] {
        assert!(parse_record(text).is_err(), "{}", String::from_utf8_lossy(text));
    }
}
