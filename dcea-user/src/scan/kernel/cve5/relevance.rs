//! Is a kernel CVE a container-escape risk? A local judgement: a list of CVE ids known to be
//! used for escapes, and the subsystems that a container process can reach (netfilter through
//! a user namespace, overlayfs, io_uring, cgroups, namespaces, …), unless the record's CWEs
//! say it is only a crash or a leak.

use super::record::KernelRecord;
use crate::scan::kernel::rules::Prerequisite;

/// Escape CVEs beyond those in the rules file (whose ids always count).
pub const ESCAPE_CVES: &[&str] = &[
    "CVE-2021-3493",  // Ubuntu overlayfs file capabilities
    "CVE-2021-4154",  // cgroup fsconfig use-after-free
    "CVE-2022-34918", // nf_tables type confusion
    "CVE-2023-31248", // nf_tables chain id use-after-free
    "CVE-2024-26809", // nft_set_pipapo double free
];

/// Source paths (`affected[].programFiles`) of subsystems reachable from a container.
pub const ESCAPE_PATHS: &[&str] = &[
    "net/netfilter/",
    "net/ipv4/netfilter/",
    "net/ipv6/netfilter/",
    "net/bridge/netfilter/",
    "net/sched/",
    "net/packet/",
    "net/xfrm/",
    "net/ipv4/esp4",
    "net/ipv6/esp6",
    "net/unix/",
    "fs/overlayfs/",
    "fs/fuse/",
    "fs/fs_context.c",
    "fs/namespace.c",
    "fs/pipe.c",
    "fs/splice.c",
    "io_uring/",
    "fs/io_uring.c",
    "kernel/cgroup/",
    "kernel/user_namespace.c",
    "kernel/nsproxy.c",
    "kernel/pid_namespace.c",
    "kernel/watch_queue.c",
    "kernel/bpf/",
    "mm/mmap.c",
    "lib/maple_tree.c",
];

/// CWEs that describe a crash, hang or leak, not a way to run code or write memory.
const NOT_ESCAPE_CWES: &[&str] = &["CWE-400", "CWE-401", "CWE-404", "CWE-476", "CWE-667", "CWE-835", "CWE-770"];

/// Why a record counts as escape-relevant, or None.
pub fn escape_relevant(r: &KernelRecord, known: &[&str]) -> Option<String> {
    if known.contains(&r.cve.as_str()) || ESCAPE_CVES.contains(&r.cve.as_str()) {
        return Some("listed escape CVE".into());
    }
    let path = r.program_files.iter().find_map(|f| ESCAPE_PATHS.iter().find(|p| f.starts_with(**p)))?;
    if !r.cwes.is_empty() && r.cwes.iter().all(|c| NOT_ESCAPE_CWES.contains(&c.as_str())) {
        return None;
    }
    Some(format!("subsystem {}", path.trim_end_matches('/')))
}

/// Host conditions the subsystem needs, for a CVE the rules file does not know.
pub fn prerequisites(r: &KernelRecord) -> Vec<Prerequisite> {
    let has = |p: &str| r.program_files.iter().any(|f| f.starts_with(p));
    let config = |o: &str| Prerequisite::Config { option: o.into() };
    let mut out = Vec::new();
    if has("net/netfilter/nf_tables") || has("net/netfilter/nft_") {
        out.extend([Prerequisite::UnprivilegedUserns, config("CONFIG_NF_TABLES")]);
    } else if has("net/") {
        // CAP_NET_ADMIN for these comes from a user namespace.
        out.push(Prerequisite::UnprivilegedUserns);
    }
    if has("fs/overlayfs/") {
        out.extend([Prerequisite::UnprivilegedUserns, config("CONFIG_OVERLAY_FS")]);
    }
    if has("io_uring/") || has("fs/io_uring.c") {
        out.push(config("CONFIG_IO_URING"));
    }
    if has("kernel/bpf/") {
        out.push(Prerequisite::UnprivilegedBpf);
    }
    if has("kernel/watch_queue.c") {
        out.push(config("CONFIG_WATCH_QUEUE"));
    }
    let mut unique = Vec::new();
    for p in out {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    unique
}
