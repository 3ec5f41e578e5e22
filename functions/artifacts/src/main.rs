//! `cargo run -p artifacts -- [--wasi-p1] [--with-test-programs] DIR`: copies every
//! example function into DIR as `NAME.wasm`, ready for `runtime --functions-dir DIR`:
//! its wasi:http component (which `wasmtime serve` also runs), or with `--wasi-p1` its
//! WASI 0.1 build, served the WAGI way, plus the C example as `hello-c.wasm`. With
//! `--with-test-programs`, the test programs too (`misbehave` and `plain-wasi`, or
//! `wagi-probe`), for a soak or a demonstration of containment.

use std::process::ExitCode;

const USAGE: &str = "usage: artifacts [--wasi-p1] [--with-test-programs] DIR   (copies the example functions into DIR)";

fn main() -> ExitCode {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut flag = |name: &str| match args.iter().position(|a| a == name) {
        Some(at) => {
            args.remove(at);
            true
        }
        None => false,
    };
    let with_tests = flag("--with-test-programs");
    let wasi_p1 = flag("--wasi-p1");
    let [dir] = <[_; 1]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("{USAGE}");
        std::process::exit(2);
    });
    if dir.to_string_lossy().starts_with('-') {
        eprintln!("artifacts: unknown flag {}\n{USAGE}", dir.to_string_lossy());
        return ExitCode::from(2);
    }
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("artifacts: creating {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    type Named = &'static [(&'static str, &'static str)];
    let (functions, extra, programs): (Named, Named, Named) = if wasi_p1 {
        (
            artifacts::MODULES,
            &[("hello-c", artifacts::HELLO_C_MODULE)],
            &[("wagi-probe", artifacts::WAGI_PROBE_MODULE)],
        )
    } else {
        (artifacts::FUNCTIONS, &[], artifacts::TEST_PROGRAMS)
    };
    let programs = if with_tests { programs } else { &[] };
    for (name, path) in functions.iter().chain(extra).chain(programs) {
        let to = dir.join(format!("{name}.wasm"));
        if let Err(e) = std::fs::copy(path, &to) {
            eprintln!("artifacts: copying {path} to {}: {e}", to.display());
            return ExitCode::FAILURE;
        }
        println!("{}", to.display());
    }
    ExitCode::SUCCESS
}
