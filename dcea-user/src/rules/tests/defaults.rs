//! Every default rule: a synthetic event that must fire it, and the nearest benign behaviour
//! that must not — through the real compiled default ruleset.

use std::sync::OnceLock;

use dcea_common::NsKind;

use super::hits;
use crate::{
    output::{Format, Priority, render},
    rules::{AlertMeta, EvtType, RuleSet, SimpleEvent, names},
};

fn builtin() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| RuleSet::builtin().unwrap_or_else(|e| panic!("default rules: {e}")))
}

const CID: &str = "3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e";

/// An event from a process of a container.
fn ctr(t: EvtType) -> SimpleEvent<'static> {
    let mut e = SimpleEvent::new(t);
    e.container_id = Some(CID);
    e.container_name = Some("web");
    e.container_image = Some("docker.io/library/nginx:1.25");
    e.container_image_repository = Some("docker.io/library/nginx");
    e.name = Some("app");
    e.exepath = Some("/usr/local/bin/app");
    e.cmdline = Some("app --serve");
    e.ancestors = &["containerd-shim"];
    e.pid = Some(4242);
    e.tid = Some(4242);
    e.ppid = Some(4100);
    e.uid = Some(0);
    e.rawtime = Some(1_795_435_801_570_634_389);
    e.ns_is_host = [Some(false); dcea_common::NS_KINDS];
    e
}

/// The same event from a host process.
fn host(t: EvtType) -> SimpleEvent<'static> {
    let mut e = ctr(t);
    e.container_id = Some("host");
    e.container_name = None;
    e.container_image = None;
    e.container_image_repository = None;
    e.ns_is_host = [Some(true); dcea_common::NS_KINDS];
    e
}

fn open(path: &'static str, flags: i32) -> SimpleEvent<'static> {
    let mut e = ctr(EvtType::Openat);
    e.fd_name = Some(path);
    e.fd_typechar = Some("f");
    e.flags = Some(flags as u32 as u64);
    e.res = 3;
    e
}

fn write(path: &'static str) -> SimpleEvent<'static> {
    open(path, libc::O_WRONLY | libc::O_TRUNC)
}

fn read(path: &'static str) -> SimpleEvent<'static> {
    open(path, libc::O_RDONLY)
}

fn mount(source: &'static str, target: &'static str, fstype: &'static str, flags: u64) -> SimpleEvent<'static> {
    let mut e = ctr(EvtType::Mount);
    e.mount_source = Some(source);
    e.mount_target = Some(target);
    e.mount_fstype = Some(fstype);
    e.flags = Some(flags);
    e
}

const MS_BIND: u64 = 4096;
const MS_REC: u64 = 16384;
const MS_REMOUNT: u64 = 32;

fn exec(name: &'static str, parent: &'static [&'static str]) -> SimpleEvent<'static> {
    let mut e = ctr(EvtType::Execve);
    e.name = Some(name);
    e.exepath = Some("/bin/busybox");
    e.cmdline = Some(name);
    e.ancestors = parent;
    e.is_exe_upper_layer = Some(false);
    e
}

/// `ev` fires `rule` (and nothing else).
#[track_caller]
fn fires(rule: &str, ev: &SimpleEvent) {
    let got = hits(builtin(), ev);
    assert_eq!(got, vec![rule.to_string()], "event should fire only `{rule}`: {ev:#?}");
}

/// `ev` fires nothing.
#[track_caller]
fn silent(ev: &SimpleEvent) {
    let got = hits(builtin(), ev);
    assert!(got.is_empty(), "benign event fired {got:?}: {ev:#?}");
}

#[test]
fn default_ruleset_loads_cleanly_and_matches_the_documented_names() {
    let set = builtin();
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    let loaded: Vec<&str> = set.rules().iter().map(|r| r.name.as_str()).collect();
    let mut want = names::ALL.to_vec();
    want.sort();
    let mut got = loaded.clone();
    got.sort();
    assert_eq!(got, want);
    for rule in set.rules() {
        assert!(rule.enabled, "{}", rule.name);
        assert!(rule.desc.len() > 120, "{}: the desc says why it matters for escapes", rule.name);
        assert!(
            rule.tags.iter().any(|t| t.starts_with('T') && t[1..].chars().next().is_some_and(|c| c.is_ascii_digit())),
            "{} has a MITRE ATT&CK technique tag",
            rule.name
        );
        assert!(!rule.types.is_all() && !rule.types.is_empty(), "{} is indexed by event type", rule.name);
        assert!(rule.file.starts_with("<builtin>/") && rule.line > 0);
    }
    // Per-type index: mount rules are not evaluated for execve.
    assert!(set.rules_for(EvtType::Execve).all(|r| r.types.contains(EvtType::Execve)));
    assert_eq!(set.rules_for(EvtType::Mount).count(), 3);
}

#[test]
fn shell_in_container() {
    fires(names::SHELL_IN_CONTAINER, &exec("sh", &["runc"]));
    fires(names::SHELL_IN_CONTAINER, &exec("bash", &["python3"]));
    // A shell on the host, a script's subshell, a non-shell program.
    silent(&{
        let mut e = exec("bash", &["sshd"]);
        e.container_id = Some("host");
        e
    });
    silent(&exec("sh", &["bash"]));
    silent(&exec("ls", &["runc"]));
}

/// The default files and a local one after them.
fn with_local(local: &str) -> Vec<crate::rules::Source> {
    let mut sources: Vec<_> = crate::rules::BUILTIN_FILES
        .iter()
        .map(|(n, t)| crate::rules::Source { name: n.to_string(), text: t.to_string() })
        .collect();
    sources.push(crate::rules::Source { name: "local.yaml".into(), text: local.into() });
    sources
}

#[test]
fn shell_exception_values_from_an_override_file() {
    let local = "- rule: Shell spawned in a container\n  exceptions:\n    - name: trusted_images\n      values: [docker.io/library/nginx]\n  override:\n    exceptions: append\n";
    let set = RuleSet::from_sources(with_local(local)).unwrap();
    assert!(hits(&set, &exec("sh", &["runc"])).is_empty());
    let mut other = exec("sh", &["runc"]);
    other.container_image_repository = Some("docker.io/library/alpine");
    assert_eq!(hits(&set, &other), vec![names::SHELL_IN_CONTAINER]);
}

#[test]
fn drift_executed() {
    let mut e = exec("xpl", &["sh"]);
    e.is_exe_upper_layer = Some(true);
    e.integrity = Some("not-in-image");
    fires(names::DRIFT_EXECUTED, &e);
    // From the image, an unchanged upper copy, a volume, or unknown.
    silent(&exec("xpl", &["sh"]));
    for verdict in [Some("image"), Some("outside-image"), None] {
        let mut other = exec("xpl", &["sh"]);
        other.is_exe_upper_layer = Some(true);
        other.integrity = verdict;
        silent(&other);
    }
}

#[test]
fn integrity_verdicts_of_programs_and_mapped_files() {
    let mut modified = exec("ls", &["sh"]);
    modified.integrity = Some("modified");
    modified.integrity_sha256 = Some("aa");
    modified.integrity_image_sha256 = Some("bb");
    fires(names::MODIFIED_IMAGE_FILE, &modified);
    let mut fileless = exec("x", &["sh"]);
    fileless.integrity = Some("fileless");
    fires(names::FILELESS_CODE, &fileless);

    for how in [EvtType::Mmap, EvtType::Mprotect] {
        let mapped = |verdict: &'static str| {
            let mut e = ctr(how);
            e.fd_name = Some("/tmp/libx.so");
            e.integrity = Some(verdict);
            e
        };
        fires(names::LIBRARY_NOT_IN_IMAGE, &mapped("not-in-image"));
        fires(names::MODIFIED_IMAGE_FILE, &mapped("modified"));
        fires(names::FILELESS_CODE, &mapped("fileless"));
        silent(&mapped("image"));
        silent(&mapped("outside-image"));
    }
    // An anonymous range made executable (JIT code) has no verdict.
    silent(&ctr(EvtType::Mprotect));
}

#[test]
fn memory_writes_by_where_the_target_is() {
    let vm = |target: &'static str| {
        let mut e = ctr(EvtType::ProcessVmWritev);
        e.target_pid = Some(4242);
        e.target_container_id = Some(target);
        e
    };
    fires(names::MEMORY_WRITTEN_OUTSIDE, &vm("host"));
    fires(names::MEMORY_WRITTEN_INSIDE, &vm(CID));
    let mut mem = ctr(EvtType::Openat);
    mem.fd_name = Some("/proc/4242/mem");
    mem.flags = Some(2); // O_RDWR
    mem.fd_typechar = Some("f");
    mem.target_container_id = Some("host");
    let got = hits(builtin(), &mem);
    assert!(got.contains(&names::MEMORY_WRITTEN_OUTSIDE.to_string()), "{got:?}");
    mem.flags = Some(0);
    let got = hits(builtin(), &mem);
    assert!(!got.contains(&names::MEMORY_WRITTEN_OUTSIDE.to_string()), "a read is no write: {got:?}");
    let poke = |request: i64| {
        let mut e = ctr(EvtType::Ptrace);
        e.ptrace_request = Some(request);
        e.target_pid = Some(7);
        e.target_container_id = Some(CID);
        e
    };
    fires(names::MEMORY_WRITTEN_INSIDE, &poke(4));
    fires(names::MEMORY_WRITTEN_INSIDE, &poke(0x4205));
    silent(&poke(16)); // an attach inside the container (gdb, strace)
}

#[test]
fn credential_files() {
    fires(names::CREDENTIAL_FILE_IN_CONTAINER, &read("/etc/shadow"));
    fires(names::CREDENTIAL_FILE_IN_CONTAINER, &write("/etc/sudoers"));
    fires(names::CREDENTIAL_FILE_IN_CONTAINER, &write("/etc/sudoers.d/90-evil"));
    fires(names::CREDENTIAL_FILE_IN_CONTAINER, &open("/etc/shadow", libc::O_RDWR));
    // Reading /etc/passwd; passwd updating shadow; a failed open; a host process.
    silent(&read("/etc/passwd"));
    silent(&{
        let mut e = write("/etc/shadow");
        e.name = Some("passwd");
        e
    });
    silent(&{
        let mut e = read("/etc/shadow");
        e.res = -13;
        e
    });
    silent(&{
        let mut e = read("/etc/shadow");
        e.container_id = Some("host");
        e
    });
}

#[test]
fn ssh_keys() {
    fires(names::SSH_KEYS_IN_CONTAINER, &read("/root/.ssh/id_ed25519"));
    fires(names::SSH_KEYS_IN_CONTAINER, &write("/home/alice/.ssh/authorized_keys"));
    silent(&read("/root/.bashrc"));
    silent(&read("/home/alice/.sshrc"));
    silent(&{
        let mut e = read("/root/.ssh/id_ed25519");
        e.name = Some("ssh");
        e
    });
}

#[test]
fn file_below_dev() {
    fires(names::FILE_BELOW_DEV, &open("/dev/.hidden", libc::O_WRONLY | libc::O_CREAT));
    let mut mk = ctr(EvtType::Mknodat);
    mk.fd_name = Some("/dev/payload");
    mk.mode = Some(0o100644);
    fires(names::FILE_BELOW_DEV, &mk);
    // `echo > /dev/null` opens with O_CREAT; /dev/shm is scratch space; no O_CREAT.
    silent(&open("/dev/null", libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC));
    silent(&open("/dev/shm/cache", libc::O_RDWR | libc::O_CREAT));
    silent(&open("/dev/.hidden", libc::O_WRONLY));
    silent(&open("/devx/file", libc::O_WRONLY | libc::O_CREAT));
}

#[test]
fn device_nodes() {
    let mut blk = ctr(EvtType::Mknod);
    blk.fd_name = Some("/tmp/sda");
    blk.mode = Some(0o060660);
    blk.dev = Some(8 << 8);
    fires(names::DEVICE_NODE_CREATED, &blk);
    let mut chr = blk.clone();
    chr.mode = Some(0o020600);
    fires(names::DEVICE_NODE_CREATED, &chr);
    // mkfifo, and runc setting up /dev/null in a new container.
    let mut fifo = blk.clone();
    fifo.mode = Some(0o010644);
    silent(&fifo);
    let mut runc = chr.clone();
    runc.name = Some("runc:[2:INIT]");
    runc.ancestors = &["runc"];
    silent(&runc);
    // The same name under a parent that is not the runtime is not trusted.
    let mut fake = chr.clone();
    fake.name = Some("runc:[2:INIT]");
    fake.ancestors = &["sh"];
    fires(names::DEVICE_NODE_CREATED, &fake);
}

#[test]
fn mounts() {
    fires(names::HOST_DEVICE_MOUNTED, &mount("/dev/sda1", "/mnt", "ext4", 0));
    fires(names::HOST_DEVICE_MOUNTED, &mount("/dev/loop3", "/mnt", "xfs", 0));
    let mut failed = mount("/dev/sda1", "/mnt", "ext4", 0);
    failed.res = -1;
    fires(names::HOST_DEVICE_MOUNTED, &failed);
    fires(names::PSEUDO_FS_MOUNTED, &mount("proc", "/tmp/p", "proc", 0));
    fires(names::PSEUDO_FS_MOUNTED, &mount("cgroup", "/tmp/c", "cgroup", 0));
    fires(names::PSEUDO_FS_MOUNTED, &mount("debugfs", "/mnt", "debugfs", 0));
    fires(names::PSEUDO_FS_MOUNTED, &mount("sysfs", "/mnt", "sysfs", 0));
    fires(names::HOST_PATH_BIND_MOUNTED, &mount("/proc/1/root", "/mnt", "", MS_BIND | MS_REC));
    fires(names::HOST_PATH_BIND_MOUNTED, &mount("/host/etc", "/mnt", "", MS_BIND));
    // tmpfs in the container's own mount namespace; a bind of container paths; a remount;
    // runc mounting /proc while creating the container; a host mount of a disk.
    silent(&mount("tmpfs", "/mnt", "tmpfs", 0));
    silent(&mount("/tmp/a", "/tmp/b", "", MS_BIND));
    silent(&mount("/dev/sda1", "/mnt", "", MS_BIND));
    silent(&mount("none", "/", "", MS_REMOUNT | 1));
    let mut runc = mount("proc", "/var/lib/docker/overlay2/x/merged/proc", "proc", 0);
    runc.name = Some("runc:[2:INIT]");
    runc.ancestors = &["runc"];
    silent(&runc);
    let mut on_host = mount("/dev/sdb1", "/data", "ext4", 0);
    on_host.container_id = Some("host");
    silent(&on_host);
    // A procfs for a PID namespace the container made (`unshare -fp --mount-proc`) shows
    // only that namespace; the container's own PID namespace (is_nested false), one the
    // agent could not place (None), and every other pseudo-filesystem stay alerts.
    let mut nested_proc = mount("proc", "/proc", "proc", 0);
    nested_proc.ns_is_nested[dcea_common::NsKind::Pid.index()] = Some(true);
    silent(&nested_proc);
    let mut own_proc = nested_proc.clone();
    own_proc.ns_is_nested[dcea_common::NsKind::Pid.index()] = Some(false);
    fires(names::PSEUDO_FS_MOUNTED, &own_proc);
    let mut unplaced = nested_proc.clone();
    unplaced.ns_is_nested = [None; dcea_common::NS_KINDS];
    fires(names::PSEUDO_FS_MOUNTED, &unplaced);
    for fstype in ["sysfs", "cgroup", "debugfs", "binfmt_misc"] {
        let mut nested = mount(fstype, "/mnt", fstype, 0);
        nested.ns_is_nested[dcea_common::NsKind::Pid.index()] = Some(true);
        fires(names::PSEUDO_FS_MOUNTED, &nested);
    }
}

#[test]
fn chroot_into_host_fs() {
    let mut e = ctr(EvtType::Chroot);
    e.fd_name = Some("/mnt");
    e.fd_dev_major = Some(8);
    e.fd_dev_minor = Some(1);
    fires(names::CHROOT_HOST_FS, &e);
    let mut p = e.clone();
    p.evt_type = EvtType::PivotRoot;
    fires(names::CHROOT_HOST_FS, &p);
    // A chroot into a directory of the container's own overlay rootfs.
    let mut overlay = e.clone();
    overlay.fd_dev_major = Some(0);
    silent(&overlay);
    let mut on_host = e.clone();
    on_host.container_id = Some("host");
    silent(&on_host);
}

#[test]
fn host_file_written() {
    let host_write = |path: &'static str| {
        let mut e = write("/anything/x");
        e.fd_host_path = Some(path);
        e
    };
    for path in [
        "/etc/cron.d/job",
        "/root/.ssh/authorized_keys2",
        "/home/alice/.ssh/config",
        "/usr/local/bin/x",
        "/boot/grub/grub.cfg",
    ] {
        fires(names::HOST_FILE_WRITTEN, &host_write(path));
    }
    // Volumes, the container's own runtime files, other host paths, reads, the host itself.
    silent(&host_write("/var/lib/docker/volumes/data/_data/db"));
    silent(&host_write("/var/lib/kubelet/pods/1234/volumes/kubernetes.io~empty-dir/cache/x"));
    silent(&host_write("/srv/www/index.html"));
    silent(&host_write("/home/alice/notes"));
    let own: &'static str = Box::leak(format!("/var/lib/docker/containers/{}/hosts", &CID[..31]).into_boxed_str());
    silent(&host_write(own));
    let mut runc = host_write("/run/docker/runtime-runc/moby/x/exec.fifo");
    runc.name = Some("runc:[2:INIT]");
    runc.ancestors = &["runc"];
    silent(&runc);
    let other =
        "/var/lib/docker/containers/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/config.v2.json";
    fires(names::HOST_FILE_WRITTEN, &host_write(other));
    let mut read_only = read("/anything/x");
    read_only.fd_host_path = Some("/etc/crontab");
    silent(&read_only);
    let mut on_host = host_write("/etc/cron.d/job");
    on_host.container_id = Some("host");
    silent(&on_host);
}

#[test]
fn release_agent() {
    fires(names::RELEASE_AGENT_WRITTEN, &write("/sys/fs/cgroup/rdma/release_agent"));
    fires(names::RELEASE_AGENT_WRITTEN, &write("/tmp/cgrp/x/notify_on_release"));
    silent(&read("/sys/fs/cgroup/rdma/release_agent"));
    silent(&write("/sys/fs/cgroup/memory/cgroup.procs"));
    let mut systemd = write("/sys/fs/cgroup/systemd/release_agent");
    systemd.container_id = Some("host");
    systemd.name = Some("systemd");
    silent(&systemd);
}

#[test]
fn core_pattern() {
    fires(names::CORE_PATTERN_WRITTEN, &write("/proc/sys/kernel/core_pattern"));
    let mut host_shell = write("/proc/sys/kernel/core_pattern");
    host_shell.container_id = Some("host");
    host_shell.name = Some("bash");
    fires(names::CORE_PATTERN_WRITTEN, &host_shell);
    silent(&read("/proc/sys/kernel/core_pattern"));
    let mut sysctl = host_shell.clone();
    sysctl.name = Some("systemd-sysctl");
    silent(&sysctl);
}

#[test]
fn kernel_parameters() {
    fires(names::KERNEL_PARAMETER_WRITTEN, &write("/proc/sys/kernel/modprobe"));
    fires(names::KERNEL_PARAMETER_WRITTEN, &write("/proc/sysrq-trigger"));
    fires(names::KERNEL_PARAMETER_WRITTEN, &write("/proc/sys/vm/drop_caches"));
    // A host-network container changing net sysctls changes the host's.
    let mut host_net = write("/proc/sys/net/ipv4/ip_forward");
    host_net.ns_is_host[NsKind::Net.index()] = Some(true);
    fires(names::KERNEL_PARAMETER_WRITTEN, &host_net);
    // Its own netns / uts ns; /proc/self; reading.
    silent(&write("/proc/sys/net/ipv4/ip_forward"));
    silent(&write("/proc/sys/kernel/hostname"));
    silent(&write("/proc/self/oom_score_adj"));
    silent(&write("/proc/1234/attr/current"));
    silent(&read("/proc/sys/kernel/modprobe"));
}

#[test]
fn runtime_sockets() {
    let sock = |path: &'static str| {
        let mut e = ctr(EvtType::Connect);
        e.fd_name = Some(path);
        e.fd_typechar = Some("u");
        e
    };
    fires(names::RUNTIME_SOCKET_CONNECTED, &sock("/var/run/docker.sock"));
    fires(names::RUNTIME_SOCKET_CONNECTED, &sock("/run/containerd/containerd.sock"));
    fires(names::RUNTIME_SOCKET_CONNECTED, &sock("/tmp/mounted/docker.sock"));
    fires(names::RUNTIME_SOCKET_CONNECTED, &sock("/run/user/1000/podman/podman.sock"));
    silent(&sock("/var/run/nscd/socket"));
    silent(&sock("/tmp/app.sock"));
    let mut host_cli = sock("/var/run/docker.sock");
    host_cli.container_id = Some("host");
    silent(&host_cli);
}

#[test]
fn kernel_modules() {
    let mut e = ctr(EvtType::FinitModule);
    e.fd_name = Some("/tmp/rootkit.ko");
    fires(names::KERNEL_MODULE_LOADED, &e);
    let mut init = ctr(EvtType::InitModule);
    init.res = -1;
    fires(names::KERNEL_MODULE_LOADED, &init);
    let mut modprobe = e.clone();
    modprobe.container_id = Some("host");
    modprobe.name = Some("modprobe");
    silent(&modprobe);
}

#[test]
fn ptrace_outside() {
    let mut e = ctr(EvtType::Ptrace);
    e.ptrace_request = Some(16); // PTRACE_ATTACH
    e.target_pid = Some(1234);
    e.target_container_id = Some("host");
    fires(names::PTRACE_OUTSIDE_CONTAINER, &e);
    let mut other = e.clone();
    other.target_container_id = Some("0123456789ab");
    fires(names::PTRACE_OUTSIDE_CONTAINER, &other);
    // strace inside the same container; PTRACE_TRACEME; a host debugger.
    let mut same = e.clone();
    same.target_container_id = Some(CID);
    silent(&same);
    let mut traceme = e.clone();
    traceme.ptrace_request = Some(0);
    silent(&traceme);
    let mut host_gdb = e.clone();
    host_gdb.container_id = Some("host");
    silent(&host_gdb);
}

#[test]
fn bpf() {
    let mut e = ctr(EvtType::Bpf);
    e.bpf_cmd = Some(5); // BPF_PROG_LOAD
    e.res = 7;
    fires(names::BPF_FROM_CONTAINER, &e);
    // The agent itself on the host.
    let mut host_agent = e.clone();
    host_agent.container_id = Some("host");
    silent(&host_agent);
    // Reported at entry: an attempt counts whatever its result.
    let mut attempt = e.clone();
    attempt.res = -1;
    fires(names::BPF_FROM_CONTAINER, &attempt);
}

#[test]
fn bpf_takeover() {
    for cmd in [7, 9, 13, 14, 29, 30, 34] {
        let mut e = ctr(EvtType::Bpf);
        e.bpf_cmd = Some(cmd);
        fires(names::BPF_TAKEOVER, &e);
        let mut host_tool = e.clone();
        host_tool.container_id = Some("host");
        silent(&host_tool);
    }
}

#[test]
fn agent_signalled_traced_or_written() {
    let mut kill = ctr(EvtType::Kill);
    kill.sig = Some(19); // SIGSTOP
    kill.target_pid = Some(4242);
    kill.target_agent = Some(true);
    fires(names::AGENT_SIGNALLED, &kill);
    let mut other = kill.clone();
    other.target_agent = Some(false);
    silent(&other);
    let mut host_kill = kill.clone();
    host_kill.container_id = Some("host");
    silent(&host_kill);

    let mut trace = ctr(EvtType::Ptrace);
    trace.ptrace_request = Some(0x4206); // PTRACE_SEIZE
    trace.target_pid = Some(4242);
    trace.target_container_id = Some("host");
    trace.target_agent = Some(true);
    let mut got = hits(builtin(), &trace);
    got.sort();
    assert_eq!(got, [names::PTRACE_OUTSIDE_CONTAINER, names::AGENT_TRACED], "{trace:#?}");
    trace.target_agent = Some(false);
    assert_eq!(hits(builtin(), &trace), [names::PTRACE_OUTSIDE_CONTAINER]);

    let mut w = write("/x/trust.json");
    w.fd_host_path = Some("/var/lib/dcea/trust.json");
    w.target_agent = Some(true);
    fires(names::AGENT_FILES_WRITTEN, &w);
    let mut r = read("/x/trust.json");
    r.target_agent = Some(true);
    silent(&r);
    w.target_agent = Some(false);
    silent(&w);
}

#[test]
fn namespaces_created() {
    let mut e = ctr(EvtType::Unshare);
    e.flags = Some(0x10000000 | 0x20000); // CLONE_NEWUSER|CLONE_NEWNS
    fires(names::NAMESPACE_CREATED, &e);
    let mut clone = ctr(EvtType::Clone3);
    clone.flags = Some(0x20000);
    clone.res = 5120;
    fires(names::NAMESPACE_CREATED, &clone);
    // A UTS namespace; a thread; a refused unshare; the host.
    let mut uts = e.clone();
    uts.flags = Some(0x04000000);
    silent(&uts);
    let mut thread = ctr(EvtType::Clone);
    thread.flags = Some(0x100 | 0x200 | 0x400 | 0x800 | 0x10000);
    thread.res = 77;
    silent(&thread);
    let mut refused = e.clone();
    refused.res = -1;
    silent(&refused);
    let mut on_host = e.clone();
    on_host.container_id = Some("host");
    silent(&on_host);
    // Nested runtimes and sandboxes do this all day: a notice, never a warning.
    let rule = builtin().first_match(&e).expect("match");
    let alert = rule.alert(&e, &AlertMeta { time_ns: 1, hostname: "node-1" });
    assert_eq!(alert.priority, Priority::Notice);
}

#[test]
fn benign_everyday_events_fire_nothing() {
    silent(&read("/etc/ld.so.cache"));
    silent(&read("/etc/resolv.conf"));
    silent(&write("/etc/nginx/conf.d/default.conf"));
    silent(&exec("nginx", &["containerd-shim"]));
    let mut setns = ctr(EvtType::Setns);
    setns.flags = Some(0x20000);
    silent(&setns);
    silent(&host(EvtType::Execve));
}

#[test]
fn alert_has_falco_shape_and_rendered_output() {
    let ev = read("/etc/shadow");
    let rule = builtin().first_match(&ev).expect("match");
    let alert = rule.alert(&ev, &AlertMeta { time_ns: 1_795_435_801_570_634_389, hostname: "node-1" });
    assert_eq!(alert.priority, Priority::Warning);
    assert!(
        alert.output.starts_with("Credential file opened in a container (file=/etc/shadow flags=O_RDONLY proc=app")
    );
    assert!(alert.output.contains(&format!("container={CID} name=web image=docker.io/library/nginx:1.25")));
    assert!(!alert.output.contains('\n'), "folded output is one line");
    let line = render(&alert, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in ["time", "rule", "priority", "output", "output_fields", "source", "tags", "hostname"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["output_fields"]["fd.name"], "/etc/shadow");
    assert_eq!(v["output_fields"]["evt.arg.flags"], "O_RDONLY");
    assert_eq!(v["output_fields"]["proc.pid"], 4242);
    assert_eq!(v["output_fields"]["user.uid"], 0);
    assert_eq!(v["output_fields"]["proc.pname"], "containerd-shim");
    assert!(v["tags"].as_array().unwrap().iter().any(|t| t == "T1003.008"));
    assert_eq!(v["time"], "2026-11-23T12:10:01.570634389Z");
}

#[test]
fn per_type_specialised_index_agrees_with_the_full_conditions() {
    let set = builtin();
    let mut hits_seen = 0;
    for ev in crate::rules::synthetic::stream(20_000) {
        let indexed: Vec<&str> = set.matching(&ev).map(|r| r.name.as_str()).collect();
        let full: Vec<&str> =
            set.rules().iter().filter(|r| r.enabled && r.matches(&ev)).map(|r| r.name.as_str()).collect();
        assert_eq!(indexed, full, "{ev:#?}");
        hits_seen += indexed.len();
    }
    assert!(hits_seen > 100);
}

#[test]
fn binfmt_handler_registration() {
    let mut reg = write("/proc/sys/fs/binfmt_misc/register");
    reg.fd_fstype = Some("binfmt_misc");
    fires(names::BINFMT_REGISTERED, &reg);
    // The same name elsewhere, and a read of the handler list, are nothing.
    let mut other = write("/app/register");
    other.fd_fstype = Some("overlay");
    silent(&other);
    let mut status = read("/proc/sys/fs/binfmt_misc/status");
    status.fd_fstype = Some("binfmt_misc");
    silent(&status);
}

#[test]
fn every_critical_escape_rule_carries_an_action_and_the_kernel_decidable_ones_a_guard() {
    use crate::enforce::Action;
    for rule in builtin().rules() {
        if rule.guard.is_some() {
            assert_eq!(rule.action, Action::KillContainer, "{}", rule.name);
        }
    }
    let guarded: Vec<_> = builtin().rules().iter().filter_map(|r| r.guard).collect();
    // Every guard but the built-in namespace escape is some default rule's.
    for g in dcea_common::Guard::ALL.into_iter().filter(|g| *g != dcea_common::Guard::HostNamespace) {
        assert!(guarded.contains(&g), "no default rule names guard {}", g.name());
    }
    assert_eq!(builtin().rule(names::DRIFT_EXECUTED).unwrap().action, Action::Alert, "drift is not an escape");
}

#[test]
fn the_kernel_sends_other_unix_connects_only_for_a_rule_that_can_match_them() {
    assert!(!builtin().needs_every_unix_connect(), "the defaults match runtime sockets only");
    let local = "- rule: App socket\n  desc: d\n  condition: evt.type = connect and fd.name = /run/app.sock\n  output: o\n  priority: NOTICE\n";
    let mut sources = with_local(local);
    assert!(RuleSet::from_sources(sources.clone()).unwrap().needs_every_unix_connect());
    sources.last_mut().unwrap().text.push_str("  enabled: false\n");
    assert!(!RuleSet::from_sources(sources).unwrap().needs_every_unix_connect(), "a disabled rule needs nothing");
}
