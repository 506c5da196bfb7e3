//! Reads an image from any of its sources in one pass: a docker-save tarball (plain or
//! gzipped), an OCI layout directory or tarball, or the local Docker engine's export stream.
//! Entries arrive in whatever order the producer wrote them (docker puts manifest.json
//! last), so each layer-looking blob is walked as it streams by and the manifest decides
//! afterwards which of them make up the image, and in which order.

use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read},
    path::{Path, PathBuf},
};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    docker,
    error::{ImageError, Result},
    fs::FsView,
    layer::{
        self, Budget, Compression, LayerDelta, Limits, WalkOptions, hex_digest, normalize, read_head, sniff_compression,
    },
    progress::Progress,
};

/// Largest metadata document (manifest, index, config) read into memory.
const MAX_DOC: u64 = 32 << 20;

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A tarball: docker-save or OCI layout, optionally gzipped.
    Archive(PathBuf),
    /// An OCI image layout (or unpacked docker-save) directory.
    Directory(PathBuf),
    /// An image reference the local Docker engine knows.
    Docker(String),
}

impl Source {
    /// Paths that exist are files or directories; `docker:` forces an engine reference;
    /// anything else is looked up in the engine.
    pub fn parse(s: &str) -> Source {
        if let Some(r) = s.strip_prefix("docker:") {
            return Source::Docker(r.to_string());
        }
        let p = Path::new(s);
        if p.is_dir() {
            Source::Directory(p.to_path_buf())
        } else if p.exists() {
            Source::Archive(p.to_path_buf())
        } else {
            Source::Docker(s.to_string())
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub walk: WalkOptions,
    pub limits: Limits,
    pub progress: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerInfo {
    pub index: usize,
    /// Entry name in the archive or layout (`<id>/layer.tar`, `blobs/sha256/<hex>`).
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub compression: Compression,
    /// Digest of the blob as stored, when computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Digest the manifest declares for the blob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    /// diff_id the config declares for this layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_diff_id: Option<String>,
    pub stored_size: u64,
    pub expanded_size: u64,
}

/// A digest that does not match what the image metadata declares.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Mismatch {
    /// "manifest", "config", "layer N blob", "layer N diff_id".
    pub what: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug)]
pub struct LoadedImage {
    pub source: String,
    /// "docker-archive" or "oci".
    pub format: &'static str,
    pub manifest_digest: String,
    pub config_digest: String,
    pub config: Value,
    pub repo_tags: Vec<String>,
    pub layers: Vec<LayerInfo>,
    pub view: FsView,
    pub mismatches: Vec<Mismatch>,
    pub warnings: Vec<String>,
}

struct Collector<'a> {
    opts: &'a LoadOptions,
    budget: Budget,
    keep: &'a dyn Fn(&str) -> bool,
    docs: HashMap<String, Vec<u8>>,
    layers: HashMap<String, LayerDelta>,
    /// Symlinks and hard links between archive entries (docker-save deduplicates layers).
    links: HashMap<String, String>,
}

fn looks_json(head: &[u8]) -> bool {
    matches!(head.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{') | Some(b'['))
}

fn looks_layer(head: &[u8]) -> bool {
    sniff_compression(head) != Compression::None
        || head.get(257..262) == Some(b"ustar")
        || (head.len() == 512 && head.iter().all(|&b| b == 0))
}

impl Collector<'_> {
    fn visit(&mut self, name: String, size: Option<u64>, r: &mut dyn Read) -> Result<()> {
        let head = read_head(r, 512).map_err(|e| ImageError::io(format!("reading {name}"), e))?;
        if looks_json(&head) && size.is_none_or(|s| s <= MAX_DOC) {
            let mut doc = head;
            r.take(MAX_DOC).read_to_end(&mut doc).map_err(|e| ImageError::io(format!("reading {name}"), e))?;
            self.docs.insert(name, doc);
        } else if looks_layer(&head) {
            let mut chained = io::Cursor::new(head).chain(r);
            let delta = layer::walk(&name, &mut chained, self.opts.walk, &self.opts.limits, &self.budget, self.keep)?;
            self.layers.insert(name, delta);
        }
        Ok(())
    }

    /// An outer tar (docker-save or OCI archive), optionally gzip/zstd compressed.
    fn visit_tar(&mut self, r: &mut dyn Read) -> Result<()> {
        let head = read_head(r, 8).map_err(|e| ImageError::io("reading the archive", e))?;
        let compression = sniff_compression(&head);
        let mut chained = io::Cursor::new(head).chain(r);
        let input: Box<dyn Read + '_> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut chained)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(&mut chained).map_err(|e| ImageError::io("reading the archive", e))?,
            ),
            Compression::None => Box::new(&mut chained),
        };
        let mut archive = tar::Archive::new(input);
        let outer = |e: io::Error| ImageError::io("reading the image archive", e);
        for entry in archive.entries().map_err(outer)? {
            let mut entry = entry.map_err(outer)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = normalize(&raw)
                .ok_or_else(|| ImageError::PathTraversal { layer: "(image archive)".into(), path: raw.clone() })?;
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target =
                        entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                    let joined = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        format!("{dir}/{target}")
                    } else {
                        target.clone()
                    };
                    if let Some(t) = normalize(&joined) {
                        self.links.insert(name, t);
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    self.visit(name, Some(size), &mut entry)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn visit_dir(&mut self, root: &Path, dir: &Path, progress: &Progress) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| ImageError::io(format!("reading {}", dir.display()), e))?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta =
                std::fs::metadata(&path).map_err(|err| ImageError::io(format!("reading {}", path.display()), err))?;
            if meta.is_dir() {
                self.visit_dir(root, &path, progress)?;
            } else if meta.is_file() {
                let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                let file =
                    File::open(&path).map_err(|err| ImageError::io(format!("opening {}", path.display()), err))?;
                let mut r = progress.wrap(file);
                self.visit(name, Some(meta.len()), &mut r)?;
            }
        }
        Ok(())
    }

    fn resolve_name<'n>(&'n self, mut name: &'n str) -> &'n str {
        for _ in 0..8 {
            match self.links.get(name) {
                Some(t) => name = t,
                None => break,
            }
        }
        name
    }

    fn doc(&self, name: &str) -> Result<(&[u8], Value)> {
        let name = normalize(name).unwrap_or_default();
        let bytes = self
            .docs
            .get(self.resolve_name(&name))
            .ok_or_else(|| ImageError::metadata(&name, "missing from the image"))?;
        let value =
            serde_json::from_slice(bytes).map_err(|e| ImageError::metadata(&name, format!("invalid JSON: {e}")))?;
        Ok((bytes, value))
    }
}

fn sha256_of(bytes: &[u8]) -> String {
    hex_digest(Sha256::new_with_prefix(bytes))
}

fn blob_name(digest: &str) -> Option<String> {
    let (alg, hex) = digest.split_once(':')?;
    (!alg.is_empty() && !hex.is_empty() && !hex.contains('/') && !alg.contains('/'))
        .then(|| format!("blobs/{alg}/{hex}"))
}

struct LayerRef {
    name: String,
    digest: Option<String>,
    media_type: Option<String>,
}

struct Meta {
    format: &'static str,
    manifest_digest: String,
    config_digest: String,
    config: Value,
    repo_tags: Vec<String>,
    layers: Vec<LayerRef>,
    mismatches: Vec<Mismatch>,
    warnings: Vec<String>,
}

fn docker_meta(c: &Collector) -> Result<Meta> {
    let (bytes, manifest) = c.doc("manifest.json")?;
    let images = manifest
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ImageError::metadata("manifest.json", "no images listed"))?;
    let mut warnings = Vec::new();
    if images.len() > 1 {
        warnings.push(format!("the archive holds {} images; scanning the first", images.len()));
    }
    let image = &images[0];
    let config_name = image["Config"].as_str().ok_or_else(|| ImageError::metadata("manifest.json", "no Config"))?;
    let (config_bytes, config) = c.doc(config_name)?;
    let layers = image["Layers"]
        .as_array()
        .ok_or_else(|| ImageError::metadata("manifest.json", "no Layers"))?
        .iter()
        .map(|l| {
            let name = l.as_str().unwrap_or_default().to_string();
            // Docker 25+ writes OCI blob paths, which carry the digest.
            let digest =
                name.strip_prefix("blobs/").and_then(|r| r.split_once('/')).map(|(alg, hex)| format!("{alg}:{hex}"));
            LayerRef { name, digest, media_type: None }
        })
        .collect();
    Ok(Meta {
        format: "docker-archive",
        manifest_digest: sha256_of(bytes),
        config_digest: sha256_of(config_bytes),
        config,
        repo_tags: image["RepoTags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        layers,
        mismatches: Vec::new(),
        warnings,
    })
}

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// Picks linux/amd64 from a multi-platform index, else the first manifest.
fn pick(manifests: &[Value]) -> Option<&Value> {
    manifests
        .iter()
        .find(|m| {
            m["platform"]["os"] == "linux"
                && m["platform"]["architecture"] == std::env::consts::ARCH.replace("x86_64", "amd64")
        })
        .or_else(|| manifests.first())
}

fn oci_meta(c: &Collector) -> Result<Meta> {
    let (_, mut index) = c.doc("index.json")?;
    let mut mismatches = Vec::new();
    let mut warnings = Vec::new();
    let mut repo_tags = Vec::new();
    for depth in 0.. {
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let desc = pick(&manifests).ok_or_else(|| ImageError::metadata("index.json", "no manifests"))?.clone();
        if manifests.len() > 1 && depth == 0 && INDEX_TYPES.iter().all(|t| desc["mediaType"] != *t) {
            warnings.push(format!("the index lists {} manifests; scanning one", manifests.len()));
        }
        if let Some(tag) = desc["annotations"]["io.containerd.image.name"]
            .as_str()
            .or(desc["annotations"]["org.opencontainers.image.ref.name"].as_str())
        {
            repo_tags.push(tag.to_string());
        }
        let digest = desc["digest"].as_str().unwrap_or_default().to_string();
        let name =
            blob_name(&digest).ok_or_else(|| ImageError::metadata("index.json", format!("bad digest {digest:?}")))?;
        let (bytes, doc) = c.doc(&name)?;
        let actual = sha256_of(bytes);
        if digest.starts_with("sha256:") && actual != digest {
            mismatches.push(Mismatch {
                what: if depth == 0 { "manifest".into() } else { format!("index level {depth}") },
                expected: digest.clone(),
                actual,
            });
        }
        let is_index = INDEX_TYPES.iter().any(|t| desc["mediaType"] == *t || doc["mediaType"] == *t);
        if is_index {
            if depth >= 4 {
                return Err(ImageError::metadata("index.json", "indexes nested too deeply"));
            }
            index = doc;
            continue;
        }
        let config_digest = doc["config"]["digest"].as_str().unwrap_or_default().to_string();
        let config_name = blob_name(&config_digest)
            .ok_or_else(|| ImageError::metadata(&name, format!("bad config digest {config_digest:?}")))?;
        let (config_bytes, config) = c.doc(&config_name)?;
        let actual = sha256_of(config_bytes);
        if config_digest.starts_with("sha256:") && actual != config_digest {
            mismatches.push(Mismatch { what: "config".into(), expected: config_digest.clone(), actual });
        }
        let layers = doc["layers"]
            .as_array()
            .ok_or_else(|| ImageError::metadata(&name, "no layers"))?
            .iter()
            .map(|l| {
                let digest = l["digest"].as_str().unwrap_or_default().to_string();
                LayerRef {
                    name: blob_name(&digest).unwrap_or_default(),
                    digest: Some(digest),
                    media_type: l["mediaType"].as_str().map(str::to_string),
                }
            })
            .collect();
        return Ok(Meta {
            format: "oci",
            manifest_digest: digest,
            config_digest,
            config,
            repo_tags,
            layers,
            mismatches,
            warnings,
        });
    }
    unreachable!("the loop above returns or errors")
}

/// Reads the image and builds its final filesystem view.
pub fn load(source: &str, opts: &LoadOptions, keep: &dyn Fn(&str) -> bool) -> Result<LoadedImage> {
    let parsed = Source::parse(source);
    let mut c = Collector {
        opts,
        budget: Budget::default(),
        keep,
        docs: HashMap::new(),
        layers: HashMap::new(),
        links: HashMap::new(),
    };
    match &parsed {
        Source::Archive(path) => {
            let file = File::open(path).map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
            let len = file.metadata().map(|m| m.len()).ok();
            let progress = Progress::new(opts.progress, len, source);
            c.visit_tar(&mut progress.wrap(file))?;
            progress.finish();
        }
        Source::Directory(dir) => {
            let progress = Progress::new(opts.progress, dir_size(dir), source);
            c.visit_dir(dir, dir, &progress)?;
            progress.finish();
        }
        Source::Docker(reference) => {
            let socket = docker::socket_path();
            if !socket.exists() {
                return Err(ImageError::UnknownSource(source.to_string()));
            }
            let stream = docker::export(&socket, reference)?;
            let progress = Progress::new(opts.progress, None, source);
            c.visit_tar(&mut progress.wrap(stream))?;
            progress.finish();
        }
    }
    let meta = if c.docs.contains_key("manifest.json") {
        docker_meta(&c)?
    } else if c.docs.contains_key("index.json") {
        oci_meta(&c)?
    } else {
        return Err(ImageError::UnknownSource(source.to_string()));
    };
    compose(source, c, meta)
}

fn compose(source: &str, c: Collector, meta: Meta) -> Result<LoadedImage> {
    let diff_ids: Vec<String> = meta.config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut mismatches = meta.mismatches;
    let mut warnings = meta.warnings;
    if diff_ids.len() != meta.layers.len() {
        mismatches.push(Mismatch {
            what: "layer count".into(),
            expected: format!("{} diff_ids in the config", diff_ids.len()),
            actual: format!("{} layers in the manifest", meta.layers.len()),
        });
    }
    let mut view = FsView::default();
    let mut layers = Vec::new();
    for (index, lref) in meta.layers.iter().enumerate() {
        let key = c.resolve_name(&lref.name);
        let delta = c.layers.get(key).ok_or_else(|| ImageError::MissingLayer { layer: lref.name.clone() })?;
        let expected_diff_id = diff_ids.get(index).cloned();
        if let (Some(want), Some(got)) = (&lref.digest, &delta.blob_digest)
            && want != got
        {
            mismatches.push(Mismatch {
                what: format!("layer {index} blob"),
                expected: want.clone(),
                actual: got.clone(),
            });
        }
        if let (Some(want), Some(got)) = (&expected_diff_id, &delta.diff_id)
            && want != got
        {
            mismatches.push(Mismatch {
                what: format!("layer {index} diff_id"),
                expected: want.clone(),
                actual: got.clone(),
            });
        }
        warnings.extend(view.apply(index, delta));
        layers.push(LayerInfo {
            index,
            name: lref.name.clone(),
            media_type: lref.media_type.clone(),
            compression: delta.compression,
            digest: delta.blob_digest.clone(),
            expected_digest: lref.digest.clone(),
            diff_id: delta.diff_id.clone(),
            expected_diff_id,
            stored_size: delta.stored_size,
            expanded_size: delta.expanded_size,
        });
    }
    Ok(LoadedImage {
        source: source.to_string(),
        format: meta.format,
        manifest_digest: meta.manifest_digest,
        config_digest: meta.config_digest,
        config: meta.config,
        repo_tags: meta.repo_tags,
        layers,
        view,
        mismatches,
        warnings,
    })
}

fn dir_size(dir: &Path) -> Option<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let m = std::fs::metadata(e.path()).ok()?;
        total += if m.is_dir() { dir_size(&e.path())? } else { m.len() };
    }
    Some(total)
}
