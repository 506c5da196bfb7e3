//! `dcea config check|default`.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: every key a `dcea monitor` setting, every value of its type.
    /// Prints every error as FILE:LINE:COLUMN: KEY: message. Exit status: 0 valid, 1 invalid.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the default configuration: every setting with its help, flag and environment
    /// variable, at its default value.
    Default,
}

pub fn run(command: ConfigCommand) -> Result<u8, String> {
    match command {
        ConfigCommand::Default => {
            print!("{}", super::default_config());
            Ok(0)
        }
        ConfigCommand::Check { file } => {
            let origin = file.display().to_string();
            let text = super::file::read(&file).map_err(|e| format!("reading {origin}: {e}"))?;
            match super::check_text(&origin, &text) {
                Ok(n) => {
                    println!("{origin}: valid ({n} settings)");
                    Ok(0)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!("{origin}: {} error(s)", errors.len());
                    Ok(1)
                }
            }
        }
    }
}
