//! Every artifact is a valid WebAssembly *component* (not a core module) whose top level
//! exports `wasi:http/incoming-handler@0.2.x`: the artifact `wasmtime serve` and Spin run.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

/// Top-level export names of a component. Nested modules and components have their own
/// export sections, which must not count.
fn top_level_exports(bytes: &[u8]) -> Vec<String> {
    let mut depth = 0usize;
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("component parses") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.expect("export entry parses").name.name.to_string());
                }
            }
            _ => {}
        }
    }
    exports
}

macro_rules! check_component {
    ($name:ident, $konst:ident) => {
        #[test]
        fn $name() {
            let bytes = std::fs::read(artifacts::$konst).expect("artifact exists");
            assert!(
                Parser::is_component(&bytes),
                "{} is not a component",
                stringify!($name)
            );
            Validator::new_with_features(WasmFeatures::all())
                .validate_all(&bytes)
                .expect("component validates");
            let exports = top_level_exports(&bytes);
            assert!(
                exports
                    .iter()
                    .any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")),
                "{} exports {exports:?}, not wasi:http/incoming-handler@0.2.x",
                stringify!($name)
            );
        }
    };
}

artifacts::foreach_component!(check_component);

/// The JavaScript and Python builds are components too, each exporting the handler at
/// the WASI version its toolchain's guest is written against, and one of each example.
#[test]
fn the_javascript_and_python_builds_are_handler_components() {
    for (functions, version) in [
        (artifacts::JS_FUNCTIONS, "0.2.10"),
        (artifacts::PYTHON_FUNCTIONS, "0.2.0"),
    ] {
        let names: Vec<_> = functions.iter().map(|(name, _, _)| *name).collect();
        let rust: Vec<_> = artifacts::FUNCTIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, rust);
        for (name, path, _) in functions {
            let bytes = std::fs::read(path).expect("artifact exists");
            assert!(Parser::is_component(&bytes), "{path} is not a component");
            let exports = top_level_exports(&bytes);
            let handler = format!("wasi:http/incoming-handler@{version}");
            assert!(
                exports.contains(&handler),
                "{name}: {path} exports {exports:?}"
            );
        }
    }
}

#[test]
fn lookup_by_name() {
    assert_eq!(
        artifacts::component("hello"),
        Some(artifacts::HELLO_COMPONENT)
    );
    assert_eq!(artifacts::component("nope"), None);
    assert_eq!(artifacts::FUNCTIONS.len(), 4);
    assert_eq!(
        artifacts::component("misbehave"),
        None,
        "test programs are not example functions"
    );
    assert_eq!(artifacts::TEST_PROGRAMS.len(), 2);
}

/// Every WASI 0.1 build is a valid core module, a command: it exports `_start` and
/// imports WASI 0.1 alone, so a WAGI host can run it.
macro_rules! check_module {
    ($name:ident, $konst:ident) => {
        #[test]
        fn $name() {
            let bytes = std::fs::read(artifacts::$konst).expect("artifact exists");
            assert!(
                Parser::is_core_wasm(&bytes),
                "{} is not a core module",
                stringify!($name)
            );
            Validator::new_with_features(WasmFeatures::all())
                .validate_all(&bytes)
                .expect("module validates");
            let mut start = false;
            for payload in Parser::new(0).parse_all(&bytes) {
                match payload.expect("module parses") {
                    Payload::ExportSection(section) => {
                        for export in section {
                            start |= export.expect("export parses").name == "_start";
                        }
                    }
                    Payload::ImportSection(section) => {
                        for import in section.into_imports() {
                            let import = import.expect("import parses");
                            assert_eq!(
                                import.module,
                                "wasi_snapshot_preview1",
                                "{} imports {}",
                                stringify!($name),
                                import.name
                            );
                        }
                    }
                    _ => {}
                }
            }
            assert!(start, "{} exports no _start", stringify!($name));
        }
    };
}

mod modules {
    use super::*;
    artifacts::foreach_module!(check_module);
}

#[test]
fn every_example_has_a_wasi_p1_build() {
    assert_eq!(artifacts::MODULES.len(), artifacts::FUNCTIONS.len());
    for (name, _) in artifacts::FUNCTIONS {
        assert!(artifacts::module(name).is_some(), "{name} has no module");
    }
    assert_eq!(artifacts::module("hello"), Some(artifacts::HELLO_MODULE));
    assert_eq!(artifacts::module("wagi-probe"), None, "a test program");
}

/// `artifacts DIR` copies the components; `artifacts --wasi-p1 DIR` the WASI 0.1 builds
/// under the same names, and the C example; an unknown flag is refused.
#[test]
fn the_cli_copies_either_build() {
    let examples = ["hello", "sleep", "hash", "memory"];
    for (flags, core, extra) in [
        (&[][..], false, None),
        (&["--wasi-p1"][..], true, Some("hello-c")),
    ] {
        let dir = std::env::temp_dir().join(format!(
            "artifacts-cli-{}-{}",
            std::process::id(),
            flags.len()
        ));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_artifacts"))
            .args(flags)
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{flags:?}");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want: Vec<String> = examples
            .iter()
            .chain(&extra)
            .map(|n| format!("{n}.wasm"))
            .collect();
        want.sort();
        assert_eq!(names, want, "{flags:?}");
        for name in &names {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(Parser::is_core_wasm(&bytes), core, "{flags:?} {name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_artifacts"))
        .args(["--wasi-p2", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
