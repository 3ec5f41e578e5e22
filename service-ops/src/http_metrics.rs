use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use std::time::Duration;

/// Request-duration buckets, 50 µs to 10 s. The seed's 0.1–5 s buckets put every
/// sub-millisecond request in the first bucket; these resolve a microsecond handler and
/// a multi-second sleep alike.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The HTTP metrics both sides expose under the same names. Which side a series comes
/// from is the scrape's `job` label, not a label added here.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    connections: IntCounter,
}

impl HttpMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let labels = &["function", "method", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "http_server_requests_total",
                "HTTP requests answered, by function, method and status.",
            ),
            labels,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_server_request_duration_seconds",
                "Time from request received to response headers ready, by function, method and status.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "http_server_requests_in_flight",
                "Requests being handled right now, by function.",
            ),
            &["function"],
        )?;
        let connections = IntCounter::new(
            "http_server_connections_total",
            "TCP connections accepted on the traffic listener.",
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            requests,
            duration,
            in_flight,
            connections,
        })
    }

    /// The accepted-connections counter, for [`crate::ServeConfig::connections`].
    pub fn connections(&self) -> IntCounter {
        self.connections.clone()
    }

    /// Counts one finished request.
    pub fn observe(&self, function: &str, method: &http::Method, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [function, method_label(method), status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Drops every series of `function` (a deleted function's figures would otherwise
    /// be exported for as long as the process lives). Rare, so it walks the series.
    pub fn forget_function(&self, function: &str) {
        use prometheus::core::Collector;
        for family in self.requests.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                };
                if label("function").as_deref() != Some(function) {
                    continue;
                }
                let (Some(method), Some(status)) = (label("method"), label("status")) else {
                    continue;
                };
                let values = [function, method.as_str(), status.as_str()];
                let _ = self.requests.remove_label_values(&values);
                let _ = self.duration.remove_label_values(&values);
            }
        }
        let _ = self.in_flight.remove_label_values(&[function]);
    }

    /// Marks a request in flight until the guard drops (also when the request future is
    /// cancelled because the client went away).
    pub fn in_flight(&self, function: &str) -> InFlight {
        let gauge = self.in_flight.with_label_values(&[function]);
        gauge.inc();
        InFlight(gauge)
    }
}

/// Keeps `http_server_requests_in_flight` raised while alive.
#[derive(Debug)]
pub struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a bounded label value: extension methods all count as `OTHER`.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::{Metric, MetricFamily};

    /// The series of family `name` whose labels are exactly `labels`, from the registry's
    /// own structured view (no text to match).
    fn series<'a>(families: &'a [MetricFamily], name: &str, labels: &[(&str, &str)]) -> &'a Metric {
        let family = families.iter().find(|f| f.name() == name).expect(name);
        family
            .get_metric()
            .iter()
            .find(|m| {
                let have: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                have.len() == labels.len() && labels.iter().all(|l| have.contains(l))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
    }

    #[test]
    fn observes_with_bounded_labels() {
        let registry = Registry::new();
        let m = HttpMetrics::new(&registry).unwrap();
        {
            let _g = m.in_flight("hello");
            assert_eq!(
                series(
                    &registry.gather(),
                    "http_server_requests_in_flight",
                    &[("function", "hello")]
                )
                .get_gauge()
                .get_value(),
                1.0
            );
            m.observe(
                "hello",
                &http::Method::from_bytes(b"BREW").unwrap(),
                418,
                Duration::from_micros(70),
            );
        }
        let families = registry.gather();
        let labels = [
            ("function", "hello"),
            ("method", "OTHER"),
            ("status", "418"),
        ];
        assert_eq!(
            series(&families, "http_server_requests_total", &labels)
                .get_counter()
                .get_value(),
            1.0
        );
        // 70 µs lands above the 50 µs bucket and inside the 100 µs one.
        let histogram =
            series(&families, "http_server_request_duration_seconds", &labels).get_histogram();
        let count_at = |bound: f64| {
            histogram
                .get_bucket()
                .iter()
                .find(|b| b.upper_bound() == bound)
                .map(|b| b.cumulative_count())
        };
        assert_eq!(count_at(0.000_05), Some(0));
        assert_eq!(count_at(0.000_1), Some(1));
        assert_eq!(
            series(
                &families,
                "http_server_requests_in_flight",
                &[("function", "hello")]
            )
            .get_gauge()
            .get_value(),
            0.0
        );
    }

    #[test]
    fn forgetting_a_function_drops_its_series_only() {
        let registry = Registry::new();
        let m = HttpMetrics::new(&registry).unwrap();
        for (function, status) in [("gone", 200), ("gone", 500), ("kept", 200)] {
            drop(m.in_flight(function));
            m.observe(
                function,
                &http::Method::GET,
                status,
                Duration::from_millis(1),
            );
        }
        m.forget_function("gone");
        let functions: Vec<String> = registry
            .gather()
            .iter()
            .flat_map(|f| f.get_metric().iter())
            .flat_map(|m| m.get_label().iter())
            .filter(|l| l.name() == "function")
            .map(|l| l.value().to_string())
            .collect();
        assert!(!functions.is_empty());
        assert!(functions.iter().all(|f| f == "kept"), "{functions:?}");
    }
}
