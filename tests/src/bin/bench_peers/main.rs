//! `cargo xtask bench --peers`: dcea's hot-path cost beside a bpftrace peer doing the same
//! work on the same hooks, and an empty program on those hooks (the floor), in one run.
//!
//! Every round runs each loop under four configurations, in an order that rotates from round
//! to round so drift on a shared machine falls on each of them in turn: no agent, `dcea
//! monitor` (embedded defaults, its stdout read as fast as it writes), the loop's peer
//! (tests/bench/peers/<loop>.bt) and its floor (floor-<loop>.bt). Each configuration's median
//! and range over the rounds, its added cost over no agent, and the ratios dcea ÷ peer and
//! dcea ÷ floor are printed as markdown, with the machine's load average.
//!
//! Settings (environment): DCEA_PEERS_ROUNDS (default 3), DCEA_PEERS_SCALE (multiplies every
//! iteration count; default 1), DCEA_PEERS_LOOPS (comma-separated loop names: open, setns,
//! unshare-setns, fork-exec, connect, container-exec), DCEA_PEERS_DIR (the .bt files;
//! default tests/bench/peers), DCEA_BIN (the dcea binary), DCEA_BPFTRACE.

mod report;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use dcea_tests::{
    Monitor,
    bench::{bpftrace::Bpftrace, loops},
};
use report::{LoopResult, Samples};

#[derive(Clone, Copy, PartialEq)]
enum Loop {
    ContainerOpen,
    Setns,
    UnshareSetns,
    ForkExec,
    ContainerConnect,
    ContainerExec,
}

const LOOPS: [Loop; 6] =
    [Loop::ContainerOpen, Loop::Setns, Loop::UnshareSetns, Loop::ForkExec, Loop::ContainerConnect, Loop::ContainerExec];

impl Loop {
    fn name(self) -> &'static str {
        match self {
            Loop::ContainerOpen => "open",
            Loop::Setns => "setns",
            Loop::UnshareSetns => "unshare-setns",
            Loop::ForkExec => "fork-exec",
            Loop::ContainerConnect => "connect",
            Loop::ContainerExec => "container-exec",
        }
    }

    /// The peer program's stem: both namespace loops share one.
    fn peer(self) -> &'static str {
        match self {
            Loop::UnshareSetns => "setns",
            other => other.name(),
        }
    }

    /// Iterations of one run at scale 1: a second or two each on this machine.
    fn iterations(self) -> u64 {
        match self {
            Loop::ContainerOpen => 300_000,
            Loop::Setns => 200_000,
            Loop::UnshareSetns => 100_000,
            Loop::ForkExec => 2_000,
            Loop::ContainerConnect => 200_000,
            Loop::ContainerExec => 2_000,
        }
    }

    fn needs_docker(self) -> bool {
        matches!(self, Loop::ContainerOpen | Loop::ContainerConnect | Loop::ContainerExec)
    }

    fn title(self, n: u64) -> String {
        let n = thousands(n);
        match self {
            Loop::ContainerOpen => format!("open+close of /etc/hostname in a Docker container, {n} per run"),
            Loop::Setns => format!("setns(own UTS namespace) on the host, {n} per run"),
            Loop::UnshareSetns => format!("unshare(CLONE_NEWUTS) + setns(back) on the host, {n} pairs per run"),
            Loop::ForkExec => format!("fork+exec+wait of /bin/true on the host, {n} per run"),
            Loop::ContainerConnect => {
                format!("socket+connect+close of a unix datagram socket from a Docker container, {n} per run")
            }
            Loop::ContainerExec => format!("fork+exec+wait of /bin/true (busybox) in a Docker container, {n} per run"),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Loop::UnshareSetns => "ns per pair",
            Loop::ContainerOpen => "ns per open+close",
            _ => "ns per call",
        }
    }

    /// One timed run: mean ns per operation, None when it could not run.
    fn run(self, n: u64, socket: &Path) -> Option<f64> {
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        match self {
            Loop::ContainerOpen => loops::container_open_ns(n),
            Loop::Setns => Some(loops::setns_own_us(n32) * 1e3),
            Loop::UnshareSetns => Some(loops::ns_pair_us(n32) * 1e3),
            Loop::ForkExec => Some(loops::fork_exec_us(n32) * 1e3),
            Loop::ContainerConnect => loops::container_connect_ns(socket, n),
            Loop::ContainerExec => loops::container_exec_ns(n),
        }
    }

    /// Did the peer see the loop's work? Checked where the peer leaves a trace; None when it
    /// leaves none (its counters fire only on sensitive names).
    fn peer_saw(self, out: &dcea_tests::bench::bpftrace::Output, n: u64) -> Option<bool> {
        match self {
            Loop::Setns => Some(out.count("calls").is_some_and(|c| c >= n)),
            Loop::UnshareSetns => Some(out.count("calls").is_some_and(|c| c >= 2 * n)),
            Loop::ContainerExec => Some(out.lines_starting("exec ") as u64 >= n),
            _ => None,
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    None,
    Dcea,
    Peer,
    Floor,
}

const CONFIGS: [Config; 4] = [Config::None, Config::Dcea, Config::Peer, Config::Floor];

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{key}={v}: not a valid value")),
        Err(_) => default,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Mount tracefs when it is missing (bpftrace reads tracepoint formats there); true when
/// this process mounted it, so it can unmount it again.
fn ensure_tracefs() -> bool {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").is_dir() {
        return false;
    }
    // SAFETY: NUL-terminated constant strings, no data.
    let ret = unsafe {
        libc::mount(c"tracefs".as_ptr(), c"/sys/kernel/tracing".as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    assert_eq!(ret, 0, "mounting tracefs on {}: {}", dir.display(), std::io::Error::last_os_error());
    true
}

/// Let a freshly started agent finish its start-up work before a loop is timed.
const SETTLE: Duration = Duration::from_millis(1500);

struct Bench {
    peers_dir: PathBuf,
    bpftrace: PathBuf,
    socket: PathBuf,
    loops: Vec<(Loop, u64)>,
    /// samples[loop][config]
    samples: Vec<[Samples; 4]>,
}

impl Bench {
    fn measure(&mut self, i: usize, config: usize) {
        let (l, n) = self.loops[i];
        match l.run(n, &self.socket) {
            Some(ns) => self.samples[i][config].0.push(ns),
            None => {
                eprintln!("bench: {} did not run (config {})", l.name(), report::CONFIG_NAMES[config]);
                self.samples[i][config].0.push(f64::NAN);
            }
        }
    }

    fn with_program(&mut self, i: usize, config: usize, program: &Path) {
        let (l, n) = self.loops[i];
        let peer = Bpftrace::start(&self.bpftrace, program, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("bpftrace {}: {e}", program.display()));
        std::thread::sleep(SETTLE);
        self.measure(i, config);
        let pid = peer.pid();
        let out = peer.stop();
        if config == 2 && l.peer_saw(&out, n) == Some(false) {
            panic!(
                "the peer {} (pid {pid}) did not see the {} loop's {n} operations; it printed:\n{}\n{}",
                program.display(),
                l.name(),
                out.lines.iter().rev().take(20).cloned().collect::<Vec<_>>().join("\n"),
                out.stderr
            );
        }
    }

    fn round(&mut self, order: &[Config]) {
        for &config in order {
            let c = CONFIGS.iter().position(|&x| x == config).expect("known config");
            let started = Instant::now();
            match config {
                Config::None => (0..self.loops.len()).for_each(|i| self.measure(i, c)),
                Config::Dcea => {
                    let monitor = Monitor::start(&[]);
                    std::thread::sleep(SETTLE);
                    (0..self.loops.len()).for_each(|i| self.measure(i, c));
                    let summary = monitor.stop();
                    eprintln!("bench:   dcea: {}", summary.last().map(String::as_str).unwrap_or(""));
                }
                Config::Peer | Config::Floor => {
                    for i in 0..self.loops.len() {
                        let stem = self.loops[i].0.peer();
                        let file =
                            if config == Config::Peer { format!("{stem}.bt") } else { format!("floor-{stem}.bt") };
                        let program = self.peers_dir.join(file);
                        self.with_program(i, c, &program);
                    }
                }
            }
            eprintln!(
                "bench:   {} done in {:.1} s (load {})",
                report::CONFIG_NAMES[c],
                started.elapsed().as_secs_f64(),
                loadavg()
            );
        }
    }
}

fn main() {
    if !dcea_user::sys::is_root() {
        eprintln!("bench_peers loads eBPF programs: run it as root (cargo xtask bench --peers)");
        std::process::exit(2);
    }
    let rounds: usize = env_or("DCEA_PEERS_ROUNDS", 3);
    let scale: f64 = env_or("DCEA_PEERS_SCALE", 1.0);
    let peers_dir = std::env::var_os("DCEA_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dcea_tests::workspace_root().join("tests/bench/peers"));
    let Some(bpftrace) = dcea_tests::bench::bpftrace::binary() else {
        eprintln!("bench_peers: bpftrace not found (cargo xtask bench --peers installs it)");
        std::process::exit(2);
    };
    let wanted: Option<Vec<String>> =
        std::env::var("DCEA_PEERS_LOOPS").ok().map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    if let Some(w) = &wanted {
        for name in w {
            assert!(LOOPS.iter().any(|l| l.name() == name), "DCEA_PEERS_LOOPS: no loop `{name}`");
        }
    }
    let docker = dcea_tests::docker::available("bench_peers");
    let loops: Vec<(Loop, u64)> = LOOPS
        .iter()
        .filter(|l| wanted.as_ref().is_none_or(|w| w.iter().any(|n| n == l.name())))
        .filter(|l| {
            let ok = docker || !l.needs_docker();
            if !ok {
                eprintln!("bench: {} left out: no Docker engine with the test image", l.name());
            }
            ok
        })
        .map(|&l| (l, ((l.iterations() as f64 * scale).round() as u64).max(1)))
        .collect();
    let mounted_tracefs = ensure_tracefs();
    let socket_dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_dir.path().join("bench.sock");
    let _listener = std::os::unix::net::UnixDatagram::bind(&socket).expect("bind the bench socket");

    let load_start = loadavg();
    let t0 = Instant::now();
    let mut bench = Bench { peers_dir, bpftrace, socket, samples: vec![Default::default(); loops.len()], loops };
    for r in 0..rounds {
        let mut order = CONFIGS;
        order.rotate_left(r % CONFIGS.len());
        eprintln!("bench: round {}/{rounds}", r + 1);
        bench.round(&order);
    }
    let load_end = loadavg();
    if mounted_tracefs {
        // SAFETY: a NUL-terminated constant path.
        unsafe { libc::umount2(c"/sys/kernel/tracing".as_ptr(), libc::MNT_DETACH) };
    }

    println!("## Hot-path cost beside a bpftrace peer ({rounds} rounds, configurations interleaved)");
    println!(
        "\nLoad average (1, 5, 15 min) at the start: {load_start}; at the end: {load_end}; {} online CPUs; \
         run took {:.0} s. Medians and ranges over the rounds; added cost = configuration − no agent.",
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) },
        t0.elapsed().as_secs_f64()
    );
    let results: Vec<LoopResult> = bench
        .loops
        .iter()
        .zip(bench.samples)
        .map(|(&(l, n), samples)| LoopResult { title: l.title(n), unit: l.unit(), peer_file: l.peer(), samples })
        .collect();
    for r in &results {
        report::print_loop(r);
    }
    report::print_summary(&results);
}
