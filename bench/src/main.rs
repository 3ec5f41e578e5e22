use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = bench::cli::Cli::parse();
    match bench::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|c| c.is::<bench::runner::Interrupted>()) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
