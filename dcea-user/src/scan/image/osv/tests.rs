use super::*;

fn pkg(name: &str, source: &str, version: &str, eco: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        source: source.into(),
        source_version: version.into(),
        arch: None,
        manager: "dpkg",
        db: String::new(),
        ecosystem: Some(eco.into()),
        layer: 0,
    }
}

fn db(docs: &[&str]) -> Database {
    let mut db = Database::empty("test".into());
    for d in docs {
        db.add_json(d.as_bytes());
    }
    db
}

/// Shape of osv.dev's Alpine records (ALPINE-CVE-2019-18423), one range per release.
const ALPINE: &str = r#"{"id":"ALPINE-CVE-2019-18423","aliases":["CVE-2019-18423"],
 "affected":[{"package":{"name":"xen","ecosystem":"Alpine:v3.10"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"4.12.1-r1"}]}]}]}"#;

const LAST_AFFECTED: &str = r#"{"id":"TEST-LAST","affected":[{"package":{"name":"sudo","ecosystem":"Debian:12"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"1.9.0-1"},{"last_affected":"1.9.13p3-1"}]}]}]}"#;

const MULTI: &str = r#"{"id":"TEST-MULTI","database_specific":{"severity":"HIGH"},
 "affected":[{"package":{"name":"openssl","ecosystem":"Alpine:v3.19"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.8-r0"}]},
             {"type":"ECOSYSTEM","events":[{"introduced":"3.1.0-r0"},{"fixed":"3.1.4-r1"}]},
             {"type":"GIT","repo":"https://example.invalid/openssl","events":[{"introduced":"abc"}]}]}]}"#;

const LIMIT: &str = r#"{"id":"TEST-LIMIT","affected":[{"package":{"name":"redis","ecosystem":"Debian:12"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"limit":"5:7.0.15-1"}]}]}]}"#;

const WITHDRAWN: &str = r#"{"id":"TEST-WITHDRAWN","withdrawn":"2024-01-01T00:00:00Z",
 "affected":[{"package":{"name":"bash","ecosystem":"Debian:12"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#;

const OTHER: &str = r#"{"id":"GHSA-xxxx","x_vendor_field":1,
 "affected":[{"package":{"name":"left-pad","ecosystem":"npm"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]},
             {"package":{"name":"runc","ecosystem":"Debian:12"},"versions":["1.1.5+ds1-1"]}]}"#;

#[test]
fn alpine_fixed_range_uses_apk_ordering() {
    let d = db(&[ALPINE]);
    let vulnerable = pkg("xen", "xen", "4.12.1-r0", "Alpine:v3.10");
    let m = d.matches(&vulnerable, Scheme::Apk);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].fixed.as_deref(), Some("4.12.1-r1"));
    assert_eq!(m[0].aliases, ["CVE-2019-18423"]);
    assert!(d.matches(&pkg("xen", "xen", "4.12.1-r1", "Alpine:v3.10"), Scheme::Apk).is_empty());
    // A pre-release of the fixed version is still vulnerable; another release is not matched.
    assert_eq!(d.matches(&pkg("xen", "xen", "4.12.1_rc1-r5", "Alpine:v3.10"), Scheme::Apk).len(), 1);
    assert!(d.matches(&vulnerable_in("Alpine:v3.11"), Scheme::Apk).is_empty());
}

fn vulnerable_in(eco: &str) -> Package {
    pkg("xen", "xen", "4.12.1-r0", eco)
}

#[test]
fn last_affected_is_inclusive() {
    let d = db(&[LAST_AFFECTED]);
    let hit = |v: &str| !d.matches(&pkg("sudo", "sudo", v, "Debian:12"), Scheme::Dpkg).is_empty();
    assert!(!hit("1.8.31-1"));
    assert!(hit("1.9.0-1"));
    assert!(hit("1.9.13p3-1"));
    assert!(!hit("1.9.13p3-1+deb12u1"));
    let m = d.matches(&pkg("sudo", "sudo", "1.9.5-1", "Debian:12"), Scheme::Dpkg);
    assert_eq!(m[0].fixed, None, "last_affected names no fix");
}

#[test]
fn multiple_ranges_and_skipped_range_types() {
    let d = db(&[MULTI]);
    let hit = |v: &str| d.matches(&pkg("libcrypto3", "openssl", v, "Alpine:v3.19"), Scheme::Apk);
    assert_eq!(hit("3.0.7-r0")[0].fixed.as_deref(), Some("3.0.8-r0"));
    assert!(hit("3.0.8-r0").is_empty());
    assert_eq!(hit("3.1.4-r0")[0].fixed.as_deref(), Some("3.1.4-r1"));
    assert_eq!(hit("3.1.4-r0")[0].severity, Some(Severity::High));
    assert!(hit("3.1.4-r1").is_empty());
    assert_eq!(d.info.stats.skipped_ranges, 1);
}

#[test]
fn limit_caps_the_range() {
    let d = db(&[LIMIT]);
    let hit = |v: &str| !d.matches(&pkg("redis-server", "redis", v, "Debian:12"), Scheme::Dpkg).is_empty();
    assert!(hit("5:7.0.11-1"));
    assert!(!hit("5:7.0.15-1"));
    assert!(!hit("5:7.2.0-1"));
}

#[test]
fn withdrawn_unknown_ecosystems_and_fields_are_counted_not_fatal() {
    let d = db(&[WITHDRAWN, OTHER, "{ not json", r#"{"no_id": true}"#]);
    assert_eq!(d.info.stats.withdrawn, 1);
    assert_eq!(d.info.stats.skipped_ecosystems.get("npm"), Some(&1));
    assert_eq!(d.info.stats.unknown_fields, 1);
    assert_eq!(d.info.stats.invalid, 2);
    assert!(d.matches(&pkg("bash", "bash", "5.2.15-2", "Debian:12"), Scheme::Dpkg).is_empty());
    // `versions` lists are matched exactly.
    assert_eq!(d.matches(&pkg("runc", "runc", "1.1.5+ds1-1", "Debian:12"), Scheme::Dpkg).len(), 1);
    assert!(d.matches(&pkg("runc", "runc", "1.1.5+ds1-1+deb12u1", "Debian:12"), Scheme::Dpkg).is_empty());
}

#[test]
fn debian_matches_by_source_package_and_version() {
    let d = embedded::load();
    // libc6 from glibc 2.36-9+deb12u13: before the fix of CVE-2026-4438.
    let mut libc = pkg("libc6", "glibc", "2.36-9+deb12u13", "Debian:12");
    let m = d.matches(&libc, Scheme::Dpkg);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].advisory, "DEBIAN-CVE-2026-4438");
    assert_eq!(m[0].fixed.as_deref(), Some("2.36-9+deb12u14"));
    assert_eq!(m[0].severity, Some(Severity::Medium), "from the CVSS vector (5.4)");
    libc.source_version = "2.36-9+deb12u14".into();
    assert!(d.matches(&libc, Scheme::Dpkg).is_empty());
    // Ecosystem "Ubuntu:22.04:LTS" style suffixes match their release prefix only.
    let zip = r#"{"id":"U","affected":[{"package":{"name":"bash","ecosystem":"Ubuntu:22.04:LTS"},
        "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"5.1-6ubuntu1.1"}]}]}]}"#;
    let u = db(&[zip]);
    assert_eq!(u.matches(&pkg("bash", "bash", "5.1-6ubuntu1", "Ubuntu:22.04"), Scheme::Dpkg).len(), 1);
    assert!(u.matches(&pkg("bash", "bash", "5.1-6ubuntu1", "Ubuntu:22.0"), Scheme::Dpkg).is_empty());
}

#[test]
fn zip_and_directory_databases() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/a.json"), ALPINE).unwrap();
    std::fs::write(dir.path().join("b.json"), LIMIT).unwrap();
    std::fs::write(dir.path().join("README"), "ignored").unwrap();
    let d = Database::open(Some(dir.path())).unwrap();
    assert_eq!(d.info.stats.advisories, 2);

    let zpath = dir.path().join("all.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&zpath).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    w.start_file("ALPINE-CVE-2019-18423.json", opts).unwrap();
    std::io::Write::write_all(&mut w, ALPINE.as_bytes()).unwrap();
    w.start_file("bad.json", opts).unwrap();
    std::io::Write::write_all(&mut w, b"{").unwrap();
    w.finish().unwrap();
    let d = Database::open(Some(&zpath)).unwrap();
    assert_eq!(d.info.stats.advisories, 1);
    assert_eq!(d.info.stats.invalid, 1);
    assert!(Database::open(Some(&dir.path().join("missing"))).is_err());
}

/// The embedded advisories, checked against synthetic installed packages one version below
/// the fix (matched) and at the fix (not matched), per release, with the values taken from
/// the DSAs and the Alpine secdb the files restate.
#[test]
fn embedded_advisories_match_below_the_fix_and_not_at_it() {
    let d = embedded::load();
    // ecosystem, binary, source, vulnerable version, fixed version, advisory, CVE
    const CASES: &str = "
        Debian:10    sudo         sudo        1.8.27-1+deb10u2          1.8.27-1+deb10u3          DEBIAN-CVE-2021-3156  CVE-2021-3156
        Debian:11    sudo         sudo        1.9.5p1-1                 1.9.5p1-1.1               DEBIAN-CVE-2021-3156  CVE-2021-3156
        Debian:11    sudo         sudo        1.9.5p2-3                 1.9.5p2-3+deb11u1         DSA-5321-1            CVE-2023-22809
        Debian:11    pkexec       policykit-1 0.105-31                  0.105-31+deb11u1          DSA-5059-1            CVE-2021-4034
        Debian:10    policykit-1  policykit-1 0.105-25                  0.105-25+deb10u1          DSA-5059-1            CVE-2021-4034
        Debian:12    libc6        glibc       2.36-9+deb12u2            2.36-9+deb12u3            DSA-5514-1            CVE-2023-4911
        Debian:11    libc-bin     glibc       2.31-13+deb11u6           2.31-13+deb11u7           DSA-5514-1            CVE-2023-4911
        Debian:12    runc         runc        1.1.5+ds1-1               1.1.5+ds1-1+deb12u1       DSA-5615-1            CVE-2024-21626
        Debian:11    runc         runc        1.0.0~rc93+ds1-5+deb11u2  1.0.0~rc93+ds1-5+deb11u3  DSA-5615-1            CVE-2024-21626
        Debian:11    containerd   containerd  1.4.12~ds1-1~deb11u1      1.4.13~ds1-1~deb11u1      DSA-5091-1            CVE-2022-23648
        Debian:11    redis-server redis       5:6.0.16-1+deb11u1        5:6.0.16-1+deb11u2        DSA-5081-1            CVE-2022-0543
        Debian:11    apache2-bin  apache2     2.4.48-3.1+deb11u1        2.4.51-1~deb11u1          DSA-4982-1            CVE-2021-40438
        Debian:10    nginx-core   nginx       1.14.2-2+deb10u3          1.14.2-2+deb10u4          DSA-4921-1            CVE-2021-23017
        Alpine:v3.11 runc         runc        1.0.0_rc6-r0              1.0.0_rc7                 ALPINE-CVE-2019-5736  CVE-2019-5736
        Alpine:v3.11 sudo         sudo        1.8.27-r0                 1.8.28-r0                 ALPINE-CVE-2019-14287 CVE-2019-14287
        Alpine:v3.15 libcrypto1.1 openssl     1.1.1l-r8                 1.1.1n-r0                 ALPINE-CVE-2022-0778  CVE-2022-0778
    ";
    let cases = CASES.lines().map(str::split_whitespace).map(Iterator::collect::<Vec<_>>).filter(|f| !f.is_empty());
    for case in cases {
        let [eco, bin, src, below, fixed, id, cve] = case[..] else { panic!("bad case {case:?}") };
        let scheme = if eco.starts_with("Alpine") { Scheme::Apk } else { Scheme::Dpkg };
        let hits = d.matches(&pkg(bin, src, below, eco), scheme);
        let m = hits.iter().find(|m| m.advisory == id);
        let m = m.unwrap_or_else(|| panic!("{id}: {src} {below} on {eco} should match, got {hits:?}"));
        assert_eq!(m.fixed.as_deref(), Some(fixed), "{id} on {eco}");
        assert!(m.aliases.iter().any(|a| a == cve), "{id} names {cve}");
        assert_eq!((m.osv_ecosystem.as_str(), m.osv_package.as_str()), (eco, src));
        let at_fix = d.matches(&pkg(bin, src, fixed, eco), scheme);
        assert!(at_fix.iter().all(|m| m.advisory != id), "{id}: {src} {fixed} on {eco} is fixed, got {at_fix:?}");
    }

    // PwnKit and the Debian-specific redis Lua escape carry the DSAs' CVSS vectors.
    let pwnkit = d.matches(&pkg("policykit-1", "policykit-1", "0.105-31", "Debian:11"), Scheme::Dpkg);
    assert_eq!(pwnkit[0].severity, Some(Severity::High), "CVSS 3.0 7.8");
    let redis = d.matches(&pkg("redis-server", "redis", "5:6.0.16-1+deb11u1", "Debian:11"), Scheme::Dpkg);
    assert_eq!(redis.iter().find(|m| m.advisory == "DSA-5081-1").unwrap().severity, Some(Severity::Critical));

    // A version above every listed fix, and releases an advisory does not list, are not matched:
    // DSA-5059-1 has no Debian:12 entry, and ALPINE-CVE-2019-5736 lists only v3.11.
    assert!(d.matches(&pkg("sudo", "sudo", "1.9.13p3-1+deb12u1", "Debian:12"), Scheme::Dpkg).is_empty());
    assert!(d.matches(&pkg("policykit-1", "policykit-1", "0.105-31", "Debian:12"), Scheme::Dpkg).is_empty());
    assert!(d.matches(&pkg("runc", "runc", "1.0.0_rc6-r0", "Alpine:v3.19"), Scheme::Apk).is_empty());
    // Debian matches by source package: the binary name alone does not pull in glibc advisories.
    assert!(d.matches(&pkg("libc6", "libc6", "2.36-9+deb12u2", "Debian:12"), Scheme::Dpkg).is_empty());
}
