//! Streams `docker save` output from the local engine (`GET /images/{name}/get`) over its
//! Unix socket. The body is read as it arrives, never buffered whole or written to disk.

use std::{io::Read, path::Path};

use super::error::{ImageError, Result};
use crate::container::engine;

pub use engine::socket_path;

/// Opens the exported image as a byte stream (a docker-save tar).
pub fn export(socket: &Path, reference: &str) -> Result<Box<dyn Read>> {
    engine::get_stream(socket, &format!("/images/{}/get", engine::path_segment(reference)), None).map_err(|e| {
        ImageError::Docker { socket: socket.to_path_buf(), message: format!("exporting {reference}: {e}") }
    })
}
