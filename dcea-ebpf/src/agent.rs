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
use dcea_common::{Guard, Hook, TaskSnapshot, agent_role, flags};

use crate::{
    DCEA_EVENTS,
    behaviour::{begin_on, current_container_task},
    guard::enforce_guard,
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

/// The target's tgid and role when a signal `sig` from the current task threatens the agent
/// or its sentinel: it can stop or end them, and neither of them sent it (a thread waking
/// another, the sentinel's SIGCONT).
#[inline(always)]
pub(crate) fn threatened(sig: u64, target: Task) -> Option<(u32, u32)> {
    if !can_stop_or_end(sig) {
        return None;
    }
    let tgid = target.tgid();
    let role = role_of(tgid);
    if role == 0 || role_of((bpf_get_current_pid_tgid() >> 32) as u32) != 0 {
        return None;
    }
    Some((tgid, role))
}

/// Report a threatening signal from the current container task: to the sentinel's ring when
/// it targets the agent (which may be stopped or dead by the time it could read its own).
#[inline(always)]
pub(crate) fn report(task: Task, snap: &TaskSnapshot, sig: u64, target: Task, tgid: u32, role: u32, extra: u32) {
    let args = [sig, tgid as u64, target.pid() as u64, role as u64];
    let extra = extra | flags::BEFORE_RESULT | flags::AGENT_TARGET;
    let ring = if role == agent_role::AGENT { &DCEA_SENTINEL } else { &DCEA_EVENTS };
    if let Some(record) = begin_on(ring, Hook::Signal, task, snap, 0, args, extra, true) {
        record.submit();
    }
}

/// signal_generate(sig, info, task, group, result): raised in the sender's context once the
/// signal is queued. Where `lsm_task_kill` refused the signal it never gets here; otherwise
/// `--enforce` kills the sender and condemns its container after the fact.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> u32 {
    let sig: u64 = ctx.arg(0);
    let target = Task(ctx.arg(2));
    let Some((tgid, role)) = threatened(sig, target) else {
        return 0;
    };
    let Some((task, snap)) = current_container_task() else {
        return 0;
    };
    report(task, &snap, sig, target, tgid, role, enforce_guard(Guard::AgentSignal));
    0
}
