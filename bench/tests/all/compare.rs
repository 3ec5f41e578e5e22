//! A short `bench compare` against the real runtime, webserver and nginx: the report files
//! are written and hold both sides; ctrl-c or SIGTERM stops everything and still writes a report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

use localrun::workspace_binary as our_binary;

const TINY: &str = r#"
[defaults]
connections = 4
warmup = "100ms"
timeout = "5s"
rounds = 2

[[scenario]]
name = "tiny-hello"
path = "/hello/"
rate = 200
requests = 60

[[scenario]]
name = "tiny-sweep"
path = "/hello/"
rates = [100, 200]
duration = "300ms"
p99_limit = "2s"
"#;

fn compare(dir: &Path, scenarios: &str) -> Command {
    let file = dir.join("scenarios.toml");
    std::fs::write(&file, scenarios).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench"));
    command
        .arg("compare")
        .arg("--scenarios")
        .arg(&file)
        .arg("--out")
        .arg(dir.join("report"))
        .arg("--runtime-bin")
        .arg(our_binary("runtime"))
        .arg("--webserver-bin")
        .arg(our_binary("webserver"))
        .args(["--pause-ms", "0", "--nginx-workers", "1"]);
    command
}

/// The wasmtime CLI for the peer side: scripts/test installs it and says where.
fn peer() -> String {
    std::env::var("BENCH_PEER_WASMTIME").expect(
        "BENCH_PEER_WASMTIME names no wasmtime CLI: run the tests with scripts/test, or \
         set it to the path scripts/install-wasmtime-cli prints",
    )
}

#[test]
fn compare_writes_markdown_html_and_json_with_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let status = compare(dir.path(), TINY)
        .args(["--peer", &peer()])
        .status()
        .unwrap();
    assert!(status.success(), "bench compare failed: {status}");

    let out = dir.path().join("report");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(json["meta"]["interrupted"].is_null(), "{}", json["meta"]);
    let scenarios = json["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    let fixed = &scenarios[0];
    for side in ["serverless", "traditional"] {
        let runs: Vec<_> = fixed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["side"] == side)
            .collect();
        assert_eq!(runs.len(), 2, "two rounds of {side}");
        for run in runs {
            assert_eq!(run["ok"], 60, "{side}: {run}");
            assert!(run["latency_us"]["p50"].as_f64().unwrap() > 0.0);
            assert!(
                run["usage"]["resident_peak_bytes"].as_u64().unwrap() > 1 << 20,
                "{side} RSS sampled"
            );
            // The side's own /metrics saw at least the measured requests.
            assert!(run["server_counted"].as_f64().unwrap() >= 60.0, "{run}");
        }
    }
    // The peer ran the same load on the same component; it has no /metrics of ours.
    let peer_runs: Vec<_> = fixed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["side"] == "peer")
        .collect();
    assert_eq!(peer_runs.len(), 2, "two rounds of the peer");
    for run in peer_runs {
        assert_eq!(run["ok"], 60, "peer: {run}");
        assert!(
            run["usage"]["resident_peak_bytes"].as_u64().unwrap() > 1 << 20,
            "peer RSS sampled"
        );
    }
    // Rounds alternate: A B C A B C, the peer (wasmtime serve on hello.wasm) included.
    let order: Vec<&str> = fixed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["side"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "serverless",
            "traditional",
            "peer",
            "serverless",
            "traditional",
            "peer"
        ]
    );
    assert!(
        json["meta"]["versions"]["wasmtime serve (peer)"]
            .as_str()
            .is_some_and(|v| v.starts_with("wasmtime ")),
        "{}",
        json["meta"]["versions"]
    );
    assert!(
        scenarios[1]["sweep"].is_object() && scenarios[1]["runs"].as_array().unwrap().len() >= 2
    );

    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## tiny-hello",
        "## tiny-sweep",
        "| latency p99 |",
        "serverless",
        "traditional",
        "reservation, not a cost",
        "wasmtime (serverless)",
        "runtime limits (from its deploy responses)",
        "**Against the reference host**: serverless / peer",
    ] {
        assert!(markdown.contains(needle), "report.md lacks {needle:?}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "charts in report.html");
    // The HTML is rendered from the same model: it has the summary and every scenario.
    for needle in [
        "<h2>Summary</h2>",
        "<h2>tiny-hello</h2>",
        "<h2>tiny-sweep</h2>",
        "S / T",
    ] {
        assert!(html.contains(needle), "report.html lacks {needle:?}");
    }
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "report.html must be self-contained"
    );

    // `bench report` renders the same Markdown again from the JSON.
    let again = dir.path().join("again");
    let status = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("report")
        .arg(out.join("results.json"))
        .arg("--out")
        .arg(&again)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(again.join("report.md")).unwrap(),
        markdown
    );
}

const TINY_HELLO: &str = r#"
[defaults]
connections = 4
warmup = "100ms"
timeout = "5s"
rounds = 1

[[scenario]]
name = "tiny-hello"
path = "/hello/"
rate = 200
requests = 60
"#;

#[test]
fn compare_runs_every_side_and_says_where_the_time_goes() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = format!(
        "{TINY_HELLO}\n[[scenario]]\nname = \"tiny-sweep\"\npath = \"/hello/\"\nrates = [100]\nduration = \"300ms\"\np99_limit = \"2s\"\n"
    );
    let status = compare(dir.path(), &scenarios)
        .args([
            "--sides",
            "serverless,traditional,direct,serverless-wagi,seed-php,seed-node",
            "--php-fpm-children",
            "4",
            "--glance",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "bench compare failed: {status}");
    let out = dir.path().join("report");
    // --glance: the overview's stat row after the fixed-rate scenario (not the sweep),
    // from a real Prometheus scraping the sides, with a value against every side that
    // has the figure: PHP-FPM's CPU and memory through process-exporter.
    let svg = std::fs::read_to_string(out.join("glance-tiny-hello.svg")).unwrap();
    for needle in [
        "p99 latency, runtime / each side",
        "Memory, runtime / each side",
        "Error rate (5xx) per side",
        "vs webserver",
        "vs seed-node",
        "vs seed-php",
    ] {
        assert!(svg.contains(needle), "{needle} not in {svg}");
    }
    assert!(!svg.contains("No data"), "{svg}");
    assert!(!out.join("glance-tiny-sweep.svg").exists());
    // The report shows it: linked from the Markdown, inlined in the HTML.
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(markdown.contains("](glance-tiny-hello.svg)"), "{markdown}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(&format!("<figure>{svg}</figure>")));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = json["scenarios"][0]["runs"].as_array().unwrap();
    let order: Vec<&str> = runs.iter().map(|r| r["side"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [
            "serverless",
            "traditional",
            "direct",
            "serverless-wagi",
            "seed-php",
            "seed-node"
        ]
    );
    for run in runs {
        assert_eq!(run["ok"], 60, "{run}");
        assert!(
            run["usage"]["resident_peak_bytes"].as_u64().unwrap() > 1 << 20,
            "RSS sampled: {run}"
        );
    }
    // seed-php's resources are nginx's tree (master, 1 worker) and PHP-FPM's (master,
    // 4 workers) together.
    let php = &runs[4];
    assert!(php["usage"]["processes"].as_u64().unwrap() >= 7, "{php}");
    // The Node app counts requests under our metric names; PHP-FPM has none.
    assert!(
        runs[5]["server_counted"].as_f64().unwrap() >= 60.0,
        "{}",
        runs[5]
    );
    assert!(php["server_counted"].is_null());
    // The servers' own p50 and p99, where they have our /metrics, beside the client's.
    for run in [&runs[0], &runs[1], &runs[3], &runs[5]] {
        let own = &run["server_latency_us"];
        assert!(own["p50_us"].as_f64().unwrap() > 0.0, "{run}");
        assert!(own["p99_us"].as_f64().unwrap() >= own["p50_us"].as_f64().unwrap());
    }
    assert!(runs[4]["server_latency_us"].is_null());
    // Each runtime's own instantiation and guest-run means, for the breakdown: the
    // components' and the WASI 0.1 modules'.
    for run in [&runs[0], &runs[3]] {
        let server = &run["server_mean_seconds"];
        for family in ["faas_init_duration_seconds", "faas_invoke_duration_seconds"] {
            assert!(server[family].as_f64().unwrap() > 0.0, "{server}");
        }
    }
    let wagi = json["sides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "serverless-wagi")
        .unwrap();
    assert!(
        wagi["description"].as_str().unwrap().contains("WASI 0.1"),
        "{wagi}"
    );
    for (key, what) in [
        ("php-fpm (seed-php)", "PHP "),
        ("node (seed-node)", "node v"),
    ] {
        assert!(
            json["meta"]["versions"][key]
                .as_str()
                .is_some_and(|v| v.starts_with(what)),
            "{}",
            json["meta"]["versions"]
        );
    }
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Where the time goes: tiny-hello",
        "| side | HTTP serving | nginx hop | instantiation | guest run | HTTP serving and the rest | whole request | mean latency |",
        "| seed-php |",
        "| seed-node |",
        "| direct |",
        "**WASI 0.1 against WASI 0.2**: serverless-wagi / serverless",
        "**WASI 0.1 against WASI 0.2**: serverless-wagi (the same handler as a WAGI module) passed up to 100 req/s; serverless up to 100 req/s.",
        "**Server's own view**: serverless measured p50",
    ] {
        assert!(
            markdown.contains(needle),
            "report.md lacks {needle:?}:\n{markdown}"
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Where the time goes: tiny-hello (mean per request)"));
    // What it costs, priced with the shipped prices at 10 req/s; `bench report` prices
    // the same results again at another rate.
    assert!(markdown.contains("## What it costs"), "{markdown}");
    assert!(markdown.contains("per month at 10 req/s"), "{markdown}");
    assert!(html.contains("tiny-hello: monthly cost at a steady rate"));
    let again = dir.path().join("again");
    let status = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("report")
        .arg(out.join("results.json"))
        .args(["--monthly-rate", "1000", "--out"])
        .arg(&again)
        .status()
        .unwrap();
    assert!(status.success());
    let repriced = std::fs::read_to_string(again.join("report.md")).unwrap();
    assert!(repriced.contains("per month at 1000 req/s"), "{repriced}");
}

/// `--serverless-abi p1`: the serverless side serves the WASI 0.1 builds, and the report
/// says so; asking for them twice (with the serverless-wagi side too) is refused.
#[test]
fn compare_can_run_the_serverless_side_on_the_wasi_p1_builds() {
    let dir = tempfile::tempdir().unwrap();
    let out = compare(dir.path(), TINY_HELLO)
        .args([
            "--serverless-abi",
            "p1",
            "--sides",
            "serverless,traditional,serverless-wagi",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("leave --serverless-abi at p2"), "{stderr}");

    let status = compare(dir.path(), TINY_HELLO)
        .args(["--serverless-abi", "p1"])
        .status()
        .unwrap();
    assert!(status.success(), "bench compare failed: {status}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report/results.json")).unwrap(),
    )
    .unwrap();
    assert!(
        json["meta"]["settings"]["serverless functions"]
            .as_str()
            .unwrap()
            .contains("WASI 0.1"),
        "{}",
        json["meta"]
    );
    let serverless = &json["scenarios"][0]["runs"][0];
    assert_eq!(serverless["side"], "serverless");
    assert_eq!(serverless["ok"], 60, "{serverless}");
    assert!(serverless["server_counted"].as_f64().unwrap() >= 60.0);
}

const MANY: &str = r#"
[defaults]
connections = 4
warmup = "100ms"
timeout = "5s"
rounds = 1

[[scenario]]
name = "many-30"
path = "/hello/"
applications = 30
zipf = 1.0
rate = 200
requests = 200

[[scenario]]
name = "many-50"
path = "/hello/"
applications = 50
rate = 200
requests = 40

[[scenario]]
name = "cold"
path = "/hello/"
cold_starts = 3
"#;

#[test]
fn compare_spreads_load_over_many_applications_and_measures_cold_starts() {
    let dir = tempfile::tempdir().unwrap();
    let status = compare(dir.path(), MANY)
        .args(["--peer", &peer()])
        .args(["--fleet-max-servers", "30", "--fleet-components", "10"])
        .status()
        .unwrap();
    assert!(status.success(), "bench compare failed: {status}");
    let out = dir.path().join("report");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();

    // Both fleets were sampled idle: one runtime with 50 functions, 30 webservers + nginx.
    let idle = json["fleet"]["idle"].as_array().unwrap();
    let fleet = |side: &str| idle.iter().find(|i| i["side"] == side).unwrap().clone();
    assert_eq!(fleet("serverless")["applications"], 50);
    assert_eq!(fleet("serverless")["usage"]["processes"], 1);
    assert_eq!(fleet("traditional")["applications"], 30);
    // 30 webservers, nginx's master and its one worker.
    assert_eq!(fleet("traditional")["usage"]["processes"], 32, "{idle:?}");

    // Every request to /hello-i/ answered on both sides; the runtime loaded each name the
    // draw touched once, cold: as many cold starts as distinct names in the draw.
    let many = &json["scenarios"][0];
    assert_eq!(many["applications"], 30);
    let runs = many["runs"].as_array().unwrap();
    for side in ["serverless", "traditional"] {
        let run = runs.iter().find(|r| r["side"] == side).unwrap();
        assert_eq!(run["ok"], 200, "{side}: {run}");
    }
    let paths = (0..30).map(|i| format!("/hello-{i}/")).collect();
    // 100 ms of warm-up at 200 req/s: 20 requests before the 200 measured, round 1's seed.
    let draw = bench::load::Spread::zipf(paths, 1.0, 220, 0);
    let serverless = runs.iter().find(|r| r["side"] == "serverless").unwrap();
    assert_eq!(
        serverless["cold_starts"].as_f64().unwrap(),
        draw.distinct(220) as f64,
        "{serverless}"
    );
    assert!(draw.distinct(220) > 1);
    let skipped = &many["skipped"];
    assert!(
        skipped["peer"]
            .as_str()
            .unwrap()
            .contains("serves only hello"),
        "{skipped}"
    );

    // Over 50 applications the traditional fleet (30 servers) cannot run: said, not hidden.
    let wide = &json["scenarios"][1];
    assert!(
        wide["skipped"]["traditional"]
            .as_str()
            .unwrap()
            .contains("fewer than 50"),
        "{wide}"
    );
    assert!(
        wide["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["side"] == "serverless" && r["ok"] == 40)
    );

    // Cold starts: three samples per series, on every side.
    let cold = json["scenarios"][2]["cold"].as_array().unwrap();
    let whats: Vec<String> = cold
        .iter()
        .map(|c| format!("{}: {}", c["side"], c["what"]))
        .collect();
    assert_eq!(cold.len(), 5, "{whats:?}");
    for side in ["serverless", "traditional", "peer"] {
        assert!(cold.iter().any(|c| c["side"] == side), "{whats:?}");
    }
    for series in cold {
        let samples = series["samples_ms"].as_array().unwrap();
        assert_eq!(samples.len(), 3, "{series}");
        assert!(samples.iter().all(|v| v.as_f64().unwrap() > 0.0));
    }

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in [
        "## Many applications, idle",
        "## What many quiet applications cost",
        "cold starts (the server's count)",
        "fresh webserver process: start to its first answer",
    ] {
        assert!(md.contains(section), "report.md lacks {section:?}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Many applications, idle"));
}

/// One short scenario that finishes, then one that would run for minutes.
const FINISHED_THEN_LONG: &str = r#"
[defaults]
connections = 4
warmup = "100ms"
timeout = "5s"
rounds = 1

[[scenario]]
name = "finished-hello"
path = "/hello/"
rate = 200
requests = 40

[[scenario]]
name = "long-hello"
path = "/hello/"
rate = 200
requests = 100000
"#;

#[test]
fn ctrl_c_stops_the_servers_and_still_writes_what_was_measured() {
    stops_the_servers_and_still_writes_what_was_measured(rustix::process::Signal::INT, "ctrl-c");
}

/// What `timeout`, `kill` and CI send: before, it left every server bench started
/// running.
#[test]
fn sigterm_stops_the_servers_and_still_writes_what_was_measured() {
    stops_the_servers_and_still_writes_what_was_measured(rustix::process::Signal::TERM, "SIGTERM");
}

fn stops_the_servers_and_still_writes_what_was_measured(
    signal: rustix::process::Signal,
    name: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = compare(dir.path(), FINISHED_THEN_LONG)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[bench] {line}");
            let _ = tx.send(line);
        }
    });
    // bench prints the sides' URLs, then a line per finished run: interrupt once both
    // sides' runs of the first scenario are done, while the second one runs.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut runtime_url = None;
    let mut finished = Vec::new();
    while finished.len() < 2 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("bench never finished the first scenario");
        if let Some(rest) = line.strip_prefix("serverless: http://") {
            runtime_url = Some(rest.split_whitespace().next().unwrap().to_string());
        }
        let mut words = line.split_whitespace();
        if words.next() == Some("finished-hello") {
            finished.push(words.next().unwrap().to_string());
        }
    }
    let runtime_url = runtime_url.expect("bench reported the runtime's URL first");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        signal,
    )
    .unwrap();
    let status = child
        .wait_timeout(Duration::from_secs(60))
        .unwrap()
        .unwrap_or_else(|| panic!("bench did not stop on {name}"));
    assert_eq!(
        status.code(),
        Some(130),
        "exit status for an interrupted run"
    );
    let addr: std::net::SocketAddr = runtime_url.parse().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "the runtime bench started is still listening on {addr}"
    );
    let json = std::fs::read_to_string(dir.path().join("report/results.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["meta"]["interrupted"].as_str().unwrap().contains(name),
        "{}",
        json["meta"]
    );
    // The finished scenario is in the partial report, whole: both sides, every request.
    let done = json["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "finished-hello")
        .unwrap_or_else(|| panic!("the finished scenario is missing: {json}"));
    let runs = done["runs"].as_array().unwrap();
    let sides: Vec<&str> = runs.iter().map(|r| r["side"].as_str().unwrap()).collect();
    assert_eq!(sides, ["serverless", "traditional"]);
    for run in runs {
        assert_eq!(run["ok"], 40, "{run}");
    }
    let markdown = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(markdown.contains("## finished-hello"), "{markdown}");
}
