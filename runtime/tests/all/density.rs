//! Many functions on one runtime: code shared per component, loaded by a function's
//! first request after a restart, unloaded least recently used first past
//! `--max-loaded-functions`, and cold starts counted by why they happened.

use crate::Deployer;
use localrun::{Service, examples};
use std::path::Path;

/// Cranelift only: each deploy's code is final, so counts do not depend on when a
/// background compile lands.
fn start(store: &Path, extra: &[&str]) -> (Service, Deployer) {
    let mut args = vec!["--baseline-compile=false"];
    args.extend_from_slice(extra);
    crate::start_with_store(store, &args)
}

/// The value of `series` now, 0 when it is not exported.
async fn value(server: &Service, series: &str) -> f64 {
    let text = crate::metrics(&examples::client(), server).await;
    crate::sample(&text, series).unwrap_or(0.0)
}

async fn get(server: &Service, path: &str) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", server.url("traffic"));
    crate::get_json(&examples::client(), &url).await
}

fn cold(function: &str, reason: &str) -> String {
    format!(r#"faas_coldstarts_total{{function="{function}",reason="{reason}"}}"#)
}

#[tokio::test]
async fn names_that_deploy_one_component_share_its_code() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start(store.path(), &[]);
    ops.deploy("a", artifacts::HELLO_COMPONENT, "").await;
    let one = value(&server, "runtime_loaded_code_bytes").await;
    assert!(one > 0.0, "hello maps no code?");
    let described = ops
        .deploy("b", artifacts::HELLO_COMPONENT, "?env=X=1")
        .await;
    assert_eq!(described["loaded"], true, "{described}");
    assert_eq!(
        value(&server, r#"faas_compiles_total{result="compiled"}"#).await,
        1.0
    );
    assert_eq!(
        value(&server, r#"faas_compiles_total{result="shared"}"#).await,
        1.0,
        "the second name compiled its own copy"
    );
    assert_eq!(value(&server, "runtime_loaded_functions").await, 2.0);
    assert_eq!(
        value(&server, "runtime_loaded_code_bytes").await,
        one,
        "two names, two copies of one component's code"
    );

    // Redeploying one leaves the other serving what it had.
    ops.deploy("a", artifacts::HASH_COMPONENT, "").await;
    assert_eq!(get(&server, "/b/").await.1["message"], "Hello World!");
    let (status, v) = get(&server, "/a/?rounds=1").await;
    assert_eq!((status, &v["rounds"]), (200, &serde_json::json!(1)), "{v}");
    assert!(value(&server, "runtime_loaded_code_bytes").await > one);
    // Deleting b drops the last holder of hello's code.
    assert_eq!(ops.delete("b").await, 204);
    assert_eq!(value(&server, "runtime_loaded_functions").await, 1.0);
}

#[tokio::test]
async fn a_restart_loads_a_function_only_when_it_is_requested() {
    let store = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    {
        let (_server, ops) = start(store.path(), &[]);
        for (i, name) in names.iter().enumerate() {
            let wasm = match i % 2 {
                0 => artifacts::HELLO_COMPONENT,
                _ => artifacts::HASH_COMPONENT,
            };
            ops.deploy(name, wasm, "").await;
        }
    }
    let (server, ops) = start(store.path(), &[]);
    // Serving (the helper waited for /healthz), every function listed, none loaded.
    assert_eq!(value(&server, "faas_functions_deployed").await, 40.0);
    assert_eq!(value(&server, "runtime_loaded_functions").await, 0.0);
    let (_, f0) = ops.get("f0").await;
    assert_eq!(
        (&f0["loaded"], &f0["kind"], &f0["compiler"]),
        (
            &serde_json::json!(false),
            &serde_json::json!("wasi-http"),
            &serde_json::Value::Null
        ),
        "{f0}"
    );

    assert_eq!(get(&server, "/f0/").await.0, 200);
    assert_eq!(get(&server, "/f0/").await.0, 200);
    assert_eq!(value(&server, "runtime_loaded_functions").await, 1.0);
    assert_eq!(value(&server, &cold("f0", "first_request")).await, 1.0);
    assert_eq!(
        value(
            &server,
            r#"faas_load_duration_seconds_count{reason="first_request"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        value(&server, r#"faas_compiles_total{result="cached"}"#).await,
        1.0,
        "the first request loads the cached code"
    );
    // f2 deployed the same component: its first request shares f0's code.
    assert_eq!(get(&server, "/f2/").await.0, 200);
    assert_eq!(
        value(&server, r#"faas_compiles_total{result="shared"}"#).await,
        1.0
    );
    assert_eq!(ops.get("f0").await.1["loaded"], true);
    assert_eq!(ops.get("f4").await.1["loaded"], false);
}

#[tokio::test]
async fn past_the_bound_the_least_recently_used_function_is_unloaded() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start(store.path(), &["--max-loaded-functions", "2"]);
    for name in ["a", "b", "c"] {
        ops.deploy(name, artifacts::HELLO_COMPONENT, "").await;
        assert_eq!(get(&server, &format!("/{name}/")).await.0, 200, "{name}");
        assert!(value(&server, "runtime_loaded_functions").await <= 2.0);
    }
    // c's deploy unloaded a, the least recently used.
    assert_eq!(ops.get("a").await.1["loaded"], false);
    assert_eq!(get(&server, "/a/").await.0, 200);
    assert_eq!(value(&server, &cold("a", "evicted")).await, 1.0);
    // That load unloaded b (c served after it).
    assert_eq!(ops.get("b").await.1["loaded"], false);
    assert_eq!(ops.get("c").await.1["loaded"], true);
    assert_eq!(value(&server, "runtime_loaded_functions").await, 2.0);
    for name in ["a", "b", "c"] {
        assert_eq!(
            value(&server, &cold(name, "first_request")).await,
            1.0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn concurrent_first_requests_load_the_code_once() {
    let store = tempfile::tempdir().unwrap();
    {
        let (_server, ops) = start(store.path(), &[]);
        ops.deploy("f", artifacts::HASH_COMPONENT, "").await;
    }
    let (server, _ops) = start(store.path(), &[]);
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let url = format!("{}/f/?rounds=1", server.url("traffic"));
            tokio::spawn(async move { crate::get_json(&examples::client(), &url).await.0 })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(
        value(&server, r#"faas_compiles_total{result="cached"}"#).await,
        1.0,
        "loaded more than once"
    );
    assert_eq!(value(&server, &cold("f", "first_request")).await, 1.0);
    assert_eq!(
        value(
            &server,
            r#"faas_invocations_total{function="f",version="current"}"#
        )
        .await,
        16.0
    );
}

/// With room for one function, requests to two alternate loads and unloads under each
/// other: every request is answered, from the code it started with.
#[tokio::test]
async fn requests_racing_evictions_and_redeploys_all_succeed() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start(store.path(), &["--max-loaded-functions", "1"]);
    ops.deploy("a", artifacts::HELLO_COMPONENT, "").await;
    ops.deploy("b", artifacts::HASH_COMPONENT, "").await;
    let urls = [
        format!("{}/a/", server.url("traffic")),
        format!("{}/b/?rounds=1", server.url("traffic")),
    ];
    let load = crate::Load::start(&examples::client(), &urls, 3);
    // Redeploys of a race the first loads its evictions cause.
    for i in 0..10 {
        let wasm = match i % 2 {
            0 => artifacts::PLAIN_WASI_COMPONENT,
            _ => artifacts::HELLO_COMPONENT,
        };
        assert_eq!(ops.put_file("a", wasm, "").await.status(), 200, "{i}");
    }
    let (ok, failed) = load.stop().await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(ok > 20, "too little load: {ok}");
    let evicted =
        value(&server, &cold("a", "evicted")).await + value(&server, &cold("b", "evicted")).await;
    assert!(evicted > 0.0, "nothing was unloaded");
    assert!(value(&server, "runtime_loaded_functions").await <= 1.0);
}

/// Damaged compiled code met by a first load is set aside and the function compiled
/// from its stored component; a damaged component with no usable code fails only its
/// own requests, with a message.
#[tokio::test]
async fn damage_met_at_first_load_is_set_aside_or_fails_that_function_alone() {
    let store = tempfile::tempdir().unwrap();
    {
        let (_server, ops) = start(store.path(), &[]);
        ops.deploy("good", artifacts::HELLO_COMPONENT, "").await;
        ops.deploy("bad", artifacts::HASH_COMPONENT, "").await;
    }
    let cache = store.path().join("cache");
    let hash_digest = runtime::store::digest(&std::fs::read(artifacts::HASH_COMPONENT).unwrap());
    let hash_hex = hash_digest.trim_start_matches("sha256:");
    let hello_digest = runtime::store::digest(&std::fs::read(artifacts::HELLO_COMPONENT).unwrap());
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".cwasm") {
            if name.starts_with(hash_hex) {
                std::fs::remove_file(&path).unwrap();
            } else {
                std::fs::write(&path, b"not machine code").unwrap();
            }
        }
    }
    // bad's component: same size, other bytes.
    let blob = store.path().join("blobs").join(format!("{hash_hex}.wasm"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let (server, ops) = start(store.path(), &[]);
    assert_eq!(get(&server, "/good/").await.0, 200);
    assert_eq!(value(&server, "runtime_store_quarantined_total").await, 1.0);
    assert_eq!(
        value(&server, r#"faas_compiles_total{result="compiled"}"#).await,
        1.0
    );
    let (status, v) = get(&server, "/bad/?rounds=1").await;
    assert_eq!(status, 500, "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("could not be loaded") && error.contains("does not match its digest"),
        "{error}"
    );
    assert_eq!(
        value(
            &server,
            r#"faas_errors_total{function="bad",reason="load",version="current"}"#
        )
        .await,
        1.0
    );
    assert_eq!(get(&server, "/good/").await.0, 200);
    assert_eq!(ops.get("good").await.1["digest"], hello_digest.as_str());
}

#[test]
fn a_bound_of_no_functions_is_refused_at_start() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args(crate::args(empty.path()))
        .args(["--max-loaded-functions", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-loaded-functions") && stderr.contains("'0'"),
        "{stderr}"
    );
}
