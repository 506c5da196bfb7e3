//! `dcea monitor`: the kernel programs, the ring-buffer reader and the alert pipeline.

pub mod alert;
pub mod behaviour;
pub mod btf;
pub mod decode;
pub mod loader;
pub mod pipeline;
pub mod rules_event;

use std::{
    collections::HashMap,
    io::{self, BufWriter},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use dcea_common::{names, stats};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
};

pub use loader::{CommitCredsHook, Feature, ProgramStatus, StartupReport, ebpf_object_embedded};
pub use pipeline::{AlertContext, Pipeline};

use crate::{
    Error,
    container::{engine, metadata::MetadataCache},
    output::{Alert, Format, Sink},
    trust::{
        HostNamespaces, TrustChecker, TrustStore, TrustWorker,
        db::Loaded,
        worker::{Output, WorkerOptions, WorkerSummary},
    },
};

/// Where escapes are seen: the kernel programs, or periodic passes over /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Kernel programs; polling (loudly) when they cannot load.
    Auto,
    /// Kernel programs only: fail when they cannot load.
    Ebpf,
    /// Trust passes over /proc every --interval (no eBPF).
    Poll,
}

#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub format: Format,
    pub enforce: bool,
    pub host_ns_pid: Option<u32>,
    pub btf_path: PathBuf,
    pub max_tasks: u32,
    pub mode: Mode,
    /// Trust pass interval; `None`: 2 s when polling, 30 s beside the kernel programs.
    pub interval: Option<Duration>,
    pub state_dir: PathBuf,
    /// Where behaviour rules come from (reloaded on SIGHUP).
    pub rules: crate::rules::LoadOptions,
    pub commit_creds: CommitCredsHook,
    /// `--cri-socket`: the CRI runtime to name pods from (else the well-known sockets).
    pub cri_socket: Option<PathBuf>,
}

/// Trust passes beside the kernel programs are a safety net (escapes before dcea started,
/// anything a hook missed); when polling they are the detector.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const SAFETY_NET_INTERVAL: Duration = Duration::from_secs(30);
const SAVE_EVERY: Duration = Duration::from_secs(10);

impl MonitorOptions {
    fn load_options(&self, host: HostNamespaces) -> loader::LoadOptions<'_> {
        loader::LoadOptions {
            btf_path: &self.btf_path,
            host,
            enforce: self.enforce,
            max_tasks: self.max_tasks,
            commit_creds: self.commit_creds,
        }
    }
}

/// Load the programs, print what loaded, and return the report (`dcea probe`).
pub fn probe(opts: &MonitorOptions) -> Result<StartupReport, Error> {
    let host = HostNamespaces::detect(opts.host_ns_pid)?;
    Ok(loader::load(opts.load_options(host))?.report)
}

fn kernel_counter(ebpf: &aya::Ebpf, index: u32) -> u64 {
    ebpf.map(names::STATS_MAP)
        .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
        .and_then(|a| a.get(&index, 0).ok())
        .map(|v| v.iter().sum())
        .unwrap_or(0)
}

/// The kernel side of a running monitor.
struct Kernel {
    ebpf: aya::Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    pipeline: Pipeline,
}

/// Errors that mean "no eBPF here" (auto mode polls instead), as opposed to errors that stop
/// any mode (not root, no host reference).
fn ebpf_unavailable(e: &Error) -> bool {
    matches!(
        e,
        Error::NoBtf(_)
            | Error::Btf(_)
            | Error::NoEbpfObject
            | Error::Load(_)
            | Error::Program { .. }
            | Error::Io { .. }
    )
}

/// Load and compile the behaviour rules, saying on stderr what was loaded.
fn load_rules(opts: &crate::rules::LoadOptions) -> Result<crate::rules::RuleSet, String> {
    let set = crate::rules::RuleSet::load(opts).map_err(|e| e.to_string())?;
    for w in set.warnings() {
        eprintln!("dcea: rules warning: {w}");
    }
    eprintln!(
        "dcea: behaviour rules: {} rules ({} enabled) from {}",
        set.rules().len(),
        set.rules().iter().filter(|r| r.enabled).count(),
        set.files().join(", ")
    );
    Ok(set)
}

fn start_kernel(opts: &MonitorOptions, ctx: &AlertContext) -> Result<Kernel, Error> {
    let loader::Loaded { mut ebpf, report } = loader::load(opts.load_options(ctx.host.clone()))?;
    eprint!("{}", report.render_text());
    let ring =
        ebpf.take_map(names::EVENTS_MAP).ok_or_else(|| Error::Load(format!("map {} missing", names::EVENTS_MAP)))?;
    let ring = RingBuf::try_from(ring).map_err(|e| Error::Load(e.to_string()))?;
    // SAFETY: the RingBuf owns its map fd, which stays open while the AsyncFd owns the RingBuf.
    let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| Error::io("polling the ring buffer", e.into()))?;
    let attached = report.attached();
    eprintln!("dcea: kernel programs attached ({attached})");
    Ok(Kernel { ebpf, ring, pipeline: Pipeline::new(ctx.clone()) })
}

/// The trust database of `--state-dir`, or none (with the reason said) when another agent
/// writes it.
fn open_store(opts: &MonitorOptions) -> Result<(Option<TrustStore>, Loaded), Error> {
    match TrustStore::open(&opts.state_dir)? {
        Some(store) => {
            let loaded = store.load()?;
            if let Some(line) = loaded.describe(&store.path) {
                eprintln!("dcea: {line}");
            }
            Ok((Some(store), loaded))
        }
        None => {
            eprintln!(
                "dcea: WARNING: another dcea holds the trust database in {}: this one keeps its trust table in memory only",
                opts.state_dir.display()
            );
            Ok((None, Loaded::Missing))
        }
    }
}

pub async fn run(opts: MonitorOptions) -> Result<(), Error> {
    if !crate::sys::is_root() {
        return Err(Error::NotRoot);
    }
    // Before anything that leaves state behind: a stop signal that arrives while the programs
    // load or the first pass runs is handled once dcea is ready (the trust table is saved),
    // instead of killing it half-way.
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::io("installing SIGTERM handler", e))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io("installing SIGINT handler", e))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| Error::io("installing SIGHUP handler", e))?;
    let host = HostNamespaces::detect(opts.host_ns_pid)?;
    // A ruleset that does not load is an error at start (fix it with `dcea rules validate`);
    // on SIGHUP the last good one stays.
    let mut rules = Arc::new(load_rules(&opts.rules).map_err(Error::Usage)?);
    let metadata = MetadataCache::start(engine::socket_path())
        .with_cri(crate::container::cri::CriCache::discover_and_start(opts.cri_socket.as_deref()));
    let ctx = AlertContext::new(host, metadata.clone());

    let mut kernel = match opts.mode {
        Mode::Poll => None,
        Mode::Ebpf => Some(start_kernel(&opts, &ctx)?),
        Mode::Auto => match start_kernel(&opts, &ctx) {
            Ok(k) => Some(k),
            Err(e) if ebpf_unavailable(&e) => {
                eprintln!(
                    "dcea: WARNING: the eBPF programs could not load ({e}). FALLING BACK TO POLLING /proc every {}: escapes are found within that interval instead of at the syscall{}. Use --mode ebpf to make this an error.",
                    humantime::format_duration(opts.interval.unwrap_or(POLL_INTERVAL)),
                    if opts.enforce { ", and --enforce kills after the fact" } else { "" }
                );
                None
            }
            Err(e) => return Err(e),
        },
    };
    if let Some(k) = kernel.as_mut() {
        k.pipeline.rules = Some(rules.clone());
    } else {
        eprintln!("dcea: behaviour rules need the kernel programs: not evaluated in poll mode");
    }
    let interval = opts.interval.unwrap_or(if kernel.is_some() { SAFETY_NET_INTERVAL } else { POLL_INTERVAL });
    // Names in the first pass's alerts: wait briefly for the engine's first listing.
    metadata.wait_ready(Duration::from_secs(2));

    let (store, loaded) = open_store(&opts)?;
    let mut checker = TrustChecker::new(ctx.clone(), opts.enforce);
    if let Loaded::Database(f) = &loaded {
        checker.restore(f);
    }
    let (tx, mut trust_rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = TrustWorker::spawn(checker, WorkerOptions { interval, store, save_every: SAVE_EVERY }, tx)
        .map_err(|e| Error::io("starting the trust thread", e))?;
    let trust = worker.handle.clone();

    let mut sink = Sink::new(BufWriter::new(io::stdout()), opts.format);
    let mut dedup = Dedup::default();
    // Alerts of the first pass come before its summary.
    let first = loop {
        match trust_rx.recv().await {
            Some(Output::Alert(a)) => {
                if dedup.admit(&a) {
                    write_or_stop(sink.write(&a))?;
                }
            }
            Some(Output::FirstPass(st)) => break st,
            None => return Err(Error::Usage("the trust thread stopped during its first pass".into())),
        }
    };
    write_or_stop(sink.flush())?;
    let mode = if kernel.is_some() { "ebpf" } else { "poll" };
    eprintln!(
        "dcea: ready (mode {mode}; trust pass every {}: {} containers, {} container processes, {} violations, first pass {:.1} ms)",
        humantime::format_duration(interval),
        first.containers,
        first.container_processes,
        first.violations,
        first.elapsed_us as f64 / 1000.0
    );

    let mut tick = tokio::time::interval(Duration::from_secs(10));
    // The kernel wakes us at once only for possible alerts; everything else is read here.
    let mut drain = tokio::time::interval(DRAIN_INTERVAL);
    let mut lost_reported = 0;

    let result = loop {
        tokio::select! {
            guard = readable(&mut kernel) => {
                // Clear before draining: the kernel's adaptive wakeup fires only when we have
                // caught up, so a wakeup cleared after the drain would be lost for good.
                match guard {
                    Ok(mut g) => g.clear_ready(),
                    Err(e) => break Err(Error::io("polling the ring buffer", e)),
                }
                if let Some(k) = kernel.as_mut()
                    && let Err(e) = consume(k, &mut sink, &mut dedup, &trust) { break Err(e) }
            }
            _ = drain.tick(), if kernel.is_some() => {
                if let Some(k) = kernel.as_mut()
                    && let Err(e) = consume(k, &mut sink, &mut dedup, &trust) { break Err(e) }
            }
            out = trust_rx.recv() => match out {
                Some(Output::Alert(a)) => {
                    if dedup.admit(&a)
                        && let Err(e) = write_or_stop(sink.write(&a).and_then(|()| sink.flush())) { break Err(e) }
                }
                Some(Output::FirstPass(_)) => {}
                None => break Err(Error::Usage("the trust thread stopped".into())),
            },
            _ = tick.tick() => {
                if let Some(k) = &kernel {
                    let lost = kernel_counter(&k.ebpf, stats::RINGBUF_FULL);
                    if lost > lost_reported {
                        tracing::warn!("{} kernel events lost: ring buffer full", lost - lost_reported);
                        lost_reported = lost;
                    }
                }
                dedup.expire();
            }
            _ = sighup.recv() => match load_rules(&opts.rules) {
                Ok(new) => {
                    rules = Arc::new(new);
                    if let Some(k) = kernel.as_mut() {
                        k.pipeline.rules = Some(rules.clone());
                    }
                }
                Err(e) => eprintln!("dcea: SIGHUP: keeping the previous {} rules: {e}", rules.rules().len()),
            },
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
        }
    };
    // What the kernel queued without a wakeup is still owed to the operator.
    if let Some(k) = kernel.as_mut() {
        consume(k, &mut sink, &mut dedup, &trust)?;
    }
    let summary = worker.stop();
    drain_trust(&mut trust_rx, &mut sink, &mut dedup)?;
    print_summary(kernel.as_ref(), &summary);
    result
}

/// Readiness of the ring buffer; never ready in poll mode.
async fn readable(
    kernel: &mut Option<Kernel>,
) -> io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, RingBuf<MapData>>> {
    match kernel {
        Some(k) => k.ring.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// Alerts the trust thread sent while stopping.
fn drain_trust<W: io::Write>(
    rx: &mut UnboundedReceiver<Output>,
    sink: &mut Sink<W>,
    dedup: &mut Dedup,
) -> Result<(), Error> {
    while let Ok(out) = rx.try_recv() {
        if let Output::Alert(a) = out
            && dedup.admit(&a)
        {
            write_or_stop(sink.write(&a))?;
        }
    }
    write_or_stop(sink.flush())
}

fn print_summary(kernel: Option<&Kernel>, trust: &WorkerSummary) {
    let trust_part = format!(
        "trust: {} passes (slowest {:.1} ms), {} re-checks, {} alerts; {} containers, {} container processes",
        trust.passes,
        trust.slowest_pass_us as f64 / 1000.0,
        trust.rechecks,
        trust.alerts,
        trust.last.containers,
        trust.last.container_processes
    );
    match kernel {
        Some(k) => eprintln!(
            "dcea: stopping: {} records, {} transitions, {} alerts, {} decode errors; kernel: {} emitted, {} lost (ring buffer full), {} untracked (task map full), {} killed; {trust_part}",
            k.pipeline.stats.records,
            k.pipeline.stats.transitions,
            k.pipeline.stats.alerts,
            k.pipeline.stats.decode_errors,
            kernel_counter(&k.ebpf, stats::EMITTED),
            kernel_counter(&k.ebpf, stats::RINGBUF_FULL),
            kernel_counter(&k.ebpf, stats::TASKS_FULL),
            kernel_counter(&k.ebpf, stats::KILLED),
        ),
        None => eprintln!("dcea: stopping (poll mode): {trust_part}"),
    }
}

/// One report per escape whichever path finds it first: an escape alert whose host namespace
/// kinds were all already reported for the same pid (by the kernel, a pass or a re-check)
/// within the last minutes is dropped. Other rules are never dropped.
#[derive(Default)]
struct Dedup {
    seen: HashMap<u32, (u32, Instant)>,
}

const DEDUP_WINDOW: Duration = Duration::from_secs(300);

impl Dedup {
    fn admit(&mut self, alert: &Alert) -> bool {
        let Some((pid, entered)) = crate::monitor::alert::escape_key(alert) else { return true };
        let now = Instant::now();
        let e = self.seen.entry(pid).or_insert((0, now));
        if now.duration_since(e.1) > DEDUP_WINDOW {
            *e = (0, now);
        }
        let new = entered & !e.0 != 0;
        e.0 |= entered;
        e.1 = now;
        new
    }

    fn expire(&mut self) {
        self.seen.retain(|_, (_, t)| t.elapsed() <= DEDUP_WINDOW);
    }
}

const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// Process every pending record and flush the alerts they raised; every alert is handed to
/// the trust thread (remembered, and its process tree re-checked).
fn consume<W: io::Write>(
    k: &mut Kernel,
    sink: &mut Sink<W>,
    dedup: &mut Dedup,
    trust: &crate::trust::TrustHandle,
) -> Result<(), Error> {
    let before = k.pipeline.stats.records;
    let rb = k.ring.get_mut();
    let mut alerts = Vec::new();
    while let Some(record) = rb.next() {
        k.pipeline.process_into(&record, &mut alerts);
        for alert in alerts.drain(..) {
            trust.note_alert(&alert);
            if dedup.admit(&alert) {
                write_or_stop(sink.write(&alert))?;
            }
        }
    }
    tracing::trace!("consumed {} records", k.pipeline.stats.records - before);
    write_or_stop(sink.flush())
}

/// A closed stdout (the consumer went away) ends the monitor cleanly.
fn write_or_stop(r: io::Result<()>) -> Result<(), Error> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Error::io("stdout closed", e)),
        other => other.map_err(|e| Error::io("writing alerts to stdout", e)),
    }
}
