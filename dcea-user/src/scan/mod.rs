//! Static scanners: is this host or its containers exposed to a container escape, before
//! anything happens? Each target reports [`report::Finding`]s in one shared format.

pub mod config;
pub mod image;
pub mod kernel;
pub mod report;
pub mod version;

use std::{io::Write, path::PathBuf};

use crate::cli::ScanTarget;

/// Errors that stop a scan (exit status 2). Problems with single containers or probes are
/// reported as warnings instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("rules file {path}: {reason}")]
    Rules { path: PathBuf, reason: String },
    #[error("Docker engine API: {0}")]
    Docker(String),
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }

    pub fn parse(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Parse { what: what.into(), reason: reason.into() }
    }
}

/// Run one scan, print its report on stdout, and return the exit status: 0 clean, 1 when a
/// problem at or above `--fail-on` was found. Errors map to status 2 in `main`.
pub fn run(target: ScanTarget) -> Result<u8, Error> {
    let (report, output) = match target {
        ScanTarget::Kernel(args) => (kernel::scan(&args)?, args.output),
        ScanTarget::Config(args) => (config::scan(&args)?, args.output),
        // The image scan prints its own report (packages, SBOM) and progress.
        ScanTarget::Image(args) => return image::run(&args).map_err(|e| Error::parse("image scan", e.to_string())),
    };
    let text = report.render(output.resolved_format());
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not a scan failure.
    let _ = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush());
    Ok(report.exit_code(output.fail_on))
}
