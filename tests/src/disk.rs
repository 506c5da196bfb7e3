//! A host "disk" for the container-mounts-a-host-disk cases: this machine's real disk cannot
//! be opened, so an ext4 image on a loop device stands in for it.

use std::{fs, path::Path, process::Command};

/// A loop device backed by a fresh 16 MiB ext4 image, detached when dropped.
pub struct LoopDisk {
    pub dev: String,
    _dir: tempfile::TempDir,
}

impl LoopDisk {
    /// An empty filesystem.
    pub fn new() -> LoopDisk {
        LoopDisk::with_files(&[])
    }

    /// A filesystem holding `files` (name, content) at its root (`mkfs.ext4 -d`).
    pub fn with_files(files: &[(&str, &str)]) -> LoopDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = dir.path().join("content");
        fs::create_dir(&content).expect("content dir");
        for (name, body) in files {
            fs::write(content.join(name), body).expect("disk file");
        }
        let img = dir.path().join("disk.img");
        fs::write(&img, vec![0u8; 16 << 20]).expect("image");
        mkfs(&img, &content);
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&img).output().expect("losetup");
        assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
        LoopDisk { dev: String::from_utf8_lossy(&out.stdout).trim().to_string(), _dir: dir }
    }

    /// `--device` for docker: the disk as /dev/hostdisk in the container.
    pub fn device_option(&self) -> String {
        format!("{}:/dev/hostdisk", self.dev)
    }
}

impl Default for LoopDisk {
    fn default() -> LoopDisk {
        LoopDisk::new()
    }
}

fn mkfs(img: &Path, content: &Path) {
    let st = Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(content).arg(img).status().expect("mkfs.ext4");
    assert!(st.success(), "mkfs.ext4 failed");
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
