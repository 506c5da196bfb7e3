//! Streaming walk of one layer blob: sniff the compression, decompress on the fly, read the
//! tar headers and turn them into changes (files, whiteouts, opaque directories) without
//! writing anything to disk. Limits on expanded bytes, entries and compression ratio stop
//! decompression bombs; paths are normalised and traversal out of the root is an error.

use std::{
    cell::{Cell, RefCell},
    io::{self, Read},
    rc::Rc,
    sync::Arc,
};

use sha2::{Digest, Sha256};

use super::error::{ImageError, Result};

/// Bounds on what one image may expand to. Crossing any of them aborts the walk.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Total uncompressed bytes over all layers.
    pub max_expanded_bytes: u64,
    /// Total tar entries over all layers.
    pub max_entries: u64,
    /// Expanded/compressed ratio allowed once a layer has expanded past `ratio_floor`.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    /// Largest file kept in memory for analysis (package databases, os-release).
    pub max_capture: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_expanded_bytes: 64 << 30,
            max_entries: 5_000_000,
            max_ratio: 200,
            ratio_floor: 1 << 30,
            max_capture: 256 << 20,
        }
    }
}

/// What to hash while walking. Scans skip per-file hashes; measurement needs all of them.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkOptions {
    pub blob_digest: bool,
    pub diff_id: bool,
    pub file_digests: bool,
}

/// Budget shared by all layers of one image.
#[derive(Debug, Default)]
pub struct Budget {
    pub expanded: Cell<u64>,
    pub entries: Cell<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink(String),
    /// Resolved to a copy of its target when the layer is applied.
    Hardlink(String),
    /// Devices, fifos: present in the view, no content.
    Other,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub size: u64,
    pub mode: u32,
    pub sha256: Option<[u8; 32]>,
    /// Kept only for paths the scanners read (package databases, release files).
    pub content: Option<Arc<Vec<u8>>>,
    /// Index of the layer that put this node in the view.
    pub layer: usize,
}

#[derive(Clone, Debug)]
pub enum Change {
    /// `.wh.<name>`: remove `path` and everything below it from lower layers.
    Whiteout(String),
    /// `.wh..wh..opq`: hide everything below the directory `path` from lower layers.
    Opaque(String),
    Put(String, Node),
}

#[derive(Debug)]
pub struct LayerDelta {
    pub changes: Vec<Change>,
    pub compression: Compression,
    /// `sha256:<hex>` of the blob as stored (compressed).
    pub blob_digest: Option<String>,
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub diff_id: Option<String>,
    pub stored_size: u64,
    pub expanded_size: u64,
}

/// The marker error a metered reader raises when a limit is crossed.
#[derive(Debug)]
struct LimitHit {
    what: &'static str,
    limit: u64,
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exceeds {}", self.what, self.limit)
    }
}

impl std::error::Error for LimitHit {}

#[derive(Default)]
struct MeterState {
    bytes: u64,
    hasher: Option<Sha256>,
}

/// Counts (and optionally hashes) the bytes that pass through.
struct Meter<'a, R: ?Sized> {
    inner: &'a mut R,
    state: Rc<RefCell<MeterState>>,
    check: Option<Box<dyn Fn(u64) -> io::Result<()> + 'a>>,
}

impl<R: Read + ?Sized> Read for Meter<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.borrow_mut();
        st.bytes += n as u64;
        if let Some(h) = st.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        if let Some(check) = &self.check {
            check(st.bytes)?;
        }
        Ok(n)
    }
}

pub fn hex_digest(h: Sha256) -> String {
    format!("sha256:{}", hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads up to `n` bytes (fewer only at end of stream).
pub fn read_head<R: Read + ?Sized>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

pub fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Normalises a tar path: leading `/` and `./` dropped, `.` skipped, `..` resolved lexically.
/// Returns None when `..` would climb above the root.
pub fn normalize(raw: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn map_io(layer: &str, e: io::Error) -> ImageError {
    if let Some(hit) = e.get_ref().and_then(|inner| inner.downcast_ref::<LimitHit>()) {
        return ImageError::Bomb { layer: layer.to_string(), what: hit.what, limit: hit.limit };
    }
    let message = match e.kind() {
        io::ErrorKind::UnexpectedEof => "truncated (unexpected end of data)".to_string(),
        _ => e.to_string(),
    };
    ImageError::Layer { layer: layer.to_string(), message }
}

/// Walks one layer. `keep` says which paths' contents the scanners need in memory.
pub fn walk<R: Read + ?Sized>(
    name: &str,
    raw: &mut R,
    opts: WalkOptions,
    limits: &Limits,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
) -> Result<LayerDelta> {
    let stored = Rc::new(RefCell::new(MeterState { bytes: 0, hasher: opts.blob_digest.then(Sha256::new) }));
    let mut stored_meter = Meter { inner: raw, state: stored.clone(), check: None };
    let head = read_head(&mut stored_meter, 8).map_err(|e| map_io(name, e))?;
    let compression = sniff_compression(&head);
    let mut chained = io::Cursor::new(head).chain(&mut stored_meter);

    let expanded = Rc::new(RefCell::new(MeterState {
        bytes: 0,
        hasher: (opts.diff_id && compression != Compression::None).then(Sha256::new),
    }));
    let changes = {
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut chained)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut chained).map_err(|e| map_io(name, e))?),
            Compression::None => Box::new(&mut chained),
        };
        let mut decoder = decoder;
        let start_total = budget.expanded.get();
        let stored_for_check = stored.clone();
        let limits_c = limits.clone();
        let check = move |bytes: u64| -> io::Result<()> {
            let total = start_total + bytes;
            if total > limits_c.max_expanded_bytes {
                return Err(io::Error::other(LimitHit { what: "expanded size", limit: limits_c.max_expanded_bytes }));
            }
            let stored_bytes = stored_for_check.borrow().bytes.max(1);
            if bytes > limits_c.ratio_floor && bytes / stored_bytes > limits_c.max_ratio {
                return Err(io::Error::other(LimitHit { what: "compression ratio", limit: limits_c.max_ratio }));
            }
            Ok(())
        };
        let mut expanded_meter = Meter { inner: &mut decoder, state: expanded.clone(), check: Some(Box::new(check)) };
        let changes = read_tar(name, &mut expanded_meter, opts, limits, budget, keep)?;
        // The digest covers the whole stream, including the end-of-archive blocks.
        io::copy(&mut expanded_meter, &mut io::sink()).map_err(|e| map_io(name, e))?;
        changes
    };
    io::copy(&mut chained, &mut io::sink()).map_err(|e| map_io(name, e))?;

    let stored = std::mem::take(&mut *stored.borrow_mut());
    let expanded = std::mem::take(&mut *expanded.borrow_mut());
    budget.expanded.set(budget.expanded.get() + expanded.bytes);
    let blob_digest = stored.hasher.map(hex_digest);
    let diff_id = match compression {
        // An uncompressed blob is its own diff_id: checking it costs nothing more.
        Compression::None => blob_digest.clone(),
        _ => expanded.hasher.map(hex_digest),
    };
    Ok(LayerDelta {
        changes,
        compression,
        blob_digest,
        diff_id,
        stored_size: stored.bytes,
        expanded_size: expanded.bytes,
    })
}

fn read_tar<R: Read>(
    name: &str,
    input: &mut R,
    opts: WalkOptions,
    limits: &Limits,
    budget: &Budget,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<Change>> {
    let mut archive = tar::Archive::new(input);
    let mut changes = Vec::new();
    let entries = archive.entries().map_err(|e| map_io(name, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| map_io(name, e))?;
        budget.entries.set(budget.entries.get() + 1);
        if budget.entries.get() > limits.max_entries {
            return Err(ImageError::Bomb { layer: name.to_string(), what: "entry count", limit: limits.max_entries });
        }
        let size = entry.size();
        if size > limits.max_expanded_bytes {
            return Err(ImageError::Bomb {
                layer: name.to_string(),
                what: "entry size",
                limit: limits.max_expanded_bytes,
            });
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize(&raw_path)
            .ok_or_else(|| ImageError::PathTraversal { layer: name.to_string(), path: raw_path.clone() })?;
        let (parent, base) = match path.rsplit_once('/') {
            Some((p, b)) => (p.to_string(), b),
            None => (String::new(), path.as_str()),
        };
        if let Some(hidden) = base.strip_prefix(".wh.") {
            if hidden == ".wh..opq" {
                changes.push(Change::Opaque(parent));
            } else if !hidden.starts_with(".wh.") && !hidden.is_empty() {
                changes.push(Change::Whiteout(join(&parent, hidden)));
            }
            // Other `.wh..wh.` names are aufs bookkeeping, not part of the filesystem.
            continue;
        }
        if path.is_empty() {
            continue; // the root directory itself
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0);
        let link = || entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => NodeKind::File,
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Symlink => NodeKind::Symlink(link()),
            tar::EntryType::Link => {
                let target = link();
                let norm = normalize(&target).ok_or_else(|| ImageError::PathTraversal {
                    layer: name.to_string(),
                    path: format!("{raw_path} (hard link to {target})"),
                })?;
                NodeKind::Hardlink(norm)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => NodeKind::Other,
            _ => continue,
        };
        let mut node = Node { kind, size, mode, sha256: None, content: None, layer: 0 };
        if node.kind == NodeKind::File {
            let capture = size <= limits.max_capture && keep(&path);
            if capture || opts.file_digests {
                let mut buf = Vec::new();
                let mut hasher = opts.file_digests.then(Sha256::new);
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let n = entry.read(&mut chunk).map_err(|e| map_io(name, e))?;
                    if n == 0 {
                        break;
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk[..n]);
                    }
                    if capture {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
                node.sha256 = hasher.map(|h| h.finalize().into());
                node.content = capture.then(|| Arc::new(buf));
            }
        }
        changes.push(Change::Put(path, node));
    }
    Ok(changes)
}

pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") }
}
