//! `cargo run -p artifacts -- [--wasi-p1 | --lang js|python] [--with-test-programs] DIR`:
//! copies every example function into DIR as `NAME.wasm`, ready for
//! `runtime --functions-dir DIR`: its wasi:http component built from Rust (which
//! `wasmtime serve` also runs), or with `--wasi-p1` its WASI 0.1 build, served the WAGI
//! way, plus the C example as `hello-c.wasm`, or with `--lang` the same functions written
//! in JavaScript or Python (with a `NAME.toml` beside one that needs settings, and the
//! WIT they are built against in `DIR/wit`, to build your own the same way). With
//! `--with-test-programs`, the test programs too (`misbehave` and `plain-wasi`, or
//! `wagi-probe`), for a soak or a demonstration of containment.

use std::process::ExitCode;

const USAGE: &str = "usage: artifacts [--wasi-p1 | --lang rust|js|python] [--with-test-programs] DIR   (copies the example functions into DIR)";

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
    let lang = match args.iter().position(|a| a == "--lang") {
        Some(at) if at + 1 < args.len() => {
            let value = args.remove(at + 1);
            args.remove(at);
            match value.to_str() {
                Some("rust") => None,
                Some("js") => Some((artifacts::JS_FUNCTIONS, artifacts::JS_WIT)),
                Some("python") => Some((artifacts::PYTHON_FUNCTIONS, artifacts::PYTHON_WIT)),
                _ => {
                    eprintln!("artifacts: --lang takes rust, js or python\n{USAGE}");
                    return ExitCode::from(2);
                }
            }
        }
        Some(_) => {
            eprintln!("artifacts: --lang takes rust, js or python\n{USAGE}");
            return ExitCode::from(2);
        }
        None => None,
    };
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
    if let Some((functions, wit)) = lang {
        if let Err(e) = copy_dir(std::path::Path::new(wit), &dir.join("wit")) {
            eprintln!("artifacts: copying {wit}: {e}");
            return ExitCode::FAILURE;
        }
        if wasi_p1 || with_tests {
            eprintln!("artifacts: --lang goes alone\n{USAGE}");
            return ExitCode::from(2);
        }
        for (name, path, settings) in functions {
            let to = dir.join(format!("{name}.wasm"));
            let copied =
                std::fs::copy(path, &to)
                    .map(drop)
                    .and_then(|()| match settings.is_empty() {
                        true => Ok(()),
                        false => std::fs::write(dir.join(format!("{name}.toml")), settings),
                    });
            if let Err(e) = copied {
                eprintln!("artifacts: copying {path} to {}: {e}", to.display());
                return ExitCode::FAILURE;
            }
            println!("{}", to.display());
        }
        return ExitCode::SUCCESS;
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

/// Copies the directory tree `from` to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
