//! Runs scenarios against sides, one side at a time, alternating, and collects [`Run`]s.

use crate::load::{self, LoadSpec, Progress};
use crate::report::{Run, ScenarioResult, SideInfo, SweepLimits, figures, passes};
use crate::sample::{ProcessSet, Sampler};
use crate::scenario::{Scenario, Shape};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One side of the comparison as the runner sees it.
#[derive(Debug, Clone)]
pub struct Side {
    pub info: SideInfo,
    /// Sampled from `/proc` during every run, when known (local sides).
    pub processes: Option<ProcessSet>,
    /// The service's `/metrics`, read before and after every run.
    pub metrics_url: Option<String>,
    /// The functions it serves, if not all (the peer, `wasmtime serve`, runs one
    /// component); scenarios for others skip it.
    pub serves: Option<Vec<String>>,
    /// Where this side serves many applications, for scenarios spread over them; a side
    /// without one skips those scenarios.
    pub fleet: Option<FleetTarget>,
}

/// A side's many-applications deployment: its own processes and URL.
#[derive(Debug, Clone)]
pub struct FleetTarget {
    pub url: String,
    pub processes: Option<ProcessSet>,
    pub metrics_url: Option<String>,
    /// `/{function}-0/` to `/{function}-{applications-1}/` answer.
    pub applications: usize,
}

impl Side {
    /// The side as `scenario` reaches it: itself, or for a scenario spread over
    /// applications its fleet; `Err` says why it cannot run the scenario.
    pub fn for_scenario(&self, scenario: &Scenario) -> Result<Side, String> {
        let Some(spread) = scenario.spread else {
            return if self.serves(scenario) {
                Ok(self.clone())
            } else {
                Err(format!(
                    "serves only {}",
                    self.serves.as_deref().unwrap_or_default().join(", ")
                ))
            };
        };
        if let Some(serves) = &self.serves {
            return Err(format!("it serves only {}", serves.join(", ")));
        }
        match &self.fleet {
            Some(fleet) if fleet.applications >= spread.applications => Ok(Side {
                info: SideInfo {
                    url: fleet.url.clone(),
                    ..self.info.clone()
                },
                processes: fleet.processes.clone(),
                metrics_url: fleet.metrics_url.clone(),
                serves: None,
                fleet: None,
            }),
            Some(fleet) => Err(format!(
                "its fleet holds {} applications, fewer than {}",
                fleet.applications, spread.applications
            )),
            None => Err("no fleet of applications (`bench compare` sets them up)".into()),
        }
    }

    /// Whether this side serves the function `scenario` targets.
    pub fn serves(&self, scenario: &Scenario) -> bool {
        let function = service_ops::traffic::function_name(&scenario.path);
        self.serves
            .as_ref()
            .is_none_or(|functions| functions.iter().any(|f| f == function))
    }
}

/// How runs are carried out.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Worker threads of the load generator.
    pub threads: usize,
    pub sample_interval: Duration,
    /// Quiet time between runs, so one side's after-effects do not land on the next.
    pub pause: Duration,
    pub progress: bool,
}

/// Why the runner stopped early: the signal that stopped it (`ctrl-c` or `SIGTERM`).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub &'static str);

#[derive(Debug)]
pub struct Runner {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    options: RunnerOptions,
    /// Set, with the signal's name, when a signal ends the run.
    stop: tokio::sync::watch::Receiver<Option<&'static str>>,
}

impl Runner {
    /// Builds the generator's runtime and starts watching for ctrl-c and SIGTERM (what
    /// `timeout`, `kill` and CI send): from here on either ends the current run, and the
    /// caller stops what it started and writes what it has.
    pub fn new(options: RunnerOptions) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads.max(1))
            .thread_name("bench-load")
            .on_thread_start(load::raise_priority)
            .enable_all()
            .build()
            .context("building the load generator's runtime")?;
        let (tx, stop) = tokio::sync::watch::channel(None);
        let mut terminate = runtime
            .block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            })
            .context("watching for SIGTERM")?;
        runtime.spawn(async move {
            let which = tokio::select! {
                interrupted = tokio::signal::ctrl_c() => interrupted.is_ok().then_some("ctrl-c"),
                terminated = terminate.recv() => terminated.map(|()| "SIGTERM"),
            };
            if let Some(which) = which {
                eprintln!("\n{which}: stopping after cleaning up");
                let _ = tx.send(Some(which));
            }
        });
        Ok(Self {
            runtime,
            client: localrun::examples::client(),
            options,
            stop,
        })
    }

    pub fn interrupted(&self) -> bool {
        self.stop.borrow().is_some()
    }

    /// Runs `future` on the generator's runtime (setup: deploys, health checks).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Runs one scenario on every side. On interruption the runs so far are kept in
    /// `result` and the error is [`Interrupted`].
    pub fn scenario(
        &self,
        scenario: &Scenario,
        sides: &[Side],
        result: &mut ScenarioResult,
    ) -> anyhow::Result<()> {
        let mut reached = Vec::new();
        for side in sides {
            match side.for_scenario(scenario) {
                Ok(side) => reached.push(side),
                Err(why) => {
                    if scenario.spread.is_some() {
                        eprintln!(
                            "{}: {} does not run it: {why}",
                            scenario.name, side.info.name
                        );
                        result.skipped.insert(side.info.name.clone(), why);
                    }
                }
            }
        }
        let sides: Vec<&Side> = reached.iter().collect();
        match &scenario.shape {
            Shape::Cold { .. } => anyhow::bail!(
                "a cold-start scenario starts and stops servers: only `bench compare` runs it"
            ),
            Shape::Fixed { rate, requests } => {
                // A B A B ...: at least `rounds`, then more while the headline ratios'
                // rounds disagree, up to `max_rounds`.
                let mut round = 0;
                let settled = loop {
                    for side in &sides {
                        let run = self.run(scenario, side, *rate, *requests, round)?;
                        result.runs.push(run);
                    }
                    round += 1;
                    let settled = figures::settled(result, scenario.tolerance);
                    if round >= scenario.max_rounds || (round >= scenario.rounds && settled) {
                        break settled;
                    }
                    if round >= scenario.rounds {
                        eprintln!(
                            "{}: the rounds disagree by more than {:.0}%, one more (up to {})",
                            scenario.name,
                            scenario.tolerance * 100.0,
                            scenario.max_rounds
                        );
                    }
                };
                result.stability = Some(crate::report::Stability {
                    tolerance: scenario.tolerance,
                    min_rounds: scenario.rounds,
                    max_rounds: scenario.max_rounds,
                    rounds: round,
                    settled,
                });
            }
            Shape::Sweep {
                rates,
                step,
                p99_limit,
                max_error_ratio,
            } => {
                let limits = SweepLimits {
                    p99_limit_ms: p99_limit.as_secs_f64() * 1000.0,
                    max_error_ratio: *max_error_ratio,
                };
                let mut active = sides;
                for &rate in rates {
                    let requests = ((step.as_secs_f64() * rate).round() as u64).max(1);
                    let mut still = Vec::new();
                    for side in active {
                        // One blip on a shared machine should not end a side's sweep: a
                        // step fails only when a second attempt fails too.
                        for attempt in 0..2 {
                            let run = self.run(scenario, side, rate, requests, attempt)?;
                            let passed = passes(&run, limits);
                            result.runs.push(run);
                            if passed {
                                still.push(side);
                                break;
                            }
                        }
                    }
                    active = still;
                    if active.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// One run: `requests` measured requests at `rate` against `side`.
    pub fn run(
        &self,
        scenario: &Scenario,
        side: &Side,
        rate: f64,
        requests: u64,
        round: u32,
    ) -> anyhow::Result<Run> {
        if let Some(signal) = *self.stop.borrow() {
            return Err(Interrupted(signal).into());
        }
        let url = format!("{}{}", side.info.url.trim_end_matches('/'), scenario.path);
        let spec = LoadSpec {
            url: url.parse().with_context(|| format!("URL {url:?}"))?,
            method: scenario.method.clone(),
            body: scenario.body.clone(),
            rate,
            requests,
            warmup_requests: scenario.warmup_requests(rate),
            connections: scenario.connections,
            timeout: scenario.timeout,
            spread: scenario.spread.map(|spread| {
                // The same draw for every side in a round, another one each round.
                Arc::new(load::Spread::zipf(
                    spread.paths(&scenario.path),
                    spread.exponent,
                    scenario.warmup_requests(rate) + requests,
                    u64::from(round),
                ))
            }),
        };
        let scrape_before = self.scrape(side);
        let steal_before = (Instant::now(), crate::machine::steal_seconds());
        let origin = Instant::now();
        let interval = self.options.sample_interval;
        let side_sampler = side
            .processes
            .clone()
            .map(|set| Sampler::start(set, origin, interval));
        let generator_sampler = Sampler::start(
            ProcessSet {
                pids: vec![std::process::id()],
                trees: vec![],
            },
            origin,
            interval,
        );

        let progress = Arc::new(Progress::default());
        let bar = self.bar(
            &format!(
                "{} {} r{} @{rate}/s",
                scenario.name,
                side.info.name,
                round + 1
            ),
            spec.warmup_requests + spec.requests,
        );
        let ticker = {
            let (progress, bar) = (progress.clone(), bar.clone());
            self.runtime.spawn(async move {
                loop {
                    bar.set_position(progress.done.load(Ordering::Relaxed));
                    bar.set_message(format!(
                        "errors {}",
                        progress.errors.load(Ordering::Relaxed)
                    ));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut stop = self.stop.clone();
        let outcome = self.runtime.block_on(async {
            tokio::select! {
                result = load::run(&spec, progress) => Some(result),
                _ = stop.wait_for(Option::is_some) => None,
            }
        });
        ticker.abort();
        bar.finish_and_clear();
        let steal_share = match (steal_before, crate::machine::steal_seconds()) {
            ((since, Some(before)), Some(after)) => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let elapsed = since.elapsed().as_secs_f64().max(1e-9);
                Some(((after - before) / (cpus * elapsed)).clamp(0.0, 1.0))
            }
            _ => None,
        };
        let side_samples = side_sampler.map(Sampler::finish);
        let generator_samples = generator_sampler.finish();
        let result =
            outcome.ok_or_else(|| Interrupted(self.stop.borrow().unwrap_or("a signal")))??;

        // Samples are timed from `origin`; the load's own clock started a little later.
        let shift = result.started.duration_since(origin).as_secs_f64();
        let rebase = |mut samples: Vec<crate::sample::Sample>| {
            for s in &mut samples {
                s.t -= shift;
            }
            samples
        };
        let scrape_after = self.scrape(side);
        let (counted, server_means) = match (&scrape_before, &scrape_after) {
            (Some(before), Some(after)) => (
                Some(after.sum(REQUESTS) - before.sum(REQUESTS)),
                server_means(before, after),
            ),
            _ => (None, BTreeMap::new()),
        };
        let server_latency = match (&scrape_before, &scrape_after) {
            (Some(before), Some(after)) => server_latency(before, after),
            _ => None,
        };
        let mut run = Run::new(
            crate::report::RunId {
                side: &side.info.name,
                round,
                rate,
                requests,
            },
            &result,
            side_samples.map(rebase),
            &rebase(generator_samples),
            counted,
            steal_share,
        );
        run.server_mean_seconds = server_means;
        run.server_latency_us = server_latency;
        if let (Some(before), Some(after)) = (&scrape_before, &scrape_after)
            && after.labels("runtime_build_info").is_some()
        {
            // The runtime says what it is; its counter has no series until a first load.
            run.cold_starts = Some(after.sum(COLD_STARTS) - before.sum(COLD_STARTS));
        }
        eprintln!(
            "{:<18} {:<15} round {} {:>8} req/s: achieved {:>9.1}/s  p50 {:>9}  p99 {:>9}  errors {}",
            scenario.name,
            side.info.name,
            round + 1,
            rate,
            run.achieved_rate,
            figures::micros(run.latency_us.p50),
            figures::micros(run.latency_us.p99),
            run.error_count()
        );
        std::thread::sleep(self.options.pause);
        Ok(run)
    }

    fn bar(&self, prefix: &str, len: u64) -> ProgressBar {
        if !self.options.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix.to_string());
        bar
    }

    /// What the side's own binary says it is (`runtime_build_info`): the runtime's and
    /// wasmtime's versions, by the side's name; nothing for a side that does not say.
    pub fn build_info(&self, side: &Side) -> BTreeMap<String, String> {
        let info = self
            .scrape(side)
            .and_then(|scrape| scrape.labels("runtime_build_info"))
            .unwrap_or_default();
        info.into_iter()
            .map(|(label, value)| {
                let what = if label == "version" {
                    "runtime"
                } else {
                    &label
                };
                (format!("{what} ({})", side.info.name), value)
            })
            .collect()
    }

    /// The side's `/metrics` now, if it has one that answers.
    fn scrape(&self, side: &Side) -> Option<localrun::Scrape> {
        let url = side.metrics_url.as_ref()?;
        let text = self.runtime.block_on(async {
            let response = self.client.get(url).send().await.ok()?;
            response.text().await.ok()
        })?;
        localrun::Scrape::parse(&text).ok()
    }
}

/// Requests a side's `/metrics` counted, summed over every series.
const REQUESTS: &str = "http_server_requests_total";
/// Functions the runtime loaded cold.
const COLD_STARTS: &str = "faas_coldstarts_total";

/// The duration histograms whose mean over a run the report uses: the server's own view
/// of a request, and the runtime's instantiation and guest run.
pub const SERVER_DURATIONS: &[&str] = &[
    "http_server_request_duration_seconds",
    "faas_init_duration_seconds",
    "faas_invoke_duration_seconds",
];

/// The server's own p50 and p99 request duration over what it answered between two
/// scrapes (warm-up included), from its `http_server_request_duration_seconds` buckets,
/// interpolated within a bucket as Prometheus' `histogram_quantile` does; microseconds.
pub fn server_latency(
    before: &localrun::Scrape,
    after: &localrun::Scrape,
) -> Option<crate::report::ServerLatency> {
    let family = "http_server_request_duration_seconds";
    let (a, b) = (before.buckets(family), after.buckets(family));
    let delta: Vec<(f64, f64)> = b
        .iter()
        .map(|&(bound, count)| {
            let earlier = a.iter().find(|(x, _)| *x == bound).map_or(0.0, |(_, c)| *c);
            (bound, count - earlier)
        })
        .collect();
    Some(crate::report::ServerLatency {
        p50_us: quantile(&delta, 0.5)? * 1e6,
        p99_us: quantile(&delta, 0.99)? * 1e6,
    })
}

/// `q` of cumulative `buckets` (upper bound, count), linear within the bucket it falls
/// in; the highest finite bound if it falls in `+Inf`; `None` with nothing counted.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let share = if count > lower.1 {
                (rank - lower.1) / (count - lower.1)
            } else {
                0.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// The mean of each [`SERVER_DURATIONS`] family over what happened between two scrapes
/// (every series summed), in seconds; families with nothing observed are left out.
pub fn server_means(before: &localrun::Scrape, after: &localrun::Scrape) -> BTreeMap<String, f64> {
    SERVER_DURATIONS
        .iter()
        .filter_map(|family| {
            let delta = |part: &str| {
                let name = format!("{family}_{part}");
                after.sum(&name) - before.sum(&name)
            };
            let count = delta("count");
            (count > 0.0).then(|| (family.to_string(), delta("sum") / count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_means_are_the_mean_of_what_was_observed_between_scrapes() {
        let page = |count: u64, sum: f64| {
            format!(
                "# TYPE faas_init_duration_seconds histogram\n\
                 faas_init_duration_seconds_bucket{{function=\"hello\",le=\"0.001\"}} {count}\n\
                 faas_init_duration_seconds_bucket{{function=\"hello\",le=\"+Inf\"}} {count}\n\
                 faas_init_duration_seconds_sum{{function=\"hello\"}} {sum}\n\
                 faas_init_duration_seconds_count{{function=\"hello\"}} {count}\n"
            )
        };
        let before = localrun::Scrape::parse(&page(10, 0.001)).unwrap();
        let after = localrun::Scrape::parse(&page(110, 0.005)).unwrap();
        let means = super::server_means(&before, &after);
        let init = means["faas_init_duration_seconds"];
        assert!((init - 0.000_04).abs() < 1e-12, "{init}");
        // Nothing observed: no figure, rather than 0/0.
        assert!(!means.contains_key("faas_invoke_duration_seconds"));
        assert!(super::server_means(&before, &before).is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        // 100 requests: 50 up to 1 ms, 40 more up to 2 ms, 10 more up to 5 ms.
        let buckets = [
            (0.001, 50.0),
            (0.002, 90.0),
            (0.005, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((super::quantile(&buckets, 0.5).unwrap() - 0.001).abs() < 1e-12);
        // Rank 99 is 9 of the 10 in (2, 5] ms: 2 + 3 × 0.9 = 4.7 ms.
        assert!((super::quantile(&buckets, 0.99).unwrap() - 0.0047).abs() < 1e-12);
        // In +Inf: the highest finite bound.
        let tail = [(0.001, 10.0), (f64::INFINITY, 100.0)];
        assert_eq!(super::quantile(&tail, 0.99), Some(0.001));
        assert_eq!(super::quantile(&[(f64::INFINITY, 0.0)], 0.5), None);
    }
}
