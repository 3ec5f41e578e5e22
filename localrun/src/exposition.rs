//! Reading a Prometheus text exposition the way Prometheus does, not by matching lines:
//! label order, spacing and comments do not matter. Tests and bench read `/metrics`
//! through this.

use std::collections::HashMap;

/// One scrape of a `/metrics` page.
#[derive(Debug, Clone)]
pub struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Ok(Self(prometheus_parse::Scrape::parse(lines)?))
    }

    /// The value of the sample of metric `name` whose labels are exactly `labels`
    /// (`_bucket`, `_sum` and `_count` series of a histogram are metrics of their own).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .find(|(sample_labels, _)| {
                sample_labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| sample_labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, value)| value)
    }

    /// The sum of every sample of metric `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples(name).map(|(_, value)| value).sum()
    }

    /// Histogram `family`'s cumulative bucket counts summed over every series, by upper
    /// bound (`+Inf` last), in bound order.
    pub fn buckets(&self, family: &str) -> Vec<(f64, f64)> {
        let mut by_bound: Vec<(f64, f64)> = Vec::new();
        for s in self.0.samples.iter().filter(|s| s.metric == family) {
            let prometheus_parse::Value::Histogram(buckets) = &s.value else {
                continue;
            };
            for bucket in buckets {
                match by_bound.iter_mut().find(|(b, _)| *b == bucket.less_than) {
                    Some((_, total)) => *total += bucket.count,
                    None => by_bound.push((bucket.less_than, bucket.count)),
                }
            }
        }
        by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_bound
    }

    /// The labels of the first sample of metric `name` (an info metric's payload).
    pub fn labels(&self, name: &str) -> Option<HashMap<String, String>> {
        self.samples(name).next().map(|(labels, _)| labels)
    }

    /// Every sample of metric `name` with its labels. The parser folds a histogram's
    /// `_bucket` lines into one value; they come back out here as `NAME_bucket` samples
    /// with their `le` label (`+Inf`, or the bound as Rust prints it).
    fn samples(&self, name: &str) -> impl Iterator<Item = (HashMap<String, String>, f64)> {
        use prometheus_parse::Value;
        let mut found = Vec::new();
        for s in &self.0.samples {
            match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) if s.metric == name => {
                    found.push(((*s.labels).clone(), *v));
                }
                Value::Histogram(buckets)
                    if name.strip_suffix("_bucket") == Some(s.metric.as_str()) =>
                {
                    for bucket in buckets {
                        let mut labels = (*s.labels).clone();
                        let le = if bucket.less_than.is_infinite() {
                            "+Inf".to_string()
                        } else {
                            bucket.less_than.to_string()
                        };
                        labels.insert("le".into(), le);
                        found.push((labels, bucket.count));
                    }
                }
                _ => {}
            }
        }
        found.into_iter()
    }
}

/// The value of the sample `series`, written as in PromQL without operators:
/// `name` or `name{label="value",...}` (every label of the sample, in any order).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = parse_selector(series);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Scrape::parse(text).ok()?.value(name, &labels)
}

/// `name{a="x",b="y"}` → (`name`, [(a, x), (b, y)]). Panics on a malformed selector: it is
/// written by a test.
fn parse_selector(series: &str) -> (&str, Vec<(&str, String)>) {
    let Some((name, rest)) = series.split_once('{') else {
        return (series.trim(), Vec::new());
    };
    let body = rest
        .trim_end()
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("unclosed labels in {series:?}"));
    let mut labels = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("expected label=\"value\" in {series:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {series:?}"),
            }
        };
        labels.push((key.trim().trim_start_matches(','), value));
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    (name.trim(), labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_total Things.
# TYPE x_total counter
x_total{b="2",a="1"} 3
x_total{a="1"} 4
# TYPE d histogram
d_bucket{f="h",le="0.1"} 1
d_bucket{f="h",le="+Inf"} 2
d_sum{f="h"} 0.5
d_count{f="h"} 2
plain 7
"#;

    #[test]
    fn samples_are_found_by_name_and_exact_labels_in_any_order() {
        assert_eq!(sample(TEXT, r#"x_total{a="1",b="2"}"#), Some(3.0));
        assert_eq!(sample(TEXT, r#"x_total{ b="2", a="1" }"#), Some(3.0));
        assert_eq!(sample(TEXT, r#"x_total{a="1"}"#), Some(4.0));
        assert_eq!(sample(TEXT, r#"x_total{a="2"}"#), None);
        assert_eq!(sample(TEXT, "x_total"), None, "labels must match exactly");
        assert_eq!(sample(TEXT, r#"d_count{f="h"}"#), Some(2.0));
        assert_eq!(sample(TEXT, r#"d_bucket{le="+Inf",f="h"}"#), Some(2.0));
        assert_eq!(sample(TEXT, r#"d_bucket{f="h",le="0.1"}"#), Some(1.0));
        assert_eq!(sample(TEXT, "plain"), Some(7.0));
        let scrape = Scrape::parse(TEXT).unwrap();
        assert_eq!(scrape.sum("x_total"), 7.0);
        assert_eq!(scrape.labels("plain"), Some(HashMap::new()));
    }
}
