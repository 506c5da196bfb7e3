//! The few /proc reads the trust checker needs, made cheap enough for 10,000 processes a pass.
//!
//! A tracked process is held by an `O_PATH` descriptor of its `/proc/<pid>` directory. Every
//! lookup below it fails with ENOENT/ESRCH once that process is gone, even when its pid has been
//! reused, so a held handle never silently reads another process: identity costs no extra read.
//! Vanished processes are normal here; callers treat [`gone`] errors as "skip".

use std::{
    ffi::{CStr, CString},
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use dcea_common::{NS_KINDS, NsKind};

/// Is this error a process that went away mid-read (normal during a scan)?
pub fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) || e.kind() == io::ErrorKind::NotFound
}

/// The fields of /proc/<pid>/stat the checker uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: u8,
    pub ppid: u32,
    pub num_threads: u32,
    /// Field 22, clock ticks since boot: with the pid, a process's identity across pid reuse.
    pub start_time: u64,
}

/// Parse /proc/<pid>/stat. `comm` may hold spaces and parentheses: it runs from the first `(`
/// to the last `)`.
pub fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(buf.get(close + 2..)?).ok()?;
    // rest starts at field 3 (state); field n is rest[n - 3].
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let mut fields = fields.skip(20 - 5);
    let num_threads = fields.next()?.parse().ok()?;
    let start_time = fields.nth(22 - 21)?.parse().ok()?;
    Some(Stat { comm, state, ppid, num_threads, start_time })
}

/// "mnt:[4026531840]" → 4026531840.
pub fn parse_ns_link(link: &[u8]) -> Option<u32> {
    let open = link.iter().position(|&b| b == b'[')?;
    let digits = link.get(open + 1..link.len().checked_sub(1)?)?;
    if link.last() != Some(&b']') || digits.is_empty() {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `ns/<kind>` relative to a /proc/<pid> directory, as C strings made once.
fn ns_paths() -> &'static [CString; NS_KINDS] {
    static PATHS: std::sync::OnceLock<[CString; NS_KINDS]> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| NsKind::ALL.map(|k| CString::new(format!("ns/{}", k.name())).expect("no NUL")))
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn readlinkat(dir: libc::c_int, path: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: valid C string and buffer of the given length.
    let n = unsafe { libc::readlinkat(dir, path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

fn open_at(dir: libc::c_int, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: valid C string; the returned descriptor is owned by the OwnedFd.
    let fd = unsafe { libc::openat(dir, path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd) }) }
}

fn read_fd(fd: OwnedFd, out: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    out.clear();
    fs::File::from(fd).read_to_end(out).map(|_| ())
}

/// Numeric entries of a directory opened as `fd` (pids in /proc, tids in /proc/<pid>/task).
fn numeric_entries(fd: OwnedFd, out: &mut Vec<u32>) -> io::Result<()> {
    out.clear();
    // SAFETY: fdopendir takes ownership of the descriptor; closedir releases it.
    let dir = unsafe { libc::fdopendir(fd.as_raw_fd()) };
    if dir.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(fd);
    loop {
        // SAFETY: dir is a valid DIR*; the entry is valid until the next readdir.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if let Some(n) = std::str::from_utf8(name).ok().and_then(|s| s.parse::<u32>().ok()) {
            out.push(n);
        }
    }
    // SAFETY: dir came from fdopendir and is closed once.
    unsafe { libc::closedir(dir) };
    Ok(())
}

/// Every pid in /proc (thread-group leaders only, as /proc lists them).
pub fn list_pids(out: &mut Vec<u32>) -> io::Result<()> {
    numeric_entries(open_at(libc::AT_FDCWD, c"/proc", libc::O_RDONLY | libc::O_DIRECTORY)?, out)
}

/// A held `/proc/<pid>` directory: see the module comment.
#[derive(Debug)]
pub struct ProcDir {
    fd: OwnedFd,
    pub pid: u32,
}

impl ProcDir {
    pub fn open(pid: u32) -> io::Result<ProcDir> {
        let path = cstr(&format!("/proc/{pid}"))?;
        Ok(ProcDir { fd: open_at(libc::AT_FDCWD, &path, libc::O_PATH | libc::O_DIRECTORY)?, pid })
    }

    /// Namespace inode of this process (its thread-group leader) for `kind`.
    pub fn ns(&self, kind: NsKind) -> io::Result<u32> {
        let mut buf = [0u8; 64];
        let n = readlinkat(self.fd.as_raw_fd(), &ns_paths()[kind.index()], &mut buf)?;
        parse_ns_link(&buf[..n]).ok_or_else(|| io::Error::other(format!("unexpected ns link for {}", kind.name())))
    }

    /// Namespace inode of thread `tid` of this process.
    pub fn thread_ns(&self, tid: u32, kind: NsKind) -> io::Result<u32> {
        let mut buf = [0u8; 64];
        let path = cstr(&format!("task/{tid}/ns/{}", kind.name()))?;
        let n = readlinkat(self.fd.as_raw_fd(), &path, &mut buf)?;
        parse_ns_link(&buf[..n]).ok_or_else(|| io::Error::other(format!("unexpected ns link for {}", kind.name())))
    }

    /// All namespace kinds; kinds this kernel lacks (no time namespaces before 5.6) read 0.
    pub fn all_ns(&self, tid: Option<u32>) -> io::Result<[u32; NS_KINDS]> {
        let mut ns = [0u32; NS_KINDS];
        for kind in NsKind::ALL {
            let r = match tid {
                Some(t) if t != self.pid => self.thread_ns(t, kind),
                _ => self.ns(kind),
            };
            ns[kind.index()] = match r {
                Ok(v) => v,
                // A kind the kernel does not have: the process itself is still there.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && self.alive() => 0,
                Err(e) => return Err(e),
            };
        }
        Ok(ns)
    }

    /// Threads in the group, from the link count of /proc/<pid>/task (one stat call).
    pub fn thread_count(&self) -> io::Result<u32> {
        // SAFETY: zeroed stat is a valid out buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, C string and out pointer.
        if unsafe { libc::fstatat(self.fd.as_raw_fd(), c"task".as_ptr(), &mut st, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.st_nlink as u32).saturating_sub(2))
    }

    pub fn alive(&self) -> bool {
        // SAFETY: valid descriptor and C string.
        unsafe { libc::faccessat(self.fd.as_raw_fd(), c"stat".as_ptr(), libc::F_OK, 0) == 0 }
    }

    /// Read a file below the directory ("stat", "cgroup", "status", "task/<tid>/children").
    pub fn read(&self, name: &str, out: &mut Vec<u8>) -> io::Result<()> {
        read_fd(open_at(self.fd.as_raw_fd(), &cstr(name)?, libc::O_RDONLY)?, out)
    }

    pub fn stat(&self) -> io::Result<Stat> {
        let mut buf = Vec::with_capacity(512);
        self.read("stat", &mut buf)?;
        parse_stat(&buf).ok_or_else(|| io::Error::other(format!("unparsable /proc/{}/stat", self.pid)))
    }

    /// Thread ids of the group.
    pub fn tids(&self, out: &mut Vec<u32>) -> io::Result<()> {
        numeric_entries(open_at(self.fd.as_raw_fd(), c"task", libc::O_RDONLY | libc::O_DIRECTORY)?, out)
    }

    /// Children of every thread (CONFIG_PROC_CHILDREN), appended to `out`.
    pub fn children(&self, tids: &[u32], out: &mut Vec<u32>) -> io::Result<()> {
        let mut buf = Vec::new();
        for tid in tids {
            match self.read(&format!("task/{tid}/children"), &mut buf) {
                Ok(()) => out.extend(
                    String::from_utf8_lossy(&buf).split_ascii_whitespace().filter_map(|p| p.parse::<u32>().ok()),
                ),
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Real uid from /proc/<pid>/status.
    pub fn uid(&self) -> Option<u32> {
        let mut buf = Vec::new();
        self.read("status", &mut buf).ok()?;
        String::from_utf8_lossy(&buf)
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse().ok())
    }

    pub fn comm(&self, tid: Option<u32>) -> Option<String> {
        let mut buf = Vec::new();
        let name = match tid {
            Some(t) if t != self.pid => format!("task/{t}/comm"),
            _ => "comm".to_string(),
        };
        self.read(&name, &mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string())
    }

    pub fn exe(&self) -> Option<String> {
        let mut buf = [0u8; 4096];
        let n = readlinkat(self.fd.as_raw_fd(), c"exe", &mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// Has a task run since it was last looked at? Namespaces change only in the task's own
/// context (setns, unshare, exec, or kernel code running as it), so a task that has not run
/// cannot be somewhere new. Held open on /proc/<pid>/schedstat (run time, wait time, timeslice
/// count): one `pread` a pass, which fails once the process is gone, so the descriptor also
/// proves the pid still names the same process.
#[derive(Debug)]
pub struct RunGate {
    fd: OwnedFd,
    last: [u8; 64],
    len: usize,
}

impl RunGate {
    pub fn open(dir: &ProcDir) -> io::Result<RunGate> {
        let fd = open_at(dir.fd.as_raw_fd(), c"schedstat", libc::O_RDONLY)?;
        let mut gate = RunGate { fd, last: [0; 64], len: 0 };
        gate.ran()?;
        Ok(gate)
    }

    fn read(&self, buf: &mut [u8; 64]) -> io::Result<usize> {
        // SAFETY: valid descriptor and buffer.
        let n = unsafe { libc::pread(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Did the task run since the previous call? Err once it is gone.
    pub fn ran(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 64];
        let n = self.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let changed = buf[..n] != self.last[..self.len];
        self.last = buf;
        self.len = n;
        Ok(changed)
    }

    pub fn alive(&self) -> bool {
        self.read(&mut [0u8; 64]).is_ok_and(|n| n > 0)
    }
}

/// Does this kernel account run time in /proc/<pid>/schedstat (CONFIG_SCHED_INFO)? Without it
/// every task reads "0 0 0" and the gate would hide every change, so it is not used.
pub fn schedstat_counts() -> bool {
    fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .is_some_and(|ns| ns > 0)
}

/// When `pid` started (clock ticks since boot, as /proc/<pid>/stat says); None once it is gone.
pub fn start_time(pid: u32) -> Option<u64> {
    ProcDir::open(pid).and_then(|d| d.stat()).ok().map(|s| s.start_time)
}

/// SIGKILL through a pidfd, after checking the pidfd names the process that was judged (the
/// one that started at `start_time`): a pid reused since is never signalled.
pub fn kill_verified(pid: u32, start_time: u64) -> bool {
    if pid <= 1 {
        return false;
    }
    // SAFETY: pidfd_open with flags 0 returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as libc::c_int;
    if fd < 0 {
        return false;
    }
    let same = self::start_time(pid) == Some(start_time);
    // SAFETY: fd is the pidfd opened above; no siginfo.
    let ok = same
        && unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<u8>(), 0) } == 0;
    // SAFETY: closing our own descriptor once.
    unsafe { libc::close(fd) };
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_including_hostile_comms() {
        let line = b"4242 (sleep) S 4200 4242 4200 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 2000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let st = parse_stat(line).unwrap();
        assert_eq!(
            (st.comm.as_str(), st.state, st.ppid, st.num_threads, st.start_time),
            ("sleep", b'S', 4200, 1, 123456)
        );
        let hostile = b"7 (a) (b) R 1 ) S 99 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 12 0 777 0 0\n";
        let st = parse_stat(hostile).unwrap();
        assert_eq!((st.comm.as_str(), st.ppid, st.num_threads, st.start_time), ("a) (b) R 1 ", 99, 12, 777));
        let nonutf8 = b"8 (\xff\xfe) S 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(parse_stat(nonutf8).unwrap().comm, "\u{FFFD}\u{FFFD}");
        for junk in [&b""[..], b"1 (x", b"1 x) S", b"1 (x) S notanumber", b"1 (x) S 1 2 3"] {
            assert!(parse_stat(junk).is_none(), "{:?}", String::from_utf8_lossy(junk));
        }
    }

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link(b"mnt:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link(b"pid_for_children:[4026531836]"), Some(4026531836));
        for bad in [&b""[..], b"mnt:[]", b"mnt:[12", b"mnt:[x]", b"mnt:[99999999999]"] {
            assert_eq!(parse_ns_link(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn own_process_through_a_held_handle_and_a_vanished_one() {
        let me = ProcDir::open(std::process::id()).unwrap();
        let ns = me.all_ns(None).unwrap();
        assert_eq!(ns[NsKind::Mnt.index()], crate::sys::ns_inode("self", "mnt").unwrap());
        assert!(me.thread_count().unwrap() >= 1);
        let st = me.stat().unwrap();
        assert!(st.start_time > 0);
        let mut tids = Vec::new();
        me.tids(&mut tids).unwrap();
        assert!(tids.contains(&std::process::id()));
        let mut pids = Vec::new();
        list_pids(&mut pids).unwrap();
        assert!(pids.contains(&std::process::id()));

        // A child that exits: every read through its held handle reports it gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dir = ProcDir::open(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!dir.alive());
        let e = dir.ns(NsKind::Mnt).unwrap_err();
        assert!(gone(&e), "{e}");
        assert!(gone(&dir.stat().unwrap_err()));
        assert!(gone(&ProcDir::open(u32::MAX).unwrap_err()));
    }

    #[test]
    fn run_gate_sees_running_and_not_running_tasks() {
        assert!(schedstat_counts(), "this kernel accounts run time");
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut gate = RunGate::open(&ProcDir::open(sleeper.id()).unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!gate.ran().unwrap(), "a sleeping task did not run");
        // SAFETY: signalling our own child: SIGSTOP/SIGCONT make it run (handle the signals).
        unsafe { libc::kill(sleeper.id() as i32, libc::SIGSTOP) };
        unsafe { libc::kill(sleeper.id() as i32, libc::SIGCONT) };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(gate.ran().unwrap(), "a task that handled signals ran");
        assert!(gate.alive());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!gate.alive());
        assert!(gone(&gate.ran().unwrap_err()));
    }

    #[test]
    fn kill_verified_signals_only_the_process_that_was_judged() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let started = start_time(pid).expect("a live child has a start time");
        assert!(!kill_verified(pid, started + 1), "another start time is another process");
        assert!(start_time(pid).is_some(), "the child is untouched");
        assert!(!kill_verified(1, start_time(1).unwrap_or(0)), "init is never signalled");
        assert!(kill_verified(pid, started));
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
