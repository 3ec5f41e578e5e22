//! The report's cost section: for each fixed-rate scenario, what the serverless side
//! would be billed on a function platform and what an always-on server for the
//! traditional side would cost, from the figures the run measured, and the rate from
//! which the server is the cheaper one (`crate::cost` has the arithmetic).

use super::figures::{SERVERLESS, TRADITIONAL};
use super::svg::{Chart, Scale, Series};
use super::view::Table;
use super::{Report, ScenarioResult};
use crate::cost::{CostModel, SECONDS_PER_MONTH};

/// One scenario, priced.
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    pub scenario: String,
    /// The serverless side's billed duration source, seconds per request.
    pub function_seconds: f64,
    pub function_per_request: f64,
    /// The traditional side's CPU seconds and memory (bytes) per request / in all.
    pub cpu_seconds: f64,
    pub memory_bytes: f64,
    /// The rate the scenario ran at.
    pub measured_rate: f64,
    /// Where the server becomes the cheaper one, requests per second.
    pub break_even: Option<f64>,
}

/// Every fixed-rate scenario both sides ran, with the figures it needs.
pub fn priced(report: &Report) -> Vec<Priced> {
    let prices = &report.cost.prices;
    report
        .scenarios
        .iter()
        .filter(|s| s.sweep.is_none())
        .filter_map(|scenario| {
            let function_seconds = function_seconds(scenario)?;
            let cpu_seconds = cpu_seconds(scenario, TRADITIONAL)?;
            let memory_bytes = memory_bytes(scenario, TRADITIONAL)?;
            let measured_rate = scenario.runs_of(TRADITIONAL).next()?.rate;
            let function_per_request = prices.function_per_request(function_seconds);
            Some(Priced {
                scenario: scenario.name.clone(),
                function_seconds,
                function_per_request,
                cpu_seconds,
                memory_bytes,
                measured_rate,
                break_even: prices.break_even(function_per_request, cpu_seconds, memory_bytes),
            })
        })
        .collect()
}

fn median(
    scenario: &ScenarioResult,
    side: &str,
    get: impl Fn(&super::Run) -> Option<f64>,
) -> Option<f64> {
    scenario.spread_of(side, get).map(|s| s.median)
}

/// What a function platform bills for one request of `scenario`: the time the runtime
/// itself spent on it, or the client's latency if the side has no /metrics of ours.
fn function_seconds(scenario: &ScenarioResult) -> Option<f64> {
    median(scenario, SERVERLESS, |r| {
        r.server_mean_seconds
            .get("http_server_request_duration_seconds")
            .copied()
    })
    .or_else(|| median(scenario, SERVERLESS, |r| Some(r.latency_us.mean / 1e6)))
}

/// The side's CPU seconds per request, median over its runs.
fn cpu_seconds(scenario: &ScenarioResult, side: &str) -> Option<f64> {
    median(scenario, side, |r| r.cpu_per_1000().map(|c| c / 1000.0))
}

/// The side's peak memory (PSS where read, else RSS), median over its runs.
fn memory_bytes(scenario: &ScenarioResult, side: &str) -> Option<f64> {
    median(scenario, side, |r| {
        r.usage
            .map(|u| u.proportional_peak_bytes.unwrap_or(u.resident_peak_bytes) as f64)
    })
}

/// Dollars, with cents for amounts of a dollar or more and three significant digits
/// below.
pub fn dollars(amount: f64) -> String {
    if amount >= 100.0 {
        format!("${amount:.0}")
    } else if amount >= 1.0 {
        format!("${amount:.2}")
    } else {
        format!("${amount:.3}")
    }
}

/// A rate and what it makes in a month: "17 req/s (44.6 M requests a month)".
pub fn rate_and_month(rate: f64) -> String {
    let month = rate * SECONDS_PER_MONTH;
    let month = if month >= 1e9 {
        format!("{:.1} G", month / 1e9)
    } else if month >= 1e6 {
        format!("{:.1} M", month / 1e6)
    } else {
        format!("{:.0} k", month / 1e3)
    };
    let rate = if rate >= 10.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}")
    };
    format!("{rate} req/s ({month} requests a month)")
}

pub fn table(model: &CostModel, rows: &[Priced]) -> Table {
    let rate = model.monthly_rate;
    let header = vec![
        "scenario".to_string(),
        "function: per million requests".into(),
        "server at the measured rate: size, per million requests".into(),
        format!("per month at {}: function / server", rate_and_month(rate)),
        "server cheaper from".into(),
    ];
    let rows = rows
        .iter()
        .map(|p| {
            let at_measured =
                model
                    .prices
                    .server_for(p.measured_rate, p.cpu_seconds, p.memory_bytes);
            let per_million_server =
                at_measured.monthly / (p.measured_rate * SECONDS_PER_MONTH) * 1e6;
            let server = model.prices.server_for(rate, p.cpu_seconds, p.memory_bytes);
            vec![
                p.scenario.clone(),
                dollars(p.function_per_request * 1e6),
                format!(
                    "{} vCPU, {} GB at {} req/s: {}",
                    at_measured.vcpu,
                    at_measured.gb,
                    p.measured_rate,
                    dollars(per_million_server)
                ),
                format!(
                    "{} / {}",
                    dollars(p.function_per_request * rate * SECONDS_PER_MONTH),
                    dollars(server.monthly)
                ),
                p.break_even.map_or_else(
                    || "never (the function stays cheaper)".into(),
                    rate_and_month,
                ),
            ]
        })
        .collect();
    Table { header, rows }
}

/// How the figures were made, said under the table.
pub fn note(model: &CostModel) -> String {
    let p = &model.prices;
    format!(
        "Function: {} per million requests plus {} per GB-second, {} MB configured, \
         duration billed in {} ms steps, the duration being the runtime's own mean time per \
         request in the run ({}). Server: {} per vCPU-hour and {} per GB-hour, sized in \
         steps of {} vCPU and {} GB (at least {} and {}) so that the traditional side's \
         measured CPU per request keeps it {:.0}% busy, with its measured peak memory \
         (PSS) ×{} ({}), {} hours a month. Prices checked {}. Other prices: `--prices FILE` \
         (like bench/prices.toml), another rate: `--monthly-rate`, also for `bench report`.",
        dollars(p.function.per_million_requests),
        p.function.per_gb_second,
        p.function.memory_mb,
        p.function.granularity_ms,
        p.function.source,
        p.server.per_vcpu_hour,
        p.server.per_gb_hour,
        p.server.vcpu_step,
        p.server.gb_step,
        p.server.min_vcpu,
        p.server.min_gb,
        p.server.target_utilisation * 100.0,
        p.server.memory_headroom,
        p.server.source,
        crate::cost::HOURS_PER_MONTH,
        p.checked,
    )
}

/// Monthly cost against steady rate for one scenario, both sides, log-log, with the
/// break-even rate marked.
pub fn chart(model: &CostModel, p: &Priced, scenario: &ScenarioResult) -> Chart {
    let top = p.break_even.map_or(1e4, |b| (b * 100.0).max(1e3));
    let rates: Vec<f64> = (0..=60)
        .map(|i| 0.01 * (top / 0.01_f64).powf(f64::from(i) / 60.0))
        .collect();
    let function: Vec<(f64, f64)> = rates
        .iter()
        .map(|&r| (r, r * SECONDS_PER_MONTH * p.function_per_request))
        .collect();
    let server: Vec<(f64, f64)> = rates
        .iter()
        .map(|&r| {
            (
                r,
                model
                    .prices
                    .server_for(r, p.cpu_seconds, p.memory_bytes)
                    .monthly,
            )
        })
        .collect();
    let mut series = vec![
        Series {
            name: "function (serverless side)".into(),
            color: "#1f77b4",
            dashed: false,
            points: function,
        },
        Series {
            name: "always-on server (traditional side)".into(),
            color: "#ff7f0e",
            dashed: false,
            points: server,
        },
    ];
    if let Some(b) = p.break_even {
        series.push(Series {
            name: format!("break-even: {}", rate_and_month(b)),
            color: "#2ca02c",
            dashed: true,
            points: vec![
                (b, b * SECONDS_PER_MONTH * p.function_per_request / 10.0),
                (b, b * SECONDS_PER_MONTH * p.function_per_request * 10.0),
            ],
        });
    }
    Chart {
        title: format!("{}: monthly cost at a steady rate", scenario.name),
        x_label: "requests per second".into(),
        y_label: "US dollars per month".into(),
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        x_ticks: None,
        x_format: |v| format!("{v}"),
        y_format: |v| format!("${v}"),
        y_from_zero: false,
        series,
    }
}

/// Per-application rates the fleet cost table prices: one request an hour, about one a
/// minute (0.01/s), 0.1/s and 1/s each.
pub const FLEET_RATES: &[f64] = &[1.0 / 3600.0, 0.01, 0.1, 1.0];

/// The cost of many quiet applications, from the idle fleets and the scenario spread over
/// them that both sides ran: a table and the note under it.
pub fn fleet_table(report: &Report) -> Option<(Table, String)> {
    let fleet = report.fleet.as_ref()?;
    let idle = |side: &str| fleet.idle.iter().find(|i| i.side == side);
    let (serverless, traditional) = (idle(SERVERLESS)?, idle(TRADITIONAL)?);
    let scenario = report
        .scenarios
        .iter()
        .filter(|s| s.applications.is_some())
        .find(|s| {
            s.runs_of(SERVERLESS).next().is_some() && s.runs_of(TRADITIONAL).next().is_some()
        })?;
    let function_seconds = function_seconds(scenario)?;
    let cpu = |side: &str| cpu_seconds(scenario, side);
    let peak = |side: &str| memory_bytes(scenario, side);
    let prices = &report.cost.prices;
    let per_request = prices.function_per_request(function_seconds);
    let per_app = traditional.per_application_bytes();
    let webservers = crate::cost::FleetShape {
        cpu_seconds: cpu(TRADITIONAL)?,
        per_application_bytes: per_app,
        host_bytes: move |n: f64| n * per_app,
    };
    // The runtime under the scenario's load (its loaded functions are bounded by
    // --max-loaded-functions), plus what each stored function holds idle.
    let runtime_bytes = peak(SERVERLESS)
        .unwrap_or(0.0)
        .max(serverless.memory_bytes());
    let per_stored = serverless.per_application_bytes();
    let runtime = crate::cost::FleetShape {
        cpu_seconds: cpu(SERVERLESS)?,
        per_application_bytes: runtime_bytes,
        host_bytes: move |n: f64| runtime_bytes + n * per_stored,
    };
    let n = traditional.applications as f64;
    let header = vec![
        "each application at".to_string(),
        format!("{n:.0} applications: function platform"),
        "one server per application".into(),
        "one host: a webserver per application".into(),
        "one host: our runtime".into(),
        "a host of webservers is cheaper from".into(),
        "a host running our runtime is cheaper from".into(),
    ];
    let from = |found: Option<u64>| {
        found.map_or_else(
            || "never (the function platform stays cheaper)".to_string(),
            |n| format!("{n} applications"),
        )
    };
    let rows = FLEET_RATES
        .iter()
        .map(|&rate| {
            let cost = prices.fleet(n, rate, per_request, &webservers);
            let ours = prices.fleet(n, rate, per_request, &runtime);
            let each = if (rate * 3600.0 - 1.0).abs() < 1e-9 {
                "1 request an hour (730 a month)".to_string()
            } else {
                rate_and_month(rate)
            };
            vec![
                each,
                dollars(cost.function),
                dollars(cost.server_each),
                dollars(cost.one_host),
                dollars(ours.one_host),
                from(prices.break_even_applications(rate, per_request, &webservers)),
                from(prices.break_even_applications(rate, per_request, &runtime)),
            ]
        })
        .collect();
    let total_rate = |shape_cpu: f64, bytes: f64| {
        prices
            .break_even(per_request, shape_cpu, bytes)
            .map_or_else(|| "never".to_string(), rate_and_month)
    };
    let note = format!(
        "Monthly prices of {n:.0} applications that are mostly idle, from `{}` and the idle \
         fleets. Function platform: each request billed as in the section above \
         ({} per million requests, from the runtime's mean {:.2} ms), nothing while idle. One server \
         per application: the smallest server each, as the seed deployed its apps. One host \
         of webservers: sized for the total rate at the traditional side's measured CPU per \
         request and {} per application (the idle fleet's PSS, nginx included). One host \
         running our runtime: its measured memory under that load ({}; the functions it \
         keeps loaded are bounded by --max-loaded-functions) plus {} per application (its \
         idle fleet's memory per stored function). For all {n:.0} together, \
         the host of webservers is cheaper than the function platform from a total of {}, \
         the host running our runtime from {}.",
        scenario.name,
        dollars(per_request * 1e6),
        function_seconds * 1000.0,
        super::figures::format(super::figures::Unit::Bytes, per_app),
        super::figures::format(super::figures::Unit::Bytes, runtime_bytes),
        super::figures::format(super::figures::Unit::Bytes, per_stored),
        total_rate(webservers.cpu_seconds, n * per_app),
        total_rate(runtime.cpu_seconds, (runtime.host_bytes)(n)),
    );
    Some((Table { header, rows }, note))
}
