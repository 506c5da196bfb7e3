//! Benchmark: `dcea scan config` over N running containers (default 100; target ≤ 1 s).
//!
//! Starts N busybox `sleep` containers (--network none), times the scan in-process and, when
//! the dcea binary exists ($DCEA_BIN or target/debug/dcea), end to end through the binary,
//! prints the numbers and removes every container it started.
//!
//!     cargo run -p dcea-tests --bin bench_scan_config -- [N]

use std::{
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use dcea_tests::docker::{self, IMAGE};
use dcea_user::scan::{
    config::{ConfigScanArgs, scan},
    report::OutputArgs,
};

/// Removes the containers even when the benchmark panics.
struct Fleet(Arc<Mutex<Vec<String>>>);

impl Drop for Fleet {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for chunk in ids.chunks(50) {
            let _ = Command::new("docker").args(["rm", "-f"]).args(chunk).stdout(Stdio::null()).status();
        }
        eprintln!("removed {} containers", ids.len());
    }
}

fn start(n: usize) -> Fleet {
    let ids = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let fleet = Fleet(ids.clone());
    let next = Arc::new(Mutex::new(0usize));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (ids, next) = (ids.clone(), next.clone());
            thread::spawn(move || {
                loop {
                    {
                        let mut i = next.lock().unwrap_or_else(|e| e.into_inner());
                        if *i >= n {
                            return;
                        }
                        *i += 1;
                    }
                    let out = Command::new("docker")
                        .args(["run", "-d", "--network", "none", "--label", "dcea-bench=1", IMAGE, "sleep", "3600"])
                        .output();
                    match out {
                        Ok(o) if o.status.success() => ids
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(String::from_utf8_lossy(&o.stdout).trim().to_string()),
                        Ok(o) => eprintln!("docker run failed: {}", String::from_utf8_lossy(&o.stderr)),
                        Err(e) => eprintln!("docker run: {e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    fleet
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    println!(
        "{name}: runs={} min={:.1} ms median={:.1} ms mean={:.1} ms max={:.1} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        mean,
        ms(samples[samples.len() - 1])
    );
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    if !docker::available("bench_scan_config") {
        std::process::exit(0);
    }
    let t = Instant::now();
    let fleet = start(n);
    let started = fleet.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("started {} containers in {:.1} s", started.len(), t.elapsed().as_secs_f64());
    assert_eq!(started.len(), n, "not every container started");

    let args = ConfigScanArgs {
        containers: Vec::new(),
        self_mode: false,
        docker_socket: "/var/run/docker.sock".into(),
        cri: Default::default(),
        output: OutputArgs { format: None, fail_on: None },
    };
    let mut in_process = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let report = scan(&args).expect("scan");
        in_process.push(t.elapsed());
        let scanned: usize = started.iter().filter(|id| report.findings.iter().any(|f| &f.subject.id == *id)).count();
        assert_eq!(scanned, n, "scan missed containers");
    }
    println!("scanned {n} containers per run");
    stats("in-process scan", in_process);

    let bin = dcea_tests::dcea_bin();
    if bin.exists() {
        let mut end_to_end = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = Command::new(&bin).args(["scan", "config", "--format", "json"]).output().expect("run dcea");
            end_to_end.push(t.elapsed());
            assert!(out.status.success(), "dcea: {}", String::from_utf8_lossy(&out.stderr));
        }
        stats(&format!("{} scan config (end to end, JSON)", bin.display()), end_to_end);
    } else {
        println!("{} not built: end-to-end timing skipped", bin.display());
    }
    drop(fleet);
}
