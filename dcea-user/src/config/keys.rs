//! Settings are `dcea monitor`'s clap arguments, read from clap itself: a new flag is a config
//! key and a `DCEA_*` variable the moment it exists, typed by its own value parser.

use clap::{Arg, ArgAction, Command, CommandFactory};

/// Arguments that are not settings: the config path itself and clap's own.
const NOT_SETTINGS: &[&str] = &["config", "help", "version"];

/// How an argument's values become command-line tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `--flag`, no value (`negated`: the flag sets false).
    Flag { negated: bool },
    /// `--flag` repeated N times.
    Count,
    /// `--key=VALUE` once.
    One,
    /// `--key=VALUE` per value.
    Many,
}

/// One setting: a monitor argument with its config key and environment variable.
#[derive(Clone, Debug)]
pub struct Setting {
    /// snake_case, as printed by `dcea config default`.
    pub key: String,
    /// `DCEA_<KEY>`, or the variable the argument already declares (`DCEA_LOG`).
    pub env: String,
    pub long: String,
    pub shape: Shape,
    pub arg: Arg,
}

impl Setting {
    fn new(arg: &Arg) -> Option<Setting> {
        let long = arg.get_long()?;
        if arg.is_positional() || NOT_SETTINGS.contains(&arg.get_id().as_str()) {
            return None;
        }
        let shape = match arg.get_action() {
            ArgAction::SetTrue => Shape::Flag { negated: false },
            ArgAction::SetFalse => Shape::Flag { negated: true },
            ArgAction::Count => Shape::Count,
            ArgAction::Append => Shape::Many,
            ArgAction::Set if arg.get_num_args().is_some_and(|n| n.max_values() > 1) => Shape::Many,
            ArgAction::Set => Shape::One,
            _ => return None,
        };
        let key = long.replace('-', "_");
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("DCEA_{}", key.to_ascii_uppercase()));
        Some(Setting { key, env, long: long.to_string(), shape, arg: arg.clone() })
    }

    /// Does `key` (as written in a file: snake_case, kebab-case, or a long alias) name this?
    pub fn answers_to(&self, key: &str) -> bool {
        let norm = key.replace('-', "_");
        norm == self.key || self.arg.get_all_aliases().unwrap_or_default().iter().any(|a| a.replace('-', "_") == norm)
    }

    /// Command-line tokens for `values` (already checked for shape).
    pub fn tokens(&self, values: &[String]) -> Vec<String> {
        match self.shape {
            Shape::Flag { negated } => {
                let on = values.first().is_some_and(|v| parse_bool(v) == Some(true));
                if on != negated { vec![format!("--{}", self.long)] } else { Vec::new() }
            }
            Shape::Count => {
                let n = values.first().and_then(|v| v.parse::<u8>().ok()).unwrap_or(0);
                vec![format!("--{}", self.long); n as usize]
            }
            Shape::One | Shape::Many => values.iter().map(|v| format!("--{}={v}", self.long)).collect(),
        }
    }

    /// Shape errors clap cannot report against a key (values of flags are not clap values).
    pub fn check_shape(&self, values: &[String]) -> Result<(), String> {
        match self.shape {
            Shape::Flag { .. } => match values {
                [v] if parse_bool(v).is_some() => Ok(()),
                [v] => Err(format!("expected true or false, found '{v}'")),
                _ => Err("expected true or false, found a list".into()),
            },
            Shape::Count => match values {
                [v] if v.parse::<u8>().is_ok() => Ok(()),
                _ => Err("expected a count (0-255)".into()),
            },
            Shape::One if values.len() != 1 => Err(format!("takes one value, found a list of {}", values.len())),
            _ => Ok(()),
        }
    }

    /// Values from an environment variable (lists are comma-separated).
    pub fn split_env(&self, raw: &str) -> Vec<String> {
        match self.shape {
            Shape::Many => raw.split(self.arg.get_value_delimiter().unwrap_or(',')).map(str::to_string).collect(),
            _ => vec![raw.to_string()],
        }
    }
}

/// YAML 1.2's core booleans.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// The whole command line, built (global arguments propagated to subcommands).
pub fn cli_command() -> Command {
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    cmd
}

pub const SUBCOMMAND: &str = "monitor";

/// Every setting of `dcea monitor`, in the order `--help` lists them.
pub fn settings(cli: &Command) -> Vec<Setting> {
    let Some(monitor) = cli.find_subcommand(SUBCOMMAND) else { return Vec::new() };
    let mut args: Vec<&Arg> = monitor.get_arguments().collect();
    args.sort_by_key(|a| a.get_display_order());
    args.into_iter().filter_map(Setting::new).collect()
}

/// The setting `key` names, with the closest known key as a hint when none does.
pub fn lookup<'s>(settings: &'s [Setting], key: &str) -> Result<&'s Setting, String> {
    if let Some(s) = settings.iter().find(|s| s.answers_to(key)) {
        return Ok(s);
    }
    let norm = key.replace('-', "_");
    let hint = settings
        .iter()
        .map(|s| (strsim::jaro_winkler(&norm, &s.key), &s.key))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    Err(format!("unknown key `{key}`{hint}; `dcea config default` lists every key"))
}
