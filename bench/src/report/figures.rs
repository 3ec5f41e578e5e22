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
/// A second runtime serving the same handlers built for WASI 0.1 (WAGI), when measured.
pub const SERVERLESS_WAGI: &str = "serverless-wagi";
/// The seed report's own stacks, when measured.
/// A runtime serving the example functions written in JavaScript (componentize-js).
pub const SERVERLESS_JS: &str = "serverless-js";
/// A runtime serving the example functions written in Python (componentize-py).
pub const SERVERLESS_PYTHON: &str = "serverless-python";
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

/// Functions loaded cold during a run, as the runtime counts them.
pub const COLD_STARTS: &str = "cold starts (the server's count)";

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
        name: COLD_STARTS,
        better: Better::Neither,
        unit: Unit::Count,
        get: |r| r.cold_starts,
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
    /// The ratio round by round (serverless run k / traditional run k), when there are two
    /// rounds or more.
    pub round_ratios: Option<Spread>,
    /// The rounds' ratios differ by more than the scenario's tolerance.
    pub noisy: bool,
    pub verdict: Option<String>,
}

/// The figures whose serverless / traditional ratio decides when a scenario has had
/// enough rounds (and that the summary shows).
pub const HEADLINE: &[&str] = &[
    "latency p50",
    "latency p99",
    "CPU seconds per 1000 requests",
];

/// How far apart a ratio's rounds may be, (max - min) / median, before it is noisy,
/// unless the scenario says.
pub const DEFAULT_TOLERANCE: f64 = 0.15;

/// One repeat's ratio for `figure`: median serverless over median traditional.
pub fn median_ratio(scenario: &ScenarioResult, figure: &Figure) -> Option<f64> {
    let median = |side: &str| scenario.spread_of(side, figure.get);
    let (s, t) = (median(SERVERLESS)?, median(TRADITIONAL)?);
    (t.median > 0.0).then(|| s.median / t.median)
}

/// For `--repeat`: each fixed-rate scenario's headline ratios, repeat by repeat, their
/// range, and whether they held within `tolerance` of each other.
pub fn repeats_table(repeats: &[&[ScenarioResult]], tolerance: f64) -> Option<super::view::Table> {
    if repeats.len() < 2 {
        return None;
    }
    let mut header = vec!["scenario".to_string(), "ratio".into()];
    header.extend((1..=repeats.len()).map(|i| format!("repeat {i}")));
    header.extend(["range".to_string(), "spread".into()]);
    let mut rows = Vec::new();
    for scenario in repeats.last()?.iter().filter(|s| s.sweep.is_none()) {
        for name in HEADLINE {
            let figure = FIGURES.iter().find(|f| f.name == *name).expect("a figure");
            let ratios: Vec<Option<f64>> = repeats
                .iter()
                .map(|r| {
                    r.iter()
                        .find(|s| s.name == scenario.name)
                        .and_then(|s| median_ratio(s, figure))
                })
                .collect();
            let known: Vec<f64> = ratios.iter().flatten().copied().collect();
            let Some(range) = Spread::of(known.iter().copied()) else {
                continue;
            };
            let spread = relative_spread(&known);
            let mut row = vec![scenario.name.clone(), format!("{name} S / T")];
            row.extend(
                ratios
                    .iter()
                    .map(|r| r.map_or("–".to_string(), |r| format!("{r:.2}×"))),
            );
            row.push(format!("{:.2}–{:.2}×", range.min, range.max));
            row.push(spread.map_or("–".to_string(), |s| {
                let word = if s > tolerance { "moved" } else { "held" };
                format!("{:.0}% ({word})", s * 100.0)
            }));
            rows.push(row);
        }
    }
    Some(super::view::Table { header, rows })
}

/// `figure`'s serverless / traditional ratio in each round both sides have it.
pub fn round_ratios(scenario: &ScenarioResult, figure: &Figure) -> Vec<f64> {
    let mut ratios = Vec::new();
    for s in scenario.runs_of(SERVERLESS) {
        let t = scenario.runs_of(TRADITIONAL).find(|t| t.round == s.round);
        if let (Some(sv), Some(tv)) = ((figure.get)(s), t.and_then(|t| (figure.get)(t)))
            && tv > 0.0
            && sv.is_finite()
        {
            ratios.push(sv / tv);
        }
    }
    ratios
}

/// (max - min) / median of the ratios; `None` below two.
pub fn relative_spread(ratios: &[f64]) -> Option<f64> {
    if ratios.len() < 2 {
        return None;
    }
    let spread = Spread::of(ratios.iter().copied())?;
    (spread.median > 0.0).then(|| (spread.max - spread.min) / spread.median)
}

/// Whether every headline ratio's rounds agree within `tolerance` (figures a scenario
/// does not have, such as CPU without process sampling, are left out).
pub fn settled(scenario: &ScenarioResult, tolerance: f64) -> bool {
    HEADLINE.iter().all(|name| {
        let figure = FIGURES.iter().find(|f| f.name == *name).expect("a figure");
        relative_spread(&round_ratios(scenario, figure)).is_none_or(|s| s <= tolerance)
    })
}

pub fn rows(scenario: &ScenarioResult, sides: &[String]) -> Vec<Row> {
    FIGURES
        .iter()
        .map(|figure| {
            let spread = |side: &str| scenario.spread_of(side, figure.get);
            let (s, t) = (spread(SERVERLESS), spread(TRADITIONAL));
            let ratio = match (s, t) {
                (Some(s), Some(t)) if t.median > 0.0 => Some(s.median / t.median),
                _ => None,
            };
            let per_round = round_ratios(scenario, figure);
            let tolerance = scenario
                .stability
                .map_or(DEFAULT_TOLERANCE, |s| s.tolerance);
            let noisy = figure.better != Better::Neither
                && figure.unit != Unit::Count
                && relative_spread(&per_round).is_some_and(|s| s > tolerance);
            let round_ratios = (per_round.len() >= 2)
                .then(|| Spread::of(per_round.iter().copied()))
                .flatten();
            Row {
                figure,
                sides: sides.iter().map(|side| spread(side)).collect(),
                ratio,
                round_ratios,
                noisy,
                verdict: verdict(figure, s, t, round_ratios, noisy, tolerance),
            }
        })
        .collect()
}

/// The ratio as the tables print it: "1.34×", or its rounds' range when they disagree
/// beyond the tolerance: "1.21–1.62× noisy".
pub fn ratio_text(row: &Row) -> Option<String> {
    match (row.noisy, row.round_ratios, row.ratio) {
        (true, Some(r), _) => Some(format!("{:.2}–{:.2}× noisy", r.min, r.max)),
        (_, _, Some(r)) => Some(format!("{r:.2}×")),
        _ => None,
    }
}

/// "latency p99: traditional wins, 2.1× lower (85 µs against 180 µs)." Only where every
/// round agrees on the winner, and with one factor only where the rounds' ratios agree
/// within the tolerance.
fn verdict(
    figure: &Figure,
    s: Option<Spread>,
    t: Option<Spread>,
    rounds: Option<Spread>,
    noisy: bool,
    tolerance: f64,
) -> Option<String> {
    let (s, t) = (s?.median, t?.median);
    let name = figure.name;
    if figure.unit != Unit::Count
        && figure.better != Better::Neither
        && let Some(r) = rounds
    {
        // Within 5% either way is even; a round on each side of that is no verdict.
        if r.min < 1.0 / 1.05 && r.max > 1.05 {
            return Some(format!(
                "{name}: no verdict, the rounds disagree on the winner (serverless / \
                     traditional from {:.2}× to {:.2}×).",
                r.min, r.max
            ));
        }
        if noisy {
            let lower = r.median < 1.0;
            let word = match (figure.better, lower) {
                (Better::Lower, true) | (Better::Higher, false) => SERVERLESS,
                _ => TRADITIONAL,
            };
            let how = if r.max < 1.0 || r.min > 1.0 {
                "ahead in every round"
            } else {
                "ahead or even in every round"
            };
            return Some(format!(
                "{name}: {word} {how}, by a factor that moved more than {:.0}% between \
                     rounds (serverless / traditional from {:.2}× to {:.2}×): noisy, no single factor.",
                tolerance * 100.0,
                r.min,
                r.max
            ));
        }
    }
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
            verdict(
                p99,
                spread(300.0),
                spread(100.0),
                None,
                false,
                DEFAULT_TOLERANCE
            )
            .unwrap(),
            "latency p99: traditional wins, 3.0× lower (100 µs against 300 µs)."
        );
        assert_eq!(
            verdict(
                p99,
                spread(100.0),
                spread(250.0),
                None,
                false,
                DEFAULT_TOLERANCE
            )
            .unwrap(),
            "latency p99: serverless wins, 2.5× lower (100 µs against 250 µs)."
        );
        assert_eq!(
            verdict(
                p99,
                spread(100.0),
                spread(102.0),
                None,
                false,
                DEFAULT_TOLERANCE
            )
            .unwrap(),
            "latency p99: even (100 µs against 102 µs)."
        );
        let vm = figure("virtual memory (peak)");
        assert!(
            !verdict(
                vm,
                spread(8e12),
                spread(1e8),
                None,
                false,
                DEFAULT_TOLERANCE
            )
            .unwrap()
            .contains("wins")
        );
        let errors = figure("errors");
        assert_eq!(
            verdict(
                errors,
                spread(0.0),
                spread(0.0),
                None,
                false,
                DEFAULT_TOLERANCE
            )
            .unwrap(),
            "errors: none on either side."
        );
        assert!(verdict(p99, None, spread(1.0), None, false, DEFAULT_TOLERANCE).is_none());
    }

    #[test]
    fn rounds_that_disagree_get_no_verdict_and_noisy_ones_no_single_factor() {
        let p50 = figure("latency p50");
        let rounds = |values: &[f64]| Spread::of(values.iter().copied());
        // One round serverless is 1.3× slower, another 0.8×: no verdict at all.
        let v = verdict(
            p50,
            spread(110.0),
            spread(100.0),
            rounds(&[1.3, 0.8, 1.1]),
            true,
            0.15,
        )
        .unwrap();
        assert!(v.contains("no verdict") && !v.contains("wins"), "{v}");
        // Always slower, but by 1.2× to 1.8×: who, and the range, but no "wins by N×".
        let v = verdict(
            p50,
            spread(150.0),
            spread(100.0),
            rounds(&[1.2, 1.5, 1.8]),
            true,
            0.15,
        )
        .unwrap();
        assert!(
            v.starts_with("latency p50: traditional ahead in every round"),
            "{v}"
        );
        assert!(v.contains("1.20× to 1.80×") && !v.contains("wins"), "{v}");
        // Rounds that agree: the usual sentence.
        let v = verdict(
            p50,
            spread(150.0),
            spread(100.0),
            rounds(&[1.45, 1.5, 1.55]),
            false,
            0.15,
        )
        .unwrap();
        assert!(v.contains("traditional wins, 1.5× lower"), "{v}");
    }

    #[test]
    fn round_ratios_pair_the_sides_round_by_round_and_settle_within_the_tolerance() {
        let run = |side: &str, round: u32, p50: f64| {
            let mut r: super::super::Run = serde_json::from_value(serde_json::json!({
                "side": side, "round": round, "rate": 100.0, "requests": 10, "ok": 10,
                "errors": {}, "achieved_rate": 100.0, "window_seconds": 0.1,
                "latency_us": {"p50": p50, "p90": p50, "p99": p50, "p999": p50, "max": p50, "mean": p50},
                "send_lag_us": {"p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0, "mean": 0},
                "schedule_lag_us": {"p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0, "mean": 0},
                "latency_curve": [], "latency_histogram": "", "usage": null,
                "generator_usage": null, "timeline": [], "server_counted": null,
                "measure_start_seconds": 0.0
            }))
            .unwrap();
            r.round = round;
            r
        };
        let mut scenario: ScenarioResult = serde_json::from_value(serde_json::json!({
            "name": "s", "description": "", "method": "GET", "path": "/hello/",
            "connections": 1, "warmup_seconds": 0.0, "timeout_seconds": 1.0,
            "sweep": null, "runs": []
        }))
        .unwrap();
        scenario.runs = vec![
            run(SERVERLESS, 0, 200.0),
            run(TRADITIONAL, 0, 100.0),
            run(SERVERLESS, 1, 210.0),
            run(TRADITIONAL, 1, 100.0),
        ];
        let ratios = round_ratios(&scenario, figure("latency p50"));
        assert_eq!(ratios, vec![2.0, 2.1]);
        assert!(settled(&scenario, 0.15));
        scenario.runs.push(run(SERVERLESS, 2, 400.0));
        scenario.runs.push(run(TRADITIONAL, 2, 100.0));
        assert!(!settled(&scenario, 0.15));
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
