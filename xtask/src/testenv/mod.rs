//! `cargo xtask env up`: the test environment a fresh Debian/Ubuntu host lacks, installed with
//! apt and started, idempotently (a few quick checks when everything is up):
//! - the tools the tests call (util-linux, rsyslog, prometheus, containerd's `ctr`, bpftrace,
//!   musl-tools for the image's static binary);
//! - a Docker engine (Debian's docker.io) with no bridge and no iptables, and the runc wrapper
//!   this host needs (see [`runc_wrapper`]);
//! - the test image `dcea-test/busybox:latest`, built locally from busybox-static;
//! - qemu and a static busybox for the kernel matrix's guests.

pub(crate) mod apt;
mod docker;
pub mod runc_wrapper;

use anyhow::{Result, bail};

/// Which parts to bring up.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    pub docker: bool,
    pub vm: bool,
}

pub fn up(parts: Parts) -> Result<()> {
    if !crate::is_root() {
        bail!("the test environment is installed with apt and started as root: run `cargo xtask env up` as root");
    }
    let mut packages = apt::Wanted::default();
    // (program that proves the package is there, package)
    packages.need_programs(&[
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("setpriv", "util-linux"),
        ("rsyslogd", "rsyslog"),
        ("prometheus", "prometheus"),
        ("bpftrace", "bpftrace"),
        // The image's static binary: a musl C compiler for the bundled SQLite and zstd.
        ("musl-gcc", "musl-tools"),
    ]);
    if parts.docker {
        packages.need_programs(&[("dockerd", "docker.io"), ("containerd", "containerd"), ("ctr", "containerd")]);
        packages.need_static_busybox();
    }
    if parts.vm {
        packages.need_programs(&[("qemu-system-x86_64", "qemu-system-x86")]);
        packages.need_static_busybox();
    }
    packages.install()?;
    if parts.docker {
        docker::up()?;
    }
    Ok(())
}

/// `cargo xtask env status`: one line per part.
pub fn status() {
    for (what, ok) in docker::status() {
        eprintln!("env: {what:<32} {}", if ok { "up" } else { "missing" });
    }
    eprintln!(
        "env: {:<32} {}",
        "qemu-system-x86_64",
        if crate::which("qemu-system-x86_64").is_some() { "installed" } else { "missing" }
    );
}
