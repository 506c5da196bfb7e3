//! What the host can read about a container's init process without entering it:
//! /proc/<pid>/status, mountinfo, ns/*, attr/current, cgroup, and its /dev through
//! /proc/<pid>/root. Parsers are pure and tolerate junk; reads report what is missing.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::Path,
};

use serde::Serialize;

use crate::scan::Error;

pub const NAMESPACES: [&str; 7] = ["mnt", "pid", "net", "ipc", "uts", "user", "cgroup"];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcStatus {
    pub name: String,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    /// 0 disabled, 1 strict, 2 filter.
    pub seccomp: Option<u8>,
    pub no_new_privs: Option<bool>,
    /// Real, effective, saved, filesystem uid.
    pub uid: Option<[u32; 4]>,
}

fn hex_mask(v: &str) -> Option<u64> {
    u64::from_str_radix(v.trim(), 16).ok()
}

/// Parse /proc/<pid>/status. CapEff and CapBnd are required: without them nothing useful can
/// be said about privileges, and that is an error rather than a silent "fine".
pub fn parse_status(text: &str) -> Result<ProcStatus, Error> {
    let mut s = ProcStatus::default();
    let (mut eff, mut bnd) = (None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k {
            "Name" => s.name = v.to_string(),
            "CapEff" => eff = hex_mask(v),
            "CapBnd" => bnd = hex_mask(v),
            "Seccomp" => s.seccomp = v.parse().ok(),
            "NoNewPrivs" => s.no_new_privs = v.parse::<u8>().ok().map(|b| b != 0),
            "Uid" => {
                let ids: Vec<u32> = v.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                s.uid = <[u32; 4]>::try_from(ids).ok();
            }
            _ => {}
        }
    }
    s.cap_eff = eff.ok_or_else(|| Error::parse("status", "no valid CapEff line"))?;
    s.cap_bnd = bnd.ok_or_else(|| Error::parse("status", "no valid CapBnd line"))?;
    Ok(s)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub dev: (u32, u32),
    /// Path inside the mounted filesystem that is mounted here (the bind source).
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    /// `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl Mount {
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    pub fn shared(&self) -> bool {
        self.optional.iter().any(|o| o.starts_with("shared:"))
    }
}

/// Undo mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let mut f = pre.split(' ');
    let _id: u32 = f.next()?.parse().ok()?;
    let _parent: u32 = f.next()?.parse().ok()?;
    let (maj, min) = f.next()?.split_once(':')?;
    let dev = (maj.parse().ok()?, min.parse().ok()?);
    let root = unescape(f.next()?);
    let mount_point = unescape(f.next()?);
    if !root.starts_with('/') || !mount_point.starts_with('/') {
        return None;
    }
    let options = f.next()?.split(',').map(str::to_string).collect();
    let optional = f.filter(|s| !s.is_empty()).map(str::to_string).collect();
    let mut p = post.split(' ');
    let fstype = p.next().filter(|s| !s.is_empty())?.to_string();
    let source = unescape(p.next().unwrap_or(""));
    let super_options = p.next().unwrap_or("").to_string();
    Some(Mount { dev, root, mount_point, options, optional, fstype, source, super_options })
}

/// Parse /proc/<pid>/mountinfo; malformed lines are returned separately instead of failing.
pub fn parse_mountinfo(text: &str) -> (Vec<Mount>, Vec<String>) {
    let mut mounts = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_mount_line(line) {
            Some(m) => mounts.push(m),
            None => bad.push(line.chars().take(200).collect()),
        }
    }
    (mounts, bad)
}

/// The mount that decides access to `path`: the last-mounted one whose mount point is
/// `path` or its closest ancestor.
pub fn covering_mount<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        let mp = m.mount_point.as_str();
        let covers = mp == "/" || path == mp || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'));
        if covers && best.is_none_or(|b| mp.len() >= b.mount_point.len()) {
            best = Some(m);
        }
    }
    best
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevNode {
    pub path: String,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
}

fn dev_major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Everything read about one process. Entries that could not be read are `None`/empty and
/// listed in `missing`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub pid: u32,
    pub status: ProcStatus,
    pub mounts: Vec<Mount>,
    pub ns: BTreeMap<String, u64>,
    /// LSM label from attr/apparmor/current or attr/current.
    pub lsm_label: Option<String>,
    /// Raw /proc/<pid>/cgroup.
    pub cgroup: String,
    pub dev_nodes: Vec<DevNode>,
    pub missing: Vec<String>,
}

/// Read a snapshot from `dir` (`/proc/<pid>`). Only a missing or unparsable status is an
/// error: the process is gone or this is not a proc directory.
pub fn snapshot(dir: &Path, pid: u32) -> Result<Snapshot, Error> {
    let status_path = dir.join("status");
    let status_text =
        fs::read_to_string(&status_path).map_err(|e| Error::io(format!("reading {}", status_path.display()), e))?;
    let mut s = Snapshot { pid, status: parse_status(&status_text)?, ..Default::default() };
    match fs::read_to_string(dir.join("mountinfo")) {
        Ok(t) => {
            let (mounts, bad) = parse_mountinfo(&t);
            s.mounts = mounts;
            s.missing.extend(bad.into_iter().map(|l| format!("malformed mountinfo line: {l}")));
        }
        Err(e) => s.missing.push(format!("mountinfo: {e}")),
    }
    for ns in NAMESPACES {
        match fs::metadata(dir.join("ns").join(ns)) {
            Ok(m) => {
                s.ns.insert(ns.to_string(), m.ino());
            }
            Err(e) => s.missing.push(format!("ns/{ns}: {e}")),
        }
    }
    s.lsm_label = ["attr/apparmor/current", "attr/current"]
        .iter()
        .find_map(|p| fs::read_to_string(dir.join(p)).ok())
        .map(|l| l.trim_end_matches(['\0', '\n']).to_string())
        .filter(|l| !l.is_empty());
    match fs::read_to_string(dir.join("cgroup")) {
        Ok(c) => s.cgroup = c,
        Err(e) => s.missing.push(format!("cgroup: {e}")),
    }
    if let Ok(entries) = fs::read_dir(dir.join("root/dev")) {
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            let ft = meta.file_type();
            if ft.is_block_device() || ft.is_char_device() {
                let (major, minor) = dev_major_minor(meta.rdev());
                s.dev_nodes.push(DevNode {
                    path: format!("/dev/{}", e.file_name().to_string_lossy()),
                    block: ft.is_block_device(),
                    major,
                    minor,
                });
            }
        }
        s.dev_nodes.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn status_parses() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.name, "sleep");
        assert_eq!(s.cap_eff, 0xa80425fb);
        assert_eq!(s.seccomp, Some(2));
        assert_eq!(s.no_new_privs, Some(false));
        assert_eq!(s.uid, Some([0, 0, 0, 0]));
    }

    #[test]
    fn broken_status_is_an_error() {
        for bad in [
            "",
            "CapEff:\tzz\nCapBnd:\t0\n",
            "CapEff:\t0\n",
            "garbage\n\0\0",
            "CapBnd:\tffffffffffffffffff\nCapEff:\t0\n",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
        let s = parse_status("CapEff:\t0\nCapBnd:\t0\nUid:\t1 2\nSeccomp:\tx\n").unwrap();
        assert_eq!((s.uid, s.seccomp), (None, None));
    }

    #[test]
    fn mountinfo_parses_and_skips_junk() {
        let text = "\
1105 1088 0:97 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a,upperdir=/b
1106 1105 0:100 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1120 1106 0:100 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
1130 1105 254:0 /home/a\\040b /data rw,relatime shared:7 - ext4 /dev/vda rw
this is not a mountinfo line
1 2 3:4 relative /x rw - ext4 /dev/x rw
12 13 x:y / /x rw - ext4 /dev/x rw
14 15 0:1 / /y rw
16 17 0:1 / /z rw -  src opts

1140 1105 0:101 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k
";
        let (mounts, bad) = parse_mountinfo(text);
        assert_eq!(mounts.len(), 5, "{mounts:#?}");
        assert_eq!(bad.len(), 5, "{bad:#?}");
        assert_eq!(mounts[3].root, "/home/a b");
        assert!(mounts[3].shared());
        assert!(!mounts[0].read_only());
        assert!(mounts[2].read_only());
        assert_eq!(covering_mount(&mounts, "/proc/sys/kernel/core_pattern").unwrap().mount_point, "/proc/sys");
        assert_eq!(covering_mount(&mounts, "/proc/sysrq-trigger").unwrap().mount_point, "/proc");
        assert_eq!(covering_mount(&mounts, "/etc/passwd").unwrap().mount_point, "/");
        assert_eq!(covering_mount(&[], "/x"), None);
    }

    #[test]
    fn unescape_handles_truncated_escapes() {
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("\\999"), "\\999");
    }

    #[test]
    fn missing_proc_entries() {
        let dir = std::env::temp_dir().join(format!("dcea-procfs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(snapshot(&dir, 1).is_err(), "no status file");
        fs::write(dir.join("status"), STATUS).unwrap();
        let s = snapshot(&dir, 1).unwrap();
        assert!(s.mounts.is_empty() && s.ns.is_empty() && s.lsm_label.is_none());
        assert!(s.missing.iter().any(|m| m.starts_with("mountinfo")));
        assert!(s.missing.iter().any(|m| m.starts_with("ns/pid")));
        fs::remove_dir_all(&dir).unwrap();
        assert!(snapshot(Path::new("/proc/4294967295"), u32::MAX).is_err());
    }

    #[test]
    fn self_snapshot() {
        let s = snapshot(Path::new("/proc/self"), 0).unwrap();
        assert!(!s.mounts.is_empty());
        assert_eq!(s.ns.len(), NAMESPACES.len());
        assert_eq!(dev_major_minor(0x0700), (7, 0));
        assert_eq!(dev_major_minor((259u64 << 8) | 3), (259, 3));
    }
}
