//! Enforcement at the hook. A behaviour hook that recognises an escape technique by itself
//! (a [`Guard`]) asks here what the agent wants done: nothing, SIGKILL the task before the
//! syscall returns, or that and condemn its container, whose every task is then killed at its
//! next hooked event. With `--enforce` off the whole path is a load-time constant the verifier
//! drops.
//!
//! Guards travel as codes (0: none, else the guard + 1) computed without branches, and pass
//! through [`opaque`] before and after the action: the 5.10 and 6.1 verifiers keep one state
//! per constant a branch leaves in a register, and would otherwise verify the whole record
//! emission once per guard and once per outcome.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_send_signal},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use dcea_common::{GUARDS, Guard, TASK_CONTAINER_CGROUP, action, flags, runtime, stats};

use crate::{DCEA_RUNTIME, DCEA_TASKS, SIGKILL, count, task::config};

/// The action per guard ([`action`]), written by the agent from its rules.
#[map]
pub(crate) static DCEA_GUARDS: Array<u32> = Array::with_max_entries(GUARDS as u32, 0);

/// cgroup v2 id of a container → the guards (bit `1 << guard`) a rule's exception spares it
/// from: the record is still sent, the action is not taken. Written by the agent.
#[map]
static DCEA_EXEMPT: HashMap<u64, u32> = HashMap::with_max_entries(EXEMPT_MAX, 0);
const EXEMPT_MAX: u32 = 4096;

/// Whether the current task's container is spared from `guard`'s action (see [`DCEA_EXEMPT`]).
/// Looked up only once a guard matched with an action.
#[inline(always)]
pub(crate) fn exempt(guard: u32) -> bool {
    // SAFETY: a helper without arguments; a lookup by value, the entry is copied.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    unsafe { DCEA_EXEMPT.get(cgroup) }.is_some_and(|mask| (*mask >> (guard & 31)) & 1 != 0)
}

/// cgroup v2 id of each condemned container → when it was condemned (ktime ns).
#[map]
static DCEA_CONDEMNED: HashMap<u64, u64> = HashMap::with_max_entries(CONDEMNED_MAX, 0);
const CONDEMNED_MAX: u32 = 4096;

/// One per-CPU word that values pass through to become unknown to the verifier.
#[map]
static DCEA_OPAQUE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The root cgroup's id: on a host whose containers are not placed in the cgroup v2 tree, every
/// task reports it. Condemning it would kill the host.
const ROOT_CGROUP_ID: u64 = 1;

/// `v`, as a value the verifier knows nothing about (a map value is never tracked): the paths
/// that computed different constants merge here.
#[inline(always)]
pub fn opaque(v: u32) -> u32 {
    match DCEA_OPAQUE.get_ptr_mut(0) {
        Some(slot) => {
            // SAFETY: per-CPU slot, used only within this call on this CPU.
            unsafe {
                core::ptr::write_volatile(slot, v);
                core::ptr::read_volatile(slot)
            }
        }
        None => v,
    }
}

/// The code of `guard` when `matched` is 1, else 0 (no guard), without a branch.
#[inline(always)]
pub fn code(guard: Guard, matched: u32) -> u32 {
    (guard as u32 + 1) * matched
}

/// Apply the agent's action for guard `code` (see [`code`]) to the current task; the record
/// flags that say what was done (the guard itself, [`flags::KILLED`], [`flags::CONDEMNED`]).
#[inline(always)]
pub fn enforce(code: u32) -> u32 {
    let code = opaque(code);
    let mut fl = (code << flags::GUARD_SHIFT) & flags::GUARD_MASK;
    if config!(enforce) == 0 {
        return fl;
    }
    // Code 0 looks up index u32::MAX: no entry, no action.
    let act = DCEA_GUARDS.get(code.wrapping_sub(1)).copied().unwrap_or(action::ALERT);
    if act != action::ALERT && !exempt(code.wrapping_sub(1)) {
        // SAFETY: a helper on the current task.
        if unsafe { bpf_send_signal(SIGKILL) } == 0 {
            fl |= flags::KILLED;
            count(stats::KILLED);
        }
        if act == action::KILL_CONTAINER {
            fl |= condemn_current();
        }
    }
    opaque(fl)
}

/// [`enforce`] for a guard known at the call site (the only one a hook can match).
#[inline(always)]
pub fn enforce_guard(guard: Guard) -> u32 {
    enforce(code(guard, 1))
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
    // The verdict of the task's last exec (a cgroup walk here would cost every guarded hook
    // thousands of verifier steps).
    let pid = bpf_get_current_pid_tgid() as u32;
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
