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
//! - installed as `insmod FILE`: finit_module(FILE), as a module tool would.
//! - `run-as <uid> <host|container> <program> [args…]`: run a program as `uid` (groups
//!   dropped), in a fake container or not. Prints `pid=<pid>`, exits with its status.
//! - `su-like [program args…]`: what `su` does after its setuid-root exec: take uid 0 fully
//!   (setresuid(0,0,0)), drop supplementary groups, then exec the program. Prints `ids=r/e/s`.
//! - `connect-unix <socket>`, `docker-create <socket> <name>`, `ptrace-attach <pid>`, `bpf-prog-load`, `finit-module <file>`,
//!   `open <file> read|write`, `open-loop <file> <count>`: the behaviours the rules look for that busybox cannot do (run
//!   inside a test container with the host's libraries mounted), and the open benchmark.
//! - `connect-loop <socket> <count>`, `exec-loop <program> <count>`: the peer benchmark's
//!   container loops (unix datagram connects; fork+exec+wait).
//! - `memfd-exec <program> [args…]`: copy the program into a memfd and fexecve it (fileless
//!   code); `mmap-exec <file>`: map the file PROT_READ|PROT_EXEC, as ld.so maps a library;
//!   `write-mmap-exec <file>`: write the file first (the helper's own first 64 KiB, an ELF);
//!   `write-mprotect-exec <file>`: write it, map it PROT_READ, then mprotect it executable,
//!   as a loader of its own does past the mmap hook, and keep it mapped for 2 s.
//! - `hold-target`: an injection target: prints `pid=<pid> buffer=<hex> code=<hex>` (a
//!   page-aligned writable buffer; a function in its text that never runs), then waits until
//!   stdin is closed (at most 120 s).
//! - `vm-write <pid> <hex addr>`, `proc-mem-write <pid> <hex addr>`: write 8 bytes `dcea-pwn`
//!   there with process_vm_writev, or through /proc/<pid>/mem; `poke-text <pid> <hex addr>`:
//!   flip the low byte of the word there with PTRACE_POKETEXT. Exit 1 when refused.
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

/// Ask the engine behind `socket` to create a container named `name` (what an attacker with a
/// mounted docker.sock does first); the engine's status line on stdout.
fn docker_create(socket: &str, name: &str) -> Result<u8, String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| format!("connect {socket}: {e}"))?;
    let body = r#"{"Image":"dcea-test/busybox:latest","Cmd":["true"]}"#;
    write!(
        s,
        "POST /containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    println!("{}", answer.lines().next().unwrap_or(""));
    Ok(0)
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
        // Explicit: as padding it would be garbage, and the kernel reads it as prog_flags.
        prog_flags: u32,
    }
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, shared by every root process
    // (the agent's maps included) and answered with EPERM when exceeded. Best effort: a
    // container without CAP_SYS_RESOURCE keeps its limit.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
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
        prog_flags: 0,
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

/// open(2) of `file` for reading or writing (no O_CREAT, no O_TRUNC: nothing is written), then
/// close(2). The open is what the behaviour hooks judge.
fn open_file(file: &str, mode: &str) -> Result<u8, String> {
    let mut options = std::fs::OpenOptions::new();
    match mode {
        "read" => options.read(true),
        "write" => options.write(true),
        other => return Err(format!("open mode {other}: read or write")),
    };
    options.open(file).map(|_| 0).map_err(|e| format!("open {file} for {mode}: {e}"))
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

/// socket+connect+close of the unix datagram socket `path` `count` times; prints the time.
fn connect_loop(path: &str, count: u64) -> Result<u8, String> {
    let addr = std::os::unix::net::SocketAddr::from_pathname(path).map_err(|e| format!("{path}: {e}"))?;
    let start = std::time::Instant::now();
    for _ in 0..count {
        // A datagram connect only sets the peer: nothing waits on the other side.
        let sock = std::os::unix::net::UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?;
        sock.connect_addr(&addr).map_err(|e| format!("connect {path}: {e}"))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("connects={count} secs={secs:.6}");
    Ok(0)
}

/// fork+exec+wait of `program` `count` times; prints the time.
fn exec_loop(program: &str, count: u64) -> Result<u8, String> {
    let start = std::time::Instant::now();
    for _ in 0..count {
        let st = std::process::Command::new(program).status().map_err(|e| format!("exec {program}: {e}"))?;
        if !st.success() {
            return Err(format!("{program}: {st}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("execs={count} secs={secs:.6}");
    Ok(0)
}

/// Copy `program` into a memfd and fexecve it: code that has no file behind it. No
/// MFD_CLOEXEC: a script run this way reads itself back through /proc/self/fd/N.
fn memfd_exec(program: &str, args: &[String]) -> Result<u8, String> {
    use std::{ffi::CString, io::Write, os::fd::FromRawFd, os::fd::IntoRawFd};
    let bytes = std::fs::read(program).map_err(|e| format!("{program}: {e}"))?;
    // SAFETY: a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"dcea-test".as_ptr(), 0) };
    if fd < 0 {
        return Err(errno("memfd_create"));
    }
    // SAFETY: the fd was just created and nothing else owns it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&bytes).map_err(|e| format!("writing the memfd: {e}"))?;
    let fd = file.into_raw_fd();
    let c_strings = |items: Vec<Vec<u8>>| -> Result<Vec<CString>, String> {
        items.into_iter().map(|i| CString::new(i).map_err(|e| e.to_string())).collect()
    };
    let argv = c_strings(std::iter::once(program).chain(args.iter().map(String::as_str)).map(Into::into).collect())?;
    let envp = c_strings(
        std::env::vars_os().map(|(k, v)| [k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat()).collect(),
    )?;
    let ptrs = |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    let (argv_ptrs, envp_ptrs) = (ptrs(&argv), ptrs(&envp));
    // SAFETY: NULL-terminated arrays of NUL-terminated strings that outlive the call.
    unsafe { libc::fexecve(fd, argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    Err(errno(&format!("fexecve {program}")))
}

/// mmap(2) `file` PROT_READ|PROT_EXEC, MAP_PRIVATE (how ld.so maps a library's code), then
/// unmap it.
fn mmap_exec(file: &str) -> Result<u8, String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let size = f.metadata().map_err(|e| format!("{file}: {e}"))?.len() as usize;
    let len = size.max(4096);
    // SAFETY: a new private mapping of an open file; nothing reads it before the unmap.
    let addr = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_EXEC, libc::MAP_PRIVATE, f.as_raw_fd(), 0)
    };
    if addr == libc::MAP_FAILED {
        return Err(errno(&format!("mmap {file} PROT_EXEC")));
    }
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(addr, len) };
    Ok(0)
}

/// Write `file` (the helper's own first 64 KiB: a plausible ELF), then [`mmap_exec`] it.
fn write_mmap_exec(file: &str) -> Result<u8, String> {
    write_file_head(file)?;
    mmap_exec(file)
}

/// `file` becomes the helper's own first 64 KiB (a plausible ELF).
fn write_file_head(file: &str) -> Result<(), String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open("/proc/self/exe")
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| format!("/proc/self/exe: {e}"))?;
    std::fs::write(file, &head).map_err(|e| format!("writing {file}: {e}"))
}

/// Write `file` as [`write_mmap_exec`] does, map it PROT_READ and only then make it
/// executable with mprotect. The mapping stays for 2 s, as a loaded library's code stays.
fn write_mprotect_exec(file: &str) -> Result<u8, String> {
    use std::os::fd::AsRawFd;
    write_file_head(file)?;
    let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let len = 64 * 1024;
    // SAFETY: a new private read-only mapping of an open file.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0) };
    if addr == libc::MAP_FAILED {
        return Err(errno(&format!("mmap {file} PROT_READ")));
    }
    // SAFETY: the mapping made above; nothing runs in it.
    let rc = unsafe { libc::mprotect(addr, len, libc::PROT_READ | libc::PROT_EXEC) };
    let result = if rc == 0 { Ok(0) } else { Err(errno(&format!("mprotect {file} PROT_EXEC"))) };
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(addr, len) };
    result
}

/// One page of hold-target's writable memory, for the injection tests to write into.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut TARGET_BUFFER: Page = Page([0; 4096]);

/// Never called: its address names code in the helper's r-x text for poke-text.
#[inline(never)]
fn never_called(x: u64) -> u64 {
    std::hint::black_box(x).rotate_left(13) ^ 0x5eed_dcea
}

/// Print where the buffer and the never-run code are, then wait until stdin is closed (or
/// 120 s pass).
fn hold_target() -> Result<u8, String> {
    use std::io::Write;
    let buffer = std::hint::black_box(&raw mut TARGET_BUFFER) as usize;
    let code = std::hint::black_box(never_called as fn(u64) -> u64) as usize;
    println!("pid={} buffer={buffer:x} code={code:x}", std::process::id());
    let _ = std::io::stdout().flush();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut scratch = [0u8; 256];
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if ready < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if ready <= 0 {
            break;
        }
        // SAFETY: reading into a buffer of ours; 0 is end of input.
        if unsafe { libc::read(0, scratch.as_mut_ptr().cast(), scratch.len()) } <= 0 {
            break;
        }
    }
    Ok(0)
}

/// What vm-write and proc-mem-write put into the target.
const PAYLOAD: &[u8; 8] = b"dcea-pwn";

fn parse_target(pid: &str, addr: &str) -> Result<(libc::pid_t, usize), String> {
    let p = pid.parse().map_err(|e| format!("pid {pid}: {e}"))?;
    let a = usize::from_str_radix(addr.trim_start_matches("0x"), 16).map_err(|e| format!("address {addr}: {e}"))?;
    Ok((p, a))
}

/// process_vm_writev(2) of [`PAYLOAD`] to `addr` in `pid`.
fn vm_write(pid: libc::pid_t, addr: usize) -> Result<u8, String> {
    let local = libc::iovec { iov_base: PAYLOAD.as_ptr() as *mut libc::c_void, iov_len: PAYLOAD.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: PAYLOAD.len() };
    // SAFETY: one local iovec over a static, one remote one the kernel checks.
    let written = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if written != PAYLOAD.len() as isize {
        return Err(errno(&format!("process_vm_writev({pid}, {addr:#x}) = {written}")));
    }
    Ok(0)
}

/// open(/proc/<pid>/mem, O_RDWR) and pwrite [`PAYLOAD`] at `addr`.
fn proc_mem_write(pid: libc::pid_t, addr: usize) -> Result<u8, String> {
    use std::os::unix::fs::FileExt;
    let path = format!("/proc/{pid}/mem");
    let mem = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
    mem.write_all_at(PAYLOAD, addr as u64).map_err(|e| format!("pwrite {path} at {addr:#x}: {e}"))?;
    Ok(0)
}

/// PTRACE_ATTACH, PEEKTEXT the word at `addr`, POKETEXT it back with its low byte flipped,
/// DETACH: the target runs on (it never executes that code).
fn poke_text(pid: libc::pid_t, addr: usize) -> Result<u8, String> {
    let none = std::ptr::null_mut::<libc::c_void>();
    let at = addr as *mut libc::c_void;
    // SAFETY: ptrace requests on a pid the caller chose, with pointer-sized arguments.
    unsafe {
        if libc::ptrace(libc::PTRACE_ATTACH, pid, none, none) != 0 {
            return Err(errno(&format!("PTRACE_ATTACH {pid}")));
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::__WALL);
        *libc::__errno_location() = 0;
        let word = libc::ptrace(libc::PTRACE_PEEKTEXT, pid, at, none);
        let result = if word == -1 && *libc::__errno_location() != 0 {
            Err(errno(&format!("PTRACE_PEEKTEXT {pid} {addr:#x}")))
        } else if libc::ptrace(libc::PTRACE_POKETEXT, pid, at, (word ^ 0xff) as *mut libc::c_void) != 0 {
            Err(errno(&format!("PTRACE_POKETEXT {pid} {addr:#x}")))
        } else {
            Ok(0)
        };
        libc::ptrace(libc::PTRACE_DETACH, pid, none, none);
        result
    }
}

/// The injection commands exit 1 when the kernel refuses them (2 stays a usage error).
fn refused_is_1(result: Result<u8, String>) -> Result<u8, String> {
    result.or_else(|e| {
        eprintln!("{e}");
        Ok(1)
    })
}

const USAGE: &str = "usage: dcea-test-helper fake-container-escape <host pid> <kind,kind,...> [linger_ms]
       dcea-test-helper connect-unix <socket path>
       dcea-test-helper net-listen <ip> <port> | net-probe tcp|udp <ip> <port> | tcp-stream <ip> <port> <secs>
       dcea-test-helper loopback-check | quarantine-probe <ip> <port>
       dcea-test-helper tcp-sink <ip> <port> | tcp-send <ip> <port> <bytes>
       dcea-test-helper docker-create <socket path> <container name>
       dcea-test-helper ptrace-attach <pid>
       dcea-test-helper bpf-prog-load
       dcea-test-helper finit-module <file>
       dcea-test-helper open <file> read|write
       dcea-test-helper open-loop <file> <count>
       dcea-test-helper connect-loop <socket> <count>
       dcea-test-helper exec-loop <program> <count>
       dcea-test-helper creds-dance|wait-then-unshare host|container
       dcea-test-helper run-as <uid> host|container <program> [args...]
       dcea-test-helper su-like [program args...]
       dcea-test-helper memfd-exec <program> [args...]
       dcea-test-helper mmap-exec|write-mmap-exec|write-mprotect-exec <file>
       dcea-test-helper hold-target
       dcea-test-helper vm-write|proc-mem-write|poke-text <pid> <hex addr>";

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

/// The network quarantine's probes (`net-*`, `tcp-stream`, `loopback-check`,
/// `quarantine-probe`), described in that file.
#[path = "../helper/net.rs"]
mod net;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    // Installed as `insmod`, the helper is a module tool: it tries finit_module on its argument.
    let name = arg(0).and_then(|a| a.rsplit('/').next()).unwrap_or("");
    if name == "insmod" {
        let result = arg(1).ok_or_else(|| "usage: insmod FILE".to_string()).and_then(finit_module);
        return match result {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let result = match (arg(1), arg(2), arg(3)) {
        (Some("fake-container-escape"), Some(pid), Some(kinds)) => {
            let linger = arg(4).and_then(|s| s.parse().ok()).unwrap_or(0);
            match pid.parse::<libc::pid_t>() {
                Ok(pid) => parse_flags(kinds).and_then(|flags| fake_container_escape(pid, flags, linger)),
                Err(e) => Err(format!("pid {pid}: {e}")),
            }
        }
        (Some("connect-unix"), Some(path), None) => connect_unix(path),
        (Some("net-listen"), Some(ip), Some(port)) => net::listen(ip, port),
        (Some("net-probe"), Some(kind), Some(ip)) if args.len() == 5 => net::probe(kind, ip, &args[4]),
        (Some("tcp-stream"), Some(ip), Some(port)) if args.len() == 5 => net::stream(ip, port, &args[4]),
        (Some("loopback-check"), None, None) => net::loopback_check(),
        (Some("tcp-sink"), Some(ip), Some(port)) => net::sink(ip, port),
        (Some("tcp-send"), Some(ip), Some(port)) if args.len() == 5 => net::send(ip, port, &args[4]),
        (Some("quarantine-probe"), Some(ip), Some(port)) => net::quarantine_probe(ip, port),
        (Some("docker-create"), Some(socket), Some(name)) => docker_create(socket, name),
        (Some("ptrace-attach"), Some(pid), None) => {
            pid.parse().map_err(|e| format!("pid {pid}: {e}")).and_then(ptrace_attach)
        }
        (Some("bpf-prog-load"), None, None) => bpf_prog_load(),
        (Some("finit-module"), Some(file), None) => finit_module(file),
        (Some("open"), Some(file), Some(mode)) => open_file(file, mode),
        (Some("open-loop"), Some(file), Some(count)) => {
            count.parse().map_err(|e| format!("count {count}: {e}")).and_then(|n| open_loop(file, n))
        }
        (Some("connect-loop"), Some(path), Some(count)) => {
            count.parse().map_err(|e| format!("count {count}: {e}")).and_then(|n| connect_loop(path, n))
        }
        (Some("exec-loop"), Some(program), Some(count)) => {
            count.parse().map_err(|e| format!("count {count}: {e}")).and_then(|n| exec_loop(program, n))
        }
        (Some("creds-dance"), place, _) => creds_dance(place.unwrap_or("")),
        (Some("wait-then-unshare"), place, _) => wait_then_unshare(place.unwrap_or("")),
        (Some("run-as"), Some(uid), Some(place)) if args.len() > 4 => match uid.parse::<u32>() {
            Ok(uid) => run_as(uid, place, &args[4], &args[5..]),
            Err(e) => Err(format!("uid {uid}: {e}")),
        },
        (Some("su-like"), _, _) => su_like(&args[2..]),
        (Some("memfd-exec"), Some(program), _) => memfd_exec(program, &args[3..]),
        (Some("mmap-exec"), Some(file), None) => mmap_exec(file),
        (Some("write-mmap-exec"), Some(file), None) => write_mmap_exec(file),
        (Some("write-mprotect-exec"), Some(file), None) => write_mprotect_exec(file),
        (Some("hold-target"), None, None) => hold_target(),
        (Some("vm-write"), Some(pid), Some(addr)) => {
            parse_target(pid, addr).and_then(|(p, a)| refused_is_1(vm_write(p, a)))
        }
        (Some("proc-mem-write"), Some(pid), Some(addr)) => {
            parse_target(pid, addr).and_then(|(p, a)| refused_is_1(proc_mem_write(p, a)))
        }
        (Some("poke-text"), Some(pid), Some(addr)) => {
            parse_target(pid, addr).and_then(|(p, a)| refused_is_1(poke_text(p, a)))
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
