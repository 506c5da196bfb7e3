//! Kernel structure offsets from the running kernel's BTF, handed to the eBPF programs at load.

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use dcea_common::{ABSENT, NS_KINDS, NsKind, Offsets};

use crate::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's BTF plus lookups by struct and member name.
pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn from_file(path: &Path) -> Result<KernelBtf, Error> {
        if !path.exists() {
            return Err(Error::NoBtf(path.to_path_buf()));
        }
        let btf = Btf::from_file(path).map_err(|e| Error::Btf(format!("{}: {e}", path.display())))?;
        Ok(KernelBtf { btf })
    }

    fn structure(&self, name: &str) -> Option<btf_rs::Struct> {
        self.btf.resolve_types_by_name(name).ok()?.into_iter().find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
    }

    /// Follow typedefs and qualifiers to the underlying type.
    fn strip(&self, mut t: Type) -> Option<Type> {
        for _ in 0..16 {
            match t {
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                    t = self.btf.resolve_chained_type(t.as_btf_type()?).ok()?;
                }
                other => return Some(other),
            }
        }
        None
    }

    /// Byte offset of `member` in `st`, descending into anonymous structs and unions.
    fn member_in(&self, st: &btf_rs::Struct, member: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in &st.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            if name == member {
                return m.bitfield_size().is_none_or(|s| s == 0).then_some(m.bit_offset() / 8);
            }
            if name.is_empty() {
                let inner = self.btf.resolve_type_by_id(m.get_type_id()?).ok().and_then(|t| self.strip(t));
                if let Some(Type::Struct(inner) | Type::Union(inner)) = inner
                    && let Some(off) = self.member_in(&inner, member, depth + 1)
                {
                    return Some(m.bit_offset() / 8 + off);
                }
            }
        }
        None
    }

    /// Offset of the first member of `strukt` found among `names` (fields renamed across
    /// kernel versions), or `None`.
    pub fn offset(&self, strukt: &str, names: &[&str]) -> Option<u32> {
        let st = self.structure(strukt)?;
        names.iter().find_map(|n| self.member_in(&st, n, 0))
    }

    pub fn size_of(&self, strukt: &str) -> Option<u32> {
        self.structure(strukt).map(|s| s.size() as u32)
    }

    /// Value of an enumerator, e.g. `pids_cgrp_id` of `enum cgroup_subsys_id`.
    pub fn enum_value(&self, enumeration: &str, member: &str) -> Option<u32> {
        self.btf.resolve_types_by_name(enumeration).ok()?.into_iter().find_map(|t| match t {
            Type::Enum(e) => {
                e.members.iter().find(|m| self.btf.resolve_name(*m).is_ok_and(|n| n == member)).map(|m| m.val())
            }
            _ => None,
        })
    }

    /// Does the kernel have a function of this name (fentry/kprobe target)?
    pub fn has_function(&self, name: &str) -> bool {
        self.btf.resolve_types_by_name(name).is_ok_and(|ts| ts.iter().any(|t| matches!(t, Type::Func(_))))
    }
}

/// Which namespace struct and `nsproxy` member hold each kind.
const NS_LAYOUT: [(NsKind, &str, Option<&str>); NS_KINDS] = [
    (NsKind::Mnt, "mnt_namespace", Some("mnt_ns")),
    (NsKind::Pid, "pid_namespace", None),
    (NsKind::PidForChildren, "pid_namespace", Some("pid_ns_for_children")),
    (NsKind::Net, "net", Some("net_ns")),
    (NsKind::Uts, "uts_namespace", Some("uts_ns")),
    (NsKind::Ipc, "ipc_namespace", Some("ipc_ns")),
    (NsKind::User, "user_namespace", None),
    (NsKind::Cgroup, "cgroup_namespace", Some("cgroup_ns")),
    (NsKind::Time, "time_namespace", Some("time_ns")),
];

/// Resolve every offset the programs use. Fields that the programs cannot work without are
/// an error; optional ones (time namespaces on old kernels, exe path) stay `ABSENT`.
pub fn resolve_offsets(btf: &KernelBtf) -> Result<Offsets, Error> {
    let need = |strukt: &str, names: &[&str]| -> Result<u32, Error> {
        btf.offset(strukt, names)
            .ok_or_else(|| Error::Btf(format!("struct {strukt} has no member {}", names.join("/"))))
    };
    let opt = |strukt: &str, names: &[&str]| btf.offset(strukt, names).unwrap_or(ABSENT);

    let mut o = Offsets::absent();
    o.task_pid = need("task_struct", &["pid"])?;
    o.task_tgid = need("task_struct", &["tgid"])?;
    o.task_real_parent = need("task_struct", &["real_parent"])?;
    o.task_nsproxy = need("task_struct", &["nsproxy"])?;
    o.task_cred = need("task_struct", &["cred"])?;
    o.task_real_cred = need("task_struct", &["real_cred"])?;
    o.task_thread_pid = need("task_struct", &["thread_pid"])?;
    o.task_cgroups = opt("task_struct", &["cgroups"]);
    o.task_mm = opt("task_struct", &["mm"]);
    o.task_comm = need("task_struct", &["comm"])?;

    let ns_common_inum = need("ns_common", &["inum"])?;
    for (kind, strukt, member) in NS_LAYOUT {
        let i = kind.index();
        if let Some(member) = member {
            o.nsproxy_ns[i] = opt("nsproxy", &[member]);
        }
        o.ns_inum[i] = match btf.offset(strukt, &["ns"]) {
            Some(ns) => ns + ns_common_inum,
            None => ABSENT,
        };
        let required = !matches!(kind, NsKind::Time);
        if required && (o.ns_inum[i] == ABSENT || (member.is_some() && o.nsproxy_ns[i] == ABSENT)) {
            return Err(Error::Btf(format!("cannot locate the {} namespace inode", kind.name())));
        }
    }

    o.pid_level = need("pid", &["level"])?;
    o.pid_numbers = need("pid", &["numbers"])?;
    o.upid_size = btf.size_of("upid").ok_or_else(|| Error::Btf("struct upid missing".into()))?;
    o.upid_ns = need("upid", &["ns"])?;

    o.cred_uid = need("cred", &["uid"])?;
    o.cred_euid = need("cred", &["euid"])?;
    o.cred_cap_effective = need("cred", &["cap_effective"])?;
    o.cred_user_ns = need("cred", &["user_ns"])?;

    o.css_set_dfl_cgrp = opt("css_set", &["dfl_cgrp"]);
    o.css_set_subsys = opt("css_set", &["subsys"]);
    o.css_cgroup = opt("cgroup_subsys_state", &["cgroup"]);
    o.cgroup_kn = opt("cgroup", &["kn"]);
    o.kernfs_node_name = opt("kernfs_node", &["name"]);
    // Renamed to __parent in 6.15 when it became RCU-protected.
    o.kernfs_node_parent = opt("kernfs_node", &["__parent", "parent"]);

    o.mm_exe_file = opt("mm_struct", &["exe_file"]);
    o.file_f_path = opt("file", &["f_path"]);
    o.path_dentry = opt("path", &["dentry"]);
    o.dentry_d_name = opt("dentry", &["d_name"]);
    o.qstr_name = opt("qstr", &["name"]);
    o.dentry_d_parent = opt("dentry", &["d_parent"]);

    o.task_files = opt("task_struct", &["files"]);
    o.files_fdt = opt("files_struct", &["fdt"]);
    o.fdtable_fd = opt("fdtable", &["fd"]);
    o.fdtable_max_fds = opt("fdtable", &["max_fds"]);
    o.file_f_flags = opt("file", &["f_flags"]);
    o.file_f_mode = opt("file", &["f_mode"]);
    o.path_mnt = opt("path", &["mnt"]);
    o.dentry_d_sb = opt("dentry", &["d_sb"]);
    o.dentry_d_inode = opt("dentry", &["d_inode"]);
    o.inode_i_mode = opt("inode", &["i_mode"]);
    o.inode_i_ino = opt("inode", &["i_ino"]);
    o.inode_i_nlink = opt("inode", &["i_nlink", "__i_nlink"]);
    o.dentry_d_hash_pprev = match (btf.offset("dentry", &["d_hash"]), btf.offset("hlist_bl_node", &["pprev"])) {
        (Some(hash), Some(pprev)) => hash + pprev,
        _ => ABSENT,
    };
    o.sb_s_magic = opt("super_block", &["s_magic"]);
    o.sb_s_dev = opt("super_block", &["s_dev"]);
    o.mount_mnt = opt("mount", &["mnt"]);
    o.mount_mnt_parent = opt("mount", &["mnt_parent"]);
    o.mount_mnt_mountpoint = opt("mount", &["mnt_mountpoint"]);
    o.vfsmount_mnt_root = opt("vfsmount", &["mnt_root"]);
    o.mm_arg_start = opt("mm_struct", &["arg_start"]);
    o.mm_arg_end = opt("mm_struct", &["arg_end"]);
    o.task_fs = opt("task_struct", &["fs"]);
    o.fs_struct_root = opt("fs_struct", &["root"]);
    // include/linux/fs.h: FMODE_CREATED has been bit 20 since it was introduced (4.19).
    o.fmode_created = 1 << 20;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel when it exposes BTF (every supported kernel does).
    #[test]
    fn resolves_offsets_from_running_kernel() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("SKIP: {VMLINUX_BTF} missing");
            return;
        }
        let btf = KernelBtf::from_file(path).expect("parse vmlinux BTF");
        let o = resolve_offsets(&btf).expect("offsets");
        assert_ne!(o.task_nsproxy, o.task_cred);
        assert!(o.upid_size >= 12, "struct upid is an int and a pointer");
        for k in NsKind::ALL {
            assert_ne!(o.ns_inum[k.index()], ABSENT, "{}", k.name());
        }
        assert!(btf.enum_value("cgroup_subsys_id", "memory_cgrp_id").is_some());
        for (what, off) in [
            ("task_struct.files", o.task_files),
            ("fdtable.fd", o.fdtable_fd),
            ("mount.mnt", o.mount_mnt),
            ("mount.mnt_mountpoint", o.mount_mnt_mountpoint),
            ("super_block.s_magic", o.sb_s_magic),
            ("mm_struct.arg_start", o.mm_arg_start),
            ("task_struct.fs", o.task_fs),
            ("fs_struct.root", o.fs_struct_root),
        ] {
            assert_ne!(off, ABSENT, "{what}");
        }
        assert!(btf.has_function("commit_creds"));
        assert!(!btf.has_function("dcea_no_such_function"));
    }

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = KernelBtf::from_file(Path::new("/nonexistent/vmlinux")).err().expect("error");
        assert!(err.to_string().contains("BTF"), "{err}");
    }
}
