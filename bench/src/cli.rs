//! Command line: `bench compare`, `bench run`, `bench report`.

use crate::runner::RunnerOptions;
use crate::scenario::Scenario;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Drives the same open-loop load at the serverless runtime and at nginx + webserver, and
/// writes a side-by-side report (Markdown, HTML with charts, JSON).
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start both sides locally (runtime, webserver, nginx on free loopback ports), deploy
    /// the example functions, run the scenarios and write the report.
    Compare(CompareArgs),
    /// Run the scenarios against sides that are already running (e.g. the compose stack).
    Run(RunArgs),
    /// Render report.md and report.html again from a results.json.
    Report(ReportArgs),
    /// Compare two results.json figure by figure, and say which differences are larger
    /// than the noise each measured within itself.
    Diff(DiffArgs),
    /// Draw the overview dashboard's at-a-glance row (its stat panels, from the
    /// dashboard's own queries, evaluated by Prometheus) as an SVG, without Grafana.
    Glance(GlanceArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier results.json.
    pub before: PathBuf,
    /// The later one.
    pub after: PathBuf,
    /// The smallest relative change counted as real, whatever the rounds' spread.
    #[arg(long, default_value_t = crate::report::figures::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
}

/// Settings every measuring command shares.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Scenario file (TOML); the one shipped in bench/scenarios.toml when not given.
    #[arg(long, env = "BENCH_SCENARIOS")]
    pub scenarios: Option<PathBuf>,
    /// Run only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Multiply every request count and sweep step duration (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Rounds per fixed-rate scenario, overriding the file (exactly this many, unless
    /// --max-rounds allows more).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// The most rounds a fixed-rate scenario may take to settle its headline ratios,
    /// overriding the file.
    #[arg(long)]
    pub max_rounds: Option<u32>,
    /// Directory the report is written to.
    #[arg(long, env = "BENCH_OUT", default_value = "bench-report")]
    pub out: PathBuf,
    /// Worker threads of the load generator. It shares the machine with the servers:
    /// one is enough up to tens of thousands of requests per second.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How often the sides' processes are sampled, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub sample_interval_ms: u64,
    /// Quiet time between runs, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub pause_ms: u64,
    /// No progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Run the whole set of scenarios this many times (the servers stay up), and add a
    /// section on how much each headline ratio moved between the repeats.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    #[command(flatten)]
    pub cost: CostArgs,
}

/// What the report's cost section prices with.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// Prices for the cost section: a TOML file like bench/prices.toml (the default).
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// The steady request rate (per second) whose monthly cost the report states
    /// (default 10, about 26 million requests a month).
    #[arg(long)]
    pub monthly_rate: Option<f64>,
}

impl CostArgs {
    /// The shipped prices and rate with these flags applied.
    pub fn model(&self) -> anyhow::Result<crate::cost::CostModel> {
        let mut model = crate::cost::CostModel::default();
        self.apply(&mut model)?;
        Ok(model)
    }

    /// Applies the flags given to `model` (a report's own, for `bench report`).
    pub fn apply(&self, model: &mut crate::cost::CostModel) -> anyhow::Result<()> {
        if let Some(path) = &self.prices {
            model.prices = crate::cost::Prices::load(path)?;
        }
        if let Some(rate) = self.monthly_rate {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0,
                "--monthly-rate must be a rate above 0, got {rate}"
            );
            model.monthly_rate = rate;
        }
        Ok(())
    }
}

impl CommonArgs {
    /// The scenarios to run, validated, filtered and with overrides applied.
    pub fn scenarios(&self) -> anyhow::Result<Vec<Scenario>> {
        let mut all = crate::scenario::load(self.scenarios.as_deref(), self.scale)?;
        for name in &self.only {
            if !all.iter().any(|s| &s.name == name) {
                let known: Vec<_> = all.iter().map(|s| s.name.as_str()).collect();
                bail!("no scenario named {name:?}; the file has {known:?}");
            }
        }
        if !self.only.is_empty() {
            all.retain(|s| self.only.contains(&s.name));
        }
        if let Some(rounds) = self.rounds {
            anyhow::ensure!(rounds >= 1, "--rounds must be at least 1");
            for s in &mut all {
                s.rounds = rounds;
                s.max_rounds = self.max_rounds.unwrap_or(rounds);
            }
        }
        if let Some(max) = self.max_rounds {
            for s in &mut all {
                anyhow::ensure!(
                    max >= s.rounds,
                    "--max-rounds {max} is below {}'s rounds ({})",
                    s.name,
                    s.rounds
                );
                s.max_rounds = max;
            }
        }
        Ok(all)
    }

    pub fn runner_options(&self) -> RunnerOptions {
        RunnerOptions {
            threads: self.threads,
            sample_interval: Duration::from_millis(self.sample_interval_ms.max(1)),
            pause: Duration::from_millis(self.pause_ms),
            progress: !self.no_progress,
        }
    }

    /// The settings a report records.
    pub fn settings(&self) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        s.insert("generator threads".into(), self.threads.to_string());
        s.insert(
            "sample interval".into(),
            format!("{} ms", self.sample_interval_ms),
        );
        s.insert("scale".into(), self.scale.to_string());
        s.insert(
            "scenario file".into(),
            self.scenarios
                .as_ref()
                .map_or("bench/scenarios.toml".into(), |p| p.display().to_string()),
        );
        s
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The runtime binary; built with cargo (same profile as bench) when not given.
    #[arg(long)]
    pub runtime_bin: Option<PathBuf>,
    /// The webserver binary; built with cargo (same profile as bench) when not given.
    #[arg(long)]
    pub webserver_bin: Option<PathBuf>,
    /// nginx worker processes (default: one per core, like `worker_processes auto`).
    #[arg(long)]
    pub nginx_workers: Option<usize>,
    /// Also run Prometheus with the compose stack's configuration and rules against the
    /// sides (and process-exporter for seed-php's processes), and after each fixed-rate
    /// scenario draw the overview dashboard's at-a-glance row as Grafana would show it
    /// then: glance-SCENARIO.svg in the report directory. Each stat covers the minute
    /// before: the whole scenario when it runs under a minute (e.g. `--rounds 1`); a
    /// fixed-rate scenario starts a minute after the one before, so it is alone in it.
    #[arg(long)]
    pub glance: bool,
    /// The sides to start and measure, comma-separated: `serverless` and `traditional`
    /// always, plus any of `direct` (the webserver without nginx: what the proxy
    /// costs), `serverless-wagi` (a second runtime serving the same handlers built as
    /// WASI 0.1 modules, the WAGI way: what each ABI costs), `serverless-js` and
    /// `serverless-python` (a runtime serving the same functions written in JavaScript,
    /// the seed's own Node handlers, or in Python: what each language costs),
    /// `seed-php` (PHP-FPM behind nginx) and `seed-node` (Node/Express), the seed
    /// report's own stacks answering like our functions.
    #[arg(long, value_delimiter = ',', default_value = "serverless,traditional")]
    pub sides: Vec<SideKind>,
    /// Same as adding `direct` to --sides.
    #[arg(long)]
    pub direct: bool,
    /// What the `serverless` side runs: `p2`, the wasi:http components, or `p1`, the
    /// same handlers built for `wasm32-wasip1` and served the WAGI way (CGI over WASI).
    #[arg(long, value_enum, default_value_t = Abi::P2)]
    pub serverless_abi: Abi,
    /// PHP-FPM's workers for `seed-php` (a static pool: PHP serves one request per
    /// process, so this is its concurrency).
    #[arg(long, default_value_t = 64)]
    pub php_fpm_children: usize,
    /// A `wasmtime` CLI to add as the `peer` side: `wasmtime serve -S cli` on the very
    /// same hello.wasm (the reference wasi:http host; hello scenarios only).
    /// `scripts/install-wasmtime-cli` installs one.
    #[arg(long, value_name = "WASMTIME")]
    pub peer: Option<PathBuf>,
    /// Scenarios spread over applications: at most this many webserver processes on the
    /// traditional side (one per application; what each holds is in the report's idle
    /// table); a scenario over more runs on the serverless side alone.
    #[arg(long, default_value_t = 1000)]
    pub fleet_max_servers: usize,
    /// Scenarios spread over applications: distinct components among the runtime's
    /// functions (copies of the one the scenario names, each its own compiled code).
    #[arg(long, default_value_t = 100)]
    pub fleet_components: usize,
}

/// A side `bench compare` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SideKind {
    Serverless,
    Traditional,
    Direct,
    ServerlessWagi,
    ServerlessJs,
    ServerlessPython,
    SeedPhp,
    SeedNode,
}

/// Which build of the example functions a runtime serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Abi {
    /// WASI 0.2: wasi:http components (`wasm32-wasip2`).
    P2,
    /// WASI 0.1: core modules run as WAGI commands (`wasm32-wasip1`).
    P1,
}

impl Abi {
    /// (name, path) of every example function built for this ABI.
    pub fn functions(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Abi::P2 => artifacts::FUNCTIONS,
            Abi::P1 => artifacts::MODULES,
        }
    }

    /// What the runtime serving this build does per request, for a side's description.
    pub fn describe(self) -> &'static str {
        match self {
            Abi::P2 => {
                "runtime: wasmtime, a fresh sandboxed instance of a wasi:http component per request"
            }
            Abi::P1 => {
                "runtime: wasmtime, a fresh sandboxed instance of a WASI 0.1 module per request, served the WAGI way (CGI over WASI)"
            }
        }
    }
}

impl CompareArgs {
    /// Whether `kind` is to be measured.
    pub fn wants(&self, kind: SideKind) -> bool {
        self.sides.contains(&kind) || (kind == SideKind::Direct && self.direct)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// A side as NAME=URL (e.g. serverless=http://localhost:8080); repeat for each side.
    /// Ratios compare the sides named serverless and traditional.
    #[arg(long = "side", value_parser = name_value, required = true)]
    pub sides: Vec<(String, String)>,
    /// NAME=URL of a side's Prometheus /metrics, to cross-check request counts.
    #[arg(long = "metrics", value_parser = name_value)]
    pub metrics: Vec<(String, String)>,
    /// NAME=PID of a process that belongs to a side (repeat for several).
    #[arg(long = "pid", value_parser = name_value)]
    pub pids: Vec<(String, String)>,
    /// NAME=PID of a process counted with all its children (nginx's master).
    #[arg(long = "tree", value_parser = name_value)]
    pub trees: Vec<(String, String)>,
    /// Repeat the scenarios until stopped, rewriting the report after each pass (the
    /// compose stack's `load` profile uses this to keep the dashboards busy).
    #[arg(long)]
    pub forever: bool,
}

#[derive(Debug, Args)]
pub struct GlanceArgs {
    /// Prometheus's base URL (the compose stack's is on :9090).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub prometheus: String,
    /// The dashboard whose first row of stat panels is drawn.
    #[arg(long, default_value = "infra/grafana/dashboards/overview.json")]
    pub dashboard: PathBuf,
    /// The moment to draw (Unix seconds or RFC 3339; default now): each stat covers
    /// the minute before it.
    #[arg(long)]
    pub time: Option<String>,
    /// Where to write the SVG; the values are also printed as a Markdown table.
    #[arg(long, default_value = "glance.svg")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results.json written by compare or run.
    pub results: PathBuf,
    /// Directory for report.md and report.html (default: beside results.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub cost: CostArgs,
}

fn name_value(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))?;
    if name.is_empty() || value.is_empty() {
        return Err(format!("expected NAME=VALUE, got {text:?}"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses `NAME=PID` values for the sides given.
pub fn pids_for(
    values: &[(String, String)],
    sides: &[(String, String)],
) -> anyhow::Result<BTreeMap<String, Vec<u32>>> {
    let mut map: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (name, pid) in values {
        if !sides.iter().any(|(s, _)| s == name) {
            bail!("{name}={pid} names no --side");
        }
        let pid: u32 = pid
            .parse()
            .with_context(|| format!("{name}={pid}: not a process id"))?;
        map.entry(name.clone()).or_default().push(pid);
    }
    Ok(map)
}
