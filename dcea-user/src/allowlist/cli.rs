//! `dcea profile …`: the allowlist profiles on disk. Every change is a locked, atomic rewrite
//! of one file, which the running agent picks up within a second.

use std::{fmt::Write as _, fs, io::Read, path::PathBuf, process::Command, time::SystemTime};

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::{
    Mode, Profile,
    store::{self, lock, path_of},
};
use crate::trust::cli::StateDirArg;

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Every profile: name, workload, mode and entries.
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// One profile as YAML (or JSON).
    Show {
        /// Profile name (or a unique prefix of it, or the workload key).
        name: String,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Move a profile on: learn → monitor → enforce (the running agent applies it within 1 s).
    Promote {
        name: String,
        /// The mode it gets [default: the next one].
        #[arg(long, value_enum)]
        to: Option<Mode>,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Move a profile back: enforce → monitor → learn (learn lasts until promoted again).
    Demote {
        name: String,
        #[arg(long, value_enum)]
        to: Option<Mode>,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Edit a profile in $EDITOR (vi): it is validated before it replaces the stored one.
    Edit {
        name: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Delete a profile: its workload learns afresh at its next exec.
    Reset {
        name: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Print a profile as YAML (to keep it in git, or a ConfigMap for --allowlist-dir).
    Export {
        name: String,
        /// Write here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Store a profile from a YAML file (`-` for stdin), replacing one of the same name.
    Import {
        file: PathBuf,
        #[command(flatten)]
        state: StateDirArg,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

fn dir(state: &StateDirArg) -> PathBuf {
    state.state_dir.join(store::DIR)
}

/// A profile by name, unique name prefix or workload key; its stored copy.
fn find(state: &StateDirArg, wanted: &str) -> Result<Profile, String> {
    let dir = dir(state);
    let files = store::list(&dir);
    let mut hits: Vec<Profile> = Vec::new();
    for (name, path) in &files {
        match store::read(path) {
            Ok(Some(p)) if name == wanted || p.workload == wanted => return Ok(p),
            Ok(Some(p)) if name.starts_with(wanted) => hits.push(p),
            _ => {}
        }
    }
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(format!("no profile {wanted:?} in {} (dcea profile list shows them)", dir.display())),
        n => Err(format!(
            "{wanted:?} names {n} profiles: {}",
            hits.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn profile_json(p: &Profile) -> serde_json::Value {
    json!({
        "name": p.name,
        "workload": p.workload,
        "mode": p.mode_at(SystemTime::now()).name(),
        "learn_until": p.learn_until,
        "after": p.after.name(),
        "created": p.created,
        "updated": p.updated,
        "entries": p.entries,
    })
}

pub fn run(command: ProfileCommand) -> Result<u8, String> {
    match command {
        ProfileCommand::List { format, state } => {
            let mut out = Vec::new();
            let mut bad = Vec::new();
            for (_, path) in store::list(&dir(&state)) {
                match store::read(&path) {
                    Ok(Some(p)) => out.push(p),
                    Ok(None) => {}
                    Err(e) => bad.push(format!("{}: {e}", path.display())),
                }
            }
            for b in &bad {
                eprintln!("dcea: corrupt profile {b} (the agent sets it aside)");
            }
            match format {
                ListFormat::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&out.iter().map(profile_json).collect::<Vec<_>>())
                            .unwrap_or_default()
                    )
                }
                ListFormat::Text => print!("{}", list_text(&out)),
            }
            Ok(0)
        }
        ProfileCommand::Show { name, format, state } => {
            let p = find(&state, &name)?;
            match format {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&profile_json(&p)).unwrap_or_default()),
                ListFormat::Text => print!("{}", p.to_yaml()),
            }
            Ok(0)
        }
        ProfileCommand::Promote { name, to, state } => change_mode(&state, &name, to, true),
        ProfileCommand::Demote { name, to, state } => change_mode(&state, &name, to, false),
        ProfileCommand::Edit { name, state } => edit(&state, &name),
        ProfileCommand::Reset { name, state } => {
            let p = find(&state, &name)?;
            let _lock = lock(&dir(&state)).map_err(|e| e.to_string())?;
            fs::remove_file(path_of(&dir(&state), &p.name)).map_err(|e| format!("removing profile {}: {e}", p.name))?;
            eprintln!("dcea: profile {} removed: workload {} learns afresh at its next exec", p.name, p.workload);
            Ok(0)
        }
        ProfileCommand::Export { name, output, state } => {
            let text = find(&state, &name)?.to_yaml();
            match output {
                Some(path) => fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(0)
        }
        ProfileCommand::Import { file, state } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text).map_err(|e| format!("stdin: {e}"))?;
            } else {
                text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            }
            let p = Profile::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let _lock = lock(&dir(&state)).map_err(|e| e.to_string())?;
            let path = store::write(&dir(&state), &p).map_err(|e| e.to_string())?;
            eprintln!(
                "dcea: profile {} ({}, {} entries) stored as {}",
                p.name,
                p.mode.name(),
                p.entries.len(),
                path.display()
            );
            Ok(0)
        }
    }
}

fn list_text(profiles: &[Profile]) -> String {
    let mut s = String::new();
    if profiles.is_empty() {
        s.push_str("no profiles\n");
        return s;
    }
    let width = profiles.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(s, "{:width$}  {:8}  {:>7}  WORKLOAD", "NAME", "MODE", "ENTRIES");
    for p in profiles {
        let _ = writeln!(
            s,
            "{:width$}  {:8}  {:>7}  {}",
            p.name,
            p.mode_at(SystemTime::now()).name(),
            p.entries.len(),
            p.workload
        );
    }
    s
}

fn change_mode(state: &StateDirArg, name: &str, to: Option<Mode>, up: bool) -> Result<u8, String> {
    let _lock = lock(&dir(state)).map_err(|e| e.to_string())?;
    let mut p = find(state, name)?;
    let now = SystemTime::now();
    let from = p.mode_at(now);
    let to = to.unwrap_or(match (from, up) {
        (Mode::Learn, true) => p.after,
        (Mode::Monitor, true) | (Mode::Enforce, _) => {
            if up {
                Mode::Enforce
            } else {
                Mode::Monitor
            }
        }
        (Mode::Monitor, false) | (Mode::Learn, false) => Mode::Learn,
    });
    p.set_mode(to, now);
    store::write(&dir(state), &p).map_err(|e| e.to_string())?;
    eprintln!("dcea: profile {}: {} → {} ({} entries)", p.name, from.name(), to.name(), p.entries.len());
    Ok(0)
}

fn edit(state: &StateDirArg, name: &str) -> Result<u8, String> {
    let p = find(state, name)?;
    let tmp = tempfile::Builder::new().suffix(".yaml").tempfile().map_err(|e| e.to_string())?;
    fs::write(tmp.path(), p.to_yaml()).map_err(|e| e.to_string())?;
    let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(tmp.path())
        .status()
        .map_err(|e| format!("running {editor}: {e}"))?;
    if !status.success() {
        return Err(format!("{editor} exited with {status}: profile {} unchanged", p.name));
    }
    let text = fs::read_to_string(tmp.path()).map_err(|e| e.to_string())?;
    let mut edited =
        Profile::parse(&text).map_err(|e| format!("the edited profile is not valid ({e}): {} unchanged", p.name))?;
    if edited.name != p.name {
        return Err(format!(
            "the edit renamed the profile to {:?}: {} unchanged (export and import to copy it)",
            edited.name, p.name
        ));
    }
    edited.updated = super::profile::rfc3339(SystemTime::now());
    let _lock = lock(&dir(state)).map_err(|e| e.to_string())?;
    store::write(&dir(state), &edited).map_err(|e| e.to_string())?;
    eprintln!("dcea: profile {} saved ({}, {} entries)", edited.name, edited.mode.name(), edited.entries.len());
    Ok(0)
}
