//! Scenarios, read from a TOML file (`bench/scenarios.toml` is the shipped one).
//!
//! ```toml
//! [defaults]            # every scenario may override these
//! connections = 16
//! warmup = "1s"         # at the scenario's rate, left out of every figure
//! timeout = "10s"       # counted from each request's release on schedule
//! rounds = 3            # fixed-rate scenarios: A B A B A B, at least this many,
//! max_rounds = 6        # and more, up to this, until every headline ratio's rounds
//! tolerance = 0.15      # agree: (max - min) / median at most this
//!
//! [[scenario]]
//! name = "seed-hello"
//! path = "/hello/"
//! rate = 100            # requests per second
//! requests = 1000       # or: duration = "10s"
//!
//! [[scenario]]
//! name = "sweep-hello"
//! path = "/hello/"
//! rates = [500, 1000, 2000]
//! duration = "5s"       # per step
//! p99_limit = "10ms"    # a step passes with p99 at most this, errors at most
//! max_error_ratio = 0.001  # this share, and an achieved rate of 90% of the target
//!
//! [[scenario]]
//! name = "many-1000"
//! path = "/hello/"
//! applications = 1000   # the rate spread over /hello-0/ .. /hello-999/, each its own
//! zipf = 1.0            # function (serverless) or server (traditional); popularity
//! rate = 200            # of the i-th most popular 1 / i^zipf, the same draw per side
//! duration = "10s"
//!
//! [[scenario]]
//! name = "cold-start"
//! path = "/hello/"
//! cold_starts = 20      # first requests to a function not loaded, and a fresh server
//! ```                   # process's start to its first answer (`bench compare` only)

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The scenario file shipped with the repository.
pub const SHIPPED: &str = include_str!("../scenarios.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Settings,
    #[serde(rename = "scenario")]
    scenarios: Vec<Def>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    connections: Option<usize>,
    warmup: Option<String>,
    timeout: Option<String>,
    rounds: Option<u32>,
    max_rounds: Option<u32>,
    tolerance: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Def {
    name: String,
    #[serde(default)]
    description: String,
    path: String,
    method: Option<String>,
    body: Option<String>,
    rate: Option<f64>,
    requests: Option<u64>,
    duration: Option<String>,
    rates: Option<Vec<f64>>,
    p99_limit: Option<String>,
    max_error_ratio: Option<f64>,
    applications: Option<usize>,
    zipf: Option<f64>,
    cold_starts: Option<u32>,
    // The same fields as [`Settings`]: serde cannot flatten and deny unknown fields at once.
    connections: Option<usize>,
    warmup: Option<String>,
    timeout: Option<String>,
    rounds: Option<u32>,
    max_rounds: Option<u32>,
    tolerance: Option<f64>,
}

/// One scenario, validated, with defaults applied.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Path and query, the same on every side (e.g. `/hello/`).
    pub path: String,
    pub method: http::Method,
    pub body: Bytes,
    pub connections: usize,
    pub warmup: Duration,
    pub timeout: Duration,
    /// Fixed-rate scenarios: at least `rounds`, at most `max_rounds`, stopping once the
    /// headline ratios' rounds agree within `tolerance` (see `report::Stability`).
    pub rounds: u32,
    pub max_rounds: u32,
    pub tolerance: f64,
    pub shape: Shape,
    /// Requests spread over many applications instead of one (`applications`).
    pub spread: Option<Spread>,
}

/// A fixed rate spread over `applications` names derived from the scenario's function:
/// `/hello/` becomes `/hello-0/` .. `/hello-{N-1}/`, drawn with Zipf popularity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub applications: usize,
    /// The i-th most popular application gets a share proportional to `1 / i^exponent`.
    pub exponent: f64,
}

impl Spread {
    /// The request path of application `i` for the scenario path `path` (`/hello/?x=1`
    /// and 7: `/hello-7/?x=1`).
    pub fn path(path: &str, i: usize) -> String {
        let function = service_ops::traffic::function_name(path);
        Self::with_function(path, &format!("{function}-{i}"))
    }

    /// `path` with its function's name replaced by `name`.
    pub fn with_function(path: &str, name: &str) -> String {
        let function = service_ops::traffic::function_name(path);
        let rest = &path[1 + function.len()..];
        format!("/{name}{rest}")
    }

    /// Every application's path, for [`crate::load::Spread`].
    pub fn paths(&self, path: &str) -> Vec<String> {
        (0..self.applications)
            .map(|i| Self::path(path, i))
            .collect()
    }
}
#[derive(Debug, Clone)]
pub enum Shape {
    /// One constant rate, `requests` measured requests, repeated `rounds` times per side.
    Fixed { rate: f64, requests: u64 },
    /// Cold starts, measured by `bench compare` (it starts and stops the servers): the
    /// first request to `samples` functions that are not loaded on the runtime, and
    /// `samples` fresh server processes from start to first answer on every side.
    Cold { samples: u32 },
    /// Rising rates, `step` long each, until a side's step fails the limits.
    Sweep {
        rates: Vec<f64>,
        step: Duration,
        p99_limit: Duration,
        max_error_ratio: f64,
    },
}

impl Scenario {
    /// Warm-up requests at `rate`.
    pub fn warmup_requests(&self, rate: f64) -> u64 {
        (self.warmup.as_secs_f64() * rate).ceil() as u64
    }
}

fn duration(field: &str, text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text)
        .with_context(|| format!("{field} = {text:?} is not a duration like \"5s\" or \"500ms\""))
}

/// Parses and validates a scenario file. `scale` multiplies every request count and
/// duration (not warm-up), for quick runs; counts never drop below one request.
pub fn parse(text: &str, scale: f64) -> anyhow::Result<Vec<Scenario>> {
    ensure!(
        scale.is_finite() && scale > 0.0,
        "scale must be positive, got {scale}"
    );
    let file: File = toml::from_str(text).context("parsing the scenario file")?;
    ensure!(!file.scenarios.is_empty(), "the file has no [[scenario]]");
    let mut names = std::collections::HashSet::new();
    file.scenarios
        .into_iter()
        .map(|def| {
            let name = def.name.clone();
            ensure!(
                names.insert(name.clone()),
                "scenario {name:?} is defined twice"
            );
            resolve(def, &file.defaults, scale).with_context(|| format!("scenario {name:?}"))
        })
        .collect()
}

/// Reads `path`, or the shipped scenarios when `path` is `None`.
pub fn load(path: Option<&Path>, scale: f64) -> anyhow::Result<Vec<Scenario>> {
    match path {
        None => parse(SHIPPED, scale),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse(&text, scale).with_context(|| format!("in {}", path.display()))
        }
    }
}

fn resolve(def: Def, defaults: &Settings, scale: f64) -> anyhow::Result<Scenario> {
    ensure!(
        !def.name.is_empty()
            && def
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "name must be letters, digits, '-' or '_'"
    );
    ensure!(
        def.path.starts_with('/'),
        "path must start with '/', got {:?}",
        def.path
    );
    let pick = |own: &Option<String>, default: &Option<String>, fallback: &str| {
        own.clone()
            .or_else(|| default.clone())
            .unwrap_or_else(|| fallback.to_string())
    };
    let connections = def.connections.or(defaults.connections).unwrap_or(16);
    ensure!(connections >= 1, "connections must be at least 1");
    let rounds = def.rounds.or(defaults.rounds).unwrap_or(3);
    ensure!(rounds >= 1, "rounds must be at least 1");
    let max_rounds = def.max_rounds.or(defaults.max_rounds).unwrap_or(rounds);
    ensure!(
        max_rounds >= rounds,
        "max_rounds ({max_rounds}) must be at least rounds ({rounds})"
    );
    let tolerance = def
        .tolerance
        .or(defaults.tolerance)
        .unwrap_or(crate::report::figures::DEFAULT_TOLERANCE);
    ensure!(
        tolerance.is_finite() && tolerance > 0.0,
        "tolerance must be above 0, got {tolerance}"
    );
    let warmup = duration("warmup", &pick(&def.warmup, &defaults.warmup, "1s"))?;
    let timeout = duration("timeout", &pick(&def.timeout, &defaults.timeout, "10s"))?;
    let method = def.method.as_deref().unwrap_or("GET");
    let method = http::Method::from_bytes(method.as_bytes())
        .with_context(|| format!("method {method:?}"))?;
    let valid_rate = |r: f64| r.is_finite() && r > 0.0;

    let spread = match (def.applications, def.zipf) {
        (None, None) => None,
        (None, Some(_)) => bail!("zipf belongs to a scenario spread over applications"),
        (Some(applications), zipf) => {
            ensure!(
                (2..=100_000).contains(&applications),
                "applications must be 2 to 100000, got {applications}"
            );
            let function = service_ops::traffic::function_name(&def.path);
            ensure!(
                !function.is_empty() && def.path.starts_with(&format!("/{function}/")),
                "a scenario spread over applications needs a path like /hello/, got {:?}",
                def.path
            );
            let exponent = zipf.unwrap_or(1.0);
            ensure!(
                exponent.is_finite() && exponent >= 0.0,
                "zipf must be 0 (all equal) or more, got {exponent}"
            );
            ensure!(
                def.rate.is_some() && def.rates.is_none(),
                "a scenario spread over applications runs at one rate (rate = ...)"
            );
            Some(Spread {
                applications,
                exponent,
            })
        }
    };
    if let Some(samples) = def.cold_starts {
        ensure!(
            (1..=1000).contains(&samples),
            "cold_starts must be 1 to 1000, got {samples}"
        );
        ensure!(
            def.rate.is_none()
                && def.rates.is_none()
                && def.requests.is_none()
                && def.duration.is_none()
                && spread.is_none(),
            "a cold-start scenario has no rate, requests, duration or applications: \
             it sends one request per fresh start"
        );
        let samples = ((f64::from(samples) * scale).round() as u32).max(1);
        return Ok(Scenario {
            name: def.name,
            description: def.description,
            path: def.path,
            method,
            body: def.body.map(Bytes::from).unwrap_or_default(),
            connections: 1,
            warmup: Duration::ZERO,
            timeout,
            rounds: 1,
            max_rounds: 1,
            tolerance,
            shape: Shape::Cold { samples },
            spread: None,
        });
    }
    let shape = match (def.rate, def.rates) {
        (Some(rate), None) => {
            ensure!(valid_rate(rate), "rate must be positive, got {rate}");
            ensure!(
                def.p99_limit.is_none() && def.max_error_ratio.is_none(),
                "p99_limit and max_error_ratio belong to sweeps (rates = [...])"
            );
            let requests = match (def.requests, &def.duration) {
                (Some(n), None) => n,
                (None, Some(d)) => (duration("duration", d)?.as_secs_f64() * rate).round() as u64,
                _ => bail!("give exactly one of requests or duration"),
            };
            ensure!(requests >= 1, "requests must be at least 1");
            Shape::Fixed {
                rate,
                requests: ((requests as f64 * scale).round() as u64).max(1),
            }
        }
        (None, Some(rates)) => {
            ensure!(!rates.is_empty(), "rates is empty");
            ensure!(
                rates.iter().all(|&r| valid_rate(r)),
                "every rate must be positive"
            );
            ensure!(
                rates.windows(2).all(|w| w[0] < w[1]),
                "rates must rise: {rates:?}"
            );
            ensure!(
                def.requests.is_none(),
                "a sweep's steps are given by duration, not requests"
            );
            let step = duration(
                "duration",
                def.duration.as_deref().context("a sweep needs duration")?,
            )?;
            let max_error_ratio = def.max_error_ratio.unwrap_or(0.001);
            ensure!(
                (0.0..=1.0).contains(&max_error_ratio),
                "max_error_ratio must be between 0 and 1"
            );
            Shape::Sweep {
                rates,
                step: step.mul_f64(scale),
                p99_limit: duration(
                    "p99_limit",
                    def.p99_limit
                        .as_deref()
                        .context("a sweep needs p99_limit")?,
                )?,
                max_error_ratio,
            }
        }
        (Some(_), Some(_)) => bail!("give rate (one rate) or rates (a sweep), not both"),
        (None, None) => bail!("give rate (one rate) or rates (a sweep)"),
    };
    Ok(Scenario {
        name: def.name,
        description: def.description,
        path: def.path,
        method,
        body: def.body.map(Bytes::from).unwrap_or_default(),
        connections,
        warmup,
        timeout,
        rounds,
        max_rounds,
        tolerance,
        shape,
        spread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_is_valid_and_has_what_the_comparison_needs() {
        let scenarios = parse(SHIPPED, 1.0).unwrap();
        let names: Vec<_> = scenarios.iter().map(|s| s.name.as_str()).collect();
        for function in ["hello", "sleep", "hash", "memory"] {
            let seed = scenarios
                .iter()
                .find(|s| s.name == format!("seed-{function}"))
                .unwrap_or_else(|| panic!("no seed scenario for {function} in {names:?}"));
            assert!(
                matches!(seed.shape, Shape::Fixed { rate, requests: 1000 } if rate == 100.0),
                "seed-{function} is not 1000 requests 10 ms apart: {:?}",
                seed.shape
            );
        }
        assert!(
            scenarios
                .iter()
                .any(|s| matches!(s.shape, Shape::Sweep { .. })),
            "no rate sweep in {names:?}"
        );
        // The many-applications trade, both sizes, and cold starts.
        for n in [1000, 10_000] {
            assert!(
                scenarios
                    .iter()
                    .any(|s| s.spread.is_some_and(|s| s.applications == n)),
                "no scenario over {n} applications in {names:?}"
            );
        }
        assert!(
            scenarios
                .iter()
                .any(|s| matches!(s.shape, Shape::Cold { .. })),
            "no cold-start scenario in {names:?}"
        );
    }

    #[test]
    fn a_spread_names_each_application_after_the_function() {
        assert_eq!(Spread::path("/hello/", 7), "/hello-7/");
        assert_eq!(Spread::path("/hash/?rounds=10", 0), "/hash-0/?rounds=10");
        assert_eq!(Spread::with_function("/hello/x?y", "cold-3"), "/cold-3/x?y");
        let s = parse(
            "[[scenario]]\nname = \"m\"\npath = \"/hello/\"\napplications = 3\nrate = 10\nrequests = 5",
            1.0,
        )
        .unwrap();
        let spread = s[0].spread.unwrap();
        assert_eq!((spread.applications, spread.exponent), (3, 1.0));
        assert_eq!(
            spread.paths("/hello/"),
            ["/hello-0/", "/hello-1/", "/hello-2/"]
        );
        let cold = parse(
            "[[scenario]]\nname = \"c\"\npath = \"/hello/\"\ncold_starts = 20",
            0.1,
        )
        .unwrap();
        assert!(matches!(cold[0].shape, Shape::Cold { samples: 2 }));
    }

    #[test]
    fn scale_shrinks_counts_and_steps_but_not_below_one_request() {
        let text = r#"
            [[scenario]]
            name = "a"
            path = "/hello/"
            rate = 100
            duration = "10s"
            [[scenario]]
            name = "b"
            path = "/hello/"
            rates = [10, 20]
            duration = "4s"
            p99_limit = "5ms"
        "#;
        let s = parse(text, 0.001).unwrap();
        assert!(matches!(s[0].shape, Shape::Fixed { requests: 1, .. }));
        assert!(
            matches!(s[1].shape, Shape::Sweep { step, .. } if step == Duration::from_millis(4))
        );
        let s = parse(text, 1.0).unwrap();
        assert!(matches!(s[0].shape, Shape::Fixed { requests: 1000, .. }));
        assert_eq!(s[0].connections, 16);
        assert_eq!(s[0].rounds, 3);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "[[scenario]]\nname = \"x\"\npath = \"/\"\nrate = 0\nrequests = 1",
                "rate must be positive",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/\"\nrate = 1",
                "exactly one of requests or duration",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/\"\nrates = [2, 1]\nduration = \"1s\"\np99_limit = \"1ms\"",
                "rates must rise",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/\"\nrate = 1\nrequests = 1\nwarmup = \"soon\"",
                "not a duration",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/hello/\"\nzipf = 1.0\nrate = 1\nrequests = 1",
                "zipf belongs to a scenario spread over applications",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/hello/\"\napplications = 1\nrate = 1\nrequests = 1",
                "applications must be 2 to 100000",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/hello\"\napplications = 10\nrate = 1\nrequests = 1",
                "needs a path like /hello/",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/hello/\"\napplications = 10\nrates = [1, 2]\nduration = \"1s\"\np99_limit = \"1ms\"",
                "runs at one rate",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/hello/\"\ncold_starts = 5\nrate = 1",
                "a cold-start scenario has no rate",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/hello/\"\ncold_starts = 0",
                "cold_starts must be 1 to 1000",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/\"\nrate = 1\nrequests = 1\nspeed = 3",
                "unknown field",
            ),
            (
                "[[scenario]]\nname = \"x\"\npath = \"/\"\nrate = 1\nrequests = 1\n[[scenario]]\nname = \"x\"\npath = \"/\"\nrate = 1\nrequests = 1",
                "defined twice",
            ),
        ];
        for (text, want) in cases {
            let error = format!("{:#}", parse(text, 1.0).unwrap_err());
            assert!(error.contains(want), "{text:?}: {error:?} lacks {want:?}");
        }
    }
}
