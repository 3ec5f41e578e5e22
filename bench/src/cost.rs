//! What each side would cost in money, from what it was measured to use: the serverless
//! side billed per request as a function platform bills (a fee per request plus
//! GB-seconds of configured memory for the billed duration), the traditional side as an
//! always-on server sized for the rate from its measured CPU per request and memory.
//! Prices come from `bench/prices.toml` (or a file given on the command line).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hours in a month, as cloud bills count them.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Seconds in such a month.
pub const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3600.0;

const BUILTIN: &str = include_str!("../prices.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// When and where the prices were read.
    pub checked: String,
    pub function: FunctionPrices,
    pub server: ServerPrices,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionPrices {
    pub source: String,
    pub per_million_requests: f64,
    pub per_gb_second: f64,
    pub memory_mb: f64,
    pub granularity_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerPrices {
    pub source: String,
    pub per_vcpu_hour: f64,
    pub per_gb_hour: f64,
    pub min_vcpu: f64,
    pub vcpu_step: f64,
    pub min_gb: f64,
    pub gb_step: f64,
    pub target_utilisation: f64,
    pub memory_headroom: f64,
}

/// The prices and the steady rate a report's cost section uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    pub prices: Prices,
    /// The steady request rate (per second) whose monthly cost the report states.
    pub monthly_rate: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            prices: Prices::builtin(),
            monthly_rate: DEFAULT_MONTHLY_RATE,
        }
    }
}

/// The rate the report prices a month at unless told otherwise: 10 req/s, 26 million
/// requests a month.
pub const DEFAULT_MONTHLY_RATE: f64 = 10.0;

impl Prices {
    /// The prices shipped in `bench/prices.toml`.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("bench/prices.toml is valid")
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Self> {
        let prices: Self = toml::from_str(text)?;
        prices.check()?;
        Ok(prices)
    }

    fn check(&self) -> anyhow::Result<()> {
        let f = &self.function;
        let s = &self.server;
        for (name, value) in [
            ("function.per_million_requests", f.per_million_requests),
            ("function.per_gb_second", f.per_gb_second),
            ("server.per_vcpu_hour", s.per_vcpu_hour),
            ("server.per_gb_hour", s.per_gb_hour),
        ] {
            anyhow::ensure!(
                value.is_finite() && value >= 0.0,
                "{name} must be a price (0 or more), got {value}"
            );
        }
        for (name, value) in [
            ("function.memory_mb", f.memory_mb),
            ("function.granularity_ms", f.granularity_ms),
            ("server.min_vcpu", s.min_vcpu),
            ("server.vcpu_step", s.vcpu_step),
            ("server.min_gb", s.min_gb),
            ("server.gb_step", s.gb_step),
            ("server.memory_headroom", s.memory_headroom),
        ] {
            anyhow::ensure!(
                value.is_finite() && value > 0.0,
                "{name} must be more than 0, got {value}"
            );
        }
        anyhow::ensure!(
            s.target_utilisation > 0.0 && s.target_utilisation <= 1.0,
            "server.target_utilisation must be in (0, 1], got {}",
            s.target_utilisation
        );
        Ok(())
    }

    /// What one request costs on the function platform when it runs `seconds`.
    pub fn function_per_request(&self, seconds: f64) -> f64 {
        let f = &self.function;
        let granule = f.granularity_ms / 1000.0;
        let billed = (seconds.max(0.0) / granule).ceil().max(1.0) * granule;
        f.per_million_requests / 1e6 + f.memory_mb / 1024.0 * billed * f.per_gb_second
    }

    /// The server that serves `rate` requests per second when each takes
    /// `cpu_seconds` of CPU and the process set holds `memory_bytes`: its size and its
    /// monthly price.
    pub fn server_for(&self, rate: f64, cpu_seconds: f64, memory_bytes: f64) -> Server {
        let s = &self.server;
        let up = |value: f64, step: f64, min: f64| ((value / step).ceil() * step).max(min);
        let vcpu = up(
            rate * cpu_seconds / s.target_utilisation,
            s.vcpu_step,
            s.min_vcpu,
        );
        let gb = up(
            memory_bytes / f64::from(1 << 30) * s.memory_headroom,
            s.gb_step,
            s.min_gb,
        );
        Server {
            vcpu,
            gb,
            monthly: (vcpu * s.per_vcpu_hour + gb * s.per_gb_hour) * HOURS_PER_MONTH,
        }
    }

    /// The lowest steady rate (requests per second) from which the always-on server
    /// costs no more per month than the function platform, searched up to 10^7 req/s;
    /// `None` if the function stays cheaper (or is free).
    pub fn break_even(&self, per_request: f64, cpu_seconds: f64, memory_bytes: f64) -> Option<f64> {
        let function = |rate: f64| rate * SECONDS_PER_MONTH * per_request;
        let server = |rate: f64| self.server_for(rate, cpu_seconds, memory_bytes).monthly;
        let cheaper = |rate: f64| server(rate) <= function(rate);
        // Walk up in 1% steps to the first rate where the server is cheaper, then narrow
        // the last step down; the server's price is a staircase, so the first crossing
        // is found within a step.
        let mut low = 1e-6;
        if cheaper(low) {
            return Some(low);
        }
        let mut high = low;
        while !cheaper(high) {
            low = high;
            high *= 1.01;
            if high > 1e7 {
                return None;
            }
        }
        for _ in 0..60 {
            let mid = (low + high) / 2.0;
            if cheaper(mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(high)
    }
}

/// What `applications` applications, each asked `rate` requests per second, cost a month.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetCost {
    /// On the function platform: billed per request, nothing while idle.
    pub function: f64,
    /// One always-on server per application, each sized for its own rate and memory.
    pub server_each: f64,
    /// All of them on one always-on host sized for their total rate and memory.
    pub one_host: f64,
}

/// How an always-on deployment of many applications is sized: CPU seconds per request,
/// memory per application (one server per application), and for one host the memory of
/// all of them (`host_bytes(applications)`).
#[derive(Debug, Clone, Copy)]
pub struct FleetShape<F: Fn(f64) -> f64> {
    pub cpu_seconds: f64,
    pub per_application_bytes: f64,
    pub host_bytes: F,
}

impl Prices {
    /// [`FleetCost`] of `applications` applications at `rate` each, a function request
    /// costing `per_request`.
    pub fn fleet<F: Fn(f64) -> f64>(
        &self,
        applications: f64,
        rate: f64,
        per_request: f64,
        shape: &FleetShape<F>,
    ) -> FleetCost {
        FleetCost {
            function: applications * rate * SECONDS_PER_MONTH * per_request,
            server_each: applications
                * self
                    .server_for(rate, shape.cpu_seconds, shape.per_application_bytes)
                    .monthly,
            one_host: self
                .server_for(
                    applications * rate,
                    shape.cpu_seconds,
                    (shape.host_bytes)(applications),
                )
                .monthly,
        }
    }

    /// The fewest applications, each at `rate`, from which one host for all of them costs
    /// no more than the function platform (searched up to 10^7); `None` if the function
    /// platform stays cheaper.
    pub fn break_even_applications<F: Fn(f64) -> f64>(
        &self,
        rate: f64,
        per_request: f64,
        shape: &FleetShape<F>,
    ) -> Option<u64> {
        let cheaper = |n: u64| {
            let cost = self.fleet(n as f64, rate, per_request, shape);
            cost.one_host <= cost.function
        };
        // The host's price is a staircase in the applications' memory: walk up in 1%
        // steps to a count where it is cheaper, then narrow down to the first one.
        let (mut low, mut high) = (0u64, 1u64);
        while !cheaper(high) {
            low = high;
            high = (high + high / 100).max(high + 1);
            if high > 10_000_000 {
                return None;
            }
        }
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if cheaper(mid) {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(high)
    }
}

/// An always-on server's size and monthly price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Server {
    pub vcpu: f64,
    pub gb: f64,
    pub monthly: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn the_shipped_prices_parse_and_bad_ones_are_refused() {
        let p = Prices::builtin();
        assert_eq!(p.function.per_million_requests, 0.20);
        let mut text = BUILTIN.replace("target_utilisation = 0.6", "target_utilisation = 1.5");
        let err = Prices::parse(&text).unwrap_err().to_string();
        assert!(err.contains("target_utilisation"), "{err}");
        text = BUILTIN.replace("per_gb_hour = 0.004445", "per_gb_hour = -1");
        let err = Prices::parse(&text).unwrap_err().to_string();
        assert!(err.contains("per_gb_hour"), "{err}");
    }

    #[test]
    fn a_function_request_is_the_fee_plus_its_billed_gb_seconds() {
        let p = Prices::builtin();
        // 0.4 ms is billed as 1 ms: 0.2 µ$ + 0.125 GB × 0.001 s × 0.0000166667 $/GB-s.
        let expected = 0.20 / 1e6 + 0.125 * 0.001 * 0.0000166667;
        assert!(close(p.function_per_request(0.0004), expected));
        assert!(close(p.function_per_request(0.001), expected));
        // 2.5 ms is billed as 3 ms.
        let expected = 0.20 / 1e6 + 0.125 * 0.003 * 0.0000166667;
        assert!(close(p.function_per_request(0.0025), expected));
    }

    #[test]
    fn the_server_is_sized_in_steps_for_the_rate() {
        let p = Prices::builtin();
        // 100 req/s × 1 ms of CPU = 0.1 core, / 0.6 = 0.167 → 0.25 vCPU; 30 MiB × 2 → 0.5 GB.
        let s = p.server_for(100.0, 0.001, 30.0 * 1048576.0);
        assert_eq!((s.vcpu, s.gb), (0.25, 0.5));
        assert!(close(s.monthly, (0.25 * 0.04048 + 0.5 * 0.004445) * 730.0));
        // 1000 req/s × 1 ms = 1 core, / 0.6 = 1.67 → 1.75 vCPU; 600 MiB × 2 → 1.5 GB.
        let s = p.server_for(1000.0, 0.001, 600.0 * 1048576.0);
        assert_eq!((s.vcpu, s.gb), (1.75, 1.5));
    }

    #[test]
    fn many_quiet_applications_cost_per_request_on_functions_and_per_server_otherwise() {
        let p = Prices::builtin();
        let per_request = p.function_per_request(0.0004);
        let shape = FleetShape {
            cpu_seconds: 0.0002,
            per_application_bytes: 6.0 * 1048576.0,
            host_bytes: |n: f64| n * 6.0 * 1048576.0,
        };
        // 1000 applications at 0.01 req/s: 26.28 M requests a month on functions.
        let cost = p.fleet(1000.0, 0.01, per_request, &shape);
        assert!(close(
            cost.function,
            1000.0 * 0.01 * SECONDS_PER_MONTH * per_request
        ));
        // Each application's own server is the smallest one: 0.25 vCPU, 0.5 GB.
        let smallest = (0.25 * 0.04048 + 0.5 * 0.004445) * 730.0;
        assert!(close(cost.server_each, 1000.0 * smallest));
        // One host: 10 req/s × 0.2 ms = 0.002 cores → 0.25 vCPU; 6000 MiB × 2 → 12 GB.
        assert!(close(
            cost.one_host,
            (0.25 * 0.04048 + 12.0 * 0.004445) * 730.0
        ));
        // The break-even count: the first n where one host is no dearer, and n - 1 is.
        let n = p
            .break_even_applications(0.1, per_request, &shape)
            .expect("at 0.1 req/s each a host wins from some count");
        let at = |n: u64| p.fleet(n as f64, 0.1, per_request, &shape);
        assert!(at(n).one_host <= at(n).function);
        assert!(at(n - 1).one_host > at(n - 1).function, "{n}");
        // At one request an hour each, the host's memory costs more than the requests.
        assert_eq!(
            p.break_even_applications(1.0 / 3600.0, per_request, &shape),
            None
        );
    }

    #[test]
    fn the_break_even_rate_is_where_the_server_stops_costing_more() {
        let p = Prices::builtin();
        let per_request = p.function_per_request(0.0004);
        // By hand: the server is 0.25 vCPU and 0.5 GB up to 600 req/s at 0.25 ms of CPU,
        // $9.010025 a month; the function costs rate × 2,628,000 × per_request a month.
        let server = (0.25 * 0.04048 + 0.5 * 0.004445) * 730.0;
        assert!(close(server, 9.010025));
        let by_hand = server / (SECONDS_PER_MONTH * per_request);
        let found = p
            .break_even(per_request, 0.00025, 30.0 * 1048576.0)
            .unwrap();
        assert!(
            (found - by_hand).abs() < 1e-6 * by_hand,
            "{found} vs {by_hand}"
        );
        assert!((by_hand - 16.966).abs() < 0.001, "{by_hand}");
        // A function that costs nothing never loses to a server.
        let mut free = p.clone();
        free.function.per_million_requests = 0.0;
        free.function.per_gb_second = 0.0;
        assert_eq!(free.break_even(0.0, 0.00025, 1.0), None);
    }
}
