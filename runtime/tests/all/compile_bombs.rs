//! Compile bombs: small modules that make a compiler take gigabytes. A deploy is
//! checked for its shape first, then compiled in a child process under a memory limit
//! (`--compile-memory-mib`), so a bomb costs its own deploy a 422 and never the
//! runtime; a restart on that store and a second replica keep serving every other
//! function, and a compile the process did not live through is set aside at the next
//! start instead of being compiled (and crashing) again.

use crate::{Deployer, start_with_store};
use localrun::{Service, examples};
use std::path::Path;
use std::time::Duration;

/// The memory a compile may use in these tests; the bomb needs several times more.
const COMPILE_MIB: &str = "384";

/// What the runtime process itself may reach while a bomb is compiled: far below the
/// 1 GiB of the Kubernetes pod, which the bomb alone would pass.
const PROCESS_LIMIT_KIB: u64 = 1 << 20;

/// A WASI 0.1 command (`_start`, so the runtime takes it for a WAGI function) whose one
/// function is as hostile to an optimizing compiler as the shape limits allow: 20,000
/// i64 locals (the default limit), 100,000 nested blocks, a `br_table` of 60,000
/// targets, and 120,000 additions between locals. Cranelift cannot compile it within
/// [`COMPILE_MIB`]; Winch, linear in its input, can (docs/containment.md has figures).
fn bomb() -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection,
        Instruction as I, Module, TypeSection, ValType,
    };
    const LOCALS: u32 = 20_000;
    const DEPTH: u32 = 100_000;
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    let mut body = Function::new([(LOCALS, ValType::I64)]);
    for _ in 0..DEPTH {
        body.instruction(&I::Block(BlockType::Empty));
    }
    let targets: Vec<u32> = (0..60_000).map(|i| i % DEPTH).collect();
    body.instruction(&I::I32Const(0));
    body.instruction(&I::BrTable(targets.into(), 0));
    for _ in 0..DEPTH {
        body.instruction(&I::End);
    }
    for i in 0..120_000u32 {
        let (a, b) = (
            (u64::from(i) * 7919 % u64::from(LOCALS)) as u32,
            (u64::from(i) * 104_729 + 1) as u32 % LOCALS,
        );
        body.instruction(&I::LocalGet(a));
        body.instruction(&I::LocalGet(b));
        body.instruction(&I::I64Add);
        body.instruction(&I::LocalSet((a + b) % LOCALS));
    }
    body.instruction(&I::End);
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&exports)
        .section(&code);
    module.finish()
}

/// A module with one more local than the default `--max-function-locals` allows.
fn too_many_locals() -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Module, TypeSection, ValType};
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut body = Function::new([(20_001, ValType::I64)]);
    body.instruction(&wasm_encoder::Instruction::End);
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    module.finish()
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(server: &Service) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn hello_answers(client: &reqwest::Client, server: &Service) {
    let response = client
        .get(format!("{}/hello/", server.url("traffic")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "hello on {}", server.url("traffic"));
}

async fn hash_answers(client: &reqwest::Client, server: &Service) {
    let response = client
        .post(format!("{}/hash/?rounds=1", server.url("traffic")))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "hash on {}", server.url("traffic"));
}

/// Deploys the example `hello` and `hash` through `ops`.
async fn deploy_examples(ops: &Deployer) {
    for name in ["hello", "hash"] {
        let path = artifacts::component(name).unwrap();
        let response = ops.put_file(name, path, "").await;
        assert!(response.status().is_success(), "deploying {name}");
    }
}

#[tokio::test]
async fn a_compile_bomb_fails_its_deploy_with_422_and_the_runtime_stays_small() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(
        store.path(),
        &[
            "--baseline-compile",
            "false",
            "--compile-memory-mib",
            COMPILE_MIB,
        ],
    );
    deploy_examples(&ops).await;
    let client = examples::client();

    let response = ops.put("bomb", bomb(), "").await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("--compile-memory-mib"), "{text}");
    // Not stored: nothing to restore, nothing to compile again.
    assert_eq!(ops.get("bomb").await.0, 404);
    // The same bytes again: the same answer, without another compile.
    let again = ops.put("bomb", bomb(), "").await;
    assert_eq!(again.status(), 422);
    assert!(
        again.text().await.unwrap().contains("--compile-memory-mib"),
        "a second deploy names the limit too"
    );
    server
        .wait_for_log(
            "could not be compiled within the runtime's limits",
            Duration::from_secs(5),
        )
        .ok();
    let peak = peak_rss_kib(&server);
    assert!(
        peak < PROCESS_LIMIT_KIB,
        "the runtime reached {peak} KiB while a bomb was compiled"
    );
    hello_answers(&client, &server).await;

    // A shape limit is named before any compiler runs.
    let response = ops.put("locals", too_many_locals(), "").await;
    assert_eq!(response.status(), 422);
    let text = response.text().await.unwrap();
    assert!(text.contains("--max-function-locals"), "{text}");
    assert!(text.contains("20001 locals"), "{text}");
}

#[tokio::test]
async fn a_bomb_in_the_store_leaves_a_restart_and_a_second_replica_serving() {
    let store = tempfile::tempdir().unwrap();
    let shared = [
        "--shared-store",
        "--compile-memory-mib",
        COMPILE_MIB,
        "--store-poll-interval",
        "100ms",
    ];
    let (first, ops) = start_with_store(store.path(), &shared);
    deploy_examples(&ops).await;
    // Winch compiles it (the deploy is served by Winch's code first); Cranelift's
    // compile in the background hits the limit, and Winch's code keeps serving.
    let response = ops.put("bomb", bomb(), "").await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    first
        .wait_for_log("compiling optimized code failed", Duration::from_secs(120))
        .unwrap();

    // A second replica on the store, and (after) a restart of the first: each serves
    // hello and hash, and loads the bomb's baseline code when it is asked for.
    let (second, _) = start_with_store(store.path(), &shared);
    let client = examples::client();
    for server in [&first, &second] {
        hello_answers(&client, server).await;
        hash_answers(&client, server).await;
    }
    let bomb_status = |server: &Service| {
        let url = format!("{}/bomb/", server.url("traffic"));
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    // It runs (and prints nothing, which a WAGI function must not: 502), on Winch's code.
    assert_eq!(bomb_status(&second).await, 502);
    second
        .wait_for_log("loading the baseline compiler's", Duration::from_secs(120))
        .unwrap();
    drop(first);
    let (restarted, _) = start_with_store(store.path(), &shared);
    hello_answers(&client, &restarted).await;
    assert_eq!(bomb_status(&restarted).await, 502);
    for server in [&second, &restarted] {
        let peak = peak_rss_kib(server);
        assert!(peak < PROCESS_LIMIT_KIB, "a replica reached {peak} KiB");
        hello_answers(&client, server).await;
    }
}

#[tokio::test]
async fn a_compile_the_runtime_did_not_live_through_sets_its_version_aside() {
    let store = tempfile::tempdir().unwrap();
    // Cranelift only: its code is cached before the deploy answers.
    let (server, ops) = start_with_store(store.path(), &["--baseline-compile", "false"]);
    deploy_examples(&ops).await;
    let hello = ops.digest("hello").await.unwrap();
    drop(server);
    // What a runtime killed while compiling hello leaves: a marker no process holds.
    plant_marker(store.path(), &hello);
    let (server, ops) = start_with_store(store.path(), &[]);
    server
        .wait_for_log("did not finish in an earlier run", Duration::from_secs(5))
        .unwrap();
    assert_eq!(ops.get("hello").await.0, 404, "hello is set aside");
    let quarantined = std::fs::read_dir(store.path().join("quarantine"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("hello"));
    assert!(quarantined, "hello's manifest is in quarantine/");
    let client = examples::client();
    hash_answers(&client, &server).await;
    // Deploying it again is the way back: an explicit act, not a start-up loop (its code
    // is in the cache from the first deploy, so nothing is compiled).
    let hello_path = artifacts::component("hello").unwrap();
    let response = ops.put_file("hello", hello_path, "").await;
    assert_eq!(response.status(), 201);
    hello_answers(&client, &server).await;
}

fn plant_marker(store: &Path, digest: &str) {
    let dir = store.join("compiling");
    std::fs::create_dir_all(&dir).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(dir.join(format!("{hex}.0123456789abcdef")), b"").unwrap();
}

/// A compile that outlasts `--compile-timeout` is ended there: the deploy gets 422
/// naming the flag, and the runtime serves on. (1 ms: no component compiles that fast.)
#[tokio::test]
async fn a_compile_past_its_deadline_fails_its_deploy_with_422() {
    let store = tempfile::tempdir().unwrap();
    let (server, ops) = start_with_store(
        store.path(),
        &["--baseline-compile", "false", "--compile-timeout", "1ms"],
    );
    let path = artifacts::component("hello").unwrap();
    let response = ops.put_file("hello", path, "").await;
    assert_eq!(response.status(), 422);
    let text = response.text().await.unwrap();
    assert!(text.contains("--compile-timeout"), "{text}");
    assert_eq!(ops.get("hello").await.0, 404);
    let health = examples::client()
        .get(format!("{}/healthz", server.url("ops")))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
