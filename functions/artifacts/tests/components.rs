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
