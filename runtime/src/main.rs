use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cli = runtime::Cli::parse();
    // Compiles run in a child: this binary again (see `runtime::Command::Compile`).
    cli.serve.compile.program = std::env::current_exe().ok();
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
