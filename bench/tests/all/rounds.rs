//! Adaptive rounds against synthetic servers: a scenario stops at its minimum rounds when
//! the two sides' ratio holds still, and goes on to its maximum when one side's latency
//! wanders from round to round; the report then prints the ratio as a noisy range.

use bench::report::{ScenarioResult, SideInfo, figures};
use bench::runner::{Runner, RunnerOptions, Side};
use std::time::Duration;

use crate::{Answer, TestServer};

const SCENARIO: &str = r#"
[defaults]
# Enough for the steady pair's 200 ms answers at 100 req/s (20 in flight).
connections = 32
warmup = "0s"
timeout = "5s"
rounds = 2
max_rounds = 5
# Wide enough that a shared machine's hiccups in a steady pair's p99 stay inside it (the
# steady pair answers in 200 and 100 ms, so a 30 ms stall moves its p99 ratio by a
# fifth, where with 40 and 20 ms it once moved it by half); the wandering side moves its
# ratio 16-fold.
tolerance = 0.5

[[scenario]]
name = "adaptive"
path = "/"
rate = 100
requests = 100
"#;

fn side(name: &str, server: &TestServer) -> Side {
    Side {
        info: SideInfo {
            name: name.into(),
            description: String::new(),
            url: format!("http://{}", server.addr),
        },
        processes: None,
        metrics_url: None,
        serves: None,
        fleet: None,
    }
}

/// Runs the scenario with `serverless` and `traditional` behaviours and returns it.
fn run(serverless: fn(u64) -> Answer, traditional: fn(u64) -> Answer) -> ScenarioResult {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenarios.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let scenario = bench::scenario::load(Some(&file), 1.0).unwrap().remove(0);
    let runner = Runner::new(RunnerOptions {
        threads: 1,
        sample_interval: Duration::from_millis(100),
        pause: Duration::ZERO,
        progress: false,
    })
    .unwrap();
    let (s, t) = runner.block_on(async {
        (
            TestServer::start(serverless).await,
            TestServer::start(traditional).await,
        )
    });
    let sides = [
        side(figures::SERVERLESS, &s),
        side(figures::TRADITIONAL, &t),
    ];
    let mut result: ScenarioResult = serde_json::from_value(serde_json::json!({
        "name": scenario.name, "description": "", "method": "GET", "path": "/",
        "connections": 32, "warmup_seconds": 0.0, "timeout_seconds": 5.0,
        "sweep": null, "runs": []
    }))
    .unwrap();
    runner.scenario(&scenario, &sides, &mut result).unwrap();
    result
}

#[test]
fn a_steady_ratio_stops_at_the_minimum_rounds() {
    let result = run(
        |_| Answer::After(Duration::from_millis(200)),
        |_| Answer::After(Duration::from_millis(100)),
    );
    let stability = result.stability.unwrap();
    assert_eq!(
        (stability.rounds, stability.settled),
        (2, true),
        "{stability:?}"
    );
    assert_eq!(result.runs.len(), 4);
    let rows = figures::rows(
        &result,
        &[figures::SERVERLESS.into(), figures::TRADITIONAL.into()],
    );
    let p50 = rows
        .iter()
        .find(|r| r.figure.name == "latency p50")
        .unwrap();
    assert!(!p50.noisy);
    assert!(
        p50.verdict.as_ref().unwrap().contains("traditional wins"),
        "{:?}",
        p50.verdict
    );
}

#[test]
fn a_wandering_side_runs_to_the_maximum_and_gets_no_single_factor() {
    // The serverless side's latency changes every 100 requests (one run): 5, 40, 10, 80,
    // 8 ms, so its ratio to a steady 20 ms moves far beyond the tolerance between rounds.
    let result = run(
        |n| {
            let ms = [5, 40, 10, 80, 8][(n / 100) as usize % 5];
            Answer::After(Duration::from_millis(ms))
        },
        |_| Answer::After(Duration::from_millis(20)),
    );
    let stability = result.stability.unwrap();
    assert_eq!(
        (stability.rounds, stability.settled),
        (5, false),
        "{stability:?}"
    );
    let rows = figures::rows(
        &result,
        &[figures::SERVERLESS.into(), figures::TRADITIONAL.into()],
    );
    let p50 = rows
        .iter()
        .find(|r| r.figure.name == "latency p50")
        .unwrap();
    assert!(p50.noisy, "{:?}", p50.round_ratios);
    let text = figures::ratio_text(p50).unwrap();
    assert!(text.ends_with("× noisy"), "{text}");
    let verdict = p50.verdict.as_ref().unwrap();
    assert!(!verdict.contains("wins"), "{verdict}");
}
