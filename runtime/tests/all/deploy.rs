//! The deploy API and CLI against a running runtime with a durable store.

use crate::Deployer;
use localrun::{Service, examples};
use std::time::Duration;

use crate::{TOKEN, start_with_store};

#[tokio::test]
async fn deploy_list_get_delete_round_trip() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    let traffic = server.url("traffic");

    let r = ops
        .put_file(
            "greet",
            artifacts::HELLO_COMPONENT,
            "?memory_mib=16&env=A=1",
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    let wasm = std::fs::read(artifacts::HELLO_COMPONENT).unwrap();
    assert_eq!(v["digest"], runtime::store::digest(&wasm));
    assert_eq!(v["size"], wasm.len());
    assert_eq!(v["limits"]["memory_bytes"], 16 << 20);
    assert_eq!(v["settings"]["env"]["A"], "1");
    assert!(v["deployed_at"].as_u64().unwrap() > 1_700_000_000);

    let (status, body) = crate::get_json(&client, &format!("{traffic}/greet/")).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("Hello World!"))
    );

    let (status, list) = ops.list().await;
    assert_eq!(status, 200);
    assert_eq!(list["functions"][0]["name"], "greet");
    let (status, one) = ops.get("greet").await;
    assert_eq!((status, &one["digest"]), (200, &v["digest"]));

    // Same name again: replaced.
    assert_eq!(
        ops.put_file("greet", artifacts::HELLO_COMPONENT, "")
            .await
            .status(),
        200
    );

    assert_eq!(ops.delete("greet").await, 204);
    assert_eq!(
        crate::status(&client, format!("{traffic}/greet/")).await,
        404
    );
    assert_eq!(ops.get("greet").await.0, 404);
    assert_eq!(ops.delete("greet").await, 404);

    let text = crate::metrics(&client, &server).await;
    for (result, n) in [
        ("created", 1.0),
        ("replaced", 1.0),
        ("deleted", 1.0),
        ("not_found", 1.0),
        // Every result is exported from 0, so the first of each is an increase.
        ("promoted", 0.0),
    ] {
        assert_eq!(
            crate::sample(
                &text,
                &format!(r#"faas_deployments_total{{result="{result}"}}"#)
            ),
            Some(n),
            "{result}"
        );
    }
}

#[tokio::test]
async fn mutating_calls_need_the_token() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    let (without, wrong) = (ops.with_token(None), ops.with_token(Some("wrong")));
    for deployer in [&without, &wrong] {
        let r = deployer.put_file("x", artifacts::HELLO_COMPONENT, "").await;
        assert_eq!(r.status(), 401, "{deployer:?}");
    }
    assert_eq!(without.delete("x").await, 401);
    // Reading needs no token.
    assert_eq!(without.list().await.0, 200);
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_deployments_total{result="unauthorized"}"#),
        Some(3.0)
    );
}

#[tokio::test]
async fn invalid_components_are_refused_and_the_old_version_keeps_serving() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    ops.deploy("x", artifacts::HELLO_COMPONENT, "").await;

    let bad: [(&str, &[u8], &str); 3] = [
        (
            "garbage",
            b"definitely not wasm",
            "not a valid WebAssembly component",
        ),
        (
            // A core module is a WAGI function only if it is a WASI 0.1 command.
            "core module without _start",
            b"\0asm\x01\0\0\0",
            "must export `_start`",
        ),
        (
            "no handler",
            b"\0asm\x0d\0\x01\0",
            "wasi:http/incoming-handler",
        ),
    ];
    for (what, bytes, message) in bad {
        let r = ops.put("x", bytes.to_vec(), "").await;
        assert_eq!(r.status(), 422, "{what}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains(message),
            "{what}: {v}"
        );
        let (status, _) = crate::get_json(&client, &format!("{}/x/", server.url("traffic"))).await;
        assert_eq!(
            status, 200,
            "the old version stopped serving after a bad {what}"
        );
    }
    let r = ops
        .put_file("x", artifacts::HELLO_COMPONENT, "?memory_mb=3")
        .await;
    assert_eq!(r.status(), 400);
    let r = ops
        .put_file("Bad_Name", artifacts::HELLO_COMPONENT, "")
        .await;
    assert_eq!(r.status(), 400);
    // 2^44 + 1 MiB once wrapped to a 1 MiB limit when turned into bytes; over the pool's
    // slot size (--max-memory-mib 256 in tests) is refused too.
    for (query, message) in [
        ("?memory_mib=17592186044417", "memory_mib"),
        ("?memory_mib=257", "from 1 to 256"),
        ("?memory_mib=0", "from 1 to 256"),
    ] {
        let r = ops.put_file("x", artifacts::HELLO_COMPONENT, query).await;
        assert_eq!(r.status(), 400, "{query}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains(message),
            "{query}: {v}"
        );
    }
    let (_, v) = ops.get("x").await;
    assert_eq!(v["limits"]["memory_bytes"], 128 << 20, "{v}");
}

/// A new component is served at once from Winch's quick compile; Cranelift's optimized
/// code swaps in from the background and is cached, so deploying the same bytes again
/// goes straight to it. The background compile is held (a debug-build hook) until the
/// test has been answered by Winch's code, so that answer cannot have come from
/// Cranelift's.
#[tokio::test]
async fn a_first_deploy_serves_baseline_code_until_optimized_code_swaps_in() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let gate = tempfile::tempdir().unwrap();
    let open = gate.path().join("open");
    let empty = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"));
    command
        .args(crate::args(empty.path()))
        .args(["--store-dir", store.path().to_str().unwrap()])
        .args(["--deploy-token", TOKEN])
        .env("RUNTIME_TIER_UP_HOLD", &open);
    let server = Service::start_with(&mut command, &["traffic", "ops"]).unwrap();
    let ops = Deployer::new(&server, Some(TOKEN));
    let status = ops
        .put_file("hash", artifacts::HASH_COMPONENT, "")
        .await
        .status();
    assert_eq!(status, 201);
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="baseline"}"#),
        Some(1.0),
        "the deploy did not take the baseline compiler: {text}"
    );
    let url = format!("{}/hash/?rounds=3&size=5", server.url("traffic"));
    let (status, before) = crate::get_json(&client, &url).await;
    assert_eq!(status, 200, "{before}");
    // Still Winch's code after the answer, and the compile that would replace it held:
    // Winch's code answered.
    let (_, v) = ops.get("hash").await;
    assert_eq!(v["compiler"], "winch", "{v}");
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="compiled"}"#),
        None,
        "{text}"
    );

    std::fs::write(&open, b"").unwrap();
    ops.wait_for_compiler("hash", "cranelift").await;
    let (status, after) = crate::get_json(&client, &url).await;
    assert_eq!(
        (status, &after),
        (200, &before),
        "the optimized code answers differently"
    );
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="compiled"}"#),
        Some(1.0),
        "{text}"
    );

    // Known bytes: the optimized code, no baseline step; shared with the name that
    // holds it, or from the cache once none does.
    for (name, result) in [("hash2", "shared"), ("hash3", "cached")] {
        if name == "hash3" {
            for gone in ["hash", "hash2"] {
                assert_eq!(ops.delete(gone).await, 204);
            }
        }
        let status = ops
            .put_file(name, artifacts::HASH_COMPONENT, "")
            .await
            .status();
        assert_eq!(status, 201);
        let (_, v) = ops.get(name).await;
        assert_eq!(v["compiler"], "cranelift", "{v}");
        let text = crate::metrics(&client, &server).await;
        assert_eq!(
            crate::sample(
                &text,
                &format!(r#"faas_compiles_total{{result="{result}"}}"#)
            ),
            Some(1.0),
            "{name}: {text}"
        );
        assert_eq!(
            crate::sample(&text, r#"faas_compiles_total{result="baseline"}"#),
            Some(1.0),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn without_baseline_compile_a_deploy_waits_for_cranelift() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (server, ops) = start_with_store(store.path(), &["--baseline-compile=false"]);
    let status = ops
        .put_file("hello", artifacts::HELLO_COMPONENT, "")
        .await
        .status();
    assert_eq!(status, 201);
    let (_, v) = ops.get("hello").await;
    assert_eq!(v["compiler"], "cranelift", "{v}");
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="baseline"}"#),
        None,
        "{text}"
    );
}

#[tokio::test]
async fn deploys_survive_a_restart_without_recompiling() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (mut server, ops) = start_with_store(store.path(), &[]);
    ops.deploy("greet", artifacts::HELLO_COMPONENT, "?timeout_secs=2")
        .await;
    ops.wait_for_compiler("greet", "cranelift").await;
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="compiled"}"#),
        Some(1.0),
        "{text}"
    );
    let status = server.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success());

    let (server, ops) = start_with_store(store.path(), &[]);
    let (status, body) =
        crate::get_json(&client, &format!("{}/greet/", server.url("traffic"))).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("Hello World!"))
    );
    let (_, v) = ops.get("greet").await;
    assert_eq!(
        v["limits"]["timeout_secs"], 2.0,
        "settings were not restored: {v}"
    );
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="cached"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        crate::sample(&text, r#"faas_compiles_total{result="compiled"}"#),
        None,
        "the restart recompiled: {text}"
    );
}

/// Compiled code another engine wrote (an older wasmtime, other settings: a different
/// key) or that no longer loads (a damaged file under this engine's key) is compiled
/// again exactly once: the restart after that loads the new code from the cache.
#[tokio::test]
async fn compiled_code_from_another_engine_or_damaged_is_recompiled_once() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (server, ops) = start_with_store(store.path(), &["--baseline-compile=false"]);
    let r = ops.put_file("greet", artifacts::HELLO_COMPONENT, "").await;
    assert_eq!(r.status(), 201);
    drop(server);
    let cache = store.path().join("cache");
    let only_file = || {
        let files: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    let compiled = only_file();
    let name = compiled.file_name().unwrap().to_str().unwrap().to_string();
    let (digest, _engine) = name.rsplit_once('-').unwrap();

    let compiles = |text: &str, result: &str| {
        crate::sample(
            text,
            &format!(r#"faas_compiles_total{{result="{result}"}}"#),
        )
    };
    for damage in ["another engine's key", "damaged under this engine's key"] {
        match damage {
            "another engine's key" => {
                let foreign = cache.join(format!("{digest}-0123456789abcdef.cwasm"));
                std::fs::rename(only_file(), &foreign).unwrap();
            }
            _ => std::fs::write(only_file(), b"not machine code").unwrap(),
        }
        // A restart loads nothing; the first request meets the cache.
        let (server, _) = start_with_store(store.path(), &["--baseline-compile=false"]);
        let (status, _) =
            crate::get_json(&client, &format!("{}/greet/", server.url("traffic"))).await;
        assert_eq!(status, 200, "{damage}");
        let text = crate::metrics(&client, &server).await;
        assert_eq!(compiles(&text, "compiled"), Some(1.0), "{damage}: {text}");
        assert_eq!(compiles(&text, "cached"), None, "{damage}: {text}");
        // Damaged code fails its SHA-256: set aside, never given to wasmtime.
        let set_aside = if damage.starts_with("damaged") {
            1.0
        } else {
            0.0
        };
        assert_eq!(
            crate::sample(&text, "runtime_store_quarantined_total"),
            Some(set_aside),
            "{damage}"
        );
        drop(server);

        let (server, _) = start_with_store(store.path(), &["--baseline-compile=false"]);
        let (status, _) =
            crate::get_json(&client, &format!("{}/greet/", server.url("traffic"))).await;
        assert_eq!(status, 200, "{damage}, restarted");
        let text = crate::metrics(&client, &server).await;
        assert_eq!(
            compiles(&text, "cached"),
            Some(1.0),
            "{damage}, restarted: {text}"
        );
        assert_eq!(
            compiles(&text, "compiled"),
            None,
            "{damage}, restarted: {text}"
        );
        drop(server);
        // The foreign file stays (another engine may still use it); ours is back.
        assert!(cache.join(&name).is_file(), "{damage}");
        let _ = std::fs::remove_file(cache.join(format!("{digest}-0123456789abcdef.cwasm")));
    }
}

#[tokio::test]
async fn redeploying_under_load_fails_no_request() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    ops.deploy("f", artifacts::HELLO_COMPONENT, "").await;

    let load = crate::Load::start(&client, &[format!("{}/f/", server.url("traffic"))], 4);
    for i in 0..20 {
        let wasm = if i % 2 == 0 {
            artifacts::PLAIN_WASI_COMPONENT
        } else {
            artifacts::HELLO_COMPONENT
        };
        assert_eq!(
            ops.put_file("f", wasm, "").await.status(),
            200,
            "redeploy {i}"
        );
    }
    let (total, failed) = load.stop().await;
    assert!(
        failed.is_empty(),
        "requests failed during redeploys: {failed:?}"
    );
    assert!(
        total > 20,
        "too little load to mean anything: {total} requests"
    );
}

/// A crash at each point of a deploy's store writes (the runtime aborts there, through
/// its debug-build fault hook) leaves the store opening with either the old version or
/// the new one, whole and serving, and nothing half-written behind.
#[tokio::test]
async fn a_crash_at_any_point_of_a_deploy_leaves_the_old_or_the_new_version() {
    let client = examples::client();
    let old_wasm = std::fs::read(artifacts::HELLO_COMPONENT).unwrap();
    let new_wasm = std::fs::read(artifacts::HASH_COMPONENT).unwrap();
    let (old, new) = (
        runtime::store::digest(&old_wasm),
        runtime::store::digest(&new_wasm),
    );
    for (point, survivor) in [
        ("blob-temp", &old),
        ("blob", &old),
        ("manifest-temp", &old),
        ("manifest", &new),
    ] {
        let store = tempfile::tempdir().unwrap();
        let (server, ops) = start_with_store(store.path(), &[]);
        let r = ops.put("victim", old_wasm.clone(), "").await;
        assert_eq!(r.status(), 201);
        drop(server);

        let empty = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"));
        command
            .args(crate::args(empty.path()))
            .args([
                "--store-dir",
                store.path().to_str().unwrap(),
                "--deploy-token",
                TOKEN,
            ])
            .env("RUNTIME_STORE_CRASH_AT", point);
        let mut server = Service::start_with(&mut command, &["traffic", "ops"]).unwrap();
        let put = client
            .put(Deployer::new(&server, None).url("victim"))
            .bearer_auth(TOKEN)
            .body(new_wasm.clone())
            .send()
            .await;
        assert!(put.is_err(), "{point}: the deploy was answered: {put:?}");
        let status = server.wait_exit(Duration::from_secs(10)).unwrap();
        assert!(!status.success(), "{point}: {status:?}");
        drop(server);

        let (server, ops) = start_with_store(store.path(), &[]);
        let (status, v) = ops.get("victim").await;
        assert_eq!(status, 200, "{point}: {v}");
        assert_eq!(&v["digest"], survivor.as_str(), "{point}");
        let (status, _) = crate::get_json(
            &client,
            &format!("{}/victim/?rounds=1", server.url("traffic")),
        )
        .await;
        assert_eq!(status, 200, "{point}: the surviving version does not serve");
        for sub in ["blobs", "functions"] {
            let names: Vec<String> = std::fs::read_dir(store.path().join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                !names.iter().any(|n| n.starts_with(".tmp-")),
                "{point}: leftover temporary file in {sub}: {names:?}"
            );
            // One manifest; the blobs of the versions it keeps (the old one, and the
            // new one once the manifest names it): an orphan from the crash is cleared.
            let expected = match (sub, point) {
                ("blobs", "manifest") => 2,
                _ => 1,
            };
            assert_eq!(names.len(), expected, "{point}: {sub} holds {names:?}");
        }
    }
}

#[test]
fn cli_deploy_describe_list_rm() {
    let store = tempfile::tempdir().unwrap();
    let (server, _) = start_with_store(store.path(), &[]);
    let url = server.url("ops");
    let cli = |args: &[&str], token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"));
        command
            .args(args)
            .env("RUNTIME_URL", &url)
            .env_remove("RUNTIME_DEPLOY_TOKEN");
        if let Some(token) = token {
            command.env("RUNTIME_DEPLOY_TOKEN", token);
        }
        command.output().unwrap()
    };
    let out = cli(
        &[
            "deploy",
            "greet",
            artifacts::HELLO_COMPONENT,
            "--memory-mib",
            "32",
        ],
        Some(TOKEN),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deployed greet version 1, current: sha256:")
            && stdout.contains("(wasi-http)"),
        "{stdout}"
    );
    // A WASI 0.1 module deploys the same way, and says what it is.
    let out = cli(
        &["deploy", "greet-wagi", artifacts::HELLO_MODULE],
        Some(TOKEN),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("(wagi)"),
        "{stdout}"
    );

    let out = cli(&["list"], None);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("greet\tv1\tsha256:") && lines[0].ends_with("\twasi-http"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("greet-wagi\tv1\tsha256:") && lines[1].ends_with("\twagi"),
        "{stdout}"
    );

    // A settings file, as beside a --functions-dir file, with flags over it; timeouts
    // as durations (and in seconds, the old form).
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("configured.toml");
    std::fs::write(
        &settings,
        "memory_mib = 48\ntimeout_secs = 9\nallowed_outbound_hosts = [\"https://api.example.com\"]\n[env]\nGREETING = \"hi\"\n",
    )
    .unwrap();
    let settings = settings.to_str().unwrap();
    let out = cli(
        &[
            "deploy",
            "configured",
            artifacts::HELLO_COMPONENT,
            "--settings",
            settings,
            "--timeout",
            "1500ms",
            "--env",
            "EXTRA=1",
        ],
        Some(TOKEN),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["describe", "configured", "-o", "json"], Some(TOKEN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["limits"]["memory_bytes"], 48 << 20, "{v}");
    assert_eq!(v["limits"]["timeout_secs"], 1.5, "{v}");
    assert_eq!(v["settings"]["env"]["GREETING"], "hi", "{v}");
    assert_eq!(v["settings"]["env"]["EXTRA"], "1", "{v}");
    assert_eq!(
        v["settings"]["allowed_outbound_hosts"][0], "https://api.example.com",
        "{v}"
    );
    // For people: a line a field; without the token, no env values.
    let out = cli(&["describe", "configured"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("name         configured"), "{text}");
    assert!(text.contains("kind         wasi-http"), "{text}");
    assert!(
        text.contains("timeout_secs") && !text.contains("\"hi\""),
        "{text}"
    );
    let out = cli(
        &[
            "deploy",
            "configured",
            artifacts::HELLO_COMPONENT,
            "--timeout-secs",
            "2",
        ],
        Some(TOKEN),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["describe", "configured", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["limits"]["timeout_secs"], 2.0, "{v}");
    let out = cli(&["list", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["functions"].as_array().unwrap().len(), 3, "{v}");
    // Bad input: a settings file with a key it does not know, a timeout of zero.
    std::fs::write(dir.path().join("bad.toml"), "memory = 3\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let out = cli(
        &[
            "deploy",
            "x",
            artifacts::HELLO_COMPONENT,
            "--settings",
            bad.to_str().unwrap(),
        ],
        Some(TOKEN),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("bad.toml") && stderr.contains("memory"),
        "{stderr}"
    );
    let out = cli(
        &["deploy", "x", artifacts::HELLO_COMPONENT, "--timeout", "0s"],
        Some(TOKEN),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive"));
    assert!(cli(&["rm", "configured"], Some(TOKEN)).status.success());

    let out = cli(&["rm", "greet"], Some("wrong"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cli(&["deploy", "broken", "/nonexistent.wasm"], Some(TOKEN));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.wasm"));

    for name in ["greet", "greet-wagi"] {
        let out = cli(&["rm", name], Some(TOKEN));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = cli(&["list"], None);
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

/// Sends `request` as is (no client-side URL normalisation) and returns what comes back
/// until the server closes (5 s at most).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    localrun::read_until_close(&mut stream, Duration::from_secs(5)).await
}

#[tokio::test]
async fn the_request_head_is_judged_before_any_body_is_read() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    ops.deploy("keep", artifacts::HELLO_COMPONENT, "").await;
    let addr = server.addr("ops");
    let huge = "content-length: 1000000000000\r\nexpect: 100-continue\r\n";
    // No token: 401 at once, without reading (or asking for) the body.
    let answer = raw(
        addr,
        &format!("PUT /functions/x HTTP/1.1\r\nhost: t\r\n{huge}\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    // With the token: the declared length alone is refused.
    let answer = raw(
        addr,
        &format!(
            "PUT /functions/x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\n{huge}\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    // Names are checked for every method, before the store is touched, and no answer
    // names a host path.
    for (method, path) in [
        ("DELETE", "/functions/../keep"),
        ("DELETE", "/functions//etc/passwd"),
        ("GET", "/functions/..%2Fkeep"),
        ("GET", "/functions/Keep"),
    ] {
        let answer = raw(
            addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{method} {path}: {answer:?}"
        );
        assert!(answer.contains("invalid function name"), "{answer:?}");
        assert!(
            !answer.contains(store.path().to_str().unwrap()),
            "{answer:?}"
        );
    }
    let (status, _) = ops.get("keep").await;
    assert_eq!(status, 200, "the valid function is untouched");
}

#[tokio::test]
async fn environment_values_are_shown_only_with_the_token() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    let r = ops
        .put_file("x", artifacts::HELLO_COMPONENT, "?env=SECRET=hunter2")
        .await;
    assert_eq!(r.status(), 201);
    let deployed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        deployed["settings"]["env"]["SECRET"], "hunter2",
        "the deployer sees it"
    );
    for url in [ops.url("x"), format!("{}/functions", server.url("ops"))] {
        let text = client.get(&url).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains("hunter2"), "{url}: {text}");
        assert!(text.contains("SECRET"), "{url}: the key is listed: {text}");
        let with_token = client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(with_token.contains("hunter2"), "{url}: {with_token}");
    }
}

#[tokio::test]
async fn broken_store_entries_are_set_aside_and_the_rest_start() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (server, ops) = start_with_store(store.path(), &["--baseline-compile=false"]);
    for name in ["good", "lost", "garbled", "renamed", "escape"] {
        let r = ops
            .put_file(name, artifacts::HELLO_COMPONENT, "?env=A=1")
            .await;
        assert_eq!(r.status(), 201, "{name}");
    }
    let r = ops.put_file("other", artifacts::SLEEP_COMPONENT, "").await;
    assert_eq!(r.status(), 201);
    drop(server);

    let functions = store.path().join("functions");
    std::fs::write(functions.join("garbled.json"), b"{ not json").unwrap();
    let renamed = std::fs::read_to_string(functions.join("renamed.json")).unwrap();
    std::fs::write(
        functions.join("renamed.json"),
        renamed.replace("\"renamed\"", "\"good\""),
    )
    .unwrap();
    // "lost" gets a digest whose blob does not exist.
    let lost = std::fs::read_to_string(functions.join("lost.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&lost).unwrap();
    let digest = v["versions"][0]["digest"].as_str().unwrap();
    std::fs::write(
        functions.join("lost.json"),
        lost.replace(digest, &format!("sha256:{}", "0".repeat(64))),
    )
    .unwrap();

    // "escape" names a file outside the store through its digest, one that is there
    // with the size the manifest records: a digest names a file, so it is checked first.
    let escape = std::fs::read_to_string(functions.join("escape.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&escape).unwrap();
    let outside_dir = tempfile::tempdir().unwrap();
    let outside = outside_dir.path().join("outside.wasm");
    let v = &v["versions"][0];
    std::fs::write(&outside, vec![0u8; v["size"].as_u64().unwrap() as usize]).unwrap();
    let relative = format!(
        "sha256:../../../..{}",
        outside.with_extension("").to_str().unwrap()
    );
    std::fs::write(
        functions.join("escape.json"),
        escape.replace(v["digest"].as_str().unwrap(), &relative),
    )
    .unwrap();

    let (server, ops) = start_with_store(store.path(), &["--baseline-compile=false"]);
    for (name, status) in [
        ("good", 200),
        ("other", 200),
        ("lost", 404),
        ("garbled", 404),
        ("renamed", 404),
        ("escape", 404),
    ] {
        let (got, _) = ops.get(name).await;
        assert_eq!(got, status, "{name}");
    }
    let (status, _) = crate::get_json(&client, &format!("{}/good/", server.url("traffic"))).await;
    assert_eq!(status, 200);
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, "runtime_store_quarantined_total"),
        Some(4.0)
    );
    let aside: Vec<String> = std::fs::read_dir(store.path().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for name in ["garbled", "renamed", "lost", "escape"] {
        let prefix = format!("functions-{name}.json.");
        assert!(
            aside.iter().any(|f| f.starts_with(&prefix)),
            "{name}: {aside:?}"
        );
    }
}

#[tokio::test]
async fn the_store_is_private_and_one_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    let (server, ops) = start_with_store(&dir, &[]);
    ops.deploy("x", artifacts::HELLO_COMPONENT, "?env=SECRET=s")
        .await;
    drop(server);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for sub in ["functions", "blobs", "cache"] {
        assert_eq!(mode(&dir.join(sub)), 0o700, "{sub}");
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--store-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("writable by other users (mode 777)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_token_may_come_from_a_file_and_the_scheme_in_any_case() {
    let store = tempfile::tempdir().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "from-a-file\n").unwrap();
    let server = crate::start(
        tempfile::tempdir().unwrap().path(),
        &[
            "--store-dir",
            store.path().to_str().unwrap(),
            "--deploy-token-file",
            file.path().to_str().unwrap(),
        ],
    );
    let client = examples::client();
    let wasm = std::fs::read(artifacts::HELLO_COMPONENT).unwrap();
    for (header, status) in [
        ("bearer from-a-file", 201),
        ("BEARER  from-a-file ", 200),
        ("Bearer from-a-file\u{20}x", 401),
        ("Basic from-a-file", 401),
    ] {
        let r = client
            .put(Deployer::new(&server, None).url("x"))
            .header("authorization", header)
            .body(wasm.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{header:?}");
    }
}

#[tokio::test]
async fn without_a_token_only_requests_to_localhost_may_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::start(dir.path(), &[]);
    let addr = server.addr("ops");
    // What a web page would send after rebinding its own name to 127.0.0.1.
    let answer = raw(
        addr,
        "DELETE /functions/x HTTP/1.1\r\nhost: attacker.example:8081\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer:?}");
    for host in ["localhost:8081", "127.0.0.1", "[::1]:8081"] {
        let answer = raw(
            addr,
            &format!("DELETE /functions/x HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{host}: {answer:?}");
    }
    assert!(
        server
            .wait_for_log("no --deploy-token", Duration::from_secs(5))
            .is_ok()
    );
}

#[tokio::test]
async fn a_deleted_functions_series_go_with_it() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    ops.deploy("gone", artifacts::MISBEHAVE_COMPONENT, "").await;
    for path in ["counter", "trap"] {
        let url = format!("{}/gone/{path}", server.url("traffic"));
        let _ = client.get(url).send().await.unwrap();
    }
    let text = crate::metrics(&client, &server).await;
    assert!(
        text.contains(r#"faas_errors_total{function="gone",reason="trap",version="current"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_server_requests_total{function="gone",method="GET",status="500"}"#),
        "{text}"
    );
    assert_eq!(ops.delete("gone").await, 204);
    let text = crate::metrics(&client, &server).await;
    let left: Vec<_> = text
        .lines()
        .filter(|l| l.contains(r#"function="gone""#))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
}

#[tokio::test]
async fn background_compiles_run_on_one_thread_and_the_latest_deploy_wins() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let client = examples::client();
    let named_tier_up = || -> std::collections::BTreeSet<std::ffi::OsString> {
        std::fs::read_dir(format!("/proc/{}/task", server.pid()))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "tier-up")
            })
            .map(|t| t.file_name())
            .collect()
    };
    // Threads named `tier-up` in two looks 20 ms apart: a thread the worker has just
    // started (the reader of its compiler process) carries its name until it names
    // itself, microseconds later; the worker is in both looks.
    let tier_up_threads = || {
        let first = named_tier_up();
        std::thread::sleep(Duration::from_millis(20));
        first.intersection(&named_tier_up()).count()
    };
    // Eight first deploys in a row, each served by Winch's code and queued for Cranelift,
    // then the same name three times: only its last version is compiled in the end.
    let mut most = 0;
    for i in 0..8 {
        let name = format!("f{i}");
        let r = ops
            .put_file(&name, artifacts::HELLO_COMPONENT, &format!("?env=V={i}"))
            .await;
        assert_eq!(r.status(), 201, "{name}");
        most = most.max(tier_up_threads());
    }
    for (i, path) in [
        artifacts::HELLO_COMPONENT,
        artifacts::SLEEP_COMPONENT,
        artifacts::HASH_COMPONENT,
    ]
    .into_iter()
    .enumerate()
    {
        let r = ops.put_file("last", path, "").await;
        assert!(r.status().is_success(), "{i}");
        most = most.max(tier_up_threads());
    }
    assert_eq!(most, 1, "background compile threads at once");
    for i in 0..8 {
        ops.wait_for_compiler(&format!("f{i}"), "cranelift").await;
    }
    ops.wait_for_compiler("last", "cranelift").await;
    let (_, v) = ops.get("last").await;
    let hash = std::fs::read(artifacts::HASH_COMPONENT).unwrap();
    assert_eq!(v["size"], hash.len(), "the last deploy's code: {v}");
    let (status, v) = crate::get_json(
        &client,
        &format!("{}/last/?rounds=1", server.url("traffic")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["rounds"], 1, "{v}");
    assert_eq!(tier_up_threads(), 1, "the worker stays for the next deploy");
}
