//! The test Docker engine: Debian's dockerd with no bridge and no iptables (the tests use
//! `--network none`, or veth pairs they make), the runc wrapper as default runtime where this
//! host needs it, and the test image built from the static busybox.

use std::{
    fs,
    os::unix::{fs::symlink, process::CommandExt},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{apt, runc_wrapper};

pub const IMAGE: &str = "dcea-test/busybox:latest";
const PIDFILE: &str = "/run/dcea-test-dockerd.pid";
const LOG: &str = "/var/log/dcea-test-dockerd.log";

fn docker(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn engine_up() -> bool {
    docker(&["info", "--format", "{{.ServerVersion}}"]).is_some()
}

pub fn status() -> Vec<(&'static str, bool)> {
    vec![("docker engine", engine_up()), ("image dcea-test/busybox:latest", has_image())]
}

fn has_image() -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]).is_some()
}

pub fn up() -> Result<()> {
    let wrapper = if runc_wrapper::needed() { Some(runc_wrapper::install()?) } else { None };
    if engine_up() {
        check_runtime(wrapper.is_some());
    } else {
        start_dockerd(wrapper.as_deref())?;
    }
    if !has_image() {
        import_image()?;
    }
    Ok(())
}

/// An engine somebody else started: say so when it cannot run privileged containers here.
fn check_runtime(needs_wrapper: bool) {
    let default = docker(&["info", "--format", "{{.DefaultRuntime}}"]).unwrap_or_default();
    if needs_wrapper && default == "runc" {
        eprintln!(
            "env: warning: the running Docker engine uses plain runc, but this host's capability bounding set lacks \
             CAP_SYS_RESOURCE: --privileged containers will fail. Restart it with `--add-runtime {}={} \
             --default-runtime {}`, or stop it and let `cargo xtask env up` start one.",
            runc_wrapper::NAME,
            runc_wrapper::INSTALL_PATH,
            runc_wrapper::NAME
        );
    }
}

fn start_dockerd(wrapper: Option<&Path>) -> Result<()> {
    let dockerd = apt::find("dockerd").context("dockerd not found after installing docker.io")?;
    eprintln!("env: starting dockerd (log {LOG})");
    let log = fs::File::create(LOG).with_context(|| format!("creating {LOG}"))?;
    let mut cmd = Command::new(dockerd);
    cmd.args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--pidfile", PIDFILE]);
    if let Some(w) = wrapper {
        cmd.arg(format!("--add-runtime={}={}", runc_wrapper::NAME, w.display()))
            .arg(format!("--default-runtime={}", runc_wrapper::NAME));
    }
    // Its own process group, detached from ours: the engine outlives this command.
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    let mut child = cmd.spawn().context("spawning dockerd")?;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if engine_up() {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!("dockerd exited ({st}) before answering; see {LOG}:\n{}", tail(LOG));
        }
        thread::sleep(Duration::from_millis(250));
    }
    bail!("dockerd did not answer within 90 s; see {LOG}:\n{}", tail(LOG))
}

fn tail(path: &str) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `docker import` of a root filesystem made of the static busybox and its applet links (no
/// registry is reachable, so nothing is pulled).
fn import_image() -> Result<()> {
    let busybox = apt::static_busybox().context("no static busybox (apt-get install busybox-static)")?;
    eprintln!("env: building {IMAGE} from {}", busybox.display());
    let root = tempdir()?;
    let result = (|| -> Result<()> {
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "mnt", "root"] {
            fs::create_dir_all(root.join(d))?;
        }
        fs::copy(&busybox, root.join("bin/busybox"))?;
        let list = Command::new(&busybox).arg("--list").output().context("busybox --list")?;
        for applet in String::from_utf8_lossy(&list.stdout).split_whitespace().filter(|a| *a != "busybox") {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        fs::write(root.join("etc/group"), "root:x:0:\n")?;
        fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n")?;
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning tar")?;
        let st = Command::new("docker")
            .args(["import", "-", IMAGE])
            .stdin(tar.stdout.context("tar stdout")?)
            .stdout(Stdio::null())
            .status()
            .context("docker import")?;
        if !st.success() {
            bail!("docker import {IMAGE} failed: {st}");
        }
        Ok(())
    })();
    let _ = fs::remove_dir_all(&root);
    result
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dcea-image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
