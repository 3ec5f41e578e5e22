//! Builds every function in `FUNCTIONS` for `wasm32-wasip2` (release) with a nested cargo
//! into its own target directory under `OUT_DIR`, the same functions for `wasm32-wasip1`
//! (WASI 0.1 commands, served the WAGI way) and the C example with clang, and generates
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
        writeln!(
            generated,
            "/// Path of `{name}`: {what}, served the WAGI way."
        )
        .unwrap();
        writeln!(
            generated,
            "pub const {konst}: &str = {:?};",
            wasm.display().to_string()
        )
        .unwrap();
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
            writeln!(generated, "/// Path of the `{name}` wasi:http component.").unwrap();
            writeln!(
                generated,
                "pub const {konst}: &str = {:?};",
                wasm.display().to_string()
            )
            .unwrap();
            writeln!(lists[kind], "    ({name:?}, {konst}),").unwrap();
            writeln!(arms[kind], "        $mac!({file}, {konst});").unwrap();
            rerun_if_sources_change(&release.join(format!("{file}.d")), &workspace);
        }
    }
    let [functions, programs] = lists;
    let [function_arms, program_arms] = arms;
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
