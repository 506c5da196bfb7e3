//! Debian packages, installed once each with apt when the program that proves them is missing.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

#[derive(Default)]
pub struct Wanted {
    packages: Vec<&'static str>,
}

impl Wanted {
    pub fn need_programs(&mut self, programs: &[(&str, &'static str)]) {
        for (program, package) in programs {
            if find(program).is_none() && !self.packages.contains(package) {
                self.packages.push(package);
            }
        }
    }

    /// The guests' initramfs and the test image are made from a static busybox.
    pub fn need_static_busybox(&mut self) {
        if static_busybox().is_none() && !self.packages.contains(&"busybox-static") {
            self.packages.push("busybox-static");
        }
    }

    pub fn install(&self) -> Result<()> {
        if self.packages.is_empty() {
            return Ok(());
        }
        eprintln!("env: installing with apt: {}", self.packages.join(" "));
        let apt = |args: &[&str]| -> Result<()> {
            let st = Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                // Ubuntu's needrestart would otherwise ask about (or restart) services.
                .env("NEEDRESTART_SUSPEND", "1")
                .args(args)
                .status()
                .context("running apt-get (is this Debian or Ubuntu?)")?;
            if !st.success() {
                bail!("apt-get {} failed: {st}", args.join(" "));
            }
            Ok(())
        };
        apt(&["update", "-qq"])?;
        // No recommends: qemu's pull in a desktop's worth of libraries.
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&self.packages);
        apt(&args)
    }
}

/// `program` on PATH or in the sbin directories (root's PATH may lack them).
pub fn find(program: &str) -> Option<std::path::PathBuf> {
    crate::which(program).or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/local/sbin"].iter().map(|d| Path::new(d).join(program)).find(|p| p.is_file())
    })
}

pub fn static_busybox() -> Option<std::path::PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file() && crate::vm::is_static(p))
        .map(Path::to_path_buf)
}
