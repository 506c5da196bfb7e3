//! SHA-256 of files, at most once per file identity: (dev, inode, ctime, size) changes with
//! every write, so a steady workload costs a stat per judgement and no hashing.

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::{self, Read},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use sha2::{Digest, Sha256};

/// Bigger files are not hashed (a judgement runs on the record's path: the cost is bounded).
pub const MAX_HASHED_BYTES: u64 = 512 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub ctime_ns: i128,
    pub size: u64,
}

/// A bounded map of identities to digests; the oldest entry goes first.
pub struct HashCache {
    digests: HashMap<FileKey, String>,
    order: VecDeque<FileKey>,
    capacity: usize,
    /// Files hashed (cache misses).
    pub hashed: u64,
}

impl HashCache {
    pub fn new(capacity: usize) -> HashCache {
        HashCache { digests: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), hashed: 0 }
    }

    /// The file's identity and SHA-256 (hex). Opened without following a final symlink, and
    /// only a regular file: a path a container controls must not lead the agent elsewhere.
    pub fn sha256(&mut self, path: &Path) -> io::Result<(FileKey, String)> {
        let mut file = File::options().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
        let m = file.metadata()?;
        if !m.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let key = FileKey {
            dev: m.dev(),
            ino: m.ino(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            size: m.size(),
        };
        if let Some(d) = self.digests.get(&key) {
            return Ok((key, d.clone()));
        }
        if key.size > MAX_HASHED_BYTES {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("{} bytes: not hashed", key.size)));
        }
        let digest = sha256_reader(&mut file)?;
        self.hashed += 1;
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.digests.remove(&old);
        }
        self.order.push_back(key);
        self.digests.insert(key, digest.clone());
        Ok((key, digest))
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

pub fn sha256_reader(r: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(crate::scan::image::layer::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_once_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        let mut cache = HashCache::new(2);
        let (_, d) = cache.sha256(&path).unwrap();
        assert_eq!(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        cache.sha256(&path).unwrap();
        assert_eq!(cache.hashed, 1, "same identity: no second hash");
        std::fs::write(&path, "abd").unwrap();
        let (_, d2) = cache.sha256(&path).unwrap();
        assert_ne!(d, d2);
        assert_eq!(cache.hashed, 2);
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(cache.sha256(&link).is_err(), "a symlink is not followed");
        assert!(cache.sha256(dir.path()).is_err(), "a directory is not hashed");
        for i in 0..5 {
            let p = dir.path().join(format!("g{i}"));
            std::fs::write(&p, [i]).unwrap();
            cache.sha256(&p).unwrap();
        }
        assert_eq!(cache.len(), 2, "bounded");
    }
}
