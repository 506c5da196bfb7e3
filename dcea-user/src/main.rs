use std::{io::IsTerminal, process::ExitCode};

use dcea_user::{cli::Command, config::CliError, monitor, output::Format};

fn main() -> ExitCode {
    let cli = match dcea_user::config::parse_cli() {
        Ok(cli) => cli,
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Config(errors)) => {
            for e in &errors {
                eprintln!("dcea: config error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let mut filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if dcea_user::sentinel::SentinelEnv::from_env().is_some() {
        // The agent already reports the runtimes' reachability; a second copy from the sentinel is noise.
        if let Ok(quiet) = "dcea_user::container=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dcea: error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Exit status: 0 ok, 1 findings/changes/violations (scanners, measure, trust verify), 2 error.
    let result: Result<u8, String> = match cli.command {
        Command::Scan { target } => dcea_user::scan::run(target).map_err(|e| e.to_string()),
        Command::Measure { target: dcea_user::measure::MeasureTarget::Image(args) } => {
            dcea_user::measure::run(&args).map_err(|e| e.to_string())
        }
        Command::Rules { command } => dcea_user::rules::cmd::run(command),
        Command::Integrity { command } => dcea_user::integrity::cli::run(command),
        Command::Monitor(args) => runtime.block_on(monitor::run(args.options())).map(|()| 0).map_err(|e| e.to_string()),
        Command::Trust { command } => dcea_user::trust::cli::run(command).map_err(|e| e.to_string()),
        Command::Config { command } => dcea_user::config::cmd::run(command),
        Command::Profile { command } => dcea_user::allowlist::cli::run(command),
        Command::Release { container, state } => dcea_user::enforce::release::run(&state.state_dir, &container),
        Command::Quarantine(args) => dcea_user::quarantine::cli::run(*args),
        Command::Probe { kernel, format } => monitor::probe(&kernel.monitor_options(Format::Json))
            .map(|report| {
                match format {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()),
                    Format::Text => print!("{}", report.render_text()),
                }
                0
            })
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("dcea: error: {e}");
            ExitCode::from(2)
        }
    }
}
