//! `dcea integrity show`: what the agent measured (image baselines) and what it found.

use std::{fmt::Write as _, fs, path::PathBuf};

use clap::{Args, Subcommand};

use super::{baseline, findings};
use crate::trust::cli::StateDirArg;

#[derive(Debug, Subcommand)]
pub enum IntegrityCommand {
    /// Print the image baselines and the findings: modified image files, files not in the
    /// image, fileless code, and code modified in memory.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only this container (an id or a prefix of it).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateDirArg,
}

pub fn run(command: IntegrityCommand) -> Result<u8, String> {
    let IntegrityCommand::Show(args) = command;
    print!("{}", show(&args)?);
    Ok(0)
}

/// Each stored baseline file and what it holds (or why it cannot be read).
type StoredBaselines = Vec<(PathBuf, Result<baseline::BaselineFile, String>)>;

fn baselines(args: &ShowArgs) -> Result<StoredBaselines, String> {
    let dir = baseline::dir(&args.state.state_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    };
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let parsed = fs::read(&p).map_err(|e| e.to_string()).and_then(|b| baseline::parse(&b));
            (p, parsed)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn show(args: &ShowArgs) -> Result<String, String> {
    let (mut found, unreadable) = findings::load(&args.state.state_dir);
    if let Some(c) = &args.container {
        found.retain(|f| f.container_id.starts_with(c.as_str()));
    }
    let images = baselines(args)?;
    if args.json {
        let images: Vec<_> = images
            .iter()
            .map(|(p, b)| match b {
                Ok(b) => serde_json::json!({ "path": p, "image": b.image, "files": b.files }),
                Err(e) => serde_json::json!({ "path": p, "error": e }),
            })
            .collect();
        let doc = serde_json::json!({ "baselines": images, "findings": found, "unreadable_findings": unreadable });
        return Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "image baselines ({}):", images.len());
    for (p, b) in &images {
        match b {
            Ok(b) => {
                let present = b.files.values().filter(|e| e.is_some()).count();
                let _ = writeln!(
                    out,
                    "  {}: {present} files measured, {} paths not in the image",
                    b.image,
                    b.files.len() - present
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  {}: unreadable ({e}); the agent sets it aside and rebuilds it", p.display());
            }
        }
    }
    let _ = writeln!(out, "findings ({}):", found.len());
    for f in &found {
        let hashes = match (&f.sha256, &f.image_sha256) {
            (Some(s), Some(i)) => format!(" sha256={s} image_sha256={i}"),
            (Some(s), None) => format!(" sha256={s}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {} {} pid={} {} {}{hashes}", f.time, f.container_id, f.pid, f.verdict, f.what);
    }
    if unreadable > 0 {
        let _ = writeln!(out, "({unreadable} unreadable lines in {})", findings::path(&args.state.state_dir).display());
    }
    Ok(out)
}
