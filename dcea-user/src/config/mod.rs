//! The config file (`/etc/dcea/dcea.yaml`, `dcea monitor --config PATH`) and `DCEA_*`
//! environment variables, layered over `dcea monitor`'s flags.
//!
//! Settings are read from the monitor's clap arguments (`keys`), so a new flag is a config
//! key (its long name in snake_case) and an environment variable (`DCEA_<KEY>`) with no code
//! here; values are checked by the flag's own value parser. Strongest first: environment,
//! command line, file, default (`layers`).

pub mod cmd;
pub mod file;
pub mod keys;
pub mod layers;
pub mod render;
#[cfg(test)]
mod tests;

use std::fmt;

pub use layers::{CliError, check_text, merged_matches, parse_cli, parse_cli_from};
pub use render::default_config;

use crate::rules::yaml::Pos;

/// Read by `dcea monitor` when it exists and no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/dcea/dcea.yaml";

/// One problem with a setting: where (file and line, or the environment variable), which key,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file's path, or `environment variable DCEA_X`.
    pub origin: String,
    pub pos: Option<Pos>,
    /// The key as written (empty for errors about the file as a whole).
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(origin: &str, pos: Pos, key: &str, message: String) -> ConfigError {
        ConfigError { origin: origin.into(), pos: Some(pos), key: key.into(), message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: ", self.origin, p.line, p.col)?,
            None => write!(f, "{}: ", self.origin)?,
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}
