//! `dcea quarantine CONTAINER [--allow-dns] [--reason TEXT]`, `dcea quarantine release
//! CONTAINER`, `dcea quarantine list [--format json]`.

use clap::{Args, Subcommand};

use super::state::Requester;
use crate::trust::cli::{ShowFormat, StateDirArg};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct QuarantineArgs {
    #[command(subcommand)]
    pub command: Option<QuarantineCommand>,
    /// Container id, a prefix of 12 or more digits, or a Docker name.
    #[arg(required = true)]
    pub container: Option<String>,
    /// Let DNS through (connect/sendmsg to port 53, packets to and from port 53).
    #[arg(long)]
    pub allow_dns: bool,
    /// Why, for the alert and the record.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub state: StateDirArg,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Lift a quarantine: the programs detach, the container's network works again.
    Release {
        /// Container id, a prefix of 12 or more digits, or its name.
        container: String,
        /// Why, for the alert.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// The quarantined containers, who asked and why.
    List {
        #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
        format: ShowFormat,
        #[command(flatten)]
        state: StateDirArg,
    },
}

pub fn run(args: QuarantineArgs) -> Result<u8, String> {
    match args.command {
        Some(QuarantineCommand::Release { container, reason, state }) => {
            let r =
                super::release(&state.state_dir, &container, Requester::cli(), &reason).map_err(|e| e.to_string())?;
            println!("dcea: released the network quarantine of {} ({})", r.label(), r.container_id);
            Ok(0)
        }
        Some(QuarantineCommand::List { format, state }) => {
            let (list, problems) = super::list(&state.state_dir);
            for p in &problems {
                eprintln!("dcea: WARNING: {p}");
            }
            match format {
                ShowFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?)
                }
                ShowFormat::Text => {
                    if list.is_empty() {
                        println!("no container is quarantined");
                    }
                    for l in &list {
                        let short = &l.container_id[..l.container_id.len().min(12)];
                        let state = if l.pinned { "quarantined" } else { "record only (pins gone)" };
                        match &l.record {
                            Some(r) => println!(
                                "{short}  {:<20} {state}  since {} by {} ({}){}  reason: {}",
                                l.name.as_deref().unwrap_or("-"),
                                r.at,
                                r.by.user,
                                r.by.origin,
                                if r.allow_dns { "  dns allowed" } else { "" },
                                if r.reason.is_empty() { "-" } else { &r.reason }
                            ),
                            None => println!("{short}  {:<20} {state}  (no record)", "-"),
                        }
                    }
                }
            }
            Ok(0)
        }
        None => {
            let container = args.container.unwrap_or_default();
            let root = super::cgroup::v2_root().map_err(|e| e.to_string())?;
            let target = super::resolve(&container, Some(&root)).map_err(|e| e.to_string())?;
            let out = super::quarantine(&args.state.state_dir, &target, args.allow_dns, Requester::cli(), &args.reason)
                .map_err(|e| e.to_string())?;
            if out.already {
                println!("dcea: {} ({}) is already quarantined", out.record.label(), target.id);
                return Ok(0);
            }
            let insns: Vec<String> = out
                .programs
                .iter()
                .map(|p| match p.verified_insns {
                    Some(n) => format!("{} ({n} insns)", p.program),
                    None => p.program.to_string(),
                })
                .collect();
            println!(
                "dcea: quarantined {} ({}): network cut off except loopback{}; cgroup {}; programs {}",
                out.record.label(),
                target.id,
                if args.allow_dns { " and DNS" } else { "" },
                out.record.cgroup,
                insns.join(", ")
            );
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn the_three_forms_parse() {
        let q = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Quarantine(q) => q,
            _ => panic!("quarantine"),
        };
        let a = q(&["dcea", "quarantine", "web", "--allow-dns", "--reason", "escape"]);
        assert_eq!((a.container.as_deref(), a.allow_dns, a.reason.as_str()), (Some("web"), true, "escape"));
        let r = q(&["dcea", "quarantine", "release", "web", "--state-dir", "/tmp/x"]);
        assert!(
            matches!(r.command, Some(super::QuarantineCommand::Release { ref container, .. }) if container == "web")
        );
        let l = q(&["dcea", "quarantine", "list", "--format", "json"]);
        assert!(matches!(l.command, Some(super::QuarantineCommand::List { .. })));
        assert!(Cli::try_parse_from(["dcea", "quarantine"]).is_err());
    }
}
