//! The kernel side of a running monitor: the two ring buffers (priority first), the drain
//! into the pipeline, and the kernel's counters.

use std::{io, path::Path, sync::Arc};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use dcea_common::{names, stats};
use tokio::io::{Interest, unix::AsyncFd};

use super::{AlertContext, MonitorOptions, Pipeline, loader};
use crate::enforce::condemned::Condemned;
use crate::{
    Error,
    metrics::{ChannelLabels, Metrics, TotalTracker},
};

pub struct Kernel {
    pub ebpf: aya::Ebpf,
    /// Possible escapes, tampering, kills: drained before anything else.
    pub priority: AsyncFd<RingBuf<MapData>>,
    pub ring: AsyncFd<RingBuf<MapData>>,
    pub pipeline: Pipeline,
    pub attached: usize,
    counters: Counters,
    /// Containers --enforce condemned (kill-container), kept with the kernel's set.
    condemned: Condemned,
    enforce: bool,
    /// The enforced allowlists as the kernel holds them.
    allowlist: crate::allowlist::sync::KernelAllowlist,
}

/// The kernel's running totals as last exported.
#[derive(Default)]
struct Counters {
    emitted: TotalTracker,
    lost_main: TotalTracker,
    lost_priority: TotalTracker,
    untracked: TotalTracker,
    killed: TotalTracker,
    denied: TotalTracker,
    decoded: TotalTracker,
    decode_errors: TotalTracker,
    unresolved_ranges: TotalTracker,
    allowlist_learned: TotalTracker,
    allowlist_not_allowed: TotalTracker,
    allowlist_killed: TotalTracker,
}

/// Records lost since the last look, per channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub main: u64,
    pub priority: u64,
}

impl Lost {
    pub fn any(&self) -> bool {
        self.main + self.priority > 0
    }
}

fn ring(ebpf: &mut aya::Ebpf, name: &str) -> Result<AsyncFd<RingBuf<MapData>>, Error> {
    let map = ebpf.take_map(name).ok_or_else(|| Error::Load(format!("map {name} missing")))?;
    let rb = RingBuf::try_from(map).map_err(|e| Error::Load(e.to_string()))?;
    // SAFETY: the RingBuf owns its map fd, which stays open while the AsyncFd owns the RingBuf.
    unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) }
        .map_err(|e| Error::io("polling the ring buffer", e.into()))
}

pub fn counter(ebpf: &aya::Ebpf, index: u32) -> u64 {
    ebpf.map(names::STATS_MAP)
        .and_then(|m| PerCpuArray::<_, u64>::try_from(m).ok())
        .and_then(|a| a.get(&index, 0).ok())
        .map(|v| v.iter().sum())
        .unwrap_or(0)
}

impl Kernel {
    pub fn start(opts: &MonitorOptions, ctx: &AlertContext, rules: &crate::rules::RuleSet) -> Result<Kernel, Error> {
        let loader::Loaded { mut ebpf, report } = loader::load(opts.load_options(ctx.host.clone(), rules))?;
        eprint!("{}", report.render_text());
        let priority = ring(&mut ebpf, names::PRIORITY_EVENTS_MAP)?;
        let ring = ring(&mut ebpf, names::EVENTS_MAP)?;
        let attached = report.attached();
        eprintln!("dcea: kernel programs attached ({attached})");
        let mut kernel = Kernel {
            ebpf,
            priority,
            ring,
            pipeline: Pipeline::new(ctx.clone()),
            attached,
            counters: Counters::default(),
            condemned: Condemned::load(&opts.state_dir),
            enforce: opts.enforce,
            allowlist: Default::default(),
        };
        if opts.allowlist.enabled {
            kernel.pipeline.allowlist = Some(crate::allowlist::Allowlist::new(&opts.state_dir, opts.allowlist.clone()));
        }
        kernel.pipeline.enforce = opts.enforce;
        kernel.pipeline.integrity = Some(Arc::new(crate::integrity::Integrity::new(&opts.state_dir)));
        kernel.pipeline.state_dir = Some(opts.state_dir.clone());
        for g in &report.guards {
            if let Some(guard) = dcea_common::Guard::from_name(g.guard) {
                kernel.pipeline.denied_in_kernel[guard as usize] = g.denied_in_kernel;
            }
        }
        if opts.enforce {
            // Containers condemned before a restart stay condemned under their current cgroup.
            let n = kernel.condemned.entries().count();
            kernel.enforce_condemned();
            if n > 0 {
                eprintln!("dcea: {n} condemned container(s) restored from {}", opts.state_dir.display());
            }
        }
        Ok(kernel)
    }

    /// New guard actions (SIGHUP). The rules changed, so every container's exemptions are
    /// decided again.
    pub fn set_guards(&mut self, actions: &crate::enforce::guards::GuardActions) {
        if let Err(e) = crate::enforce::guards::write(&mut self.ebpf, actions) {
            tracing::warn!("updating the kernel's guards: {e}");
        }
        self.pipeline.exemptions.reset();
        crate::enforce::exempt::clear(&mut self.ebpf);
    }

    /// Write the exemptions the pipeline decided since the last drain.
    fn write_exemptions(&mut self) {
        use crate::enforce::exempt;
        let pending = std::mem::take(&mut self.pipeline.exemptions.pending);
        if pending.is_empty() {
            return;
        }
        let Some(root) = self.condemned.cgroup2().map(Path::to_path_buf) else { return };
        for (cgroup, mask) in pending {
            match exempt::write(&mut self.ebpf, &root, &cgroup, mask) {
                Ok(id) => eprintln!(
                    "dcea: cgroup {cgroup} (id {id}) spared by rule exceptions from the kernel's action for: {}",
                    exempt::describe(mask)
                ),
                Err(e) => tracing::warn!("exempting cgroup {cgroup}: {e}"),
            }
        }
    }

    /// Carry out what the pipeline asked for (after-the-fact actions) and finish off the
    /// containers the kernel condemned: kill what is left of them, tell the engine, persist.
    pub fn enforce_condemned(&mut self) {
        if !self.enforce {
            return;
        }
        let mut fresh = Vec::new();
        for (id, cgroup) in std::mem::take(&mut self.pipeline.condemned) {
            fresh.extend(self.condemned.note(&id, &cgroup));
        }
        for r in std::mem::take(&mut self.pipeline.responses) {
            match r.action {
                crate::enforce::Action::KillContainer => {
                    fresh.extend(self.condemned.condemn_pid(&mut self.ebpf, r.tgid))
                }
                crate::enforce::Action::KillProcess => {
                    if let Some(start_time) = r.start_time {
                        crate::trust::procfs::kill_verified(r.tgid, start_time);
                    }
                }
                crate::enforce::Action::Alert => {}
            }
        }
        let report = self.condemned.sync(&mut self.ebpf);
        fresh.extend(report.condemned);
        for cgroup in &report.released {
            eprintln!("dcea: released cgroup {cgroup}: its tasks may run again");
        }
        for e in fresh {
            eprintln!("dcea: condemned container {} (cgroup {}): its tasks are killed", e.container_id, e.cgroup);
            if !e.container_id.is_empty() {
                let socket = crate::container::engine::socket_path();
                let cri_sockets = self.pipeline.ctx.metadata.cri().map(|c| c.sockets()).unwrap_or_default();
                let id = e.container_id.clone();
                // The engines may be slow or gone; the cgroup is already dead either way.
                std::thread::spawn(move || {
                    let path = format!("/containers/{id}/kill");
                    if let Err(err) = crate::container::engine::post(&socket, &path) {
                        tracing::debug!("telling the engine to kill {id}: {err}");
                    }
                    match crate::container::cri::stop_container(&cri_sockets, &id) {
                        Ok(Some(sock)) => {
                            eprintln!(
                                "dcea: condemned container {id} stopped through the CRI runtime at {}",
                                sock.display()
                            )
                        }
                        Ok(None) => {}
                        Err(err) => tracing::warn!("stopping condemned container {id} through the CRI runtime: {err}"),
                    }
                });
            }
        }
    }

    /// Process pending records, the priority ring first and again every 256 main records,
    /// calling `each` with every alert. Never waits: alerts go to bounded queues.
    pub fn drain(&mut self, mut each: impl FnMut(crate::output::Alert)) {
        let mut alerts = Vec::new();
        loop {
            while let Some(record) = self.priority.get_mut().next() {
                self.pipeline.process_into(&record, &mut alerts);
            }
            alerts.drain(..).for_each(&mut each);
            let mut n = 0;
            let rb = self.ring.get_mut();
            while n < 256
                && let Some(record) = rb.next()
            {
                self.pipeline.process_into(&record, &mut alerts);
                n += 1;
            }
            alerts.drain(..).for_each(&mut each);
            if n < 256 {
                break;
            }
        }
        self.pipeline.judge_deferred_execs(&mut alerts);
        alerts.drain(..).for_each(&mut each);
        for pid in std::mem::take(&mut self.pipeline.stopped_targets) {
            std::thread::spawn(move || crate::enforce::resume_attach_stopped(pid));
        }
        self.write_exemptions();
        self.sync_allowlist();
        if self.pipeline.condemned_seen || !self.pipeline.responses.is_empty() {
            self.pipeline.condemned_seen = false;
            self.enforce_condemned();
        }
    }

    fn sync_allowlist(&mut self) {
        if let Some(a) = self.pipeline.allowlist.as_mut()
            && !a.to_sync.is_empty()
        {
            let root = self.condemned.cgroup2().map(Path::to_path_buf);
            self.allowlist.sync(&mut self.ebpf, root.as_deref(), a);
        }
    }

    /// Once a second: profiles re-read and saved, enforcement brought in step, and the
    /// entries of containers that are gone removed.
    pub fn tick_allowlist(&mut self) {
        let Some(a) = self.pipeline.allowlist.as_mut() else { return };
        if a.tick() {
            a.adopt_running(&self.pipeline.ctx.metadata);
        }
        self.sync_allowlist();
        self.allowlist.forget_gone(&mut self.ebpf);
    }

    /// Export the kernel's and the pipeline's counters; returns what was lost since the
    /// last call.
    pub fn export(&mut self, m: &Metrics) -> Lost {
        let c = &mut self.counters;
        c.emitted.update(&m.kernel_emitted, counter(&self.ebpf, stats::EMITTED));
        c.untracked.update(&m.kernel_untracked, counter(&self.ebpf, stats::TASKS_FULL));
        c.killed.update(&m.kernel_killed, counter(&self.ebpf, stats::KILLED));
        c.denied.update(&m.kernel_denied, counter(&self.ebpf, stats::DENIED));
        c.decoded.update(&m.records_decoded, self.pipeline.stats.records);
        c.decode_errors.update(&m.decode_errors, self.pipeline.stats.decode_errors);
        c.unresolved_ranges.update(&m.unresolved_ranges, self.pipeline.stats.unresolved_ranges);
        c.allowlist_killed.update(&m.allowlist_killed, counter(&self.ebpf, stats::ALLOWLIST_KILLED));
        if let Some(a) = &self.pipeline.allowlist {
            c.allowlist_learned.update(&m.allowlist_learned, a.stats.learned);
            c.allowlist_not_allowed.update(&m.allowlist_not_allowed, a.stats.not_allowed);
            let now = std::time::SystemTime::now();
            for mode in
                [crate::allowlist::Mode::Learn, crate::allowlist::Mode::Monitor, crate::allowlist::Mode::Enforce]
            {
                let n = a.store.profiles().filter(|p| p.mode_at(now) == mode).count();
                m.allowlist_profiles.get_or_create(&crate::metrics::ModeLabels { mode: mode.name() }).set(n as i64);
            }
            m.allowlist_enforced_containers.set(self.allowlist.applied.len() as i64);
        }
        // One statement per family guard: a second get_or_create while the first guard
        // lives would wait for itself.
        let main = counter(&self.ebpf, stats::RINGBUF_FULL);
        let main = c.lost_main.update(&m.kernel_lost.get_or_create(&ChannelLabels { channel: "main" }), main);
        let priority = counter(&self.ebpf, stats::PRIORITY_RINGBUF_FULL);
        let priority =
            c.lost_priority.update(&m.kernel_lost.get_or_create(&ChannelLabels { channel: "priority" }), priority);
        Lost { main, priority }
    }
}

/// Wait until either ring buffer has records (the priority one first) and clear the
/// readiness before the drain: the kernel's adaptive wakeup fires only when we have caught
/// up, so a wakeup cleared after the drain would be lost for good. Never ready in poll mode.
pub async fn readable(kernel: &mut Option<Kernel>) -> io::Result<()> {
    let Some(k) = kernel else { return std::future::pending().await };
    tokio::select! {
        biased;
        g = k.priority.readable_mut() => g?.clear_ready(),
        g = k.ring.readable_mut() => g?.clear_ready(),
    }
    Ok(())
}
