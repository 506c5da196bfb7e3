//! `dcea monitor`: the kernel programs, the ring-buffer reader and the alert pipeline.

pub mod btf;
pub mod decode;
pub mod loader;
pub mod pipeline;

use std::{
    io::{self, BufWriter},
    path::PathBuf,
    time::Duration,
};

use aya::maps::{PerCpuArray, RingBuf};
use dcea_common::{names, stats};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

pub use loader::{CommitCredsHook, Feature, ProgramStatus, StartupReport, ebpf_object_embedded};
pub use pipeline::{AlertContext, Pipeline};

use crate::{
    Error,
    output::{Format, Sink},
    sys,
    trust::HostNamespaces,
};

#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub format: Format,
    pub enforce: bool,
    pub host_ns_pid: Option<u32>,
    pub btf_path: PathBuf,
    pub max_tasks: u32,
    pub commit_creds: CommitCredsHook,
}

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

pub async fn run(opts: MonitorOptions) -> Result<(), Error> {
    let host = HostNamespaces::detect(opts.host_ns_pid)?;
    let loader::Loaded { mut ebpf, report } = loader::load(opts.load_options(host.clone()))?;
    eprint!("{}", report.render_text());

    let ring =
        ebpf.take_map(names::EVENTS_MAP).ok_or_else(|| Error::Load(format!("map {} missing", names::EVENTS_MAP)))?;
    let ring = RingBuf::try_from(ring).map_err(|e| Error::Load(e.to_string()))?;
    // SAFETY: the RingBuf owns its map fd, which stays open while the AsyncFd owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| Error::io("polling the ring buffer", e.into()))?;

    let mut pipeline = Pipeline::new(AlertContext {
        host,
        hostname: sys::hostname(),
        realtime_offset_ns: sys::realtime_ns() as i128 - sys::monotonic_ns() as i128,
    });
    let mut sink = Sink::new(BufWriter::new(io::stdout()), opts.format);
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::io("installing SIGTERM handler", e))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io("installing SIGINT handler", e))?;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    // The kernel wakes us at once only for possible alerts; everything else is read here.
    let mut drain = tokio::time::interval(DRAIN_INTERVAL);
    let mut lost_reported = 0;
    eprintln!("dcea: ready ({} programs attached)", report.attached());

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(|e| Error::io("polling the ring buffer", e))?;
                // Clear before draining: the kernel's adaptive wakeup fires only when we have
                // caught up, so a wakeup cleared after the drain would be lost for good.
                guard.clear_ready();
                consume(guard.get_inner_mut(), &mut pipeline, &mut sink)?;
            }
            _ = drain.tick() => consume(ring.get_mut(), &mut pipeline, &mut sink)?,
            _ = tick.tick() => {
                let lost = kernel_counter(&ebpf, stats::RINGBUF_FULL);
                if lost > lost_reported {
                    tracing::warn!("{} kernel events lost: ring buffer full", lost - lost_reported);
                    lost_reported = lost;
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // What the kernel queued without a wakeup is still owed to the operator.
    consume(ring.get_mut(), &mut pipeline, &mut sink)?;
    eprintln!(
        "dcea: stopping: {} records, {} transitions, {} alerts, {} decode errors; kernel: {} emitted, {} lost (ring buffer full), {} untracked (task map full), {} killed",
        pipeline.stats.records,
        pipeline.stats.transitions,
        pipeline.stats.alerts,
        pipeline.stats.decode_errors,
        kernel_counter(&ebpf, stats::EMITTED),
        kernel_counter(&ebpf, stats::RINGBUF_FULL),
        kernel_counter(&ebpf, stats::TASKS_FULL),
        kernel_counter(&ebpf, stats::KILLED),
    );
    Ok(())
}

const DRAIN_INTERVAL: Duration = Duration::from_millis(20);

/// Process every pending record and flush the alerts they raised.
fn consume<W: io::Write>(
    rb: &mut RingBuf<aya::maps::MapData>,
    pipeline: &mut Pipeline,
    sink: &mut Sink<W>,
) -> Result<(), Error> {
    let before = pipeline.stats.records;
    while let Some(record) = rb.next() {
        if let Some(alert) = pipeline.process(&record) {
            write_or_stop(sink.write(&alert))?;
        }
    }
    tracing::trace!("consumed {} records", pipeline.stats.records - before);
    write_or_stop(sink.flush())
}

/// A closed stdout (the consumer went away) ends the monitor cleanly.
fn write_or_stop(r: io::Result<()>) -> Result<(), Error> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Error::io("stdout closed", e)),
        other => other.map_err(|e| Error::io("writing alerts to stdout", e)),
    }
}
