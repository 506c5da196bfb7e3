//! BPF LSM deny, where the kernel runs the BPF LSM (`bpf` in `/sys/kernel/security/lsm`). The
//! syscall-entry tracepoints see a guarded operation first: they report it and, by the guard's
//! action, kill the task or condemn its container. But a signal is only delivered when the
//! syscall returns, so the syscall still runs: the module's init code, the mount, the device
//! node, the ptrace attach, the connection. These programs run inside the syscall, at the
//! security hook, and refuse it with -EPERM, so the operation never happens at all.
//!
//! They make the same decision as the tracepoint, from the kernel's copy of the arguments
//! (which a racing thread can no longer change), and act only for guards whose action is not
//! `alert`. Loaded only with `--enforce`; each follows the verdict of an earlier LSM program.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use dcea_common::{Guard, TaskSnapshot, action, stats};

use crate::{
    DCEA_SCRATCH, DCEA_TASKS, agent,
    behaviour::{current_container_task, mount_guard, ptrace_target_outside, runtime_socket_path, watched},
    count, current_ids,
    guard::{DCEA_GUARDS, code, enforce_guard, exempt, kill_if_condemned},
    task::{Task, read_str},
};

const EPERM: i32 = 1;
const AF_UNIX: u16 = 1;
const S_IFMT: u64 = 0o170000;
const S_IFBLK: u64 = 0o060000;
const S_IFCHR: u64 = 0o020000;
/// `PTRACE_MODE_ATTACH`: ptrace(ATTACH/SEIZE), /proc/PID/mem, process_vm_writev.
const PTRACE_MODE_ATTACH: u64 = 0x02;
/// `READING_MODULE` / `LOADING_MODULE` (include/linux/kernel_read_file.h, 5.10+).
const MODULE_ID: u64 = 2;

/// The snapshot of the current task when the rules watch it (see behaviour.rs). The entry
/// tracepoint of the same syscall has learnt the task already.
#[inline(always)]
fn watched_task() -> Option<TaskSnapshot> {
    let (pid, _) = current_ids()?;
    let state = DCEA_TASKS.get_ptr(pid)?;
    // SAFETY: map value pointer valid for this program run.
    let state = unsafe { &*state };
    watched(state.flags).then_some(state.snap)
}

/// -EPERM when the guard `code` (see guard.rs; 0: none matched) has an action other than
/// `alert` for this container, or when the task's container is condemned; else 0.
#[inline(always)]
fn verdict(code: u32) -> i32 {
    if kill_if_condemned() {
        count(stats::DENIED);
        return -EPERM;
    }
    // Code 0 looks up index u32::MAX: no entry, no action.
    let guard = code.wrapping_sub(1);
    let act = DCEA_GUARDS.get(guard).copied().unwrap_or(action::ALERT);
    if act == action::ALERT || exempt(guard) {
        return 0;
    }
    count(stats::DENIED);
    -EPERM
}

/// An earlier LSM's refusal stands; `enforce` off loads no LSM program, but a load-time
/// constant keeps the test free.
macro_rules! earlier {
    ($ctx:expr, $n:expr) => {{
        let ret = $ctx.arg::<u64>($n) as i32;
        if ret != 0 || crate::task::config!(enforce) == 0 {
            return ret;
        }
    }};
}

/// socket_connect(sock, address, addrlen): a runtime's API socket.
#[lsm(hook = "socket_connect")]
pub fn lsm_socket_connect(ctx: LsmContext) -> i32 {
    earlier!(ctx, 3);
    if watched_task().is_none() {
        return 0;
    }
    let address: u64 = ctx.arg(1);
    let family = crate::task::read::<u16>(address, 0);
    if family != AF_UNIX {
        return 0;
    }
    let Some(buf) = DCEA_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU slot, used only within this program run.
    let hit = runtime_socket_path(unsafe { &mut *buf }, address + 2, false);
    verdict(code(Guard::RuntimeSocket, hit))
}

/// sb_mount(dev_name, path, type, flags, data): a host disk or a kernel pseudo-filesystem.
#[lsm(hook = "sb_mount")]
pub fn lsm_sb_mount(ctx: LsmContext) -> i32 {
    earlier!(ctx, 5);
    let Some(snap) = watched_task() else {
        return 0;
    };
    let (source, fstype, mount_flags): (u64, u64, u64) = (ctx.arg(0), ctx.arg(2), ctx.arg(3));
    verdict(mount_guard(&snap, source, fstype, mount_flags, read_str))
}

/// path_mknod(dir, dentry, mode, dev): a block or character device.
#[lsm(hook = "path_mknod")]
pub fn lsm_path_mknod(ctx: LsmContext) -> i32 {
    earlier!(ctx, 4);
    if watched_task().is_none() {
        return 0;
    }
    let kind = ctx.arg::<u64>(2) & S_IFMT;
    verdict(code(Guard::DeviceNode, (kind == S_IFBLK || kind == S_IFCHR) as u32))
}

/// ptrace_access_check(child, mode): attach to, or write the memory of, a process outside the
/// caller's container.
#[lsm(hook = "ptrace_access_check")]
pub fn lsm_ptrace_access_check(ctx: LsmContext) -> i32 {
    earlier!(ctx, 2);
    let Some(snap) = watched_task() else {
        return 0;
    };
    let (child, mode): (u64, u64) = (ctx.arg(0), ctx.arg(1));
    let outside = mode & PTRACE_MODE_ATTACH != 0 && ptrace_target_outside(&snap, Task(child).pid());
    verdict(code(Guard::PtraceOutside, outside as u32))
}

/// kernel_load_data(id, contents): init_module's image.
#[lsm(hook = "kernel_load_data")]
pub fn lsm_kernel_load_data(ctx: LsmContext) -> i32 {
    earlier!(ctx, 2);
    module_verdict(ctx.arg(0))
}

/// kernel_read_file(file, id, contents): finit_module's file.
#[lsm(hook = "kernel_read_file")]
pub fn lsm_kernel_read_file(ctx: LsmContext) -> i32 {
    earlier!(ctx, 3);
    module_verdict(ctx.arg(1))
}

/// task_kill(target, info, sig, cred): a signal from a container that would stop or end the
/// agent or its sentinel. The check comes before the signal is generated, so a refused one
/// never reaches `signal_generate`: the record is sent from here.
#[lsm(hook = "task_kill")]
pub fn lsm_task_kill(ctx: LsmContext) -> i32 {
    earlier!(ctx, 4);
    let target = Task(ctx.arg(0));
    let sig = ctx.arg::<u64>(2) as u32 as u64;
    let Some((tgid, role)) = agent::threatened(sig, target) else {
        return 0;
    };
    let Some((task, snap)) = current_container_task() else {
        // A task of a condemned container (killed just now) is refused as well.
        return if kill_if_condemned() { -EPERM } else { 0 };
    };
    let denied = verdict(code(Guard::AgentSignal, 1));
    if denied != 0 {
        agent::report(task, &snap, sig, target, tgid, role, enforce_guard(Guard::AgentSignal));
    }
    denied
}

/// The verdict on a kernel read or load whose purpose is `id`.
#[inline(always)]
fn module_verdict(id: u64) -> i32 {
    if watched_task().is_none() {
        return 0;
    }
    verdict(code(Guard::ModuleLoad, (id == MODULE_ID) as u32))
}
