//! Prometheus metrics and the health check of a running monitor (`--metrics-addr`).
//!
//! One [`Metrics`] is shared by the drain loop, the delivery stage and the sink threads; the
//! prometheus-client types are atomics, so updating them never takes a lock the drain waits on.

pub mod server;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `main` (behaviour and summary records) or `priority` (possible escapes, tampering, kills).
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
    pub priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    pub sink: String,
    pub rule: String,
    pub priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// An allowlist profile's mode: learn, monitor or enforce.
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `quarantine` or `release`.
    pub action: &'static str,
}

/// Every series dcea exports. Names are the Prometheus ones without the `dcea_` prefix and
/// the `_total` suffix the encoder adds to counters.
pub struct Metrics {
    registry: Registry,
    pub kernel_emitted: Counter,
    pub kernel_lost: Family<ChannelLabels, Counter>,
    pub kernel_untracked: Counter,
    pub kernel_killed: Counter,
    pub kernel_denied: Counter,
    pub records_decoded: Counter,
    pub decode_errors: Counter,
    pub unresolved_ranges: Counter,
    pub allowlist_learned: Counter,
    pub allowlist_not_allowed: Counter,
    pub allowlist_killed: Counter,
    pub allowlist_profiles: Family<ModeLabels, Gauge>,
    pub allowlist_enforced_containers: Gauge,
    pub alerts: Family<RuleLabels, Counter>,
    pub suppressed: Family<RuleLabels, Counter>,
    pub shed: Family<ShedLabels, Counter>,
    pub delivered: Family<SinkLabels, Counter>,
    pub sink_errors: Family<SinkLabels, Counter>,
    pub queue_depth: Family<SinkLabels, Gauge>,
    pub spool_depth: Family<SinkLabels, Gauge>,
    pub spool_overflow: Family<SinkLabels, Counter>,
    pub trust_passes: Counter,
    pub trust_pass_seconds: Histogram,
    pub trust_rechecks: Counter,
    pub rules_reloads: Family<ResultLabels, Counter>,
    pub programs_attached: Gauge,
    pub quarantines: Family<ActionLabels, Counter>,
    pub quarantined: Gauge,
    pub health: Health,
}

/// What `/healthz` answers from.
#[derive(Default)]
pub struct Health {
    /// Kernel programs attached.
    pub attached: AtomicBool,
    /// Poll mode: the trust passes are the detector.
    pub polling: AtomicBool,
    /// CLOCK_MONOTONIC milliseconds of the drain loop's last turn.
    pub heartbeat_ms: AtomicU64,
}

/// The drain loop turns at least every second; three seconds without a turn is a stall.
pub const STALL: Duration = Duration::from_secs(3);

impl Health {
    pub fn beat(&self) {
        self.heartbeat_ms.store(crate::sys::monotonic_ns() / 1_000_000, Ordering::Relaxed);
    }

    /// Programs attached (or polling) and the pipeline draining.
    pub fn healthy(&self) -> Result<(), String> {
        if !self.attached.load(Ordering::Relaxed) && !self.polling.load(Ordering::Relaxed) {
            return Err("no kernel programs attached and no polling".into());
        }
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        let age = (crate::sys::monotonic_ns() / 1_000_000).saturating_sub(last);
        if last == 0 || age > STALL.as_millis() as u64 {
            return Err(format!("the pipeline has not drained for {age} ms"));
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut r = Registry::with_prefix("dcea");
        fn reg<M: prometheus_client::registry::Metric + Clone>(r: &mut Registry, name: &str, help: &str, m: M) -> M {
            r.register(name, help, m.clone());
            m
        }
        let trust_pass_seconds = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        Arc::new(Metrics {
            kernel_emitted: reg(
                &mut r,
                "kernel_events_emitted",
                "Records the kernel programs wrote",
                Counter::default(),
            ),
            kernel_lost: reg(
                &mut r,
                "kernel_events_lost",
                "Records lost in the kernel, ring buffer full, per channel",
                Family::default(),
            ),
            kernel_untracked: reg(
                &mut r,
                "kernel_tasks_untracked",
                "Tasks the kernel task map could not take",
                Counter::default(),
            ),
            kernel_killed: reg(&mut r, "kernel_killed", "Tasks killed in the kernel (enforce)", Counter::default()),
            kernel_denied: reg(
                &mut r,
                "kernel_denied",
                "Operations refused with EPERM by the BPF LSM (enforce)",
                Counter::default(),
            ),
            records_decoded: reg(&mut r, "records_decoded", "Ring-buffer records decoded", Counter::default()),
            decode_errors: reg(&mut r, "decode_errors", "Ring-buffer records that did not decode", Counter::default()),
            unresolved_ranges: reg(
                &mut r,
                "mprotect_ranges_unresolved",
                "Ranges made executable whose mapping was not read (caller gone, or over its budget of maps reads)",
                Counter::default(),
            ),
            allowlist_learned: reg(
                &mut r,
                "allowlist_learned",
                "Programs added to allowlist profiles while learning",
                Counter::default(),
            ),
            allowlist_not_allowed: reg(
                &mut r,
                "allowlist_not_allowed",
                "Container execs of programs not in their workload's allowlist (reported or killed)",
                Counter::default(),
            ),
            allowlist_killed: reg(
                &mut r,
                "allowlist_killed",
                "Container execs killed in the kernel for not being in an enforced allowlist",
                Counter::default(),
            ),
            allowlist_profiles: reg(&mut r, "allowlist_profiles", "Allowlist profiles by mode", Family::default()),
            allowlist_enforced_containers: reg(
                &mut r,
                "allowlist_enforced_containers",
                "Containers whose allowlist the kernel enforces",
                Gauge::default(),
            ),
            alerts: reg(&mut r, "alerts", "Alerts raised, before storm control", Family::default()),
            suppressed: reg(&mut r, "alerts_suppressed", "Alerts folded into storm summaries", Family::default()),
            shed: reg(&mut r, "alerts_shed", "Alerts dropped from a full sink queue", Family::default()),
            delivered: reg(&mut r, "alerts_delivered", "Alerts a sink delivered", Family::default()),
            sink_errors: reg(&mut r, "sink_errors", "Failed deliveries (retried or spooled)", Family::default()),
            queue_depth: reg(&mut r, "sink_queue_depth", "Alerts waiting in a sink's queue", Family::default()),
            spool_depth: reg(&mut r, "sink_spool_depth", "Alerts waiting in a sink's on-disk spool", Family::default()),
            spool_overflow: reg(
                &mut r,
                "sink_spool_overflow",
                "Alerts the full spool could not take",
                Family::default(),
            ),
            trust_passes: reg(&mut r, "trust_passes", "Trust passes over every container process", Counter::default()),
            trust_pass_seconds: reg(
                &mut r,
                "trust_pass_duration_seconds",
                "Duration of a trust pass",
                trust_pass_seconds,
            ),
            trust_rechecks: reg(&mut r, "trust_rechecks", "Trust re-checks requested", Counter::default()),
            rules_reloads: reg(&mut r, "rules_reloads", "Rule reloads on SIGHUP by result", Family::default()),
            programs_attached: reg(&mut r, "programs_attached", "Kernel programs attached", Gauge::default()),
            quarantines: reg(
                &mut r,
                "quarantines",
                "Network quarantines and releases of containers, by action",
                Family::default(),
            ),
            quarantined: reg(
                &mut r,
                "quarantined_containers",
                "Containers whose network is quarantined",
                Gauge::default(),
            ),
            registry: r,
            health: Health::default(),
        })
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn rule(rule: &str, priority: crate::output::Priority) -> RuleLabels {
        RuleLabels { rule: rule.to_string(), priority: priority.name().to_string() }
    }

    pub fn sink(name: &str) -> SinkLabels {
        SinkLabels { sink: name.to_string() }
    }
}

/// A kernel counter read as a running total, exported as a Prometheus counter.
#[derive(Default)]
pub struct TotalTracker {
    last: u64,
}

impl TotalTracker {
    /// Adds what `total` grew by since the last call; returns the growth.
    pub fn update(&mut self, counter: &Counter, total: u64) -> u64 {
        let delta = total.saturating_sub(self.last);
        if delta > 0 {
            counter.inc_by(delta);
        }
        self.last = self.last.max(total);
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_and_move() {
        let m = Metrics::new();
        m.alerts.get_or_create(&Metrics::rule("Test rule", crate::output::Priority::Critical)).inc();
        m.kernel_lost.get_or_create(&ChannelLabels { channel: "priority" }).inc_by(3);
        let mut t = TotalTracker::default();
        assert_eq!(t.update(&m.kernel_emitted, 10), 10);
        assert_eq!(t.update(&m.kernel_emitted, 15), 5);
        let text = m.encode();
        assert!(text.contains("dcea_alerts_total{rule=\"Test rule\",priority=\"Critical\"} 1"), "{text}");
        assert!(text.contains("dcea_kernel_events_lost_total{channel=\"priority\"} 3"), "{text}");
        assert!(text.contains("dcea_kernel_events_emitted_total 15"), "{text}");
        assert!(text.contains("dcea_trust_pass_duration_seconds_bucket"), "{text}");
    }

    #[test]
    fn health_needs_programs_or_polling_and_a_recent_drain() {
        let h = Health::default();
        assert!(h.healthy().is_err());
        h.attached.store(true, Ordering::Relaxed);
        assert!(h.healthy().unwrap_err().contains("not drained"));
        h.beat();
        assert!(h.healthy().is_ok());
    }
}
