//! The figures a fixed-rate scenario reports, how each is formatted, which direction is
//! better, and the sentence that says who wins: shared by the Markdown and HTML views.

use super::{Run, ScenarioResult, Spread};

/// The two sides every ratio compares: serverless / traditional.
pub const SERVERLESS: &str = "serverless";
pub const TRADITIONAL: &str = "traditional";
/// The reference wasi:http host (`wasmtime serve`) on the same component, when measured.
pub const PEER: &str = "peer";
/// The webserver without nginx in front, when measured.
pub const DIRECT: &str = "direct";
/// The seed report's own stacks, when measured.
pub const SEED_PHP: &str = "seed-php";
pub const SEED_NODE: &str = "seed-node";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
    /// Shown, but no side "wins" on it (virtual memory is a reservation, not a cost).
    Neither,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Rate,
    Micros,
    Count,
    CpuSeconds,
    Bytes,
}

#[derive(Debug)]
pub struct Figure {
    pub name: &'static str,
    pub better: Better,
    pub unit: Unit,
    pub get: fn(&Run) -> Option<f64>,
}

pub const FIGURES: &[Figure] = &[
    Figure {
        name: "achieved rate",
        better: Better::Higher,
        unit: Unit::Rate,
        get: |r| Some(r.achieved_rate),
    },
    Figure {
        name: "latency p50",
        better: Better::Lower,
        unit: Unit::Micros,
        get: |r| (r.ok > 0).then_some(r.latency_us.p50),
    },
    Figure {
        name: "latency p90",
        better: Better::Lower,
        unit: Unit::Micros,
        get: |r| (r.ok > 0).then_some(r.latency_us.p90),
    },
    Figure {
        name: "latency p99",
        better: Better::Lower,
        unit: Unit::Micros,
        get: |r| (r.ok > 0).then_some(r.latency_us.p99),
    },
    Figure {
        name: "latency p99.9",
        better: Better::Lower,
        unit: Unit::Micros,
        get: |r| (r.ok > 0).then_some(r.latency_us.p999),
    },
    Figure {
        name: "latency max",
        better: Better::Lower,
        unit: Unit::Micros,
        get: |r| (r.ok > 0).then_some(r.latency_us.max),
    },
    Figure {
        name: "errors",
        better: Better::Lower,
        unit: Unit::Count,
        get: |r| Some(r.error_count() as f64),
    },
    Figure {
        name: "CPU seconds per 1000 requests",
        better: Better::Lower,
        unit: Unit::CpuSeconds,
        get: Run::cpu_per_1000,
    },
    Figure {
        name: "peak RSS",
        better: Better::Lower,
        unit: Unit::Bytes,
        get: |r| r.usage.map(|u| u.resident_peak_bytes as f64),
    },
    Figure {
        name: "peak PSS",
        better: Better::Lower,
        unit: Unit::Bytes,
        get: |r| {
            r.usage
                .and_then(|u| u.proportional_peak_bytes.map(|b| b as f64))
        },
    },
    Figure {
        name: "mean RSS",
        better: Better::Lower,
        unit: Unit::Bytes,
        get: |r| r.usage.map(|u| u.resident_mean_bytes as f64),
    },
    Figure {
        name: "virtual memory (peak)",
        better: Better::Neither,
        unit: Unit::Bytes,
        get: |r| r.usage.map(|u| u.virtual_peak_bytes as f64),
    },
];

/// One figure across sides: the spread over each side's rounds.
#[derive(Debug)]
pub struct Row {
    pub figure: &'static Figure,
    /// In the report's side order.
    pub sides: Vec<Option<Spread>>,
    /// Median serverless / median traditional.
    pub ratio: Option<f64>,
    pub verdict: Option<String>,
}

pub fn rows(scenario: &ScenarioResult, sides: &[String]) -> Vec<Row> {
    FIGURES
        .iter()
        .map(|figure| {
            let spread =
                |side: &str| Spread::of(scenario.runs_of(side).filter_map(|r| (figure.get)(r)));
            let (s, t) = (spread(SERVERLESS), spread(TRADITIONAL));
            let ratio = match (s, t) {
                (Some(s), Some(t)) if t.median > 0.0 => Some(s.median / t.median),
                _ => None,
            };
            Row {
                figure,
                sides: sides.iter().map(|side| spread(side)).collect(),
                ratio,
                verdict: verdict(figure, s, t),
            }
        })
        .collect()
}

/// "latency p99: traditional wins, 2.1× lower (85 µs against 180 µs)."
fn verdict(figure: &Figure, s: Option<Spread>, t: Option<Spread>) -> Option<String> {
    let (s, t) = (s?.median, t?.median);
    let name = figure.name;
    if figure.unit == Unit::Count {
        return Some(match (s as u64, t as u64) {
            (0, 0) => format!("{name}: none on either side."),
            (s, t) => format!("{name}: {s} serverless, {t} traditional (median per round)."),
        });
    }
    let values = format!(
        "{} against {}",
        format(figure.unit, s),
        format(figure.unit, t)
    );
    let sentence = match figure.better {
        Better::Neither => format!("{name}: serverless {values} traditional."),
        _ if s <= 0.0 || t <= 0.0 => format!("{name}: serverless {values} traditional."),
        better => {
            let (low, high) = if s < t { (s, t) } else { (t, s) };
            let factor = high / low;
            if factor < 1.05 {
                format!("{name}: even ({values}).")
            } else {
                let serverless_lower = s < t;
                let winner = if serverless_lower == (better == Better::Lower) {
                    SERVERLESS
                } else {
                    TRADITIONAL
                };
                let word = if better == Better::Lower {
                    "lower"
                } else {
                    "higher"
                };
                let (first, second) = if winner == SERVERLESS { (s, t) } else { (t, s) };
                format!(
                    "{name}: {winner} wins, {factor:.1}× {word} ({} against {}).",
                    format(figure.unit, first),
                    format(figure.unit, second)
                )
            }
        }
    };
    Some(sentence)
}

pub fn format(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate => format!("{v:.1} req/s"),
        Unit::Micros => micros(v),
        Unit::Count => format!("{v:.0}"),
        Unit::CpuSeconds => format!("{v:.3} s"),
        Unit::Bytes => bytes(v),
    }
}

pub fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// "median (min–max)", or just the median when every round agreed or there was one.
pub fn spread(unit: Unit, s: &Spread) -> String {
    let median = format(unit, s.median);
    let (min, max) = (format(unit, s.min), format(unit, s.max));
    if min == max {
        median
    } else {
        format!("{median} ({min} – {max})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(v: f64) -> Option<Spread> {
        Spread::of([v])
    }

    fn figure(name: &str) -> &'static Figure {
        FIGURES.iter().find(|f| f.name == name).unwrap()
    }

    #[test]
    fn verdicts_name_the_winner_and_the_factor() {
        let p99 = figure("latency p99");
        assert_eq!(
            verdict(p99, spread(300.0), spread(100.0)).unwrap(),
            "latency p99: traditional wins, 3.0× lower (100 µs against 300 µs)."
        );
        assert_eq!(
            verdict(p99, spread(100.0), spread(250.0)).unwrap(),
            "latency p99: serverless wins, 2.5× lower (100 µs against 250 µs)."
        );
        assert_eq!(
            verdict(p99, spread(100.0), spread(102.0)).unwrap(),
            "latency p99: even (100 µs against 102 µs)."
        );
        let vm = figure("virtual memory (peak)");
        assert!(
            !verdict(vm, spread(8e12), spread(1e8))
                .unwrap()
                .contains("wins")
        );
        let errors = figure("errors");
        assert_eq!(
            verdict(errors, spread(0.0), spread(0.0)).unwrap(),
            "errors: none on either side."
        );
        assert!(verdict(p99, None, spread(1.0)).is_none());
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(micros(85.0), "85 µs");
        assert_eq!(micros(1500.0), "1.50 ms");
        assert_eq!(micros(2_500_000.0), "2.50 s");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(30.5 * 1024.0 * 1024.0), "30.5 MiB");
        assert_eq!(bytes(8.0 * 1024f64.powi(4)), "8.0 TiB");
    }
}
