//! Builds the kernel programs (dcea-ebpf) for the bpf target through aya-build, so a plain
//! `cargo build` produces a complete agent. With AYA_BUILD_SKIP=1 (host-only `cargo check` or
//! clippy without nightly/bpf-linker) an empty object is written instead; the agent then says
//! so at start and uses the /proc polling fallback.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

const EBPF_BIN: &str = "dcea-ebpf";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out_dir.join(EBPF_BIN);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        fs::write(&object, []).with_context(|| format!("writing stub {}", object.display()))?;
        return Ok(());
    }
    if which_in_path("bpf-linker").is_none() {
        return Err(anyhow!(
            "bpf-linker is not installed: run `cargo xtask setup` (or build with AYA_BUILD_SKIP=1 for a host-only check)"
        ));
    }
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?);
    let ebpf_dir = manifest_dir.join("..").join("dcea-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "dcea-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs (run `cargo xtask setup` if the nightly toolchain is missing)")?;
    // The dcea-common ABI is compiled into the object too.
    println!("cargo:rerun-if-changed={}/../dcea-common/src", manifest_dir.display());
    Ok(())
}

fn which_in_path(bin: &str) -> Option<PathBuf> {
    let home_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|p| p.join("bin"));
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home_bin)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
