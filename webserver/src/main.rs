use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = webserver::Config::parse();
    service_ops::init_tracing();
    match webserver::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webserver: {e:#}");
            ExitCode::FAILURE
        }
    }
}
