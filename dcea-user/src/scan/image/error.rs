//! Errors of image reading and scanning. Each message names the offending path or limit so
//! an operator can tell a hostile image from a broken one.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a docker-save archive, OCI layout or image known to the local Docker engine")]
    UnknownSource(String),
    #[error("docker engine at {socket}: {message}")]
    Docker { socket: PathBuf, message: String },
    #[error("image metadata {name}: {message}")]
    Metadata { name: String, message: String },
    #[error("layer {layer} is referenced by the manifest but missing from the image")]
    MissingLayer { layer: String },
    #[error("path traversal in layer {layer}: entry {path:?} leaves the image root")]
    PathTraversal { layer: String, path: String },
    #[error("symlink {path} -> {target} escapes the image root when followed")]
    SymlinkEscape { path: String, target: String },
    #[error("symlink loop while resolving {path} (more than {hops} links)")]
    SymlinkLoop { path: String, hops: usize },
    #[error("decompression bomb in {layer}: {what} exceeds the limit of {limit}")]
    Bomb { layer: String, what: &'static str, limit: u64 },
    #[error("layer {layer}: {message}")]
    Layer { layer: String, message: String },
    #[error("vulnerability database {path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("package database {path}: {message}")]
    PackageDb { path: String, message: String },
}

impl ImageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io { context: context.into(), source }
    }

    pub fn metadata(name: impl Into<String>, message: impl Into<String>) -> Self {
        ImageError::Metadata { name: name.into(), message: message.into() }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
