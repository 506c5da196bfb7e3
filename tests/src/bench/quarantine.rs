//! The network-quarantine row of `cargo xtask bench`: TCP throughput of a bystander container
//! (over a veth into a namespace of the benchmark's) while the quarantine programs are attached
//! to another container's cgroup, against no quarantine at all. cgroup programs run only for
//! the sockets of their cgroup (and its descendants), so the target is no measurable cost.

use std::process::Command;

use crate::{dcea_bin, docker, netns::Wire};

const PORT: &str = "7914";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// MB/s of one `tcp-send` of `bytes` from `c` to the wire's sink.
fn send_mbps(c: &docker::Container, wire: &Wire, bytes: u64) -> Option<f64> {
    let out = Command::new("docker")
        .args(["exec", &c.id, "/dcea-test-helper", "tcp-send", &wire.host_ip, PORT, &bytes.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text.split_whitespace().find_map(|w| w.strip_prefix("secs="))?.parse().ok()?;
    Some(bytes as f64 / secs / 1e6)
}

fn quarantine(state: &std::path::Path, args: &[&str]) -> bool {
    Command::new(dcea_bin())
        .arg("quarantine")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Per round: (not attached, attached) MB/s, measured back to back, `bytes` per run.
pub fn bystander_rounds(rounds: u32, bytes: u64) -> Option<Vec<(f64, f64)>> {
    let mounts = docker::helper_mounts();
    let args: Vec<&str> = mounts.iter().map(String::as_str).collect();
    let bystander = docker::Container::run_named("dcea-bench-bystander", &args, &["sleep", "600"]);
    let victim = docker::Container::run_named("dcea-bench-quarantined", &[], &["sleep", "600"]);
    let mut wire = Wire::connect(bystander.pid(), 3);
    wire.listen(&["tcp-sink", &wire.host_ip.clone(), PORT], true);
    let state = tempfile::tempdir().ok()?;
    // Warm-up: the first run pays for page faults and the veth's first packets.
    send_mbps(&bystander, &wire, bytes / 4)?;
    let mut out = Vec::new();
    for round in 0..rounds {
        // ABBA: every other round measures attached first, so drift on a shared machine
        // (another build, thermal state) falls on both sides alike.
        let attached_first = round % 2 == 1;
        let mut off = None;
        if !attached_first {
            off = Some(send_mbps(&bystander, &wire, bytes)?);
        }
        if !quarantine(state.path(), &[&victim.id, "--reason", "bench"]) {
            eprintln!("bench: quarantine of the other container failed");
            return None;
        }
        let on = send_mbps(&bystander, &wire, bytes);
        quarantine(state.path(), &["release", &victim.id]);
        if attached_first {
            off = Some(send_mbps(&bystander, &wire, bytes)?);
        }
        out.push((off?, on?));
    }
    Some(out)
}

/// The finished markdown row.
pub fn bystander_row(rounds: u32, bytes: u64) -> String {
    let what = format!(
        "TCP stream of a bystander container, quarantine on another container vs none ({} MiB × {rounds} rounds)",
        bytes >> 20
    );
    if !docker::available("bench: quarantine bystander") {
        return format!("| {what} | SKIP: no Docker engine with {} | — |", docker::IMAGE);
    }
    match bystander_rounds(rounds, bytes) {
        Some(r) => {
            eprintln!("bench: quarantine bystander rounds (none, attached) MB/s: {r:?}");
            let off = median(r.iter().map(|x| x.0).collect());
            let on = median(r.iter().map(|x| x.1).collect());
            format!(
                "| {what} | median {off:.0} MB/s without, {on:.0} MB/s with: {:+.1}% | no measurable cost |",
                (on - off) / off * 100.0
            )
        }
        None => format!("| {what} | FAILED (see stderr) | no measurable cost |"),
    }
}
