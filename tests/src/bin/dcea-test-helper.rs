//! Does one namespace operation the way an escaping process would, for the end-to-end tests.
//!
//! Also the behaviours the rules look for that busybox cannot do: `connect-unix`,
//! `ptrace-attach`, `bpf-prog-load`, `finit-module` (run inside a test container with the
//! host's libraries mounted).
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

/// connect(2) to a unix socket, as a client of a runtime's control socket would.
fn connect_unix(path: &str) -> Result<u8, String> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(0),
        Err(e) => Err(format!("connect {path}: {e}")),
    }
}

/// PTRACE_ATTACH to `pid`, then detach.
fn ptrace_attach(pid: libc::pid_t) -> Result<u8, String> {
    // SAFETY: plain syscalls on a pid the caller chose.
    unsafe {
        if libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) != 0 {
            return Err(format!("PTRACE_ATTACH {pid}: {}", std::io::Error::last_os_error()));
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
    }
    Ok(0)
}

/// bpf(BPF_PROG_LOAD) of a two-instruction socket filter (`r0 = 0; exit`).
fn bpf_prog_load() -> Result<u8, String> {
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
    }
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let attr = ProgLoad {
        prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
    };
    // SAFETY: a valid bpf_attr prefix for BPF_PROG_LOAD; the kernel zero-extends the rest.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 5, &attr as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    if fd < 0 {
        return Err(format!("bpf(BPF_PROG_LOAD): {}", std::io::Error::last_os_error()));
    }
    Ok(0)
}

/// finit_module(2) of `file`: the kernel rejects a file that is not a module, but the attempt
/// is what the rule is about.
fn finit_module(file: &str) -> Result<u8, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    // SAFETY: a valid fd and an empty parameter string.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, std::os::fd::AsRawFd::as_raw_fd(&f), c"".as_ptr(), 0) };
    println!("finit_module={ret} errno={}", std::io::Error::last_os_error());
    Ok(0)
}

/// open(2)+close(2) of `file` `count` times; prints the rate (the container-workload benchmark).
fn open_loop(file: &str, count: u64) -> Result<u8, String> {
    let path = std::ffi::CString::new(file).map_err(|e| e.to_string())?;
    let start = std::time::Instant::now();
    for _ in 0..count {
        // SAFETY: a valid NUL-terminated path; the fd is closed at once.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!("open {file}: {}", std::io::Error::last_os_error()));
        }
        unsafe { libc::close(fd) };
    }
    let secs = start.elapsed().as_secs_f64();
    println!("opens={count} secs={secs:.6} per_s={:.0}", count as f64 / secs);
    Ok(0)
}

const USAGE: &str = "usage: dcea-test-helper fake-container-escape <host pid> <kind,kind,...> [linger_ms]
       dcea-test-helper connect-unix <socket path>
       dcea-test-helper ptrace-attach <pid>
       dcea-test-helper bpf-prog-load
       dcea-test-helper finit-module <file>
       dcea-test-helper open-loop <file> <count>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let result = match (arg(1), arg(2), arg(3)) {
        (Some("fake-container-escape"), Some(pid), Some(kinds)) => {
            let linger = arg(4).and_then(|s| s.parse().ok()).unwrap_or(0);
            match pid.parse::<libc::pid_t>() {
                Ok(pid) => parse_flags(kinds).and_then(|flags| fake_container_escape(pid, flags, linger)),
                Err(e) => Err(format!("pid {pid}: {e}")),
            }
        }
        (Some("connect-unix"), Some(path), None) => connect_unix(path),
        (Some("ptrace-attach"), Some(pid), None) => {
            pid.parse().map_err(|e| format!("pid {pid}: {e}")).and_then(ptrace_attach)
        }
        (Some("bpf-prog-load"), None, None) => bpf_prog_load(),
        (Some("finit-module"), Some(file), None) => finit_module(file),
        (Some("open-loop"), Some(file), Some(count)) => {
            count.parse().map_err(|e| format!("count {count}: {e}")).and_then(|n| open_loop(file, n))
        }
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
