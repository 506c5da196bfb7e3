//! What a kernel event means. Pure: the same inputs always give the same verdict.

use dcea_common::{
    Event, EventKind, Hook, cgroup_name_has_container_id, changed_mask, entered_host_mask, flags, is_containerised,
};

use super::HostNamespaces;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A containerised task entered one or more host namespaces.
    Escape { entered: u32, unexplained: bool },
    /// A task's namespaces changed where no namespace syscall could have changed them.
    Tampered { changed: u32 },
    /// commit_creds raised a containerised task's uid or capabilities.
    CredEscalation { gained_root: bool, gained_caps: u64 },
    /// A task's credentials changed outside commit_creds (`how`: the `flags::CRED_*` bits):
    /// its cred pointer was replaced, the ids behind it were written, or `task->cred` no
    /// longer matches `task->real_cred` at syscall entry. Any task: host processes too.
    CredTampered { how: u32 },
    /// Legitimate work: runtimes setting up containers, `docker exec`, nsenter from the host
    /// into a container, a container making its own nested namespaces.
    Benign,
}

/// `in_container`: attribution from /proc, in addition to the cgroup name the kernel sent.
pub fn classify(ev: &Event, host: &HostNamespaces, in_container: bool) -> Verdict {
    let container = in_container || cgroup_name_has_container_id(&ev.cgroup);
    match EventKind::from_u32(ev.kind) {
        Some(EventKind::Transition) => {
            let changed = changed_mask(&ev.old, &ev.new);
            let hook = Hook::from_u32(ev.hook);
            // Seen at a syscall's entry, no change can be that syscall's doing.
            let at_entry = ev.flags & flags::AT_ENTRY != 0;
            let unexplained = at_entry
                || match hook {
                    Some(h) => changed & !dcea_common::legit_change_mask(h) != 0,
                    None => true,
                };
            let entered = entered_host_mask(&ev.old, &ev.new, &host.ns);
            let tampered_creds = ev.flags & flags::CRED_TAMPERED;
            if entered != 0 && is_containerised(&ev.old, &host.ns, container) {
                Verdict::Escape { entered, unexplained }
            } else if unexplained && changed != 0 {
                Verdict::Tampered { changed }
            } else if tampered_creds != 0 {
                Verdict::CredTampered { how: tampered_creds }
            } else {
                Verdict::Benign
            }
        }
        Some(EventKind::Creds) => {
            let gained_root = ev.old.euid != 0 && ev.new.euid == 0;
            let gained_caps = ev.new.cap_effective & !ev.old.cap_effective;
            if (gained_root || gained_caps != 0) && is_containerised(&ev.old, &host.ns, container) {
                Verdict::CredEscalation { gained_root, gained_caps }
            } else {
                Verdict::Benign
            }
        }
        Some(EventKind::Exit) | Some(EventKind::Behaviour) | None => Verdict::Benign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcea_common::{NS_KINDS, NsKind, TaskSnapshot};

    fn host() -> HostNamespaces {
        let mut ns = HostNamespaces::fixed();
        ns[NsKind::Mnt.index()] = 4026531832;
        ns[NsKind::Net.index()] = 4026531833;
        HostNamespaces { ns, mnt_net_source: "test".into() }
    }

    fn container_ns() -> [u32; NS_KINDS] {
        let mut ns = host().ns;
        for k in
            [NsKind::Mnt, NsKind::Pid, NsKind::PidForChildren, NsKind::Net, NsKind::Uts, NsKind::Ipc, NsKind::Cgroup]
        {
            ns[k.index()] = 4026532100 + k as u32;
        }
        ns
    }

    /// Stands for "the kernel sent a container's cgroup name" in the table below.
    const CONTAINER: u32 = 1 << 31;

    fn event(kind: EventKind, hook: Hook, old: [u32; NS_KINDS], new: [u32; NS_KINDS], fl: u32) -> Event {
        // SAFETY: Event is plain data; all-zero is a valid value.
        let mut ev: Event = unsafe { std::mem::zeroed() };
        ev.kind = kind as u32;
        ev.hook = hook as u32;
        ev.old = TaskSnapshot { ns: old, ..Default::default() };
        ev.new = TaskSnapshot { ns: new, ..Default::default() };
        ev.flags = fl & !CONTAINER;
        if fl & CONTAINER != 0 {
            let id = b"docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";
            ev.cgroup[..id.len()].copy_from_slice(id);
        }
        ev
    }

    fn with(mut ns: [u32; NS_KINDS], kinds: &[NsKind], from: [u32; NS_KINDS]) -> [u32; NS_KINDS] {
        for k in kinds {
            ns[k.index()] = from[k.index()];
        }
        ns
    }

    #[test]
    fn verdict_table() {
        let h = host();
        let c = container_ns();
        let mut pid_host_container = c;
        pid_host_container[NsKind::Pid.index()] = h.ns[NsKind::Pid.index()];
        pid_host_container[NsKind::PidForChildren.index()] = h.ns[NsKind::Pid.index()];
        let nested = with(c, &[NsKind::Mnt], [4026539999; NS_KINDS]);

        struct Case {
            what: &'static str,
            ev: Event,
            in_container: bool,
            want: Verdict,
        }
        let cases = [
            Case {
                what: "fake container setns into host mnt+net",
                ev: event(EventKind::Transition, Hook::Setns, c, with(c, &[NsKind::Mnt, NsKind::Net], h.ns), 0),
                in_container: false,
                want: Verdict::Escape { entered: NsKind::Mnt.bit() | NsKind::Net.bit(), unexplained: false },
            },
            Case {
                what: "--pid=host container nsenter --mount: container by cgroup id",
                ev: event(
                    EventKind::Transition,
                    Hook::Setns,
                    pid_host_container,
                    with(pid_host_container, &[NsKind::Mnt], h.ns),
                    CONTAINER,
                ),
                in_container: false,
                want: Verdict::Escape { entered: NsKind::Mnt.bit(), unexplained: false },
            },
            Case {
                what: "--pid=host container, attributed by /proc only",
                ev: event(
                    EventKind::Transition,
                    Hook::Setns,
                    pid_host_container,
                    with(pid_host_container, &[NsKind::Mnt], h.ns),
                    0,
                ),
                in_container: true,
                want: Verdict::Escape { entered: NsKind::Mnt.bit(), unexplained: false },
            },
            Case {
                what: "host process setns mnt (no container): not an escape",
                ev: event(EventKind::Transition, Hook::Setns, with(h.ns, &[NsKind::Mnt], c), h.ns, 0),
                in_container: false,
                want: Verdict::Benign,
            },
            Case {
                what: "runc init / docker exec: host -> container",
                ev: event(EventKind::Transition, Hook::Setns, h.ns, c, CONTAINER),
                in_container: true,
                want: Verdict::Benign,
            },
            Case {
                what: "runc: clone of the container init (fork hook)",
                ev: event(EventKind::Transition, Hook::Fork, h.ns, c, CONTAINER),
                in_container: true,
                want: Verdict::Benign,
            },
            Case {
                what: "container unshares a nested mount namespace",
                ev: event(EventKind::Transition, Hook::Unshare, c, nested, CONTAINER),
                in_container: true,
                want: Verdict::Benign,
            },
            Case {
                what: "exploit: container task switched to host nsproxy, seen at mount entry",
                ev: event(
                    EventKind::Transition,
                    Hook::Mount,
                    c,
                    with(c, &[NsKind::Mnt, NsKind::Net, NsKind::Uts], h.ns),
                    flags::AT_ENTRY,
                ),
                in_container: false,
                want: Verdict::Escape {
                    entered: NsKind::Mnt.bit() | NsKind::Net.bit() | NsKind::Uts.bit(),
                    unexplained: true,
                },
            },
            Case {
                what: "host task's namespaces changed behind the kernel's back",
                ev: event(EventKind::Transition, Hook::Mount, h.ns, with(h.ns, &[NsKind::Net], c), flags::AT_ENTRY),
                in_container: false,
                want: Verdict::Tampered { changed: NsKind::Net.bit() },
            },
            Case {
                what: "nsproxy swapped before a namespace syscall: seen at its entry, not its doing",
                ev: event(EventKind::Transition, Hook::Unshare, h.ns, with(h.ns, &[NsKind::Uts], c), flags::AT_ENTRY),
                in_container: false,
                want: Verdict::Tampered { changed: NsKind::Uts.bit() },
            },
            Case {
                what: "the same change at the syscall's exit is the syscall's doing",
                ev: event(EventKind::Transition, Hook::Unshare, h.ns, with(h.ns, &[NsKind::Uts], c), 0),
                in_container: false,
                want: Verdict::Benign,
            },
            Case {
                what: "exec into time_for_children is legitimate",
                ev: event(EventKind::Transition, Hook::Exec, c, with(c, &[NsKind::Time], [4026539000; NS_KINDS]), 0),
                in_container: false,
                want: Verdict::Benign,
            },
            Case {
                what: "exit events never alert",
                ev: event(EventKind::Exit, Hook::Exit, c, h.ns, 0),
                in_container: true,
                want: Verdict::Benign,
            },
        ];
        for case in cases {
            assert_eq!(classify(&case.ev, &h, case.in_container), case.want, "{}", case.what);
        }
    }

    #[test]
    fn cred_escalation_in_container_only() {
        let h = host();
        let mut ev = event(EventKind::Creds, Hook::CommitCreds, container_ns(), container_ns(), 0);
        ev.old.euid = 1000;
        ev.new.euid = 0;
        assert_eq!(classify(&ev, &h, false), Verdict::CredEscalation { gained_root: true, gained_caps: 0 });
        let mut host_ev = event(EventKind::Creds, Hook::CommitCreds, h.ns, h.ns, 0);
        host_ev.old.euid = 1000;
        host_ev.new.euid = 0;
        assert_eq!(classify(&host_ev, &h, false), Verdict::Benign, "sudo on the host");
        let mut drop = ev;
        drop.old.euid = 0;
        drop.new.euid = 1000;
        assert_eq!(classify(&drop, &h, false), Verdict::Benign, "dropping privileges");
    }

    #[test]
    fn cred_tampering_on_any_task_and_namespace_verdicts_first() {
        let h = host();
        for how in [flags::CRED_REPLACED, flags::CRED_IN_PLACE, flags::CRED_SUBJECTIVE] {
            let mut ev = event(EventKind::Transition, Hook::Unshare, h.ns, h.ns, flags::AT_ENTRY | how);
            ev.old.euid = 1000;
            assert_eq!(classify(&ev, &h, false), Verdict::CredTampered { how }, "host task, {how:#x}");
            let ev = event(EventKind::Transition, Hook::Exec, container_ns(), container_ns(), how | CONTAINER);
            assert_eq!(classify(&ev, &h, false), Verdict::CredTampered { how }, "container task, {how:#x}");
        }
        // The exploit that swaps both: the escape is the alert (it carries the cred flags).
        let c = container_ns();
        let ev = event(
            EventKind::Transition,
            Hook::Unshare,
            c,
            with(c, &[NsKind::Mnt], h.ns),
            flags::AT_ENTRY | flags::CRED_REPLACED,
        );
        assert_eq!(classify(&ev, &h, false), Verdict::Escape { entered: NsKind::Mnt.bit(), unexplained: true });
        // No flag, no change: nothing.
        let ev = event(EventKind::Transition, Hook::Unshare, c, c, flags::AT_ENTRY);
        assert_eq!(classify(&ev, &h, false), Verdict::Benign);
    }
}
