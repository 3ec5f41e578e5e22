use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = runtime::Cli::parse();
    let result = match cli.command {
        Some(command) => command.run(),
        None => {
            service_ops::init_tracing();
            runtime::run(cli.serve)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runtime: {e:#}");
            ExitCode::FAILURE
        }
    }
}
