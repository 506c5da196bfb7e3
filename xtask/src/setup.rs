//! Prerequisites for building the eBPF programs: a nightly toolchain with rust-src (for
//! `-Z build-std=core`) and bpf-linker built against the LLVM that nightly rustc ships (no
//! prebuilt bpf-linker matches it). Idempotent: when all is present this is three quick
//! commands.

use std::{
    env,
    ffi::OsString,
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo"))
}

/// PATH with `$CARGO_HOME/bin` in front, so freshly installed tools are found.
pub fn path_with_cargo_bin() -> OsString {
    let mut paths = vec![cargo_home().join("bin")];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).unwrap_or_default()
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.env("PATH", path_with_cargo_bin());
    cmd
}

/// "22" from the `LLVM version: 22.1.4` line of `rustc -vV`.
pub fn llvm_major(rustc_vv: &str) -> Option<String> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.trim().split('.').next())
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

pub fn ensure() -> Result<()> {
    let toolchains = output(rustup().args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain with rust-src");
        run(rustup().args(["toolchain", "install", "nightly", "--profile", "minimal", "--component", "rust-src"]))?;
    }
    let components = output(rustup().args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to nightly");
        run(rustup().args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    ensure_protoc()?;
    ensure_bpf_linker()
}

/// k8s-cri's build script generates the CRI client with protoc (Debian: protobuf-compiler).
fn ensure_protoc() -> Result<()> {
    if env::var_os("PROTOC").is_some() || crate::which("protoc").is_some() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "protoc is missing (the CRI client is generated with it): apt-get install protobuf-compiler, or set PROTOC"
        );
    }
    eprintln!("setup: installing protobuf-compiler (protoc) with apt");
    let apt = |args: &[&str]| {
        run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").env("NEEDRESTART_SUSPEND", "1").args(args))
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", "protobuf-compiler"])
}

/// Add a rustup target (the static musl build of the image) when it is missing.
pub fn ensure_target(triple: &str) -> Result<()> {
    let installed = output(rustup().args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == triple) {
        eprintln!("setup: adding the {triple} target");
        run(rustup().args(["target", "add", triple]))?;
    }
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    let linker = cargo_home().join("bin").join("bpf-linker");
    let works = Command::new(&linker).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if works.is_ok_and(|s| s.success()) {
        return Ok(());
    }
    let vv = output(rustup().args(["run", "nightly", "rustc", "-vV"]))?;
    let major = llvm_major(&vv).context("nightly rustc -vV does not report an LLVM version")?;
    let sysroot = output(rustup().args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let prefix = format!("libLLVM.so.{major}.");
    let lib = fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with("-nightly"))
        })
        .with_context(|| format!("no {prefix}*-nightly in {}", libdir.display()))?;

    // llvm-sys links against $LLVM_PREFIX/lib/libLLVM.so and records that directory as the
    // binary's RUNPATH; at run time the loader looks there for the library's soname, so both
    // names must point at rustc's library.
    let llvm_prefix = cargo_home().join("dcea-rustllvm");
    let link_dir = llvm_prefix.join("lib");
    fs::create_dir_all(&link_dir).with_context(|| format!("creating {}", link_dir.display()))?;
    let soname = lib.file_name().context("libLLVM path has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = link_dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link).with_context(|| format!("linking {}", link.display()))?;
    }

    eprintln!("setup: building bpf-linker against rustc's LLVM {major} (about a minute)");
    run(Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .env("PATH", path_with_cargo_bin())
        .env("LLVM_PREFIX", &llvm_prefix)
        .args(["install", "bpf-linker", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .arg("--force"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_vv() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv).as_deref(), Some("22"));
        assert_eq!(llvm_major("rustc 1.0\n"), None);
        assert_eq!(llvm_major("LLVM version: \n"), None);
    }
}
