//! The trust checker on its own thread, so a pass over 10,000 processes never delays the
//! kernel's alerts: passes every interval, re-checks on request, the database saved when it
//! changed (at most every `save_every`, and at stop).

use std::{
    sync::mpsc::{self, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{PassStats, TrustChecker, TrustStore};
use crate::{monitor::alert::escape_key, output::Alert};

enum Request {
    Recheck(u32),
    /// A full pass now (the kernel lost records: they could have been escapes).
    Pass,
    Reported {
        pid: u32,
        entered: u32,
    },
    Stop,
}

/// What the worker sends back to the monitor's loop.
#[derive(Debug)]
pub enum Output {
    Alert(Box<Alert>),
    /// The first pass is done (the baseline of every running container is taken).
    FirstPass(PassStats),
    /// A later pass is done (for the metrics).
    Pass(PassStats),
}

/// What the trust thread is told about an alert another path raised (see
/// [`TrustHandle::note`]); taken before the alert is handed to delivery.
#[derive(Clone, Copy, Debug, Default)]
pub struct Note {
    escape: Option<(u32, u32)>,
    pid: Option<u32>,
}

impl Note {
    pub fn of(alert: &Alert) -> Note {
        Note {
            escape: escape_key(alert),
            pid: alert.output_fields.get("proc.pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()),
        }
    }
}

/// Cheap to clone; every method returns at once.
#[derive(Clone)]
pub struct TrustHandle {
    tx: mpsc::Sender<Request>,
}

impl TrustHandle {
    /// Verify `pid` and its descendants now (results arrive as [`Output::Alert`]).
    pub fn recheck(&self, pid: u32) {
        let _ = self.tx.send(Request::Recheck(pid));
    }

    /// Another path raised `alert`: an escape is remembered (so no pass reports it again)
    /// and the process tree it names is re-checked.
    pub fn note_alert(&self, alert: &Alert) {
        self.note(Note::of(alert), true);
    }

    /// As [`TrustHandle::note_alert`]; `recheck: false` only remembers the escape (the
    /// alert was a storm-controlled repeat whose process was just re-checked). Returns
    /// whether a re-check was requested.
    pub fn note(&self, note: Note, recheck: bool) -> bool {
        if let Some((pid, entered)) = note.escape {
            let _ = self.tx.send(Request::Reported { pid, entered });
        }
        match note.pid {
            Some(pid) if recheck => {
                self.recheck(pid);
                true
            }
            _ => false,
        }
    }

    /// Run a full pass now.
    pub fn pass_now(&self) {
        let _ = self.tx.send(Request::Pass);
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerSummary {
    pub passes: u64,
    pub rechecks: u64,
    pub alerts: u64,
    pub slowest_pass_us: u64,
    pub last: PassStats,
}

pub struct WorkerOptions {
    pub interval: Duration,
    /// Where the table is persisted; `None` keeps it in memory only.
    pub store: Option<TrustStore>,
    pub save_every: Duration,
}

pub struct TrustWorker {
    pub handle: TrustHandle,
    join: JoinHandle<WorkerSummary>,
}

impl TrustWorker {
    pub fn spawn(
        checker: TrustChecker,
        opts: WorkerOptions,
        out: tokio::sync::mpsc::UnboundedSender<Output>,
    ) -> std::io::Result<TrustWorker> {
        let (tx, rx) = mpsc::channel();
        let join = thread::Builder::new().name("dcea-trust".into()).spawn(move || run(checker, opts, rx, out))?;
        Ok(TrustWorker { handle: TrustHandle { tx }, join })
    }

    /// Finish the current request, save the table, and return what was done.
    pub fn stop(self) -> WorkerSummary {
        let _ = self.handle.tx.send(Request::Stop);
        self.join.join().unwrap_or_default()
    }
}

fn run(
    mut checker: TrustChecker,
    opts: WorkerOptions,
    rx: mpsc::Receiver<Request>,
    out: tokio::sync::mpsc::UnboundedSender<Output>,
) -> WorkerSummary {
    let mut summary = WorkerSummary::default();
    let mut saver = Saver { store: opts.store, every: opts.save_every, last: None, failed: false };
    let send = |alerts: Vec<Alert>, summary: &mut WorkerSummary| {
        summary.alerts += alerts.len() as u64;
        alerts.into_iter().all(|a| out.send(Output::Alert(Box::new(a))).is_ok())
    };
    let pass = |checker: &mut TrustChecker, summary: &mut WorkerSummary| {
        let alerts = checker.pass();
        summary.passes += 1;
        summary.last = checker.last;
        summary.slowest_pass_us = summary.slowest_pass_us.max(checker.last.elapsed_us);
        tracing::debug!("trust pass: {:?}", checker.last);
        send(alerts, summary)
    };
    if !pass(&mut checker, &mut summary) || out.send(Output::FirstPass(checker.last)).is_err() {
        return summary;
    }
    saver.maybe_save(&mut checker, true);
    let mut next = Instant::now() + opts.interval;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Request::Recheck(pid)) => {
                summary.rechecks += 1;
                if !send(checker.recheck(pid), &mut summary) {
                    break;
                }
            }
            Ok(Request::Reported { pid, entered }) => checker.note_reported(pid, entered),
            Ok(Request::Pass) => {
                if !pass(&mut checker, &mut summary) || out.send(Output::Pass(checker.last)).is_err() {
                    break;
                }
            }
            Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if !pass(&mut checker, &mut summary) || out.send(Output::Pass(checker.last)).is_err() {
                    break;
                }
                // A pass longer than the interval starts the next one after a full interval.
                next = (next + opts.interval).max(Instant::now() + opts.interval / 2);
            }
        }
        saver.maybe_save(&mut checker, false);
    }
    saver.maybe_save(&mut checker, true);
    summary
}

struct Saver {
    store: Option<TrustStore>,
    every: Duration,
    last: Option<Instant>,
    failed: bool,
}

impl Saver {
    fn maybe_save(&mut self, checker: &mut TrustChecker, now: bool) {
        let Some(store) = &self.store else { return };
        let due = now || self.last.is_none_or(|t| t.elapsed() >= self.every);
        if !checker.dirty() || !due {
            return;
        }
        match store.save(&checker.snapshot()) {
            Ok(()) => {
                if self.failed {
                    tracing::info!("trust database saved again to {}", store.path.display());
                }
                self.failed = false;
            }
            Err(e) if !self.failed => {
                checker.mark_dirty();
                tracing::warn!("{e}; the trust table stays in memory and is saved again later");
                self.failed = true;
            }
            Err(_) => checker.mark_dirty(),
        }
        self.last = Some(Instant::now());
    }
}
