//! A private containerd with its CRI plugin, driven the way kubelet drives it: its own root,
//! state, socket and config; a sandbox image built here from busybox-static and imported
//! with `ctr`; pods created with RunPodSandbox (kubelet's labels and metadata), containers
//! with CreateContainer + StartContainer. Host-network pods only (no CNI). Everything it
//! started is stopped on drop: pods through the CRI, then containerd and its shims by pid.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    self as api, image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::{require_root, skip};

/// The image every pod and container runs (the sandbox image too): busybox-static.
pub const IMAGE: &str = "docker.io/dcea-test/busybox:latest";
pub const NAMESPACE: &str = "dcea-test";

/// Which namespaces a pod shares with the node (kubelet's hostPID / hostIPC; hostNetwork is
/// always on here, so no CNI is needed).
#[derive(Clone, Copy, Debug, Default)]
pub struct PodSpec {
    pub host_pid: bool,
    pub host_ipc: bool,
    pub privileged: bool,
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub spec: PodSpec,
    config: api::PodSandboxConfig,
}

pub struct Containerd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    rt: tokio::runtime::Runtime,
    channel: Channel,
    pods: Vec<Pod>,
    /// Every pod uid this harness created: their cgroups go on drop, stopped pods' too.
    uids: Vec<String>,
    image_id: String,
}

fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The OCI runtime for privileged containers on this host (see `docker::runtime_binary`: the
/// wrapper `cargo xtask env up` installs where the capability bounding set needs it).
pub fn runc_binary() -> PathBuf {
    crate::docker::runtime_binary()
}

/// An OCI image layout tarball of busybox-static (sh, sleep, cat, nsenter…; /etc/shadow for
/// the credential rule), named `IMAGE`.
pub fn build_image_tar(out: &Path) {
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut layer = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty()).expect("dir");
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).expect("file");
    };
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt"] {
        dir(&mut layer, d);
    }
    file(&mut layer, "bin/busybox", 0o755, &busybox);
    let applets = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        layer.append_link(&mut h, format!("bin/{applet}"), "busybox").expect("applet link");
    }
    file(&mut layer, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    file(&mut layer, "etc/group", 0o644, b"root:x:0:\n");
    file(&mut layer, "etc/shadow", 0o600, b"root:*:19000:0:99999:7:::\n");
    let layer = layer.into_inner().expect("layer");
    let layer_digest = sha256(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest), "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"},
        }],
    })
    .to_string()
    .into_bytes();
    let mut outer = tar::Builder::new(fs::File::create(out).expect("image tar"));
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        outer.append_data(&mut h, path, data).expect("image entry");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&layer, &config, &manifest] {
        add(format!("blobs/sha256/{}", &sha256(blob)[7..]), blob);
    }
    outer.finish().expect("image tar");
}

fn config_toml(dir: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
"#,
        sock = socket.display(),
        runc = runc_binary().display(),
    )
}

static POD_SEQ: AtomicU32 = AtomicU32::new(0);

impl Containerd {
    /// Start one, or record why not (root, the containerd and ctr programs, busybox-static).
    pub fn start(test: &str) -> Option<Containerd> {
        if !require_root(test)
            || !skip::require_program(test, "containerd", "containerd")
            || !skip::require_program(test, "ctr", "containerd")
            || !skip::require_program(test, "/bin/busybox", "busybox-static")
        {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("dcea-containerd-").tempdir_in("/var/lib").expect("containerd dir");
        // A short path: unix socket names are limited to 108 bytes.
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        write(&config, config_toml(dir.path(), &socket).as_bytes());
        let log = fs::File::create(dir.path().join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .args(["--config"])
            .arg(&config)
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
        let deadline = Instant::now() + Duration::from_secs(30);
        let channel = loop {
            let attempt = rt.block_on(async {
                let ch = dcea_user::container::cri::client::channel(&socket).await.ok()?;
                let mut c = RuntimeServiceClient::new(ch.clone());
                c.version(api::VersionRequest { version: "v1".into() }).await.ok()?;
                Some(ch)
            });
            if let Some(ch) = attempt {
                break ch;
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default();
                panic!("containerd's CRI did not answer on {} within 30 s; log:\n{log}", socket.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut c =
            Containerd { child, dir, socket, rt, channel, pods: Vec::new(), uids: Vec::new(), image_id: String::new() };
        c.import_image();
        Some(c)
    }

    fn import_image(&mut self) {
        let tar = self.dir.path().join("image.tar");
        build_image_tar(&tar);
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import", "--digests", "--base-name", IMAGE.trim_end_matches(":latest")])
            .arg(&tar)
            .output()
            .expect("ctr images import");
        assert!(out.status.success(), "ctr images import: {}", String::from_utf8_lossy(&out.stderr));
        let mut images = ImageServiceClient::new(self.channel.clone());
        let status = self
            .rt
            .block_on(images.image_status(api::ImageStatusRequest {
                image: Some(api::ImageSpec { image: IMAGE.into(), ..Default::default() }),
                verbose: false,
            }))
            .expect("ImageStatus")
            .into_inner();
        self.image_id = status.image.map(|i| i.id).filter(|i| !i.is_empty()).expect("imported image listed by the CRI");
    }

    /// Run a CRI call on the harness's runtime (the channel's connection task lives there).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// RunPodSandbox as kubelet sends it (host network; hostPID/hostIPC as asked).
    pub fn run_pod(&mut self, prefix: &str, spec: PodSpec) -> Pod {
        let n = POD_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let uid = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            std::process::id(),
            n & 0xffff,
            (nanos as u64) & 0xffff_ffff_ffff
        );
        let mode = |node: bool, other: api::NamespaceMode| if node { api::NamespaceMode::Node } else { other } as i32;
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name.as_str()),
            ("io.kubernetes.pod.namespace", NAMESPACE),
            ("io.kubernetes.pod.uid", uid.as_str()),
            ("app", prefix),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace: NAMESPACE.into(),
                attempt: 0,
            }),
            log_directory: format!("{}/pods/{NAMESPACE}_{name}_{uid}", self.dir.path().display()),
            labels,
            annotations: [("kubernetes.io/config.source".to_string(), "api".to_string())].into(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: api::NamespaceMode::Node as i32,
                        pid: mode(spec.host_pid, api::NamespaceMode::Pod),
                        ipc: mode(spec.host_ipc, api::NamespaceMode::Pod),
                        ..Default::default()
                    }),
                    privileged: spec.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        fs::create_dir_all(&config.log_directory).expect("pod log dir");
        let mut c = self.client();
        let id = self
            .rt
            .block_on(c.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }))
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}; containerd log:\n{}", self.log_tail()))
            .into_inner()
            .pod_sandbox_id;
        self.uids.push(uid.clone());
        let pod = Pod { id, name, namespace: NAMESPACE.into(), uid, spec, config };
        self.pods.push(pod.clone());
        pod
    }

    /// CreateContainer + StartContainer of `sh -c script` in `pod` (see [`Containerd::run_command`]).
    pub fn run_container(&self, pod: &Pod, name: &str, script: &str) -> String {
        self.run_command(pod, name, &["/bin/sh", "-c", script])
    }

    /// CreateContainer + StartContainer of `command` in `pod`, as kubelet does (image by id,
    /// kubelet's labels, the pod's namespace options and privilege).
    pub fn run_command(&self, pod: &Pod, name: &str, command: &[&str]) -> String {
        self.run_with_mounts(pod, name, command, &[])
    }

    /// [`Containerd::run_command`] with hostPath volumes: (host path, container path, read-only).
    pub fn run_with_mounts(&self, pod: &Pod, name: &str, command: &[&str], mounts: &[(&str, &str, bool)]) -> String {
        let pid_mode = if pod.spec.host_pid { api::NamespaceMode::Node } else { api::NamespaceMode::Container };
        let labels: HashMap<String, String> = [
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", pod.name.as_str()),
            ("io.kubernetes.pod.namespace", pod.namespace.as_str()),
            ("io.kubernetes.pod.uid", pod.uid.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(api::ImageSpec {
                image: self.image_id.clone(),
                user_specified_image: IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            mounts: mounts
                .iter()
                .map(|(h, c, ro)| api::Mount {
                    host_path: h.to_string(),
                    container_path: c.to_string(),
                    readonly: *ro,
                    ..Default::default()
                })
                .collect(),
            labels,
            log_path: format!("{name}/0.log"),
            linux: Some(api::LinuxContainerConfig {
                security_context: Some(api::LinuxContainerSecurityContext {
                    privileged: pod.spec.privileged,
                    namespace_options: Some(api::NamespaceOption {
                        network: api::NamespaceMode::Node as i32,
                        pid: pid_mode as i32,
                        ipc: if pod.spec.host_ipc { api::NamespaceMode::Node } else { api::NamespaceMode::Pod } as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = self.client();
        let id = self
            .rt
            .block_on(c.create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            }))
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}; containerd log:\n{}", self.log_tail()))
            .into_inner()
            .container_id;
        self.rt
            .block_on(c.start_container(api::StartContainerRequest { container_id: id.clone() }))
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}; containerd log:\n{}", self.log_tail()));
        id
    }

    /// ExecSync (kubectl exec without a terminal): (exit code, stdout).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> (i32, String) {
        let mut c = self.client();
        let r = self
            .rt
            .block_on(c.exec_sync(api::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            }))
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
            .into_inner();
        (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// The container's state and exit code (ContainerStatus).
    pub fn status(&self, id: &str) -> api::ContainerStatus {
        let mut c = self.client();
        self.rt
            .block_on(c.container_status(api::ContainerStatusRequest { container_id: id.into(), verbose: false }))
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .into_inner()
            .status
            .expect("status")
    }

    /// Wait until the container has exited; its exit code.
    pub fn wait_exit(&self, id: &str, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(id);
            if s.state == api::ContainerState::ContainerExited as i32 {
                return s.exit_code;
            }
            assert!(Instant::now() < deadline, "container {id} still running after {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's init pid on the host (verbose ContainerStatus).
    pub fn pid(&self, id: &str) -> u32 {
        let mut c = self.client();
        let r = self
            .rt
            .block_on(c.container_status(api::ContainerStatusRequest { container_id: id.into(), verbose: true }))
            .expect("ContainerStatus")
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(r.info.get("info").expect("verbose info")).expect("json");
        info["pid"].as_u64().expect("pid") as u32
    }

    /// StopPodSandbox + RemovePodSandbox (kubelet's pod deletion).
    pub fn stop_pod(&mut self, pod: &Pod) {
        self.remove_pod(&pod.id);
        self.pods.retain(|p| p.id != pod.id);
    }

    fn remove_pod(&self, id: &str) {
        let mut c = self.client();
        let stop = self.rt.block_on(c.stop_pod_sandbox(api::StopPodSandboxRequest { pod_sandbox_id: id.into() }));
        if let Err(e) = stop {
            eprintln!("StopPodSandbox {id}: {e}");
        }
        let rm = self.rt.block_on(c.remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id.into() }));
        if let Err(e) = rm {
            eprintln!("RemovePodSandbox {id}: {e}");
        }
    }

    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Shims of this containerd (they outlive it): found by the socket in their command line.
    fn shim_pids(&self) -> Vec<i32> {
        let needle = self.socket.to_string_lossy().into_owned();
        let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(&needle))
            })
            .filter(|pid| *pid as u32 != self.child.id())
            .collect()
    }
}

/// kubelet's pod cgroup (`/kubepods/besteffort/pod<uid>`) in every hierarchy: any process
/// still in it (a pod the runtime failed to stop) is killed, then the directories removed;
/// the shared parents go only if no other pod is left in them.
fn remove_pod_cgroups(uid: &str) {
    let pod = format!("kubepods/besteffort/pod{uid}");
    let roots: Vec<PathBuf> =
        fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path()).collect();
    for root in &roots {
        for procs in [root.join(&pod)].iter().chain(
            fs::read_dir(root.join(&pod)).into_iter().flatten().flatten().map(|e| e.path()).collect::<Vec<_>>().iter(),
        ) {
            for pid in fs::read_to_string(procs.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: a process of a pod this harness created.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    for root in &roots {
        for e in fs::read_dir(root.join(&pod)).into_iter().flatten().flatten() {
            let _ = fs::remove_dir(e.path());
        }
        for dir in [pod.as_str(), "kubepods/besteffort", "kubepods"] {
            let _ = fs::remove_dir(root.join(dir));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut self.pods);
        for p in &pods {
            self.remove_pod(&p.id);
        }
        let shims = self.shim_pids();
        // SAFETY: signalling processes this harness started, by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in shims {
            // SAFETY: as above: shims whose command line names our private socket.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for uid in &self.uids {
            remove_pod_cgroups(uid);
        }
        // Mounts containerd left under its root or state (a crash mid-test).
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)).collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::io::stderr().flush();
    }
}
