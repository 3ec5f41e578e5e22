//! Bad functions stop the start with a message that names the file and the reason.

use std::process::Command;

fn start_fails(dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--functions-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the runtime started with a bad function"
    );
    assert!(
        out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it bound a listener"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn garbage_core_modules_and_non_handlers_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"definitely not wasm").unwrap();
    let stderr = start_fails(dir.path());
    assert!(
        stderr.contains("garbage.wasm") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    // The smallest core module: magic and version.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let stderr = start_fails(dir.path());
    assert!(stderr.contains("core.wasm"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    // The smallest component: valid, but exports no handler.
    std::fs::write(dir.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let stderr = start_fails(dir.path());
    assert!(
        stderr.contains("empty.wasm") && stderr.contains("wasi:http/incoming-handler"),
        "{stderr}"
    );
}

#[test]
fn bad_settings_and_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(artifacts::HELLO_COMPONENT, dir.path().join("hello.wasm")).unwrap();
    std::fs::write(dir.path().join("hello.toml"), "memory_mib = 999999\n").unwrap();
    let stderr = start_fails(dir.path());
    assert!(
        stderr.contains("hello.wasm") && stderr.contains("memory_mib"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(artifacts::HELLO_COMPONENT, dir.path().join("Bad_Name.wasm")).unwrap();
    let stderr = start_fails(dir.path());
    assert!(stderr.contains("invalid function name"), "{stderr}");
}

#[test]
fn a_public_deploy_api_without_a_token_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "0.0.0.0:0"])
        .env_remove("RUNTIME_DEPLOY_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--deploy-token"), "{stderr}");
}

#[test]
fn flags_that_make_no_sense_are_refused_by_name_before_anything_starts() {
    let cases: [(&[&str], &str); 11] = [
        (&["--memory-mib", "0"], "--memory-mib"),
        (
            &["--memory-mib", "128", "--max-total-memory-mib", "100"],
            "exceeds the memory budget for instances (100 MiB)",
        ),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--body-read-timeout", "0s"], "--body-read-timeout"),
        (&["--max-memory-mib", "5000"], "--max-memory-mib"),
        (
            &["--memory-mib", "512", "--max-memory-mib", "256"],
            "exceeds --max-memory-mib",
        ),
        (&["--deploy-token", ""], "--deploy-token"),
        (&["--timeout", "0s"], "--timeout"),
        (&["--drain-timeout-secs=-1"], "--drain-timeout"),
        (&["--max-concurrency", "0"], "--max-concurrency"),
        (
            &[
                "--listen",
                "127.0.0.1:18080",
                "--ops-listen",
                "127.0.0.1:18080",
            ],
            "must differ",
        ),
    ];
    for (flags, message) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runtime"));
        if !flags.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"]);
        }
        // (The same-address case is refused before anything binds: no port is taken.)
        let out = command
            .args(flags)
            .env_remove("RUNTIME_DEPLOY_TOKEN")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening"),
            "{flags:?} bound a listener"
        );
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
}
