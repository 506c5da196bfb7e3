//! Linux capabilities by number, and why each one matters for an escape.

use crate::scan::report::Severity;

/// Capability names by bit number (include/uapi/linux/capability.h).
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// CHOWN (0) … AUDIT_READ (37): the capabilities every runtime of the last decade knows
/// (Linux 3.16+). PERFMON, BPF and CHECKPOINT_RESTORE (5.8, 5.9) are newer.
pub const RUNTIME_KNOWN: u64 = (1 << 38) - 1;

pub fn name(bit: u32) -> String {
    NAMES.get(bit as usize).map(|n| n.to_string()).unwrap_or_else(|| format!("CAP_{bit}"))
}

pub fn names(mask: u64) -> Vec<String> {
    (0..64).filter(|b| mask & (1u64 << b) != 0).map(name).collect()
}

/// Capabilities worth a finding, with severity and the reason. Docker's defaults that only
/// matter together with something else (DAC_OVERRIDE, MKNOD, NET_RAW) are low; the benign
/// rest (CHOWN, SETUID, KILL, …) are not reported.
pub fn risk(name: &str) -> Option<(Severity, &'static str)> {
    use Severity::*;
    Some(match name {
        "SYS_ADMIN" => (
            Critical,
            "mount filesystems (cgroup release_agent, host block devices), use namespaces and many kernel interfaces: the classic escape capability",
        ),
        "SYS_MODULE" => (Critical, "load kernel modules: arbitrary code in the host kernel"),
        "SYS_PTRACE" => (
            High,
            "trace and inject code into processes it can see; with a shared PID namespace that includes host processes",
        ),
        "DAC_READ_SEARCH" => (High, "open_by_handle_at() reads any host file by handle (the 'shocker' escape)"),
        "SYS_RAWIO" => (High, "raw I/O ports and /dev/mem-style access to host hardware and memory"),
        "BPF" => (High, "load BPF programs: kernel attack surface and reading host kernel memory with tracing helpers"),
        "MAC_ADMIN" => (High, "change or unload the AppArmor/SELinux policy that confines the container"),
        "MAC_OVERRIDE" => (High, "bypass mandatory access control (AppArmor/SELinux)"),
        "NET_ADMIN" => (
            Medium,
            "reconfigure networking and netfilter: large kernel attack surface (nf_tables CVEs), traffic interception with a shared netns",
        ),
        "PERFMON" => (Medium, "perf events: kernel information leaks and attack surface"),
        "SYSLOG" => (Medium, "read the kernel log, leaking kernel addresses that defeat KASLR"),
        "SYS_BOOT" => (Medium, "reboot the host or load a new kernel with kexec"),
        "AUDIT_CONTROL" => (Medium, "disable or rewrite host audit rules, hiding activity"),
        "CHECKPOINT_RESTORE" => (Medium, "checkpoint/restore interfaces (set PIDs, read other processes' state)"),
        "SYS_TIME" => (Low, "set the host clock (shared by all containers)"),
        "LINUX_IMMUTABLE" => (Low, "change immutable/append-only flags on files"),
        "SYS_RESOURCE" => (Low, "override resource limits and quotas"),
        "SYS_NICE" => (Low, "raise priorities of host-visible processes"),
        "IPC_LOCK" => (Low, "lock large amounts of memory"),
        "IPC_OWNER" => (Low, "bypass IPC ownership checks"),
        "NET_BROADCAST" => (Low, "broadcast and multicast"),
        "LEASE" => (Low, "take file leases"),
        "WAKE_ALARM" => (Low, "set wake alarms"),
        "BLOCK_SUSPEND" => (Low, "block system suspend"),
        "SYS_PACCT" => (Low, "configure process accounting"),
        "SYS_TTY_CONFIG" => (Low, "configure host TTYs"),
        "AUDIT_READ" => (Low, "read the audit log"),
        "DAC_OVERRIDE" => {
            (Low, "bypass file permission checks (Docker default): turns any host mount into full access")
        }
        "MKNOD" => (Low, "create device nodes (Docker default): dangerous when the device cgroup allows the device"),
        "NET_RAW" => (Low, "raw sockets (Docker default): spoofing and AF_PACKET kernel bugs such as CVE-2020-14386"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_set() {
        // Docker's default capabilities.
        let n = names(0xa80425fb);
        for c in ["CHOWN", "DAC_OVERRIDE", "NET_RAW", "MKNOD", "SETFCAP", "AUDIT_WRITE", "SYS_CHROOT", "KILL"] {
            assert!(n.contains(&c.to_string()), "{c}");
        }
        assert!(!n.contains(&"SYS_ADMIN".to_string()));
        assert!(n.iter().filter_map(|c| risk(c)).all(|(s, _)| s == Severity::Low));
        assert_eq!(name(21), "SYS_ADMIN");
        assert_eq!(name(63), "CAP_63");
    }
}
