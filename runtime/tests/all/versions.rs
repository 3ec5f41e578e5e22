//! Versions, rollbacks and canaries through the deploy API and the CLI: a rollback
//! restores the older version's behaviour in one step and survives restarts and kills,
//! a canary takes its share and ends by promote, rollback or its own error rate, and a
//! change that does not apply is refused, changing nothing.

use crate::Deployer;
use localrun::{Service, examples};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{TOKEN, start_with_store};

/// hello answers every path with its greeting; misbehave answers `/f/counter` with
/// `{"calls":1}` and traps on `/f/trap`: which version served a request shows in its
/// answer.
const V1: &str = artifacts::HELLO_COMPONENT;
const V2: &str = artifacts::MISBEHAVE_COMPONENT;

#[derive(Debug, PartialEq)]
enum Served {
    Hello,
    Misbehave,
}

/// Which version answered a GET of `/f/counter`.
async fn served(client: &reqwest::Client, server: &Service) -> Served {
    let (status, body) =
        crate::get_json(client, &format!("{}/f/counter", server.url("traffic"))).await;
    assert_eq!(status, 200, "{body}");
    match (&body["message"], &body["calls"]) {
        (serde_json::Value::String(_), _) => Served::Hello,
        (_, serde_json::Value::Number(_)) => Served::Misbehave,
        _ => panic!("an answer of neither version: {body}"),
    }
}

/// Runs the CLI against `server` with the token; whether it succeeded, and its stdout
/// if it did, its stderr if not.
fn run(server: &Service, args: &[&str]) -> (bool, String) {
    let out = crate::cli(server, args, Some(TOKEN)).output().unwrap();
    match out.status.success() {
        true => (true, String::from_utf8(out.stdout).unwrap()),
        false => (false, String::from_utf8(out.stderr).unwrap()),
    }
}

/// The CLI's output for `args`, which must succeed.
fn cli(server: &Service, args: &[&str]) -> String {
    let (ok, text) = run(server, args);
    assert!(ok, "runtime {args:?}: {text}");
    text
}

/// The CLI's error for `args`, which must fail.
fn cli_fails(server: &Service, args: &[&str]) -> String {
    let (ok, text) = run(server, args);
    assert!(!ok, "runtime {args:?} succeeded: {text}");
    text
}

async fn post(ops: &Deployer, path: &str) -> (u16, serde_json::Value) {
    let response = examples::client()
        .post(format!("{}{path}", ops.url("f")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn versions(ops: &Deployer) -> serde_json::Value {
    let (status, v) =
        crate::get_json(&examples::client(), &format!("{}/versions", ops.url("f"))).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn manifest(store: &Path) -> Vec<u8> {
    std::fs::read(store.join("functions/f.json")).unwrap()
}

#[tokio::test]
async fn a_rollback_restores_the_older_version_and_survives_a_restart() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (server, ops) = start_with_store(store.path(), &[]);
    let v1 = ops.deploy("f", V1, "").await;
    let v2 = ops.deploy("f", V2, "?env=A=1").await;
    assert_eq!((&v1["version"], &v2["version"]), (&1.into(), &2.into()));
    assert_eq!(served(&client, &server).await, Served::Misbehave);

    let listed: serde_json::Value =
        serde_json::from_str(&cli(&server, &["versions", "f", "-o", "json"])).unwrap();
    assert_eq!(listed["current"], 2);
    let states: Vec<_> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(1, "kept"), (2, "current")]);
    assert_eq!(listed["versions"][1]["settings"]["env"]["A"], "1");
    let text = cli(&server, &["versions", "f"]);
    assert!(text.contains("2\tcurrent\t"), "{text}");

    // One step back: hello again, at once.
    let out = cli(&server, &["rollback", "f"]);
    assert!(out.contains("version 1 is current"), "{out}");
    assert_eq!(served(&client, &server).await, Served::Hello);
    assert_eq!(ops.get("f").await.1["version"], 1);
    let described = cli(&server, &["describe", "f"]);
    assert!(described.contains("version      1"), "{described}");

    // What a restart serves is what was rolled back to.
    drop(server);
    let (server, ops) = start_with_store(store.path(), &[]);
    assert_eq!(served(&client, &server).await, Served::Hello);
    assert_eq!(versions(&ops).await["current"], 1);

    // Forward again by number, then a new deploy is numbered after the newest.
    let (status, v) = post(&ops, "/rollback?version=2").await;
    assert_eq!((status, &v["current"]), (200, &2.into()), "{v}");
    assert_eq!(served(&client, &server).await, Served::Misbehave);
    assert_eq!(ops.deploy("f", V1, "").await["version"], 3);
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(&text, r#"faas_deployments_total{result="rolled_back"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn versions_past_the_bound_go_with_their_blobs() {
    let store = tempfile::tempdir().unwrap();
    let (_server, ops) = start_with_store(store.path(), &["--keep-versions", "2"]);
    for (file, query) in [(V1, ""), (V2, ""), (V1, "?env=B=2")] {
        ops.deploy("f", file, query).await;
    }
    let v = versions(&ops).await;
    let kept: Vec<u64> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [2, 3]);
    // Versions 2 and 3 are misbehave and hello: two blobs; version 1 shared hello's.
    assert_eq!(
        std::fs::read_dir(store.path().join("blobs"))
            .unwrap()
            .count(),
        2
    );
    let (status, v) = post(&ops, "/rollback?version=1").await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("kept: 2, 3"), "{v}");
}

/// A runtime started on `store` with `RUNTIME_STORE_CRASH_AT=point`: it aborts when a
/// store write reaches that point.
fn crashing(store: &Path, point: &str) -> Service {
    let empty = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"));
    command
        .args(crate::args(empty.path()))
        .args([
            "--store-dir",
            store.to_str().unwrap(),
            "--deploy-token",
            TOKEN,
        ])
        .env("RUNTIME_STORE_CRASH_AT", point);
    Service::start_with(&mut command, &["traffic", "ops"]).unwrap()
}

#[tokio::test]
async fn a_rollback_killed_midway_leaves_one_version_or_the_other() {
    let client = examples::client();
    // Killed before the new manifest is in place: the version before serves; after
    // (renamed, not yet synced): the rollback holds.
    for (point, survivor) in [
        ("manifest-temp", Served::Misbehave),
        ("manifest", Served::Hello),
    ] {
        let store = tempfile::tempdir().unwrap();
        let (server, ops) = start_with_store(store.path(), &[]);
        ops.deploy("f", V1, "").await;
        ops.deploy("f", V2, "").await;
        drop(server);
        let mut server = crashing(store.path(), point);
        let ops = Deployer::new(&server, Some(TOKEN));
        let rollback = client
            .post(format!("{}/rollback", ops.url("f")))
            .bearer_auth(TOKEN)
            .send()
            .await;
        assert!(rollback.is_err(), "{point}: answered: {rollback:?}");
        assert!(!server.wait_exit(Duration::from_secs(10)).unwrap().success());
        drop(server);
        let (server, ops) = start_with_store(store.path(), &[]);
        assert_eq!(served(&client, &server).await, survivor, "{point}");
        let v = versions(&ops).await;
        assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{point}: {v}");
    }

    // kill -9 right after a rollback is answered: it is durable.
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    ops.deploy("f", V1, "").await;
    ops.deploy("f", V2, "").await;
    assert_eq!(post(&ops, "/rollback").await.0, 200);
    drop(server); // SIGKILL
    let (server, _) = start_with_store(store.path(), &[]);
    assert_eq!(served(&client, &server).await, Served::Hello);
}

/// Sends `n` GETs of `/f/PATH` over `tasks` connections; how many each version answered
/// (hello's greeting, or anything else: misbehave's).
async fn split(server: &Service, path: &str, n: usize, tasks: usize) -> (usize, usize) {
    let client = examples::client();
    let url = format!("{}/f/{path}", server.url("traffic"));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (client, url) = (client.clone(), url.clone());
        let count = n / tasks + usize::from(task < n % tasks);
        handles.push(tokio::spawn(async move {
            let mut hello = 0;
            for _ in 0..count {
                let body = client.get(&url).send().await.unwrap().text().await.unwrap();
                hello += usize::from(body.contains("Hello World!"));
            }
            (hello, count - hello)
        }));
    }
    let mut total = (0, 0);
    for handle in handles {
        let (hello, other) = handle.await.unwrap();
        total = (total.0 + hello, total.1 + other);
    }
    total
}

#[tokio::test]
async fn a_canary_takes_its_share_until_promoted_or_rolled_back() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (server, ops) = start_with_store(store.path(), &[]);
    ops.deploy("f", V1, "").await;
    let out = cli(&server, &["deploy", "f", V2, "--canary", "10"]);
    assert!(out.contains("version 2, as a canary taking 10 %"), "{out}");
    let described = ops.get("f").await.1;
    assert_eq!(described["version"], 1);
    assert_eq!(described["canary"]["version"], 2);
    assert_eq!(described["canary"]["percent"], 10);

    let (hello, canary) = split(&server, "counter", 2000, 4).await;
    assert!(
        (140..=260).contains(&canary),
        "the 10 % canary served {canary} of 2,000 (hello {hello})"
    );
    // The metrics tell the two apart, bounded to current and canary.
    let text = crate::metrics(&client, &server).await;
    let count = |version: &str| {
        crate::sample(
            &text,
            &format!(r#"faas_invocations_total{{function="f",version="{version}"}}"#),
        )
    };
    assert_eq!(count("canary"), Some(canary as f64));
    assert_eq!(count("current"), Some(hello as f64));
    assert_eq!(versions(&ops).await["versions"][1]["state"], "canary");
    let list = cli(&server, &["list"]);
    assert!(list.contains("canary v2 10 %"), "{list}");

    // Promote: every request is the canary's version.
    let out = cli(&server, &["promote", "f"]);
    assert!(out.contains("version 2 is current"), "{out}");
    assert_eq!(split(&server, "counter", 50, 2).await, (0, 50));
    assert!(ops.get("f").await.1["canary"].is_null());

    // Another canary, half the traffic, ended by a rollback: none of it after.
    ops.deploy("f", V1, "?canary=50").await;
    let (hello, _) = split(&server, "counter", 100, 2).await;
    assert!(hello > 0, "the 50 % canary served nothing");
    let out = cli(&server, &["rollback", "f"]);
    assert!(out.contains("version 2 is current"), "{out}");
    assert_eq!(split(&server, "counter", 50, 2).await, (0, 50));
    let v = versions(&ops).await;
    assert!(v["canary"].is_null(), "{v}");
    assert_eq!(v["current"], 2);
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(
            &text,
            r#"runtime_canary_rollbacks_total{function="f",trigger="manual"}"#
        ),
        Some(1.0)
    );
    // A canary outlives a restart.
    ops.deploy("f", V1, "?canary=30").await;
    drop(server);
    let (_server, ops) = start_with_store(store.path(), &[]);
    assert_eq!(ops.get("f").await.1["canary"]["percent"], 30);
}

#[tokio::test]
async fn a_canary_failing_past_its_threshold_is_rolled_back_by_the_runtime() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (server, ops) = start_with_store(store.path(), &["--canary-min-requests", "10"]);
    ops.deploy("f", V1, "").await;
    // misbehave traps on /f/trap: every request the canary takes fails.
    let out = cli(
        &server,
        &[
            "deploy",
            "f",
            V2,
            "--canary",
            "50",
            "--canary-max-error-rate",
            "10%",
        ],
    );
    assert!(out.contains("canary"), "{out}");
    let url = format!("{}/f/trap", server.url("traffic"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failed = 0;
    loop {
        let status = client.get(&url).send().await.unwrap().status();
        failed += usize::from(status.is_server_error());
        if versions(&ops).await["canary"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failing canary still runs after {failed} failures"
        );
    }
    assert!(
        failed >= 10,
        "ended after {failed} failures, before its minimum"
    );
    // The store changes first (so replicas follow), then this runtime swaps its
    // routes and counts the rollback, then logs it: wait for that last step.
    server
        .wait_for_log("canary rolled back", Duration::from_secs(5))
        .unwrap();
    // The current version answers everything now, and the store says so.
    for _ in 0..20 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    let v = versions(&ops).await;
    assert_eq!(
        (v["current"].as_u64(), v["canary"].is_null()),
        (Some(1), true)
    );
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(
            &text,
            r#"runtime_canary_rollbacks_total{function="f",trigger="error_rate"}"#
        ),
        Some(1.0)
    );
    // A restart keeps it ended.
    drop(server);
    let (_server, ops) = start_with_store(store.path(), &[]);
    assert!(ops.get("f").await.1["canary"].is_null());
}

#[tokio::test]
async fn version_changes_that_do_not_apply_are_refused_and_change_nothing() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(store.path(), &[]);
    let wasm = std::fs::read(V2).unwrap();
    // A canary of a function not deployed.
    let r = ops.put("f", wasm.clone(), "?canary=10").await;
    assert_eq!(r.status(), 409);
    let text = r.text().await.unwrap();
    assert!(text.contains("deploy it without a canary first"), "{text}");
    assert_eq!(ops.get("f").await.0, 404);
    assert_eq!(
        std::fs::read_dir(store.path().join("blobs"))
            .unwrap()
            .count(),
        0
    );
    // Nothing to roll back or promote.
    assert_eq!(post(&ops, "/rollback").await.0, 404);
    ops.deploy("f", V1, "").await;
    let before = manifest(store.path());
    let (status, v) = post(&ops, "/rollback").await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no version older"),
        "{v}"
    );
    ops.deploy("f", V2, "").await;
    let before_two = manifest(store.path());
    assert_ne!(before, before_two);
    for (path, status, says) in [
        ("/rollback?version=9", 409, "has no version 9 (kept: 1, 2)"),
        ("/rollback?version=2", 409, "current already"),
        ("/rollback?version=two", 400, "not a version number"),
        ("/promote", 409, "has no canary"),
    ] {
        let (got, v) = post(&ops, path).await;
        assert_eq!(got, status, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{path}: {v}");
        assert_eq!(
            manifest(store.path()),
            before_two,
            "{path} changed the store"
        );
    }
    // Canary shares outside 1-99, as the API and the CLI get them.
    for share in ["0", "100", "-5", "ten", "10.5"] {
        let r = ops
            .put("f", wasm.clone(), &format!("?canary={share}"))
            .await;
        assert_eq!(r.status(), 400, "canary={share}");
        let text = r.text().await.unwrap();
        assert!(text.contains("1 to 99"), "{share}: {text}");
        let err = cli_fails(&server, &["deploy", "f", V2, &format!("--canary={share}")]);
        assert!(err.contains("1 to 99"), "{share}: {err}");
    }
    let err = cli_fails(&server, &["rollback", "f", "7"]);
    assert!(err.contains("409") && err.contains("no version 7"), "{err}");
    assert_eq!(manifest(store.path()), before_two);
    assert_eq!(
        served(&examples::client(), &server).await,
        Served::Misbehave
    );

    // Without a store there are no versions to go back to: said, not pretended.
    let empty = tempfile::tempdir().unwrap();
    let plain = crate::start(empty.path(), &["--deploy-token", TOKEN]);
    let ops = Deployer::new(&plain, Some(TOKEN));
    ops.deploy("f", V1, "").await;
    let r = ops.put("f", wasm, "?canary=10").await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("--store-dir"));
    let (status, v) = post(&ops, "/rollback").await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--store-dir"), "{v}");
}
