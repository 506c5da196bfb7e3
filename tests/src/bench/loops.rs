//! The workloads the overhead benchmarks time: namespace syscalls and fork+exec on the host,
//! opens, unix connects and execs inside a Docker container.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

/// Run `work` in a forked child (namespace changes stay out of the caller) and return the
/// number it computed.
fn in_child(work: impl FnOnce() -> f64) -> f64 {
    // SAFETY: fork in a child that only makes syscalls, writes 8 bytes and exits.
    unsafe {
        let mut pipe = [0; 2];
        assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0, "pipe: {}", std::io::Error::last_os_error());
        let pid = libc::fork();
        if pid == 0 {
            let bytes = work().to_le_bytes();
            libc::write(pipe[1], bytes.as_ptr().cast(), 8);
            libc::_exit(0);
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        let mut buf = [0u8; 8];
        let got = libc::read(pipe[0], buf.as_mut_ptr().cast(), 8);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(pipe[0]);
        libc::close(pipe[1]);
        assert_eq!(got, 8, "the timing child died before reporting");
        f64::from_le_bytes(buf)
    }
}

/// Mean µs per unshare(CLONE_NEWUTS)+setns(back) pair, in a forked child.
pub fn ns_pair_us(iterations: u32) -> f64 {
    in_child(|| {
        // SAFETY: namespace syscalls with valid arguments in the child.
        unsafe {
            let orig = libc::open(c"/proc/self/ns/uts".as_ptr(), libc::O_RDONLY);
            let start = Instant::now();
            for _ in 0..iterations {
                libc::unshare(libc::CLONE_NEWUTS);
                libc::setns(orig, libc::CLONE_NEWUTS);
            }
            start.elapsed().as_secs_f64() * 1e6 / iterations as f64
        }
    })
}

/// Mean µs per setns() into the UTS namespace the task is already in (the kernel still
/// installs a new nsproxy), in a forked child.
pub fn setns_own_us(iterations: u32) -> f64 {
    in_child(|| {
        // SAFETY: namespace syscalls with valid arguments in the child.
        unsafe {
            let own = libc::open(c"/proc/self/ns/uts".as_ptr(), libc::O_RDONLY);
            let start = Instant::now();
            for _ in 0..iterations {
                libc::setns(own, libc::CLONE_NEWUTS);
            }
            start.elapsed().as_secs_f64() * 1e6 / iterations as f64
        }
    })
}

/// Mean µs per fork+exec+wait of /bin/true.
pub fn fork_exec_us(iterations: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        let st = Command::new("/bin/true").stdout(Stdio::null()).status().expect("spawn true");
        assert!(st.success());
    }
    start.elapsed().as_secs_f64() * 1e6 / iterations as f64
}

/// `dcea-test-helper args…` in a fresh busybox container (the host's libraries and `mounts`,
/// `(host dir, container dir)`, mounted read-only): the `secs=` it reported and its output;
/// None when the container could not run or the helper failed.
pub fn helper_in_container(mounts: &[(&Path, &str)], args: &[&str]) -> Option<(f64, String)> {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none"]);
    for lib in ["/usr", "/lib", "/lib64"] {
        cmd.arg("-v").arg(format!("{lib}:{lib}:ro"));
    }
    cmd.arg("-v").arg(format!("{}:/dcea-test-helper:ro", crate::helper_bin().display()));
    for (host, inside) in mounts {
        cmd.arg("-v").arg(format!("{}:{inside}:ro", host.display()));
    }
    let out = cmd.arg(crate::docker::IMAGE).arg("/dcea-test-helper").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!("bench: helper {args:?} in a container failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    let secs = text.split_whitespace().find_map(|w| w.strip_prefix("secs=")).and_then(|v| v.parse().ok())?;
    Some((secs, text))
}

/// Mean ns per open+close of `/etc/hostname` in a container.
pub fn container_open_ns(count: u64) -> Option<f64> {
    crate::docker::helper_open_loop("/etc/hostname", count).map(|(secs, _)| secs * 1e9 / count as f64)
}

/// Mean ns per socket+connect+close of the unix datagram socket `socket` (bound by the
/// caller) from a container, where the socket's directory is mounted at /run/dcea-bench.
pub fn container_connect_ns(socket: &Path, count: u64) -> Option<f64> {
    let dir = socket.parent()?;
    let name = socket.file_name()?.to_str()?;
    let inside = format!("/run/dcea-bench/{name}");
    helper_in_container(&[(dir, "/run/dcea-bench")], &["connect-loop", &inside, &count.to_string()])
        .map(|(secs, _)| secs * 1e9 / count as f64)
}

/// Mean ns per fork+exec+wait of the image's /bin/true (static busybox) in a container.
pub fn container_exec_ns(count: u64) -> Option<f64> {
    helper_in_container(&[], &["exec-loop", "/bin/true", &count.to_string()]).map(|(secs, _)| secs * 1e9 / count as f64)
}
