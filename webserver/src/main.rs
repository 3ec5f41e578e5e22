use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = webserver::Config::parse();
    service_ops::init_tracing();
    service_ops::exit_code("webserver", webserver::run(config))
}
