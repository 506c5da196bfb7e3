//! Small wrappers over the host's /proc, clocks and filesystems.

use std::{
    ffi::CString,
    fs,
    io::{self, Write},
    path::Path,
};

use crate::Error;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Namespace inode of `/proc/<pid>/ns/<kind>` (pid may be "self").
pub fn ns_inode(pid: &str, kind: &str) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(format!("/proc/{pid}/ns/{kind}"))?;
    u32::try_from(meta.ino()).map_err(|_| io::Error::other("namespace inode out of range"))
}

const TRACEFS_MAGIC: i64 = 0x7472_6163;
const DEBUGFS_MAGIC: i64 = 0x6462_6720;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The filesystem type (`f_type` of statfs) at `path`.
pub fn fs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
}

fn mount(fstype: &str, target: &str) -> io::Result<()> {
    let (src, ty, tgt) = (CString::new(fstype)?, CString::new(fstype)?, CString::new(target)?);
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// What `ensure_kernel_filesystems` had to do, for the start-up report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MountReport {
    pub tracefs: String,
    pub bpffs: String,
}

/// Mount tracefs (tracepoint ids) and bpffs when a node lacks them.
pub fn ensure_kernel_filesystems() -> Result<MountReport, Error> {
    let mut report = MountReport::default();
    let tracing = Path::new("/sys/kernel/tracing");
    let debug_tracing = Path::new("/sys/kernel/debug/tracing");
    report.tracefs = if fs_magic(tracing) == Some(TRACEFS_MAGIC) {
        "present".into()
    } else if fs_magic(debug_tracing) == Some(TRACEFS_MAGIC)
        || fs_magic(Path::new("/sys/kernel/debug")) == Some(DEBUGFS_MAGIC) && debug_tracing.join("events").exists()
    {
        "present (debugfs)".into()
    } else {
        mount("tracefs", "/sys/kernel/tracing").map_err(|e| Error::io("mounting tracefs on /sys/kernel/tracing", e))?;
        "mounted /sys/kernel/tracing".into()
    };
    let bpffs = Path::new("/sys/fs/bpf");
    report.bpffs = if fs_magic(bpffs) == Some(BPF_FS_MAGIC) {
        "present".into()
    } else {
        match fs::create_dir_all(bpffs).and_then(|_| mount("bpf", "/sys/fs/bpf")) {
            Ok(()) => "mounted /sys/fs/bpf".into(),
            // bpffs is only needed for pinning; say so and go on.
            Err(e) => format!("not mounted ({e}); pinning unavailable"),
        }
    };
    Ok(report)
}

/// Ok when the kernel runs the BPF LSM, else why not. Mounts securityfs when a node lacks it.
pub fn bpf_lsm_active() -> Result<(), String> {
    let list = Path::new("/sys/kernel/security/lsm");
    if !list.exists() {
        let _ = mount("securityfs", "/sys/kernel/security");
    }
    match fs::read_to_string(list) {
        Ok(active) if active.trim().split(',').any(|l| l == "bpf") => Ok(()),
        Ok(active) => Err(format!(
            "bpf is not among the active LSMs ({}); boot with lsm={},bpf to deny in the kernel",
            active.trim(),
            active.trim()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", list.display())),
    }
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (< 5.11).
pub fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid rlimit pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

/// Bytes of a NUL-terminated kernel string, lossily as UTF-8 (hostile names stay printable
/// JSON: serde escapes what remains).
pub fn c_bytes_to_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Replace `path` atomically: write a temp file in the same directory, fsync it, rename it over
/// `path`, fsync the directory. A crash leaves the old file or the new one, never a torn one.
/// `mode` is applied to the temp file before the rename (state files are root-only).
pub fn write_atomic(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut io::BufWriter<&fs::File>) -> io::Result<()>,
) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
    {
        let mut w = io::BufWriter::with_capacity(256 * 1024, tmp.as_file());
        write(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (the trust checker keeps a /proc handle per
/// tracked process); returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid rlimit pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// The name of a filesystem by its superblock magic (include/uapi/linux/magic.h), for the
/// filesystems rules ask about; `None` for others.
pub fn fs_type_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x0027_e0eb => "cgroup",
        0x6367_7270 => "cgroup2",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0x7363_6673 => "securityfs",
        0xcafe_4a11 => "bpf",
        0x4249_4e4d => "binfmt_misc",
        0x0102_1994 => "tmpfs",
        0x794c_7630 => "overlay",
        0x1cd1 => "devpts",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        _ => return None,
    })
}
