//! What the config scan asks the Docker engine: the container list, one inspect and /info.
//! Names and images come from here; everything security-relevant is read from /proc, which
//! the engine cannot misreport.

use std::path::Path;

use serde_json::Value;

use crate::{container::engine, scan::Error};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerContainer {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
}

fn get(socket: &Path, path: &str) -> Result<Value, Error> {
    engine::get_json(socket, path).map_err(|e| Error::Docker(format!("GET {path}: {e}")))
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
    fn missing_socket_is_an_error() {
        assert!(list(Path::new("/nonexistent/docker.sock")).is_err());
        assert!(pid(Path::new("/nonexistent/docker.sock"), "../../etc").is_err());
    }
}
