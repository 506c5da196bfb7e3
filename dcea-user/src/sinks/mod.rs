//! The one delivery stage every alert goes through (kernel, trust passes, re-checks, the
//! daemon's scanners): storm control, then a bounded queue and a thread per sink, so the
//! ring-buffer drain never waits for an output and a slow sink never delays another.

pub mod file;
pub mod http;
pub mod queue;
pub mod rfc5424;
pub mod spec;
pub mod spool;
pub mod storm;
pub mod syslog;

use std::{
    io::{self, Write},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use spec::OutputSpec;
pub use storm::{Decision, StormControl, StormOptions};

use crate::{
    Error,
    metrics::{Metrics, ShedLabels},
    output::{Alert, Format, render},
};
use queue::{Pushed, ShedQueue};

/// A sink that writes one alert at a time on its own thread.
pub trait SinkWriter: Send {
    fn write(&mut self, alert: &Alert) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// SIGUSR1: reopen files moved away by logrotate.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct StdoutWriter {
    out: io::BufWriter<io::Stdout>,
    format: Format,
}

impl SinkWriter for StdoutWriter {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let mut line = render(alert, self.format);
        line.push('\n');
        self.out.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    pub outputs: Vec<OutputSpec>,
    pub format: Format,
    /// Alerts each sink's queue holds before shedding.
    pub queue_len: usize,
    pub storm: StormOptions,
    /// Spools live in `<state_dir>/spool/<sink>`.
    pub state_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub http_ca_file: Option<PathBuf>,
    pub http_timeout: Duration,
    pub file_max_bytes: u64,
    pub file_keep: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            outputs: vec![OutputSpec::Stdout],
            format: Format::Json,
            queue_len: 10_000,
            storm: StormOptions::default(),
            state_dir: crate::trust::DEFAULT_STATE_DIR.into(),
            spool_max_bytes: 256 << 20,
            http_ca_file: None,
            http_timeout: Duration::from_secs(5),
            file_max_bytes: 100 << 20,
            file_keep: 5,
        }
    }
}

/// Shared between a sink's thread and the delivery stage.
#[derive(Default)]
pub struct SinkStatus {
    pub delivered: AtomicU64,
    /// Set when the sink cannot go on (stdout closed): the monitor stops.
    pub fatal: Mutex<Option<String>>,
    pub reopen: AtomicBool,
    pub done: AtomicBool,
}

impl SinkStatus {
    fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    fn stopped(&self) {
        self.done.store(true, Ordering::Release);
    }
}

struct SinkHandle {
    name: String,
    queue: Arc<ShedQueue>,
    status: Arc<SinkStatus>,
    join: Option<JoinHandle<()>>,
    labels: crate::metrics::SinkLabels,
}

pub struct Delivery {
    storm: StormControl,
    sinks: Vec<SinkHandle>,
    metrics: Arc<Metrics>,
    summaries: Vec<Alert>,
    /// Alerts shed from full queues (all sinks).
    pub shed: u64,
    /// Alerts folded by storm control, and the summaries that carried their counts.
    pub suppressed: u64,
    pub storm_summaries: u64,
    pub submitted: u64,
}

/// What the delivery stage did, after its sinks stopped.
#[derive(Debug, Clone)]
pub struct DeliverySummary {
    pub submitted: u64,
    pub suppressed: u64,
    pub storm_summaries: u64,
    pub shed: u64,
    /// Per sink: delivered, and what was still queued when the grace ran out.
    pub sinks: Vec<(String, u64, usize)>,
}

impl std::fmt::Display for DeliverySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} alerts, {} folded by storm control into {} storm summaries, {} shed; ",
            self.submitted, self.suppressed, self.storm_summaries, self.shed
        )?;
        let sinks: Vec<String> = self
            .sinks
            .iter()
            .map(|(n, d, left)| {
                if *left > 0 { format!("{n} delivered {d} ({left} left queued)") } else { format!("{n} delivered {d}") }
            })
            .collect();
        write!(f, "{}", sinks.join(", "))
    }
}

fn sink_dir_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

impl Delivery {
    /// Open every sink (an unwritable file, a bad CA file or spool is an error here) and
    /// start its thread.
    pub fn start(opts: &DeliveryOptions, metrics: Arc<Metrics>) -> Result<Delivery, Error> {
        let mut sinks = Vec::new();
        let outputs = if opts.outputs.is_empty() { vec![OutputSpec::Stdout] } else { opts.outputs.clone() };
        for spec in &outputs {
            let name = spec.name();
            if sinks.iter().any(|s: &SinkHandle| s.name == name) {
                return Err(Error::Usage(format!("--output {name} given twice")));
            }
            let queue = Arc::new(ShedQueue::new(opts.queue_len));
            let status = Arc::new(SinkStatus::default());
            let (q, st, m, n) = (queue.clone(), status.clone(), metrics.clone(), name.clone());
            let body: Box<dyn FnOnce() + Send> = match spec {
                OutputSpec::Stdout => {
                    let w = StdoutWriter { out: io::BufWriter::new(io::stdout()), format: opts.format };
                    Box::new(move || run_writer(Box::new(w), n, q, m, st))
                }
                OutputSpec::File(path) => {
                    let w = file::FileWriter::open(path.clone(), opts.format, opts.file_max_bytes, opts.file_keep)
                        .map_err(|e| {
                            Error::io(format!("--output file:{}: cannot open it for appending", path.display()), e)
                        })?;
                    Box::new(move || run_writer(Box::new(w), n, q, m, st))
                }
                OutputSpec::Syslog(target) => {
                    let w = syslog::SyslogWriter::new(target.clone());
                    Box::new(move || run_writer(Box::new(w), n, q, m, st))
                }
                OutputSpec::Http(url) => {
                    let http_opts = http::HttpOptions {
                        url: url.clone(),
                        ca_file: opts.http_ca_file.clone(),
                        timeout: opts.http_timeout,
                        spool_dir: opts.state_dir.join("spool").join(sink_dir_name(url)),
                        spool_max_bytes: opts.spool_max_bytes,
                    };
                    // reqwest's blocking client may not be built (or dropped) on an async
                    // runtime's thread: open it on a plain one, still before start-up ends.
                    let sink = std::thread::scope(|s| s.spawn(|| http::HttpSink::open(http_opts)).join())
                        .map_err(|_| Error::Usage(format!("{url}: opening the sink panicked")))?
                        .map_err(Error::Usage)?;
                    Box::new(move || sink.run(n, q, m, st))
                }
            };
            let join = std::thread::Builder::new()
                .name(format!("dcea-sink-{}", sinks.len()))
                .spawn(body)
                .map_err(|e| Error::io("starting a sink thread", e))?;
            let labels = Metrics::sink(&name);
            sinks.push(SinkHandle { name, queue, status, join: Some(join), labels });
        }
        Ok(Delivery {
            storm: StormControl::new(opts.storm),
            sinks,
            metrics,
            summaries: Vec::new(),
            storm_summaries: 0,
            shed: 0,
            suppressed: 0,
            submitted: 0,
        })
    }

    /// Hand an alert to every sink; never blocks. Returns the storm decision (callers skip
    /// follow-up work, such as trust re-checks, for suppressed repeats).
    pub fn submit(&mut self, alert: Alert) -> Decision {
        self.submit_at(alert, Instant::now())
    }

    pub fn submit_at(&mut self, alert: Alert, now: Instant) -> Decision {
        self.submitted += 1;
        self.metrics.alerts.get_or_create(&Metrics::rule(&alert.rule, alert.priority)).inc();
        let alert = Arc::new(alert);
        let mut summaries = std::mem::take(&mut self.summaries);
        let decision = self.storm.admit(&alert, now, &mut summaries);
        for s in summaries.drain(..) {
            self.storm_summaries += 1;
            self.enqueue(Arc::new(s));
        }
        self.summaries = summaries;
        match decision {
            Decision::Deliver => self.enqueue(alert),
            Decision::Suppress => {
                self.suppressed += 1;
                self.metrics.suppressed.get_or_create(&Metrics::rule(&alert.rule, alert.priority)).inc();
            }
        }
        decision
    }

    fn enqueue(&mut self, alert: Arc<Alert>) {
        for s in &self.sinks {
            if let Pushed::Shed(gone) = s.queue.push(alert.clone()) {
                self.shed += 1;
                let labels = ShedLabels {
                    sink: s.name.clone(),
                    rule: gone.rule.clone(),
                    priority: gone.priority.name().to_string(),
                };
                self.metrics.shed.get_or_create(&labels).inc();
            }
            self.metrics.queue_depth.get_or_create(&s.labels).set(s.queue.len() as i64);
        }
    }

    /// Once a second: storm summaries of ended windows; the first fatal sink error.
    pub fn tick(&mut self) -> Result<(), Error> {
        for s in self.storm.expire(Instant::now()) {
            self.storm_summaries += 1;
            self.enqueue(Arc::new(s));
        }
        for s in &self.sinks {
            self.metrics.queue_depth.get_or_create(&s.labels).set(s.queue.len() as i64);
            let fatal = s.status.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(why) = fatal {
                return Err(Error::Usage(why));
            }
        }
        Ok(())
    }

    /// SIGUSR1: every file sink reopens its file.
    pub fn reopen(&self) {
        for s in &self.sinks {
            s.status.reopen.store(true, Ordering::Release);
        }
    }

    pub fn delivered(&self) -> Vec<(String, u64)> {
        self.sinks.iter().map(|s| (s.name.clone(), s.status.delivered.load(Ordering::Relaxed))).collect()
    }

    /// Summarise open storm windows, let every sink drain its queue (network sinks spool the
    /// rest) for up to `grace`, then return.
    pub fn stop(mut self, grace: Duration) -> DeliverySummary {
        for s in self.storm.flush(Instant::now()) {
            self.storm_summaries += 1;
            self.enqueue(Arc::new(s));
        }
        for s in &self.sinks {
            s.queue.close();
        }
        let deadline = Instant::now() + grace;
        for s in &mut self.sinks {
            while !s.status.done.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if s.status.done.load(Ordering::Acquire) {
                if let Some(j) = s.join.take() {
                    let _ = j.join();
                }
            } else {
                eprintln!(
                    "dcea: sink {} did not finish within {:?}: {} alerts left in its queue",
                    s.name,
                    grace,
                    s.queue.len()
                );
            }
        }
        DeliverySummary {
            submitted: self.submitted,
            suppressed: self.suppressed,
            storm_summaries: self.storm_summaries,
            shed: self.shed,
            sinks: self
                .sinks
                .iter()
                .map(|s| (s.name.clone(), s.status.delivered.load(Ordering::Relaxed), s.queue.len()))
                .collect(),
        }
    }
}

/// The loop of a sink that writes alerts one by one: a failed write is retried with backoff
/// (the queue sheds meanwhile) except a closed stdout, which stops the monitor.
fn run_writer(
    mut w: Box<dyn SinkWriter>,
    name: String,
    queue: Arc<ShedQueue>,
    metrics: Arc<Metrics>,
    status: Arc<SinkStatus>,
) {
    let labels = Metrics::sink(&name);
    let mut failing = false;
    while let Some(batch) = queue.pop_batch(512, Duration::from_millis(200)) {
        if status.reopen.swap(false, Ordering::AcqRel)
            && let Err(e) = w.reopen()
        {
            tracing::warn!("{name}: reopen: {e}");
        }
        for alert in batch {
            let mut backoff = Duration::from_millis(50);
            loop {
                match w.write(&alert) {
                    Ok(()) => {
                        metrics.delivered.get_or_create(&labels).inc();
                        status.delivered();
                        if failing {
                            tracing::info!("{name}: writing again");
                            failing = false;
                        }
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        *status.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{name} closed: {e}"));
                        status.stopped();
                        return;
                    }
                    Err(e) => {
                        metrics.sink_errors.get_or_create(&labels).inc();
                        if !failing {
                            tracing::warn!("{name}: {e}; retrying");
                            failing = true;
                        }
                        if queue.is_empty() && status.done.load(Ordering::Acquire) {
                            break;
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        if let Err(e) = w.flush() {
            if e.kind() == io::ErrorKind::BrokenPipe {
                *status.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{name} closed: {e}"));
                status.stopped();
                return;
            }
            metrics.sink_errors.get_or_create(&labels).inc();
        }
        metrics.queue_depth.get_or_create(&labels).set(queue.len() as i64);
    }
    let _ = w.flush();
    status.stopped();
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::output::{Priority, SOURCE, rfc3339_nanos};

    pub fn alert(rule: &str, priority: Priority) -> Alert {
        Alert {
            time: rfc3339_nanos(1_700_000_000_123_456_789),
            rule: rule.into(),
            priority,
            output: format!("{rule} happened"),
            output_fields: BTreeMap::new(),
            source: SOURCE,
            tags: vec!["container".into()],
            hostname: "node-1".into(),
        }
    }

    #[test]
    fn file_sink_receives_storm_controlled_alerts_and_unwritable_file_fails_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let opts = DeliveryOptions {
            outputs: vec![OutputSpec::File(path.clone())],
            state_dir: dir.path().into(),
            ..Default::default()
        };
        let metrics = Metrics::new();
        let mut d = Delivery::start(&opts, metrics.clone()).unwrap();
        let mut hit = alert("Credential file opened in a container", Priority::Warning);
        hit.output_fields.insert("container.id".into(), serde_json::json!("c1"));
        for _ in 0..100 {
            d.submit(hit.clone());
        }
        let mut esc = alert("Container escape into host namespace", Priority::Critical);
        esc.tags.push("escape".into());
        d.submit(esc);
        d.stop(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "first, escape, summary at stop: {text}");
        assert_eq!(lines[2]["output_fields"]["dcea.suppressed"], 99);
        assert!(metrics.encode().contains(
            "dcea_alerts_suppressed_total{rule=\"Credential file opened in a container\",priority=\"Warning\"} 99"
        ));

        let bad = DeliveryOptions { outputs: vec![OutputSpec::File("/proc/no-such-dir/x".into())], ..opts };
        let e = Delivery::start(&bad, Metrics::new()).err().expect("start-up error").to_string();
        assert!(e.contains("--output file:/proc/no-such-dir/x: cannot open it"), "{e}");
    }
}
