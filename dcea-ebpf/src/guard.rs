//! Enforcement at the hook. A behaviour hook that recognises an escape technique by itself
//! (a [`Guard`]) asks here what the agent wants done: nothing, SIGKILL the task before the
//! syscall returns, or that and condemn its container, whose every task is then killed at its
//! next hooked event. With `--enforce` off the whole path is a load-time constant the verifier
//! drops.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_ns, bpf_send_signal},
    macros::map,
    maps::{Array, HashMap},
};
use dcea_common::{GUARDS, Guard, TASK_CONTAINER_CGROUP, action, flags, runtime, stats};

use crate::{DCEA_RUNTIME, DCEA_TASKS, SIGKILL, count, task::config};

/// The action per guard ([`action`]), written by the agent from its rules.
#[map]
static DCEA_GUARDS: Array<u32> = Array::with_max_entries(GUARDS as u32, 0);

/// cgroup v2 id of each condemned container → when it was condemned (ktime ns).
#[map]
static DCEA_CONDEMNED: HashMap<u64, u64> = HashMap::with_max_entries(CONDEMNED_MAX, 0);
const CONDEMNED_MAX: u32 = 4096;

/// The root cgroup's id: on a host whose containers are not placed in the cgroup v2 tree, every
/// task reports it. Condemning it would kill the host.
const ROOT_CGROUP_ID: u64 = 1;

/// Apply the agent's action for `guard` to the current task; the record flags that say what
/// was done (the guard itself, [`flags::KILLED`], [`flags::CONDEMNED`]).
#[inline(always)]
pub fn enforce(guard: Guard) -> u32 {
    let mut fl = guard.flag();
    if config!(enforce) == 0 {
        return fl;
    }
    let act = DCEA_GUARDS.get(guard as u32).copied().unwrap_or(action::ALERT);
    if act == action::ALERT {
        return fl;
    }
    // SAFETY: a helper on the current task.
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        fl |= flags::KILLED;
        count(stats::KILLED);
    }
    if act == action::KILL_CONTAINER {
        fl |= condemn_current();
    }
    fl
}

/// Condemn the current task's cgroup: [`flags::CONDEMNED`] when it is now in the set. Only a
/// cgroup named by a container id: a sandbox on the host (its own PID namespace, but the
/// cgroup of a user session or a service) loses the process, never its session.
#[inline(always)]
fn condemn_current() -> u32 {
    // SAFETY: helpers without pointer arguments.
    let (cgroup, now) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_ns()) };
    if cgroup <= ROOT_CGROUP_ID {
        return 0;
    }
    // The verdict of the task's last exec (a cgroup walk here would cost every guarded
    // hook thousands of verifier steps).
    let pid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    // SAFETY: map value pointer valid for this program run.
    let named = DCEA_TASKS.get_ptr(pid).is_some_and(|s| unsafe { (*s).flags } & TASK_CONTAINER_CGROUP != 0);
    if !named {
        return 0;
    }
    if DCEA_CONDEMNED.insert(cgroup, now, 0).is_err() {
        return 0;
    }
    if let Some(slot) = DCEA_RUNTIME.get_ptr_mut(runtime::CONDEMNED_SLOT) {
        // SAFETY: array slot; a plain store (the agent only ever clears it when the map is empty).
        unsafe { *slot = 1 };
    }
    count(stats::CONDEMNED);
    flags::CONDEMNED
}

/// SIGKILL the current task when its container is condemned; true when it was. One array read
/// while nothing is condemned.
#[inline(always)]
pub fn kill_if_condemned() -> bool {
    if config!(enforce) == 0 {
        return false;
    }
    let any = DCEA_RUNTIME.get(runtime::CONDEMNED_SLOT).copied().unwrap_or(0);
    if any == 0 {
        return false;
    }
    // SAFETY: a helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: a lookup by value; the entry is not dereferenced.
    if unsafe { DCEA_CONDEMNED.get(cgroup) }.is_none() {
        return false;
    }
    // SAFETY: a helper on the current task.
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        count(stats::KILLED);
        count(stats::CONDEMNED_KILLED);
    }
    true
}
