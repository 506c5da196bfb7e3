//! Measurement of real processes: poked code, changed RELRO, pid reuse, odd smaps.

use std::ffi::c_void;
use std::io::Write;
use std::process::{Child, Command};
use std::ptr;
use std::time::{Duration, Instant};

use super::*;

fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("SKIP: measuring a process's memory needs root (map_files needs CAP_SYS_ADMIN)");
    }
    !root
}

fn mapping(perms: &str, path: &str, dirty_kb: u64) -> Mapping {
    let m = &parse_smaps(&format!("1000-4000 {perms} 00000000 08:01 7 {path}\n"))[0];
    Mapping { inode: if path.starts_with('/') { 7 } else { 0 }, anonymous_kb: dirty_kb, ..m.clone() }
}

#[test]
fn what_each_mapping_calls_for() {
    let cases = [
        (mapping("r-xp", "/usr/lib/libc.so.6", 0), Measure::Skip),
        (mapping("r-xp", "/usr/lib/libc.so.6", 4), Measure::Code),
        (mapping("--xp", "/usr/lib/libc.so.6", 4), Measure::Code),
        (mapping("r--p", "/usr/lib/libc.so.6", 4), Measure::ReadOnlyData),
        (mapping("r--p", "/usr/lib/libc.so.6", 0), Measure::Skip),
        (mapping("rw-p", "/usr/lib/libc.so.6", 4), Measure::Skip),
        (mapping("rwxp", "/usr/lib/libc.so.6", 4), Measure::Skip),
        (mapping("r-xs", "/dev/shm/x", 4), Measure::Skip),
        (mapping("---p", "/usr/lib/libc.so.6", 4), Measure::Skip),
        (mapping("rwxp", "", 4), Measure::AnonExec),
        (mapping("r-xp", "[anon:jit]", 0), Measure::AnonExec),
        (mapping("rwxp", "[heap]", 0), Measure::AnonExec),
        (mapping("rwxp", "[stack]", 0), Measure::AnonExec),
        (mapping("rwxs", "/dev/zero (deleted)", 0), Measure::AnonExec),
        (mapping("rw-p", "", 4), Measure::Skip),
        (mapping("r-xp", "[vdso]", 0), Measure::Skip),
        (mapping("--xp", "[vsyscall]", 0), Measure::Skip),
        (mapping("r-xp", "[uprobes]", 0), Measure::Skip),
    ];
    for (m, want) in cases {
        assert_eq!(measure_for(&m), want, "{} {}", m.perms(), m.path);
    }
    let anon = mapping("rwxs", "/dev/zero (deleted)", 0);
    assert_eq!(anon_exec(&anon).name, "/dev/zero (deleted)");
    let dirty_page_cache = Mapping { private_dirty_kb: 4, ..mapping("r-xp", "/x", 0) };
    assert_eq!(measure_for(&dirty_page_cache), Measure::Skip, "not written back is not changed");
    let swapped = Mapping { swap_kb: 4, ..mapping("r-xp", "/x", 0) };
    assert_eq!(measure_for(&swapped), Measure::Code);
}

#[test]
fn first_changed_page_and_late_pages_adopted() {
    let (a, b) = (Some([1; 32]), Some([2; 32]));
    let mut baseline = vec![a, None, a, a];
    assert_eq!(first_changed(&mut baseline, &[a, b, a, None]), None, "an unread page is adopted, not compared");
    assert_eq!(baseline, [a, b, a, a]);
    assert_eq!(first_changed(&mut baseline, &[a, a, b, b]), Some(1));
    assert_eq!(baseline, [a, b, a, a], "the first pass's hashes stay the reference");
}

#[test]
fn a_reused_pid_starts_afresh() {
    let mut state = ProcessMemory::default();
    state.begin_pass(100);
    state.read_only.insert((1, 2, 3), vec![None]);
    state.begin_pass(100);
    assert_eq!(state.read_only.len(), 1);
    state.begin_pass(200);
    assert!(state.read_only.is_empty());
}

#[test]
fn start_time_is_field_22() {
    let stat = b"42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10\n";
    assert_eq!(start_time(stat), Some(987654));
    assert_eq!(start_time(b"42 (truncated) S 1"), None);
    assert_eq!(start_time(b"no parenthesis"), None);
}

#[test]
fn a_gone_process_is_not_found() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    for pid in [pid, u32::MAX] {
        let err = measure_process(pid, &mut ProcessMemory::default()).expect_err("gone");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{pid}: {err}");
    }
}

/// A `sleep 30` child, killed by its pid when the test ends, however it ends.
struct Sleeper(Child);

impl Sleeper {
    fn spawn() -> Sleeper {
        let sleeper = Sleeper(Command::new("sleep").arg("30").spawn().expect("spawn sleep"));
        sleeper.wait_until_asleep();
        sleeper
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Past exec and the dynamic linker (RELRO sealed): in its nanosleep.
    fn wait_until_asleep(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let syscall = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid())).unwrap_or_default();
            let number = syscall.split_whitespace().next().and_then(|n| n.parse::<libc::c_long>().ok());
            if number == Some(libc::SYS_clock_nanosleep) || number == Some(libc::SYS_nanosleep) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("sleep {} did not reach its nanosleep", self.pid());
    }

    fn mappings(&self) -> Vec<Mapping> {
        parse_smaps(&std::fs::read_to_string(format!("/proc/{}/smaps", self.pid())).expect("smaps"))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test as a debugger of `pid`; detaches when dropped.
struct Tracer(libc::pid_t);

impl Tracer {
    /// Attach and wait for the tracee's stop. None (after a SKIP line) where ptrace is refused.
    fn attach(pid: u32) -> Option<Tracer> {
        let pid = pid as libc::pid_t;
        // SAFETY: PTRACE_ATTACH takes no pointers.
        let attached = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, ptr::null_mut::<c_void>(), 0usize) };
        if attached < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "PTRACE_ATTACH {pid}: {e}");
            println!("SKIP: ptrace refused: {e}");
            return None;
        }
        let tracer = Tracer(pid);
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live int.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(waited == pid && libc::WIFSTOPPED(status), "waitpid {pid}: {waited}, status {status:#x}");
        Some(tracer)
    }

    /// Flip a byte of the word at `addr` (PEEKDATA, POKEDATA: POKETEXT is the same request).
    fn flip_byte(&self, addr: u64) {
        // SAFETY: errno is this thread's; it tells a failed PEEKDATA from a word of -1.
        let word = unsafe {
            *libc::__errno_location() = 0;
            libc::ptrace(libc::PTRACE_PEEKDATA, self.0, addr as *mut c_void, 0usize)
        };
        let errno = io::Error::last_os_error();
        assert_eq!(errno.raw_os_error(), Some(0), "PEEKDATA {addr:#x}: {errno}");
        // The lowest byte: at `addr` on a little-endian machine, in the same page anyway.
        // SAFETY: POKEDATA writes into the tracee only.
        let poked = unsafe { libc::ptrace(libc::PTRACE_POKEDATA, self.0, addr as *mut c_void, word ^ 0xff) };
        assert_eq!(poked, 0, "POKEDATA {addr:#x}: {}", io::Error::last_os_error());
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // SAFETY: PTRACE_DETACH with signal 0 resumes the tracee.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, ptr::null_mut::<c_void>(), 0usize) };
    }
}

/// The page in the middle of `mapping`.
fn middle_page(mapping: &Mapping) -> u64 {
    let page = page_size();
    mapping.start + (mapping.end - mapping.start) / page / 2 * page
}

#[test]
fn poked_code_is_found_in_that_process_only() {
    if skip_unless_root() {
        return;
    }
    let target = Sleeper::spawn();
    let bystander = Sleeper::spawn();
    let mut state = ProcessMemory::default();
    let clean = measure_process(target.pid(), &mut state).expect("measure");
    assert!(clean.mismatches.is_empty(), "a fresh sleep is its files: {clean:?}");
    assert!(clean.mappings > 0);

    let code = target
        .mappings()
        .into_iter()
        .filter(|m| m.file_backed() && m.perms() == "r-xp" && m.end - m.start >= 3 * page_size())
        .max_by_key(|m| m.end - m.start)
        .expect("sleep maps code of three pages or more");
    let page = middle_page(&code);
    let Some(tracer) = Tracer::attach(target.pid()) else { return };
    tracer.flip_byte(page);
    drop(tracer);

    let poked = measure_process(target.pid(), &mut state).expect("measure");
    assert_eq!(poked.mismatches, [mismatch(MismatchKind::Code, &code, page)], "{poked:?}");
    assert!(poked.mappings_compared >= 1 && poked.bytes_compared >= page_size(), "{poked:?}");

    let other = measure_process(bystander.pid(), &mut ProcessMemory::default()).expect("measure");
    assert!(other.mismatches.is_empty(), "the page cache is untouched: {other:?}");
}

#[test]
fn changed_relro_is_found_on_later_passes() {
    if skip_unless_root() {
        return;
    }
    let target = Sleeper::spawn();
    let Some(relro) = target.mappings().into_iter().find(|m| measure_for(m) == Measure::ReadOnlyData) else {
        println!("SKIP: sleep has no dirty r--p mapping (statically linked?)");
        return;
    };
    let mut state = ProcessMemory::default();
    for pass in ["first", "second"] {
        let report = measure_process(target.pid(), &mut state).expect("measure");
        assert!(report.mismatches.is_empty(), "{pass} pass: {report:?}");
        assert!(report.mappings_compared >= 1, "{pass} pass: {report:?}");
    }
    let page = middle_page(&relro);
    let Some(tracer) = Tracer::attach(target.pid()) else { return };
    tracer.flip_byte(page);
    drop(tracer);

    for pass in ["changed", "next"] {
        let report = measure_process(target.pid(), &mut state).expect("measure");
        assert_eq!(report.mismatches, [mismatch(MismatchKind::ReadOnlyData, &relro, page)], "{pass} pass");
    }
}

/// A private mapping of a file in this process, patched the way text relocations are:
/// made writable, written, made r-x again, and so dirty.
struct PatchedCode {
    addr: *mut u8,
    len: usize,
}

impl PatchedCode {
    fn map(file: &File, len: usize) -> io::Result<PatchedCode> {
        // SAFETY: a new private mapping of a file we own; nothing else points into it.
        let addr = unsafe {
            libc::mmap(ptr::null_mut(), len, libc::PROT_READ | libc::PROT_EXEC, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(PatchedCode { addr: addr.cast(), len })
    }

    fn start(&self) -> u64 {
        self.addr as u64
    }

    fn byte(&self, offset: usize) -> u8 {
        assert!(offset < self.len);
        // SAFETY: inside the mapping, which is readable.
        unsafe { self.addr.add(offset).read_volatile() }
    }

    fn patch(&self, offset: usize, byte: u8) {
        assert!(offset < self.len);
        self.protect(libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: inside the mapping, which is writable now.
        unsafe { self.addr.add(offset).write_volatile(byte) };
        self.protect(libc::PROT_READ | libc::PROT_EXEC);
    }

    fn protect(&self, prot: libc::c_int) {
        // SAFETY: our own mapping, whole.
        let done = unsafe { libc::mprotect(self.addr.cast(), self.len, prot) };
        assert_eq!(done, 0, "mprotect: {}", io::Error::last_os_error());
    }
}

impl Drop for PatchedCode {
    fn drop(&mut self) {
        // SAFETY: our own mapping, whole; nothing points into it any more.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

fn mismatches_at(start: u64) -> Vec<CodeMismatch> {
    let report = measure_process(std::process::id(), &mut ProcessMemory::default()).expect("measure self");
    report.mismatches.into_iter().filter(|m| m.start == start).collect()
}

#[test]
fn dirty_code_is_compared_with_its_deleted_file_to_the_last_partial_page() {
    if skip_unless_root() {
        return;
    }
    let page = page_size() as usize;
    // Two pages of mapping over a page and 100 bytes of file: the rest of the last page
    // is zeros in memory.
    let content: Vec<u8> = (0..page + 100).map(|i| (i % 251) as u8 + 1).collect();
    let mut file = tempfile::tempfile().expect("an unlinked temp file");
    file.write_all(&content).expect("write");
    let code = match PatchedCode::map(&file, 2 * page) {
        Ok(code) => code,
        Err(e) => {
            println!("SKIP: cannot map {} executable: {e}", std::env::temp_dir().display());
            return;
        }
    };
    code.patch(page, code.byte(page));
    let own = parse_smaps(&std::fs::read_to_string("/proc/self/smaps").expect("smaps"));
    let mapped = own.iter().find(|m| m.start == code.start()).expect("our mapping");
    assert!(mapped.deleted && measure_for(mapped) == Measure::Code, "{mapped:?}");
    assert_eq!(mismatches_at(code.start()), [], "rewritten with the same bytes");

    code.patch(page + 200, 0x5a);
    let past_eof = mismatches_at(code.start());
    assert_eq!(past_eof, [mismatch(MismatchKind::Code, mapped, code.start() + page as u64)]);

    code.patch(10, code.byte(10) ^ 0xff);
    assert_eq!(mismatches_at(code.start()), [mismatch(MismatchKind::Code, mapped, code.start())]);
}

#[test]
fn anonymous_code_is_listed() {
    if skip_unless_root() {
        return;
    }
    const PR_SET_VMA: libc::c_int = 0x5356_4d41;
    const PR_SET_VMA_ANON_NAME: libc::c_ulong = 0;
    let len = page_size() as usize;
    // SAFETY: a new anonymous mapping, unmapped below.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    // SAFETY: names our own mapping; the name is copied by the kernel.
    let named =
        unsafe { libc::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr as libc::c_ulong, len, c"dcea-test".as_ptr()) }
            == 0;
    let report = measure_process(std::process::id(), &mut ProcessMemory::default());
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(addr, len) };

    let report = report.expect("measure self");
    let start = addr as u64;
    let listed = report.anon_exec.iter().find(|a| a.start <= start && start < a.end).expect("listed");
    assert_eq!(listed.perms, "r-xp");
    if named {
        assert_eq!(listed.name, "[anon:dcea-test]");
    }
    assert!(report.anon_exec.iter().all(|a| !KERNEL_CODE.contains(&a.name.as_str())), "{report:?}");
}
