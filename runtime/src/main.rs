use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = runtime::Config::parse();
    service_ops::init_tracing();
    match runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runtime: {e:#}");
            ExitCode::FAILURE
        }
    }
}
