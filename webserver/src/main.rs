use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = webserver::Config::parse();
    let log = service_ops::init_tracing();
    let result = webserver::run(config);
    drop(log);
    service_ops::exit_code("webserver", result)
}
