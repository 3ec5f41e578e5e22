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
    service_ops::exit_code("runtime", result)
}
