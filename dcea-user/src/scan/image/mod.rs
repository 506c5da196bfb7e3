//! `dcea scan image SOURCE`: the image half of the DCEA model's vulnerability detection.
//! Reads a docker-save archive, an OCI layout or an image from the local engine as a
//! stream, builds the final filesystem view, identifies the distribution and its installed
//! packages, and matches them against an offline OSV database.

pub mod archive;
pub mod distro;
pub mod docker;
pub mod error;
pub mod fs;
pub mod layer;
pub mod osv;
pub mod packages;
mod progress;
mod render;
pub mod sbom;

use std::path::PathBuf;

pub use archive::{LoadOptions, LoadedImage, Source, load};
pub use error::{ImageError, Result};
pub use render::{ImageFinding, ScanResult};

use crate::scan::report::{OutputArgs, ReportFormat};

#[derive(Clone, Debug, clap::Args)]
pub struct ImageArgs {
    /// A `docker save` tarball, an OCI image layout (directory or tarball), or an image
    /// reference known to the local Docker engine (prefix `docker:` to force the engine).
    pub source: String,
    /// OSV database: a directory of JSON files or a zip (osv.dev exports). Default: the
    /// small embedded database.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Also write a CycloneDX 1.5 SBOM (JSON) of the installed packages to FILE.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,
    /// Refuse images that expand to more than this many GiB (decompression bombs).
    #[arg(long, default_value_t = 64, value_name = "GIB")]
    pub max_expanded_gib: u64,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Paths whose contents the scanners read; everything else streams past.
pub fn wanted(path: &str) -> bool {
    packages::wanted(path) || distro::RELEASE_FILES.contains(&path)
}

/// Reads the image and matches its packages. `progress`: show a bar on a terminal.
pub fn scan(args: &ImageArgs, progress: bool) -> Result<ScanResult> {
    let db = osv::Database::open(args.db.as_deref())?;
    let mut opts = LoadOptions { progress, ..Default::default() };
    opts.walk.blob_digest = true;
    opts.limits.max_expanded_bytes = args.max_expanded_gib.saturating_mul(1 << 30);
    let image = load(&args.source, &opts, &wanted)?;
    if let Some(m) = image.mismatches.first() {
        return Err(ImageError::metadata(
            &image.source,
            format!(
                "{} digest mismatch: expected {}, found {} (tampered or corrupt image)",
                m.what, m.expected, m.actual
            ),
        ));
    }
    render::analyse(image, db)
}

/// Runs the scan, prints the report and writes the SBOM; returns the exit status (0 clean,
/// 1 findings at or above `--fail-on`).
pub fn run(args: &ImageArgs) -> Result<u8> {
    let format = args.output.resolved_format();
    let result = scan(args, format != ReportFormat::Json)?;
    if let Some(path) = &args.sbom {
        let bom = serde_json::to_string_pretty(&sbom::cyclonedx(&result)).unwrap_or_default();
        std::fs::write(path, bom + "\n").map_err(|e| ImageError::io(format!("writing {}", path.display()), e))?;
    }
    let text = result.render(format);
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not a scan failure.
    let _ = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush());
    Ok(result.report.exit_code(args.output.fail_on))
}

#[cfg(test)]
pub(crate) mod tests;
