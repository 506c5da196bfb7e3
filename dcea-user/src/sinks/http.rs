//! HTTP(S) sink with Falcosidekick's contract: one POST of the Falco JSON per alert. While
//! the receiver is down (refused, timed out, 5xx, garbage), alerts go to the spool and are
//! replayed in order once it answers again; retries back off exponentially.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{SinkStatus, queue::ShedQueue, spool::Spool};
use crate::{
    metrics::Metrics,
    output::{Alert, Format, Priority, render},
};

#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
enum Posted {
    Delivered,
    /// Try again later (down, 5xx, 408/429, garbage).
    Retry(String),
    /// The receiver refuses this alert for good (other 4xx): retrying cannot help.
    Rejected(String),
}

pub struct HttpSink {
    opts: HttpOptions,
    client: reqwest::blocking::Client,
    spool: Spool,
}

impl HttpSink {
    /// Builds the client (a bad CA file is a start-up error) and opens the spool.
    pub fn open(opts: HttpOptions) -> Result<HttpSink, String> {
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .user_agent(concat!("dcea/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("reading --http-ca-file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--http-ca-file {}: not a PEM certificate bundle: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("--http-ca-file {}: no certificate in it", ca.display()));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| format!("HTTP client for {}: {e}", opts.url))?;
        let (spool, warnings) = Spool::open(&opts.spool_dir, opts.spool_max_bytes)
            .map_err(|e| format!("spool {}: {e}", opts.spool_dir.display()))?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        if !spool.is_empty() {
            tracing::info!("{}: {} alerts spooled by an earlier run are replayed first", opts.url, spool.depth());
        }
        Ok(HttpSink { opts, client, spool })
    }

    fn post(&self, body: &[u8]) -> Posted {
        let resp = self
            .client
            .post(&self.opts.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send();
        match resp {
            Ok(r) if r.status().is_success() => Posted::Delivered,
            Ok(r) if r.status().is_client_error() && !matches!(r.status().as_u16(), 408 | 429) => {
                Posted::Rejected(format!("HTTP {}", r.status()))
            }
            Ok(r) => Posted::Retry(format!("HTTP {}", r.status())),
            Err(e) => Posted::Retry(error_chain(&e)),
        }
    }

    pub fn run(mut self, name: String, queue: Arc<ShedQueue>, metrics: Arc<Metrics>, status: Arc<SinkStatus>) {
        let labels = Metrics::sink(&name);
        let mut backoff = BACKOFF_MIN;
        let mut next_try = Instant::now();
        let mut down_since: Option<Instant> = None;
        let mut closed = false;
        loop {
            let spooling = !self.spool.is_empty() || down_since.is_some();
            let wait = if spooling {
                next_try.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))
            } else {
                Duration::from_millis(200)
            };
            let batch = if closed { Some(Vec::new()) } else { queue.pop_batch(256, wait) };
            let Some(batch) = batch else {
                closed = true;
                continue;
            };
            metrics.queue_depth.get_or_create(&labels).set(queue.len() as i64);
            for alert in batch {
                let body = render(&alert, Format::Json).into_bytes();
                if self.spool.is_empty() && down_since.is_none() {
                    match self.post(&body) {
                        Posted::Delivered => {
                            metrics.delivered.get_or_create(&labels).inc();
                            status.delivered();
                            continue;
                        }
                        Posted::Rejected(why) => {
                            self.rejected(&name, &why, &metrics);
                            continue;
                        }
                        Posted::Retry(why) => {
                            metrics.sink_errors.get_or_create(&labels).inc();
                            tracing::warn!("{name}: {why}; spooling until it answers");
                            down_since = Some(Instant::now());
                            next_try = Instant::now() + backoff;
                        }
                    }
                }
                self.store(&name, &body, &alert, &metrics);
            }
            if let Err(e) = self.spool.sync_if_due() {
                metrics.sink_errors.get_or_create(&labels).inc();
                tracing::warn!("{name}: spool sync: {e}");
            }
            if Instant::now() >= next_try && !self.spool.is_empty() {
                match self.replay(&name, &metrics, &status) {
                    Ok(()) => {
                        if let Some(t) = down_since.take() {
                            tracing::info!(
                                "{name}: receiver back after {:.1} s; spool replayed",
                                t.elapsed().as_secs_f64()
                            );
                        }
                        backoff = BACKOFF_MIN;
                    }
                    Err(why) => {
                        metrics.sink_errors.get_or_create(&labels).inc();
                        if down_since.is_none() {
                            tracing::warn!("{name}: {why}; spooling until it answers");
                        } else {
                            tracing::debug!("{name}: still down: {why}");
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        next_try = Instant::now() + backoff;
                        down_since.get_or_insert_with(Instant::now);
                    }
                }
            } else if self.spool.is_empty() && down_since.is_some() && Instant::now() >= next_try {
                down_since = None;
            }
            metrics.spool_depth.get_or_create(&labels).set(self.spool.depth() as i64);
            if closed {
                // Stopping: what is left stays in the spool for the next start.
                let _ = self.spool.sync();
                let _ = self.spool.save_cursor();
                status.stopped();
                return;
            }
        }
    }

    fn store(&mut self, name: &str, body: &[u8], alert: &Alert, metrics: &Metrics) {
        let labels = Metrics::sink(name);
        match self.spool.append(body, alert.priority <= Priority::Critical) {
            Ok(true) => {}
            Ok(false) => {
                metrics.spool_overflow.get_or_create(&labels).inc();
                if self.spool.overflow.is_power_of_two() {
                    tracing::warn!("{name}: spool full: {} alerts dropped so far", self.spool.overflow);
                }
            }
            Err(e) => {
                metrics.spool_overflow.get_or_create(&labels).inc();
                metrics.sink_errors.get_or_create(&labels).inc();
                tracing::warn!("{name}: spool write: {e}; alert dropped");
            }
        }
    }

    /// Deliver the spool oldest first; stops at the first failure.
    fn replay(&mut self, name: &str, metrics: &Metrics, status: &SinkStatus) -> Result<(), String> {
        let labels = Metrics::sink(name);
        loop {
            let body = match self.spool.peek() {
                Ok(Some(b)) => b.to_vec(),
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("reading the spool: {e}")),
            };
            match self.post(&body) {
                Posted::Delivered => {
                    metrics.delivered.get_or_create(&labels).inc();
                    status.delivered();
                }
                Posted::Rejected(why) => self.rejected(name, &why, metrics),
                Posted::Retry(why) => return Err(why),
            }
            self.spool.ack().map_err(|e| format!("spool cursor: {e}"))?;
            metrics.spool_depth.get_or_create(&labels).set(self.spool.depth() as i64);
        }
    }

    fn rejected(&self, name: &str, why: &str, metrics: &Metrics) {
        metrics.sink_errors.get_or_create(&Metrics::sink(name)).inc();
        tracing::warn!("{name}: the receiver refused an alert ({why}); not retried");
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
