//! A minimal Docker Engine API client: HTTP/1.1 GET over the engine's unix socket, bodies
//! streamed as they arrive (an image export is gigabytes; a container list is kilobytes).
//! Names, images and labels come from here; anything security-relevant is read from /proc or
//! the kernel, which the engine cannot misreport.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// JSON answers larger than this are not what was asked for.
const MAX_JSON: u64 = 64 << 20;
const JSON_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("malformed HTTP response: {0}")]
    Protocol(String),
    #[error("invalid JSON: {0}")]
    Json(String),
}

/// The socket from DOCKER_HOST (unix:// only) or the default.
pub fn socket_path() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Percent-encode one URL path segment (image references carry `/` and `:`).
pub fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path`; the body of a 200 answer as a stream, any other status as an error carrying
/// the engine's message.
pub fn get_stream(socket: &Path, path: &str, timeout: Option<Duration>) -> Result<Box<dyn Read>, EngineError> {
    request(socket, "GET", path, timeout, 200)
}

/// `POST path` without a body (`/containers/ID/kill`); Ok when the engine answers 204.
pub fn post(socket: &Path, path: &str) -> Result<(), EngineError> {
    request(socket, "POST", path, Some(JSON_TIMEOUT), 204).map(drop)
}

fn request(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Option<Duration>,
    ok: u16,
) -> Result<Box<dyn Read>, EngineError> {
    let mut stream =
        UnixStream::connect(socket).map_err(|source| EngineError::Connect { socket: socket.to_path_buf(), source })?;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let length = if method == "POST" { "Content-Length: 0\r\n" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dcea\r\n{length}Connection: close\r\n\r\n"
    )?;
    let (status, body) = response(BufReader::with_capacity(256 * 1024, stream))?;
    if status != ok {
        let mut msg = String::new();
        body.take(64 * 1024).read_to_string(&mut msg).ok();
        let message = serde_json::from_str::<Value>(&msg)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(msg)
            .trim()
            .to_string();
        return Err(EngineError::Status { status, message });
    }
    Ok(body)
}

/// `GET path` answered with JSON.
pub fn get_json(socket: &Path, path: &str) -> Result<Value, EngineError> {
    let mut body = Vec::new();
    get_stream(socket, path, Some(JSON_TIMEOUT))?.take(MAX_JSON).read_to_end(&mut body)?;
    parse_json(&body)
}

/// Engine JSON as the engine wrote it; bytes that are not UTF-8 (a hostile label, a broken
/// proxy) become U+FFFD instead of failing the whole answer.
pub fn parse_json(body: &[u8]) -> Result<Value, EngineError> {
    serde_json::from_str(&String::from_utf8_lossy(body)).map_err(|e| EngineError::Json(e.to_string()))
}

/// Status line and headers; the body framed by chunked encoding, Content-Length, or close.
fn response<R: BufRead + 'static>(mut reader: R) -> Result<(u16, Box<dyn Read>), EngineError> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .strip_prefix("HTTP/")
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| EngineError::Protocol(format!("status line {:?}", status_line.trim_end())))?;
    let (mut chunked, mut length) = (false, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(EngineError::Protocol("headers end without a blank line".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<u64>().ok();
            }
        }
    }
    let body: Box<dyn Read> = match (chunked, length) {
        (true, _) => Box::new(Chunked { inner: reader, left: 0, done: false }),
        (false, Some(len)) => Box::new(reader.take(len)),
        (false, None) => Box::new(reader),
    };
    Ok((status, body))
}

/// HTTP/1.1 chunked transfer decoding over a stream.
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
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
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

    fn body_of(raw: &'static [u8]) -> Result<(u16, Vec<u8>), EngineError> {
        let (status, mut body) = response(raw)?;
        let mut out = Vec::new();
        body.read_to_end(&mut out)?;
        Ok((status, out))
    }

    #[test]
    fn responses_plain_length_and_chunked() {
        assert_eq!(
            body_of(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1]").unwrap(),
            (200, b"[1]".to_vec())
        );
        assert_eq!(
            body_of(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}trailing").unwrap(),
            (404, b"{}".to_vec())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2;ext=x\r\n2]\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).unwrap(), (200, b"[1,2]".to_vec()));
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        ] {
            assert!(body_of(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn references_are_encoded_and_missing_sockets_fail_cleanly() {
        assert_eq!(path_segment("dcea-test/busybox:latest"), "dcea-test%2Fbusybox%3Alatest");
        let err = get_json(Path::new("/nonexistent/docker.sock"), "/info").unwrap_err();
        assert!(err.to_string().contains("cannot connect to /nonexistent/docker.sock"), "{err}");
    }
}
