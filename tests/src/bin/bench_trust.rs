//! Benchmark: one trust pass over 10,000 container processes (target ≤ 200 ms on one core,
//! ≤ 50 MB), and the re-check of one pid (target ≤ 1 ms).
//!
//! Starts C containers (default 5) of P sleeping processes each (default 2,000), pins itself to
//! one CPU, times the checker in-process (first pass = baseline of everything; then steady
//! passes: as run, reading every process as if all were busy, and without held /proc
//! handles; then re-checks of 1,000 pids), runs the real
//! agent (`dcea monitor --mode poll`) over the same processes for its peak RSS and slowest
//! pass, prints the numbers and removes every container it started (their processes with
//! them). Build with --release for numbers worth reporting:
//!
//!     cargo run --release -p dcea-tests --bin bench_trust -- [CONTAINERS] [PER_CONTAINER]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dcea_tests::docker::{self, Container};
use dcea_user::{
    container::metadata::MetadataCache,
    monitor::alert::AlertContext,
    trust::{HostNamespaces, TrustChecker},
};

fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds of `n` passes.
fn timed_passes(checker: &mut TrustChecker, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            checker.pass();
            ms(t.elapsed())
        })
        .collect()
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (containers, per) = (args.first().copied().unwrap_or(5), args.get(1).copied().unwrap_or(2000));
    let total = containers * per;
    if !dcea_tests::require_root("bench_trust") || !docker::available("bench_trust") {
        std::process::exit(2);
    }
    eprintln!("bench_trust: starting {containers} containers x {per} sleeping processes");
    let spawn = format!("i=0; while [ $i -lt {per} ]; do sleep 100000 & i=$((i+1)); done; wait");
    let fleet: Vec<Container> =
        (0..containers).map(|_| Container::run_named("dcea-bench-trust", &[], &["sh", "-c", &spawn])).collect();

    let host = HostNamespaces::detect(None).expect("host reference");
    let ctx = AlertContext::new(host, MetadataCache::disabled());
    let mut checker = TrustChecker::new(ctx.clone(), false);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let alerts = checker.pass();
        assert!(alerts.is_empty(), "sleeping processes are not escapes: {alerts:?}");
        if checker.last.container_processes >= total + containers {
            break;
        }
        assert!(Instant::now() < deadline, "only {} container processes after 300 s", checker.last.container_processes);
        std::thread::sleep(Duration::from_millis(500));
    }
    let procs = checker.last.container_processes;
    eprintln!("bench_trust: {procs} container processes of {} running", checker.last.processes);
    // Its /proc handles count against the same descriptor limit as the measured checkers'.
    drop(checker);

    pin_to_one_cpu();
    let rss_before = status_kb("self", "VmRSS:");
    let mut fresh = TrustChecker::new(ctx.clone(), false);
    let t = Instant::now();
    fresh.pass();
    let first = t.elapsed();
    let steady = timed_passes(&mut fresh, 10);
    let rss_checker = status_kb("self", "VmRSS:").saturating_sub(rss_before);

    // The same passes reading every process's namespaces whether it ran or not: the cost
    // when every process is busy.
    fresh.set_skip_idle(false);
    let every = timed_passes(&mut fresh, 5);
    fresh.set_skip_idle(true);

    let mut unheld = TrustChecker::new(ctx, false);
    unheld.set_handle_limit(0);
    unheld.pass();
    let unheld_steady = timed_passes(&mut unheld, 3);

    // Re-check: 1,000 container pids (the sleeps, children of each container's init).
    let mut pids = Vec::new();
    for c in &fleet {
        let init = c.pid();
        let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).take(1000 / containers));
    }
    let mut per_pid: Vec<f64> = pids
        .iter()
        .map(|&p| {
            let t = Instant::now();
            assert!(fresh.recheck(p).is_empty());
            ms(t.elapsed())
        })
        .collect();
    let recheck_median = median(per_pid.clone());
    per_pid.sort_by(|a, b| a.total_cmp(b));
    let recheck_p99 = per_pid[(per_pid.len() * 99 / 100).min(per_pid.len() - 1)];
    // A whole container's tree at once: its init and every sleeping child.
    let t = Instant::now();
    fresh.recheck(fleet[0].pid());
    let tree = t.elapsed();

    // The real agent over the same processes.
    let state = tempfile::tempdir().unwrap();
    let mut agent = Command::new(dcea_tests::dcea_bin())
        .args(["monitor", "--mode", "poll", "--interval", "1s", "--state-dir"])
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dcea");
    let agent_pid = agent.id().to_string();
    let mut stderr = BufReader::new(agent.stderr.take().unwrap());
    let mut line = String::new();
    let mut ready = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        if line.contains("dcea: ready") {
            ready = line.trim().to_string();
            break;
        }
        line.clear();
    }
    std::thread::sleep(Duration::from_secs(8));
    let agent_hwm = status_kb(&agent_pid, "VmHWM:");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGINT) };
    let mut summary = String::new();
    for l in stderr.lines().map_while(Result::ok) {
        summary = l;
    }
    let _ = agent.wait();
    let db_size = std::fs::metadata(state.path().join("trust.json")).map(|m| m.len()).unwrap_or(0);
    drop(fleet);

    println!("trust pass over {procs} container processes ({containers} containers), one core:");
    println!("  first pass (baseline of everything):   {:8.1} ms", ms(first));
    println!(
        "  steady pass, median of 10:             {:8.1} ms (max {:.1})",
        median(steady.clone()),
        steady.iter().cloned().fold(0.0, f64::max)
    );
    println!("  steady pass reading every process:     {:8.1} ms (median of 5; all busy)", median(every));
    println!("  steady pass without held handles:      {:8.1} ms (median of 3)", median(unheld_steady));
    println!("  checker memory (RSS growth):           {:8.1} MB", rss_checker as f64 / 1024.0);
    println!(
        "  re-check of one pid, median / p99:     {:8.3} / {:.3} ms ({} pids)",
        recheck_median,
        recheck_p99,
        per_pid.len()
    );
    println!("  re-check of a {}-process tree:       {:8.1} ms", per + 1, ms(tree));
    println!("agent (dcea monitor --mode poll --interval 1s, 8 s):");
    println!("  peak RSS (VmHWM):                      {:8.1} MB", agent_hwm as f64 / 1024.0);
    println!("  trust.json:                            {:8.1} MB", db_size as f64 / 1e6);
    println!("  {ready}");
    println!("  {summary}");
}
