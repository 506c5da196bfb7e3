//! The sentinel process: reads the ring of signals to the agent, runs them through the same
//! pipeline and rules as the agent, writes the alerts to the same sinks (its own queues and
//! spool, under `<state_dir>/sentinel`), resumes an agent a container stopped, and notes the
//! agent's exit for the next start.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    sync::Arc,
    time::Duration,
};

use aya::maps::{Map, MapData, RingBuf};
use dcea_common::{Hook, arg};
use tokio::io::{Interest, unix::AsyncFd};

use super::{SentinelEnv, marker::SentinelLog};
use crate::{
    Error,
    container::{cri::CriCache, engine, metadata::MetadataCache},
    metrics::Metrics,
    monitor::{
        AlertContext, MonitorOptions, Pipeline,
        behaviour::{DecodedBehaviour, decode_behaviour},
    },
    output::Alert,
    sinks::{Delivery, DeliveryOptions},
    trust::HostNamespaces,
};

/// Stop signals: the agent is resumed after one (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
const STOP_SIGNALS: [u64; 4] = [19, 20, 21, 22];
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A pidfd: readable once the process has exited.
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open with flags 0 returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as libc::c_int;
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The process state letter of /proc/<pid>/stat (`T`: stopped by a signal).
fn state_of(pid: u32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

pub async fn run(opts: &MonitorOptions, env: SentinelEnv) -> Result<(), Error> {
    // The agent's stop signals reach its process group too; the sentinel ends when the agent
    // does (its pidfd), after saying what it saw.
    // Re-executed through /proc/self/exe, whose comm is "exe": a name ps and pgrep can find.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"dcea-sentinel".as_ptr()) };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
        // SAFETY: setting a signal's disposition to ignore.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    // SAFETY: the descriptor the agent handed over, ours alone from here.
    let ring_fd = unsafe { OwnedFd::from_raw_fd(env.ring_fd) };
    let agent = match pidfd_open(env.agent) {
        Ok(fd) => fd,
        Err(_) => return Ok(()), // the agent is already gone
    };
    let host = HostNamespaces::detect(opts.host_ns_pid)?;
    crate::container::host_fs::set_host_mountinfo(&host.mountinfo_path());
    let mut rules = crate::rules::RuleSet::load(&opts.rules).map_err(|e| Error::Usage(e.to_string()))?;
    for (rule, action) in &opts.actions {
        rules.set_action(rule, *action).map_err(Error::Usage)?;
    }
    // No storm control: a handful of signals, each one its own alert.
    let storm = crate::sinks::storm::StormOptions { window: Duration::ZERO, ..opts.delivery.storm };
    let delivery_opts = DeliveryOptions { state_dir: opts.state_dir.join("sentinel"), storm, ..opts.delivery.clone() };
    let mut delivery = Delivery::start(&delivery_opts, Metrics::new())?;
    let metadata =
        MetadataCache::start(engine::socket_path()).with_cri(CriCache::discover_and_start(opts.cri_socket.as_deref()));
    let mut pipeline = Pipeline::new(AlertContext::new(host, metadata));
    pipeline.rules = Some(Arc::new(rules));
    // What the kernel did is in each record's flags; the sentinel itself acts on nothing.
    pipeline.denied_in_kernel[dcea_common::Guard::AgentSignal as usize] = env.denied_in_kernel;
    let map = MapData::from_fd(ring_fd).map_err(|e| Error::Load(format!("the sentinel's ring: {e}")))?;
    let rb = RingBuf::try_from(Map::RingBuf(map)).map_err(|e| Error::Load(e.to_string()))?;
    // SAFETY: both own their descriptors, which stay open while the AsyncFds own them.
    let mut ring = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) }
        .map_err(|e| Error::io("polling the sentinel ring", e.into()))?;
    // SAFETY: as above.
    let agent = unsafe { AsyncFd::register_with_interest(agent, Interest::READABLE) }
        .map_err(|e| Error::io("polling the agent's pidfd", e.into()))?;
    let mut log = SentinelLog::new(&opts.state_dir, env.agent);
    eprintln!("dcea: sentinel {} watching the agent {}", std::process::id(), env.agent);

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            ready = ring.readable_mut() => {
                let records = {
                    let mut guard = ready.map_err(|e| Error::io("polling the sentinel ring", e))?;
                    guard.clear_ready();
                    take(guard.get_inner_mut())
                };
                report(records, &mut pipeline, &mut delivery, &mut log, env.agent).await;
            }
            _ = agent.readable() => break,
            _ = tick.tick() => {
                if let Err(e) = delivery.tick() {
                    eprintln!("dcea: sentinel: {e}");
                }
            }
        }
    }
    let records = take(ring.get_mut());
    report(records, &mut pipeline, &mut delivery, &mut log, env.agent).await;
    log.agent_exited();
    eprintln!("dcea: sentinel: the agent {} exited; delivery: {}", env.agent, delivery.stop(STOP_GRACE));
    Ok(())
}

/// Every queued record, copied out of the ring.
fn take(ring: &mut RingBuf<MapData>) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    while let Some(record) = ring.next() {
        records.push(record.to_vec());
    }
    records
}

/// How long a record may wait for its container's metadata.
const METADATA_WAIT: Duration = Duration::from_secs(1);

/// The records become their alerts, submitted at once; a stop signal is undone first.
async fn report(
    records: Vec<Vec<u8>>,
    pipeline: &mut Pipeline,
    delivery: &mut Delivery,
    log: &mut SentinelLog,
    agent: u32,
) {
    let decoded: Vec<DecodedBehaviour> =
        records.iter().filter_map(|r| decode_behaviour(r).ok().and_then(DecodedBehaviour::new)).collect();
    if decoded.iter().any(|b| b.hook == Hook::Signal && STOP_SIGNALS.contains(&b.raw.args[arg::FLAGS])) {
        tokio::spawn(resume(agent));
    }
    // A container that goes for the agent first thing can be younger than the engine's answer
    // about it: its name and image are worth a moment (the agent is already being resumed).
    let deadline = tokio::time::Instant::now() + METADATA_WAIT;
    for id in
        decoded.iter().filter_map(|b| crate::container::from_cgroup_path(&b.cgroup_path)).map(|c| c.id.to_string())
    {
        while pipeline.ctx.metadata.lookup(&id).is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut out: Vec<Alert> = Vec::new();
    for record in &records {
        pipeline.process_into(record, &mut out);
    }
    for mut alert in out {
        alert.output_fields.insert("dcea.reported_by".into(), serde_json::json!("sentinel"));
        log.threat(&alert);
        eprintln!("dcea: sentinel: {}", alert.output);
        delivery.submit(alert);
    }
}

/// The stop takes effect just after the kernel reported it: wait for it, then continue the
/// agent (a tracer's stop, `t`, is not undone by SIGCONT and is left alone).
async fn resume(agent: u32) {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if state_of(agent) == Some(b'T') {
            // SAFETY: signalling the agent we watch, by the pid it handed us.
            unsafe { libc::kill(agent as libc::pid_t, libc::SIGCONT) };
            eprintln!("dcea: sentinel: resumed the agent {agent} (a container stopped it)");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_state_letter_after_a_hostile_comm() {
        let st = state_of(std::process::id()).expect("our own stat");
        assert!(b"RSD".contains(&st), "{}", st as char);
        assert_eq!(state_of(u32::MAX - 1), None);
    }
}
