//! The kernel's copy of the enforced profiles: for each container of an enforced workload,
//! the (file identity, name) pairs it may run, under its cgroup v2 id. A program's identity is
//! what the kernel sees at exec (`mm->exe_file`'s superblock device and inode), so it is read
//! here by `lstat` through one of the container's processes (`/proc/<pid>/root`), which goes
//! through the same overlay mount.
//!
//! The container is marked enforced only after its entries are in, so that the kernel never
//! kills a container's programs while their entries are still being written.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap as BpfHashMap};
use dcea_common::{AllowKey, COMM_LEN, allow, names, runtime};

use super::{Allowlist, Mode, Profile};
use crate::enforce::condemned::{proc_cgroup_dir, record_cgroup, v2_path};

/// What the kernel holds for one container.
#[derive(Clone, Debug)]
pub struct Applied {
    pub cgroup_id: u64,
    pub cgroup_dir: PathBuf,
    pub profile: String,
    pub keys: Vec<AllowKey>,
}

/// Containers enforced in the kernel, by container id.
#[derive(Default)]
pub struct KernelAllowlist {
    pub applied: HashMap<String, Applied>,
}

/// The kernel's encoding of a device number (`MKDEV`: major << 20 | minor).
pub fn kernel_dev(st_dev: u64) -> u32 {
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    (major << 20) | (minor & 0xf_ffff)
}

pub fn comm_bytes(name: &str) -> [u8; COMM_LEN] {
    let mut comm = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    comm[..n].copy_from_slice(&name.as_bytes()[..n]);
    comm
}

/// The keys of `profile`'s entries as they are in the container of `pid`; entries whose file is
/// not there (or is not a regular file) are left out.
pub fn keys_for(profile: &Profile, pid: u32, cgroup_id: u64) -> Vec<AllowKey> {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut keys: Vec<AllowKey> = profile
        .entries
        .iter()
        .filter_map(|e| {
            let m = fs::symlink_metadata(root.join(e.path.trim_start_matches('/'))).ok()?;
            m.is_file().then(|| AllowKey {
                cgroup: cgroup_id,
                ino: m.ino(),
                dev: kernel_dev(m.dev()),
                pad: 0,
                comm: comm_bytes(&e.name),
            })
        })
        .collect();
    keys.sort_by_key(|k| (k.ino, k.dev, k.comm));
    keys.dedup();
    keys
}

/// The cgroup v2 directory of a container: from the record's cgroup path, else its process's.
fn cgroup_dir(root: &Path, record_cgroup_path: &str, pid: u32) -> Option<PathBuf> {
    let from_record = record_cgroup(record_cgroup_path).map(|rel| root.join(rel)).filter(|d| d.is_dir());
    from_record.or_else(|| {
        let rel = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|s| v2_path(&s))?;
        if rel.is_empty() {
            return None;
        }
        proc_cgroup_dir(root, &rel)
    })
}

impl KernelAllowlist {
    /// Bring the kernel in step with the containers `allowlist` asked for; the log lines say
    /// what changed.
    pub fn sync(&mut self, ebpf: &mut aya::Ebpf, cgroup2: Option<&Path>, allowlist: &mut Allowlist) {
        let wanted: Vec<String> = allowlist.to_sync.drain().collect();
        for id in wanted {
            let seen = allowlist.containers.get(&id).cloned();
            let profile = seen.as_ref().and_then(|s| allowlist.store.get(&s.profile)).cloned();
            let enforce = profile.as_ref().is_some_and(|p| p.mode_at(std::time::SystemTime::now()) == Mode::Enforce);
            if !enforce {
                self.remove(ebpf, &id);
                continue;
            }
            let (Some(seen), Some(profile), Some(root)) = (seen, profile, cgroup2) else { continue };
            // A process of the container that is still there to read its files through.
            let Some(pid) = seen.pids.iter().copied().find(|p| Path::new(&format!("/proc/{p}/root")).exists()) else {
                // All gone: the container's next exec names another, if it still runs.
                if record_cgroup(&seen.cgroup).is_some_and(|rel| root.join(rel).is_dir()) {
                    allowlist.to_sync.insert(id);
                }
                continue;
            };
            let Some(dir) = cgroup_dir(root, &seen.cgroup, pid) else {
                tracing::warn!("allowlist: container {id}: no cgroup v2 directory: enforced in user space only");
                continue;
            };
            let Ok(cgroup_id) = fs::metadata(&dir).map(|m| m.ino()) else { continue };
            // Entries whose file this container does not have are left out: it cannot run them.
            let keys = keys_for(&profile, pid, cgroup_id);
            let bits = if allowlist.blocks_runtime_exec(&profile) { allow::KILL_ENTRY_EXEC } else { 0 };
            match self.apply(
                ebpf,
                &id,
                Applied { cgroup_id, cgroup_dir: dir, profile: profile.name.clone(), keys },
                bits,
            ) {
                Ok(n) => eprintln!(
                    "dcea: allowlist: container {} enforced in the kernel by profile {} ({n} programs)",
                    short(&id),
                    profile.name
                ),
                Err(e) => tracing::warn!("allowlist: enforcing container {id} in the kernel: {e}"),
            }
        }
    }

    fn apply(&mut self, ebpf: &mut aya::Ebpf, id: &str, new: Applied, bits: u32) -> Result<usize, String> {
        let old = self.applied.remove(id);
        {
            let mut allowed = allowed_map(ebpf)?;
            for k in &new.keys {
                if let Err(e) = allowed.insert(k, 1, 0) {
                    // Half a set would kill what the profile allows: leave the container
                    // unenforced in the kernel.
                    for k in &new.keys {
                        let _ = allowed.remove(k);
                    }
                    return Err(format!("{}: {e}", names::ALLOWED_MAP));
                }
            }
            if let Some(old) = &old {
                for k in old.keys.iter().filter(|k| !new.keys.contains(k)) {
                    let _ = allowed.remove(k);
                }
            }
        }
        let mut enforced = enforced_map(ebpf)?;
        if let Some(old) = &old
            && old.cgroup_id != new.cgroup_id
        {
            let _ = enforced.remove(&old.cgroup_id);
        }
        enforced.insert(new.cgroup_id, bits, 0).map_err(|e| format!("{}: {e}", names::ALLOW_ENFORCED_MAP))?;
        let n = new.keys.len();
        self.applied.insert(id.to_string(), new);
        set_slot(ebpf, true);
        Ok(n)
    }

    /// Take a container out of the kernel's enforcement.
    pub fn remove(&mut self, ebpf: &mut aya::Ebpf, id: &str) {
        let Some(old) = self.applied.remove(id) else { return };
        if let Ok(mut enforced) = enforced_map(ebpf) {
            let _ = enforced.remove(&old.cgroup_id);
        }
        if let Ok(mut allowed) = allowed_map(ebpf) {
            for k in &old.keys {
                let _ = allowed.remove(k);
            }
        }
        eprintln!(
            "dcea: allowlist: container {} no longer enforced in the kernel (profile {})",
            short(id),
            old.profile
        );
        set_slot(ebpf, !self.applied.is_empty());
    }

    /// Containers whose cgroup is gone leave the maps.
    pub fn forget_gone(&mut self, ebpf: &mut aya::Ebpf) {
        let gone: Vec<String> =
            self.applied.iter().filter(|(_, a)| !a.cgroup_dir.exists()).map(|(id, _)| id.clone()).collect();
        for id in gone {
            self.remove(ebpf, &id);
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn allowed_map(ebpf: &mut aya::Ebpf) -> Result<BpfHashMap<&mut aya::maps::MapData, AllowKey, u8>, String> {
    let map = ebpf.map_mut(names::ALLOWED_MAP).ok_or_else(|| format!("map {} missing", names::ALLOWED_MAP))?;
    BpfHashMap::try_from(map).map_err(|e| e.to_string())
}

fn enforced_map(ebpf: &mut aya::Ebpf) -> Result<BpfHashMap<&mut aya::maps::MapData, u64, u32>, String> {
    let map =
        ebpf.map_mut(names::ALLOW_ENFORCED_MAP).ok_or_else(|| format!("map {} missing", names::ALLOW_ENFORCED_MAP))?;
    BpfHashMap::try_from(map).map_err(|e| e.to_string())
}

fn set_slot(ebpf: &mut aya::Ebpf, any: bool) {
    if let Some(map) = ebpf.map_mut(names::RUNTIME_MAP)
        && let Ok(mut slots) = Array::<_, u32>::try_from(map)
        && let Err(e) = slots.set(runtime::ALLOWLIST_SLOT, u32::from(any), 0)
    {
        tracing::warn!("allowlist: runtime slot: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_take_the_kernel_encoding() {
        assert_eq!(kernel_dev(libc::makedev(0, 52)), 52);
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }

    #[test]
    fn names_fill_a_comm_with_its_nul() {
        assert_eq!(&comm_bytes("ls")[..3], b"ls\0");
        let long = comm_bytes("a-name-longer-than-fifteen");
        assert_eq!((&long[..15], long[15]), (&b"a-name-longer-t"[..], 0));
    }
}
