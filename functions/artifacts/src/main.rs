//! `cargo run -p artifacts -- DIR`: copies every example function's component into DIR
//! as `NAME.wasm`, ready for `runtime --functions-dir DIR` (or `wasmtime serve`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: artifacts DIR   (copies the example components into DIR)");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("artifacts: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, path) in artifacts::FUNCTIONS {
        let to = dir.join(format!("{name}.wasm"));
        if let Err(e) = std::fs::copy(path, &to) {
            eprintln!("artifacts: copying {path} to {}: {e}", to.display());
            return ExitCode::FAILURE;
        }
        println!("{}", to.display());
    }
    ExitCode::SUCCESS
}
