//! The results of a comparison, as data (written as `results.json`), and the two views of
//! it: a Markdown report and a self-contained HTML page with charts.

pub mod breakdown;
pub mod costs;
pub mod figures;
mod html;
mod markdown;
pub mod svg;
pub mod view;

pub use html::html;
pub use markdown::markdown;

use crate::load::{ErrorKind, LoadResult};
use crate::sample::{Sample, Usage};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What a server measured of its own requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerLatency {
    pub p50_us: f64,
    pub p99_us: f64,
}

/// How many rounds a fixed-rate scenario ran, and why it stopped: rounds are added
/// (A B A B ...) from `min_rounds` until every headline ratio's rounds agree within
/// `tolerance` ((max - min) / median) or `max_rounds` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    pub tolerance: f64,
    pub min_rounds: u32,
    pub max_rounds: u32,
    pub rounds: u32,
    /// Whether the headline ratios agreed when it stopped.
    pub settled: bool,
}

/// Everything one `bench compare` or `bench run` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub meta: Meta,
    pub sides: Vec<SideInfo>,
    pub scenarios: Vec<ScenarioResult>,
    /// With `--repeat N`: the scenarios of repeats 1 to N-1 (`scenarios` is the last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_repeats: Vec<Vec<ScenarioResult>>,
    /// The prices and rate the cost section uses (the shipped ones for results written
    /// before it existed).
    #[serde(default)]
    pub cost: crate::cost::CostModel,
    /// Many applications held idle, per side (`bench compare` with a scenario spread over
    /// applications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
}

/// What many deployed applications cost while nothing is asked of them: each side's
/// processes sampled for a while with no traffic, right after they were set up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fleet {
    pub idle: Vec<Idle>,
    /// What a reader must know: how each side's fleet was made, what was not run and why.
    pub notes: Vec<String>,
}

/// One side's fleet at rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Idle {
    pub side: String,
    /// What the fleet is: "10,000 functions over 100 components in one runtime".
    pub description: String,
    pub applications: usize,
    pub seconds: f64,
    pub usage: crate::sample::Usage,
}

impl Idle {
    /// The memory the fleet holds: PSS where read (processes sharing pages counted once),
    /// else RSS.
    pub fn memory_bytes(&self) -> f64 {
        self.usage
            .proportional_peak_bytes
            .unwrap_or(self.usage.resident_peak_bytes) as f64
    }

    /// Memory per application.
    pub fn per_application_bytes(&self) -> f64 {
        self.memory_bytes() / self.applications.max(1) as f64
    }

    /// CPU the idle fleet burns, in cores (CPU seconds per second).
    pub fn cores(&self) -> f64 {
        self.usage.cpu_seconds / self.seconds.max(1e-9)
    }
}

/// First answers from cold, one series per side and kind, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdSeries {
    pub side: String,
    /// "fresh process: start to first answer", "first request, not loaded".
    pub what: String,
    pub samples_ms: Vec<f64>,
}
/// Where and with what the figures were taken.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    /// Stopped by ctrl-c or an error before every scenario ran.
    pub interrupted: Option<String>,
    pub machine: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
    /// How the load was generated and the sides configured.
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideInfo {
    /// `serverless`, `traditional`, ...
    pub name: String,
    pub description: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    pub method: String,
    pub path: String,
    pub connections: usize,
    pub warmup_seconds: f64,
    pub timeout_seconds: f64,
    /// Present for a rate sweep.
    pub sweep: Option<SweepLimits>,
    /// For a fixed-rate scenario: how its rounds were decided.
    #[serde(default)]
    pub stability: Option<Stability>,
    /// Every run, in the order they ran.
    pub runs: Vec<Run>,
    /// A scenario spread over this many applications (`/hello-0/` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications: Option<usize>,
    /// A cold-start scenario's series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cold: Vec<ColdSeries>,
    /// Sides that did not run it, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, String>,
    /// The comparison dashboard's stat row right after it (`bench compare --glance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glance: Option<Glance>,
}

/// The dashboard's row as drawn after a scenario: the SVG file beside the report, and
/// its text, which the HTML report inlines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Glance {
    pub file: String,
    pub svg: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SweepLimits {
    pub p99_limit_ms: f64,
    pub max_error_ratio: f64,
}

/// One side, one round (or sweep step), one rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub side: String,
    pub round: u32,
    /// Target rate, requests per second.
    pub rate: f64,
    /// Measured requests scheduled (warm-up excluded).
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Successful responses per second over the measured window.
    pub achieved_rate: f64,
    pub window_seconds: f64,
    /// Successful requests, from their release on schedule to the end of the body.
    pub latency_us: Percentiles,
    /// How long released requests waited for a free connection (included in latency).
    pub send_lag_us: Percentiles,
    /// How late the generator released requests after their planned instant: its own
    /// lateness (not in latency).
    pub schedule_lag_us: Percentiles,
    /// (percentile, µs) along the whole distribution, for the percentile chart.
    pub latency_curve: Vec<(f64, f64)>,
    /// The latency histogram in HdrHistogram's V2 compressed format, base64.
    pub latency_histogram: String,
    /// Resource use of the side's processes over the measured window.
    pub usage: Option<Usage>,
    /// Resource use of the load generator itself over the same window.
    pub generator_usage: Option<Usage>,
    pub timeline: Vec<Sample>,
    /// Requests the side's own `/metrics` counted during the run (warm-up included).
    pub server_counted: Option<f64>,
    /// Share of the machine's CPU time the hypervisor took during the run (0 to 1).
    #[serde(default)]
    pub steal_share: Option<f64>,
    /// The side's own mean durations over the run (warm-up included), in seconds, by
    /// histogram family (`runner::SERVER_DURATIONS`): what the server measured itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_mean_seconds: BTreeMap<String, f64>,
    /// The side's own p50 and p99 over the run (warm-up included), when it has our
    /// `/metrics`.
    #[serde(default)]
    pub server_latency_us: Option<ServerLatency>,
    /// Functions the side loaded cold during the run (warm-up included), from its
    /// `faas_coldstarts_total`: the runtime's count; none for a side without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_starts: Option<f64>,
    pub measure_start_seconds: f64,
}

impl Run {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn error_ratio(&self) -> f64 {
        let total = self.ok + self.error_count();
        if total == 0 {
            return 0.0;
        }
        self.error_count() as f64 / total as f64
    }

    /// CPU seconds the side spent per 1000 measured requests.
    pub fn cpu_per_1000(&self) -> Option<f64> {
        let done = self.ok + self.error_count();
        let usage = self.usage?;
        (done > 0).then(|| usage.cpu_seconds * 1000.0 / done as f64)
    }

    /// Builds a run from what the load engine and the samplers measured.
    pub fn new(
        id: RunId<'_>,
        result: &LoadResult,
        side_samples: Option<Vec<Sample>>,
        generator_samples: &[Sample],
        server_counted: Option<f64>,
        steal_share: Option<f64>,
    ) -> Self {
        let from = result.measure_start.as_secs_f64();
        let to = result.measure_end.as_secs_f64();
        let usage = side_samples
            .as_deref()
            .and_then(|s| crate::sample::usage(s, from, to));
        Self {
            side: id.side.to_string(),
            round: id.round,
            rate: id.rate,
            requests: id.requests,
            ok: result.ok,
            errors: result
                .errors
                .iter()
                .map(|(k, v): (&ErrorKind, &u64)| (k.to_string(), *v))
                .collect(),
            achieved_rate: result.achieved_rate(),
            window_seconds: to - from,
            latency_us: Percentiles::of(&result.latency),
            send_lag_us: Percentiles::of(&result.send_lag),
            schedule_lag_us: Percentiles::of(&result.schedule_lag),
            latency_curve: curve(&result.latency),
            latency_histogram: encode(&result.latency),
            usage,
            generator_usage: crate::sample::usage(generator_samples, from, to),
            timeline: side_samples.unwrap_or_default(),
            server_counted,
            steal_share,
            server_mean_seconds: BTreeMap::new(),
            server_latency_us: None,
            cold_starts: None,
            measure_start_seconds: from,
        }
    }
}

/// Which run a [`Run`] is.
#[derive(Debug, Clone, Copy)]
pub struct RunId<'a> {
    pub side: &'a str,
    pub round: u32,
    pub rate: f64,
    pub requests: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.5) as f64,
            p90: h.value_at_quantile(0.9) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            p999: h.value_at_quantile(0.999) as f64,
            max: h.max() as f64,
            mean: h.mean(),
        }
    }
}

fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = h
        .iter_quantiles(2)
        .map(|v| {
            (
                v.quantile_iterated_to() * 100.0,
                v.value_iterated_to() as f64,
            )
        })
        .filter(|(p, _)| *p < 100.0)
        .collect();
    points.push((100.0, h.max() as f64));
    points
}

fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes [`Run::latency_histogram`].
pub fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .context("not an HdrHistogram V2 histogram")
}

/// The median and range of one figure over a side's rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

impl ScenarioResult {
    /// The side's runs, in order.
    pub fn runs_of<'a>(&'a self, side: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
        self.runs.iter().filter(move |r| r.side == side)
    }

    /// The median and range of `get` over the side's runs (those without the figure left
    /// out).
    pub fn spread_of(&self, side: &str, get: impl Fn(&Run) -> Option<f64>) -> Option<Spread> {
        Spread::of(self.runs_of(side).filter_map(get))
    }

    /// For a sweep: the highest rate the side passed (at the first or second attempt), if
    /// any.
    pub fn best_rate(&self, side: &str) -> Option<f64> {
        let limits = self.sweep?;
        self.runs_of(side)
            .filter(|r| passes(r, limits))
            .map(|r| r.rate)
            .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
    }
}

/// Whether a sweep step is within the limits: p99, error share, and 90% of the rate.
pub fn passes(run: &Run, limits: SweepLimits) -> bool {
    run.ok > 0
        && run.latency_us.p99 <= limits.p99_limit_ms * 1000.0
        && run.error_ratio() <= limits.max_error_ratio
        && run.achieved_rate >= 0.9 * run.rate
}

impl Report {
    /// Every repeat's scenarios, the last one (`scenarios`) last.
    pub fn repeats(&self) -> Vec<&[ScenarioResult]> {
        self.earlier_repeats
            .iter()
            .map(Vec::as_slice)
            .chain(std::iter::once(self.scenarios.as_slice()))
            .collect()
    }

    /// Writes `report.md`, `report.html` and `results.json` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = [
            ("results.json", serde_json::to_string_pretty(self)?),
            ("report.md", markdown(self)),
            ("report.html", html(self)),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads a `results.json`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}
