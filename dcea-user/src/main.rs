use std::process::ExitCode;

use clap::Parser;
use dcea_user::{
    cli::{Cli, Command},
    monitor,
    output::Format,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dcea: error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Monitor(args) => {
            runtime.block_on(monitor::run(args.kernel.monitor_options(args.format)))
        }
        Command::Probe { kernel, format } => monitor::probe(&kernel.monitor_options(Format::Json))
            .map(|report| match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Format::Text => print!("{}", report.render_text()),
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dcea: error: {e}");
            ExitCode::from(2)
        }
    }
}
