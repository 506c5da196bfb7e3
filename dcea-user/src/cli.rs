//! Command line.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    monitor::{CommitCredsHook, Mode, MonitorOptions, btf::VMLINUX_BTF},
    output::Format,
    sinks::{DeliveryOptions, OutputSpec, StormOptions},
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
    Monitor(Box<MonitorArgs>),
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
    /// Runtime integrity: what the monitor measured of each image and what it found
    /// (modified image files, files not in the image, fileless code, code modified in memory).
    Integrity {
        #[command(subcommand)]
        command: crate::integrity::cli::IntegrityCommand,
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
    /// The monitor's config file: validate one, or print the default.
    Config {
        #[command(subcommand)]
        command: crate::config::cmd::ConfigCommand,
    },
    /// The per-workload process allowlists: list, show, promote (learn → monitor → enforce),
    /// demote, edit, reset, export and import them. The running monitor applies a change
    /// within a second.
    Profile {
        #[command(subcommand)]
        command: crate::allowlist::cli::ProfileCommand,
    },
    /// Lift the condemnation of a container that --enforce killed (kill-container): its
    /// tasks may run again. The running monitor applies it within a second.
    Release {
        /// Container id (or a prefix of 12 or more digits), or its cgroup path.
        container: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Cut a container off the network (all but its own loopback, optionally DNS), pinned in
    /// bpffs so it outlives dcea; `release` lifts it, `list` shows who asked and why.
    Quarantine(Box<crate::quarantine::cli::QuarantineArgs>),
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
    /// Prevent, not only detect: each rule's `action` (alert, kill-process, kill-container)
    /// runs, in the kernel before the syscall returns where the rule has a `guard`.
    #[arg(long)]
    pub enforce: bool,
    /// What --enforce does to a process that enters a host namespace (the built-in escape
    /// verdict): alert, kill-process or kill-container.
    #[arg(long, value_name = "ACTION", default_value = "kill-container", value_parser = parse_action)]
    pub escape_action: crate::enforce::Action,
    /// Change one rule's --enforce action, as RULE=ACTION (repeatable), e.g.
    /// "Kernel core_pattern written=alert".
    #[arg(long = "action", value_name = "RULE=ACTION", value_parser = crate::enforce::guards::parse_override)]
    pub actions: Vec<(String, crate::enforce::Action)>,
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
    /// Config file (YAML; keys are these flags' names). Read when it exists if not given;
    /// flags override it, DCEA_<KEY> environment variables override both.
    #[arg(long, value_name = "PATH", env = "DCEA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Alert format on stdout and in files (syslog and HTTP always carry JSON).
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
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub integrity: IntegrityArgs,
    #[command(flatten)]
    pub allowlist: AllowlistArgs,
    /// Quarantine a container's network automatically: `critical` when it raises a Critical
    /// alert (escape, tampering, integrity, allowlist kill); `never` leaves it to
    /// `dcea quarantine`.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = crate::quarantine::agent::QuarantineOn::Never)]
    pub quarantine_on: crate::quarantine::agent::QuarantineOn,
}

/// The per-workload process allowlist.
#[derive(Debug, Args)]
pub struct AllowlistArgs {
    /// Learn each workload's programs and judge its execs against them (`off`: no profiles).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub allowlist: Switch,
    /// How long a new workload learns (`1h`, `30m`; `until-promoted`: until `dcea profile
    /// promote`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_learn)]
    pub allowlist_learn: LearnFor,
    /// What a profile becomes when learning ends: monitor (report) or enforce (kill in the
    /// kernel); enforce is the opt-in automatic promotion.
    #[arg(long, value_name = "MODE", default_value = "monitor", value_parser = parse_after)]
    pub allowlist_after: crate::allowlist::Mode,
    /// In enforce mode, also kill the runtime's execs into a container (`docker exec` of a
    /// program not in the profile); by default they are reported, not killed.
    #[arg(long)]
    pub allowlist_block_runtime_exec: bool,
    /// Profiles supplied as files (a ConfigMap mounted here): each replaces the stored profile of
    /// its name at start and whenever its file changes.
    #[arg(long, value_name = "DIR")]
    pub allowlist_dir: Option<PathBuf>,
}

/// How long a workload learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnFor(pub Option<Duration>);

fn parse_learn(s: &str) -> Result<LearnFor, String> {
    if s.trim() == "until-promoted" {
        return Ok(LearnFor(None));
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 1h, 30m, until-promoted)"))?;
    Ok(LearnFor(Some(d)))
}

fn parse_after(s: &str) -> Result<crate::allowlist::Mode, String> {
    match s {
        "monitor" => Ok(crate::allowlist::Mode::Monitor),
        "enforce" => Ok(crate::allowlist::Mode::Enforce),
        _ => Err(format!("{s:?}: monitor or enforce")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Runtime integrity: the in-memory code measurement of container processes.
#[derive(Debug, Args)]
pub struct IntegrityArgs {
    /// How often every container process's code and read-only data are checked against the
    /// files they map (`60`, `30s`, `5m`; 0 turns the periodic pass off — a process that a
    /// tampering record names is still measured at once).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_integrity_interval)]
    pub integrity_interval: Duration,
    /// Also report anonymous executable memory in container processes. Off by default: JIT
    /// runtimes (Java, Node.js, .NET) map it all the time.
    #[arg(long)]
    pub integrity_anon_exec: bool,
}

fn parse_integrity_interval(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 60, 30s, 5m, 0 to turn off)"))?,
    };
    if d > Duration::from_secs(24 * 3600) || (!d.is_zero() && d < Duration::from_millis(500)) {
        return Err("the integrity interval must be 0 (off) or between 500ms and 24h".into());
    }
    Ok(d)
}

/// Where alerts go, and how they get there.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// A sink for alerts; repeat for several at once (each has its own queue) [default:
    /// stdout]. One of: stdout | file:PATH | syslog[:unix:PATH|:udp://HOST:PORT|:tcp://HOST:PORT]
    /// (RFC 5424; plain `syslog` is unix:/dev/log) | http(s)://HOST[:PORT]/PATH (Falcosidekick:
    /// a POST of the Falco JSON; spooled under --state-dir while the receiver is down).
    #[arg(long = "output", value_name = "SINK")]
    pub outputs: Vec<OutputSpec>,
    /// Serve Prometheus metrics (/metrics) and a health check (/healthz) here, e.g.
    /// 127.0.0.1:9376 [default: not served].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Storm control: repeats of one rule for one container and executable within this
    /// window become the first alert and one summary (`dcea.suppressed`); 0s turns it off.
    /// Critical escape and tampering alerts are never folded.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_window)]
    pub storm_window: Duration,
    /// Alerts per key delivered in full within a storm window before repeats are counted.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub storm_burst: u32,
    /// Storm-control keys tracked at once (memory bound); new keys past it are not folded.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub storm_max_keys: usize,
    /// Alerts each sink's queue holds; a full queue sheds the lowest priority, oldest first.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(16..=10_000_000))]
    pub output_queue: u64,
    /// Bound of each HTTP sink's on-disk spool (`64MiB`, `1GiB`); the last tenth is kept for
    /// Critical alerts.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub spool_max_bytes: u64,
    /// PEM bundle of the CAs an https:// sink's certificate must chain to [default: the
    /// system's roots].
    #[arg(long, value_name = "PATH")]
    pub http_ca_file: Option<PathBuf>,
    /// Timeout of one HTTP delivery (connect and response).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_timeout: Duration,
    /// Rotate a file sink when it would exceed this size (0: never).
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub file_max_bytes: u64,
    /// Rotated files kept (PATH.1 … PATH.N).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub file_keep: u32,
}

fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 1m, 0s to turn off)"))?;
    if d > Duration::from_secs(24 * 3600) {
        return Err("the storm window must be at most 24h".into());
    }
    Ok(d)
}

/// `1024`, `64KiB`, `256MiB`, `1GiB` (also K/M/G, powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a size such as 64MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
}

impl DeliveryArgs {
    pub fn options(&self, format: Format, state_dir: PathBuf) -> DeliveryOptions {
        DeliveryOptions {
            outputs: if self.outputs.is_empty() { vec![OutputSpec::Stdout] } else { self.outputs.clone() },
            format,
            queue_len: self.output_queue as usize,
            storm: StormOptions { window: self.storm_window, burst: self.storm_burst, max_keys: self.storm_max_keys },
            state_dir,
            spool_max_bytes: self.spool_max_bytes,
            http_ca_file: self.http_ca_file.clone(),
            http_timeout: self.http_timeout,
            file_max_bytes: self.file_max_bytes,
            file_keep: self.file_keep,
        }
    }
}

fn parse_action(s: &str) -> Result<crate::enforce::Action, String> {
    crate::enforce::Action::parse(s).ok_or_else(|| format!("{s:?}: one of alert, kill-process, kill-container"))
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
            delivery: self.delivery.options(self.format, self.state.state_dir.clone()),
            metrics_addr: self.delivery.metrics_addr,
            cri_socket: self.cri.cri_socket.clone(),
            integrity: crate::monitor::IntegrityOptions {
                interval: self.integrity.integrity_interval,
                anon_exec: self.integrity.integrity_anon_exec,
            },
            allowlist: crate::allowlist::AllowlistOptions {
                enabled: self.allowlist.allowlist == Switch::On,
                learn: self.allowlist.allowlist_learn.0,
                after: self.allowlist.allowlist_after,
                block_runtime_exec: self.allowlist.allowlist_block_runtime_exec,
                supplied_dir: self.allowlist.allowlist_dir.clone(),
            },
            quarantine_on: self.quarantine_on,
            ..self.kernel.monitor_options(self.format)
        }
    }
}

impl KernelArgs {
    pub fn monitor_options(&self, format: Format) -> MonitorOptions {
        MonitorOptions {
            format,
            enforce: self.enforce,
            escape_action: self.escape_action,
            actions: self.actions.clone(),
            host_ns_pid: self.host_ns_pid,
            btf_path: self.btf.clone(),
            max_tasks: self.max_tasks,
            mode: Mode::Ebpf,
            interval: None,
            state_dir: crate::trust::DEFAULT_STATE_DIR.into(),
            rules: crate::rules::LoadOptions::default(),
            commit_creds: self.commit_creds,
            delivery: crate::sinks::DeliveryOptions { format, ..Default::default() },
            metrics_addr: None,
            cri_socket: None,
            integrity: Default::default(),
            allowlist: crate::allowlist::AllowlistOptions { enabled: false, ..Default::default() },
            quarantine_on: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_delivery_flags_parse() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("12 parsecs").is_err());
        let cli = Cli::try_parse_from([
            "dcea",
            "monitor",
            "--output",
            "stdout",
            "--output",
            "file:/tmp/a.json",
            "--output",
            "http://127.0.0.1:2801/",
            "--metrics-addr",
            "127.0.0.1:9376",
            "--storm-window",
            "0s",
        ])
        .unwrap();
        let Command::Monitor(m) = cli.command else { panic!("monitor") };
        let o = m.options();
        assert_eq!(o.delivery.outputs.len(), 3);
        assert_eq!(o.delivery.storm.window, Duration::ZERO);
        assert_eq!(o.metrics_addr, Some("127.0.0.1:9376".parse().unwrap()));
        let e = Cli::try_parse_from(["dcea", "monitor", "--output", "kafka://x"]).unwrap_err().to_string();
        assert!(e.contains("unknown output"), "{e}");
    }
}
