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
