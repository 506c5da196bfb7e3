//! `dcea monitor`: the kernel programs, the ring-buffer reader and the alert pipeline.

pub mod alert;
pub mod behaviour;
pub mod btf;
pub mod decode;
pub mod dedup;
pub mod kernel;
pub mod loader;
pub mod loss;
pub mod pipeline;
pub mod rules_event;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use dcea_common::stats;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc::UnboundedReceiver,
};

pub use loader::{CommitCredsHook, Feature, ProgramStatus, StartupReport, ebpf_object_embedded};
pub use pipeline::{AlertContext, Pipeline};

use crate::{
    Error,
    container::{engine, metadata::MetadataCache},
    metrics::Metrics,
    output::{Alert, Format},
    sinks::{Decision, Delivery, DeliveryOptions},
    trust::{
        HostNamespaces, PassStats, TrustChecker, TrustHandle, TrustStore, TrustWorker,
        db::Loaded,
        worker::{Note, Output, WorkerOptions, WorkerSummary},
    },
};
use dedup::Dedup;
use kernel::{Kernel, readable};

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
    /// --enforce's action for the built-in namespace-escape verdict.
    pub escape_action: crate::enforce::Action,
    /// `--action RULE=ACTION` overrides, applied over the rules' own.
    pub actions: Vec<(String, crate::enforce::Action)>,
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
    /// Sinks, queues, storm control and spools.
    pub delivery: DeliveryOptions,
    /// `/metrics` and `/healthz`; `None`: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// `--cri-socket`: the CRI runtime to name pods from (else the well-known sockets).
    pub cri_socket: Option<PathBuf>,
    /// The in-memory measurement pass.
    pub integrity: IntegrityOptions,
    /// The per-workload process allowlist.
    pub allowlist: crate::allowlist::AllowlistOptions,
    /// `--quarantine-on`: quarantine a container's network on its Critical alerts.
    pub quarantine_on: crate::quarantine::agent::QuarantineOn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntegrityOptions {
    /// Zero: only the passes tampering records ask for.
    pub interval: Duration,
    pub anon_exec: bool,
}

impl Default for IntegrityOptions {
    fn default() -> IntegrityOptions {
        IntegrityOptions { interval: Duration::from_secs(60), anon_exec: false }
    }
}

/// Trust passes beside the kernel programs are a safety net (escapes before dcea started,
/// anything a hook missed); when polling they are the detector.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const SAFETY_NET_INTERVAL: Duration = Duration::from_secs(30);
const SAVE_EVERY: Duration = Duration::from_secs(10);

impl MonitorOptions {
    pub(crate) fn load_options(&self, host: HostNamespaces, rules: &crate::rules::RuleSet) -> loader::LoadOptions<'_> {
        loader::LoadOptions {
            btf_path: &self.btf_path,
            host,
            enforce: self.enforce,
            guards: crate::enforce::guards::plan(rules, self.enforce, self.escape_action),
            every_unix_connect: rules.needs_every_unix_connect(),
            max_tasks: self.max_tasks,
            commit_creds: self.commit_creds,
        }
    }
}

/// Load the programs, print what loaded, and return the report (`dcea probe`).
pub fn probe(opts: &MonitorOptions) -> Result<StartupReport, Error> {
    let host = HostNamespaces::detect(opts.host_ns_pid)?;
    let rules = load_rules(opts).map_err(Error::Usage)?;
    Ok(loader::load(opts.load_options(host, &rules))?.report)
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

/// Load and compile the behaviour rules with the `--action` overrides, saying on stderr what
/// was loaded.
fn load_rules(opts: &MonitorOptions) -> Result<crate::rules::RuleSet, String> {
    let mut set = crate::rules::RuleSet::load(&opts.rules).map_err(|e| e.to_string())?;
    for (rule, action) in &opts.actions {
        set.set_action(rule, *action)?;
    }
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

/// Where every alert goes: cross-path escape de-duplication, then the delivery stage (storm
/// control and the per-sink queues). Never blocks.
struct Router {
    delivery: Delivery,
    dedup: Dedup,
    metrics: Arc<Metrics>,
    trust: Option<TrustHandle>,
    /// Quarantine alerts, and `--quarantine-on critical`.
    quarantine: crate::quarantine::agent::QuarantineAgent,
    metadata: MetadataCache,
}

impl Router {
    /// A kernel alert is also told to the trust thread (escapes remembered, the process
    /// re-checked); repeats that storm control folds are not re-checked again.
    fn kernel_alert(&mut self, alert: Alert) {
        let note = Note::of(&alert);
        // The alert is queued first: the quarantine's attach must not delay it.
        let trigger = self.quarantine.wants(&alert);
        let decision = if self.dedup.admit(&alert) { self.delivery.submit(alert) } else { Decision::Suppress };
        let quarantined = trigger.is_some_and(|t| self.quarantine.apply(t, &self.metadata));
        if let Some(t) = &self.trust
            && t.note(note, decision == Decision::Deliver)
        {
            self.metrics.trust_rechecks.inc();
        }
        if quarantined {
            self.quarantine_events();
        }
    }

    /// Alerts for the quarantines and releases logged since the last look (the CLI's and this
    /// agent's own).
    fn quarantine_events(&mut self) {
        for a in self.quarantine.poll(&self.metadata, &self.metrics) {
            eprintln!("dcea: {}", a.output);
            self.delivery.submit(a);
        }
    }

    /// Alerts of the trust passes and re-checks.
    fn trust_alert(&mut self, alert: Alert) {
        let trigger = self.quarantine.wants(&alert);
        if self.dedup.admit(&alert) {
            self.delivery.submit(alert);
        }
        let quarantined = trigger.is_some_and(|t| self.quarantine.apply(t, &self.metadata));
        if quarantined {
            self.quarantine_events();
        }
    }

    fn trust_pass(&self, st: &PassStats) {
        self.metrics.trust_passes.inc();
        self.metrics.trust_pass_seconds.observe(st.elapsed_us as f64 / 1e6);
    }
}

pub async fn run(opts: MonitorOptions) -> Result<(), Error> {
    if !crate::sys::is_root() {
        return Err(Error::NotRoot);
    }
    if let Some(env) = crate::sentinel::SentinelEnv::from_env() {
        return crate::sentinel::watch::run(&opts, env).await;
    }
    // Before anything that leaves state behind: a stop signal that arrives while the programs
    // load or the first pass runs is handled once dcea is ready (the trust table is saved),
    // instead of killing it half-way.
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::io("installing SIGTERM handler", e))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io("installing SIGINT handler", e))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| Error::io("installing SIGHUP handler", e))?;
    let mut sigusr1 = signal(SignalKind::user_defined1()).map_err(|e| Error::io("installing SIGUSR1 handler", e))?;
    let host = HostNamespaces::detect(opts.host_ns_pid)?;
    crate::container::host_fs::set_host_mountinfo(&host.mountinfo_path());
    // A ruleset that does not load is an error at start (fix it with `dcea rules validate`);
    // on SIGHUP the last good one stays.
    let mut rules = Arc::new(load_rules(&opts).map_err(Error::Usage)?);
    // Sinks open before the programs load: an unwritable file or a bad CA is a start-up error.
    let metrics = Metrics::new();
    let delivery = Delivery::start(&opts.delivery, metrics.clone())?;
    if let Some(addr) = opts.metrics_addr {
        let local = crate::metrics::server::spawn(addr, metrics.clone())?;
        eprintln!("dcea: metrics on http://{local}/metrics, health on http://{local}/healthz");
    }
    let metadata = MetadataCache::start(engine::socket_path())
        .with_cri(crate::container::cri::CriCache::discover_and_start(opts.cri_socket.as_deref()));
    let ctx = AlertContext::new(host, metadata.clone());

    let mut kernel = match opts.mode {
        Mode::Poll => None,
        Mode::Ebpf => Some(Kernel::start(&opts, &ctx, &rules)?),
        Mode::Auto => match Kernel::start(&opts, &ctx, &rules) {
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
    crate::sentinel::set_agent_files(&opts.state_dir, opts.rules.rules_dir.as_deref(), None);
    let mut sentinel = kernel.as_mut().and_then(|k| {
        let denied = k.pipeline.denied_in_kernel[dcea_common::Guard::AgentSignal as usize];
        start_sentinel(&mut k.ebpf, denied)
    });
    if let Some(k) = kernel.as_mut() {
        k.pipeline.rules = Some(rules.clone());
        metrics.programs_attached.set(k.attached as i64);
        metrics.health.attached.store(true, Ordering::Relaxed);
    } else {
        eprintln!("dcea: behaviour rules need the kernel programs: not evaluated in poll mode");
        metrics.health.polling.store(true, Ordering::Relaxed);
    }
    metrics.health.beat();
    let interval = opts.interval.unwrap_or(if kernel.is_some() { SAFETY_NET_INTERVAL } else { POLL_INTERVAL });
    // Names in the first pass's alerts: wait briefly for the engine's first listing.
    metadata.wait_ready(Duration::from_secs(2));

    let (store, loaded) = open_store(&opts)?;
    // Only the agent that holds the state directory keeps its run marker.
    let (mut run_marker, gap) = match &store {
        Some(_) => {
            let (m, gap) = crate::sentinel::marker::RunMarker::begin(&opts.state_dir, &ctx.hostname);
            (Some(m), gap)
        }
        None => (None, None),
    };
    let mut checker = TrustChecker::new(ctx.clone(), opts.enforce);
    if let Loaded::Database(f) = &loaded {
        checker.restore(f);
    }
    let (tx, mut trust_rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = TrustWorker::spawn(checker, WorkerOptions { interval, store, save_every: SAVE_EVERY }, tx)
        .map_err(|e| Error::io("starting the trust thread", e))?;
    let mut router = Router {
        delivery,
        dedup: Dedup::default(),
        metrics: metrics.clone(),
        trust: Some(worker.handle.clone()),
        quarantine: crate::quarantine::agent::QuarantineAgent::new(&opts.state_dir, opts.quarantine_on, &ctx.hostname),
        metadata: metadata.clone(),
    };
    let integrity = kernel
        .as_ref()
        .and_then(|k| k.pipeline.integrity.clone())
        .unwrap_or_else(|| Arc::new(crate::integrity::Integrity::new(&opts.state_dir)));
    let (integrity_tx, mut integrity_rx) = tokio::sync::mpsc::unbounded_channel();
    let pass_options = crate::integrity::pass::PassOptions {
        interval: opts.integrity.interval,
        anon_exec: opts.integrity.anon_exec,
        hostname: ctx.hostname.clone(),
        state_dir: opts.state_dir.clone(),
    };
    crate::integrity::pass::spawn(&integrity, metadata.clone(), pass_options, integrity_tx)
        .map_err(|e| Error::io("starting the integrity thread", e))?;

    // Alerts of the first pass come before its summary. The kernel is drained meanwhile, so
    // a long first pass cannot fill the ring buffers.
    let mut drain = tokio::time::interval(DRAIN_INTERVAL);
    let first = loop {
        tokio::select! {
            out = trust_rx.recv() => match out {
                Some(Output::Alert(a)) => router.trust_alert(*a),
                Some(Output::FirstPass(st)) => break st,
                Some(Output::Pass(_)) => {}
                None => return Err(Error::Usage("the trust thread stopped during its first pass".into())),
            },
            _ = drain.tick() => {
                metrics.health.beat();
                if let Some(k) = kernel.as_mut() {
                    k.drain(|a| router.kernel_alert(a));
                }
            }
        }
    };
    router.trust_pass(&first);
    if let Some(gap) = gap {
        eprintln!("dcea: {}", gap.output);
        router.delivery.submit(gap);
    }
    let mode = if kernel.is_some() { "ebpf" } else { "poll" };
    eprintln!(
        "dcea: ready (mode {mode}; trust pass every {}: {} containers, {} container processes, {} violations, first pass {:.1} ms)",
        humantime::format_duration(interval),
        first.containers,
        first.container_processes,
        first.violations,
        first.elapsed_us as f64 / 1000.0
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut loss = loss::LossWatch::new(Duration::from_secs(10));
    let mut last_expire = Instant::now();

    let result = loop {
        tokio::select! {
            biased;
            ready = readable(&mut kernel) => {
                if let Err(e) = ready { break Err(Error::io("polling the ring buffers", e)) }
                if let Some(k) = kernel.as_mut() {
                    k.drain(|a| router.kernel_alert(a));
                }
            }
            _ = drain.tick(), if kernel.is_some() => {
                metrics.health.beat();
                if let Some(k) = kernel.as_mut() {
                    k.drain(|a| router.kernel_alert(a));
                }
            }
            Some(a) = integrity_rx.recv() => router.trust_alert(a),
            out = trust_rx.recv() => match out {
                Some(Output::Alert(a)) => router.trust_alert(*a),
                Some(Output::FirstPass(st) | Output::Pass(st)) => router.trust_pass(&st),
                None => break Err(Error::Usage("the trust thread stopped".into())),
            },
            _ = tick.tick() => {
                metrics.health.beat();
                if let Some(m) = run_marker.as_mut() {
                    m.heartbeat();
                }
                if let Some(k) = kernel.as_mut() {
                    let denied = k.pipeline.denied_in_kernel[dcea_common::Guard::AgentSignal as usize];
                    keep_sentinel(&mut k.ebpf, &mut sentinel, denied);
                    k.enforce_condemned();
                    k.tick_allowlist();
                    let lost = k.export(&metrics);
                    let action = loss.observe(lost, Instant::now(), &ctx.hostname);
                    if action.trust_pass {
                        worker.handle.pass_now();
                    }
                    if let Some(a) = action.alert {
                        tracing::warn!("{}", a.output);
                        router.delivery.submit(a);
                    }
                }
                router.quarantine_events();
                if let Err(e) = router.delivery.tick() { break Err(e) }
                if last_expire.elapsed() >= Duration::from_secs(10) {
                    router.dedup.expire();
                    last_expire = Instant::now();
                }
            }
            _ = sighup.recv() => match load_rules(&opts) {
                Ok(new) => {
                    rules = Arc::new(new);
                    if let Some(k) = kernel.as_mut() {
                        k.pipeline.rules = Some(rules.clone());
                        k.set_guards(&crate::enforce::guards::plan(&rules, opts.enforce, opts.escape_action));
                        if let Err(e) = loader::set_every_unix_connect(&mut k.ebpf, rules.needs_every_unix_connect()) {
                            tracing::warn!("updating the kernel's connect filter: {e}");
                        }
                    }
                    metrics.rules_reloads.get_or_create(&crate::metrics::ResultLabels { result: "ok" }).inc();
                }
                Err(e) => {
                    eprintln!("dcea: SIGHUP: keeping the previous {} rules: {e}", rules.rules().len());
                    metrics.rules_reloads.get_or_create(&crate::metrics::ResultLabels { result: "error" }).inc();
                }
            },
            _ = sigusr1.recv() => router.delivery.reopen(),
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
        }
    };
    // What the kernel queued without a wakeup is still owed to the operator.
    if let Some(k) = kernel.as_mut() {
        k.drain(|a| router.kernel_alert(a));
        k.export(&metrics);
    }
    router.trust = None;
    let summary = worker.stop();
    drain_trust(&mut trust_rx, &mut router);
    let delivery_part = format!("delivery: {}", router.delivery.stop(STOP_GRACE));
    print_summary(kernel.as_ref(), &summary, &delivery_part);
    if let Some(s) = sentinel {
        s.stop();
    }
    if let Some(m) = run_marker {
        m.clean_stop();
    }
    result
}

/// Start the sentinel and protect both processes' threads in the kernel. Without it the agent
/// still runs: its own signals are then judged by no one, which it says.
fn start_sentinel(ebpf: &mut aya::Ebpf, denied_in_kernel: bool) -> Option<crate::sentinel::Sentinel> {
    match crate::sentinel::Sentinel::spawn(ebpf, denied_in_kernel) {
        Ok(s) => {
            protect(ebpf, Some(s.pid()));
            Some(s)
        }
        Err(e) => {
            eprintln!("dcea: WARNING: self-protection: no sentinel ({e}); a stopped or killed agent goes unreported");
            protect(ebpf, None);
            None
        }
    }
}

fn protect(ebpf: &mut aya::Ebpf, sentinel: Option<u32>) {
    let want = crate::sentinel::threads::wanted(std::process::id(), sentinel);
    if let Err(e) = crate::sentinel::threads::sync(ebpf, &want) {
        tracing::warn!("self-protection map: {e}");
    }
}

/// Every second: new threads protected, and a sentinel that died (its signal was reported by
/// the agent's own ring) started again.
fn keep_sentinel(ebpf: &mut aya::Ebpf, sentinel: &mut Option<crate::sentinel::Sentinel>, denied_in_kernel: bool) {
    if let Some(s) = sentinel.as_mut()
        && !s.alive()
    {
        eprintln!("dcea: WARNING: the sentinel {} exited; starting another", s.pid());
        *sentinel = start_sentinel(ebpf, denied_in_kernel);
        return;
    }
    protect(ebpf, sentinel.as_ref().map(|s| s.pid()));
}

/// How long the sinks get at stop to write what is queued (network sinks spool the rest).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Alerts the trust thread sent while stopping.
fn drain_trust(rx: &mut UnboundedReceiver<Output>, router: &mut Router) {
    while let Ok(out) = rx.try_recv() {
        if let Output::Alert(a) = out {
            router.trust_alert(*a);
        }
    }
}

fn print_summary(kernel: Option<&Kernel>, trust: &WorkerSummary, delivery: &str) {
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
            "dcea: stopping: {} records, {} transitions, {} alerts, {} decode errors; kernel: {} emitted, {} lost (ring buffer full), {} lost on the priority channel, {} untracked (task map full), {} killed, {} denied by the BPF LSM; {trust_part}; {delivery}",
            k.pipeline.stats.records,
            k.pipeline.stats.transitions,
            k.pipeline.stats.alerts,
            k.pipeline.stats.decode_errors,
            kernel::counter(&k.ebpf, stats::EMITTED),
            kernel::counter(&k.ebpf, stats::RINGBUF_FULL),
            kernel::counter(&k.ebpf, stats::PRIORITY_RINGBUF_FULL),
            kernel::counter(&k.ebpf, stats::TASKS_FULL),
            kernel::counter(&k.ebpf, stats::KILLED),
            kernel::counter(&k.ebpf, stats::DENIED),
        ),
        None => eprintln!("dcea: stopping (poll mode): {trust_part}; {delivery}"),
    }
}

const DRAIN_INTERVAL: Duration = Duration::from_millis(20);
