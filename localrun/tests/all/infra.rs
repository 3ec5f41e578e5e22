//! The Prometheus configuration in `infra/prometheus` is valid, and its recording and
//! alert rules do what their unit tests say (real promtool).

use localrun::prometheus::{ProcessGroup, Prometheus, unix_now};
use std::path::PathBuf;
use std::time::Duration;

fn prometheus_dir() -> PathBuf {
    localrun::prometheus::config_dir()
}

#[test]
fn prometheus_config_is_valid() {
    localrun::promtool(&prometheus_dir(), &["check", "config", "prometheus.yml"]).unwrap();
}

#[test]
fn rules_are_valid_and_pass_their_unit_tests() {
    let dir = prometheus_dir();
    let mut rules: Vec<String> = std::fs::read_dir(dir.join("rules"))
        .unwrap()
        .map(|e| format!("rules/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    rules.sort();
    assert!(
        rules.len() >= 2,
        "expected recording and alert rules, found {rules:?}"
    );
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    localrun::promtool(&dir, &args).unwrap();
    localrun::promtool(&dir.join("tests"), &["test", "rules", "rules_test.yml"]).unwrap();
}

/// Every dashboard validates against Grafana's published dashboard schema: the JSON Schema
/// scripts/test generates from @grafana/schema (pinned to the Grafana version compose
/// runs) and names in GRAFANA_DASHBOARD_SCHEMA.
#[test]
fn dashboards_match_grafanas_published_schema() {
    let schema = std::env::var("GRAFANA_DASHBOARD_SCHEMA").expect(
        "GRAFANA_DASHBOARD_SCHEMA is not set: run the tests through scripts/test, which generates Grafana's dashboard schema and sets it",
    );
    assert!(
        std::path::Path::new(&schema).is_file(),
        "{schema} does not exist: run scripts/test, which generates it"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "dashboards: {files:?}");
    // Grafana's generated schema types an annotation's query after the built-in Grafana
    // annotations only (its own TODO: "this should just be a normal query target"), so a
    // Prometheus annotation, as Grafana's Prometheus data source reads it, fails it. Those
    // fields are checked here instead, and the rest of each dashboard by the schema.
    let copies = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    for file in &files {
        let mut d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        for annotation in d["annotations"]["list"].as_array_mut().unwrap() {
            if annotation["datasource"]["type"] != "prometheus" {
                continue;
            }
            let fields = annotation.as_object_mut().unwrap();
            let target = fields.remove("target").unwrap();
            let keys: Vec<&String> = target.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["expr", "refId"], "{}: {target}", file.display());
            assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()));
            for (key, string) in [
                ("step", true),
                ("titleFormat", true),
                ("textFormat", true),
                ("tagKeys", true),
                ("useValueForTime", false),
            ] {
                if let Some(value) = fields.remove(key) {
                    assert_eq!(value.is_string(), string, "{}: {key}", file.display());
                }
            }
        }
        let copy = copies.path().join(file.file_name().unwrap());
        std::fs::write(&copy, serde_json::to_vec(&d).unwrap()).unwrap();
        checked.push(copy);
    }
    let checker = localrun::find_program("check-jsonschema")
        .expect("check-jsonschema not found: scripts/test installs it");
    let out = std::process::Command::new(checker)
        .arg("--schemafile")
        .arg(&schema)
        .args(&checked)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboards do not match Grafana's schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn(program: &std::path::Path, args: &[String]) -> localrun::Background {
    localrun::Background::spawn(
        std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null()),
    )
    .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

use localrun::workspace_binary as our_binary;

fn program(name: &str) -> PathBuf {
    localrun::find_program(name)
        .unwrap_or_else(|| panic!("{name} not found: install it (scripts/test does, as root)"))
}

/// Every target of every panel, and every Prometheus annotation, of every dashboard in
/// `infra/grafana/dashboards`, with its dashboard and panel titles.
fn panel_queries() -> Vec<(String, String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/grafana/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let title = dashboard["title"].as_str().unwrap().to_string();
        for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = annotation["target"]["expr"].as_str() {
                queries.push((
                    title.clone(),
                    format!("annotation {}", annotation["name"]),
                    expr.to_string(),
                ));
            }
        }
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                queries.push((
                    title.clone(),
                    panel["title"].as_str().unwrap().to_string(),
                    target["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    queries
}

#[test]
fn dashboards_use_the_provisioned_data_source_and_set_units() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/grafana");
    let provisioned =
        std::fs::read_to_string(dir.join("provisioning/datasources/prometheus.yml")).unwrap();
    assert!(provisioned.contains("uid: prometheus"), "{provisioned}");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(dir.join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let d: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        dashboards += 1;
        assert!(
            d["uid"].is_string() && d["title"].is_string(),
            "{}",
            path.display()
        );
        // A data source variable whose default is the provisioned one; a shared
        // crosshair; links to the other dashboards (by the tag every one carries).
        let variables = d["templating"]["list"].as_array().unwrap();
        let source = variables
            .iter()
            .find(|v| v["type"] == "datasource")
            .unwrap_or_else(|| panic!("{}: no data source variable", path.display()));
        assert_eq!(
            (
                &source["name"],
                &source["query"],
                &source["current"]["value"]
            ),
            (
                &"datasource".into(),
                &"prometheus".into(),
                &"prometheus".into()
            ),
            "{}",
            path.display()
        );
        assert_eq!(d["graphTooltip"], 1, "{}: shared crosshair", path.display());
        assert!(
            d["tags"]
                .as_array()
                .unwrap()
                .contains(&"serverless-vs-server".into()),
            "{}",
            path.display()
        );
        assert!(
            d["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["type"] == "dashboards"
                    && l["tags"] == serde_json::json!(["serverless-vs-server"])
                    && l["includeVars"] == true
                    && l["keepTime"] == true),
            "{}: no links to the other dashboards",
            path.display()
        );
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            assert_eq!(variable["datasource"]["uid"], "${datasource}");
        }
        for panel in d["panels"].as_array().unwrap() {
            let name = format!("{} / {}", path.display(), panel["title"]);
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}");
            assert!(
                panel["fieldConfig"]["defaults"]["unit"].is_string(),
                "{name} has no unit"
            );
            assert!(
                panel["description"].as_str().is_some_and(|d| d.len() > 20),
                "{name} has no description"
            );
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{name}");
                let expr = target["expr"].as_str().unwrap();
                assert!(
                    !expr.contains("rate(")
                        || expr.contains("$__rate_interval")
                        || expr.contains("$__range"),
                    "{name}: {expr}"
                );
            }
        }
    }
    assert_eq!(dashboards, 3);

    // The compose stack opens on the comparison, read-only, without a login.
    let ini = std::fs::read_to_string(dir.join("grafana.ini")).unwrap();
    let home = ini
        .lines()
        .find_map(|l| l.strip_prefix("default_home_dashboard_path = "))
        .expect("a home dashboard is set");
    let file = std::path::Path::new(home).file_name().unwrap();
    assert!(
        dir.join("dashboards").join(file).is_file(),
        "home dashboard {home} is not one of ours"
    );
    assert!(
        ini.contains("[auth.anonymous]\nenabled = true\norg_role = Viewer"),
        "{ini}"
    );
}

/// The whole local stack (runtime, webserver, nginx, nginx-prometheus-exporter and a
/// real Prometheus with the compose scrape config pointed at them) under traffic; then
/// every dashboard panel's query must return data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_returns_data() {
    let client = localrun::examples::client();
    let started = unix_now();
    let functions = tempfile::tempdir().unwrap();
    for (name, path) in artifacts::FUNCTIONS {
        std::fs::copy(path, functions.path().join(format!("{name}.wasm"))).unwrap();
    }
    let misbehave = artifacts::TEST_PROGRAMS
        .iter()
        .find(|(n, _)| *n == "misbehave")
        .unwrap()
        .1;
    std::fs::copy(misbehave, functions.path().join("misbehave.wasm")).unwrap();
    std::fs::write(
        functions.path().join("misbehave.toml"),
        "timeout_secs = 0.5\nmax_concurrency = 1\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();

    let runtime = localrun::Service::start(
        our_binary("runtime"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--ops-listen",
            "127.0.0.1:0",
            "--pool-instances",
            "64",
            "--functions-dir",
            functions.path().to_str().unwrap(),
            "--store-dir",
            store.path().to_str().unwrap(),
            "--deploy-token",
            "t",
            // Room for one deployed function: the two deployed below take turns, so
            // every request to them is a cold start that loads its code.
            "--max-loaded-functions",
            "1",
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
    // The seed's stacks, as compose's `seed` profile runs them.
    let seed_php = localrun::SeedPhp::start(2, 1).unwrap();
    let seed_node = localrun::SeedNode::start().unwrap();
    // PHP-FPM's processes (this one's: its master's command line names its config),
    // as compose's `seed-php-processes` exports them.
    let processes = ProcessGroup::php_fpm(&seed_php.fpm).unwrap();
    // nginx's processes, as compose's `nginx-processes` exports them.
    let nginx_processes = ProcessGroup::nginx(&nginx).unwrap();
    let exporter_port = localrun::free_port().unwrap();
    let _exporter = spawn(
        &program("prometheus-nginx-exporter"),
        &[
            format!("-nginx.scrape-uri={}", nginx.stub_status_url()),
            format!("-web.listen-address=127.0.0.1:{exporter_port}"),
        ],
    );

    // The compose scrape config, pointed at the local processes, scraping every second.
    let prometheus = Prometheus::start_compose(&[
        ("runtime:8081", runtime.addr("ops").to_string()),
        ("webserver:8001", webserver.addr("ops").to_string()),
        ("nginx-exporter:9113", format!("127.0.0.1:{exporter_port}")),
        ("nginx-processes:9256", nginx_processes.addr().to_string()),
        ("seed-node:3001", seed_node.service.addr("ops").to_string()),
        (
            "seed-php-nginx:8080",
            format!("127.0.0.1:{}", seed_php.nginx.ports().status),
        ),
        ("seed-php-processes:9256", processes.addr().to_string()),
    ])
    .unwrap();

    // Deploys after Prometheus has scraped the runtime once: an event it saw happen.
    let seen = r#"faas_deployments_total{job="runtime",result="created"}"#;
    prometheus
        .wait_for_series(&client, seen, Duration::from_secs(30))
        .await
        .unwrap();

    // Traffic on both sides for a while, with failures of every kind on the runtime.
    for (name, wasm) in [
        ("hello-again", artifacts::HELLO_COMPONENT),
        ("hash-again", artifacts::HASH_COMPONENT),
    ] {
        let deploy = client
            .put(format!("{}/functions/{name}", runtime.url("ops")))
            .bearer_auth("t")
            .body(std::fs::read(wasm).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(deploy.status(), 201, "{name}");
    }
    // A canary, rolled back: the rollback annotation's event.
    let canary = client
        .put(format!(
            "{}/functions/hello-again?canary=50",
            runtime.url("ops")
        ))
        .bearer_auth("t")
        .body(std::fs::read(artifacts::HASH_COMPONENT).unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        canary.status().is_success(),
        "{}",
        canary.text().await.unwrap()
    );
    // Rolled back once Prometheus has seen it run (its rollback counters at 0).
    let running = r#"runtime_canary_rollbacks_total{function="hello-again"}"#;
    prometheus
        .wait_for_series(&client, running, Duration::from_secs(30))
        .await
        .unwrap();
    let rollback = client
        .post(format!(
            "{}/functions/hello-again/rollback",
            runtime.url("ops")
        ))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(rollback.status(), 200, "{}", rollback.text().await.unwrap());
    let end = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::time::Instant::now() < end {
        for base in [
            runtime.url("traffic"),
            webserver.url("traffic"),
            nginx.url(),
            seed_php.url(),
            seed_node.service.url("traffic"),
        ] {
            localrun::examples::check_all(&client, &base).await.unwrap();
        }
        let base = runtime.url("traffic");
        for path in ["hello-again/", "hash-again/?rounds=1"] {
            let status = client
                .get(format!("{base}/{path}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{path}");
        }
        let busy = tokio::spawn(client.get(format!("{base}/misbehave/sleep?ms=300")).send());
        // Ready when its instance is alive: then the next request finds it at its limit.
        let series = r#"faas_active_instances{function="misbehave"}"#;
        localrun::wait_for_sample(&client, &runtime, series, 1.0).await;
        let _ = client.get(format!("{base}/misbehave/counter")).send().await; // 503: at its limit
        let _ = busy.await;
        let _ = client.get(format!("{base}/misbehave/trap")).send().await;
        let _ = client
            .get(format!("{base}/misbehave/sleep?ms=2000"))
            .send()
            .await; // 504
    }

    let mut missing = Vec::new();
    for (dashboard, panel, expr) in panel_queries() {
        let query = expr
            .replace("$side", "runtime|webserver|seed-node")
            .replace("$function", ".*")
            .replace("$__rate_interval", "15s")
            .replace("$__range", "5m");
        // An annotation is evaluated as Grafana does, over the dashboard's time range
        // (here the whole test); a panel at the last instant.
        let range = panel.starts_with("annotation ").then_some(started);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let result = match range {
                Some(start) => prometheus.query_range(&client, &query, start).await,
                None => prometheus.query(&client, &query).await,
            };
            if result.as_ref().is_some_and(|r| !r.is_empty()) {
                break;
            }
            if std::time::Instant::now() >= deadline {
                missing.push(format!("{dashboard} / {panel}: {query} -> {result:?}"));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    // Every side's scrape job is up, the seed's included (PHP-FPM's OpenMetrics page
    // parses as Prometheus reads it). cadvisor has no local stand-in.
    let up = prometheus
        .query(
            &client,
            r#"up{job=~"runtime|webserver|nginx|seed-node|seed-php"} == 1"#,
        )
        .await;
    assert_eq!(
        up.as_ref().map(Vec::len),
        Some(7),
        "a side's target is down (nginx and seed-php have two: their status and their processes): {up:?}"
    );
    assert!(
        missing.is_empty(),
        "panels without data:\n{}",
        missing.join("\n")
    );

    // The at-a-glance ratios compare the runtime with every side that has the figure:
    // PHP-FPM (its status page and its processes) has no latency histogram; the
    // traditional side whole (webserver and nginx's processes) has CPU and memory.
    for (rule, expected) in [
        (
            "side:http_server_request_duration_seconds:p99_ratio_1m",
            &["seed-node", "webserver"][..],
        ),
        (
            "side:process_cpu_seconds_per_request:ratio_1m",
            &["seed-node", "seed-php", "traditional", "webserver"][..],
        ),
        (
            "side:process_memory_bytes:ratio",
            &["seed-node", "seed-php", "traditional", "webserver"][..],
        ),
        (
            "side:http_server_requests:rate_ratio_1m",
            &["seed-node", "seed-php", "webserver"][..],
        ),
    ] {
        let mut versus: Vec<String> = prometheus
            .query(&client, rule)
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r["value"][1]
                    .as_str()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
                    .is_finite()
            })
            .map(|r| r["metric"]["versus"].as_str().unwrap().to_string())
            .collect();
        versus.sort();
        assert_eq!(versus, expected, "{rule}");
    }

    // The overview's `side` variable is built from the scrape jobs: what it offers here
    // is every job of the scrape config but Prometheus itself and cAdvisor (which has no
    // local stand-in), with nothing to edit when a side is added.
    let overview: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prometheus_dir().join("../grafana/dashboards/overview.json")).unwrap(),
    )
    .unwrap();
    let side = overview["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "side")
        .unwrap()
        .clone();
    assert_eq!(side["query"]["query"], "label_values(up, job)");
    assert_eq!(side["regex"], "/^(?!(prometheus|cadvisor)$).*$/");
    let excluded = ["prometheus", "cadvisor"];
    let offered: std::collections::BTreeSet<String> = client
        .get(format!("{}/api/v1/label/job/values", prometheus.url()))
        .query(&[("match[]", "up")])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap().to_string())
        .filter(|j| !excluded.contains(&j.as_str()))
        .collect();
    let config = std::fs::read_to_string(prometheus_dir().join("prometheus.yml")).unwrap();
    let jobs: std::collections::BTreeSet<String> = config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- job_name:"))
        .map(|j| j.trim().to_string())
        .filter(|j| !excluded.contains(&j.as_str()))
        .collect();
    assert_eq!(
        offered, jobs,
        "the side variable offers what Prometheus scrapes"
    );
}
