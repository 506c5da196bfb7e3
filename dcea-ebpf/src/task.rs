//! Reading `struct task_struct` and what hangs off it, at offsets resolved from BTF by the
//! agent (aya has no CO-RE for Rust programs).

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, generated};
use dcea_common::{
    ABSENT, ARG_LEN, CGROUP_DFL, CGROUP_NAME_LEN, CGROUP_PARENT_LEN, COMM_LEN, EXE_COMPONENT_LEN, EXE_COMPONENTS,
    NS_KINDS, NsKind, TaskSnapshot, cgroup_name_has_container_id,
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

/// Read a `T` at `base + off`; `None` for a null base, a field this kernel lacks, or a fault.
#[inline(always)]
fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == ABSENT {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.ok()
}

#[inline(always)]
pub fn read_ptr(base: u64, off: u32) -> u64 {
    read::<u64>(base, off).unwrap_or(0)
}

/// Copy a NUL-terminated kernel string; on failure `dst` holds the empty string.
#[inline(always)]
pub fn read_str(ptr: u64, dst: &mut [u8]) -> bool {
    let ok = ptr != 0 && unsafe { bpf_probe_read_kernel_str_bytes(ptr as *const u8, dst) }.is_ok();
    if !ok {
        dst[0] = 0;
    }
    ok
}

/// Credentials and the user namespace from a `struct cred *`.
#[inline(always)]
fn read_cred(cred: u64, s: &mut TaskSnapshot) {
    let user_ns = read_ptr(cred, config!(offsets.cred_user_ns));
    let ns_inum: u32 = config!(offsets.ns_inum[NsKind::User.index()]);
    s.ns[NsKind::User.index()] = read::<u32>(user_ns, ns_inum).unwrap_or(0);
    s.uid = read::<u32>(cred, config!(offsets.cred_uid)).unwrap_or(u32::MAX);
    s.euid = read::<u32>(cred, config!(offsets.cred_euid)).unwrap_or(u32::MAX);
    s.cap_effective = read::<u64>(cred, config!(offsets.cred_cap_effective)).unwrap_or(0);
}

/// A `struct task_struct *`.
#[derive(Clone, Copy)]
pub struct Task(pub u64);

impl Task {
    #[inline(always)]
    pub fn nsproxy(self) -> u64 {
        read_ptr(self.0, config!(offsets.task_nsproxy))
    }

    #[inline(always)]
    pub fn cred(self) -> u64 {
        read_ptr(self.0, config!(offsets.task_cred))
    }

    #[inline(always)]
    pub fn pid(self) -> u32 {
        read::<u32>(self.0, config!(offsets.task_pid)).unwrap_or(0)
    }

    #[inline(always)]
    pub fn tgid(self) -> u32 {
        read::<u32>(self.0, config!(offsets.task_tgid)).unwrap_or(0)
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

    /// `prev` refreshed after the task's nsproxy and/or cred pointer changed: only what hangs
    /// off a changed pointer is read again (a task's own pid namespace never changes).
    #[inline(always)]
    pub fn refresh(
        self,
        prev: &TaskSnapshot,
        nsproxy: u64,
        nsproxy_changed: bool,
        cred: u64,
        cred_changed: bool,
    ) -> TaskSnapshot {
        let mut s = *prev;
        if nsproxy_changed {
            self.read_nsproxy(nsproxy, &mut s);
            s.ns[NsKind::Pid.index()] = prev.ns[NsKind::Pid.index()];
            s.ns[NsKind::User.index()] = prev.ns[NsKind::User.index()];
        }
        if cred_changed {
            read_cred(cred, &mut s);
        }
        s
    }

    /// The namespaces held by `struct nsproxy`; the pid and user slots (ABSENT there) read
    /// as 0 and are filled by the callers. No branch on ABSENT in the loop: it would double
    /// the verifier's paths per kind.
    #[inline(always)]
    fn read_nsproxy(self, nsproxy: u64, s: &mut TaskSnapshot) {
        let nsproxy_ns: [u32; NS_KINDS] = config!(offsets.nsproxy_ns);
        let ns_inum: [u32; NS_KINDS] = config!(offsets.ns_inum);
        let mut k = 0;
        while k < NS_KINDS {
            let ns = read_ptr(nsproxy, nsproxy_ns[k]);
            s.ns[k] = read::<u32>(ns, ns_inum[k]).unwrap_or(0);
            k += 1;
        }
    }

    /// The task's own pid namespace: thread_pid->numbers[thread_pid->level].ns.
    #[inline(always)]
    fn read_pid_ns(self, s: &mut TaskSnapshot) {
        let pid = read_ptr(self.0, config!(offsets.task_thread_pid));
        if let Some(level) = read::<u32>(pid, config!(offsets.pid_level)) {
            let upid_size: u32 = config!(offsets.upid_size);
            let numbers: u32 = config!(offsets.pid_numbers);
            let upid_ns: u32 = config!(offsets.upid_ns);
            if numbers != ABSENT && upid_size != ABSENT && upid_ns != ABSENT && level < 64 {
                let pidns = read_ptr(pid, numbers + level * upid_size + upid_ns);
                let ns_inum: u32 = config!(offsets.ns_inum[NsKind::Pid.index()]);
                s.ns[NsKind::Pid.index()] = read::<u32>(pidns, ns_inum).unwrap_or(0);
            }
        }
    }

    #[inline(always)]
    pub fn comm(self, dst: &mut [u8; COMM_LEN]) {
        *dst = read::<[u8; COMM_LEN]>(self.0, config!(offsets.task_comm)).unwrap_or([0; COMM_LEN]);
    }

    /// The kernfs node of the task's cgroup in the configured hierarchy.
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

    /// Leaf and parent names of the task's cgroup; false when it could not be resolved.
    #[inline(always)]
    pub fn cgroup_names(self, leaf: &mut [u8; CGROUP_NAME_LEN], parent: &mut [u8; CGROUP_PARENT_LEN]) -> bool {
        let kn = self.cgroup_kn();
        if kn == 0 {
            leaf[0] = 0;
            parent[0] = 0;
            return false;
        }
        read_str(read_ptr(kn, config!(offsets.kernfs_node_name)), leaf);
        let parent_kn = read_ptr(kn, config!(offsets.kernfs_node_parent));
        read_str(read_ptr(parent_kn, config!(offsets.kernfs_node_name)), parent);
        true
    }

    #[inline(always)]
    pub fn cgroup_leaf_has_container_id(self, buf: &mut [u8; CGROUP_NAME_LEN]) -> bool {
        let kn = self.cgroup_kn();
        read_str(read_ptr(kn, config!(offsets.kernfs_node_name)), buf) && cgroup_name_has_container_id(buf)
    }

    /// Walk `mm->exe_file->f_path.dentry` towards the root, leaf first. Returns true when the
    /// path is deeper than the walk (the components are the last ones).
    #[inline(always)]
    pub fn exe_components(self, dst: &mut [[u8; EXE_COMPONENT_LEN]; EXE_COMPONENTS]) -> bool {
        let mut i = 0;
        while i < EXE_COMPONENTS {
            dst[i][0] = 0;
            i += 1;
        }
        let mm = read_ptr(self.0, config!(offsets.task_mm));
        let file = read_ptr(mm, config!(offsets.mm_exe_file));
        let (f_path, path_dentry): (u32, u32) = (config!(offsets.file_f_path), config!(offsets.path_dentry));
        if file == 0 || f_path == ABSENT || path_dentry == ABSENT {
            return false;
        }
        let mut dentry = read_ptr(file, f_path + path_dentry);
        let (d_name, qstr_name, d_parent): (u32, u32, u32) =
            (config!(offsets.dentry_d_name), config!(offsets.qstr_name), config!(offsets.dentry_d_parent));
        if d_name == ABSENT || qstr_name == ABSENT {
            return false;
        }
        i = 0;
        while i < EXE_COMPONENTS {
            let parent = read_ptr(dentry, d_parent);
            if dentry == 0 || parent == 0 || parent == dentry {
                return false; // reached the root of the filesystem
            }
            read_str(read_ptr(dentry, d_name + qstr_name), &mut dst[i]);
            dentry = parent;
            i += 1;
        }
        let parent = read_ptr(dentry, d_parent);
        !(dentry == 0 || parent == 0 || parent == dentry)
    }
}

/// What the behaviour hooks need to know about an open `struct file`. Every open of a
/// container task pays for these reads, so only what the filter needs is read here;
/// [`FileInfo::f_flags`] and [`FileInfo::s_dev`] are read for the few that are reported.
#[derive(Clone, Copy)]
pub struct FileInfo {
    pub file: u64,
    pub dentry: u64,
    pub vfsmount: u64,
    pub sb: u64,
    pub f_mode: u32,
    pub i_mode: u32,
    pub s_magic: u64,
}

impl FileInfo {
    #[inline(always)]
    pub fn read(file: u64) -> FileInfo {
        let f_path: u32 = config!(offsets.file_f_path);
        let dentry = read_ptr(file, f_path.wrapping_add(config!(offsets.path_dentry)));
        let vfsmount = read_ptr(file, f_path.wrapping_add(config!(offsets.path_mnt)));
        let sb = read_ptr(dentry, config!(offsets.dentry_d_sb));
        let inode = read_ptr(dentry, config!(offsets.dentry_d_inode));
        FileInfo {
            file,
            dentry,
            vfsmount,
            sb,
            f_mode: read::<u32>(file, config!(offsets.file_f_mode)).unwrap_or(0),
            i_mode: read::<u16>(inode, config!(offsets.inode_i_mode)).unwrap_or(0) as u32,
            s_magic: read::<u64>(sb, config!(offsets.sb_s_magic)).unwrap_or(0),
        }
    }

    #[inline(always)]
    pub fn f_flags(&self) -> u32 {
        read::<u32>(self.file, config!(offsets.file_f_flags)).unwrap_or(0)
    }

    #[inline(always)]
    pub fn s_dev(&self) -> u32 {
        read::<u32>(self.sb, config!(offsets.sb_s_dev)).unwrap_or(0)
    }
}

/// The first 16 bytes of a dentry's name, zero-padded, as two little-endian words: enough to
/// compare against a table of names without a byte loop.
#[inline(always)]
pub fn dentry_name_words(dentry: u64) -> (u64, u64) {
    let mut name = [0u8; 16];
    let (d_name, qstr_name): (u32, u32) = (config!(offsets.dentry_d_name), config!(offsets.qstr_name));
    read_str(read_ptr(dentry, d_name.wrapping_add(qstr_name)), &mut name);
    (
        u64::from_le_bytes([name[0], name[1], name[2], name[3], name[4], name[5], name[6], name[7]]),
        u64::from_le_bytes([name[8], name[9], name[10], name[11], name[12], name[13], name[14], name[15]]),
    )
}

#[inline(always)]
pub fn dentry_parent(dentry: u64) -> u64 {
    read_ptr(dentry, config!(offsets.dentry_d_parent))
}

/// Walk from `dentry` towards the root of the task's mount namespace, crossing mount points,
/// leaf first. Returns true when the path is deeper than `dst` holds.
#[inline(always)]
pub fn path_components(vfsmount: u64, dentry: u64, dst: &mut [[u8; EXE_COMPONENT_LEN]; EXE_COMPONENTS]) -> bool {
    let mut i = 0;
    while i < EXE_COMPONENTS {
        dst[i][0] = 0;
        i += 1;
    }
    let (mount_mnt, mnt_parent, mnt_mountpoint, mnt_root): (u32, u32, u32, u32) = (
        config!(offsets.mount_mnt),
        config!(offsets.mount_mnt_parent),
        config!(offsets.mount_mnt_mountpoint),
        config!(offsets.vfsmount_mnt_root),
    );
    let (d_name, qstr_name, d_parent): (u32, u32, u32) =
        (config!(offsets.dentry_d_name), config!(offsets.qstr_name), config!(offsets.dentry_d_parent));
    if vfsmount == 0 || mount_mnt == ABSENT || mnt_root == ABSENT || d_name == ABSENT || qstr_name == ABSENT {
        return false;
    }
    // `struct mount` embeds the `struct vfsmount` the file points to.
    let mut mount = vfsmount - mount_mnt as u64;
    let mut root = read_ptr(vfsmount, mnt_root);
    let mut dentry = dentry;
    let mut written = 0usize;
    // Mount crossings do not write a component: allow a few more steps than components.
    let mut step = 0;
    while step < EXE_COMPONENTS + 4 {
        if dentry == 0 {
            return false;
        }
        if dentry == root {
            let parent = read_ptr(mount, mnt_parent);
            if parent == 0 || parent == mount {
                return false; // the namespace's root mount
            }
            dentry = read_ptr(mount, mnt_mountpoint);
            mount = parent;
            root = read_ptr(mount + mount_mnt as u64, mnt_root);
        } else {
            let parent = read_ptr(dentry, d_parent);
            if parent == 0 || parent == dentry {
                return false; // the root of a filesystem that is not mounted here
            }
            if written >= EXE_COMPONENTS {
                return true;
            }
            read_str(read_ptr(dentry, d_name + qstr_name), &mut dst[written]);
            written += 1;
            dentry = parent;
        }
        step += 1;
    }
    true
}

impl Task {
    /// The `struct file *` behind descriptor `fd`, one the task just got or passed to a
    /// syscall (so within the table: no bounds read on the hot path); 0 when unreadable.
    #[inline(always)]
    pub fn fd_file(self, fd: u32) -> u64 {
        let files = read_ptr(self.0, config!(offsets.task_files));
        let fdt = read_ptr(files, config!(offsets.files_fdt));
        let max_fds = read::<u32>(fdt, config!(offsets.fdtable_max_fds)).unwrap_or(0);
        if fd >= max_fds {
            return 0;
        }
        let fds = read_ptr(fdt, config!(offsets.fdtable_fd));
        if fds == 0 {
            return 0;
        }
        read_ptr(fds + fd as u64 * 8, 0)
    }

    /// The argv block of the current program image (`mm->arg_start..arg_end`), NUL-separated;
    /// returns its full length (the copy holds at most `dst.len()` bytes of it).
    #[inline(always)]
    pub fn argv(self, dst: &mut [u8; ARG_LEN]) -> u64 {
        let mm = read_ptr(self.0, config!(offsets.task_mm));
        let start = read_ptr(mm, config!(offsets.mm_arg_start));
        let end = read_ptr(mm, config!(offsets.mm_arg_end));
        if start == 0 || end <= start {
            dst[0] = 0;
            return 0;
        }
        let len = end - start;
        // Exactly the argv block (it sits at the top of the stack: a fixed-size read would
        // fault past its end). The mask gives the verifier its bound.
        let size = if len >= ARG_LEN as u64 { ARG_LEN as u32 } else { len as u32 & (ARG_LEN as u32 - 1) };
        // SAFETY: bpf_probe_read_user tolerates any address; `size` <= dst.len().
        let ret = unsafe { generated::bpf_probe_read_user(dst.as_mut_ptr().cast(), size, start as *const _) };
        if ret != 0 {
            dst[0] = 0;
            return 0;
        }
        len
    }
}
