//! Reading `struct task_struct` and what hangs off it, at offsets resolved from BTF by the
//! agent (aya has no CO-RE for Rust programs).
//!
//! Every reader here is branch-free on runtime data. `bpf_probe_read_kernel(_str)` zero-fills
//! its destination when the read fails (address 0 included), so a chain of reads through a
//! null pointer simply yields zeros; only the `ABSENT` tests branch, and those compare
//! `.rodata` constants that the verifier resolves. Diamonds on runtime values (`if ptr == 0`)
//! leave a different constant in a register on each side; the 5.10 and 6.1 verifiers track
//! such constants precisely and could not merge the paths, which took the event writer past
//! their 1M-instruction limit.

use aya_ebpf::helpers::generated;
use dcea_common::{
    ABSENT, CGROUP_DFL, CGROUP_NAME_LEN, CGROUP_PARENT_LEN, COMM_LEN, EXE_COMPONENT_LEN, EXE_COMPONENTS, NS_KINDS,
    NsKind, TaskSnapshot, cgroup_name_has_container_id,
};

/// Read one field of the load-time configuration. `read_volatile` keeps the compiler from
/// folding the zeroed initialiser; the verifier then sees the frozen `.rodata` value.
macro_rules! config {
    ($($field:tt)+) => {
        {
            // SAFETY: reading a static.
            #[allow(unused_unsafe)]
            let value = unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::DCEA_CONFIG.$($field)+)) };
            value
        }
    };
}
pub(crate) use config;

/// Read a `T` at `base + off`: zeros for a null base, a field this kernel lacks (`ABSENT`,
/// a constant) or a fault.
#[inline(always)]
fn read<T: Copy>(base: u64, off: u32) -> T {
    // Not zero-initialised: the helper writes every byte (the data, or zeros on failure), and
    // a zeroing memset would become a BPF-to-BPF call whose frame counts against the stack.
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    let src = if off != ABSENT { base.wrapping_add(off as u64) } else { 0 };
    // SAFETY: the helper accepts any source address and writes size_of::<T>() bytes to `v`.
    unsafe {
        generated::bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            core::mem::size_of::<T>() as u32,
            src as *const core::ffi::c_void,
        );
        v.assume_init()
    }
}

#[inline(always)]
fn read_ptr(base: u64, off: u32) -> u64 {
    read::<u64>(base, off)
}

/// Copy a NUL-terminated kernel string; an unreadable `ptr` (0 included) leaves `dst` zeroed.
#[inline(always)]
fn read_str(ptr: u64, dst: &mut [u8]) {
    // SAFETY: at most dst.len() bytes are written to dst.
    unsafe {
        generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), dst.len() as u32, ptr as *const core::ffi::c_void)
    };
}

/// 1 when `x` is not 0, else 0, without a branch.
#[inline(always)]
pub fn nonzero(x: u64) -> u64 {
    (x | x.wrapping_neg()) >> 63
}

/// uid, euid and effective capabilities of a `struct cred *`.
#[inline(always)]
pub fn cred_ids(cred: u64) -> (u32, u32, u64) {
    (
        read::<u32>(cred, config!(offsets.cred_uid)),
        read::<u32>(cred, config!(offsets.cred_euid)),
        read::<u64>(cred, config!(offsets.cred_cap_effective)),
    )
}

/// Credentials and the user namespace from a `struct cred *`.
#[inline(always)]
pub fn read_cred(cred: u64, s: &mut TaskSnapshot) {
    let user_ns = read_ptr(cred, config!(offsets.cred_user_ns));
    let ns_inum: u32 = config!(offsets.ns_inum[NsKind::User.index()]);
    s.ns[NsKind::User.index()] = read::<u32>(user_ns, ns_inum);
    (s.uid, s.euid, s.cap_effective) = cred_ids(cred);
}

/// A `struct task_struct *`.
#[derive(Clone, Copy)]
pub struct Task(pub u64);

impl Task {
    #[inline(always)]
    pub fn nsproxy(self) -> u64 {
        read_ptr(self.0, config!(offsets.task_nsproxy))
    }

    /// The objective credentials (`task->real_cred`): what the task is, changed only by
    /// commit_creds. Tracked per task.
    #[inline(always)]
    pub fn cred(self) -> u64 {
        read_ptr(self.0, config!(offsets.task_real_cred))
    }

    /// The subjective credentials (`task->cred`): what the task acts as. Equal to
    /// `real_cred` except inside override_creds()/revert_creds() sections of the kernel.
    #[inline(always)]
    pub fn subjective_cred(self) -> u64 {
        read_ptr(self.0, config!(offsets.task_cred))
    }

    #[inline(always)]
    pub fn pid(self) -> u32 {
        read::<u32>(self.0, config!(offsets.task_pid))
    }

    #[inline(always)]
    pub fn tgid(self) -> u32 {
        read::<u32>(self.0, config!(offsets.task_tgid))
    }

    #[inline(always)]
    pub fn parent(self) -> Task {
        Task(read_ptr(self.0, config!(offsets.task_real_parent)))
    }

    /// The full snapshot, reading namespaces from `nsproxy` and credentials from `cred`.
    #[inline(always)]
    pub fn snapshot(self, nsproxy: u64, cred: u64) -> TaskSnapshot {
        let mut s = TaskSnapshot::default();
        self.read_nsproxy(nsproxy, &mut s);
        self.read_pid_ns(&mut s);
        read_cred(cred, &mut s);
        s
    }

    /// `prev` after the task's nsproxy and/or cred moved: the namespaces of `nsproxy` are read
    /// again, the credentials (and user namespace) only when `cred_moved`. The task's own pid
    /// namespace never changes. Fewer reads than a full snapshot on the hot path of
    /// unshare/setns; the branch leaves unknown values on both sides, so the verifier merges it.
    #[inline(always)]
    pub fn refresh(self, prev: &TaskSnapshot, nsproxy: u64, cred: u64, cred_moved: bool) -> TaskSnapshot {
        let mut s = *prev;
        self.read_nsproxy(nsproxy, &mut s);
        s.ns[NsKind::Pid.index()] = prev.ns[NsKind::Pid.index()];
        s.ns[NsKind::User.index()] = prev.ns[NsKind::User.index()];
        if cred_moved {
            read_cred(cred, &mut s);
        }
        s
    }

    /// The namespaces held by `struct nsproxy`; the pid and user slots (ABSENT there) read
    /// as 0 and are filled by the callers.
    #[inline(always)]
    fn read_nsproxy(self, nsproxy: u64, s: &mut TaskSnapshot) {
        let nsproxy_ns: [u32; NS_KINDS] = config!(offsets.nsproxy_ns);
        let ns_inum: [u32; NS_KINDS] = config!(offsets.ns_inum);
        let mut k = 0;
        while k < NS_KINDS {
            let ns = read_ptr(nsproxy, nsproxy_ns[k]);
            s.ns[k] = read::<u32>(ns, ns_inum[k]);
            k += 1;
        }
    }

    /// The task's own pid namespace: thread_pid->numbers[thread_pid->level].ns.
    #[inline(always)]
    fn read_pid_ns(self, s: &mut TaskSnapshot) {
        let pid = read_ptr(self.0, config!(offsets.task_thread_pid));
        // Masked rather than compared: the kernel caps pid namespace nesting at 32.
        let level = read::<u32>(pid, config!(offsets.pid_level)) & 63;
        let upid_size: u32 = config!(offsets.upid_size);
        let numbers: u32 = config!(offsets.pid_numbers);
        let upid_ns: u32 = config!(offsets.upid_ns);
        if numbers != ABSENT && upid_size != ABSENT && upid_ns != ABSENT {
            let pidns = read_ptr(pid, numbers + level * upid_size + upid_ns);
            let ns_inum: u32 = config!(offsets.ns_inum[NsKind::Pid.index()]);
            s.ns[NsKind::Pid.index()] = read::<u32>(pidns, ns_inum);
        }
    }

    #[inline(always)]
    pub fn comm(self, dst: &mut [u8; COMM_LEN]) {
        *dst = read::<[u8; COMM_LEN]>(self.0, config!(offsets.task_comm));
    }

    /// The kernfs node of the task's cgroup in the configured hierarchy (0 when unknown).
    #[inline(always)]
    fn cgroup_kn(self) -> u64 {
        let css_set = read_ptr(self.0, config!(offsets.task_cgroups));
        let subsys: u32 = config!(cgroup_subsys);
        let cgroup = if subsys == CGROUP_DFL {
            read_ptr(css_set, config!(offsets.css_set_dfl_cgrp))
        } else {
            let base: u32 = config!(offsets.css_set_subsys);
            if base == ABSENT || subsys >= 32 {
                return 0;
            }
            let css = read_ptr(css_set, base + subsys * 8);
            read_ptr(css, config!(offsets.css_cgroup))
        };
        read_ptr(cgroup, config!(offsets.cgroup_kn))
    }

    /// Leaf and parent names of the task's cgroup (empty when unknown). Returns 1 when the
    /// cgroup was resolved, else 0.
    #[inline(always)]
    pub fn cgroup_names(self, leaf: &mut [u8; CGROUP_NAME_LEN], parent: &mut [u8; CGROUP_PARENT_LEN]) -> u32 {
        let kn = self.cgroup_kn();
        let name: u32 = config!(offsets.kernfs_node_name);
        read_str(read_ptr(kn, name), leaf);
        let parent_kn = read_ptr(kn, config!(offsets.kernfs_node_parent));
        read_str(read_ptr(parent_kn, name), parent);
        nonzero(kn) as u32
    }

    #[inline(always)]
    pub fn cgroup_leaf_has_container_id(self, buf: &mut [u8; CGROUP_NAME_LEN]) -> bool {
        let kn = self.cgroup_kn();
        read_str(read_ptr(kn, config!(offsets.kernfs_node_name)), buf);
        cgroup_name_has_container_id(buf)
    }

    /// Walk `mm->exe_file->f_path.dentry` towards the root, leaf first. Returns 1 when the
    /// path is deeper than the walk (the components are the last ones), else 0.
    ///
    /// Straight-line: past the root the walk goes on at address 0, where every read fails
    /// and leaves an empty component.
    #[inline(always)]
    pub fn exe_components(self, dst: &mut [[u8; EXE_COMPONENT_LEN]; EXE_COMPONENTS]) -> u32 {
        let mm = read_ptr(self.0, config!(offsets.task_mm));
        let file = read_ptr(mm, config!(offsets.mm_exe_file));
        let (f_path, path_dentry): (u32, u32) = (config!(offsets.file_f_path), config!(offsets.path_dentry));
        let (d_name, qstr_name, d_parent): (u32, u32, u32) =
            (config!(offsets.dentry_d_name), config!(offsets.qstr_name), config!(offsets.dentry_d_parent));
        // Missing offsets (constants for the verifier) start the walk at address 0: all empty.
        let complete = f_path != ABSENT && path_dentry != ABSENT && d_name != ABSENT && qstr_name != ABSENT;
        let mut dentry = if complete { read_ptr(file, f_path + path_dentry) } else { 0 };
        let name_off = if complete { d_name + qstr_name } else { ABSENT };
        let mut i = 0;
        while i < EXE_COMPONENTS {
            let parent = read_ptr(dentry, d_parent);
            // The root's d_parent is itself; its name ("/") is not a component.
            let keep = (nonzero(dentry) & nonzero(parent) & nonzero(parent ^ dentry)).wrapping_neg();
            read_str(read_ptr(dentry & keep, name_off), &mut dst[i]);
            dentry = parent & keep;
            i += 1;
        }
        let parent = read_ptr(dentry, d_parent);
        (nonzero(dentry) & nonzero(parent) & nonzero(parent ^ dentry)) as u32
    }
}
