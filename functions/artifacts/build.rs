//! Builds every function in `FUNCTIONS` for `wasm32-wasip2` (release) with a nested cargo
//! into its own target directory under `OUT_DIR`, the same functions for `wasm32-wasip1`
//! (WASI 0.1 commands, served the WAGI way), in JavaScript and Python with their
//! component toolchains (`LANGUAGES`), and the C example with clang, and generates
//! one path constant per artifact plus `foreach_*!` macros. Tests and tools use those constants and
//! never spell a path; a crate that invokes the macro must handle every function, so a
//! function added here and forgotten there is a compile error.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Workspace packages that are example functions; the package name is the function name.
const FUNCTIONS: &[&str] = &["hello", "sleep", "hash", "memory"];
/// Test programs: components the tests deploy to prove isolation and containment. They
/// are not examples, so nothing routes or benchmarks them.
const TEST_PROGRAMS: &[&str] = &["misbehave", "plain-wasi"];
const TARGET: &str = "wasm32-wasip2";
/// Test programs that are WASI 0.1 commands (core modules), served the WAGI way. The
/// example functions are built as such commands too (their binaries), from the same
/// source as their components.
const WAGI_PROGRAMS: &[&str] = &["wagi-probe"];
const WAGI_TARGET: &str = "wasm32-wasip1";
/// Example functions written in C, as (name, source): WASI 0.1 commands built with clang,
/// proof that a module from another toolchain runs.
const C_PROGRAMS: &[(&str, &str)] = &[("hello-c", "functions/hello-c/hello.c")];
/// The example functions written in JavaScript and Python, each built by its own
/// language's component toolchain (`scripts/install-function-toolchains` installs them):
/// every function of `FUNCTIONS`, from `DIR/NAME.{js,py}`, with `DIR/NAME.toml` settings
/// where one is there.
const LANGUAGES: &[Language] = &[
    Language {
        name: "js",
        what: "JavaScript, componentize-js (StarlingMonkey)",
        dir: "functions/js",
        extension: "js",
        // What StarlingMonkey's own handler exports: the world must name exactly it.
        wasi: "0.2.10",
    },
    Language {
        name: "python",
        what: "Python, componentize-py (CPython)",
        dir: "functions/python",
        extension: "py",
        wasi: "0.2.0",
    },
];

struct Language {
    /// In constant names (`HELLO_JS_COMPONENT`) and `artifacts --lang`.
    name: &'static str,
    what: &'static str,
    dir: &'static str,
    extension: &'static str,
    /// The WASI 0.2 version of the world it builds against.
    wasi: &'static str,
}

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.join("../..").canonicalize().unwrap();
    let target_dir = out_dir.join("wasm-target");

    // Only the libraries: each example's binary is its WASI 0.1 build, below.
    let mut cmd = wasm_build(TARGET, &workspace, &target_dir);
    cmd.arg("--lib");
    for name in FUNCTIONS.iter().chain(TEST_PROGRAMS) {
        cmd.arg("-p").arg(name);
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the wasm build");
    if !status.success() {
        panic!(
            "building the functions for {TARGET} failed (see above). If the target is \
             missing, run `rustup target add {TARGET}` (scripts/test does it for you)."
        );
    }

    let mut generated = String::new();
    let mut modules = Vec::new();
    let mut wagi = wasm_build(WAGI_TARGET, &workspace, &target_dir);
    wagi.arg("--bins");
    for name in FUNCTIONS.iter().chain(WAGI_PROGRAMS) {
        wagi.arg("-p").arg(name);
    }
    if !wagi
        .status()
        .expect("running cargo for the WASI 0.1 build")
        .success()
    {
        panic!(
            "building the WASI 0.1 commands for {WAGI_TARGET} failed (see above): `rustup target add {WAGI_TARGET}`"
        );
    }
    let wagi_release = target_dir.join(WAGI_TARGET).join("release");
    for name in FUNCTIONS.iter().chain(WAGI_PROGRAMS) {
        // An example's command is `NAME-wagi`, apart from its library's `NAME.wasm`.
        let bin = if FUNCTIONS.contains(name) {
            format!("{name}-wagi")
        } else {
            name.to_string()
        };
        let wasm = wagi_release.join(format!("{bin}.wasm"));
        assert!(wasm.is_file(), "expected module at {}", wasm.display());
        rerun_if_sources_change(&wagi_release.join(format!("{bin}.d")), &workspace);
        modules.push((name.to_string(), wasm, "a WASI 0.1 command built from Rust"));
    }
    for (name, source) in C_PROGRAMS {
        let wasm = out_dir.join(format!("{name}.wasm"));
        build_c(&workspace.join(source), &wasm);
        println!("cargo:rerun-if-changed=../../{source}");
        modules.push((name.to_string(), wasm, "a WASI 0.1 command built from C"));
    }
    let mut module_list = String::new();
    let mut module_arms = String::new();
    for (name, wasm, what) in &modules {
        let konst = format!("{}_MODULE", name.replace('-', "_").to_uppercase());
        path_constant(
            &mut generated,
            &format!("Path of `{name}`: {what}, served the WAGI way."),
            &konst,
            wasm,
        );
        if FUNCTIONS.contains(&name.as_str()) {
            writeln!(module_list, "    ({name:?}, {konst}),").unwrap();
        }
        writeln!(
            module_arms,
            "        $mac!({}, {konst});",
            name.replace('-', "_")
        )
        .unwrap();
    }

    let release = target_dir.join(TARGET).join("release");
    let mut lists = [String::new(), String::new()];
    let mut arms = [String::new(), String::new()];
    for (kind, names) in [FUNCTIONS, TEST_PROGRAMS].into_iter().enumerate() {
        for name in names {
            let file = name.replace('-', "_");
            let wasm = release.join(format!("{file}.wasm"));
            assert!(wasm.is_file(), "expected component at {}", wasm.display());
            let konst = format!("{}_COMPONENT", file.to_uppercase());
            path_constant(
                &mut generated,
                &format!("Path of the `{name}` wasi:http component."),
                &konst,
                &wasm,
            );
            writeln!(lists[kind], "    ({name:?}, {konst}),").unwrap();
            writeln!(arms[kind], "        $mac!({file}, {konst});").unwrap();
            rerun_if_sources_change(&release.join(format!("{file}.d")), &workspace);
        }
    }
    let [functions, programs] = lists;
    let [function_arms, program_arms] = arms;
    let languages = build_languages(&workspace, &out_dir);
    for (language, built) in LANGUAGES.iter().zip(&languages) {
        let mut list = String::new();
        for (name, wasm, settings) in built {
            let konst = format!(
                "{}_{}_COMPONENT",
                name.to_uppercase(),
                language.name.to_uppercase()
            );
            path_constant(
                &mut generated,
                &format!(
                    "Path of `{name}` in {}: a wasi:http {} component.",
                    language.what, language.wasi
                ),
                &konst,
                wasm,
            );
            writeln!(list, "    ({name:?}, {konst}, {settings:?}),").unwrap();
        }
        writeln!(
            generated,
            "\n/// The example functions in {}: (name, component path, settings TOML).\npub const {}_FUNCTIONS: &[(&str, &str, &str)] = &[\n{list}];\n",
            language.what,
            language.name.to_uppercase()
        )
        .unwrap();
        writeln!(
            generated,
            "/// The WIT the {} functions are built against (a world `local:functions/proxy`\n/// including `wasi:http/proxy@{}`), for building others like them.\npub const {}_WIT: &str = {:?};\n",
            language.what,
            language.wasi,
            language.name.to_uppercase(),
            out_dir.join(format!("wit-{}", language.name)).display().to_string()
        )
        .unwrap();
    }
    write!(
        generated,
        "
/// Every example function: (name, component path).
pub const FUNCTIONS: &[(&str, &str)] = &[
{functions}];

/// Every example function built for WASI 0.1 from the same source: (name, module path).
pub const MODULES: &[(&str, &str)] = &[
{module_list}];

/// Every test program: (name, component path).
pub const TEST_PROGRAMS: &[(&str, &str)] = &[
{programs}];

/// Calls `$mac!(name, CONST)` once per example function.
#[macro_export]
macro_rules! foreach_function {{
    ($mac:ident) => {{
{function_arms}    }};
}}

/// Calls `$mac!(name, CONST)` once per component, example or test program.
#[macro_export]
macro_rules! foreach_component {{
    ($mac:ident) => {{
{function_arms}{program_arms}    }};
}}

/// Calls `$mac!(name, CONST)` once per WASI 0.1 core module: the examples' builds, the
/// test programs and the C example.
#[macro_export]
macro_rules! foreach_module {{
    ($mac:ident) => {{
{module_arms}    }};
}}
"
    )
    .unwrap();
    fs::write(out_dir.join("components.rs"), generated).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}

/// Writes a documented constant holding `path`: `/// {doc}` and
/// `pub const {konst}: &str = "{path}";`.
fn path_constant(generated: &mut String, doc: &str, konst: &str, path: &Path) {
    writeln!(
        generated,
        "/// {doc}\npub const {konst}: &str = {:?};",
        path.display().to_string()
    )
    .unwrap();
}

/// Builds every function of every [`LANGUAGES`] entry: (name, component, settings TOML)
/// per function, per language. The languages build side by side (one core each).
fn build_languages(workspace: &Path, out_dir: &Path) -> Vec<Vec<(String, PathBuf, String)>> {
    let jco_wit =
        workspace.join("functions/js/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12");
    let hint = "run scripts/install-function-toolchains (scripts/test and scripts/compare do)";
    assert!(
        jco_wit.is_dir(),
        "{} is missing: the JavaScript and Python functions build against its WASI WIT; {hint}",
        jco_wit.display()
    );
    println!("cargo:rerun-if-changed=../../functions/js/package-lock.json");
    println!("cargo:rerun-if-changed=../../seed-stacks/node/handlers.js");
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    std::thread::scope(|scope| {
        let builds: Vec<_> = LANGUAGES
            .iter()
            .map(|language| {
                let wit = out_dir.join(format!("wit-{}", language.name));
                wasi_wit(&jco_wit, language.wasi, &wit);
                let source = workspace.join(language.dir);
                let mut functions = Vec::new();
                for name in FUNCTIONS {
                    let file = format!("{name}.{}", language.extension);
                    let settings =
                        fs::read_to_string(source.join(format!("{name}.toml"))).unwrap_or_default();
                    functions.push((name.to_string(), file, settings));
                }
                for entry in fs::read_dir(&source).unwrap() {
                    let path = entry.unwrap().path();
                    if path
                        .extension()
                        .is_some_and(|e| e == language.extension || e == "toml")
                    {
                        println!(
                            "cargo:rerun-if-changed=../../{}/{}",
                            language.dir,
                            path.file_name().unwrap().to_string_lossy()
                        );
                    }
                }
                scope.spawn(move || {
                    functions
                        .into_iter()
                        .map(|(name, file, settings)| {
                            let wasm = out_dir.join(format!("{name}-{}.wasm", language.name));
                            let mut cmd = match language.name {
                                "js" => componentize_js(
                                    workspace,
                                    &wit,
                                    &format!("{}/{file}", language.dir),
                                    &wasm,
                                ),
                                _ => componentize_py(&source, &wit, &name, &wasm),
                            };
                            let status = cmd
                                .status()
                                .unwrap_or_else(|e| panic!("running {cmd:?}: {e}; {hint}"));
                            assert!(
                                status.success() && wasm.is_file(),
                                "building {file} ({}) failed ({status}, see above); {hint}",
                                language.what
                            );
                            (name, wasm, settings)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        builds
            .into_iter()
            .map(|b| b.join().expect("a language's build panicked"))
            .collect()
    })
}

/// WASI 0.2's WIT as jco ships it (0.2.12), renamed to `version`, in `dir/deps`, and a
/// world in `dir` that includes `wasi:http/proxy@version`: what a toolchain whose guest
/// exports `wasi:http/incoming-handler@version` must be given. The runtime links any
/// 0.2.x import to its own 0.2 host, so a component built this way runs unchanged.
fn wasi_wit(jco_wit: &Path, version: &str, dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    for package in [
        "cli",
        "clocks",
        "filesystem",
        "http",
        "io",
        "random",
        "sockets",
    ] {
        let text = fs::read_to_string(jco_wit.join(format!("wasi-{package}/package.wit")))
            .unwrap_or_else(|e| panic!("{}: {e}", jco_wit.display()));
        let mut renamed = text.replace("@0.2.12", &format!("@{version}"));
        // Items added after `version` say so; here they are part of it.
        while let Some(at) = renamed.find("@since(version = 0.2.") {
            let end = at + renamed[at..].find(')').expect("a closed @since");
            renamed.replace_range(at..=end, "");
        }
        let deps = dir.join("deps").join(package);
        fs::create_dir_all(&deps).unwrap();
        fs::write(deps.join("package.wit"), renamed).unwrap();
    }
    fs::write(
        dir.join("world.wit"),
        format!(
            "package local:functions;\n\nworld proxy {{\n  include wasi:http/proxy@{version};\n}}\n"
        ),
    )
    .unwrap();
}

/// componentize-js building `entry` (relative to the workspace, where it runs: its
/// modules may import what is outside their own directory, as the seed's handlers).
fn componentize_js(workspace: &Path, wit: &Path, entry: &str, wasm: &Path) -> Command {
    let cli =
        workspace.join("functions/js/node_modules/@bytecodealliance/componentize-js/src/cli.js");
    let mut cmd = Command::new(env::var_os("NODE").unwrap_or_else(|| "node".into()));
    cmd.current_dir(workspace)
        .arg(cli)
        .arg(entry)
        .arg("--wit")
        .arg(wit)
        .args(["--world-name", "proxy", "-o"])
        .arg(wasm);
    println!("cargo:rerun-if-env-changed=NODE");
    cmd
}

/// componentize-py building module `name` of `source`: `COMPONENTIZE_PY`, else the one
/// scripts/install-function-toolchains put in the project's virtualenv, else PATH's.
fn componentize_py(source: &Path, wit: &Path, name: &str, wasm: &Path) -> Command {
    let program = env::var_os("COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_default();
            let venv = cache.join("serverless-vs-server/venv/bin/componentize-py");
            if venv.is_file() {
                venv
            } else {
                "componentize-py".into()
            }
        });
    let mut cmd = Command::new(program);
    cmd.arg("-d")
        .arg(wit)
        .args(["-w", "local:functions/proxy", "componentize", "-p"])
        .arg(source)
        .arg(name)
        .arg("-o")
        .arg(wasm)
        // Nothing written beside the sources.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Compiles a one-file C program to a WASI 0.1 command with Debian's clang, lld and
/// wasi-libc (the sysroot is found in `/usr/lib/wasm32-wasi` by clang's defaults there;
/// `WASI_SYSROOT` names another, e.g. a wasi-sdk's).
fn build_c(source: &Path, wasm: &Path) {
    let clang = env::var_os("WASI_CC").unwrap_or_else(|| "clang".into());
    let mut cmd = Command::new(&clang);
    cmd.args(["--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Werror"])
        .arg("-Wl,--strip-debug")
        .arg("-o")
        .arg(wasm)
        .arg(source);
    if let Some(sysroot) = env::var_os("WASI_SYSROOT") {
        cmd.arg("--sysroot").arg(sysroot);
    }
    println!("cargo:rerun-if-env-changed=WASI_CC");
    println!("cargo:rerun-if-env-changed=WASI_SYSROOT");
    let hint = "install clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 \
        (`apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32`; scripts/test does it as root)";
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "compiling {} for wasm32-wasi failed ({status}, see above): {hint}",
            source.display()
        ),
        Err(e) => panic!("running {clang:?}: {e}: {hint}"),
    }
}

/// A nested `cargo build --release --target TARGET` of this workspace into `target_dir`.
fn wasm_build(target: &str, workspace: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        // Flags meant for the host build (coverage, sanitizers, target-cpu) must not leak
        // into the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // Small binaries: no DWARF, keep the name section so traps name functions.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // The workspace's release profile optimizes the servers across crates; the
        // functions are built as a user's `cargo build --release` builds them.
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    cmd
}

/// Cargo's dep-info lists every source file that went into the artifact: rebuild when
/// any of them changes, and only then.
/// Tells cargo to rerun this script when a source of the components changes. Sources in
/// this workspace are named relative to this package (`../../functions/...`): cargo keys
/// build-script results by the package's path *within* its workspace, so two checkouts
/// sharing one `CARGO_TARGET_DIR` (a CI clone beside a working copy) would otherwise
/// each watch the other's absolute paths and miss their own changes.
fn rerun_if_sources_change(dep_info: &Path, workspace: &Path) {
    let text = fs::read_to_string(dep_info)
        .unwrap_or_else(|e| panic!("reading dep-info {}: {e}", dep_info.display()));
    // Format: `target: dep dep dep` with spaces in paths escaped as `\ `.
    let Some((_, deps)) = text.lines().next().and_then(|l| l.split_once(": ")) else {
        return;
    };
    let watch = |path: &str| match Path::new(path).strip_prefix(workspace) {
        Ok(inside) => println!("cargo:rerun-if-changed=../../{}", inside.display()),
        Err(_) => println!("cargo:rerun-if-changed={path}"),
    };
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => current.push(chars.next().unwrap()),
            ' ' => {
                if !current.is_empty() {
                    watch(&current);
                    current.clear();
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        watch(&current);
    }
}
