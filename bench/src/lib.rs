//! The comparison's measuring instrument.
//!
//! - [`load`]: the open-loop load engine (constant arrival rate, HDR histograms, latency
//!   from each request's release on schedule);
//! - [`scenario`]: scenarios from TOML;
//! - [`sample`]: the sides' process resource use from `/proc`;
//! - [`runner`]: scenarios against sides, one side at a time, alternating;
//! - [`report`]: results as JSON, Markdown and HTML with charts;
//! - [`compare`]: the one-command local comparison.

pub mod cli;
pub mod compare;
pub mod cost;
pub mod diff;
pub mod fleet;
pub mod glance;
pub mod load;
pub mod machine;
pub mod report;
pub mod runner;
pub mod sample;
pub mod scenario;

use anyhow::Context;
use report::{ColdSeries, Fleet, Meta, Report, ScenarioResult};
use runner::{Runner, Side};
use scenario::Scenario;
use std::collections::BTreeMap;
use std::path::Path;

/// Runs the command the user asked for.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Compare(args) => compare::compare(&args),
        cli::Command::Run(args) => run_against(&args),
        cli::Command::Diff(args) => {
            let before = Report::read(&args.before)?;
            let after = Report::read(&args.after)?;
            let changes = diff::diff(&before, &after, args.tolerance);
            let table = diff::table(&changes);
            let row = |cells: &[String]| format!("| {} |", cells.join(" | "));
            println!("{}", row(&table.header));
            println!("|{}", "---|".repeat(table.header.len()));
            for cells in &table.rows {
                println!("{}", row(cells));
            }
            let real = changes.iter().filter(|c| c.real).count();
            println!(
                "\n{real} of {} figures changed beyond the noise (each result's own spread \
                 over its rounds, and at least {:.0}%).",
                changes.len(),
                args.tolerance * 100.0
            );
            Ok(())
        }
        cli::Command::Glance(args) => glance_command(&args),
        cli::Command::Report(args) => {
            let mut report = Report::read(&args.results)?;
            args.cost.apply(&mut report.cost)?;
            let dir = args.out.unwrap_or_else(|| {
                args.results
                    .parent()
                    .map_or_else(|| ".".into(), Path::to_path_buf)
            });
            report.write(&dir)?;
            eprintln!("report written to {}", dir.join("report.md").display());
            Ok(())
        }
    }
}

/// `bench glance`: the dashboard's stat row from Prometheus, as an SVG and a table.
fn glance_command(args: &cli::GlanceArgs) -> anyhow::Result<()> {
    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&args.dashboard)
            .with_context(|| format!("reading {}", args.dashboard.display()))?,
    )
    .with_context(|| format!("parsing {}", args.dashboard.display()))?;
    let panels = glance::stat_panels(&dashboard)?;
    let time = match &args.time {
        None => None,
        Some(t) => Some(match t.parse::<f64>() {
            Ok(seconds) => seconds,
            Err(_) => humantime::parse_rfc3339_weak(t)
                .with_context(|| format!("--time {t:?} is neither Unix seconds nor RFC 3339"))?
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs_f64(),
        }),
    };
    let client = reqwest::Client::new();
    let tiles = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(glance::evaluate(&client, &args.prometheus, panels, time))?;
    let title = dashboard["title"].as_str().unwrap_or("dashboard");
    let at = match &args.time {
        Some(t) => t.clone(),
        None => now(),
    };
    let caption = format!(
        "{title}: the at-a-glance row at {at}, each stat over the minute before (Prometheus {})",
        args.prometheus
    );
    std::fs::write(&args.out, glance::render(&tiles, &caption))
        .with_context(|| format!("writing {}", args.out.display()))?;
    print!("{}", glance::markdown(&tiles));
    eprintln!("written to {}", args.out.display());
    Ok(())
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The report's machine, versions and settings.
pub fn versions_and_settings(nginx: Option<&Path>, settings: BTreeMap<String, String>) -> Meta {
    Meta {
        machine: machine::machine(),
        versions: machine::versions(nginx),
        settings,
        ..Meta::default()
    }
}

/// What only a command that starts the servers can do: measure cold starts (it starts
/// fresh processes), and say what its fleets of applications hold when idle.
pub trait Servers {
    /// The series of a cold-start scenario.
    fn cold_starts(
        &mut self,
        runner: &Runner,
        scenario: &Scenario,
    ) -> anyhow::Result<Vec<ColdSeries>>;
    /// The idle fleets, if any were set up.
    fn fleet(&self) -> Option<Fleet>;
    /// Called before each scenario runs.
    fn scenario_starting(&mut self, _scenario: &Scenario) {}
    /// Called after each scenario ran on every side; may add to its result.
    fn scenario_done(&mut self, _result: &mut ScenarioResult) {}
}

/// Runs every scenario on every side, `repeat` times over, and writes the report to
/// `out`, also when a scenario fails or ctrl-c stops it (marked incomplete, with what was
/// measured). The report's scenarios are the last repeat's; the earlier ones are kept
/// for the section on how the ratios moved between repeats. Without `servers` (`bench
/// run`) cold-start scenarios are left out, and the report says so.
#[allow(clippy::too_many_arguments)]
pub fn run_scenarios(
    runner: &Runner,
    scenarios: &[Scenario],
    sides: &[Side],
    mut meta: Meta,
    cost: cost::CostModel,
    repeat: u32,
    out: &Path,
    mut servers: Option<&mut (dyn Servers + 'static)>,
) -> anyhow::Result<()> {
    meta.started = now();
    for side in sides {
        meta.versions.extend(runner.build_info(side));
    }
    let mut earlier_repeats = Vec::new();
    let mut results = Vec::new();
    let mut failure = None;
    for time in 0..repeat.max(1) {
        if time > 0 {
            eprintln!("repeat {} of {repeat}", time + 1);
            earlier_repeats.push(std::mem::take(&mut results));
        }
        failure = run_once(
            runner,
            scenarios,
            sides,
            &mut results,
            servers.as_deref_mut(),
        );
        if failure.is_some() {
            break;
        }
    }
    if repeat > 1 {
        meta.settings.insert("repeats".into(), repeat.to_string());
    }
    let fleet = servers.and_then(|s| s.fleet());
    finish(
        meta,
        sides,
        results,
        earlier_repeats,
        failure,
        (cost, fleet),
        out,
    )
}

/// Every scenario once, into `results`; the error that stopped it, if one did.
fn run_once(
    runner: &Runner,
    scenarios: &[Scenario],
    sides: &[Side],
    results: &mut Vec<ScenarioResult>,
    mut servers: Option<&mut (dyn Servers + 'static)>,
) -> Option<anyhow::Error> {
    for scenario in scenarios {
        let mut result = ScenarioResult {
            name: scenario.name.clone(),
            description: scenario.description.clone(),
            method: scenario.method.to_string(),
            path: scenario.path.clone(),
            connections: scenario.connections,
            warmup_seconds: scenario.warmup.as_secs_f64(),
            timeout_seconds: scenario.timeout.as_secs_f64(),
            sweep: match scenario.shape {
                scenario::Shape::Sweep {
                    p99_limit,
                    max_error_ratio,
                    ..
                } => Some(report::SweepLimits {
                    p99_limit_ms: p99_limit.as_secs_f64() * 1000.0,
                    max_error_ratio,
                }),
                scenario::Shape::Fixed { .. } | scenario::Shape::Cold { .. } => None,
            },
            stability: None,
            runs: Vec::new(),
            applications: scenario.spread.map(|s| s.applications),
            cold: Vec::new(),
            skipped: BTreeMap::new(),
            glance: None,
        };
        if let Some(servers) = servers.as_deref_mut() {
            servers.scenario_starting(scenario);
        }
        let outcome = match (&scenario.shape, servers.as_deref_mut()) {
            (scenario::Shape::Cold { .. }, Some(servers)) => servers
                .cold_starts(runner, scenario)
                .map(|series| result.cold = series),
            (scenario::Shape::Cold { .. }, None) => {
                let why = "only `bench compare` measures cold starts: it starts the servers";
                eprintln!("{}: left out, {why}", scenario.name);
                result.skipped.insert("every side".into(), why.into());
                Ok(())
            }
            _ => runner.scenario(scenario, sides, &mut result),
        };
        if let Some(servers) = servers.as_deref_mut()
            && outcome.is_ok()
        {
            servers.scenario_done(&mut result);
        }
        if !result.runs.is_empty() || !result.cold.is_empty() || !result.skipped.is_empty() {
            results.push(result);
        }
        if let Err(e) = outcome {
            return Some(e.context(format!("scenario {}", scenario.name)));
        }
    }
    None
}

fn finish(
    mut meta: Meta,
    sides: &[Side],
    results: Vec<ScenarioResult>,
    earlier_repeats: Vec<Vec<ScenarioResult>>,
    failure: Option<anyhow::Error>,
    (cost, fleet): (cost::CostModel, Option<Fleet>),
    out: &Path,
) -> anyhow::Result<()> {
    meta.finished = now();
    meta.settings.insert(
        "generator priority".into(),
        if load::priority_raised() {
            "nice -10 (the servers run at the default 0)".into()
        } else {
            "default (raising it needs root or CAP_SYS_NICE)".into()
        },
    );
    meta.interrupted = failure.as_ref().map(|e| format!("{e:#}"));
    let report = Report {
        meta,
        sides: sides.iter().map(|s| s.info.clone()).collect(),
        scenarios: results,
        earlier_repeats,
        cost,
        fleet,
    };
    report.write(out)?;
    eprintln!(
        "report written to {} (also report.html and results.json)",
        out.join("report.md").display()
    );
    failure.map_or(Ok(()), Err)
}

/// `bench run`: the scenarios against sides that are already running.
fn run_against(args: &cli::RunArgs) -> anyhow::Result<()> {
    let scenarios = args.common.scenarios()?;
    let pids = cli::pids_for(&args.pids, &args.sides)?;
    let trees = cli::pids_for(&args.trees, &args.sides)?;
    let metrics: BTreeMap<_, _> = args.metrics.iter().cloned().collect();
    for name in metrics.keys() {
        anyhow::ensure!(
            args.sides.iter().any(|(s, _)| s == name),
            "--metrics {name}=... names no --side"
        );
    }
    let sides: Vec<Side> = args
        .sides
        .iter()
        .map(|(name, url)| {
            let (p, t) = (pids.get(name).cloned(), trees.get(name).cloned());
            Side {
                info: report::SideInfo {
                    name: name.clone(),
                    description: "given with --side".into(),
                    url: url.clone(),
                },
                processes: (p.is_some() || t.is_some()).then(|| sample::ProcessSet {
                    pids: p.unwrap_or_default(),
                    trees: t.unwrap_or_default(),
                }),
                metrics_url: metrics.get(name).cloned(),
                serves: None,
                fleet: None,
            }
        })
        .collect();
    let runner = Runner::new(args.common.runner_options())?;
    loop {
        let meta = versions_and_settings(None, args.common.settings());
        run_scenarios(
            &runner,
            &scenarios,
            &sides,
            meta,
            args.common.cost.model()?,
            args.common.repeat,
            &args.common.out,
            None,
        )
        .context("running the scenarios")?;
        if !args.forever {
            return Ok(());
        }
    }
}
