//! Load-time configuration written by userspace into the eBPF object's read-only data.
//!
//! aya has no CO-RE relocations for Rust programs, so the agent resolves the kernel structure
//! offsets it needs from the running kernel's BTF (/sys/kernel/btf/vmlinux) and hands them to
//! the programs here. Because the global lives in `.rodata` and is frozen at load, the verifier
//! sees constants and prunes the branches for fields this kernel does not have.

use crate::NS_KINDS;

/// A field this kernel does not have (e.g. `nsproxy->time_ns` before 5.6).
pub const ABSENT: u32 = u32::MAX;

/// Byte offsets of kernel structure members, resolved from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_nsproxy: u32,
    /// `task_struct.cred` (subjective credentials).
    pub task_cred: u32,
    /// `task_struct.real_cred` (objective credentials).
    pub task_real_cred: u32,
    pub task_thread_pid: u32,
    pub task_cgroups: u32,
    pub task_mm: u32,
    pub task_comm: u32,
    pub task_pid: u32,

    /// `struct nsproxy` members, in [`crate::NsKind`] order; `ABSENT` for kinds held elsewhere
    /// (pid: thread_pid, user: cred).
    pub nsproxy_ns: [u32; NS_KINDS],
    /// Offset of `ns.inum` (the embedded `struct ns_common`'s inode number) inside each
    /// namespace struct, [`crate::NsKind`] order (pid and pid_for_children: `pid_namespace`).
    pub ns_inum: [u32; NS_KINDS],

    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_ns: u32,

    pub cred_uid: u32,
    pub cred_euid: u32,
    pub cred_cap_effective: u32,
    pub cred_user_ns: u32,

    pub css_set_dfl_cgrp: u32,
    pub css_set_subsys: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_name: u32,
    pub kernfs_node_parent: u32,

    pub mm_exe_file: u32,
    pub file_f_path: u32,
    pub path_dentry: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
    pub dentry_d_parent: u32,

    // Behaviour hooks: the file behind a descriptor, its mount, superblock and inode.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub file_f_flags: u32,
    pub file_f_mode: u32,
    pub path_mnt: u32,
    pub dentry_d_sb: u32,
    pub dentry_d_inode: u32,
    pub inode_i_mode: u32,
    pub inode_i_ino: u32,
    pub inode_i_nlink: u32,
    /// `dentry->d_hash.pprev`: null while the dentry is unhashed (deleted, memfd, O_TMPFILE).
    pub dentry_d_hash_pprev: u32,
    pub sb_s_magic: u32,
    pub sb_s_dev: u32,
    /// `struct mount`: the embedded `struct vfsmount` and the links to the parent mount.
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// chroot/pivot_root: `task->fs` and the `struct path root` in it.
    pub task_fs: u32,
    pub fs_struct_root: u32,
    /// `FMODE_CREATED` on this kernel (a macro, so not in BTF: set from the kernel version).
    pub fmode_created: u32,
}

impl Offsets {
    pub const fn absent() -> Offsets {
        Offsets {
            task_tgid: ABSENT,
            task_real_parent: ABSENT,
            task_nsproxy: ABSENT,
            task_cred: ABSENT,
            task_real_cred: ABSENT,
            task_thread_pid: ABSENT,
            task_cgroups: ABSENT,
            task_mm: ABSENT,
            task_comm: ABSENT,
            task_pid: ABSENT,
            nsproxy_ns: [ABSENT; NS_KINDS],
            ns_inum: [ABSENT; NS_KINDS],
            pid_level: ABSENT,
            pid_numbers: ABSENT,
            upid_size: ABSENT,
            upid_ns: ABSENT,
            cred_uid: ABSENT,
            cred_euid: ABSENT,
            cred_cap_effective: ABSENT,
            cred_user_ns: ABSENT,
            css_set_dfl_cgrp: ABSENT,
            css_set_subsys: ABSENT,
            css_cgroup: ABSENT,
            cgroup_kn: ABSENT,
            kernfs_node_name: ABSENT,
            kernfs_node_parent: ABSENT,
            mm_exe_file: ABSENT,
            file_f_path: ABSENT,
            path_dentry: ABSENT,
            dentry_d_name: ABSENT,
            qstr_name: ABSENT,
            dentry_d_parent: ABSENT,
            task_files: ABSENT,
            files_fdt: ABSENT,
            fdtable_fd: ABSENT,
            fdtable_max_fds: ABSENT,
            file_f_flags: ABSENT,
            file_f_mode: ABSENT,
            path_mnt: ABSENT,
            dentry_d_sb: ABSENT,
            dentry_d_inode: ABSENT,
            inode_i_mode: ABSENT,
            inode_i_ino: ABSENT,
            inode_i_nlink: ABSENT,
            dentry_d_hash_pprev: ABSENT,
            sb_s_magic: ABSENT,
            sb_s_dev: ABSENT,
            mount_mnt: ABSENT,
            mount_mnt_parent: ABSENT,
            mount_mnt_mountpoint: ABSENT,
            vfsmount_mnt_root: ABSENT,
            mm_arg_start: ABSENT,
            mm_arg_end: ABSENT,
            task_fs: ABSENT,
            fs_struct_root: ABSENT,
            fmode_created: 0,
        }
    }
}

/// Use the cgroup v2 default hierarchy (`css_set->dfl_cgrp`) rather than a v1 controller.
pub const CGROUP_DFL: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelConfig {
    pub offsets: Offsets,
    /// Host namespace inode numbers, [`crate::NsKind`] order; 0 = unknown (never matches).
    pub host_ns: [u32; NS_KINDS],
    /// The agent's own thread-group id: its tasks are skipped.
    pub agent_tgid: u32,
    /// Non-zero: SIGKILL a containerised task that enters a host namespace.
    pub enforce: u32,
    /// Index into `css_set->subsys[]` used for container attribution, or [`CGROUP_DFL`].
    pub cgroup_subsys: u32,
}

impl KernelConfig {
    pub const fn zeroed() -> KernelConfig {
        KernelConfig {
            offsets: Offsets::absent(),
            host_ns: [0; NS_KINDS],
            agent_tgid: 0,
            enforce: 0,
            cgroup_subsys: CGROUP_DFL,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: repr(C) structs of u32s only.
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for KernelConfig {}
}
