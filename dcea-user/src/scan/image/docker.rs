//! Streams `docker save` output from the local engine (`GET /images/{name}/get`) over its
//! Unix socket. The body is read as it arrives, never buffered whole or written to disk.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use super::error::{ImageError, Result};

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The socket from DOCKER_HOST (unix:// only) or the default.
pub fn socket_path() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

fn docker_err(socket: &Path, message: impl Into<String>) -> ImageError {
    ImageError::Docker { socket: socket.to_path_buf(), message: message.into() }
}

/// Percent-encodes a reference for the URL path (`/` and `:` included, as the API expects).
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Opens the exported image as a byte stream (a docker-save tar).
pub fn export(socket: &Path, reference: &str) -> Result<Box<dyn Read>> {
    let mut stream = UnixStream::connect(socket).map_err(|e| docker_err(socket, format!("cannot connect: {e}")))?;
    let request = format!(
        "GET /images/{}/get HTTP/1.1\r\nHost: docker\r\nUser-Agent: dcea\r\nConnection: close\r\n\r\n",
        encode(reference)
    );
    stream.write_all(request.as_bytes()).map_err(|e| docker_err(socket, format!("sending the request: {e}")))?;
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| docker_err(socket, format!("reading the response: {e}")))?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| docker_err(socket, format!("malformed status line {status:?}")))?;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| docker_err(socket, format!("reading headers: {e}")))?;
        let line = line.trim_end();
        if n == 0 || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse().ok();
            }
        }
    }
    let body: Box<dyn Read> = if chunked {
        Box::new(Chunked { inner: reader, left: 0, done: false })
    } else if let Some(len) = length {
        Box::new(reader.take(len))
    } else {
        Box::new(reader)
    };
    if code != 200 {
        let mut msg = String::new();
        body.take(64 * 1024).read_to_string(&mut msg).ok();
        let detail = serde_json::from_str::<serde_json::Value>(&msg)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(msg);
        return Err(docker_err(socket, format!("exporting {reference}: HTTP {code}: {}", detail.trim())));
    }
    Ok(body)
}

/// HTTP/1.1 chunked transfer decoding.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF that ends the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        let mut r = Chunked { inner: &body[..], left: 0, done: false };
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello, world");
    }

    #[test]
    fn truncated_chunk_is_an_error() {
        let body = b"10\r\nshort";
        let mut r = Chunked { inner: &body[..], left: 0, done: false };
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }

    #[test]
    fn references_are_encoded() {
        assert_eq!(encode("dcea-test/busybox:latest"), "dcea-test%2Fbusybox%3Alatest");
    }
}
