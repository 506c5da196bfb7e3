//! The OCI runtime wrapper for hosts whose capability bounding set lacks CAP_SYS_RESOURCE.
//!
//! runc asks for every capability of a `--privileged` container in each of its sets; one
//! missing from the bounding set makes `runc create` (the bundle's config.json) and `runc exec`
//! (the `--process` file, i.e. `docker exec`) fail with "unable to apply caps". The wrapper
//! removes the capabilities the bounding set lacks from both files, then execs runc. It is this
//! xtask binary itself, installed under another name: no script, no interpreter.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use serde_json::Value;

/// The name the binary answers to, and where `env up` installs it.
pub const NAME: &str = "dcea-runc";
pub const INSTALL_PATH: &str = "/usr/local/lib/dcea-test/dcea-runc";

/// CAP_SYS_RESOURCE.
const SYS_RESOURCE: u32 = 24;

/// Does this host need the wrapper?
pub fn needed() -> bool {
    !bounding_set_has(SYS_RESOURCE)
}

fn bounding_set_has(bit: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << bit) != 0)
}

/// Copy this binary to [`INSTALL_PATH`] unless the same bytes are already there.
pub fn install() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating the xtask binary")?;
    let dest = PathBuf::from(INSTALL_PATH);
    let same = fs::read(&dest).ok().zip(fs::read(&me).ok()).is_some_and(|(a, b)| a == b);
    if !same {
        fs::create_dir_all(dest.parent().expect("absolute path")).context("creating /usr/local/lib/dcea-test")?;
        // Write beside and rename: a running runc wrapper keeps its old inode.
        let tmp = dest.with_extension("new");
        fs::copy(&me, &tmp).with_context(|| format!("copying {} to {}", me.display(), tmp.display()))?;
        fs::rename(&tmp, &dest).with_context(|| format!("installing {}", dest.display()))?;
        eprintln!("env: installed the runc wrapper at {}", dest.display());
    }
    Ok(dest)
}

/// Run as the wrapper: fix the files runc is about to read, then become runc.
pub fn main(args: Vec<String>) -> ! {
    for (flag, kind) in [("bundle", FileKind::Bundle), ("process", FileKind::Process)] {
        if let Some(value) = flag_value(&args, flag) {
            let path = match kind {
                FileKind::Bundle => Path::new(&value).join("config.json"),
                FileKind::Process => PathBuf::from(&value),
            };
            if let Err(e) = strip_file(&path, kind) {
                eprintln!("{NAME}: {}: {e:#}", path.display());
            }
        }
    }
    let err = Command::new("runc").args(&args).exec();
    eprintln!("{NAME}: exec runc: {err}");
    std::process::exit(127)
}

#[derive(Clone, Copy)]
enum FileKind {
    /// A bundle's config.json: the capabilities sit under `process`.
    Bundle,
    /// `runc exec --process FILE`: the process object itself.
    Process,
}

/// The value of `--flag V`, `--flag=V` or `-f V` (runc's short form is the first letter).
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let long = format!("--{flag}");
    let short = format!("-{}", &flag[..1]);
    let eq = format!("{long}=");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == long || *a == short {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v.to_string());
        }
    }
    None
}

fn strip_file(path: &Path, kind: FileKind) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else { return Ok(()) };
    let mut doc: Value = serde_json::from_str(&text).context("not JSON")?;
    let process = match kind {
        FileKind::Bundle => doc.get_mut("process"),
        FileKind::Process => Some(&mut doc),
    };
    if let Some(process) = process
        && strip_capabilities(process, bounding_set_has)
    {
        fs::write(path, serde_json::to_vec(&doc)?).context("rewriting")?;
    }
    Ok(())
}

/// Remove from every capability set of `process` the capabilities `allowed` rejects. True when
/// anything changed.
fn strip_capabilities(process: &mut Value, allowed: impl Fn(u32) -> bool) -> bool {
    let Some(sets) = process.get_mut("capabilities").and_then(Value::as_object_mut) else { return false };
    let mut changed = false;
    for set in sets.values_mut().filter_map(Value::as_array_mut) {
        let before = set.len();
        set.retain(|cap| cap.as_str().and_then(cap_bit).is_none_or(&allowed));
        changed |= set.len() != before;
    }
    changed
}

/// The bit of the capabilities a bounding set may lack on container hosts.
fn cap_bit(name: &str) -> Option<u32> {
    match name {
        "CAP_SYS_RESOURCE" => Some(SYS_RESOURCE),
        "CAP_SYS_MODULE" => Some(16),
        "CAP_SYS_RAWIO" => Some(17),
        "CAP_SYS_TIME" => Some(25),
        "CAP_MAC_ADMIN" => Some(33),
        "CAP_MAC_OVERRIDE" => Some(32),
        "CAP_PERFMON" => Some(38),
        "CAP_BPF" => Some(39),
        "CAP_CHECKPOINT_RESTORE" => Some(40),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_every_spelling() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(flag_value(&a(&["create", "--bundle", "/b", "id"]), "bundle").as_deref(), Some("/b"));
        assert_eq!(flag_value(&a(&["create", "-b", "/b", "id"]), "bundle").as_deref(), Some("/b"));
        assert_eq!(flag_value(&a(&["exec", "--process=/p", "id"]), "process").as_deref(), Some("/p"));
        assert_eq!(flag_value(&a(&["--root", "/r", "state", "id"]), "bundle"), None);
    }

    #[test]
    fn only_missing_capabilities_are_removed() {
        let mut p: Value = serde_json::json!({
            "capabilities": {
                "bounding": ["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_BPF"],
                "effective": ["CAP_SYS_RESOURCE"],
                "ambient": []
            }
        });
        assert!(strip_capabilities(&mut p, |bit| bit != SYS_RESOURCE));
        assert_eq!(p["capabilities"]["bounding"], serde_json::json!(["CAP_SYS_ADMIN", "CAP_BPF"]));
        assert_eq!(p["capabilities"]["effective"], serde_json::json!([]));
        assert!(!strip_capabilities(&mut p, |bit| bit != SYS_RESOURCE), "nothing left to change");
    }
}
