//! dcea: detect (and on request prevent) container escapes.
//!
//! Capabilities, one folder each: `monitor` (kernel programs, ring buffer, start-up report),
//! `trust` (host reference and transition verdicts), `container` (which container a process
//! belongs to), `output` (Falco-shaped alerts as JSON lines or text), `rules` (Falco-language
//! behaviour rules: loader, compiler, evaluator, default ruleset), `sinks` (the one delivery
//! stage: storm control, per-sink queues, stdout/file/syslog/HTTP with a spool), `metrics`
//! (Prometheus series and the health check), `integrity` (programs, libraries and in-memory
//! code of containers checked against their image), `config` (the monitor's config file and
//! `DCEA_*` variables, layered over its flags), `quarantine` (network quarantine of a container:
//! cgroup BPF programs pinned in bpffs, with who asked and why).

pub mod allowlist;
pub mod cli;
pub mod config;
pub mod container;
pub mod enforce;
pub mod integrity;
pub mod measure;
pub mod metrics;
pub mod monitor;
pub mod output;
pub mod quarantine;
pub mod rules;
pub mod scan;
pub mod sentinel;
pub mod sinks;
pub mod sys;
pub mod trust;

use std::path::PathBuf;

/// Errors a user can act on. Every variant's message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dcea monitor must run as root (it loads eBPF programs); run it with sudo or as a privileged DaemonSet")]
    NotRoot,
    #[error(
        "kernel BTF not found at {0}: dcea needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.10+ distribution kernels have it)"
    )]
    NoBtf(PathBuf),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("this dcea binary was built without its eBPF object (AYA_BUILD_SKIP); rebuild with `cargo xtask build`")]
    NoEbpfObject,
    #[error("loading the eBPF object: {0}")]
    Load(String),
    #[error("required program {program} failed to {stage}: {reason}")]
    Program { program: String, stage: &'static str, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("host namespace reference: {0}")]
    HostReference(String),
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
