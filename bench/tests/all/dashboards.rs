//! The dashboards and the bench report agree: the same load through both sides, once,
//! measured by `bench run` and scraped by a real Prometheus running the compose stack's
//! rules; the overview's at-a-glance ratios (the recording rules its stat panels show,
//! evaluated through Prometheus's API) must fall within the report's own spread of the
//! same ratios, round by round.

use bench::report::figures::{FIGURES, Figure, round_ratios};
use bench::report::{Report, Run, ScenarioResult};
use localrun::prometheus::{ProcessGroup, Prometheus, unix_now};
use localrun::workspace_binary as our_binary;
use std::time::{Duration, Instant};

/// Three rounds of each side; 3 × 2 × 6 s, well inside the rules' one-minute window.
const SCENARIO: &str = r#"
[defaults]
connections = 8
warmup = "1s"
timeout = "5s"
rounds = 3
max_rounds = 3
tolerance = 0.15

[[scenario]]
name = "dashboards"
path = "/hash/?rounds=20"
rate = 200
duration = "5s"
"#;

fn figure(name: &str) -> &'static Figure {
    FIGURES.iter().find(|f| f.name == name).unwrap()
}

/// The server's own p99 (from its histogram, as Prometheus computes it), per run.
const SERVER_P99: Figure = Figure {
    name: "server p99",
    better: bench::report::figures::Better::Lower,
    unit: bench::report::figures::Unit::Micros,
    get: |r: &Run| r.server_latency_us.map(|l| l.p99_us),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overviews_ratios_agree_with_bench_run() {
    let client = localrun::examples::client();
    let functions = tempfile::tempdir().unwrap();
    std::fs::copy(
        artifacts::HASH_COMPONENT,
        functions.path().join("hash.wasm"),
    )
    .unwrap();
    let runtime = localrun::Service::start(
        our_binary("runtime"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--functions-dir",
            functions.path().to_str().unwrap(),
        ],
        &["traffic", "ops"],
    )
    .unwrap();
    let webserver = localrun::Service::start(
        our_binary("webserver"),
        &["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"],
        &["traffic", "ops"],
    )
    .unwrap();
    let nginx = localrun::Nginx::start(webserver.addr("traffic"), 1).unwrap();

    // The runtime's start-up work (compiling hash, then its optimized code in the
    // background) is done before Prometheus's first scrape: no rate it computes holds
    // it, as none of the bench's windows does.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = localrun::metrics(&client, &runtime).await;
        let compiled = localrun::sample(&text, r#"faas_compiles_total{result="compiled"}"#);
        if compiled.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hash was never compiled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let nginx_processes = ProcessGroup::nginx(&nginx).unwrap();
    let prometheus = Prometheus::start_compose(&[
        ("runtime:8081", runtime.addr("ops").to_string()),
        ("webserver:8001", webserver.addr("ops").to_string()),
        ("nginx-processes:9256", nginx_processes.addr().to_string()),
    ])
    .unwrap();
    for job in ["runtime", "webserver"] {
        let up = format!(r#"up{{job="{job}"}} == 1"#);
        prometheus
            .wait_for_series(&client, &up, Duration::from_secs(30))
            .await
            .unwrap();
    }

    // bench run as the report measures: the traditional side is the webserver and
    // nginx's process tree; both sides' /metrics read before and after.
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios.toml");
    std::fs::write(&scenarios, SCENARIO).unwrap();
    let out = dir.path().join("report");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_bench"));
    command
        .arg("run")
        .arg("--scenarios")
        .arg(&scenarios)
        .arg("--out")
        .arg(&out)
        .args(["--pause-ms", "0", "--no-progress"])
        .arg(format!("--side=serverless={}", runtime.url("traffic")))
        .arg(format!("--side=traditional={}", nginx.url()))
        .arg(format!(
            "--metrics=serverless={}/metrics",
            runtime.url("ops")
        ))
        .arg(format!(
            "--metrics=traditional={}/metrics",
            webserver.url("ops")
        ))
        .arg(format!("--pid=serverless={}", runtime.pid()))
        .arg(format!("--pid=traditional={}", webserver.pid()))
        .arg(format!("--tree=traditional={}", nginx.pid()));
    let started = unix_now();
    let status = tokio::task::spawn_blocking(move || command.status())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "bench run failed: {status}");
    let ended = unix_now();
    assert!(
        ended - started < 55.0,
        "the run took {:.0} s: longer than the rules' one-minute window holds",
        ended - started
    );
    // Two scrapes and an evaluation after the last request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = unix_now();

    let report = Report::read(&out.join("results.json")).unwrap();
    let scenario: &ScenarioResult = &report.scenarios[0];
    let tolerance = scenario.stability.unwrap().tolerance;
    let mut failures = Vec::new();
    let mut found = Vec::new();
    // The latency and the rate are the webserver's own (nginx has neither); CPU and
    // memory are the traditional side's whole, nginx's processes included.
    for (rule, versus, figure) in [
        (
            "side:http_server_request_duration_seconds:p99_ratio_1m",
            "webserver",
            &SERVER_P99,
        ),
        (
            "side:process_cpu_seconds_per_request:ratio_1m",
            "traditional",
            figure("CPU seconds per 1000 requests"),
        ),
        (
            "side:process_memory_bytes:ratio",
            "traditional",
            figure("peak PSS"),
        ),
        (
            "side:http_server_requests:rate_ratio_1m",
            "webserver",
            figure("achieved rate"),
        ),
    ] {
        let query = format!(r#"{rule}{{versus="{versus}"}}"#);
        let series = prometheus
            .query_at(&client, &query, Some(at))
            .await
            .unwrap_or_default();
        assert_eq!(series.len(), 1, "{query}: {series:?}");
        let dashboard: f64 = series[0]["value"][1].as_str().unwrap().parse().unwrap();
        found.push((format!("vs {versus}"), dashboard));
        let rounds = round_ratios(scenario, figure);
        assert_eq!(rounds.len(), 3, "{}: {rounds:?}", figure.name);
        let low = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let high = rounds.iter().copied().fold(0.0, f64::max);
        let (from, to) = (low * (1.0 - tolerance), high * (1.0 + tolerance));
        eprintln!(
            "{rule}: dashboard {dashboard:.3}, bench rounds {rounds:.3?} (accepted {from:.3} to {to:.3})"
        );
        if !(from..=to).contains(&dashboard) {
            failures.push(format!(
                "{rule} = {dashboard:.3}, outside the bench's {} rounds {rounds:.3?} \
                 widened by its tolerance {tolerance}: {from:.3} to {to:.3}",
                figure.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The same row drawn without Grafana (bench glance): every stat of the overview's
    // first row, from the dashboard's own queries, with the values found above.
    let overview: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            localrun::prometheus::config_dir().join("../grafana/dashboards/overview.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let panels = bench::glance::stat_panels(&overview).unwrap();
    let tiles = bench::glance::evaluate(&client, prometheus.url(), panels, Some(at))
        .await
        .unwrap();
    assert_eq!(tiles.len(), 5, "{tiles:?}");
    for (tile, value) in tiles.iter().zip(&found) {
        assert!(
            tile.values.contains(value),
            "{}: {:?} has no {value:?}",
            tile.panel.title,
            tile.values
        );
    }
    let errors = &tiles[4];
    assert_eq!(
        errors.values,
        [("runtime".to_string(), 0.0), ("webserver".to_string(), 0.0)]
    );
    let svg = bench::glance::render(&tiles, "test");
    for tile in &tiles {
        assert!(svg.contains(&bench::report::svg::escape(&tile.panel.title)));
        for (_, v) in &tile.values {
            assert!(svg.contains(&bench::glance::format_value(&tile.panel, *v)));
        }
    }
}
