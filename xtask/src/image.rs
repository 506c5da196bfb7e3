//! `cargo xtask image`: the static dcea binary (x86_64-unknown-linux-musl, eBPF object
//! embedded) and the OCI image `dcea:<version>` built from it with `docker build`, FROM
//! scratch, from a local context (no registry).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(clap::Args)]
pub struct ImageArgs {
    /// Image name and tag.
    #[arg(long, default_value_t = format!("dcea:{}", env!("CARGO_PKG_VERSION")))]
    pub tag: String,
    /// Build the static binary and the build context only (no Docker needed).
    #[arg(long)]
    pub context_only: bool,
}

/// The static binary `cargo xtask image` builds.
pub fn static_bin(root: &Path) -> PathBuf {
    root.join("target").join(MUSL_TARGET).join("release").join("dcea")
}

/// Build the static release binary; its path.
pub fn build_static(root: &Path) -> Result<PathBuf> {
    super::setup::ensure()?;
    super::setup::ensure_target(MUSL_TARGET)?;
    // The C parts (bundled SQLite, zstd) need a musl C compiler; cc-rs finds musl-gcc.
    if super::which("musl-gcc").is_none() && super::which("x86_64-linux-musl-gcc").is_none() {
        bail!("no musl C compiler: apt-get install musl-tools");
    }
    super::status(super::cargo(root).args([
        "build",
        "--release",
        "-p",
        "dcea-user",
        "--bin",
        "dcea",
        "--target",
        MUSL_TARGET,
    ]))?;
    let bin = static_bin(root);
    let elf = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if has_interpreter(&elf)? {
        bail!("{} is dynamically linked (it has a PT_INTERP); the image needs a static binary", bin.display());
    }
    Ok(bin)
}

/// Does this ELF64 file ask for a dynamic loader?
fn has_interpreter(elf: &[u8]) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        bail!("not an ELF64 file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(header) = elf.get(at..at + 4) else { bail!("truncated program headers") };
        if u32::from_le_bytes(header.try_into()?) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Lay out the build context: deploy/image/Dockerfile and rootfs/ with the stripped binary,
/// the host's CA bundle and the /var/run link.
pub fn context(root: &Path, bin: &Path) -> Result<PathBuf> {
    let ctx = root.join("target").join("image");
    let _ = fs::remove_dir_all(&ctx);
    let rootfs = ctx.join("rootfs");
    for dir in ["usr/bin", "etc/ssl/certs", "var", "run", "var/lib/dcea", "etc/dcea/rules.d"] {
        fs::create_dir_all(rootfs.join(dir)).with_context(|| format!("creating {dir} in {}", rootfs.display()))?;
    }
    fs::copy(root.join("deploy/image/Dockerfile"), ctx.join("Dockerfile")).context("copying the Dockerfile")?;
    let target = rootfs.join("usr/bin/dcea");
    // Debug info is most of the release binary; symbols stay for readable backtraces.
    super::status(Command::new("objcopy").arg("--strip-debug").arg(bin).arg(&target))?;
    if !Path::new(CA_BUNDLE).is_file() {
        bail!("{CA_BUNDLE} is missing: apt-get install ca-certificates");
    }
    fs::copy(CA_BUNDLE, rootfs.join("etc/ssl/certs/ca-certificates.crt")).context("copying the CA bundle")?;
    std::os::unix::fs::symlink("../run", rootfs.join("var/run")).context("linking var/run")?;
    Ok(ctx)
}

pub fn run(root: &Path, args: ImageArgs) -> Result<()> {
    let bin = build_static(root)?;
    let ctx = context(root, &bin)?;
    eprintln!("xtask: image context in {}", ctx.display());
    if args.context_only {
        return Ok(());
    }
    super::status(Command::new("docker").arg("build").arg("--tag").arg(&args.tag).arg(&ctx))?;
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", &args.tag])
        .output()
        .context("docker image inspect")?;
    let size: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    eprintln!("xtask: built {} ({:.1} MB)", args.tag, size as f64 / 1e6);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_elves() {
        let own = fs::read(std::env::current_exe().unwrap()).unwrap();
        // The test binary is built for the host (glibc): it has an interpreter.
        assert!(has_interpreter(&own).unwrap());
        assert!(has_interpreter(b"not an elf").is_err());
    }
}
