//! The agent's start-up behaviour as an operator meets it.

use std::process::Command;

use dcea_tests::{dcea_bin, require_root};

#[test]
fn probe_reports_every_program_and_the_commit_creds_fallback() {
    if !require_root("probe_reports_every_program") {
        return;
    }
    // --enforce: the LSM programs load too, and every guard says how it acts on this kernel.
    let out =
        Command::new(dcea_bin()).args(["probe", "--enforce", "--format", "json"]).output().expect("run dcea probe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let programs = report["programs"].as_array().expect("programs");
    for spec in dcea_common::programs::all() {
        let p = programs.iter().find(|p| p["name"] == spec.name).unwrap_or_else(|| panic!("{} missing", spec.name));
        if spec.required {
            assert_eq!(p["status"], "attached", "{}", spec.name);
        }
    }
    let status = |name: &str| programs.iter().find(|p| p["name"] == name).map(|p| p["status"].clone());
    for guard in dcea_common::Guard::ALL {
        let g = report["guards"].as_array().expect("guards").iter().find(|g| g["guard"] == guard.name());
        let g = g.unwrap_or_else(|| panic!("{} missing from guards", guard.name()));
        let mechanism = g["mechanism"].as_str().unwrap_or_default();
        let lsm = guard.lsm_programs().iter().any(|p| status(p).is_some_and(|s| s == "attached"));
        let acting = g["action"] != "alert";
        assert_eq!(mechanism.starts_with("deny (BPF LSM"), lsm && acting, "{}: {mechanism}", guard.name());
    }
    let commit_creds = report["commit_creds"].as_str().unwrap();
    assert!(["fentry", "kprobe", "unavailable"].contains(&commit_creds));
    if commit_creds == "unavailable" {
        // Said once, with the reason, on stderr.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches("commit_creds hook unavailable").count(), 1, "{stderr}");
    }
    assert_eq!(report["host_namespaces"]["ns"][1], 0xEFFF_FFFCu32);
    let features = report["features"].as_array().expect("features");
    let feature = |name: &str| features.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name}"));
    let integrity = if commit_creds == "unavailable" { "partial" } else { "on" };
    assert_eq!(feature("credential integrity")["status"], integrity);
    assert_eq!(feature("namespace transitions")["status"], "on");

    // The kernel matrix (cargo xtask vm-test) states what must load on each kernel.
    if let Ok(expect) = std::env::var("DCEA_EXPECT_PROGRAMS") {
        for pair in expect.split(',').filter(|p| !p.is_empty()) {
            let (name, status) = pair.split_once('=').unwrap_or_else(|| panic!("DCEA_EXPECT_PROGRAMS entry {pair}"));
            let p = programs.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(p["status"], status, "{name}: {p}");
        }
    }
    if let Ok(expect) = std::env::var("DCEA_EXPECT_COMMIT_CREDS") {
        assert_eq!(commit_creds, expect, "commit_creds hook on this kernel");
    }
    if let Ok(expect) = std::env::var("DCEA_EXPECT_FEATURES") {
        for pair in expect.split(',').filter(|p| !p.is_empty()) {
            let (name, status) = pair.split_once('=').unwrap_or_else(|| panic!("DCEA_EXPECT_FEATURES entry {pair}"));
            assert_eq!(feature(name)["status"], status, "feature {name}");
        }
    }
}

#[test]
fn not_root_is_a_clear_error() {
    if !require_root("not_root_is_a_clear_error") {
        return;
    }
    // Drop to nobody for this one run.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(dcea_bin())
        .arg("monitor")
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout carries alerts only");
}

#[test]
fn missing_btf_is_a_clear_error() {
    if !require_root("missing_btf_is_a_clear_error") {
        return;
    }
    // --mode ebpf: the default (auto) polls instead, loudly (tests/trust.rs checks that).
    let out = Command::new(dcea_bin())
        .args(["monitor", "--mode", "ebpf", "--btf", "/nonexistent/vmlinux", "--state-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BTF") && stderr.contains("CONFIG_DEBUG_INFO_BTF"), "{stderr}");
}
