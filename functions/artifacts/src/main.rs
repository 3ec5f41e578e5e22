//! `cargo run -p artifacts -- [--with-test-programs] DIR`: copies every example function's
//! component into DIR as `NAME.wasm`, ready for `runtime --functions-dir DIR` (or
//! `wasmtime serve`); with `--with-test-programs`, the test programs (`misbehave`,
//! `plain-wasi`) too, for a soak or a demonstration of containment.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    let with_tests = match args.iter().position(|a| a == "--with-test-programs") {
        Some(at) => {
            args.remove(at);
            true
        }
        None => false,
    };
    let [dir] = <[_; 1]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("usage: artifacts [--with-test-programs] DIR   (copies the components into DIR)");
        std::process::exit(2);
    });
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("artifacts: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let programs: &[(&str, &str)] = if with_tests {
        artifacts::TEST_PROGRAMS
    } else {
        &[]
    };
    for (name, path) in artifacts::FUNCTIONS.iter().chain(programs) {
        let to = dir.join(format!("{name}.wasm"));
        if let Err(e) = std::fs::copy(path, &to) {
            eprintln!("artifacts: copying {path} to {}: {e}", to.display());
            return ExitCode::FAILURE;
        }
        println!("{}", to.display());
    }
    ExitCode::SUCCESS
}
