//! A minimal Docker Engine API client: HTTP/1.1 GET over the unix socket, enough for the
//! container list, one inspect and /info. Names and images come from here; everything
//! security-relevant is read from /proc, which the engine cannot misreport.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use serde_json::Value;

use crate::scan::Error;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Bigger answers are not a container list.
const MAX_BODY: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerContainer {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
}

/// Decode a `Transfer-Encoding: chunked` body.
pub fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = |r: &str| Error::Docker(format!("bad chunked response: {r}"));
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("no chunk size line"))?;
        let size_str = std::str::from_utf8(&body[..line_end]).map_err(|_| bad("non-ASCII chunk size"))?;
        let size_str = size_str.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16).map_err(|_| bad("chunk size is not hex"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size || out.len() + size > MAX_BODY {
            return Err(bad("truncated or oversized chunk"));
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).ok_or_else(|| bad("missing chunk terminator"))?;
    }
}

/// Split a raw HTTP response into status code and decoded body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    let head_end =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| Error::Docker("no HTTP header end".into()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Docker("no HTTP status line".into()))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    Ok((status, if chunked { dechunk(body)? } else { body.to_vec() }))
}

pub fn get(socket: &Path, path: &str) -> Result<Value, Error> {
    let ctx = |e: std::io::Error| Error::io(format!("Docker API {} {path}", socket.display()), e);
    let mut s = UnixStream::connect(socket).map_err(ctx)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(ctx)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(ctx)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dcea\r\nConnection: close\r\n\r\n").map_err(ctx)?;
    let mut raw = Vec::new();
    s.take(MAX_BODY as u64).read_to_end(&mut raw).map_err(ctx)?;
    let (status, body) = parse_response(&raw)?;
    if status != 200 {
        return Err(Error::Docker(format!("GET {path}: HTTP {status}: {}", String::from_utf8_lossy(&body).trim())));
    }
    serde_json::from_slice(&body).map_err(|e| Error::Docker(format!("GET {path}: {e}")))
}

/// Running containers: `GET /containers/json`.
pub fn list(socket: &Path) -> Result<Vec<DockerContainer>, Error> {
    let v = get(socket, "/containers/json")?;
    let arr = v.as_array().ok_or_else(|| Error::Docker("/containers/json is not a list".into()))?;
    Ok(arr
        .iter()
        .filter_map(|c| {
            Some(DockerContainer {
                id: c.get("Id")?.as_str()?.to_string(),
                name: c
                    .get("Names")
                    .and_then(|n| n.get(0))
                    .and_then(Value::as_str)
                    .map(|n| n.trim_start_matches('/').to_string()),
                image: c.get("Image").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect())
}

/// The host pid of a container's init process: `GET /containers/<id>/json`.
pub fn pid(socket: &Path, id: &str) -> Result<Option<u32>, Error> {
    if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Usage(format!("not a container id: {id:?}")));
    }
    let v = get(socket, &format!("/containers/{id}/json"))?;
    Ok(v.pointer("/State/Pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0))
}

/// The engine's data root (`/var/lib/docker` unless configured otherwise).
pub fn root_dir(socket: &Path) -> Result<Option<String>, Error> {
    Ok(get(socket, "/info")?.get("DockerRootDir").and_then(Value::as_str).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1]").unwrap();
        assert_eq!((s, b.as_slice()), (200, b"[1]".as_slice()));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2;ext=x\r\n2]\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().1, b"[1,2]");
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
        ] {
            assert!(parse_response(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn missing_socket_is_an_error() {
        assert!(list(Path::new("/nonexistent/docker.sock")).is_err());
        assert!(pid(Path::new("/nonexistent/docker.sock"), "../../etc").is_err());
    }
}
