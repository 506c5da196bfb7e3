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
    ABSENT, ARG_LEN, CGROUP_DFL, CGROUP_NAME_LEN, CGROUP_PARENT_LEN, COMM_LEN, EXE_COMPONENT_LEN, EXE_COMPONENTS,
    FILE_STEPS, NS_KINDS, NsKind, TaskSnapshot, cgroup_name_has_container_id, words_up_to_nul,
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
pub(crate) fn read<T: Copy>(base: u64, off: u32) -> T {
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
pub fn read_ptr(base: u64, off: u32) -> u64 {
    read::<u64>(base, off)
}

/// Copy a NUL-terminated kernel string; an unreadable `ptr` (0 included) leaves `dst` zeroed.
#[inline(always)]
pub fn read_str(ptr: u64, dst: &mut [u8]) {
    // SAFETY: at most dst.len() bytes are written to dst.
    unsafe {
        generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), dst.len() as u32, ptr as *const core::ffi::c_void)
    };
}

/// Copy a NUL-terminated user string; an unreadable `ptr` (0 included) leaves `dst` zeroed.
#[inline(always)]
pub fn read_user_str(ptr: u64, dst: &mut [u8]) {
    // SAFETY: at most dst.len() bytes are written to dst.
    unsafe {
        generated::bpf_probe_read_user_str(dst.as_mut_ptr().cast(), dst.len() as u32, ptr as *const core::ffi::c_void)
    };
}

/// `v`, through a stack slot LLVM must store and reload: it can no longer see what the value
/// is made of. The verifier tracks the slot exactly, so this costs two instructions and no
/// precision.
#[inline(always)]
fn unseen(v: u64) -> u64 {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&v) }
}

/// 1 when `x` is not 0, else 0, without a branch. LLVM recognises `(x | -x) >> 63` as
/// `x != 0` and, BPF having no set-on-condition instruction, emits a branch; the two constants
/// it leaves split every later state for the 5.10 and 6.1 verifiers (a loop of these in the
/// path walk cost 400,000 instructions on 6.1). Hidden behind [`unseen`], it stays arithmetic.
#[inline(always)]
pub fn nonzero(x: u64) -> u64 {
    unseen(x | x.wrapping_neg()) >> 63
}

/// `a` when `cond` (0 or 1) is 1, else `b`, without a branch (the mask is [`unseen`], or
/// LLVM turns this back into a conditional jump).
#[inline(always)]
pub fn select(cond: u64, a: u64, b: u64) -> u64 {
    let mask = unseen(cond.wrapping_neg());
    (a & mask) | (b & !mask)
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

/// What the behaviour hooks need to know about an open `struct file`. Every open of a
/// container task pays for these reads (each `bpf_probe_read_kernel` costs tens of ns), so
/// adjacent fields are read together and the rest is read lazily by the methods.
#[derive(Clone, Copy)]
pub struct FileInfo {
    pub file: u64,
    pub dentry: u64,
    pub vfsmount: u64,
    pub sb: u64,
    /// `dentry->d_parent` and `dentry->d_name.name`.
    pub parent: u64,
    pub name: u64,
    pub inode: u64,
    pub i_mode: u32,
    pub s_magic: u64,
}

/// The pointers at `base + a` and `base + b`: one read when `b == a + 8`. Both offsets are
/// load-time constants, so the verifier keeps only one of the two paths.
#[inline(always)]
fn read_ptr_pair(base: u64, a: u32, b: u32) -> (u64, u64) {
    if a != ABSENT && b == a.wrapping_add(8) {
        let w = read::<[u64; 2]>(base, a);
        (w[0], w[1])
    } else {
        (read_ptr(base, a), read_ptr(base, b))
    }
}

impl FileInfo {
    /// Branch-free on runtime values like the readers: a null `file` yields zeros throughout.
    #[inline(always)]
    pub fn read(file: u64) -> FileInfo {
        let (f_path, path_mnt, path_dentry): (u32, u32, u32) =
            (config!(offsets.file_f_path), config!(offsets.path_mnt), config!(offsets.path_dentry));
        let complete = f_path != ABSENT && path_dentry != ABSENT && path_mnt != ABSENT;
        let (vfsmount, dentry) =
            if complete { read_ptr_pair(file, f_path + path_mnt, f_path + path_dentry) } else { (0, 0) };
        // struct dentry has held d_parent, d_name (hash_len, name) and d_inode in a row since
        // 3.x: one read when this kernel's BTF agrees.
        let (d_parent, d_name, qstr_name, d_inode): (u32, u32, u32, u32) = (
            config!(offsets.dentry_d_parent),
            config!(offsets.dentry_d_name),
            config!(offsets.qstr_name),
            config!(offsets.dentry_d_inode),
        );
        let (parent, name, inode) = if d_parent != ABSENT
            && d_name == d_parent.wrapping_add(8)
            && qstr_name == 8
            && d_inode == d_name.wrapping_add(16)
        {
            let w = read::<[u64; 4]>(dentry, d_parent);
            (w[0], w[2], w[3])
        } else {
            let name_off = if d_name != ABSENT && qstr_name != ABSENT { d_name + qstr_name } else { ABSENT };
            (read_ptr(dentry, d_parent), read_ptr(dentry, name_off), read_ptr(dentry, d_inode))
        };
        let sb = read_ptr(dentry, config!(offsets.dentry_d_sb));
        FileInfo {
            file,
            dentry,
            vfsmount,
            sb,
            parent,
            name,
            inode,
            i_mode: read::<u16>(inode, config!(offsets.inode_i_mode)) as u32,
            s_magic: read::<u64>(sb, config!(offsets.sb_s_magic)),
        }
    }

    #[inline(always)]
    pub fn f_mode(&self) -> u32 {
        read::<u32>(self.file, config!(offsets.file_f_mode))
    }

    #[inline(always)]
    pub fn f_flags(&self) -> u32 {
        read::<u32>(self.file, config!(offsets.file_f_flags))
    }

    #[inline(always)]
    pub fn s_dev(&self) -> u32 {
        read::<u32>(self.sb, config!(offsets.sb_s_dev))
    }

    #[inline(always)]
    pub fn ino(&self) -> u64 {
        read::<u64>(self.inode, config!(offsets.inode_i_ino))
    }

    /// 1 when the file has no name left: no link (deleted, `O_TMPFILE`) or a dentry that was
    /// never or is no longer hashed (memfd, deleted). Needs both offsets, else 0.
    #[inline(always)]
    pub fn unlinked(&self) -> u32 {
        let (nlink_off, pprev_off): (u32, u32) = (config!(offsets.inode_i_nlink), config!(offsets.dentry_d_hash_pprev));
        if nlink_off == ABSENT || pprev_off == ABSENT || self.inode == 0 {
            return 0;
        }
        let nlink = read::<u32>(self.inode, nlink_off) as u64;
        let pprev = read_ptr(self.dentry, pprev_off);
        ((nonzero(nlink) & nonzero(pprev)) ^ 1) as u32
    }

    /// The directory holding the file, stepping to the mount point when the parent is the
    /// root of the file's mount (a container's /dev is a tmpfs mounted on `dev`).
    #[inline(always)]
    pub fn parent_dir(&self) -> u64 {
        let parent = self.parent;
        let mount_mnt: u32 = config!(offsets.mount_mnt);
        let root = read_ptr(self.vfsmount, config!(offsets.vfsmount_mnt_root));
        // `struct mount` embeds the `struct vfsmount` the file points to.
        let mount = if mount_mnt != ABSENT { self.vfsmount.wrapping_sub(mount_mnt as u64) } else { 0 };
        let mountpoint = read_ptr(mount & nonzero(self.vfsmount).wrapping_neg(), config!(offsets.mount_mnt_mountpoint));
        select(nonzero(root) & (nonzero(parent ^ root) ^ 1) & nonzero(mountpoint), mountpoint, parent)
    }
}

/// The first 16 bytes of the name at `name` (a `d_name.name`), zero-padded, as two
/// little-endian words: enough to compare against a table of names without a byte loop. A
/// plain read and SWAR masking (a string copy goes byte by byte); longer names keep their first
/// 15 bytes, as the tables do. The read may take bytes past the NUL, still inside the dentry's
/// inline name or the longer name's allocation.
#[inline(always)]
pub fn read_name_words(name: u64) -> (u64, u64) {
    let w = read::<[u64; 2]>(name, 0);
    words_up_to_nul(w[0], w[1])
}

/// `dentry->d_name.name`.
#[inline(always)]
pub fn dentry_name(dentry: u64) -> u64 {
    let (d_name, qstr_name): (u32, u32) = (config!(offsets.dentry_d_name), config!(offsets.qstr_name));
    let name_off = if d_name != ABSENT && qstr_name != ABSENT { d_name + qstr_name } else { ABSENT };
    read_ptr(dentry, name_off)
}

/// Walk from `dentry` towards the root of the task's mount namespace, leaf first, one slot per
/// step: a path component, or an empty slot where the walk crossed from a mount's root to its
/// mount point. Returns 1 when the walk was cut short (more steps remained), else 0.
///
/// Straight-line like [`Task::exe_components`]: both possible next steps (up the dentry tree,
/// or across to the parent mount) are read every time and the right one is selected with
/// masks; once the walk ends it goes on at address 0, where every read yields zeros.
#[inline(always)]
/// `cross_mounts` 1: up to the mount namespace's root, an empty slot at each mount crossing.
/// 0: up the dentry tree to the filesystem's own root, ignoring mounts (where the file lives in
/// that filesystem, whatever bind mount led to it).
pub fn path_components(
    vfsmount: u64,
    dentry: u64,
    cross_mounts: u64,
    dst: &mut [[u8; EXE_COMPONENT_LEN]; FILE_STEPS],
) -> u32 {
    let (mount_mnt, mnt_parent, mnt_mountpoint, mnt_root): (u32, u32, u32, u32) = (
        config!(offsets.mount_mnt),
        config!(offsets.mount_mnt_parent),
        config!(offsets.mount_mnt_mountpoint),
        config!(offsets.vfsmount_mnt_root),
    );
    let (d_name, qstr_name, d_parent): (u32, u32, u32) =
        (config!(offsets.dentry_d_name), config!(offsets.qstr_name), config!(offsets.dentry_d_parent));
    let complete = mount_mnt != ABSENT && d_name != ABSENT && qstr_name != ABSENT;
    let name_off = if complete { d_name + qstr_name } else { ABSENT };
    let mnt_off = if complete { mount_mnt as u64 } else { 0 };
    let mut dentry = if complete { dentry } else { 0 };
    // `struct mount` embeds the `struct vfsmount` the file points to.
    let mut mount = vfsmount.wrapping_sub(mnt_off) & nonzero(vfsmount).wrapping_neg();
    // No mount root to stop at: the walk goes up until the dentry is its own parent.
    let mut root = read_ptr(vfsmount, mnt_root) & cross_mounts.wrapping_neg();
    let mut i = 0;
    while i < FILE_STEPS {
        let alive = nonzero(dentry);
        let at_mount_root = nonzero(dentry ^ root) ^ 1;
        // Up the dentry tree: stops at a filesystem root that is not a mount's root.
        let parent = read_ptr(dentry, d_parent);
        let up = alive & (at_mount_root ^ 1) & nonzero(parent) & nonzero(parent ^ dentry);
        // Across to the parent mount: stops at the namespace's root mount (its own parent).
        let parent_mount = read_ptr(mount, mnt_parent);
        let cross = alive & at_mount_root & nonzero(parent_mount) & nonzero(parent_mount ^ mount);
        let mountpoint = read_ptr(mount, mnt_mountpoint);
        read_str(read_ptr(dentry & up.wrapping_neg(), name_off), &mut dst[i]);
        dentry = select(up, parent, select(cross, mountpoint, 0));
        root = select(cross, read_ptr(parent_mount.wrapping_add(mnt_off), mnt_root), root);
        mount = select(cross, parent_mount, mount);
        i += 1;
    }
    // Cut short when another step would still go up or across.
    let alive = nonzero(dentry);
    let at_mount_root = nonzero(dentry ^ root) ^ 1;
    let parent = read_ptr(dentry, d_parent);
    let parent_mount = read_ptr(mount, mnt_parent);
    let up = alive & (at_mount_root ^ 1) & nonzero(parent) & nonzero(parent ^ dentry);
    let cross = alive & at_mount_root & nonzero(parent_mount) & nonzero(parent_mount ^ mount);
    (up | cross) as u32
}

/// `s_dev` and `s_magic` of the superblock a dentry belongs to.
#[inline(always)]
pub fn dentry_sb_dev_magic(dentry: u64) -> (u32, u64) {
    let sb = read_ptr(dentry, config!(offsets.dentry_d_sb));
    (read::<u32>(sb, config!(offsets.sb_s_dev)), read::<u64>(sb, config!(offsets.sb_s_magic)))
}

impl Task {
    /// `task->fs->root` as (vfsmount, dentry): the root chroot and pivot_root set.
    #[inline(always)]
    pub fn fs_root(self) -> (u64, u64) {
        let (task_fs, fs_root, path_mnt, path_dentry): (u32, u32, u32, u32) = (
            config!(offsets.task_fs),
            config!(offsets.fs_struct_root),
            config!(offsets.path_mnt),
            config!(offsets.path_dentry),
        );
        if task_fs == ABSENT || fs_root == ABSENT || path_mnt == ABSENT || path_dentry == ABSENT {
            return (0, 0);
        }
        let fs = read_ptr(self.0, task_fs);
        read_ptr_pair(fs, fs_root + path_mnt, fs_root + path_dentry)
    }

    /// The `struct file *` behind descriptor `fd`, one the task just got or passed to a
    /// syscall; 0 when unreadable or out of the table.
    #[inline(always)]
    pub fn fd_file(self, fd: u32) -> u64 {
        let files = read_ptr(self.0, config!(offsets.task_files));
        let fdt = read_ptr(files, config!(offsets.files_fdt));
        let max_fds = read::<u32>(fdt, config!(offsets.fdtable_max_fds));
        let fds = read_ptr(fdt, config!(offsets.fdtable_fd));
        // fd < max_fds as 0/1 (both below 2^32, so the difference's sign bit decides).
        let in_table = ((fd as u64).wrapping_sub(max_fds as u64) >> 63) & nonzero(fds);
        read_ptr(fds.wrapping_add(fd as u64 * 8) & in_table.wrapping_neg(), 0)
    }

    /// The file behind a descriptor the task passed to a syscall (any number): 0 past the
    /// table's end.
    #[inline(always)]
    pub fn descriptor_file(self, fd: u64) -> u64 {
        let files = read_ptr(self.0, config!(offsets.task_files));
        let fdt = read_ptr(files, config!(offsets.files_fdt));
        let max_fds = read::<u32>(fdt, config!(offsets.fdtable_max_fds)) as u64;
        let fds = read_ptr(fdt, config!(offsets.fdtable_fd));
        // An int: -1 (MAP_ANONYMOUS) becomes 2^32 - 1, past any table.
        let fd = fd & 0xffff_ffff;
        let inside = nonzero(fds) & (fd.wrapping_sub(max_fds) >> 63);
        read_ptr(fds.wrapping_add(fd * 8) & inside.wrapping_neg(), 0)
    }

    /// `mm->exe_file`: the program the task runs.
    #[inline(always)]
    pub fn exe_file(self) -> u64 {
        read_ptr(read_ptr(self.0, config!(offsets.task_mm)), config!(offsets.mm_exe_file))
    }

    /// The `struct file *` of a descriptor the kernel has just installed (an open's result):
    /// within the table by construction, so the bound is not read.
    #[inline(always)]
    pub fn opened_file(self, fd: u32) -> u64 {
        let files = read_ptr(self.0, config!(offsets.task_files));
        let fdt = read_ptr(files, config!(offsets.files_fdt));
        let fds = read_ptr(fdt, config!(offsets.fdtable_fd));
        read_ptr(fds.wrapping_add(fd as u64 * 8) & nonzero(fds).wrapping_neg(), 0)
    }

    /// The argv block of the current program image (`mm->arg_start..arg_end`), NUL-separated;
    /// returns its full length (the copy holds at most `dst.len()` bytes of it).
    #[inline(always)]
    pub fn argv(self, dst: &mut [u8; ARG_LEN]) -> u64 {
        let mm = read_ptr(self.0, config!(offsets.task_mm));
        let start = read_ptr(mm, config!(offsets.mm_arg_start));
        let end = read_ptr(mm, config!(offsets.mm_arg_end));
        // end > start as 0/1: user addresses are far below 2^63.
        let len = end.wrapping_sub(start) & (start.wrapping_sub(end) >> 63).wrapping_neg();
        // Exactly the argv block (it sits at the top of the stack: a fixed-size read would
        // fault past its end); `min` with a constant gives the verifier its bound.
        let size = len.min(ARG_LEN as u64) as u32;
        dst[0] = 0;
        // SAFETY: the helper accepts any source address and writes `size` <= dst.len() bytes
        // (zeros when the read fails).
        let ret = unsafe { generated::bpf_probe_read_user(dst.as_mut_ptr().cast(), size, start as *const _) };
        len & (nonzero(ret as u64) ^ 1).wrapping_neg()
    }
}
