use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = runtime::Cli::parse();
    let result = match cli.command {
        Some(command) => command.run(),
        None => {
            let log = service_ops::init_tracing();
            let result = runtime::run(cli.serve);
            drop(log);
            result
        }
    };
    service_ops::exit_code("runtime", result)
}
