//! Behaviour records from the kernel, decoded into the strings the rules engine reads.
//!
//! Records are rare by construction (the kernel filters), so each is decoded once into owned
//! strings; rule evaluation then borrows from them without allocating.

use dcea_common::{ARG_LEN, BEHAVIOUR_SIZE, Behaviour, EventKind, Hook, arg, flags};

use super::decode::{DecodeError, cgroup_path_of, components_path};
use crate::sys::c_bytes_to_string;

/// The kind word every record starts with.
pub fn record_kind(bytes: &[u8]) -> Option<u32> {
    bytes.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

pub fn decode_behaviour(bytes: &[u8]) -> Result<Behaviour, DecodeError> {
    if bytes.len() < BEHAVIOUR_SIZE {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; Behaviour is plain data valid for any bit pattern; unaligned read.
    let ev: Behaviour = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Behaviour>()) };
    if EventKind::from_u32(ev.kind) != Some(EventKind::Behaviour) {
        return Err(DecodeError::Kind(ev.kind));
    }
    Hook::from_u32(ev.hook).ok_or(DecodeError::Hook(ev.hook))?;
    Ok(ev)
}

/// A behaviour record with its strings decoded.
#[derive(Clone)]
pub struct DecodedBehaviour {
    pub raw: Behaviour,
    pub hook: Hook,
    pub comm: String,
    pub parent_comm: String,
    /// The executable, from the kernel's dentry walk (empty when unknown).
    pub exe: String,
    pub cgroup_path: String,
    /// open*, finit_module: the file the kernel opened, absolute within the task's root.
    pub file: Option<String>,
    /// The path argument: connect's socket path (`@name` for abstract sockets), mount target,
    /// chroot/pivot_root new root, mknod path, execve file name.
    pub path: String,
    /// mount source, pivot_root put_old, module parameters.
    pub arg: String,
    pub fstype: String,
    /// execve: the new program's argv.
    pub argv: Vec<String>,
    /// mprotect: the range made executable (start, length), whose file fields user space
    /// fills from the caller's maps ([`crate::integrity::mapping`]).
    pub range: Option<(u64, u64)>,
    /// exec with [`flags::ENTRY_EXEC`]: whether the task is its PID namespace's init (the
    /// container's entrypoint, not a `docker exec`), read from /proc when the record arrives;
    /// None when the task was already gone.
    pub pid_ns_init: Option<bool>,
}

impl std::fmt::Debug for DecodedBehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedBehaviour")
            .field("hook", &self.hook)
            .field("pid", &self.raw.pid)
            .field("flags", &format_args!("{:#x}", self.raw.flags))
            .field("ret", &self.raw.ret)
            .field("args", &self.raw.args)
            .field("comm", &self.comm)
            .field("exe", &self.exe)
            .field("file", &self.file)
            .field("path", &self.path)
            .field("arg", &self.arg)
            .field("fstype", &self.fstype)
            .field("argv", &self.argv)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl DecodedBehaviour {
    pub fn new(mut raw: Behaviour) -> Option<DecodedBehaviour> {
        let hook = Hook::from_u32(raw.hook)?;
        // The range travels in the file fields' slots; they mean the file's once resolved.
        let range = (hook == Hook::Mprotect).then(|| {
            let range = (raw.args[arg::START], raw.args[arg::LENGTH]);
            (raw.args[arg::START], raw.args[arg::LENGTH]) = (0, 0);
            range
        });
        let path = if hook == Hook::Connect { socket_path(&raw) } else { c_bytes_to_string(&raw.path) };
        let argv = if hook == Hook::Exec { split_argv(&raw.arg, raw.args[arg::FLAGS]) } else { Vec::new() };
        let arg = if hook == Hook::Exec { String::new() } else { c_bytes_to_string(&raw.arg) };
        Some(DecodedBehaviour {
            hook,
            comm: c_bytes_to_string(&raw.comm),
            parent_comm: c_bytes_to_string(&raw.parent_comm),
            exe: components_path(&raw.exe, raw.flags & flags::EXE_TRUNCATED != 0).unwrap_or_default(),
            cgroup_path: cgroup_path_of(&raw.cgroup, &raw.cgroup_parent),
            file: components_path(&raw.file, raw.flags & flags::FILE_TRUNCATED != 0),
            path,
            arg,
            fstype: c_bytes_to_string(&raw.fstype),
            argv,
            range,
            pid_ns_init: None,
            raw,
        })
    }

    /// Did the syscall's result arrive with the record (exit hooks), or was it reported at entry?
    pub fn has_result(&self) -> bool {
        self.raw.flags & flags::BEFORE_RESULT == 0
    }

    /// The primary path rules call `fd.name`: the opened file, else the path argument.
    pub fn fd_name(&self) -> &str {
        match (&self.file, self.hook) {
            (Some(f), _) => f,
            (None, Hook::Exec) => &self.exe,
            (None, _) => &self.path,
        }
    }
}

/// Is `tgid` pid 1 of its innermost PID namespace (`NSpid:` in /proc/<pid>/status)?
pub fn is_pid_ns_init(tgid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{tgid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    Some(line.split_whitespace().last()? == "1")
}

/// sun_path: NUL-terminated, or abstract (leading NUL, name up to addrlen) shown as `@name`.
fn socket_path(raw: &Behaviour) -> String {
    const SUN_PATH_OFFSET: u64 = 2;
    if raw.path[0] != 0 {
        return c_bytes_to_string(&raw.path);
    }
    let addrlen = raw.args[arg::MODE].saturating_sub(SUN_PATH_OFFSET).min(108) as usize;
    if addrlen <= 1 {
        return String::new();
    }
    let name = &raw.path[1..addrlen];
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    format!("@{}", String::from_utf8_lossy(name))
}

/// argv from the NUL-separated block; `len` is the block's full length in the task.
fn split_argv(block: &[u8; ARG_LEN], len: u64) -> Vec<String> {
    let len = (len as usize).min(ARG_LEN);
    let mut args: Vec<String> =
        block[..len].split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    // The block ends with a NUL: drop the empty tail it leaves.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    args
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dcea_common::{EXE_COMPONENT_LEN, TaskSnapshot};

    pub(crate) fn zeroed() -> Behaviour {
        // SAFETY: plain data.
        unsafe { std::mem::zeroed() }
    }

    pub(crate) fn bytes_of(ev: &Behaviour) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-data struct.
        unsafe { std::slice::from_raw_parts((ev as *const Behaviour).cast::<u8>(), BEHAVIOUR_SIZE) }.to_vec()
    }

    pub(crate) fn put(dst: &mut [u8], s: &[u8]) {
        dst[..s.len()].copy_from_slice(s);
    }

    pub(crate) fn record(hook: Hook) -> Behaviour {
        let mut ev = zeroed();
        ev.kind = EventKind::Behaviour as u32;
        ev.hook = hook as u32;
        ev.pid = 77;
        ev.tgid = 77;
        ev.snap = TaskSnapshot::default();
        ev.flags = flags::CONTAINER | flags::CGROUP_RESOLVED;
        put(&mut ev.comm, b"cat");
        ev
    }

    #[test]
    fn decodes_and_validates() {
        let ev = record(Hook::Openat);
        let bytes = bytes_of(&ev);
        assert_eq!(record_kind(&bytes), Some(EventKind::Behaviour as u32));
        assert_eq!(decode_behaviour(&bytes).unwrap().pid, 77);
        assert_eq!(decode_behaviour(&bytes[..100]).err(), Some(DecodeError::Short(100)));
        let mut bad = ev;
        bad.hook = 999;
        assert_eq!(decode_behaviour(&bytes_of(&bad)).err(), Some(DecodeError::Hook(999)));
        let mut bad = ev;
        bad.kind = EventKind::Transition as u32;
        assert_eq!(decode_behaviour(&bytes_of(&bad)).err(), Some(DecodeError::Kind(1)));
        assert_eq!(record_kind(&[1, 2]), None);
    }

    #[test]
    fn file_path_crosses_mounts_leaf_first() {
        let mut ev = record(Hook::Openat);
        // The kernel leaves an empty slot where its walk crossed from procfs's root to the
        // mount point `proc`.
        for (i, c) in ["core_pattern", "kernel", "sys", "", "proc"].iter().enumerate() {
            put(&mut ev.file[i], c.as_bytes());
        }
        let d = DecodedBehaviour::new(ev).unwrap();
        assert_eq!(d.file.as_deref(), Some("/proc/sys/kernel/core_pattern"));
        assert_eq!(d.fd_name(), "/proc/sys/kernel/core_pattern");
        assert!(d.has_result());
        let mut deep = record(Hook::Openat);
        for c in deep.file.iter_mut() {
            *c = [0; EXE_COMPONENT_LEN];
            put(c, b"d");
        }
        deep.flags |= flags::FILE_TRUNCATED;
        assert!(DecodedBehaviour::new(deep).unwrap().fd_name().starts_with("…/d/"));
    }

    #[test]
    fn socket_paths_plain_and_abstract() {
        let mut ev = record(Hook::Connect);
        put(&mut ev.path, b"/var/run/docker.sock\0");
        ev.flags |= flags::BEFORE_RESULT;
        let d = DecodedBehaviour::new(ev).unwrap();
        assert_eq!(d.fd_name(), "/var/run/docker.sock");
        assert!(!d.has_result());
        let mut ev = record(Hook::Connect);
        put(&mut ev.path, b"\0containerd-shim\0junk");
        ev.args[arg::MODE] = 2 + 1 + "containerd-shim".len() as u64;
        assert_eq!(DecodedBehaviour::new(ev).unwrap().path, "@containerd-shim");
        // A hostile addrlen cannot read past sun_path.
        ev.args[arg::MODE] = u64::MAX;
        assert_eq!(DecodedBehaviour::new(ev).unwrap().path, "@containerd-shim");
    }

    #[test]
    fn argv_is_cut_at_the_kernel_length() {
        let mut ev = record(Hook::Exec);
        put(&mut ev.arg, b"sh\0-c\0id\0ENV=leaked\0");
        ev.args[arg::FLAGS] = 9;
        put(&mut ev.path, b"/bin/sh");
        let d = DecodedBehaviour::new(ev).unwrap();
        assert_eq!(d.argv, ["sh", "-c", "id"]);
        assert_eq!(d.path, "/bin/sh");
        // Longer than the copy: what was copied, invalid UTF-8 replaced.
        ev.arg = [0xff; ARG_LEN];
        ev.args[arg::FLAGS] = 100_000;
        let d = DecodedBehaviour::new(ev).unwrap();
        assert_eq!(d.argv.len(), 1);
        assert!(d.argv[0].starts_with('\u{FFFD}'));
    }
}
