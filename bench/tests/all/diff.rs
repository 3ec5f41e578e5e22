//! `bench diff` between two `bench run`s against synthetic servers: the side made three
//! times slower in the second run is flagged, the unchanged one is not.

use std::process::Command;
use std::time::Duration;

use crate::{Answer, TestServer};

const SCENARIO: &str = r#"
[defaults]
connections = 16
warmup = "0s"
timeout = "5s"
rounds = 3

[[scenario]]
name = "steady"
path = "/"
rate = 100
requests = 100
"#;

/// `bench run` against two servers, into `out`, with `extra` arguments.
async fn bench_run(
    dir: &std::path::Path,
    out: &str,
    serverless: &TestServer,
    traditional: &TestServer,
    extra: &[&str],
) {
    let file = dir.join("scenarios.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench"));
    command
        .arg("run")
        .arg("--scenarios")
        .arg(&file)
        .arg("--out")
        .arg(dir.join(out))
        .args(["--pause-ms", "0", "--no-progress"])
        .arg(format!("--side=serverless=http://{}", serverless.addr))
        .arg(format!("--side=traditional=http://{}", traditional.addr))
        .args(extra);
    let status = tokio::task::spawn_blocking(move || command.status().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "bench run: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_flags_a_side_made_slower_and_not_the_one_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let steady = TestServer::start(|_| Answer::After(Duration::from_millis(10))).await;
    let before = TestServer::start(|_| Answer::After(Duration::from_millis(10))).await;
    bench_run(dir.path(), "before", &before, &steady, &[]).await;
    let slowed = TestServer::start(|_| Answer::After(Duration::from_millis(30))).await;
    bench_run(dir.path(), "after", &slowed, &steady, &[]).await;

    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("diff")
        .arg(dir.path().join("before/results.json"))
        .arg(dir.path().join("after/results.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |side: &str, figure: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| steady | {side} | {figure} |")))
            .unwrap_or_else(|| panic!("no {side} {figure} in\n{text}"))
            .to_string()
    };
    let slower = line("serverless", "latency p50");
    assert!(slower.contains("changed"), "{slower}");
    let factor: f64 = slower
        .split(" | ")
        .nth(5)
        .unwrap()
        .trim_end_matches('×')
        .parse()
        .unwrap();
    assert!((2.5..3.5).contains(&factor), "about 3× slower: {slower}");
    let same = line("traditional", "latency p50");
    assert!(same.contains("within the noise"), "{same}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_are_kept_and_their_ratios_compared() {
    let dir = tempfile::tempdir().unwrap();
    let slow = TestServer::start(|_| Answer::After(Duration::from_millis(20))).await;
    let fast = TestServer::start(|_| Answer::After(Duration::from_millis(10))).await;
    bench_run(
        dir.path(),
        "twice",
        &slow,
        &fast,
        &["--repeat", "2", "--rounds", "1"],
    )
    .await;
    let out = dir.path().join("twice");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["earlier_repeats"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        json["scenarios"][0]["runs"].as_array().map(Vec::len),
        Some(2)
    );
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("## Across 2 repeats"), "{markdown}");
    let row = markdown
        .lines()
        .find(|l| l.starts_with("| steady | latency p50 S / T |"))
        .unwrap_or_else(|| panic!("no p50 row in\n{markdown}"));
    // About 2× in both repeats.
    let cells: Vec<&str> = row.split(" | ").collect();
    for repeat in &cells[2..4] {
        let ratio: f64 = repeat.trim_end_matches('×').parse().unwrap();
        assert!((1.6..2.4).contains(&ratio), "{row}");
    }
}
