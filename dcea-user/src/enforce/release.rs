//! `dcea release CONTAINER`: lift a container's condemnation. The running agent applies the
//! request within a second (it owns the kernel map); the state file is updated here too, so an
//! agent started later does not condemn the container again.

use std::{fs, path::Path};

use super::condemned::{self, Entry, RELEASE_DIR, STATE_FILE};

/// The command: say what was released (exit 0), or why nothing was (exit 2).
pub fn run(state_dir: &Path, name: &str) -> Result<u8, String> {
    for e in release(state_dir, name)? {
        let who = if e.container_id.is_empty() { e.cgroup.clone() } else { e.container_id.clone() };
        println!("dcea: released {who} (cgroup {})", e.cgroup);
    }
    Ok(0)
}

/// Release `name` (a container id, a 12+ digit prefix, or a cgroup path); what was released.
pub fn release(state_dir: &Path, name: &str) -> Result<Vec<Entry>, String> {
    let name = name.trim();
    if name.is_empty() || name.contains('/') && name.split('/').any(|c| c == "..") {
        return Err(format!("{name:?} is not a container id or cgroup path"));
    }
    let path = state_dir.join(STATE_FILE);
    let entries = match fs::read(&path) {
        Ok(bytes) => condemned::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let released: Vec<Entry> = entries.iter().filter(|e| condemned::matches(e, name)).cloned().collect();
    if released.is_empty() {
        let known: Vec<String> = entries
            .iter()
            .map(|e| if e.container_id.is_empty() { e.cgroup.clone() } else { e.container_id.clone() })
            .collect();
        return Err(format!(
            "no condemned container matches {name:?} (condemned: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ));
    }
    let dir = state_dir.join(RELEASE_DIR);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in &released {
        // One request per entry, named by its cgroup path (slashes as %).
        let req = dir.join(e.cgroup.replace('/', "%"));
        fs::write(&req, b"").map_err(|e| format!("{}: {e}", req.display()))?;
    }
    let kept: Vec<&Entry> = entries.iter().filter(|e| !condemned::matches(e, name)).collect();
    let body = serde_json::json!({ "version": 1, "containers": kept });
    fs::write(&path, serde_json::to_vec_pretty(&body).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_updates_the_state_file_and_leaves_a_request_for_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let id = "ab".repeat(32);
        let body = serde_json::json!({"version": 1, "containers": [
            {"cgroup": format!("docker/{id}"), "cgroup_id": 42, "container_id": id, "condemned_at": 1},
            {"cgroup": "docker/other", "cgroup_id": 43, "container_id": "", "condemned_at": 1},
        ]});
        fs::write(dir.path().join(STATE_FILE), serde_json::to_vec(&body).unwrap()).unwrap();
        let out = release(dir.path(), &id[..12]).unwrap();
        assert_eq!(out.len(), 1);
        let left = condemned::parse(&fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].cgroup, "docker/other");
        assert!(dir.path().join(RELEASE_DIR).join(format!("docker%{id}")).exists());
        let err = release(dir.path(), "nothing-like-it").unwrap_err();
        assert!(err.contains("docker/other"), "{err}");
        fs::write(dir.path().join(STATE_FILE), b"[1,2").unwrap();
        assert!(release(dir.path(), "x").unwrap_err().contains("not a condemned-set file"));
    }
}
