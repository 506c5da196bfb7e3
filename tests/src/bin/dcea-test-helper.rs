//! Does one namespace or credential operation the way the end-to-end tests need it.
//!
//! - `fake-container-escape <pid> <kind,kind,…> [linger_ms]` makes a fake container and, from
//!   inside it, enters the namespaces of host process `<pid>` with ONE setns(pidfd, flags) call
//!   (kernel 5.8+). Prints `pid=<escaping pid>` and `after_ns=<CLOCK_MONOTONIC after setns>`.
//! - `creds-dance <host|container>`: a process (in a fake container: new pid, mnt, uts, ipc, net
//!   namespaces) drops to uid 1000 keeping saved uid 0, then takes euid 0 back with
//!   setresuid(0,0,0) — two commit_creds, the second a root gain. Prints `pid=<that process>`.
//! - `wait-then-unshare <host|container>`: a process that is tracked (forked), prints
//!   `pid=<pid>` and `ready`, waits for a line on stdin, then makes one namespace syscall
//!   (`unshare(0)`, a no-op) and exits: the point where the agent checks the task against its
//!   record.
//! - `run-as <uid> <host|container> <program> [args…]`: run a program as `uid` (groups
//!   dropped), in a fake container or not. Prints `pid=<pid>`, exits with its status.
//! - `su-like [program args…]`: what `su` does after its setuid-root exec: take uid 0 fully
//!   (setresuid(0,0,0)), drop supplementary groups, then exec the program. Prints `ids=r/e/s`.
use std::{process::ExitCode, time::Duration};

use dcea_user::sys::monotonic_ns;

fn flag(kind: &str) -> Option<libc::c_int> {
    Some(match kind {
        "mnt" => libc::CLONE_NEWNS,
        "net" => libc::CLONE_NEWNET,
        "uts" => libc::CLONE_NEWUTS,
        "ipc" => libc::CLONE_NEWIPC,
        "pid" => libc::CLONE_NEWPID,
        "cgroup" => libc::CLONE_NEWCGROUP,
        "user" => libc::CLONE_NEWUSER,
        _ => return None,
    })
}

fn parse_flags(kinds: &str) -> Result<libc::c_int, String> {
    kinds.split(',').try_fold(0, |acc, k| flag(k).map(|f| acc | f).ok_or_else(|| format!("unknown namespace kind {k}")))
}

/// A fake container made with unshare(2): new mnt, uts, ipc, net and pid namespaces; its first
/// process enters `target`'s namespaces with one setns(pidfd) call. The pidfd is opened on the
/// host side first (a pid in the new namespace could not name the target).
fn fake_container_escape(target: libc::pid_t, flags: libc::c_int, linger_ms: u64) -> Result<u8, String> {
    // SAFETY: raw syscalls with valid arguments; fork in a single-threaded process.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, target, 0) as libc::c_int;
        if pidfd < 0 {
            return Err(format!("pidfd_open({target}): {}", std::io::Error::last_os_error()));
        }
        let new = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET | libc::CLONE_NEWPID;
        if libc::unshare(new) != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        match libc::fork() {
            -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
            0 => {
                if libc::setns(pidfd, flags) != 0 {
                    eprintln!("setns: {}", std::io::Error::last_os_error());
                    libc::_exit(1);
                }
                let after = monotonic_ns();
                println!("after_ns={after}");
                std::thread::sleep(Duration::from_millis(linger_ms));
                libc::_exit(0);
            }
            child => {
                println!("pid={child}");
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                if libc::WIFSIGNALED(status) {
                    // Die the way the child died so callers see the signal.
                    libc::signal(libc::WTERMSIG(status), libc::SIG_DFL);
                    libc::kill(libc::getpid(), libc::WTERMSIG(status));
                }
                Ok(libc::WEXITSTATUS(status) as u8)
            }
        }
    }
}

fn errno(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Enter a fresh fake container (new pid, mnt, uts, ipc and net namespaces) when asked; the
/// next fork() lands in the new pid namespace.
fn maybe_containerise(place: &str) -> Result<(), String> {
    match place {
        "host" => Ok(()),
        "container" => {
            let new =
                libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET | libc::CLONE_NEWPID;
            // SAFETY: plain syscall.
            if unsafe { libc::unshare(new) } != 0 { Err(errno("unshare")) } else { Ok(()) }
        }
        other => Err(format!("expected host or container, got {other}")),
    }
}

/// fork(); the child runs `child` and exits with its code; the parent prints the child's pid
/// (as the host sees it), waits, and returns the child's exit code (re-raising its signal).
fn fork_child(child: impl FnOnce() -> Result<u8, String>) -> Result<u8, String> {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: the helper is single-threaded; the child only makes syscalls and exits.
    match unsafe { libc::fork() } {
        -1 => Err(errno("fork")),
        0 => {
            let code = child().unwrap_or_else(|e| {
                eprintln!("{e}");
                2
            });
            let _ = std::io::stdout().flush();
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code as i32) }
        }
        pid => {
            println!("pid={pid}");
            let _ = std::io::stdout().flush();
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFSIGNALED(status) {
                return Err(format!("child killed by signal {}", libc::WTERMSIG(status)));
            }
            Ok(libc::WEXITSTATUS(status) as u8)
        }
    }
}

fn setresuid(r: u32, e: u32, s: u32) -> Result<(), String> {
    // SAFETY: plain syscall.
    if unsafe { libc::setresuid(r, e, s) } != 0 { Err(errno(&format!("setresuid({r},{e},{s})"))) } else { Ok(()) }
}

fn creds_dance(place: &str) -> Result<u8, String> {
    maybe_containerise(place)?;
    fork_child(|| {
        setresuid(1000, 1000, 0)?;
        // Give the agent's hooks a namespace syscall to see the task at uid 1000 too.
        // SAFETY: unshare(0) changes nothing.
        unsafe { libc::unshare(0) };
        setresuid(0, 0, 0)?;
        Ok(0)
    })
}

fn wait_then_unshare(place: &str) -> Result<u8, String> {
    maybe_containerise(place)?;
    fork_child(|| {
        // Printed from user space: the child has left fork's syscall-exit hook, and makes no
        // hooked syscall until unshare below.
        println!("ready");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("reading stdin: {e}"))?;
        // SAFETY: unshare(0) changes nothing; its entry hook compares the task with its record.
        if unsafe { libc::unshare(0) } != 0 {
            return Err(errno("unshare(0)"));
        }
        Ok(0)
    })
}

fn exec(program: &str, args: &[String]) -> String {
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(program).args(args).exec();
    format!("exec {program}: {err}")
}

fn run_as(uid: u32, place: &str, program: &str, args: &[String]) -> Result<u8, String> {
    maybe_containerise(place)?;
    fork_child(|| {
        // SAFETY: plain syscalls.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(errno("setgroups"));
            }
            if libc::setresgid(uid, uid, uid) != 0 {
                return Err(errno("setresgid"));
            }
        }
        setresuid(uid, uid, uid)?;
        Err(exec(program, args))
    })
}

fn su_like(args: &[String]) -> Result<u8, String> {
    // SAFETY: plain syscalls.
    let (mut r, mut e, mut s) = (0, 0, 0);
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    println!("ids={r}/{e}/{s}");
    setresuid(0, 0, 0)?;
    // SAFETY: plain syscall.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(errno("setgroups"));
    }
    match args.split_first() {
        Some((program, rest)) => Err(exec(program, rest)),
        None => Ok(0),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let linger = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let result = match (args.get(1).map(String::as_str), args.get(2).map(|p| p.parse::<libc::pid_t>()), args.get(3)) {
        (Some("fake-container-escape"), Some(Ok(pid)), Some(kinds)) => {
            parse_flags(kinds).and_then(|flags| fake_container_escape(pid, flags, linger))
        }
        (Some("creds-dance"), _, _) => creds_dance(args.get(2).map_or("", String::as_str)),
        (Some("wait-then-unshare"), _, _) => wait_then_unshare(args.get(2).map_or("", String::as_str)),
        (Some("run-as"), Some(Ok(uid)), Some(place)) if args.len() > 4 => {
            run_as(uid as u32, place, &args[4], &args[5..])
        }
        (Some("su-like"), _, _) => su_like(&args[2..]),
        _ => Err("usage: dcea-test-helper fake-container-escape <host pid> <kind,kind,...> [linger_ms]
       dcea-test-helper creds-dance|wait-then-unshare host|container
       dcea-test-helper run-as <uid> host|container <program> [args...]
       dcea-test-helper su-like [program args...]"
            .into()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
