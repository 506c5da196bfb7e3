//! Where each setting's value comes from, strongest first: its `DCEA_*` environment variable,
//! the command line, the config file, clap's default. The winners are written back as one
//! command line and parsed by clap, so every value goes through the flag's own value parser
//! and the monitor sees exactly what the equivalent flags would give it.

use std::{ffi::OsString, path::PathBuf};

use clap::{
    FromArgMatches,
    error::{ContextKind, ContextValue, ErrorKind},
    parser::{ArgMatches, ValueSource},
};

use super::{
    ConfigError, DEFAULT_PATH, file,
    keys::{self, SUBCOMMAND, Setting, Shape},
};
use crate::cli::Cli;

/// Why the command line could not become a [`Cli`].
#[derive(Debug)]
pub enum CliError {
    /// clap's own (usage, `--help`, `--version`): `exit()` prints it as clap would.
    Clap(clap::Error),
    Config(Vec<ConfigError>),
}

/// Where a value was written, for errors.
#[derive(Clone, Debug)]
enum Origin {
    Env(String),
    File(String, Option<crate::rules::yaml::Pos>),
}

impl Origin {
    fn error(&self, key: &str, message: String) -> ConfigError {
        match self {
            Origin::Env(name) => {
                ConfigError { origin: format!("environment variable {name}"), pos: None, key: key.into(), message }
            }
            Origin::File(path, pos) => ConfigError { origin: path.clone(), pos: *pos, key: key.into(), message },
        }
    }
}

/// A value for a setting from one layer.
#[derive(Clone, Debug)]
struct Layer<'s> {
    setting: &'s Setting,
    /// The key as written (the variable's for the environment).
    key: String,
    values: Vec<String>,
    origin: Origin,
}

/// Parse the process's own command line with its config file and environment.
pub fn parse_cli() -> Result<Cli, CliError> {
    parse_cli_from(std::env::args_os(), &|name| std::env::var_os(name))
}

/// [`parse_cli`] over given arguments and environment (tests).
pub fn parse_cli_from<I, T>(args: I, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::from_arg_matches(&merged_matches(args, env)?).map_err(CliError::Clap)
}

/// The command line's matches after layering: for `dcea monitor`, as if every setting's
/// winning value had been given as a flag.
pub fn merged_matches<I, T>(args: I, env: &dyn Fn(&str) -> Option<OsString>) -> Result<ArgMatches, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cmd = keys::cli_command();
    let matches = cmd.clone().try_get_matches_from(args).map_err(CliError::Clap)?;
    let Some(sub) = matches.subcommand_matches(SUBCOMMAND) else { return Ok(matches) };
    let settings = keys::settings(&cmd);
    let (file_layers, mut errors) = match config_path(sub) {
        Some(path) => load_file(&settings, &path)?,
        None => (Vec::new(), Vec::new()),
    };
    let env_layers = env_layers(&settings, env)?;
    errors.extend(check(&file_layers));
    errors.extend(check(&env_layers));
    if !errors.is_empty() {
        return Err(CliError::Config(in_file_order(errors)));
    }

    let mut argv: Vec<String> = vec!["dcea".into(), SUBCOMMAND.into()];
    if let Some(config) = sub.get_raw("config").and_then(|mut v| v.next()) {
        argv.push(format!("--config={}", config.to_string_lossy()));
    }
    for s in &settings {
        let values = if let Some(l) = env_layers.iter().find(|l| l.setting.key == s.key) {
            l.values.clone()
        } else if sub.value_source(s.arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            command_line_values(sub, s)
        } else if let Some(l) = file_layers.iter().find(|l| l.setting.key == s.key) {
            l.values.clone()
        } else {
            continue;
        };
        argv.extend(s.tokens(&values));
    }
    cmd.try_get_matches_from(argv).map_err(CliError::Clap)
}

/// `--config PATH` (or `DCEA_CONFIG`) must exist; the default path is read when it does.
fn config_path(sub: &ArgMatches) -> Option<PathBuf> {
    match sub.get_one::<PathBuf>("config") {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

type Layers<'s> = (Vec<Layer<'s>>, Vec<ConfigError>);

/// The file's entries as layers, and the errors of those that are none: unknown keys, keys
/// given twice, malformed values (each naming the key and its line).
fn load_file<'s>(settings: &'s [Setting], path: &std::path::Path) -> Result<Layers<'s>, CliError> {
    let origin = path.display().to_string();
    let text = file::read(path).map_err(|e| {
        CliError::Config(vec![ConfigError {
            origin: origin.clone(),
            pos: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    file_layers(settings, &origin, &text).map_err(CliError::Config)
}

fn file_layers<'s>(settings: &'s [Setting], origin: &str, text: &str) -> Result<Layers<'s>, Vec<ConfigError>> {
    let entries = file::parse(origin, text)?;
    let mut errors = Vec::new();
    let mut layers: Vec<(Layer, &file::Entry)> = Vec::new();
    for entry in &entries {
        let setting = match keys::lookup(settings, &entry.key) {
            Ok(s) => s,
            Err(message) => {
                errors.push(ConfigError::at(origin, entry.key_pos, &entry.key, message));
                continue;
            }
        };
        if let Some((_, first)) = layers.iter().find(|(l, _)| l.setting.key == setting.key) {
            errors.push(ConfigError::at(
                origin,
                entry.key_pos,
                &entry.key,
                format!("`{}` is already set on line {}", setting.key, first.key_pos.line),
            ));
            continue;
        }
        let values = match &entry.value {
            file::Value::Unset => continue,
            file::Value::One(v, _) => vec![v.clone()],
            file::Value::Many(items) => items.iter().map(|(v, _)| v.clone()).collect(),
        };
        let pos = entry.value.pos().or(Some(entry.key_pos));
        let origin = Origin::File(origin.into(), pos);
        layers.push((Layer { setting, key: entry.key.clone(), values, origin }, entry));
    }
    Ok((layers.into_iter().map(|(l, _)| l).collect(), errors))
}

/// Validate a config file's text against the monitor's settings (`dcea config check`).
pub fn check_text(origin: &str, text: &str) -> Result<usize, Vec<ConfigError>> {
    let cmd = keys::cli_command();
    let settings = keys::settings(&cmd);
    let (layers, mut errors) = file_layers(&settings, origin, text)?;
    errors.extend(check(&layers));
    if errors.is_empty() { Ok(layers.len()) } else { Err(in_file_order(errors)) }
}

fn in_file_order(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by(|a, b| (&a.origin, a.pos).cmp(&(&b.origin, b.pos)));
    errors
}

fn env_layers<'s>(settings: &'s [Setting], env: &dyn Fn(&str) -> Option<OsString>) -> Result<Vec<Layer<'s>>, CliError> {
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    for s in settings {
        let Some(raw) = env(&s.env).filter(|v| !v.is_empty()) else { continue };
        let origin = Origin::Env(s.env.clone());
        match raw.to_str() {
            Some(v) => layers.push(Layer { setting: s, key: s.key.clone(), values: s.split_env(v), origin }),
            None => errors.push(origin.error(&s.key, "not valid UTF-8".into())),
        }
    }
    if errors.is_empty() { Ok(layers) } else { Err(CliError::Config(errors)) }
}

pub fn command_line_values(sub: &ArgMatches, s: &Setting) -> Vec<String> {
    let id = s.arg.get_id().as_str();
    match s.shape {
        Shape::Count => vec![sub.get_count(id).to_string()],
        _ => sub.get_raw(id).map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect()).unwrap_or_default(),
    }
}

/// Every error in `layers`: shapes first, then the values through clap's parsers. clap stops
/// at the first bad argument, so the culprit is taken out and the rest parsed again.
fn check(layers: &[Layer]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut left: Vec<&Layer> = Vec::new();
    for l in layers {
        match l.setting.check_shape(&l.values) {
            Ok(()) => left.push(l),
            Err(m) => errors.push(l.origin.error(&l.key, m)),
        }
    }
    let cmd = keys::cli_command();
    while !left.is_empty() {
        let mut argv: Vec<String> = vec!["dcea".into(), SUBCOMMAND.into()];
        for l in &left {
            argv.extend(l.setting.tokens(&l.values));
        }
        let Err(e) = cmd.clone().try_get_matches_from(argv) else { break };
        let culprit = culprit(&e).and_then(|long| left.iter().position(|l| l.setting.long == long));
        match culprit {
            Some(i) => {
                let l = left.remove(i);
                errors.push(l.origin.error(&l.key, clap_message(&e)));
            }
            None => {
                // Not tied to one setting (e.g. two settings that conflict): name them all.
                let keys: Vec<&str> = left.iter().map(|l| l.key.as_str()).collect();
                let origin = left[0].origin.clone();
                errors.push(origin.error(&keys.join(", "), clap_message(&e)));
                break;
            }
        }
    }
    errors
}

/// The long name of the argument a clap error is about (`--max-tasks <MAX_TASKS>`).
fn culprit(e: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let long = arg.strip_prefix("--")?;
    Some(long.split([' ', '=', '<']).next().unwrap_or(long).to_string())
}

/// clap's message about one value, without its `--flag <VALUE>` framing (the key says which).
fn clap_message(e: &clap::Error) -> String {
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::InvalidValue => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => format!(" (possible values: {})", v.join(", ")),
                _ => String::new(),
            };
            format!("invalid value '{value}'{valid}")
        }
        ErrorKind::ValueValidation => match std::error::Error::source(e) {
            Some(cause) => format!("invalid value '{value}': {cause}"),
            None => format!("invalid value '{value}'"),
        },
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    }
}
