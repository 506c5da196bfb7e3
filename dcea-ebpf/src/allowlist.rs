//! The process allowlist in enforce mode: a container whose workload's profile is enforced
//! runs only the programs the agent put in [`DCEA_ALLOWED`] for it; any other exec is killed at
//! `sched_process_exec`, before the new program's first instruction. Containers are enforced
//! only once the agent has written their entries ([`DCEA_ALLOW_ENFORCED`]), so a container the
//! agent has not synced yet is judged in user space instead of killed.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_send_signal},
    macros::map,
    maps::HashMap,
};
use dcea_common::{AllowKey, allow, flags, runtime, stats};

use crate::{DCEA_RUNTIME, SIGKILL, count};

/// cgroup v2 id of an enforced container → [`allow`] bits. Written by the agent.
#[map]
static DCEA_ALLOW_ENFORCED: HashMap<u64, u32> = HashMap::with_max_entries(ENFORCED_MAX, 0);
const ENFORCED_MAX: u32 = 4096;

/// The programs each enforced container may run. Written by the agent.
#[map]
static DCEA_ALLOWED: HashMap<AllowKey, u8> = HashMap::with_max_entries(ALLOWED_MAX, 0);
const ALLOWED_MAX: u32 = 65536;

/// Judge the current exec of `mm->exe_file` (`dev`, `ino`); `entry`: the task's first exec in
/// the container (the runtime's). The record flags: [`flags::NOT_ALLOWED`], with
/// [`flags::KILLED`] when the task was killed. One array read while nothing is enforced.
#[inline(always)]
pub fn check_exec(dev: u32, ino: u64, entry: bool) -> u32 {
    let any = DCEA_RUNTIME.get(runtime::ALLOWLIST_SLOT).copied().unwrap_or(0);
    if any == 0 {
        return 0;
    }
    // SAFETY: a helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: a lookup by value; the entry is copied.
    let Some(bits) = (unsafe { DCEA_ALLOW_ENFORCED.get(cgroup) }).copied() else {
        return 0;
    };
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    let key = AllowKey { cgroup, ino, dev, pad: 0, comm };
    // SAFETY: a lookup by value; the entry is not dereferenced.
    if unsafe { DCEA_ALLOWED.get(key) }.is_some() {
        return 0;
    }
    if entry && bits & allow::KILL_ENTRY_EXEC == 0 {
        return flags::NOT_ALLOWED;
    }
    // SAFETY: a helper on the current task.
    if unsafe { bpf_send_signal(SIGKILL) } != 0 {
        return flags::NOT_ALLOWED;
    }
    count(stats::KILLED);
    count(stats::ALLOWLIST_KILLED);
    flags::NOT_ALLOWED | flags::KILLED
}
