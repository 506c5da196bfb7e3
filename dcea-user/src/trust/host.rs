//! The host reference: the namespaces a container process must never end up in.

use dcea_common::{NS_KINDS, NsKind, init_ns};
use serde::Serialize;

use crate::{Error, container, sys};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostNamespaces {
    /// Inode per [`NsKind`]; 0 = unknown (never matches).
    pub ns: [u32; NS_KINDS],
    /// Where the mnt/net reference came from.
    pub mnt_net_source: String,
}

impl HostNamespaces {
    /// Fixed initial inodes for pid/user/uts/ipc/cgroup/time (include/linux/proc_ns.h). mnt and
    /// net have no fixed number: they come from `reference_pid` when given, else from the agent
    /// itself when it runs on the host (bare metal, systemd), else from PID 1 (a DaemonSet with
    /// hostPID sees the node's init there).
    pub fn detect(reference_pid: Option<u32>) -> Result<HostNamespaces, Error> {
        let own_pid_ns = sys::ns_inode("self", "pid")
            .map_err(|e| Error::HostReference(format!("reading /proc/self/ns/pid: {e}")))?;
        if own_pid_ns != init_ns::PID {
            return Err(Error::HostReference(format!(
                "dcea runs in PID namespace {own_pid_ns}, not the host's ({}); run it on the host or as a DaemonSet with hostPID: true",
                init_ns::PID
            )));
        }
        let source = match reference_pid {
            Some(pid) => pid.to_string(),
            None if !container::self_is_containerised() => "self".to_string(),
            None => "1".to_string(),
        };
        let mut ns = Self::fixed();
        for kind in [NsKind::Mnt, NsKind::Net] {
            ns[kind.index()] = sys::ns_inode(&source, kind.name()).map_err(|e| {
                Error::HostReference(format!(
                    "reading /proc/{source}/ns/{}: {e} (use --host-ns-pid PID of a host process)",
                    kind.name()
                ))
            })?;
        }
        Ok(HostNamespaces { ns, mnt_net_source: format!("/proc/{source}/ns") })
    }

    /// The host's mount table: mountinfo of the process the mnt reference came from.
    pub fn mountinfo_path(&self) -> String {
        format!("{}/mountinfo", self.mnt_net_source.trim_end_matches("/ns"))
    }

    /// The fixed part of the reference, with mnt and net unknown.
    pub const fn fixed() -> [u32; NS_KINDS] {
        let mut ns = [0u32; NS_KINDS];
        ns[NsKind::Pid.index()] = init_ns::PID;
        ns[NsKind::PidForChildren.index()] = init_ns::PID;
        ns[NsKind::User.index()] = init_ns::USER;
        ns[NsKind::Uts.index()] = init_ns::UTS;
        ns[NsKind::Ipc.index()] = init_ns::IPC;
        ns[NsKind::Cgroup.index()] = init_ns::CGROUP;
        ns[NsKind::Time.index()] = init_ns::TIME;
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_inodes_match_proc_ns_h() {
        let f = HostNamespaces::fixed();
        assert_eq!(f[NsKind::Pid.index()], 4026531836);
        assert_eq!(f[NsKind::Mnt.index()], 0);
        assert_eq!(f[NsKind::Net.index()], 0);
        assert_eq!(f[NsKind::Time.index()], 0xEFFF_FFFA);
    }

    #[test]
    fn detect_reads_own_mnt_and_net_on_the_host() {
        if sys::ns_inode("self", "pid").ok() != Some(init_ns::PID) {
            eprintln!("SKIP: test process is not in the initial PID namespace");
            return;
        }
        let host = HostNamespaces::detect(Some(std::process::id())).expect("detect");
        assert_eq!(host.ns[NsKind::Mnt.index()], sys::ns_inode("self", "mnt").unwrap());
        assert_eq!(host.ns[NsKind::Net.index()], sys::ns_inode("self", "net").unwrap());
        let err = HostNamespaces::detect(Some(u32::MAX)).expect_err("no such pid");
        assert!(err.to_string().contains("--host-ns-pid"), "{err}");
    }
}
