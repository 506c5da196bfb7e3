//! Was a container's file written after the container started? Overlay-backed root
//! filesystems (Docker's overlay2, containerd's overlayfs snapshotter, CRI-O, Podman) keep
//! everything the container writes in the upper directory; image layers are the lower ones.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The upper directory of the overlay mounted as `/` in a mountinfo listing.
pub fn root_upperdir(mountinfo: &str) -> Option<String> {
    // The last mount on "/" is the one the process sees.
    mountinfo.lines().filter_map(parse_root_overlay).next_back()
}

fn parse_root_overlay(line: &str) -> Option<String> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    if mount_point != "/" {
        return None;
    }
    let mut right = right.split(' ');
    if right.next()? != "overlay" {
        return None;
    }
    let super_options = right.nth(1)?;
    super_options.split(',').find_map(|o| o.strip_prefix("upperdir=")).map(unescape)
}

/// The overlay mounted as `/`: its device (`major:minor` of the mount, what the kernel's
/// records carry for files on it), writable layer and image layers (topmost first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootLayers {
    pub dev: (u32, u32),
    pub upper: PathBuf,
    pub lowers: Vec<PathBuf>,
}

/// [`RootLayers`] of the last overlay on "/" in a mountinfo listing. `lowerdir=` lists layers
/// separated by `:` (a literal colon is `\:`); the new mount API shows one `lowerdir+=` each.
pub fn root_layers(mountinfo: &str) -> Option<RootLayers> {
    mountinfo
        .lines()
        .filter_map(parse_overlay)
        .filter(|(mount_point, _)| *mount_point == "/")
        .map(|(_, l)| l)
        .next_back()
}

/// The layers of the overlay whose superblock is `dev` (`major:minor`): the host's mount
/// table lists every container's root overlay (at `…/merged` or `…/rootfs`), so a file's
/// device names its layers even after every process of the container has exited.
pub fn layers_of_device(mountinfo: &str, dev: (u32, u32)) -> Option<RootLayers> {
    mountinfo.lines().filter_map(parse_overlay).map(|(_, l)| l).rfind(|l| l.dev == dev)
}

fn parse_overlay(line: &str) -> Option<(&str, RootLayers)> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let dev = fields.nth(2)?;
    let mount_point = fields.nth(1)?;
    let (major, minor) = dev.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let mut right = right.split(' ');
    if right.next()? != "overlay" {
        return None;
    }
    let super_options = right.nth(1)?;
    let (mut upper, mut lowers) = (None, Vec::new());
    for option in super_options.split(',') {
        if let Some(u) = option.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(unescape(u)));
        } else if let Some(l) = option.strip_prefix("lowerdir=") {
            lowers.extend(split_unescaped_colons(l).into_iter().map(|l| PathBuf::from(unescape(&l))));
        } else if let Some(l) = option.strip_prefix("lowerdir+=") {
            lowers.push(PathBuf::from(unescape(l)));
        }
    }
    Some((mount_point, RootLayers { dev, upper: upper?, lowers }))
}

fn split_unescaped_colons(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some(':') => current.push(':'),
                Some(other) => current.extend(['\\', other]),
                None => {}
            },
            (':', _) => out.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    out.push(current);
    out.retain(|l| !l.is_empty());
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        let value = octal.map(|d| d.iter().fold(0u16, |v, c| v * 8 + u16::from(c - b'0')));
        if let (b'\\', Some(v)) = (b[i], value.filter(|v| *v <= 0xff)) {
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is `exe` (a path inside the container's root) in the writable layer of the overlay that
/// is `pid`'s root? `None` when the root is not an overlay or the process is gone.
pub fn in_upper_layer(pid: u32, exe: &str) -> Option<bool> {
    let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let upper = root_upperdir(&mountinfo)?;
    let relative = exe.trim_start_matches('/');
    if relative.is_empty() || relative.starts_with('…') {
        return None;
    }
    Some(Path::new(&upper).join(relative).symlink_metadata().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str = "\
1186 1063 0:120 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/1f2e/diff,workdir=/var/lib/docker/overlay2/1f2e/work
1187 1186 0:123 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1188 1186 0:124 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
";

    #[test]
    fn finds_the_root_overlay_upperdir() {
        assert_eq!(root_upperdir(DOCKER).as_deref(), Some("/var/lib/docker/overlay2/1f2e/diff"));
        let host = "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n";
        assert_eq!(root_upperdir(host), None);
        let escaped = "1 0 0:1 / / rw - overlay overlay rw,upperdir=/var/lib/with\\040space/diff,workdir=/w\n";
        assert_eq!(root_upperdir(escaped).as_deref(), Some("/var/lib/with space/diff"));
        for junk in
            ["", "garbage", " - overlay", "1 2 3 4 / - overlay overlay", "1 2 3 4 / x - overlay o upperdir=\\777\\"]
        {
            let _ = root_upperdir(junk); // never panics
        }
    }

    #[test]
    fn finds_the_root_overlay_layers_in_order() {
        let layers = root_layers(DOCKER).expect("overlay root");
        assert_eq!(layers.dev, (0, 120));
        assert_eq!(layers.upper, PathBuf::from("/var/lib/docker/overlay2/1f2e/diff"));
        assert_eq!(
            layers.lowers,
            vec![PathBuf::from("/var/lib/docker/overlay2/l/ABC"), PathBuf::from("/var/lib/docker/overlay2/l/DEF")]
        );
        let plus = "9 1 0:77 / / rw - overlay overlay rw,lowerdir+=/l/a,lowerdir+=/l/b,upperdir=/u,workdir=/w\n";
        assert_eq!(root_layers(plus).unwrap().lowers, vec![PathBuf::from("/l/a"), PathBuf::from("/l/b")]);
        let colon = "9 1 0:77 / / rw - overlay overlay rw,lowerdir=/l/a\\:b:/l/c,upperdir=/u,workdir=/w\n";
        assert_eq!(root_layers(colon).unwrap().lowers, vec![PathBuf::from("/l/a:b"), PathBuf::from("/l/c")]);
        let host = "30 1 0:120 / /var/lib/docker/overlay2/1f2e/merged rw - overlay overlay rw,lowerdir=/l/x,upperdir=/u1,workdir=/w\n31 1 0:121 / /run/k/rootfs rw - overlay overlay rw,lowerdir=/l/y,upperdir=/u2,workdir=/w\n";
        assert_eq!(layers_of_device(host, (0, 121)).unwrap().upper, PathBuf::from("/u2"));
        assert_eq!(layers_of_device(host, (0, 122)), None);
        for junk in ["", "1 2 x:y / / - overlay o upperdir=/u", "1 2 0:1 / / - overlay o lowerdir=/l", "a - b"] {
            assert_eq!(root_layers(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn upper_layer_needs_a_live_overlay_root() {
        // This test process's root is not an overlay (or it is gone): no verdict.
        assert_eq!(in_upper_layer(u32::MAX, "/bin/sh"), None);
    }
}
