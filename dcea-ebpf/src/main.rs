//! dcea kernel programs.
//!
//! Every hooked point takes the current task's nsproxy and cred pointers; when they equal the
//! ones stored for the task nothing can have changed and the program returns. Otherwise it reads
//! the full snapshot (all namespace inodes, uid/euid, effective capabilities), stores it, and
//! emits an event only when a namespace changed. Syscall entry hooks double as integrity
//! checks: nothing may change a task's namespaces between two syscalls, so a difference seen
//! at entry was made behind the kernel's namespace paths (a kernel exploit).
#![no_std]
#![no_main]

mod agent;
mod allowlist;
mod behaviour;
mod guard;
mod lsm;
mod quarantine;
mod task;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns},
    macros::{btf_tracepoint, fentry, kprobe, map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, TracePointContext},
};
use dcea_common::{
    ALL_NS_MASK, Event, EventKind, Guard, Hook, KernelConfig, RecordHeader, TASK_CONTAINER, TASK_CONTAINER_CGROUP,
    TASK_CRED_COMMITTED, TASK_CRED_TAMPER_REPORTED, TASK_CREDS_TRACKED, TASK_EXECED, TASK_REPORTED, TaskSnapshot,
    TaskState, cgroup_name_has_container_id, enters_host, flags, is_containerised, legit_change_mask, runtime, stats,
};

use crate::task::{Task, config, cred_ids, read_cred};

/// Written by the agent at load time (see dcea_common::config).
#[unsafe(no_mangle)]
static DCEA_CONFIG: KernelConfig = KernelConfig::zeroed();

#[map]
static DCEA_EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// 4 MiB: about 6,600 records, 65 ms of a 100,000 transitions/s burst between drains.
const RING_BYTES: u32 = 4 << 20;

/// Records that can be escapes, tampering or kills (setns, credential reports, changes a
/// hook cannot make): rare, so 512 KiB (about 800 records) is never crowded by a flood.
#[map]
static DCEA_PRIORITY: RingBuf = RingBuf::with_byte_size(PRIORITY_RING_BYTES, 0);
const PRIORITY_RING_BYTES: u32 = 512 << 10;

/// Per-task state keyed by kernel task id. LRU so a node with more threads than entries
/// degrades to re-learning the oldest tasks instead of refusing new ones.
#[map]
static DCEA_TASKS: LruHashMap<u32, TaskState> = LruHashMap::with_max_entries(32768, 0);

#[map]
static DCEA_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

/// Per-CPU room for strings too big for the stacks of the larger programs (a cgroup name, a
/// socket path, mount arguments).
#[map]
static DCEA_SCRATCH: PerCpuArray<[u8; dcea_common::CGROUP_NAME_LEN]> = PerCpuArray::with_max_entries(1, 0);

const SIGKILL: u32 = 9;

#[inline(always)]
fn count(index: u32) {
    if let Some(c) = DCEA_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn current_ids() -> Option<(u32, u32)> {
    let id = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((id >> 32) as u32, id as u32);
    if tgid == config!(agent_tgid) {
        return None;
    }
    Some((pid, tgid))
}

/// Compare the current task with its stored state at a tracked point; emit on change.
///
/// Integrity: namespaces may only change inside the namespace syscalls (checked by userspace
/// from the hook), and — when the commit_creds hook is attached — `task->real_cred` may only
/// change to a cred that commit_creds installed, and the ids behind an unchanged pointer may
/// not change at all (a committed cred is immutable). At syscall entry `task->cred` must equal
/// `task->real_cred` (override_creds() never outlives a syscall). Anything else is the kernel
/// exploit pattern of writing `task->cred`/`real_cred` or the ids inside them.
#[inline(always)]
fn observe_current(hook: Hook, at_entry: bool, ret: i64) {
    let Some((pid, _tgid)) = current_ids() else {
        return;
    };
    let task = Task(unsafe { bpf_get_current_task() });
    let (nsproxy, cred) = (task.nsproxy(), task.cred());
    if nsproxy == 0 || cred == 0 {
        return; // exiting: namespaces already released
    }
    // A constant per program: only entry hooks read the subjective pointer.
    let subjective = if at_entry { task.subjective_cred() } else { cred };
    let tracked_now = tracked_now();
    match DCEA_TASKS.get_ptr_mut(pid) {
        Some(state) => {
            // SAFETY: map value pointer valid for this program run.
            let state = unsafe { &mut *state };
            let checked = state.flags & TASK_CREDS_TRACKED != 0;
            let committed = state.flags & TASK_CRED_COMMITTED != 0;
            let mut tampered = 0;
            if subjective != cred {
                tampered |= flags::CRED_SUBJECTIVE;
            }
            if state.nsproxy == nsproxy && state.cred == cred && !committed {
                if at_entry && tracked_now != 0 {
                    let (uid, euid, caps) = cred_ids(cred);
                    if !checked {
                        // First look since the hook attached: adopt the ids from here on.
                        (state.snap.uid, state.snap.euid, state.snap.cap_effective) = (uid, euid, caps);
                        state.flags |= TASK_CREDS_TRACKED;
                    } else if uid != state.snap.uid || euid != state.snap.euid || caps != state.snap.cap_effective {
                        tampered |= flags::CRED_IN_PLACE;
                    }
                }
                if tampered == 0 {
                    return;
                }
            } else if checked && state.cred != cred && !(committed && state.committed_cred == cred) {
                tampered |= flags::CRED_REPLACED;
            }
            let old = state.snap;
            // What the task acts as: the subjective creds when they were swapped.
            let acting = if tampered & flags::CRED_SUBJECTIVE != 0 { subjective } else { cred };
            let new = task.refresh(&old, nsproxy, acting, state.cred != cred || committed || tampered != 0);
            state.snap = new;
            state.nsproxy = nsproxy;
            state.cred = cred;
            let report_tamper = tampered != 0 && state.flags & TASK_CRED_TAMPER_REPORTED == 0;
            state.flags = (state.flags & !(TASK_CRED_COMMITTED | TASK_CREDS_TRACKED)) | tracked_now;
            if report_tamper || !old.same_namespaces(&new) {
                let extra = if at_entry { flags::AT_ENTRY } else { 0 }
                    | if report_tamper { tampered } else { 0 }
                    | container_extra(state.flags);
                if emit(EventKind::Transition, hook, task, &old, &new, extra, ret, true) {
                    state.flags |= TASK_REPORTED | if report_tamper { TASK_CRED_TAMPER_REPORTED } else { 0 };
                }
            }
        }
        None => {
            let snap = task.snapshot(nsproxy, cred);
            let state = TaskState {
                snap,
                nsproxy,
                cred,
                flags: tracked_now | behaviour::learnt_flags(&snap),
                _pad: 0,
                committed_cred: 0,
            };
            if DCEA_TASKS.insert(pid, state, 0).is_err() {
                count(stats::TASKS_FULL);
            }
        }
    }
}

/// Runtime flags written by the agent after attaching (see dcea_common::runtime).
#[map]
static DCEA_RUNTIME: Array<u32> = Array::with_max_entries(runtime::SLOTS, 0);

/// The event flags a task's state gives its records: [`flags::CONTAINER`], and
/// [`flags::RUNTIME_SETUP`] while it has not exec'd since becoming containerised.
#[inline(always)]
fn container_extra(state_flags: u32) -> u32 {
    let container = (state_flags / TASK_CONTAINER) & 1;
    let execed = (state_flags / TASK_EXECED) & 1;
    (container * flags::CONTAINER) | (container * (execed ^ 1) * flags::RUNTIME_SETUP)
}

#[inline(always)]
fn creds_hook_attached() -> bool {
    // SAFETY: array slot 0 exists; read as a plain u32.
    DCEA_RUNTIME.get(runtime::HOOKS_SLOT).is_some_and(|f| *f & runtime::COMMIT_CREDS_HOOK != 0)
}

/// [`TASK_CREDS_TRACKED`] for a state recorded now, when the commit_creds hook is attached.
#[inline(always)]
fn tracked_now() -> u32 {
    if creds_hook_attached() { TASK_CREDS_TRACKED } else { 0 }
}

/// Fill and submit one event about `task`. `is_current`: the task is the one running, so it
/// can be killed in enforce mode. Returns whether the event was written.
///
/// Userspace raises an alert only for a containerised task entering a host namespace, a
/// namespace change its hook cannot make, or a credential report; the rules engine also looks
/// at any transition of a containerised task ([`flags::CONTAINER`]: nested namespaces made in
/// a container). Only such *urgent* events carry the parent and executable path and wake the
/// agent at once; the rest (runtimes building containers, host tools) are summaries the agent
/// drains periodically. A wakeup or a dentry walk per event would cost more than the hook.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    kind: EventKind,
    hook: Hook,
    task: Task,
    old: &TaskSnapshot,
    new: &TaskSnapshot,
    extra_flags: u32,
    ret: i64,
    is_current: bool,
) -> bool {
    let host = config!(host_ns);
    // Constant in each program (kind, hook and the entry flag are), so the verifier keeps one
    // path: unshare and clone only create namespaces, they cannot enter the host's.
    let always_urgent = match kind {
        EventKind::Exit | EventKind::Behaviour => false,
        EventKind::Creds => true,
        EventKind::Transition => {
            extra_flags & (flags::AT_ENTRY | flags::CRED_TAMPERED) != 0 || legit_change_mask(hook) != ALL_NS_MASK
        }
    };
    let may_escape = kind == EventKind::Transition && matches!(hook, Hook::Setns);
    // The priority channel: everything that can become an escape, tampering or kill alert.
    // A setns is an escape only by a task known as a container's (its state's verdict from
    // fork and exec, or a non-host PID namespace) entering a host namespace. Any other setns
    // (a host tool going back to its own namespaces, a container moving between its own) stays
    // on the main ring with the unshare/clone/fork records (nested namespaces, the rules'
    // input) and the runtimes' summaries, so a setns storm, benign or an attacker's decoy,
    // never fills the priority ring ahead of a real escape.
    let container_task = extra_flags & flags::CONTAINER != 0 || is_containerised(old, &host, false);
    let priority = always_urgent || (may_escape && container_task && enters_host(old, new, &host));
    let reserved = if priority { DCEA_PRIORITY.reserve::<Event>(0) } else { DCEA_EVENTS.reserve::<Event>(0) };
    let Some(mut entry) = reserved else {
        count(if priority { stats::PRIORITY_RINGBUF_FULL } else { stats::RINGBUF_FULL });
        return false;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved ring-buffer record of size_of::<Event>() bytes. Every
    // field is written below; strings are NUL-terminated (userspace reads up to the NUL). No
    // memset: it becomes a byte loop the verifier walks once per state.
    let urgent = unsafe {
        let ev = &mut *ev;
        let parent = fill_header(&mut *(ev as *mut Event).cast::<RecordHeader>(), kind, hook, task, ret);
        ev.old = *old;
        ev.new = *new;
        task.comm(&mut ev.comm);
        let mut fl = extra_flags;
        // A runtime value: the one branch here that is not constant per program.
        let mut urgent = always_urgent || extra_flags & flags::CONTAINER != 0;
        if urgent || may_escape {
            let resolved = task.cgroup_names(&mut ev.cgroup, &mut ev.cgroup_parent);
            fl |= flags::CGROUP_RESOLVED * resolved;
            if may_escape {
                // Same test as userspace's verdict; without a cgroup the agent decides.
                // Computed as 0/1 values: one branch for the verdict, not one per test.
                let entered = enters_host(old, new, &host) as u32;
                let container =
                    is_containerised(old, &host, false) as u32 | cgroup_name_has_container_id(&ev.cgroup) as u32;
                if entered & (container | (resolved ^ 1)) != 0 {
                    urgent = true;
                }
                if entered & container != 0 && is_current {
                    fl |= guard::enforce_guard(Guard::HostNamespace);
                }
            }
        } else {
            ev.cgroup[0] = 0;
            ev.cgroup_parent[0] = 0;
        }
        if urgent {
            parent.comm(&mut ev.parent_comm);
            fl |= flags::EXE_TRUNCATED * task.exe_components(&mut ev.exe);
        } else {
            fl |= flags::SUMMARY;
            ev.parent_comm[0] = 0;
            ev.exe[0][0] = 0;
        }
        ev.flags = fl;
        urgent
    };
    // The priority ring is small and rare: every urgent record wakes the agent, the rest
    // (a runtime's own setns) wait for the drain.
    let wake = if priority {
        if urgent { BPF_RB_FORCE_WAKEUP as u64 } else { BPF_RB_NO_WAKEUP as u64 }
    } else {
        wakeup_flags(urgent)
    };
    entry.submit(wake);
    count(stats::EMITTED);
    true
}

/// Fill the header both record kinds start with (all but `flags`); returns the task's parent.
#[inline(always)]
fn fill_header(h: &mut RecordHeader, kind: EventKind, hook: Hook, task: Task, ret: i64) -> Task {
    h.kind = kind as u32;
    h.hook = hook as u32;
    h.pid = task.pid();
    h.tgid = task.tgid();
    let parent = task.parent();
    h.ppid = parent.tgid();
    // SAFETY: a helper without arguments.
    h.ktime_ns = unsafe { bpf_ktime_get_ns() };
    h.ret = ret;
    parent
}

/// Wake the agent for an urgent record, or when the ring is half full; everything else waits
/// for its 20 ms drain (a wakeup per record costs more than the hook).
#[inline(always)]
fn wakeup_flags(urgent: bool) -> u64 {
    let flags = if urgent || DCEA_EVENTS.query(BPF_RB_AVAIL_DATA as u64) > RING_BYTES as u64 / 2 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    flags as u64
}

#[inline(always)]
fn sys_exit_ret(ctx: &TracePointContext) -> i64 {
    // syscalls:sys_exit_*: `long ret` at offset 16 on every kernel since the format exists.
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(0)
}

macro_rules! syscall_hooks {
    ($($enter:ident, $exit:ident => $hook:expr;)*) => {$(
        #[tracepoint]
        pub fn $enter(_ctx: TracePointContext) -> u32 {
            observe_current($hook, true, 0);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            observe_current($hook, false, sys_exit_ret(&ctx));
            0
        }
    )*};
}

syscall_hooks! {
    sys_enter_setns, sys_exit_setns => Hook::Setns;
    sys_enter_unshare, sys_exit_unshare => Hook::Unshare;
    sys_enter_clone, sys_exit_clone => Hook::Clone;
    sys_enter_clone3, sys_exit_clone3 => Hook::Clone3;
    sys_enter_move_mount, sys_exit_move_mount => Hook::MoveMount;
    sys_enter_fsmount, sys_exit_fsmount => Hook::Fsmount;
    sys_enter_open_tree, sys_exit_open_tree => Hook::OpenTree;
}

/// mount is a tracked point (nothing may change namespaces there); its behaviour (and guard)
/// is a second program on the same tracepoint, `mount_behaviour`: together in one program
/// the two overwhelm the 5.10 verifier.
#[tracepoint]
pub fn sys_enter_mount(_ctx: TracePointContext) -> u32 {
    observe_current(Hook::Mount, true, 0);
    0
}

#[tracepoint]
pub fn sys_exit_mount(ctx: TracePointContext) -> u32 {
    observe_current(Hook::Mount, false, sys_exit_ret(&ctx));
    0
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    observe_current(Hook::Exec, false, 0);
    behaviour::on_exec(&ctx);
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let Some((pid, _)) = current_ids() else {
        return 0;
    };
    if let Some(state) = DCEA_TASKS.get_ptr(pid) {
        // SAFETY: valid for this run; copied before the entry is removed.
        let state = unsafe { *state };
        if state.flags & TASK_REPORTED != 0 {
            let task = Task(unsafe { bpf_get_current_task() });
            emit(EventKind::Exit, Hook::Exit, task, &state.snap, &state.snap, 0, 0, false);
        }
        let _ = DCEA_TASKS.remove(pid);
    }
    0
}

/// A new task is compared with its parent: clone(CLONE_NEW*) shows up here as a transition of
/// the child.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    if current_ids().is_none() {
        return 0;
    }
    let parent = Task(unsafe { bpf_get_current_task() });
    let child = Task(ctx.arg::<u64>(1));
    let (nsproxy, cred) = (child.nsproxy(), child.cred());
    if nsproxy == 0 || cred == 0 {
        return 0;
    }
    let new = child.snapshot(nsproxy, cred);
    let parent_pid = bpf_get_current_pid_tgid() as u32;
    // The child shares its parent's cgroup: inherit the parent's verdict, or decide afresh.
    let (old, inherited) = match DCEA_TASKS.get_ptr(parent_pid) {
        // SAFETY: valid for this run.
        Some(state) => unsafe {
            ((*state).snap, (*state).flags & (TASK_CONTAINER | TASK_EXECED | TASK_CONTAINER_CGROUP))
        },
        None => (parent.snapshot(parent.nsproxy(), parent.cred()), behaviour::learnt_flags(&new)),
    };
    // A condemned container starts nothing: the parent dies, the child at its first hook.
    if inherited & TASK_CONTAINER != 0 {
        guard::kill_if_condemned();
    }
    // A child in a new PID namespace is containerised; TASK_EXECED stays inherited, so runc's
    // init is "setting up" until it execs the entrypoint.
    let container = inherited | (behaviour::in_container_pid_ns(&new) * TASK_CONTAINER);
    let mut state =
        TaskState { snap: new, nsproxy, cred, flags: tracked_now() | container, _pad: 0, committed_cred: 0 };
    let extra = container_extra(container);
    if !old.same_namespaces(&new) && emit(EventKind::Transition, Hook::Fork, child, &old, &new, extra, 0, false) {
        state.flags |= TASK_REPORTED;
    }
    if DCEA_TASKS.insert(child.pid(), state, 0).is_err() {
        count(stats::TASKS_FULL);
    }
    0
}

/// commit_creds(new), called by the task itself: record `new` as the one legitimate next
/// `real_cred` of the task (the integrity check of `observe_current`), and report a
/// containerised task gaining root or capabilities.
#[inline(always)]
fn on_commit_creds(new_cred: u64) {
    let Some((pid, _)) = current_ids() else {
        return;
    };
    if new_cred == 0 {
        return;
    }
    // Only containers matter: the task's state knows (decided at fork and exec with its
    // cgroup); a task not seen yet is judged by its PID namespace alone.
    let mut container_cgroup = false;
    if let Some(state) = DCEA_TASKS.get_ptr_mut(pid) {
        // SAFETY: map value pointer valid for this program run.
        let state = unsafe { &mut *state };
        state.flags |= TASK_CRED_COMMITTED;
        state.committed_cred = new_cred;
        container_cgroup = state.flags & TASK_CONTAINER != 0;
    }
    let task = Task(unsafe { bpf_get_current_task() });
    let (nsproxy, cred) = (task.nsproxy(), task.cred());
    if nsproxy == 0 || cred == 0 {
        return;
    }
    // Ids first: most commits (setgroups, keyrings, dropping privileges) gain nothing.
    let (_, old_euid, old_caps) = cred_ids(cred);
    let (_, new_euid, new_caps) = cred_ids(new_cred);
    let gained_root = old_euid != 0 && new_euid == 0;
    let gained_caps = new_caps & !old_caps != 0;
    if !(gained_root || gained_caps) {
        return;
    }
    let old = task.snapshot(nsproxy, cred);
    let mut new = old;
    read_cred(new_cred, &mut new);
    let host = config!(host_ns);
    if is_containerised(&old, &host, container_cgroup) {
        emit(EventKind::Creds, Hook::CommitCreds, task, &old, &new, 0, 0, true);
    }
}

#[fentry(function = "commit_creds")]
pub fn commit_creds_fentry(ctx: FEntryContext) -> u32 {
    on_commit_creds(ctx.arg::<u64>(0));
    0
}

#[kprobe]
pub fn commit_creds_kprobe(ctx: ProbeContext) -> u32 {
    on_commit_creds(ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects programs with reachable panics; nothing reaches here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
