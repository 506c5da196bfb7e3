//! Command line.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    monitor::{CommitCredsHook, Mode, MonitorOptions, btf::VMLINUX_BTF},
    output::Format,
    trust::cli::{StateDirArg, TrustCommand},
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
    /// Behaviour rules (Falco's language): validate files, list the loaded rules, list fields.
    Rules {
        #[command(subcommand)]
        command: crate::rules::cmd::RulesCommand,
    },
    /// The namespace trust table: show it, or verify every container process against it now.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
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
    /// Behaviour rules: the embedded defaults plus --rules-dir (reloaded on SIGHUP).
    #[command(flatten)]
    pub rules: crate::rules::cmd::RulesSourceArgs,
    /// Where escapes are seen: `auto` loads the kernel programs and falls back to polling
    /// /proc (saying so on stderr) when they cannot load; `ebpf` fails instead; `poll` never
    /// loads them.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Trust pass interval (`2s`, `500ms`, `1m`) [default: 2s when polling, 30s beside the
    /// kernel programs].
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub cri: crate::container::cri::socket::CriSocketArg,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 2s, 500ms, 1m)"))?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("the interval must be between 100ms and 1h".into());
    }
    Ok(d)
}

impl MonitorArgs {
    pub fn options(&self) -> MonitorOptions {
        MonitorOptions {
            mode: self.mode,
            interval: self.interval,
            state_dir: self.state.state_dir.clone(),
            rules: self.rules.load_options(),
            cri_socket: self.cri.cri_socket.clone(),
            ..self.kernel.monitor_options(self.format)
        }
    }
}

impl KernelArgs {
    pub fn monitor_options(&self, format: Format) -> MonitorOptions {
        MonitorOptions {
            format,
            enforce: self.enforce,
            host_ns_pid: self.host_ns_pid,
            btf_path: self.btf.clone(),
            max_tasks: self.max_tasks,
            mode: Mode::Ebpf,
            interval: None,
            state_dir: crate::trust::DEFAULT_STATE_DIR.into(),
            rules: crate::rules::LoadOptions::default(),
            commit_creds: self.commit_creds,
            cri_socket: None,
        }
    }
}
