//! Pure classification of namespace transitions, shared by kernel and userspace.

use crate::{Hook, NS_KINDS, NsKind, TaskSnapshot};

/// Bit mask of namespace kinds whose inode differs between `old` and `new`.
pub fn changed_mask(old: &TaskSnapshot, new: &TaskSnapshot) -> u32 {
    (0..NS_KINDS).filter(|&k| old.ns[k] != new.ns[k]).fold(0, |m, k| m | 1 << k)
}

/// Did namespace kind `k` move from a non-host namespace into the host's? An unknown host value
/// (0) or an unknown old value never matches, so missing data cannot raise an escape.
#[inline(always)]
pub fn entered_host(old: &TaskSnapshot, new: &TaskSnapshot, host: &[u32; NS_KINDS], k: usize) -> bool {
    let h = host[k];
    h != 0 && old.ns[k] != 0 && old.ns[k] != h && new.ns[k] == h
}

/// Kinds that moved from a non-host namespace into the host's.
pub fn entered_host_mask(old: &TaskSnapshot, new: &TaskSnapshot, host: &[u32; NS_KINDS]) -> u32 {
    (0..NS_KINDS).filter(|&k| entered_host(old, new, host, k)).fold(0, |m, k| m | 1 << k)
}

/// Did any kind enter the host's namespace? The kernel's enforcement test. Branch-free: the
/// verifier walks it once instead of forking a state per comparison (the branchy form inside
/// the event writer took 5.10/6.1 verifiers past their limit).
#[inline(always)]
pub fn enters_host(old: &TaskSnapshot, new: &TaskSnapshot, host: &[u32; NS_KINDS]) -> bool {
    let mut any = 0u64;
    let mut k = 0;
    while k < NS_KINDS {
        let (h, o, n) = (host[k], old.ns[k], new.ns[k]);
        any |= nonzero(h) & nonzero(o) & nonzero(o ^ h) & (1 ^ nonzero(n ^ h));
        k += 1;
    }
    any != 0
}

/// 1 when `x` is not 0, else 0, without a branch (BPF has no conditional set).
#[inline(always)]
const fn nonzero(x: u32) -> u64 {
    (x as u64 + 0xFFFF_FFFF) >> 32
}

/// Every namespace kind.
pub const ALL_NS_MASK: u32 = (1 << NS_KINDS as u32) - 1;

/// Kinds a hook can legitimately change. Anything else that changed was done behind the
/// kernel's own namespace paths (the `switch_task_namespaces(current, &init_nsproxy)` pattern
/// of kernel exploits).
pub const fn legit_change_mask(hook: Hook) -> u32 {
    match hook {
        Hook::Setns | Hook::Unshare | Hook::Clone | Hook::Clone3 | Hook::Fork => ALL_NS_MASK,
        // execve moves the task into its time_for_children namespace (exec_task_namespaces).
        Hook::Exec => NsKind::Time.bit(),
        Hook::Mount | Hook::MoveMount | Hook::Fsmount | Hook::OpenTree | Hook::Exit | Hook::CommitCreds => 0,
        // Behaviour hooks never change namespaces.
        Hook::Open
        | Hook::Openat
        | Hook::Openat2
        | Hook::Connect
        | Hook::InitModule
        | Hook::FinitModule
        | Hook::Ptrace
        | Hook::Mknod
        | Hook::Mknodat
        | Hook::Bpf
        | Hook::Chroot
        | Hook::PivotRoot
        | Hook::Signal
        | Hook::Mmap
        | Hook::ProcessVmWritev
        | Hook::Mprotect => 0,
    }
}

/// A task belongs to a container if it runs in a non-host PID namespace or its cgroup carries
/// a container id (`--pid=host` containers share the host PID namespace).
#[inline(always)]
pub fn is_containerised(snap: &TaskSnapshot, host: &[u32; NS_KINDS], container_cgroup: bool) -> bool {
    let host_pid = host[NsKind::Pid.index()];
    container_cgroup || (host_pid != 0 && snap.ns[NsKind::Pid.index()] != 0 && snap.ns[NsKind::Pid.index()] != host_pid)
}

/// Length of a container id: Docker, containerd, CRI-O and Podman all use 64 hex digits.
pub const CONTAINER_ID_LEN: usize = 64;

/// Where runtimes put the id in a cgroup leaf name: bare (`<id>`: Docker and Kubernetes with
/// the cgroupfs driver), after `crio-`, after `docker-`/`libpod-`, after `cri-containerd-`.
pub const CONTAINER_ID_OFFSETS: [usize; 4] = [0, 5, 7, 15];

/// Does a cgroup leaf name carry a container id: exactly 64 lowercase hex digits at one of
/// [`CONTAINER_ID_OFFSETS`], preceded by `-` (or at the start) and not followed by another hex
/// digit? `conmon-` scopes fail the offset test on purpose. Runs in the kernel too, so it is
/// straight-line code: eight bytes at a time with SWAR arithmetic and no data-dependent
/// branch. A byte loop with early exits multiplied the states of the 5.10 and 6.1 verifiers
/// past their 1M-instruction limit.
#[inline(always)]
pub fn cgroup_name_has_container_id(name: &[u8]) -> bool {
    let mut any = 0u64;
    let mut o = 0;
    while o < CONTAINER_ID_OFFSETS.len() {
        any |= id_at(name, CONTAINER_ID_OFFSETS[o]);
        o += 1;
    }
    any != 0
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of the result is set where that byte of `w` is a lowercase hex
/// digit. Bytes are compared on their low seven bits (no carry can cross into the next byte)
/// and must have the high bit clear.
#[inline(always)]
const fn hex_bytes(w: u64) -> u64 {
    let low = w & !HIGH;
    let ge_0 = (low + 0x50 * ONES) & HIGH; // >= b'0'
    let le_9 = !(low + 0x46 * ONES) & HIGH; // <= b'9'
    let ge_a = (low + 0x1f * ONES) & HIGH; // >= b'a'
    let le_f = !(low + 0x19 * ONES) & HIGH; // <= b'f'
    !w & HIGH & ((ge_0 & le_9) | (ge_a & le_f))
}

/// 1 when `x` is 0, else 0, without a branch.
#[inline(always)]
const fn is_zero(x: u64) -> u64 {
    ((x | x.wrapping_neg()) >> 63) ^ 1
}

/// 1 when `c` is a lowercase hex digit, else 0.
#[inline(always)]
const fn is_lower_hex(c: u8) -> u64 {
    (hex_bytes(c as u64) >> 7) & 1
}

#[inline(always)]
fn word_at(name: &[u8], at: usize) -> u64 {
    // Byte by byte: no temporary array on the 512-byte BPF stack.
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        w |= (name[at + i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// 1 when a container id starts at `at`, else 0. `at` and the length are constants once
/// inlined into the kernel programs, so the length tests fold away there.
#[inline(always)]
fn id_at(name: &[u8], at: usize) -> u64 {
    if at + CONTAINER_ID_LEN > name.len() {
        return 0;
    }
    let mut all_hex = HIGH;
    let mut w = 0;
    while w < CONTAINER_ID_LEN / 8 {
        all_hex &= hex_bytes(word_at(name, at + w * 8));
        w += 1;
    }
    let dash_before = if at > 0 { is_zero((name[at - 1] ^ b'-') as u64) } else { 1 };
    let end = at + CONTAINER_ID_LEN;
    let not_followed_by_hex = if end < name.len() { 1 ^ is_lower_hex(name[end]) } else { 1 };
    is_zero(all_hex ^ HIGH) & dash_before & not_followed_by_hex
}

/// Two little-endian words of raw bytes (a plain 16-byte read of a name: cheaper in the kernel
/// than a string copy) as a 16-byte string copy would leave them: the bytes before the first
/// NUL, at most 15, then zeros. Straight-line SWAR, no branch.
#[inline(always)]
pub const fn words_up_to_nul(w0: u64, w1: u64) -> (u64, u64) {
    let keep0 = keep_before_nul(w0);
    // The second word counts only when the first has no NUL (keep0 is then all ones); its
    // last byte is where the copy's NUL would go.
    let keep1 = keep_before_nul(w1) & (0u64.wrapping_sub(keep0 >> 63)) & (u64::MAX >> 8);
    (w0 & keep0, w1 & keep1)
}

/// Mask of the bytes of `w` below its first zero byte (all ones without one). The classic
/// zero-byte test is exact for the lowest zero byte, which is the only one used.
#[inline(always)]
const fn keep_before_nul(w: u64) -> u64 {
    let zero = w.wrapping_sub(ONES) & !w & HIGH;
    let lowest = zero & zero.wrapping_neg();
    (lowest >> 7).wrapping_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init_ns;

    fn words(b: &[u8; 16]) -> (u64, u64) {
        (u64::from_le_bytes(b[..8].try_into().unwrap()), u64::from_le_bytes(b[8..].try_into().unwrap()))
    }

    fn padded(name: &[u8]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..name.len()].copy_from_slice(name);
        b
    }

    #[test]
    fn raw_name_words_are_cut_at_the_first_nul() {
        for name in [&b""[..], b"a", b"shadow", b"id_rsa", b"sudoers", b"pam.conf", b"authorized_keys", b"\x80\xffx"] {
            // Stale bytes after the NUL, as a dentry's inline name buffer holds them.
            let mut raw = [0xa5u8; 16];
            raw[..name.len()].copy_from_slice(name);
            raw[name.len()] = 0;
            let (w0, w1) = words(&raw);
            assert_eq!(words_up_to_nul(w0, w1), words(&padded(name)), "{:?}", String::from_utf8_lossy(name));
        }
        // A longer name keeps its first 15 bytes (what the tables hold of "notify_on_release").
        let (w0, w1) = words(b"notify_on_releas");
        assert_eq!(words_up_to_nul(w0, w1), words(&padded(b"notify_on_relea")));
        // A byte 0x01 right after a NUL (a borrow case of the zero-byte trick) is cleared.
        let (w0, w1) = words(&[b'a', 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(words_up_to_nul(w0, w1), words(&padded(b"a")));
    }

    const HOST: [u32; NS_KINDS] = [
        4026531832,
        init_ns::PID,
        init_ns::PID,
        4026531833,
        init_ns::UTS,
        init_ns::IPC,
        init_ns::USER,
        init_ns::CGROUP,
        init_ns::TIME,
    ];

    fn snap(ns: [u32; NS_KINDS]) -> TaskSnapshot {
        TaskSnapshot { ns, ..Default::default() }
    }

    fn container() -> [u32; NS_KINDS] {
        [5001, 5002, 5002, 5003, 5004, 5005, init_ns::USER, 5006, init_ns::TIME]
    }

    #[test]
    fn transition_table() {
        let mut into_host_mnt = container();
        into_host_mnt[NsKind::Mnt.index()] = HOST[NsKind::Mnt.index()];
        let mut into_host_mnt_net = into_host_mnt;
        into_host_mnt_net[NsKind::Net.index()] = HOST[NsKind::Net.index()];
        let mut pidns_children_host = container();
        pidns_children_host[NsKind::PidForChildren.index()] = init_ns::PID;
        let mut container_to_other = container();
        container_to_other[NsKind::Uts.index()] = 7777;

        struct Case {
            what: &'static str,
            old: [u32; NS_KINDS],
            new: [u32; NS_KINDS],
            changed: u32,
            entered: u32,
        }
        let cases = [
            Case {
                what: "container -> host mnt",
                old: container(),
                new: into_host_mnt,
                changed: NsKind::Mnt.bit(),
                entered: NsKind::Mnt.bit(),
            },
            Case {
                what: "container -> host mnt+net",
                old: container(),
                new: into_host_mnt_net,
                changed: NsKind::Mnt.bit() | NsKind::Net.bit(),
                entered: NsKind::Mnt.bit() | NsKind::Net.bit(),
            },
            Case {
                what: "setns pid_for_children into host",
                old: container(),
                new: pidns_children_host,
                changed: NsKind::PidForChildren.bit(),
                entered: NsKind::PidForChildren.bit(),
            },
            Case {
                what: "runc: host -> container (docker exec, nsenter into container)",
                old: HOST,
                new: container(),
                changed: container_changed_from_host(),
                entered: 0,
            },
            Case {
                what: "container -> another non-host ns",
                old: container(),
                new: container_to_other,
                changed: NsKind::Uts.bit(),
                entered: 0,
            },
            Case { what: "no change", old: container(), new: container(), changed: 0, entered: 0 },
            Case {
                what: "unknown old value never escapes",
                old: [0; NS_KINDS],
                new: HOST,
                changed: (1 << NS_KINDS) - 1,
                entered: 0,
            },
        ];
        for c in cases {
            let (o, n) = (snap(c.old), snap(c.new));
            assert_eq!(changed_mask(&o, &n), c.changed, "{}: changed", c.what);
            assert_eq!(entered_host_mask(&o, &n, &HOST), c.entered, "{}: entered", c.what);
            assert_eq!(enters_host(&o, &n, &HOST), c.entered != 0, "{}: enters", c.what);
        }
    }

    fn container_changed_from_host() -> u32 {
        changed_mask(&snap(HOST), &snap(container()))
    }

    #[test]
    fn unknown_host_reference_never_matches() {
        let mut host = HOST;
        host[NsKind::Mnt.index()] = 0;
        let mut new = container();
        new[NsKind::Mnt.index()] = 0;
        assert_eq!(entered_host_mask(&snap(container()), &snap(new), &host), 0);
    }

    #[test]
    fn legit_masks() {
        assert_eq!(legit_change_mask(Hook::Setns), (1 << NS_KINDS) - 1);
        assert_eq!(legit_change_mask(Hook::Exec), NsKind::Time.bit());
        assert_eq!(legit_change_mask(Hook::Mount), 0);
        assert_eq!(legit_change_mask(Hook::CommitCreds), 0);
    }

    #[test]
    fn containerised() {
        assert!(is_containerised(&snap(container()), &HOST, false));
        assert!(!is_containerised(&snap(HOST), &HOST, false));
        assert!(is_containerised(&snap(HOST), &HOST, true), "--pid=host container via cgroup id");
        assert!(!is_containerised(&snap([0; NS_KINDS]), &HOST, false));
    }

    #[test]
    fn container_ids_in_cgroup_names() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let yes = [
            id.to_string(),
            alloc_fmt("docker-", id, ".scope"),
            alloc_fmt("cri-containerd-", id, ".scope"),
            alloc_fmt("crio-", id, ".scope"),
            alloc_fmt("libpod-", id, ".scope"),
        ];
        for y in &yes {
            assert!(cgroup_name_has_container_id(y.as_bytes()), "{y}");
        }
        let mut nul_terminated = [0u8; 128];
        nul_terminated[..64].copy_from_slice(id.as_bytes());
        assert!(cgroup_name_has_container_id(&nul_terminated));
        let no = [
            "",
            "user.slice",
            "pod6f2a6b4c-1111-2222-3333-444455556666",
            &id[..63],
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
            "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
            "libpod-conmon-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
            "crio-conmon-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
            "x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        for n in no {
            assert!(!cgroup_name_has_container_id(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn swar_hex_test_matches_the_byte_definition() {
        for b in 0..=255u8 {
            let want = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(is_lower_hex(b) == 1, want, "{b:#x}");
            // In every lane of a word, beside neighbours that would carry or borrow.
            for lane in 0..8 {
                for fill in [0u8, b'0', b'9', b'a', b'f', b'g', 0x7f, 0x80, 0xff] {
                    let mut bytes = [fill; 8];
                    bytes[lane] = b;
                    let got = hex_bytes(u64::from_le_bytes(bytes)) >> (lane * 8 + 7) & 1 == 1;
                    assert_eq!(got, want, "{b:#x} in lane {lane} among {fill:#x}");
                }
            }
        }
        assert_eq!(is_zero(0), 1);
        assert_eq!(is_zero(1), 0);
        assert_eq!(is_zero(u64::MAX), 0);
        assert_eq!(nonzero(0), 0);
        assert_eq!(nonzero(1), 1);
        assert_eq!(nonzero(u32::MAX), 1);
    }

    extern crate std;
    use std::string::{String, ToString};
    fn alloc_fmt(a: &str, b: &str, c: &str) -> String {
        let mut s = String::from(a);
        s.push_str(b);
        s.push_str(c);
        s
    }
}
