//! The Docker engine for end-to-end tests: the one `cargo xtask env up` starts (or any engine
//! `docker` reaches), with the locally built test image.

use std::{path::Path, process::Command};

use crate::skip::{self, Need};

pub const IMAGE: &str = "dcea-test/busybox:latest";

/// Is an engine up with the test image? Records a skip (see [`skip`]) when not.
pub fn available(test: &str) -> bool {
    let ledger = std::env::var_os(skip::LOG_ENV);
    available_at(test, None, ledger.as_deref().map(Path::new))
}

/// [`available`] against `docker_host` (else the environment's), recording into `ledger`.
pub fn available_at(test: &str, docker_host: Option<&str>, ledger: Option<&Path>) -> bool {
    if skip::in_guest() {
        return skip::left_out(test, "needs a Docker engine; the kernel-matrix guests have none");
    }
    if skip::requested(Need::Docker) {
        return skip::skip_to(ledger, test, Need::Docker, "skipped on request (--skip docker)");
    }
    let docker = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.args(args).output()
    };
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]);
    let reason = match &info {
        Err(e) => format!("cannot run docker ({e})"),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            format!("no Docker engine answers ({})", err.lines().next().unwrap_or("").trim())
        }
        Ok(_) if !docker(&["image", "inspect", IMAGE]).is_ok_and(|o| o.status.success()) => {
            format!("the engine has no {IMAGE}")
        }
        Ok(_) => return true,
    };
    skip::skip_to(
        ledger,
        test,
        Need::Docker,
        &format!("{reason}: `cargo xtask env up` starts the engine and builds the image, or pass --skip docker"),
    )
}

/// Where `cargo xtask env up` installs the runc wrapper that drops CAP_SYS_RESOURCE from a
/// container's capability sets (a bounding set without it breaks `--privileged`).
pub const RUNC_WRAPPER: &str = "/usr/local/lib/dcea-test/dcea-runc";

/// The OCI runtime binary a test runtime (Docker, containerd's CRI) must use on this host: the
/// wrapper when the capability bounding set lacks CAP_SYS_RESOURCE, else plain runc.
pub fn runtime_binary() -> std::path::PathBuf {
    if bounding_set_has(24) {
        return crate::skip::find_program("runc").unwrap_or_else(|| "runc".into());
    }
    std::path::PathBuf::from(RUNC_WRAPPER)
}

/// Is capability `bit` in this process's bounding set?
pub fn bounding_set_has(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << bit) != 0)
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

    /// What the container wrote, stdout then stderr (`docker logs` splits them the same way).
    pub fn logs(&self) -> String {
        match Command::new("docker").args(["logs", &self.id]).output() {
            Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("(docker logs: {e})"),
        }
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

/// `dcea-test-helper open-loop FILE COUNT` in a fresh container (the host's libraries mounted
/// read-only): the seconds it reported and its whole output; None when it could not run.
pub fn helper_open_loop(file: &str, count: u64) -> Option<(f64, String)> {
    crate::bench::loops::helper_in_container(&[], &["open-loop", file, &count.to_string()])
}

/// Docker options that let a container run dcea-test-helper (a host binary) with the host's
/// shared libraries, read-only, at /dcea-test-helper.
pub fn helper_mounts() -> Vec<String> {
    ["/usr:/usr:ro", "/lib:/lib:ro", "/lib64:/lib64:ro"]
        .iter()
        .flat_map(|m| ["-v".to_string(), m.to_string()])
        .chain(["-v".to_string(), format!("{}:/dcea-test-helper:ro", crate::helper_bin().display())])
        .collect()
}
