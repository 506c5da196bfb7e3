//! The host pid of a container's init, from the runtime's own state: the shim's `init.pid`
//! (containerd, and Docker's managed containerd) or CRI-O's pidfile. runc writes it at
//! `create`, before the container runs any code of its own, so an event from the container
//! can always find it — unlike the engine's `State.Pid`, which the metadata cache learns only
//! after the `start` event.

use std::{fs, path::Path};

/// containerd shim v2 task roots; each holds `<namespace>/<id>/init.pid`.
const SHIM_ROOTS: &[&str] =
    &["/run/containerd/io.containerd.runtime.v2.task", "/run/docker/containerd/daemon/io.containerd.runtime.v2.task"];

const CRIO_ROOT: &str = "/run/containers/storage/overlay-containers";

fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok().filter(|p| *p > 0)
}

/// `id` is a 64-hex container id (callers pass what the cgroup gave).
pub fn init_pid(id: &str) -> Option<u32> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for root in SHIM_ROOTS {
        let Ok(namespaces) = fs::read_dir(root) else { continue };
        for ns in namespaces.flatten() {
            if let Some(pid) = read_pid(&ns.path().join(id).join("init.pid")) {
                return Some(pid);
            }
        }
    }
    read_pid(&Path::new(CRIO_ROOT).join(id).join("userdata/pidfile"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_not_hex_never_touch_the_filesystem() {
        for bad in ["", "../../etc", "abc/def", "x"] {
            assert_eq!(init_pid(bad), None, "{bad}");
        }
        assert_eq!(init_pid(&"0".repeat(64)), None, "no such container");
    }
}
