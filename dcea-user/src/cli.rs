//! Command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    monitor::{CommitCredsHook, MonitorOptions, btf::VMLINUX_BTF},
    output::Format,
};

#[derive(Debug, Parser)]
#[command(name = "dcea", version, about = "Detect (and on request prevent) container escapes")]
pub struct Cli {
    /// Log filter for stderr (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "DCEA_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch namespace transitions in the kernel and report escapes as they happen.
    /// Alerts go to stdout (one per line); logs and the start-up report go to stderr.
    Monitor(MonitorArgs),
    /// Load and attach the kernel programs, print what works on this kernel, and exit.
    Probe {
        #[command(flatten)]
        kernel: KernelArgs,
        /// Report format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Static checks before anything happens: kernel and runtime CVEs, dangerous container
    /// settings. Exit status: 0 clean, 1 findings at or above --fail-on, 2 error.
    Scan {
        #[command(subcommand)]
        target: ScanTarget,
    },
    /// Measure an image (layer digests and a SHA-256 of every file), save it as the trusted
    /// reference (--save) or compare with it (--verify). Exit status: 0 ok, 1 changed, 2 error.
    Measure {
        #[command(subcommand)]
        target: crate::measure::MeasureTarget,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScanTarget {
    /// Is the kernel (and runc / containerd / Docker) exposed to known escape CVEs?
    Kernel(crate::scan::kernel::KernelScanArgs),
    /// Check every running container (or --container ID…, or --self) for dangerous settings.
    Config(crate::scan::config::ConfigScanArgs),
    /// Scan an image (docker-save tarball, OCI layout, or local engine reference) for
    /// vulnerable packages against an offline OSV database.
    Image(crate::scan::image::ImageArgs),
}

#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Kernel BTF to resolve structure offsets from.
    #[arg(long, default_value = VMLINUX_BTF)]
    pub btf: PathBuf,
    /// Take the host mnt/net namespace reference from this pid (default: dcea itself on a
    /// host, PID 1 when dcea runs in a container with hostPID).
    #[arg(long, value_name = "PID")]
    pub host_ns_pid: Option<u32>,
    /// Kill a container process in the kernel when it enters a host namespace, before it
    /// returns to user space.
    #[arg(long)]
    pub enforce: bool,
    /// Which commit_creds hook to use for credential escalation and integrity: fentry, else
    /// kprobe (auto); only one of them; or none.
    #[arg(long, value_enum, env = "DCEA_COMMIT_CREDS", default_value_t = CommitCredsHook::Auto)]
    pub commit_creds: CommitCredsHook,
    /// Tasks tracked in the kernel (least recently seen are forgotten first).
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u32).range(1024..=4_194_304))]
    pub max_tasks: u32,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Alert format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

impl KernelArgs {
    pub fn monitor_options(&self, format: Format) -> MonitorOptions {
        MonitorOptions {
            format,
            enforce: self.enforce,
            host_ns_pid: self.host_ns_pid,
            btf_path: self.btf.clone(),
            max_tasks: self.max_tasks,
            commit_creds: self.commit_creds,
        }
    }
}
