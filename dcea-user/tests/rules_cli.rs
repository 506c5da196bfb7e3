//! `dcea rules validate|list|fields` through the real binary (no privileges needed).

use std::{path::Path, process::Command};

fn dcea(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dcea")).args(args).env("DCEA_LOG", "warn").output().expect("run dcea");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn validate_reports_positions_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yaml",
        "- rule: Netcat in a container\n  desc: d\n  condition: spawned_process and container and proc.name = nc\n  output: nc %proc.cmdline\n  priority: warning\n",
    );
    let (code, out, err) = dcea(&["rules", "validate", &good]);
    assert_eq!(code, 0, "{err}");
    // The defaults plus the file's one.
    let n = dcea_user::rules::names::ALL.len() + 1;
    assert!(out.starts_with(&format!("ok: {n} rules ({n} enabled)")), "{out}");

    let bad = write(
        dir.path(),
        "bad.yaml",
        "- rule: r\n  desc: d\n  condition: evt.type = execve and (proc.name = a\n  output: o\n  priority: INFO\n- list: l\n  items: [a]\n  append: true\n",
    );
    let (code, _, err) = dcea(&["rules", "validate", &good, &bad]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("error: {bad}:3:36: rule `r`: unbalanced parentheses")), "{err}");
    assert!(err.contains(&format!("error: {bad}:6:9: list `l` is appended to")), "{err}");
    assert!(err.contains("invalid: 2 error(s)"), "{err}");

    // The defaults are what a local file builds on: without them its macros are undefined.
    let (code, _, err) = dcea(&["rules", "validate", "--no-default-rules", &good]);
    assert_eq!(code, 1);
    assert!(err.contains("undefined macro `spawned_process`"), "{err}");

    let missing = dir.path().join("missing.yaml").display().to_string();
    let (code, _, err) = dcea(&["rules", "validate", &missing]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{missing}: cannot read")), "{err}");
}

#[test]
fn list_shows_the_loaded_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = dcea(&["rules", "list", "--rules-dir", &dir.path().display().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("RULE "), "{out}");
    for name in dcea_user::rules::names::ALL {
        assert!(out.contains(name), "{name} missing from\n{out}");
    }
    write(
        dir.path(),
        "10-local.yaml",
        "- rule: Shell spawned in a container\n  enabled: false\n  override:\n    enabled: replace\n",
    );
    let (code, out, err) =
        dcea(&["rules", "list", "--format", "json", "--rules-dir", &dir.path().display().to_string()]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), dcea_user::rules::names::ALL.len());
    let shell = rows.iter().find(|r| r["name"] == "Shell spawned in a container").unwrap();
    assert_eq!(shell["enabled"], false);
    assert_eq!(shell["priority"], "Notice");
    assert_eq!(shell["source"], "<builtin>/dcea_rules.yaml");
    assert!(shell["tags"].as_array().unwrap().iter().any(|t| t == "T1059.004"));
    assert_eq!(shell["event_types"], serde_json::json!(["execve"]));

    let (code, out, _) =
        dcea(&["rules", "list", "--format", "json", "--no-default-rules", "--rules-dir", "/nonexistent/dcea"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");

    write(dir.path(), "20-broken.yaml", "- macro: x\n  condition: (\n");
    let (code, _, err) = dcea(&["rules", "list", "--rules-dir", &dir.path().display().to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("20-broken.yaml:2:14: macro `x`"), "{err}");
}

#[test]
fn fields_and_monitor_flags() {
    let (code, out, _) = dcea(&["rules", "fields"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("proc.aname ")), "{out}");
    assert!(out.contains("dcea.ns.<kind>.is_host"));
    let (_, out, _) = dcea(&["monitor", "--help"]);
    assert!(out.contains("--rules-dir <DIR>") && out.contains("--no-default-rules"), "{out}");
}
