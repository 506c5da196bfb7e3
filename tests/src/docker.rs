//! The local Docker engine for end-to-end tests (../shared/env/dockerd-up.sh).

use std::process::Command;

pub const IMAGE: &str = "dcea-test/busybox:latest";

/// Is an engine up (starting it through the shared script when present)?
pub fn available(test: &str) -> bool {
    let script = crate::workspace_root().join("../shared/env/dockerd-up.sh");
    if script.exists() {
        let _ = Command::new("bash").arg(&script).output();
    }
    let ok = Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success())
        && Command::new("docker").args(["image", "inspect", IMAGE]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP {test}: no Docker engine with {IMAGE} (start it with ../shared/env/dockerd-up.sh)");
    }
    ok
}

/// Run `docker args…`, panic with its stderr on failure, return trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("spawn docker");
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container removed when dropped.
pub struct Container {
    pub id: String,
}

impl Container {
    /// `docker run -d --network none <extra…> IMAGE <cmd…>`
    pub fn run(extra: &[&str], cmd: &[&str]) -> Container {
        let mut args = vec!["run", "-d", "--network", "none"];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        Container { id: docker(&args) }
    }

    /// `docker run -d --network none --name <prefix>-<unique> <extra…> IMAGE <cmd…>`: a name
    /// of ours, so only what a test made is ever removed.
    pub fn run_named(prefix: &str, extra: &[&str], cmd: &[&str]) -> Container {
        let name = unique_name(prefix);
        let mut args = vec!["--name", name.as_str()];
        args.extend_from_slice(extra);
        Container::run(&args, cmd)
    }

    /// The container's init pid on the host.
    pub fn pid(&self) -> u32 {
        docker(&["inspect", "-f", "{{.State.Pid}}", &self.id]).parse().expect("pid")
    }

    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(cmd);
        docker(&args)
    }

    /// Wait for the container to exit; its exit code.
    pub fn wait(&self) -> i32 {
        docker(&["wait", &self.id]).parse().unwrap_or(-1)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.id]).output();
    }
}

/// `<prefix>-<pid>-<counter>`: unique across tests and concurrent test runs.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
