//! Several runtimes sharing one store (`--shared-store`), as replicas behind a load
//! balancer would: a deploy or delete through any of them reaches all, concurrent
//! deploys converge on the one written last, and a replica that dies mid-deploy leaves
//! the others and the store consistent and catches up when it comes back.

use crate::Deployer;
use localrun::{Service, examples};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token";

/// How long replicas may take to agree. The poll interval is 500 ms; the rest is
/// compiling, which a loaded CI machine can make slow. A bound on liveness, not a speed
/// goal (docs/runtime.md has the measured times).
const CONVERGE: Duration = Duration::from_secs(30);

fn replica(store: &Path, extra: &[&str]) -> Service {
    replica_with(store, extra, &[])
}

fn replica_with(store: &Path, extra: &[&str], env: &[(&str, &str)]) -> Service {
    let empty = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"));
    command
        .args(crate::args(empty.path()))
        .args(["--pool-instances", "64", "--max-memory-mib", "256"])
        .args([
            "--store-dir",
            store.to_str().unwrap(),
            "--shared-store",
            "--deploy-token",
            TOKEN,
        ])
        .args(extra)
        .envs(env.iter().copied());
    Service::start_with(&mut command, &["traffic", "ops"]).expect("replica starts")
}

/// `server`'s deploy API, with the token every replica shares.
fn ops(server: &Service) -> Deployer {
    Deployer::new(server, Some(TOKEN))
}

/// Deploys `wasm` as `name` through `server`; the status it answered.
async fn put(server: &Service, name: &str, wasm: &[u8]) -> u16 {
    ops(server)
        .put(name, wasm.to_vec(), "")
        .await
        .status()
        .as_u16()
}

/// Waits until every replica shows `expected` for `name`; how long that took.
async fn converge(replicas: &[&Service], name: &str, expected: Option<&str>) -> Duration {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for server in replicas {
            seen.push(ops(server).digest(name).await);
        }
        if seen.iter().all(|d| d.as_deref() == expected) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < CONVERGE,
            "replicas did not converge on {expected:?} for {name} in {CONVERGE:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status `server` answers a GET of `path` on its traffic listener with.
async fn traffic(client: &reqwest::Client, server: &Service, path: &str) -> u16 {
    let url = format!("{}{path}", server.url("traffic"));
    client.get(url).send().await.unwrap().status().as_u16()
}

fn wasm(path: &str) -> (Vec<u8>, String) {
    let bytes = std::fs::read(path).unwrap();
    let digest = runtime::store::digest(&bytes);
    (bytes, digest)
}

/// What the store's manifest says `name`'s current version is.
fn manifest_digest(store: &Path, name: &str) -> String {
    let text = std::fs::read(store.join("functions").join(format!("{name}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let current = &v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == v["current"])
        .unwrap()["digest"];
    current.as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_deploy_or_delete_through_one_replica_reaches_all() {
    let store = tempfile::tempdir().unwrap();
    // Cranelift only: the deploying replica caches optimized code before it writes the
    // manifest, so the others must load it from the cache instead of compiling, which
    // they trust because it is tagged with the key they share.
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("cache-key");
    std::fs::write(&key, "a key the replicas share, 32 bytes or more").unwrap();
    let flags = [
        "--baseline-compile=false",
        "--cache-key-file",
        key.to_str().unwrap(),
    ];
    let replicas: Vec<Service> = (0..3).map(|_| replica(store.path(), &flags)).collect();
    let all: Vec<&Service> = replicas.iter().collect();
    let client = examples::client();
    let (hello, hello_digest) = wasm(artifacts::HELLO_COMPONENT);

    assert_eq!(put(&replicas[0], "greet", &hello).await, 201);
    let took = converge(&all, "greet", Some(&hello_digest)).await;
    eprintln!("deploy converged on 3 replicas in {took:?}");
    for server in &replicas {
        assert_eq!(traffic(&client, server, "/greet/").await, 200);
    }
    for server in &replicas[1..] {
        let text = crate::metrics(&client, server).await;
        assert_eq!(
            crate::sample(&text, r#"faas_compiles_total{result="cached"}"#),
            Some(1.0),
            "the other replicas load the deploying one's compiled code:\n{text}"
        );
        assert_eq!(
            crate::sample(&text, r#"runtime_store_synced_total{change="deployed"}"#),
            Some(1.0)
        );
    }

    // Delete through the second: all three answer 404, API and traffic.
    assert_eq!(ops(&replicas[1]).delete("greet").await, 204);
    let took = converge(&all, "greet", None).await;
    eprintln!("delete converged on 3 replicas in {took:?}");
    for server in &replicas {
        assert_eq!(traffic(&client, server, "/greet/").await, 404);
        let text = crate::metrics(&client, server).await;
        assert_eq!(crate::sample(&text, "faas_functions_deployed"), Some(0.0));
    }

    // A replica that starts later catches up from the store.
    assert_eq!(put(&replicas[2], "late", &hello).await, 201);
    let late = replica(store.path(), &flags);
    assert_eq!(
        ops(&late).digest("late").await.as_deref(),
        Some(hello_digest.as_str())
    );

    // One without the key (or with another) serves the same functions, but runs no
    // code the others compiled: it compiles its own.
    std::fs::write(&key, "another key, also 32 bytes or more long").unwrap();
    for keyless in [
        replica(store.path(), &flags[..1]),
        replica(store.path(), &flags),
    ] {
        assert_eq!(traffic(&client, &keyless, "/late/").await, 200);
        let text = crate::metrics(&client, &keyless).await;
        assert_eq!(
            crate::sample(&text, r#"faas_compiles_total{result="compiled"}"#),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            crate::sample(&text, r#"faas_compiles_total{result="cached"}"#),
            None
        );
    }
}

/// POSTs `/functions/NAME/ACTION` (rollback, promote) through `server`; the status.
async fn post(server: &Service, name: &str, action: &str) -> u16 {
    examples::client()
        .post(format!("{}/{action}", ops(server).url(name)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until every replica runs `expected` (version, percent) as NAME's canary, or
/// none.
async fn converge_canary(replicas: &[&Service], name: &str, expected: Option<(u64, u64)>) {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for server in replicas {
            let (_, v) = ops(server).get(name).await;
            let canary = &v["canary"];
            seen.push(canary["version"].as_u64().zip(canary["percent"].as_u64()));
        }
        if seen.iter().all(|c| *c == expected) {
            return;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "replicas did not converge on canary {expected:?} of {name}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn replicas_converge_on_rollbacks_and_canaries() {
    let store = tempfile::tempdir().unwrap();
    let (a, b) = (replica(store.path(), &[]), replica(store.path(), &[]));
    let both = [&a, &b];
    let (hello, hello_digest) = wasm(artifacts::HELLO_COMPONENT);
    let (misbehave, misbehave_digest) = wasm(artifacts::MISBEHAVE_COMPONENT);
    assert_eq!(put(&a, "f", &hello).await, 201);
    assert_eq!(put(&a, "f", &misbehave).await, 200);
    converge(&both, "f", Some(&misbehave_digest)).await;

    // A rollback through one replica is what every replica serves.
    assert_eq!(post(&b, "f", "rollback").await, 200);
    converge(&both, "f", Some(&hello_digest)).await;
    let client = examples::client();
    for server in both {
        let (status, body) =
            crate::get_json(&client, &format!("{}/f/counter", server.url("traffic"))).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (200, Some("Hello World!"))
        );
    }

    // A canary through one, promoted through the other.
    let r = ops(&a).put("f", misbehave.clone(), "?canary=20").await;
    assert_eq!(r.status(), 200);
    converge_canary(&both, "f", Some((3, 20))).await;
    converge(&both, "f", Some(&hello_digest)).await;
    assert_eq!(post(&b, "f", "promote").await, 200);
    converge_canary(&both, "f", None).await;
    converge(&both, "f", Some(&misbehave_digest)).await;

    // A canary through one, ended through the other.
    let r = ops(&b).put("f", hello.clone(), "?canary=40").await;
    assert_eq!(r.status(), 200);
    converge_canary(&both, "f", Some((4, 40))).await;
    assert_eq!(post(&a, "f", "rollback").await, 200);
    converge_canary(&both, "f", None).await;
    converge(&both, "f", Some(&misbehave_digest)).await;
}

#[tokio::test]
async fn redeploys_spread_over_replicas_under_load_fail_no_request() {
    let store = tempfile::tempdir().unwrap();
    let replicas: Vec<Service> = (0..3).map(|_| replica(store.path(), &[])).collect();
    let all: Vec<&Service> = replicas.iter().collect();
    let client = examples::client();
    let versions = [
        wasm(artifacts::HELLO_COMPONENT),
        wasm(artifacts::PLAIN_WASI_COMPONENT),
    ];
    assert_eq!(put(&replicas[0], "f", &versions[0].0).await, 201);
    converge(&all, "f", Some(&versions[0].1)).await;

    let urls: Vec<String> = replicas
        .iter()
        .map(|server| format!("{}/f/", server.url("traffic")))
        .collect();
    let load = crate::Load::start(&client, &urls, 2);
    for i in 0..20 {
        let (bytes, _) = &versions[(i + 1) % 2];
        let through = &replicas[i % 3];
        assert_eq!(put(through, "f", bytes).await, 200, "redeploy {i}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The last deploy (i = 19) was version 0.
    converge(&all, "f", Some(&versions[0].1)).await;
    let (total, failed) = load.stop().await;
    assert!(
        failed.is_empty(),
        "requests failed during redeploys: {failed:?}"
    );
    assert!(
        total > 60,
        "too little load to mean anything: {total} requests"
    );
    let synced: f64 = {
        let mut sum = 0.0;
        for server in &replicas {
            let text = crate::metrics(&client, server).await;
            sum += crate::sample(&text, r#"runtime_store_synced_total{change="deployed"}"#)
                .unwrap_or(0.0);
            assert_eq!(
                crate::sample(&text, "runtime_store_sync_errors_total"),
                Some(0.0)
            );
        }
        sum
    };
    assert!(synced > 0.0, "no replica applied another's deploy");
}

#[tokio::test]
async fn concurrent_deploys_of_one_name_converge_on_the_last_written() {
    let store = tempfile::tempdir().unwrap();
    let replicas: Vec<Service> = (0..3).map(|_| replica(store.path(), &[])).collect();
    let all: Vec<&Service> = replicas.iter().collect();
    let (hello, hello_digest) = wasm(artifacts::HELLO_COMPONENT);
    let (hash, hash_digest) = wasm(artifacts::HASH_COMPONENT);
    for round in 0..3 {
        let (a, b) = tokio::join!(
            put(&replicas[0], "race", &hello),
            put(&replicas[1], "race", &hash),
        );
        assert!(
            [200, 201].contains(&a) && [200, 201].contains(&b),
            "{a} {b}"
        );
        // Whichever manifest was renamed into place last is what every replica serves.
        let winner = manifest_digest(store.path(), "race");
        assert!(winner == hello_digest || winner == hash_digest);
        converge(&all, "race", Some(&winner)).await;
        eprintln!("round {round}: converged on {winner}");
    }
}

#[tokio::test]
async fn a_replica_killed_during_a_deploy_leaves_the_rest_consistent_and_catches_up() {
    let store = tempfile::tempdir().unwrap();
    let client = examples::client();
    let (hello, hello_digest) = wasm(artifacts::HELLO_COMPONENT);
    let (hash, hash_digest) = wasm(artifacts::HASH_COMPONENT);
    let first = replica(store.path(), &[]);
    let mut second = replica(store.path(), &[]);
    // The third dies (abort: no unwinding, no cleanup, as SIGKILL) while it holds the
    // store's write lock, its new manifest written to a temporary file, not renamed.
    let mut third = replica_with(
        store.path(),
        &[],
        &[("RUNTIME_STORE_CRASH_AT", "manifest-temp")],
    );
    assert_eq!(put(&first, "f", &hello).await, 201);
    converge(&[&first, &second, &third], "f", Some(&hello_digest)).await;

    let r = client
        .put(ops(&third).url("f"))
        .bearer_auth(TOKEN)
        .body(hash.clone())
        .send()
        .await;
    assert!(r.is_err(), "the dying replica answered: {r:?}");
    assert!(!third.wait_exit(Duration::from_secs(10)).unwrap().success());
    drop(third);

    // The lock died with it: another replica deploys (which needs the lock), and once
    // both have applied that deploy, neither serves the dead one's version of f.
    assert_eq!(put(&second, "g", &hash).await, 201);
    converge(&[&first, &second], "g", Some(&hash_digest)).await;
    assert_eq!(manifest_digest(store.path(), "f"), hello_digest);
    converge(&[&first, &second], "f", Some(&hello_digest)).await;

    // A real SIGKILL while a deploy through the second is under way: sent as soon as the
    // new version's blob (bytes the store has not held before) starts to appear.
    let (sleep, sleep_digest) = wasm(artifacts::SLEEP_COMPONENT);
    let blob = sleep_digest.trim_start_matches("sha256:").to_string();
    let deploy = {
        let (client, url) = (client.clone(), ops(&second).url("f"));
        tokio::spawn(async move {
            client
                .put(url)
                .bearer_auth(TOKEN)
                .body(sleep)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let blobs = store.path().join("blobs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(&blobs)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().contains(&blob))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never wrote its blob"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    second.signal(rustix::process::Signal::KILL).unwrap();
    let _ = second.wait_exit(Duration::from_secs(10)).unwrap();
    drop(second);
    let answered = deploy.await.unwrap();

    // What the store holds is one of the two versions, whole, and the survivor serves
    // it; a deploy the client was told succeeded is the one held.
    let stored = manifest_digest(store.path(), "f");
    match answered {
        Ok(status) => {
            assert!(status.is_success(), "{status}");
            assert_eq!(stored, sleep_digest, "an acknowledged deploy was lost");
        }
        Err(_) => assert!(stored == hello_digest || stored == sleep_digest, "{stored}"),
    }
    converge(&[&first], "f", Some(&stored)).await;
    let probe = if stored == sleep_digest {
        "/f/?min_ms=1&max_ms=2"
    } else {
        "/f/"
    };
    assert_eq!(traffic(&client, &first, probe).await, 200);

    // Both come back and catch up; the restart clears what the dead left behind.
    let third = replica(store.path(), &[]);
    let second = replica(store.path(), &[]);
    converge(&[&first, &second, &third], "f", Some(&stored)).await;
    converge(&[&first, &second, &third], "g", Some(&hash_digest)).await;
    for sub in ["blobs", "functions", "cache"] {
        let names: Vec<String> = std::fs::read_dir(store.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(".tmp-")),
            "leftover temporary file in {sub}: {names:?}"
        );
    }
}

#[test]
fn a_runtime_without_shared_store_refuses_a_store_in_shared_use() {
    let store = tempfile::tempdir().unwrap();
    let shared = replica(store.path(), &[]);
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"))
        .args(crate::args(empty.path()))
        .args(["--store-dir", store.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is using the store") && stderr.contains("--shared-store"),
        "{stderr}"
    );
    drop(shared);
}

/// `/readyz` of `server`: status and body.
async fn readyz(client: &reqwest::Client, server: &Service) -> (u16, String) {
    let response = client
        .get(format!("{}/readyz", server.url("ops")))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A store sync that panics does not end the sync: the pass is counted and logged, the
/// replica reports itself not ready while it cannot sync, and the next poll applies what
/// another replica deployed meanwhile.
#[tokio::test]
async fn a_panicking_sync_converges_on_the_next_poll() {
    let store = tempfile::tempdir().unwrap();
    let hook = tempfile::tempdir().unwrap();
    let trigger = hook.path().join("panic");
    let a = replica(store.path(), &[]);
    let b = replica_with(
        store.path(),
        &["--store-poll-interval", "100ms"],
        &[("RUNTIME_TEST_SYNC_PANIC", trigger.to_str().unwrap())],
    );
    let probe = localrun::examples::client();
    assert_eq!(readyz(&probe, &b).await.0, 200);
    let client = localrun::examples::client();
    std::fs::write(&trigger, b"").unwrap();
    localrun::wait_for_sample(
        &client,
        &b,
        r#"runtime_worker_panics_total{worker="store_sync"}"#,
        1.0,
    )
    .await;
    // First failing (an error, not a panic): counted, and b carries on polling.
    let errors = |text: &str| localrun::sample(text, "runtime_store_sync_errors_total").unwrap();
    let before = errors(&localrun::metrics(&client, &b).await);
    std::fs::write(&trigger, b"fail").unwrap();
    b.wait_for_log("store sync test hook: failing", Duration::from_secs(10))
        .unwrap();
    assert!(errors(&localrun::metrics(&client, &b).await) > before);
    std::fs::write(&trigger, b"panic").unwrap();
    let (hello, digest) = wasm(artifacts::HELLO_COMPONENT);
    assert_eq!(put(&a, "late", &hello).await, 201);
    // While the hook panics every pass, b cannot apply it, and says it is not ready
    // (10 polls, at least 2 s, without a good pass); a is. Once it stops, b converges.
    let start = std::time::Instant::now();
    let (status, why) = loop {
        let (status, why) = readyz(&probe, &b).await;
        if status != 200 || start.elapsed() > CONVERGE {
            break (status, why);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{why}");
    assert!(
        why.contains("panicked") && why.contains("shared store"),
        "{why}"
    );
    assert_eq!(readyz(&probe, &a).await.0, 200);
    assert_eq!(ops(&b).digest("late").await, None);
    std::fs::remove_file(&trigger).unwrap();
    converge(&[&a, &b], "late", Some(&digest)).await;
    assert_eq!(readyz(&probe, &b).await, (200, "ready\n".to_string()));
    assert_eq!(traffic(&client, &b, "/late/").await, 200);
    let text = localrun::metrics(&client, &b).await;
    let panics =
        localrun::sample(&text, r#"runtime_worker_panics_total{worker="store_sync"}"#).unwrap();
    let errors = localrun::sample(&text, "runtime_store_sync_errors_total").unwrap();
    assert!(
        panics >= 1.0 && errors >= panics,
        "{panics} panics, {errors} errors"
    );
    b.wait_for_log("a background pass panicked", Duration::from_secs(5))
        .unwrap();
}
