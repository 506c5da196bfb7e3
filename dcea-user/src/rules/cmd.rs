//! `dcea rules validate|list|fields`.

use std::{io::IsTerminal, path::PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{DEFAULT_RULES_DIR, Diagnostic, LoadOptions, RuleSet, fields};
use crate::output::Format;

/// Which rules to load (shared by `dcea monitor` and `dcea rules list`).
#[derive(Debug, Clone, Args)]
pub struct RulesSourceArgs {
    /// Directory of local rules files (*.yaml, *.yml), loaded after the embedded defaults in
    /// lexical order. A missing directory is fine.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_RULES_DIR)]
    pub rules_dir: PathBuf,
    /// Do not load the embedded default ruleset.
    #[arg(long)]
    pub no_default_rules: bool,
}

impl RulesSourceArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            default_rules: !self.no_default_rules,
            rules_dir: Some(self.rules_dir.clone()),
            files: Vec::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rules files (loaded after the embedded defaults, in the order given). Prints every
    /// error as FILE:LINE:COLUMN: message. Exit status: 0 valid, 1 invalid.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Validate the files alone, without the embedded defaults they may build on.
        #[arg(long)]
        no_default_rules: bool,
    },
    /// List the rules dcea would load: name, priority, enabled, tags, source file.
    List {
        #[command(flatten)]
        source: RulesSourceArgs,
        /// Table on a terminal, JSON for tools.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the fields conditions and outputs can use.
    Fields {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Serialize)]
struct RuleRow<'a> {
    name: &'a str,
    priority: crate::output::Priority,
    enabled: bool,
    tags: &'a [String],
    source: &'a str,
    line: u32,
    event_types: Vec<&'static str>,
}

fn print_diags(kind: &str, diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{kind}: {d}");
    }
}

/// Run a rules command; the exit status.
pub fn run(cmd: RulesCommand) -> Result<u8, String> {
    match cmd {
        RulesCommand::Validate { files, no_default_rules } => {
            let opts = LoadOptions { default_rules: !no_default_rules, rules_dir: None, files };
            match RuleSet::load(&opts) {
                Ok(set) => {
                    print_diags("warning", set.warnings());
                    let enabled = set.rules().iter().filter(|r| r.enabled).count();
                    println!(
                        "ok: {} rules ({enabled} enabled), {} macros, {} lists from {} file(s)",
                        set.rules().len(),
                        set.macro_count(),
                        set.list_count(),
                        set.files().len()
                    );
                    Ok(0)
                }
                Err(e) => {
                    print_diags("error", &e.errors);
                    print_diags("warning", &e.warnings);
                    eprintln!("invalid: {} error(s)", e.errors.len());
                    Ok(1)
                }
            }
        }
        RulesCommand::List { source, format } => {
            let set = RuleSet::load(&source.load_options()).map_err(|e| e.to_string())?;
            print_diags("warning", set.warnings());
            let rows: Vec<RuleRow> = set
                .rules()
                .iter()
                .map(|r| RuleRow {
                    name: &r.name,
                    priority: r.priority,
                    enabled: r.enabled,
                    tags: &r.tags,
                    source: &r.file,
                    line: r.line,
                    event_types: r.types.iter().map(|t| t.name()).collect(),
                })
                .collect();
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?),
                Format::Text => print!("{}", rules_table(&rows)),
            }
            Ok(0)
        }
        RulesCommand::Fields { format } => {
            match format {
                Format::Json => {
                    let rows: Vec<_> = fields::FIELDS
                        .iter()
                        .map(|f| serde_json::json!({"name": f.name, "type": f.ty.name(), "desc": f.desc}))
                        .chain(std::iter::once(serde_json::json!({
                            "name": "dcea.ns.<kind>", "type": "number",
                            "desc": "namespace inode (kind: mnt, pid, pid_for_children, net, uts, ipc, user, cgroup, time)"
                        })))
                        .chain(std::iter::once(serde_json::json!({
                            "name": "dcea.ns.<kind>.is_host", "type": "bool",
                            "desc": "the task is in the host's namespace of that kind"
                        })))
                        .chain(std::iter::once(serde_json::json!({
                            "name": "dcea.ns.<kind>.is_nested", "type": "bool",
                            "desc": "the task's namespace of that kind is neither the host's nor the container's own: the container created it"
                        })))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
                }
                Format::Text => {
                    for f in fields::FIELDS {
                        println!("{:<28} {:<16} {}", f.name, f.ty.name(), f.desc);
                    }
                    println!(
                        "{:<28} {:<16} namespace inode (mnt, pid, pid_for_children, net, uts, ipc, user, cgroup, time)",
                        "dcea.ns.<kind>", "number"
                    );
                    println!(
                        "{:<28} {:<16} the task is in the host's namespace of that kind",
                        "dcea.ns.<kind>.is_host", "bool"
                    );
                    println!(
                        "{:<28} {:<16} neither the host's nor the container's own namespace: the container created it",
                        "dcea.ns.<kind>.is_nested", "bool"
                    );
                }
            }
            Ok(0)
        }
    }
}

fn rules_table(rows: &[RuleRow]) -> String {
    let color = std::io::stdout().is_terminal();
    let width = |f: &dyn Fn(&RuleRow) -> usize, title: &str| rows.iter().map(f).max().unwrap_or(0).max(title.len());
    let w_name = width(&|r| r.name.chars().count(), "RULE");
    let w_tags = width(&|r| r.tags.join(",").chars().count(), "TAGS");
    let mut out = format!("{:<w_name$}  {:<13}  {:<7}  {:<w_tags$}  SOURCE\n", "RULE", "PRIORITY", "ENABLED", "TAGS");
    for r in rows {
        let line = format!(
            "{:<w_name$}  {:<13}  {:<7}  {:<w_tags$}  {}:{}",
            r.name,
            format!("{:?}", r.priority),
            if r.enabled { "yes" } else { "no" },
            r.tags.join(","),
            r.source,
            r.line
        );
        if color && !r.enabled {
            out.push_str(&format!("\x1b[2m{line}\x1b[0m\n"));
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}
