//! Measure one process's code in memory against the files it was mapped from.
//!
//! Cheap signal first: smaps says per mapping whether any page stopped being the page cache's
//! (`Anonymous`, or `Swap` once such a page was swapped out). A private mapping nobody can
//! write with neither holds only page cache pages, so it equals the file and is not read. Only where the counters point is
//! memory read: code is compared page by page with its file (through `map_files`, which opens
//! deleted files too); read-only data the dynamic linker wrote before sealing it (RELRO) has
//! no file to compare with, so the first pass hashes it and later passes compare with that.
//! Anonymous executable mappings are listed for the caller to judge (JIT runtimes have them).
//!
//! Every per-process file is opened through one `/proc/<pid>` directory descriptor: it stays
//! bound to the process it was opened for, so a pid reused mid-pass fails to open instead of
//! being measured as if it were the same process.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use super::smaps::{Mapping, parse_smaps};

/// The most memory one pass reads from one process, mappings taken in address order. Pages
/// that turn out unreadable count too, so a huge mapping of holes cannot make a pass unbounded.
pub const MAX_BYTES_PER_PASS: u64 = 64 << 20;
/// Dirty read-only mappings with more pages than this are not hashed (RELRO is a few pages).
pub const MAX_READ_ONLY_PAGES: u64 = 4096;

/// Executable regions the kernel provides: no file's, and not the process's doing.
const KERNEL_CODE: [&str; 3] = ["[vdso]", "[vsyscall]", "[uprobes]"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchKind {
    /// An executable page differs from the file it maps (ptrace POKETEXT, a /proc/pid/mem write).
    Code,
    /// A dirty read-only page (RELRO) changed since the first pass hashed it.
    ReadOnlyData,
}

/// A mapping whose memory is not what it should be; one per mapping and pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMismatch {
    pub kind: MismatchKind,
    /// The mapped file (without smaps' " (deleted)").
    pub path: String,
    /// "r-xp" style.
    pub perms: String,
    /// The mapping's address range.
    pub start: u64,
    pub end: u64,
    /// The mapping's offset in the file.
    pub file_offset: u64,
    /// Address of the first page that differs.
    pub first_page: u64,
}

/// An executable mapping no file backs: JIT code, or injected code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonExec {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    /// smaps' path column: empty, "[anon:name]", "[heap]", "[stack]", "/dev/zero (deleted)".
    pub name: String,
}

/// What one process's passes remember between them.
#[derive(Debug, Default)]
pub struct ProcessMemory {
    /// Field 22 of /proc/<pid>/stat at the last pass: another value is another process that
    /// reused the pid, and starts afresh.
    start_time: Option<u64>,
    /// Per dirty read-only mapping: the SHA-256 of each page at the first pass that read it
    /// (None: not read yet). Per page, so a change names its page.
    read_only: HashMap<MappingKey, Vec<Option<PageHash>>>,
}

/// (start, end, inode): a remapped or re-protected region is another mapping.
type MappingKey = (u64, u64, u64);
type PageHash = [u8; 32];

impl ProcessMemory {
    fn begin_pass(&mut self, start_time: u64) {
        if self.start_time != Some(start_time) {
            self.read_only.clear();
            self.start_time = Some(start_time);
        }
    }
}

/// What one pass found and how much it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub mismatches: Vec<CodeMismatch>,
    pub anon_exec: Vec<AnonExec>,
    /// Mappings smaps listed.
    pub mappings: usize,
    /// Mappings at least one page of which was read.
    pub mappings_compared: usize,
    /// Bytes of memory read and compared (or hashed), at most `MAX_BYTES_PER_PASS`.
    pub bytes_compared: u64,
}

/// One pass over `pid`'s mappings. Err(NotFound) when the process is gone before its smaps
/// could be read; a process that goes away later yields what was done until then.
/// Err(PermissionDenied) when the caller may not read its memory or mapped files (ptrace
/// rights for `mem`; CAP_SYS_ADMIN, or CAP_CHECKPOINT_RESTORE, for `map_files`).
pub fn measure_process(pid: u32, state: &mut ProcessMemory) -> io::Result<PassReport> {
    let proc_dir = File::open(format!("/proc/{pid}")).map_err(|e| not_found_if_gone(pid, e))?;
    let stat = read_in(&proc_dir, "stat").map_err(|e| not_found_if_gone(pid, e))?;
    let start_time = start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat has no start time")))?;
    state.begin_pass(start_time);
    let smaps = read_in(&proc_dir, "smaps").map_err(|e| not_found_if_gone(pid, e))?;
    let mappings = parse_smaps(&String::from_utf8_lossy(&smaps));

    let mut pass = Pass::new(proc_dir);
    pass.report.mappings = mappings.len();
    let mut live_read_only = HashSet::new();
    for mapping in &mappings {
        let read_before = pass.report.bytes_compared;
        match measure_for(mapping) {
            Measure::Skip => {}
            Measure::AnonExec => pass.report.anon_exec.push(anon_exec(mapping)),
            Measure::Code => {
                if let Some(page) = pass.compare_with_file(mapping)? {
                    pass.report.mismatches.push(mismatch(MismatchKind::Code, mapping, page));
                }
            }
            Measure::ReadOnlyData => {
                live_read_only.insert(key_of(mapping));
                if let Some(page) = pass.compare_with_first_pass(mapping, &mut state.read_only)? {
                    pass.report.mismatches.push(mismatch(MismatchKind::ReadOnlyData, mapping, page));
                }
            }
        }
        if pass.report.bytes_compared > read_before {
            pass.report.mappings_compared += 1;
        }
    }
    // Unmapped regions' hashes go: the state stays as big as the process's dirty RELRO.
    if !pass.vanished {
        state.read_only.retain(|key, _| live_read_only.contains(key));
    }
    Ok(pass.report)
}

/// What a mapping calls for.
#[derive(Debug, PartialEq, Eq)]
enum Measure {
    Skip,
    Code,
    ReadOnlyData,
    AnonExec,
}

fn measure_for(mapping: &Mapping) -> Measure {
    if mapping.exec && is_anonymous(mapping) {
        return Measure::AnonExec;
    }
    // Writable: its content is the process's to change. Shared: its pages are the page cache.
    if !mapping.file_backed() || mapping.write || mapping.shared {
        return Measure::Skip;
    }
    // Only page cache pages: the file, by construction. A copied page of a private file
    // mapping is anonymous (or swapped out). `Private_Dirty` alone is a page cache page not
    // yet written back (a file just extracted or built): still the file, so not read.
    if mapping.anonymous_kb == 0 && mapping.swap_kb == 0 {
        return Measure::Skip;
    }
    // Execute-only code ("--xp") is code too: /proc/pid/mem reads it all the same.
    if mapping.exec {
        Measure::Code
    } else if mapping.read {
        Measure::ReadOnlyData
    } else {
        Measure::Skip
    }
}

/// Memory no file backs. A MAP_SHARED|MAP_ANONYMOUS region shows as "/dev/zero (deleted)".
fn is_anonymous(mapping: &Mapping) -> bool {
    let path = mapping.path.as_str();
    if KERNEL_CODE.contains(&path) {
        return false;
    }
    path.is_empty()
        || path.starts_with("[anon")
        || path == "[heap]"
        || path.starts_with("[stack")
        || (path == "/dev/zero" && mapping.deleted)
}

fn anon_exec(mapping: &Mapping) -> AnonExec {
    let suffix = if mapping.deleted { " (deleted)" } else { "" };
    AnonExec {
        start: mapping.start,
        end: mapping.end,
        perms: mapping.perms(),
        name: format!("{}{suffix}", mapping.path),
    }
}

fn mismatch(kind: MismatchKind, mapping: &Mapping, first_page: u64) -> CodeMismatch {
    CodeMismatch {
        kind,
        path: mapping.path.clone(),
        perms: mapping.perms(),
        start: mapping.start,
        end: mapping.end,
        file_offset: mapping.offset,
        first_page,
    }
}

fn key_of(mapping: &Mapping) -> MappingKey {
    (mapping.start, mapping.end, mapping.inode)
}

/// How reading one page of memory went.
enum Page {
    Read,
    /// Not present, a guard page, past the end of the file: skipped, not a mismatch.
    Unreadable,
    /// The budget is spent or the process is gone: read no more this pass.
    Stop,
}

/// One pass's descriptors, buffers, budget and report.
struct Pass {
    proc_dir: File,
    /// /proc/<pid>/mem, opened at the first page a pass reads.
    mem: Option<File>,
    page_size: u64,
    /// Bytes of memory read or tried, against `MAX_BYTES_PER_PASS`.
    spent: u64,
    vanished: bool,
    memory_page: Vec<u8>,
    file_page: Vec<u8>,
    report: PassReport,
}

impl Pass {
    fn new(proc_dir: File) -> Pass {
        let page_size = page_size();
        let len = usize::try_from(page_size).unwrap_or(4096);
        Pass {
            proc_dir,
            mem: None,
            page_size,
            spent: 0,
            vanished: false,
            memory_page: vec![0; len],
            file_page: vec![0; len],
            report: PassReport::default(),
        }
    }

    fn pages(&self, mapping: &Mapping) -> impl Iterator<Item = u64> + use<> {
        (mapping.start..mapping.end).step_by(usize::try_from(self.page_size).unwrap_or(4096))
    }

    /// The first page of a code mapping that differs from the file, if any.
    fn compare_with_file(&mut self, mapping: &Mapping) -> io::Result<Option<u64>> {
        let Some(file) = self.open_mapped_file(mapping)? else { return Ok(None) };
        for page in self.pages(mapping) {
            match self.read_memory_page(page)? {
                Page::Read => {}
                Page::Unreadable => continue,
                Page::Stop => break,
            }
            let Some(offset) = mapping.offset.checked_add(page - mapping.start) else { break };
            if read_file_page(&file, offset, &mut self.file_page).is_err() {
                continue;
            }
            if self.memory_page != self.file_page {
                return Ok(Some(page));
            }
        }
        Ok(None)
    }

    /// The first page of a dirty read-only mapping whose hash changed since the first pass
    /// that read it; at that first pass, remembers the hashes and finds nothing.
    fn compare_with_first_pass(
        &mut self,
        mapping: &Mapping,
        baselines: &mut HashMap<MappingKey, Vec<Option<PageHash>>>,
    ) -> io::Result<Option<u64>> {
        if mapping.end.saturating_sub(mapping.start).div_ceil(self.page_size) > MAX_READ_ONLY_PAGES {
            return Ok(None);
        }
        let mut hashes = Vec::new();
        for page in self.pages(mapping) {
            hashes.push(match self.read_memory_page(page)? {
                Page::Read => Some(PageHash::from(Sha256::digest(&self.memory_page))),
                Page::Unreadable | Page::Stop => None,
            });
        }
        if self.vanished {
            return Ok(None);
        }
        let Some(baseline) = baselines.get_mut(&key_of(mapping)) else {
            baselines.insert(key_of(mapping), hashes);
            return Ok(None);
        };
        Ok(first_changed(baseline, &hashes).map(|index| mapping.start + index as u64 * self.page_size))
    }

    /// `map_files/<start>-<end>`: the very file the mapping maps, even one since deleted or
    /// replaced. None when the mapping is gone since smaps listed it.
    fn open_mapped_file(&self, mapping: &Mapping) -> io::Result<Option<File>> {
        match open_in(&self.proc_dir, &format!("map_files/{:x}-{:x}", mapping.start, mapping.end)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The page at `addr` into `memory_page`, within the budget.
    fn read_memory_page(&mut self, addr: u64) -> io::Result<Page> {
        if self.vanished || self.spent.saturating_add(self.page_size) > MAX_BYTES_PER_PASS {
            return Ok(Page::Stop);
        }
        if self.mem.is_none() {
            match open_in(&self.proc_dir, "mem") {
                Ok(mem) => self.mem = Some(mem),
                Err(e) if is_gone(&e) => self.vanished = true,
                Err(e) => return Err(e),
            }
        }
        let Some(mem) = &self.mem else { return Ok(Page::Stop) };
        self.spent += self.page_size;
        match read_memory(mem, addr, &mut self.memory_page) {
            MemoryRead::Read => {
                self.report.bytes_compared += self.page_size;
                Ok(Page::Read)
            }
            MemoryRead::Unreadable => Ok(Page::Unreadable),
            MemoryRead::Gone => {
                self.vanished = true;
                Ok(Page::Stop)
            }
        }
    }
}

/// The index of the first page whose hash differs from the baseline's. Pages the baseline
/// could not read before are adopted now.
fn first_changed(baseline: &mut [Option<PageHash>], now: &[Option<PageHash>]) -> Option<usize> {
    let mut first = None;
    for (index, (was, is)) in baseline.iter_mut().zip(now).enumerate() {
        match (*was, *is) {
            (Some(was), Some(is)) if was != is => {
                first.get_or_insert(index);
            }
            (None, Some(_)) => *was = *is,
            _ => {}
        }
    }
    first
}

enum MemoryRead {
    Read,
    Unreadable,
    Gone,
}

/// pread of one page of /proc/<pid>/mem. EIO is a page the kernel cannot give (not
/// present, guard, past the file's end); a read of 0 bytes means the process has no memory
/// any more (it exited).
fn read_memory(mem: &File, addr: u64, page: &mut [u8]) -> MemoryRead {
    let mut done = 0;
    while done < page.len() {
        match mem.read_at(&mut page[done..], addr.saturating_add(done as u64)) {
            Ok(0) if done == 0 => return MemoryRead::Gone,
            Ok(0) => return MemoryRead::Unreadable,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_gone(&e) => return MemoryRead::Gone,
            Err(_) => return MemoryRead::Unreadable,
        }
    }
    MemoryRead::Read
}

/// One page of the file at `offset`. Past the end of the file the page is zeros, as the
/// kernel fills the mapping's last page.
fn read_file_page(file: &File, offset: u64, page: &mut [u8]) -> io::Result<()> {
    page.fill(0);
    let mut done = 0;
    while done < page.len() {
        match file.read_at(&mut page[done..], offset.saturating_add(done as u64)) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Field 22 of /proc/<pid>/stat, counted after the command name's closing parenthesis (the
/// name may hold spaces and parentheses).
fn start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let fields = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    // Field 3 (state) is the first after the name.
    fields.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// `name` under the `/proc/<pid>` directory, so it is that process's or an error.
fn open_in(dir: &File, name: &str) -> io::Result<File> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: openat with a live directory descriptor and a NUL-terminated name returns a
    // new descriptor or -1.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn read_in(dir: &File, name: &str) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_in(dir, name)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// ENOENT or ESRCH: the process (or the mapping) is no more.
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

fn not_found_if_gone(pid: u32, e: io::Error) -> io::Error {
    if is_gone(&e) { io::Error::new(io::ErrorKind::NotFound, format!("process {pid} is gone")) } else { e }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
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

    fn expected(kind: MismatchKind, mapping: &Mapping, first_page: u64) -> CodeMismatch {
        CodeMismatch {
            kind,
            path: mapping.path.clone(),
            perms: mapping.perms(),
            start: mapping.start,
            end: mapping.end,
            file_offset: mapping.offset,
            first_page,
        }
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
        assert_eq!(poked.mismatches, [expected(MismatchKind::Code, &code, page)], "{poked:?}");
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
            assert_eq!(report.mismatches, [expected(MismatchKind::ReadOnlyData, &relro, page)], "{pass} pass");
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
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
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
        assert_eq!(past_eof, [expected(MismatchKind::Code, mapped, code.start() + page as u64)]);

        code.patch(10, code.byte(10) ^ 0xff);
        assert_eq!(mismatches_at(code.start()), [expected(MismatchKind::Code, mapped, code.start())]);
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
}
