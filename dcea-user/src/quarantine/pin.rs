//! Load the quarantine programs from the embedded object, attach them to a cgroup with bpf
//! links, and pin the links in bpffs (`/sys/fs/bpf/dcea/quarantine/<container-id>/<program>`):
//! the quarantine outlives the process that made it (a CLI call, an agent killed with -9)
//! until [`release`] unpins the links, which detaches them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    maps::Array,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, links::FdLink, links::PinnedLink},
};
use dcea_common::{
    names,
    programs::quarantine::{ALLOW_DNS, FLAGS_MAP, Hook, QUARANTINE},
};

use super::QuarantineError;

pub const PIN_ROOT: &str = "/sys/fs/bpf/dcea/quarantine";

/// What one attach did, per program: its name and the instructions the verifier processed
/// (5.16+).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attached {
    pub program: &'static str,
    pub verified_insns: Option<u32>,
}

pub fn pin_dir(id: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(id)
}

/// Is the container quarantined (its links pinned)?
pub fn is_pinned(id: &str) -> bool {
    fs::read_dir(pin_dir(id)).is_ok_and(|mut d| d.next().is_some())
}

/// The container ids with pinned quarantine links.
pub fn pinned() -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(PIN_ROOT)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    ids.retain(|id| is_pinned(id));
    ids.sort();
    ids
}

/// An error with its causes (aya's syscall errors keep the errno in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

fn load_err(what: &str) -> impl Fn(String) -> QuarantineError + '_ {
    move |e| QuarantineError::Kernel(format!("{what}: {e}"))
}

/// Attach the six programs to `cgroup` and pin their links under [`pin_dir`]`(id)`. On any
/// failure what was pinned is removed again: a quarantine is whole or absent.
pub fn attach(cgroup: &Path, id: &str, allow_dns: bool) -> Result<Vec<Attached>, QuarantineError> {
    if !crate::sys::is_root() {
        return Err(QuarantineError::NotRoot);
    }
    let object = crate::monitor::loader::ebpf_object();
    if object.is_empty() {
        return Err(QuarantineError::Kernel(crate::Error::NoEbpfObject.to_string()));
    }
    crate::sys::ensure_kernel_filesystems().map_err(|e| QuarantineError::Kernel(e.to_string()))?;
    crate::sys::raise_memlock();
    let dir = pin_dir(id);
    fs::create_dir_all(&dir).map_err(|e| QuarantineError::io(&dir, e))?;
    let mut pinned = Vec::new();
    let result = attach_pinned(object, cgroup, &dir, allow_dns, &mut pinned);
    if result.is_err() {
        // Only what this call pinned: a concurrent quarantine of the same container keeps its own.
        for path in pinned {
            if let Ok(link) = PinnedLink::from_pin(&path) {
                let _ = link.unpin();
            }
        }
        let _ = fs::remove_dir(&dir);
    }
    result
}

fn attach_pinned(
    object: &[u8],
    cgroup: &Path,
    dir: &Path,
    allow_dns: bool,
    pinned: &mut Vec<PathBuf>,
) -> Result<Vec<Attached>, QuarantineError> {
    // The object's other maps are sized down: this instance only runs the quarantine programs,
    // and only the maps they use outlive this process.
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(names::EVENTS_MAP, 4096)
        .map_max_entries(names::PRIORITY_EVENTS_MAP, 4096)
        .map_max_entries(names::TASKS_MAP, 1024)
        .load(object)
        .map_err(|e| QuarantineError::Kernel(format!("loading the eBPF object: {e}")))?;
    {
        let map = ebpf.map_mut(FLAGS_MAP).ok_or_else(|| QuarantineError::Kernel(format!("no map {FLAGS_MAP}")))?;
        let mut flags: Array<_, u32> = Array::try_from(map).map_err(|e| load_err(FLAGS_MAP)(e.to_string()))?;
        flags.set(0, if allow_dns { ALLOW_DNS } else { 0 }, 0).map_err(|e| load_err(FLAGS_MAP)(e.to_string()))?;
    }
    // A bpf link on a cgroup is always one of many (BPF_F_ALLOW_MULTI is implied and the
    // kernel refuses any flag in BPF_LINK_CREATE): `Single` is aya's "no flags".
    let cg = fs::File::open(cgroup).map_err(|e| QuarantineError::io(cgroup, e))?;
    let mut out = Vec::new();
    for p in QUARANTINE {
        let err = load_err(p.name);
        let prog = ebpf.program_mut(p.name).ok_or_else(|| err("not in the eBPF object".into()))?;
        let (link, insns): (FdLink, Option<u32>) = match p.hook {
            Hook::SkbIngress | Hook::SkbEgress => {
                let prog: &mut CgroupSkb =
                    prog.try_into().map_err(|e: aya::programs::ProgramError| err(e.to_string()))?;
                prog.load().map_err(|e| err(format!("load: {}", chain(&e))))?;
                let kind =
                    if p.hook == Hook::SkbIngress { CgroupSkbAttachType::Ingress } else { CgroupSkbAttachType::Egress };
                let lid = prog
                    .attach(&cg, kind, CgroupAttachMode::Single)
                    .map_err(|e| err(format!("attach: {}", chain(&e))))?;
                let link = prog.take_link(lid).map_err(|e| err(e.to_string()))?;
                let insns = prog.info().ok().and_then(|i| i.verified_instruction_count());
                (FdLink::try_from(link).map_err(|e| err(format!("not a bpf link (kernel < 5.7?): {e}")))?, insns)
            }
            _ => {
                let prog: &mut CgroupSockAddr =
                    prog.try_into().map_err(|e: aya::programs::ProgramError| err(e.to_string()))?;
                prog.load().map_err(|e| err(format!("load: {}", chain(&e))))?;
                let lid =
                    prog.attach(&cg, CgroupAttachMode::Single).map_err(|e| err(format!("attach: {}", chain(&e))))?;
                let link = prog.take_link(lid).map_err(|e| err(e.to_string()))?;
                let insns = prog.info().ok().and_then(|i| i.verified_instruction_count());
                (FdLink::try_from(link).map_err(|e| err(format!("not a bpf link (kernel < 5.7?): {e}")))?, insns)
            }
        };
        let path = dir.join(p.name);
        link.pin(&path).map_err(|e| err(format!("pinning in {}: {e}", dir.display())))?;
        pinned.push(path);
        out.push(Attached { program: p.name, verified_insns: insns });
    }
    Ok(out)
}

/// Unpin (and so detach) every link of a quarantine; false when it had none.
pub fn release(id: &str) -> Result<bool, QuarantineError> {
    let dir = pin_dir(id);
    if !dir.exists() {
        return Ok(false);
    }
    unpin_dir(&dir)?;
    Ok(true)
}

fn unpin_dir(dir: &Path) -> Result<(), QuarantineError> {
    let rd = fs::read_dir(dir).map_err(|e| QuarantineError::io(dir, e))?;
    for e in rd.flatten() {
        let path = e.path();
        match PinnedLink::from_pin(&path) {
            // Dropping the last reference to a link detaches it.
            Ok(link) => drop(link.unpin().map_err(|e| QuarantineError::io(&path, e))?),
            Err(_) => fs::remove_file(&path).map_err(|e| QuarantineError::io(&path, e))?,
        }
    }
    fs::remove_dir(dir).map_err(|e| QuarantineError::io(dir, e))
}
