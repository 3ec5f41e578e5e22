//! The Prometheus configuration in `infra/prometheus` is valid, and its recording and
//! alert rules do what their unit tests say (real promtool).

use std::path::PathBuf;

fn prometheus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/prometheus")
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
