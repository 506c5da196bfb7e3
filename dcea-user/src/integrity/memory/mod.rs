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
mod tests;
