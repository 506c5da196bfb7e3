//! Alert delivery throughput: rule-hit alerts per second through the full delivery path
//! (storm control, the sink queue, a file sink's thread), with CPU and RSS.
//!
//! 1. Synthetic, in process: N Falco-shaped alerts submitted to `Delivery` with one file
//!    sink; storm control off (every alert written) and on (one key: folded).
//! 2. Real (root + Docker): a container opens /etc/shadow in a tight loop (the credential
//!    rule fires on every open) while `dcea monitor --output file:…` runs; the agent's
//!    alerts/s, CPU and peak RSS from /proc, and what the kernel lost.

use std::time::{Duration, Instant};

use dcea_user::{
    metrics::Metrics,
    output::{Alert, Priority, SOURCE, rfc3339_nanos},
    sinks::{Delivery, DeliveryOptions, OutputSpec, StormOptions},
};
use serde_json::json;

fn cpu_seconds_self() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn status_kb(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0)))
        .unwrap_or(0)
}

fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn hit(i: u64) -> Alert {
    let mut f = std::collections::BTreeMap::new();
    f.insert("container.id".into(), json!("3f4e5d6c7b8a"));
    f.insert("proc.exepath".into(), json!("/bin/cat"));
    f.insert("proc.pid".into(), json!(4000 + i % 1000));
    f.insert("fd.name".into(), json!("/etc/shadow"));
    Alert {
        time: rfc3339_nanos(1_700_000_000_000_000_000 + i),
        rule: "Credential file opened in a container".into(),
        priority: Priority::Warning,
        output: format!("Credential file opened in a container (file=/etc/shadow proc=cat pid={})", 4000 + i % 1000),
        output_fields: f,
        source: SOURCE,
        tags: vec!["container".into(), "credentials".into()],
        hostname: "node-1".into(),
    }
}

fn synthetic(n: u64, storm: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DeliveryOptions {
        outputs: vec![OutputSpec::File(dir.path().join("alerts.json"))],
        state_dir: dir.path().into(),
        queue_len: n as usize + 16,
        storm: if storm {
            StormOptions::default()
        } else {
            StormOptions { window: Duration::ZERO, ..Default::default() }
        },
        ..Default::default()
    };
    let alerts: Vec<Alert> = (0..n).map(hit).collect();
    let mut d = Delivery::start(&opts, Metrics::new()).expect("delivery");
    let cpu0 = cpu_seconds_self();
    let start = Instant::now();
    for a in alerts {
        d.submit(a);
    }
    let submitted = start.elapsed();
    let expect = if storm { 1 } else { n };
    while d.delivered().iter().map(|(_, n)| *n).sum::<u64>() < expect {
        std::thread::sleep(Duration::from_millis(1));
    }
    let all = start.elapsed();
    let cpu = cpu_seconds_self() - cpu0;
    println!(
        "synthetic, storm control {}: {n} alerts submitted at {:.0}/s, {} written to the file sink at {:.0}/s end to end; CPU {:.2} s ({:.1} µs/alert); RSS peak {} MiB",
        if storm { "on (10 s, one key)" } else { "off" },
        n as f64 / submitted.as_secs_f64(),
        expect,
        expect as f64 / all.as_secs_f64(),
        cpu,
        cpu * 1e6 / n as f64,
        status_kb("self", "VmHWM:") / 1024
    );
    d.stop(Duration::from_secs(10));
}

fn container_flood(opens: u64) -> Option<(f64, String)> {
    dcea_tests::docker::helper_open_loop("/etc/shadow", opens)
}

fn real(opens: u64, storm_window: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!("file:{}", dir.path().join("alerts.json").display());
    let state = dir.path().to_str().unwrap().to_string();
    let monitor =
        dcea_tests::Monitor::start(&["--state-dir", &state, "--output", &file, "--storm-window", storm_window]);
    let pid = monitor.pid();
    let cpu0 = cpu_seconds_of(pid);
    let wall = Instant::now();
    let Some((flood_secs, _)) = container_flood(opens) else {
        eprintln!("bench_delivery: the container flood did not run (Docker?)");
        return;
    };
    // Let the agent catch up with what the kernel queued.
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds_of(pid) - cpu0;
    let elapsed = wall.elapsed().as_secs_f64();
    let rss = status_kb(&pid.to_string(), "VmHWM:") / 1024;
    let summary = monitor.stop().into_iter().find(|l| l.contains("dcea: stopping")).unwrap_or_default();
    let num_before = |needle: &str| -> u64 {
        summary.find(needle).and_then(|i| summary[..i].trim_end().rsplit([' ', ',']).next()?.parse().ok()).unwrap_or(0)
    };
    let alerts = num_before(" alerts, ");
    let lost = num_before(" lost (ring buffer full)");
    println!(
        "real, storm window {storm_window}: {opens} opens of /etc/shadow in {flood_secs:.2} s ({:.0}/s) -> {alerts} alerts raised ({:.0}/s over the flood), {lost} kernel records lost; agent CPU {cpu:.2} s over {elapsed:.1} s ({:.0} % of a core), RSS peak {rss} MiB",
        opens as f64 / flood_secs,
        alerts as f64 / flood_secs,
        cpu * 100.0 / elapsed
    );
    println!("  {}", summary.split("delivery: ").nth(1).unwrap_or(""));
}

fn main() {
    let n = std::env::var("DCEA_BENCH_ALERTS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    synthetic(n, false);
    synthetic(n, true);
    if !dcea_user::sys::is_root() {
        eprintln!("bench_delivery: not root: the real flood needs the kernel programs (skipped)");
        return;
    }
    let opens = std::env::var("DCEA_BENCH_OPENS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    real(opens, "0s");
    real(opens, "10s");
}
