//! `cargo xtask install`: the release binary, the systemd unit, the default config and the
//! rules and state directories, under --destdir (a staging root) or the real system.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Staging root everything is installed under (packaging, tests); `/` installs for real.
    #[arg(long, default_value = "/")]
    pub destdir: PathBuf,
    /// Where the binary goes: PREFIX/bin/dcea (the unit's ExecStart follows it).
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Install this binary instead of building one (e.g. target/x86_64-unknown-linux-musl/release/dcea).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Build and install the static (musl) binary instead of the host one.
    #[arg(long, conflicts_with = "bin")]
    pub r#static: bool,
}

const UNIT: &str = "deploy/systemd/dcea.service";
const UNIT_BIN: &str = "/usr/local/bin/dcea";

/// `path` (absolute) under `destdir`.
fn staged(destdir: &Path, path: &Path) -> PathBuf {
    destdir.join(path.strip_prefix("/").unwrap_or(path))
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Replace, never write through: a running dcea keeps its old binary.
    let tmp = path.with_extension("xtask-new");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))?;
    eprintln!("xtask: installed {} ({mode:o})", path.display());
    Ok(())
}

fn dir_mode(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

pub fn run(root: &Path, args: InstallArgs) -> Result<()> {
    let bin = match (&args.bin, args.r#static) {
        (Some(bin), _) => bin.clone(),
        (None, true) => super::image::build_static(root)?,
        (None, false) => {
            super::setup::ensure()?;
            super::status(super::cargo(root).args(["build", "--release", "-p", "dcea-user", "--bin", "dcea"]))?;
            super::dcea_bin(root, true)
        }
    };
    if !bin.is_file() {
        bail!("{} does not exist", bin.display());
    }
    let d = &args.destdir;
    let bin_path = args.prefix.join("bin").join("dcea");
    write_mode(&staged(d, &bin_path), &fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?, 0o755)?;

    let unit = fs::read_to_string(root.join(UNIT)).context("reading the unit")?;
    let unit = unit.replace(UNIT_BIN, &bin_path.to_string_lossy());
    write_mode(&staged(d, Path::new("/etc/systemd/system/dcea.service")), unit.as_bytes(), 0o644)?;

    // The operator's config is never overwritten; the default comes from the binary itself.
    let config = staged(d, Path::new("/etc/dcea/dcea.yaml"));
    if config.exists() {
        eprintln!("xtask: kept {} (check it with `dcea config check`)", config.display());
    } else {
        let out = Command::new(&bin).args(["config", "default"]).output().context("dcea config default")?;
        if !out.status.success() {
            bail!("{} config default failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
        }
        write_mode(&config, &out.stdout, 0o600)?;
    }
    dir_mode(&staged(d, Path::new("/etc/dcea/rules.d")), 0o755)?;
    dir_mode(&staged(d, Path::new("/var/lib/dcea")), 0o700)?;
    if d == Path::new("/") {
        eprintln!("xtask: now `systemctl daemon-reload && systemctl enable --now dcea`");
    }
    Ok(())
}
