//! A synthetic event stream with a realistic mix for the rules benchmark and the
//! zero-allocation test: mostly benign opens and execs from containers and the host, some
//! clones, connects and mounts, and about 2% events that default rules fire on.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

use dcea_common::NS_KINDS;

use super::{EvtType, SimpleEvent};

const CID: &str = "9b3c1f5e2a7d4c8b6e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

fn base(t: EvtType, in_container: bool) -> SimpleEvent<'static> {
    let mut e = SimpleEvent::new(t);
    e.container_id = Some(if in_container { CID } else { "host" });
    if in_container {
        e.container_name = Some("web-7d9f");
        e.container_image = Some("registry.example/shop/web:2.4.1");
        e.container_image_repository = Some("registry.example/shop/web");
        e.container_runtime = Some("containerd");
        e.k8s_pod_name = Some("web-7d9f-abcde");
        e.k8s_ns_name = Some("shop");
    }
    e.name = Some("python3");
    e.exepath = Some("/usr/bin/python3.11");
    e.cmdline = Some("python3 -m gunicorn app:wsgi");
    e.ancestors = &["gunicorn", "containerd-shim"];
    e.ancestor_pids = &[812, 640];
    e.pid = Some(4242);
    e.tid = Some(4242);
    e.ppid = Some(812);
    e.uid = Some(1000);
    e.euid = Some(1000);
    e.rawtime = Some(1_795_435_801_570_634_389);
    e.ns = [Some(4026532177); NS_KINDS];
    e.ns_is_host = [Some(!in_container); NS_KINDS];
    e
}

fn open(path: &'static str, flags: u64, res: i64, in_container: bool) -> SimpleEvent<'static> {
    let mut e = base(EvtType::Openat, in_container);
    e.fd_name = Some(path);
    e.fd_typechar = Some("f");
    e.flags = Some(flags);
    e.res = res;
    e
}

fn exec(name: &'static str, parent: &'static [&'static str], in_container: bool) -> SimpleEvent<'static> {
    let mut e = base(EvtType::Execve, in_container);
    e.name = Some(name);
    e.exepath = Some("/usr/bin/env");
    e.cmdline = Some("prog --flag value");
    e.ancestors = parent;
    e.is_exe_upper_layer = Some(false);
    e
}

const O_WRONLY: u64 = 1;
const O_RDWR: u64 = 2;
const O_CREAT: u64 = libc::O_CREAT as u64;
const O_TRUNC: u64 = libc::O_TRUNC as u64;
const O_CLOEXEC: u64 = libc::O_CLOEXEC as u64;

/// (weight, event): the benign majority first, then the hits.
fn templates() -> Vec<(u32, SimpleEvent<'static>)> {
    let mut t = vec![
        (120, open("/etc/ld.so.cache", O_CLOEXEC, 3, true)),
        (80, open("/etc/resolv.conf", O_CLOEXEC, 4, true)),
        (60, open("/etc/passwd", O_CLOEXEC, 5, true)),
        (40, open("/etc/nsswitch.conf", O_CLOEXEC, 5, true)),
        (30, open("/etc/hosts", O_CLOEXEC, 5, false)),
        (30, open("/proc/sys/net/core/somaxconn", O_CLOEXEC, 6, true)),
        (25, open("/etc/ssl/certs/ca-certificates.crt", O_CLOEXEC, 7, true)),
        (20, open("/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 1, true)),
        (20, open("/dev/urandom", O_CLOEXEC, 3, true)),
        (15, open("/etc/app/config.yaml", O_RDWR | O_CREAT, 8, true)),
        (10, open("/dev/shm/sem.gunicorn", O_RDWR | O_CREAT, 9, true)),
        (10, open("/etc/shadow", O_CLOEXEC, -13, true)),
        (10, open("/run/secrets/token", O_CLOEXEC, 3, true)),
        (8, open("/sys/fs/cgroup/memory/memory.limit_in_bytes", O_CLOEXEC, 3, true)),
        (70, exec("python3", &["gunicorn", "containerd-shim"], true)),
        (40, exec("nginx", &["containerd-shim"], true)),
        (30, exec("ls", &["bash", "sshd"], false)),
        (20, exec("bash", &["sshd", "systemd"], false)),
        (15, exec("sh", &["sh", "gunicorn"], true)),
        (10, exec("git", &["bash", "sshd"], false)),
        (10, exec("curl", &["python3", "gunicorn"], true)),
    ];
    let mut connect = base(EvtType::Connect, true);
    connect.fd_name = Some("/var/run/nscd/socket");
    connect.fd_typechar = Some("u");
    t.push((30, connect));
    let mut thread = base(EvtType::Clone, true);
    thread.flags = Some(0x3d0f00);
    thread.res = 4300;
    t.push((40, thread));
    let mut fork = base(EvtType::Clone, false);
    fork.flags = Some(0x1200011);
    fork.res = 9911;
    t.push((20, fork));
    let mut tmpfs = base(EvtType::Mount, true);
    tmpfs.mount_source = Some("tmpfs");
    tmpfs.mount_target = Some("/tmp/cache");
    tmpfs.mount_fstype = Some("tmpfs");
    tmpfs.flags = Some(0);
    t.push((5, tmpfs));
    let mut uts = base(EvtType::Unshare, true);
    uts.flags = Some(0x04000000);
    t.push((3, uts));
    let mut setns = base(EvtType::Setns, false);
    setns.flags = Some(0x20000);
    t.push((3, setns));

    // ~2% hits.
    t.push((4, exec("sh", &["runc", "containerd-shim"], true)));
    t.push((3, open("/etc/shadow", O_CLOEXEC, 3, true)));
    t.push((2, open("/sys/fs/cgroup/rdma/release_agent", O_WRONLY | O_TRUNC, 3, true)));
    t.push((2, open("/proc/sys/kernel/core_pattern", O_WRONLY | O_TRUNC, 3, true)));
    let mut sock = base(EvtType::Connect, true);
    sock.fd_name = Some("/var/run/docker.sock");
    sock.fd_typechar = Some("u");
    t.push((2, sock));
    let mut disk = base(EvtType::Mount, true);
    disk.mount_source = Some("/dev/sda1");
    disk.mount_target = Some("/mnt");
    disk.mount_fstype = Some("ext4");
    disk.flags = Some(0);
    t.push((1, disk));
    let mut trace = base(EvtType::Ptrace, true);
    trace.ptrace_request = Some(16);
    trace.target_pid = Some(1);
    trace.target_container_id = Some("host");
    t.push((1, trace));
    let mut drift = exec("xpl", &["sh", "runc"], true);
    drift.is_exe_upper_layer = Some(true);
    drift.integrity = Some("not-in-image");
    t.push((2, drift));
    t
}

/// `n` events drawn from the mix with a fixed seed (the same stream every run).
pub fn stream(n: usize) -> Vec<SimpleEvent<'static>> {
    let templates = templates();
    let total: u32 = templates.iter().map(|(w, _)| w).sum();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            // xorshift64*: deterministic and cheap.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as u32 % total;
            let mut acc = 0;
            let (_, ev) = templates
                .iter()
                .find(|(w, _)| {
                    acc += w;
                    r < acc
                })
                .expect("r < total");
            let mut ev = ev.clone();
            ev.pid = Some(4000 + (i % 500) as i64);
            ev
        })
        .collect()
}

/// A global allocator that counts allocations, for the zero-allocation test and the
/// benchmark: install it with `#[global_allocator] static A: CountingAllocator =
/// CountingAllocator;` and read [`allocations`] around the code under test.
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocations (and reallocations) so far through [`CountingAllocator`].
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
