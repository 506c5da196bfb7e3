//! Where a path of a container's merged root comes from: its writable layer, an image layer,
//! or nowhere (hidden by a whiteout or an opaque directory), with overlayfs's own rules.

use std::{
    ffi::CString,
    fs,
    os::unix::{ffi::OsStrExt, fs::FileTypeExt},
    path::{Path, PathBuf},
};

/// Is `relative` (no leading `/`) in `upper`? A whiteout there means it was deleted.
pub fn in_upper(upper: &Path, relative: &str) -> bool {
    fs::symlink_metadata(upper.join(relative)).is_ok_and(|m| !is_whiteout(&m))
}

/// The image layer file that the merged view shows at `relative`, topmost layer first;
/// `None` when no layer has it or a higher layer hides it. Symlinks are followed inside the
/// image (a container that replaces the image's `/bin/ls -> busybox` with a file changed
/// what `/bin/ls` runs).
pub fn in_lowers(lowers: &[PathBuf], relative: &str) -> Option<PathBuf> {
    let mut relative = normalize(relative)?;
    for _ in 0..MAX_SYMLINK_HOPS {
        let found = in_lowers_once(lowers, &relative)?;
        if !fs::symlink_metadata(&found).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(found);
        }
        let target = fs::read_link(&found).ok()?;
        let target = target.to_str()?;
        let joined = match target.strip_prefix('/') {
            Some(absolute) => absolute.to_string(),
            None => match relative.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{target}"),
                None => target.to_string(),
            },
        };
        relative = normalize(&joined)?;
    }
    None
}

/// Links followed before a lookup is declared a loop (Linux's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

/// `a/./b/../c` → `a/c`, never above the root.
fn normalize(relative: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in relative.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn in_lowers_once(lowers: &[PathBuf], relative: &str) -> Option<PathBuf> {
    for lower in lowers {
        let candidate = lower.join(relative);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if is_whiteout(&m) => return None,
            Ok(_) => return Some(candidate),
            Err(_) if hides_below(lower, relative) => return None,
            Err(_) => {}
        }
    }
    None
}

/// A directory on the way to `relative` in this layer that is a whiteout or opaque hides
/// every lower layer's copy.
fn hides_below(lower: &Path, relative: &str) -> bool {
    let mut dir = lower.to_path_buf();
    let components: Vec<&str> = relative.split('/').filter(|c| !c.is_empty()).collect();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(m) if is_whiteout(&m) => return true,
            Ok(m) if m.is_dir() && is_opaque(&dir) => return true,
            Ok(_) => {}
            // This layer has nothing further down the path.
            Err(_) => return false,
        }
    }
    false
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

/// `trusted.overlay.opaque = y` (the xattr overlayfs marks replaced directories with).
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut value = [0u8; 2];
    // SAFETY: NUL-terminated path and name; the buffer's length is passed.
    let n = unsafe {
        libc::lgetxattr(path.as_ptr(), c"trusted.overlay.opaque".as_ptr(), value.as_mut_ptr().cast(), value.len())
    };
    n == 1 && value[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topmost_layer_wins_and_whiteouts_hide() {
        let dir = tempfile::tempdir().unwrap();
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        for d in [&top, &bottom] {
            fs::create_dir_all(d.join("bin")).unwrap();
        }
        fs::write(bottom.join("bin/sh"), "old").unwrap();
        fs::write(top.join("bin/sh"), "new").unwrap();
        fs::write(bottom.join("bin/ls"), "ls").unwrap();
        let lowers = vec![top.clone(), bottom.clone()];
        assert_eq!(in_lowers(&lowers, "bin/sh"), Some(top.join("bin/sh")));
        assert_eq!(in_lowers(&lowers, "bin/ls"), Some(bottom.join("bin/ls")));
        assert_eq!(in_lowers(&lowers, "bin/none"), None);
        // Links resolve inside the image, across layers, relative or absolute.
        std::os::unix::fs::symlink("sh", top.join("bin/rel")).unwrap();
        std::os::unix::fs::symlink("/bin/ls", top.join("bin/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", top.join("bin/out")).unwrap();
        std::os::unix::fs::symlink("loop", top.join("bin/loop")).unwrap();
        assert_eq!(in_lowers(&lowers, "bin/rel"), Some(top.join("bin/sh")));
        assert_eq!(in_lowers(&lowers, "bin/abs"), Some(bottom.join("bin/ls")));
        assert_eq!(in_lowers(&lowers, "bin/out"), None, "resolved inside the image root (no /etc/passwd here)");
        assert_eq!(in_lowers(&lowers, "bin/loop"), None);
        assert!(!in_upper(&top, "bin/ls") && in_upper(&top, "bin/sh"));
        // A whiteout is a 0/0 character device (mknod needs root, as the agent has).
        let wh = CString::new(top.join("bin/ls").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::mknod(wh.as_ptr(), libc::S_IFCHR | 0o600, 0) } == 0 {
            assert_eq!(in_lowers(&lowers, "bin/ls"), None, "whited out");
            assert!(!in_upper(&top, "bin/ls"), "a whiteout in the upper layer is a deletion");
        } else {
            eprintln!("SKIP: whiteout case needs root (mknod)");
        }
    }
}
