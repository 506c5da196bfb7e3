//! Self-protection: a container task that signals or traces the agent is reported from the
//! kernel, before the signal can stop or kill the agent.
//!
//! Signals are seen at `signal_generate`, where every path that sends one meets (kill, tkill,
//! tgkill, pidfd_send_signal, a kill of a process group or of every process, a ptrace
//! attach's SIGSTOP), with the target's task in hand. A signal to the agent goes to the
//! sentinel's ring: the agent may be stopped or dead by the time it could read its own.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, map},
    maps::{HashMap, RingBuf},
    programs::BtfTracePointContext,
};
use dcea_common::{Hook, agent_role, flags};

use crate::{
    DCEA_EVENTS,
    behaviour::{begin_on, current_container_task},
    task::Task,
};

/// Thread id → [`agent_role`] of the agent's and the sentinel's threads, kept by the agent.
#[map]
static DCEA_SELF: HashMap<u32, u32> = HashMap::with_max_entries(agent_role::MAX_THREADS, 0);

/// Read by the sentinel only; a few signals a second is the most it ever sees.
#[map]
static DCEA_SENTINEL: RingBuf = RingBuf::with_byte_size(SENTINEL_RING_BYTES, 0);
const SENTINEL_RING_BYTES: u32 = 64 << 10;

#[inline(always)]
fn role_of(tid: u32) -> u32 {
    // SAFETY: plain u32 value copied out.
    unsafe { DCEA_SELF.get(tid).copied().unwrap_or(0) }
}

/// [`flags::AGENT_TARGET`] when `pid` is a thread of the agent or the sentinel.
#[inline(always)]
pub(crate) fn target_flag(pid: u32) -> u32 {
    if role_of(pid) != 0 { flags::AGENT_TARGET } else { 0 }
}

/// Signals that can stop or end a process when it does not handle them (everything but the
/// existence check 0 and the signals whose default is to be ignored or to continue).
#[inline(always)]
fn can_stop_or_end(sig: u64) -> bool {
    const SIGCHLD: u64 = 17;
    const SIGCONT: u64 = 18;
    const SIGURG: u64 = 23;
    const SIGWINCH: u64 = 28;
    !matches!(sig, 0 | SIGCHLD | SIGCONT | SIGURG | SIGWINCH)
}

/// signal_generate(sig, info, task, group, result): raised in the sender's context.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> u32 {
    let sig: u64 = ctx.arg(0);
    if !can_stop_or_end(sig) {
        return 0;
    }
    let target = Task(ctx.arg(2));
    let tgid = target.tgid();
    let role = role_of(tgid);
    // The agent's own signals (a thread waking another, the sentinel's SIGCONT) are not threats.
    if role == 0 || role_of((bpf_get_current_pid_tgid() >> 32) as u32) != 0 {
        return 0;
    }
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    let args = [sig, tgid as u64, target.pid() as u64, role as u64];
    let extra = flags::BEFORE_RESULT | flags::AGENT_TARGET;
    let record = if role == agent_role::AGENT {
        begin_on(&DCEA_SENTINEL, Hook::Signal, task, &snap, 0, args, extra, true)
    } else {
        begin_on(&DCEA_EVENTS, Hook::Signal, task, &snap, 0, args, extra, true)
    };
    if let Some(record) = record {
        record.submit();
    }
    0
}
