//! Image measurement (the hardening paper's "measure images before a container starts"):
//! every layer's digest checked against the manifest and the config's diff_ids, and a
//! record of the manifest, config, layer digests and a SHA-256 of every regular file in the
//! final filesystem. `--save` stores the record; `--verify` names what changed since.

mod record;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

pub use record::{Diff, FileRecord, LayerRecord, Record, diff, load_record, record_path, save_record};

use crate::scan::image::{self, ImageError, LoadOptions};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/dcea";

#[derive(Debug, Subcommand)]
pub enum MeasureTarget {
    /// Measure an image: a `docker save` tarball, an OCI layout, or an engine reference.
    Image(MeasureImageArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MeasureFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct MeasureImageArgs {
    /// A `docker save` tarball, an OCI image layout (directory or tarball), or an image
    /// reference known to the local Docker engine.
    pub source: String,
    /// Store the measurement as the trusted reference for this image.
    #[arg(long, conflicts_with = "verify")]
    pub save: bool,
    /// Compare with the saved measurement; exit 1 and name every changed layer and file.
    #[arg(long)]
    pub verify: bool,
    /// Where measurements are kept.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Name the record is kept under [default: the image's first tag, else SOURCE].
    #[arg(long)]
    pub name: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = MeasureFormat::Text)]
    pub format: MeasureFormat,
}

/// Reads the image with every digest computed.
pub fn measure(source: &str, name: Option<&str>, progress: bool) -> Result<Record, ImageError> {
    let mut opts = LoadOptions { progress, ..Default::default() };
    opts.walk.blob_digest = true;
    opts.walk.diff_id = true;
    opts.walk.file_digests = true;
    let img = image::load(source, &opts, &|_| false)?;
    Ok(Record::from_image(&img, name))
}

/// Runs `dcea measure image`; returns the exit status (0 ok, 1 changed or inconsistent).
pub fn run(args: &MeasureImageArgs) -> Result<u8, ImageError> {
    let rec = measure(&args.source, args.name.as_deref(), args.format == MeasureFormat::Text)?;
    let json = args.format == MeasureFormat::Json;
    let mut out = String::new();
    let status;
    if args.verify {
        let path = record_path(&args.state_dir, &rec.name);
        let saved = load_record(&path)?.ok_or_else(|| {
            ImageError::metadata(
                &rec.name,
                format!(
                    "no saved measurement at {}; run `dcea measure image {} --save` first",
                    path.display(),
                    args.source
                ),
            )
        })?;
        let d = diff(&saved, &rec);
        status = u8::from(!d.is_clean());
        out = if json { serde_json::to_string_pretty(&d).unwrap_or_default() + "\n" } else { d.render_text() };
    } else {
        if !rec.mismatches.is_empty() {
            // A record of an image that contradicts its own metadata would be worthless.
            let lines: Vec<String> = rec
                .mismatches
                .iter()
                .map(|m| format!("{}: expected {}, found {}", m.what, m.expected, m.actual))
                .collect();
            return Err(ImageError::metadata(&rec.name, format!("digest check failed: {}", lines.join("; "))));
        }
        if args.save {
            let path = save_record(&args.state_dir, &rec)?;
            if !json {
                out.push_str(&format!("saved measurement of {} to {}\n", rec.name, path.display()));
            }
        }
        if json {
            out.push_str(&(serde_json::to_string_pretty(&rec).unwrap_or_default() + "\n"));
        } else {
            out.push_str(&rec.summary());
        }
        status = 0;
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush());
    Ok(status)
}

#[cfg(test)]
mod tests;
