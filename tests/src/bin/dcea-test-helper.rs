//! Does one namespace operation the way an escaping process would, for the end-to-end tests.
//!
//! `dcea-test-helper fake-container-escape <pid> <kind,kind,…> [linger_ms]` makes a fake
//! container and, from inside it, enters the namespaces of host process `<pid>` with ONE
//! setns(pidfd, flags) call (kernel 5.8+). Prints `pid=<escaping pid>` and
//! `after_ns=<CLOCK_MONOTONIC when setns returned>`.
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let linger = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let result = match (args.get(1).map(String::as_str), args.get(2).map(|p| p.parse::<libc::pid_t>()), args.get(3)) {
        (Some("fake-container-escape"), Some(Ok(pid)), Some(kinds)) => {
            parse_flags(kinds).and_then(|flags| fake_container_escape(pid, flags, linger))
        }
        _ => Err("usage: dcea-test-helper fake-container-escape <host pid> <kind,kind,...> [linger_ms]".into()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
