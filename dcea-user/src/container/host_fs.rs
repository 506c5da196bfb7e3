//! Where a file of a disk filesystem lives on the host.
//!
//! For a write-mode open on ext4/xfs/btrfs the kernel sends the file's path within its
//! filesystem and the filesystem's device; the host's mount table says where that filesystem
//! (or the part of it a mount shows) is mounted on the host. Whatever bind mount or `mount` in
//! the container led to the file, the answer is the same host path.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// One line of /proc/<pid>/mountinfo, the parts that matter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem this mount shows ("/" for a whole filesystem).
    pub root: String,
    pub mount_point: String,
}

/// Parse mountinfo; malformed lines are skipped (odd /proc content never fails the caller).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            // id parent major:minor root mount_point options [optional…] - fstype source super
            let mut f = line.split(' ');
            let (_id, _parent, dev, root, mount_point) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            let (major, minor) = dev.split_once(':')?;
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                root: unescape(root),
                mount_point: unescape(mount_point),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|o| b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(o) => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` below `root`, component-wise: Some("") for the root itself, Some("/x") below it.
fn below<'p>(path: &'p str, root: &str) -> Option<&'p str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The host path of `fs_path` (absolute within the filesystem on `major:minor`): through a
/// mount of the whole filesystem when there is one (its canonical place), else the mount that
/// shows the deepest directory holding the file. None when the host has not mounted it.
pub fn resolve(mounts: &[MountEntry], major: u32, minor: u32, fs_path: &str) -> Option<String> {
    let join = |mount_point: &str, rest: &str| {
        let base = mount_point.trim_end_matches('/');
        if rest.is_empty() && base.is_empty() { "/".to_string() } else { format!("{base}{rest}") }
    };
    let same_dev = || mounts.iter().filter(|m| m.major == major && m.minor == minor);
    if let Some(whole) = same_dev().filter(|m| m.root == "/").min_by_key(|m| m.mount_point.len()) {
        return Some(join(&whole.mount_point, fs_path.strip_suffix('/').unwrap_or(fs_path)));
    }
    same_dev()
        .filter_map(|m| below(fs_path, &m.root).map(|rest| (m, rest)))
        .max_by_key(|(m, _)| m.root.len())
        .map(|(m, rest)| join(&m.mount_point, rest))
}

/// The container whose runtime state directory holds `host_path` (the hosts, hostname and
/// resolv.conf files a runtime bind-mounts into its own container), if any.
pub fn runtime_state_owner(host_path: &str) -> Option<&str> {
    const STATE_DIRS: [&str; 3] = [
        "/var/lib/docker/containers/",
        "/var/lib/containerd/io.containerd.grpc.v1.cri/containers/",
        "/var/lib/containers/storage/overlay-containers/",
    ];
    STATE_DIRS.iter().find_map(|dir| {
        let id = host_path.strip_prefix(dir)?.split('/').next()?;
        (id.len() >= 12 && id.bytes().all(|c| c.is_ascii_hexdigit())).then_some(id)
    })
}

/// [`runtime_state_owner`] as a full container id: the kernel cuts path components at 31 bytes,
/// so a 64-hex directory name arrives as a prefix; `container_id` is the writer's own id.
pub fn runtime_state_container<'a>(host_path: &'a str, container_id: Option<&'a str>) -> Option<&'a str> {
    let owner = runtime_state_owner(host_path)?;
    Some(container_id.filter(|id| id.starts_with(owner)).unwrap_or(owner))
}

/// The host's mount table, re-read when a lookup misses and the copy is older than this.
const REFRESH_AFTER: Duration = Duration::from_secs(2);

struct Cache {
    source: String,
    mounts: Vec<MountEntry>,
    read_at: Option<Instant>,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache { source: String::new(), mounts: Vec::new(), read_at: None });

/// Which process's mountinfo is the host's: the agent's own on the host, the host reference
/// process's (`--host-ns-pid`, or PID 1 under hostPID) when the agent runs in a container.
pub fn set_host_mountinfo(path: &str) {
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    c.source = path.to_string();
    c.read_at = None;
}

/// The host's mountinfo file (see [`set_host_mountinfo`]).
pub fn host_mountinfo_path() -> String {
    let c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if c.source.is_empty() { "/proc/self/mountinfo".to_string() } else { c.source.clone() }
}

/// [`resolve`] against the host's mount table (kernel device encoding: major << 20 | minor).
pub fn host_path(kernel_dev: u64, fs_path: &str) -> Option<String> {
    let (major, minor) = ((kernel_dev >> 20) as u32, (kernel_dev & 0xf_ffff) as u32);
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let stale = c.read_at.is_none_or(|t| t.elapsed() > REFRESH_AFTER);
    if c.read_at.is_some()
        && let Some(p) = resolve(&c.mounts, major, minor, fs_path)
    {
        return Some(p);
    }
    if !stale {
        return None;
    }
    let source = if c.source.is_empty() { "/proc/self/mountinfo".to_string() } else { c.source.clone() };
    c.mounts = std::fs::read_to_string(&source).map(|t| parse_mountinfo(&t)).unwrap_or_default();
    c.read_at = Some(Instant::now());
    resolve(&c.mounts, major, minor, fs_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 254:0 /var/lib/kubelet/pods/abc/volumes /mnt/vol\\040x rw - ext4 /dev/vda rw
41 22 8:17 /data /srv rw - xfs /dev/sdb1 rw
garbage line
42 22 x:y / /bad rw - ext4 /dev/x rw
";

    #[test]
    fn parses_and_unescapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[2].mount_point, "/mnt/vol x");
        assert_eq!(m[2].root, "/var/lib/kubelet/pods/abc/volumes");
    }

    #[test]
    fn a_file_maps_to_its_canonical_host_path() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(resolve(&m, 254, 0, "/etc/cron.d/x").as_deref(), Some("/etc/cron.d/x"));
        assert_eq!(resolve(&m, 8, 17, "/data/db/f").as_deref(), Some("/srv/db/f"));
        assert_eq!(resolve(&m, 8, 17, "/other/f"), None, "outside what the host mounted");
        assert_eq!(resolve(&m, 8, 18, "/etc/passwd"), None, "a disk the host never mounted");
        assert_eq!(resolve(&m, 8, 17, "/data").as_deref(), Some("/srv"));
        assert_eq!(below("/datax/f", "/data"), None, "component-wise prefix only");
    }

    #[test]
    fn runtime_state_files_name_their_container() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(runtime_state_owner(&format!("/var/lib/docker/containers/{id}/hosts")), Some(id));
        assert_eq!(runtime_state_owner("/var/lib/docker/containers/../../etc/passwd"), None);
        assert_eq!(runtime_state_owner("/etc/hosts"), None);
        // Cut at 31 bytes by the kernel: still the writer's own directory.
        let cut = format!("/var/lib/docker/containers/{}/hosts", &id[..31]);
        assert_eq!(runtime_state_container(&cut, Some(id)), Some(id));
        assert_eq!(runtime_state_container(&cut, Some("feedface0000")), Some(&id[..31]));
    }
}
