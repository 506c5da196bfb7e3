//! The allowlist rows of `cargo xtask bench` (`DCEA_BENCH_ONLY=allowlist`): what the kernel's
//! allowlist check adds to fork+exec+wait, in a container whose workload is in enforce mode and
//! for a host task (which leaves the exec program before the check), against the same agent
//! with the allowlist off.

use std::{path::Path, process::Command, time::Duration};

use crate::{Monitor, bench::loops::fork_exec_us, dcea_bin, docker};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// µs per fork+exec+wait of the image's /bin/true in container `name` (always the same name:
/// one workload), run by the helper with the host's libraries mounted.
fn container_exec_us(name: &str, count: u64) -> Option<f64> {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--name", name, "--network", "none"]);
    for lib in ["/usr", "/lib", "/lib64"] {
        cmd.arg("-v").arg(format!("{lib}:{lib}:ro"));
    }
    cmd.arg("-v").arg(format!("{}:/dcea-test-helper:ro", crate::helper_bin().display()));
    let out = cmd
        .arg(docker::IMAGE)
        .args(["/dcea-test-helper", "exec-loop", "/bin/true", &count.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text.split_whitespace().find_map(|w| w.strip_prefix("secs="))?.parse().ok()?;
    Some(secs * 1e6 / count as f64)
}

fn dcea(state: &Path, args: &[&str]) -> String {
    let out = Command::new(dcea_bin()).args(args).arg("--state-dir").arg(state).output().expect("dcea");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows: container exec (allowlist off vs enforce), host exec (allowlist off vs a
/// container enforced beside it).
pub fn rows(rounds: u32, count: u64) -> Vec<String> {
    if !docker::available("bench allowlist") {
        return vec![format!("| allowlist exec check | SKIP: no Docker engine with {} | — |", docker::IMAGE)];
    }
    let state = tempfile::tempdir().expect("state dir");
    let st = state.path().to_str().expect("utf-8").to_string();
    let name = docker::unique_name("dcea-bench-allow");
    // Learn the workload (the helper and /bin/true), then enforce it.
    {
        let _m = Monitor::start(&["--allowlist-learn", "until-promoted", "--state-dir", &st]);
        container_exec_us(&name, 20);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let list: serde_json::Value =
        serde_json::from_str(&dcea(state.path(), &["profile", "list", "--format", "json"])).unwrap_or_default();
    let Some(profile) = list.as_array().and_then(|a| a.iter().find_map(|p| p["name"].as_str().map(str::to_string)))
    else {
        return vec!["| allowlist exec check | SKIP: the workload learned no profile | — |".into()];
    };
    dcea(state.path(), &["profile", "promote", &profile, "--to", "enforce"]);
    let (mut c_off, mut c_on, mut h_off, mut h_on) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut enforced_rounds = 0;
    for _ in 0..rounds {
        {
            let _m = Monitor::start(&["--allowlist", "off", "--state-dir", &st]);
            c_off.extend(container_exec_us(&name, count));
            h_off.push(fork_exec_us(count as u32));
        }
        {
            let m = Monitor::start(&["--state-dir", &st]);
            c_on.extend(container_exec_us(&name, count));
            h_on.push(fork_exec_us(count as u32));
            let said = m.stop();
            if said.iter().any(|l| l.contains(&format!("enforced in the kernel by profile {profile}"))) {
                enforced_rounds += 1;
            }
        }
    }
    let (co, cn, ho, hn) = (median(c_off), median(c_on), median(h_off), median(h_on));
    vec![
        format!(
            "| allowlist: fork+exec+wait of /bin/true in a container in enforce mode, {count} × {rounds} rounds | {cn:.0} µs vs {co:.0} µs with the allowlist off ({:+.1} %) | within noise |",
            (cn / co - 1.0) * 100.0
        ),
        format!(
            "| allowlist: fork+exec+wait of /bin/true on the host, enforce profiles loaded, {count} × {rounds} | {hn:.0} µs vs {ho:.0} µs ({:+.1} %) | within noise |",
            (hn / ho - 1.0) * 100.0
        ),
        format!("| allowlist: rounds whose container the kernel enforced | {enforced_rounds} of {rounds} | all |"),
    ]
}
