//! `report.html`: the same tables as the Markdown report plus charts (latency percentile
//! curves, latency against rate for sweeps, RSS and CPU over time), in one file with no
//! external references.

use super::figures::{self, SERVERLESS, TRADITIONAL};
use super::markdown::VIRTUAL_MEMORY_NOTE;
use super::svg::{Chart, Scale, Series, escape};
use super::{Report, Run, ScenarioResult, decode, passes};
use std::fmt::Write;

const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

fn color(report: &Report, side: &str) -> &'static str {
    let i = report
        .sides
        .iter()
        .position(|s| s.name == side)
        .unwrap_or(0);
    COLORS[i % COLORS.len()]
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}.note{background:#fff8e1;padding:8px 12px;border-left:4px solid #f0b400}\
.charts{display:flex;flex-wrap:wrap;gap:8px}svg{max-width:100%;height:auto}";

pub fn html(report: &Report) -> String {
    let sides: Vec<String> = report.sides.iter().map(|s| s.name.clone()).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Serverless vs server: bench report</title><style>{STYLE}</style></head><body>"
    );
    let meta = &report.meta;
    let _ = write!(
        out,
        "<h1>Serverless vs server: bench report</h1><p>Run from {} to {} (UTC).{}</p>",
        escape(&meta.started),
        escape(&meta.finished),
        meta.interrupted
            .as_ref()
            .map(|why| format!(" <strong>Incomplete: {}.</strong>", escape(why)))
            .unwrap_or_default()
    );
    out.push_str("<table><tr><th>side</th><th>what</th><th>URL</th></tr>");
    for side in &report.sides {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&side.name),
            escape(&side.description),
            escape(&side.url)
        );
    }
    out.push_str("</table>");
    let _ = write!(
        out,
        "<p>Figures are medians over rounds, range in brackets. Latency counts from the \
         moment each request was due and released, whether or not a connection was free \
         (open loop), and covers successful requests; errors are counted apart. S / T = serverless / traditional.</p><p class=\"note\">{}</p>",
        escape(VIRTUAL_MEMORY_NOTE)
    );

    for scenario in &report.scenarios {
        let _ = write!(out, "<h2>{}</h2>", escape(&scenario.name));
        if !scenario.description.is_empty() {
            let _ = write!(out, "<p>{}</p>", escape(&scenario.description));
        }
        let _ = write!(
            out,
            "<p><code>{} {}</code>, {} connections.</p>",
            escape(&scenario.method),
            escape(&scenario.path),
            scenario.connections
        );
        if scenario.sweep.is_some() {
            sweep(&mut out, report, scenario, &sides);
        } else {
            fixed(&mut out, report, scenario, &sides);
        }
    }

    out.push_str("<h2>Machine and versions</h2><table>");
    for map in [&meta.machine, &meta.versions, &meta.settings] {
        for (key, value) in map {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(key),
                escape(value)
            );
        }
    }
    out.push_str("</table></body></html>\n");
    out
}

fn fixed(out: &mut String, report: &Report, scenario: &ScenarioResult, sides: &[String]) {
    let rows = figures::rows(scenario, sides);
    out.push_str("<table><tr><th>figure</th>");
    for side in sides {
        let _ = write!(out, "<th>{}</th>", escape(side));
    }
    out.push_str("<th>S / T</th></tr>");
    for row in &rows {
        let _ = write!(out, "<tr><td>{}</td>", escape(row.figure.name));
        for side in &row.sides {
            let cell = side
                .as_ref()
                .map_or("–".to_string(), |s| figures::spread(row.figure.unit, s));
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        let ratio = row.ratio.map_or("–".to_string(), |r| format!("{r:.2}×"));
        let _ = write!(out, "<td>{ratio}</td></tr>");
    }
    out.push_str("</table><ul>");
    for verdict in rows.iter().filter_map(|r| r.verdict.as_ref()) {
        let _ = write!(out, "<li>{}</li>", escape(verdict));
    }
    out.push_str("</ul><div class=\"charts\">");
    out.push_str(&percentile_chart(report, scenario, sides).render());
    let first_round = |side: &str| scenario.runs_of(side).next().cloned();
    let runs: Vec<Run> = sides.iter().filter_map(|s| first_round(s)).collect();
    out.push_str(&timeline_chart(report, scenario, &runs, Timeline::Rss).render());
    out.push_str(&timeline_chart(report, scenario, &runs, Timeline::Cpu).render());
    out.push_str("</div>");
}

/// Percentile p maps to -log10(1 - p): 90% → 1, 99% → 2, 99.9% → 3, so the tail gets room.
fn tail(p: f64) -> f64 {
    -(1.0 - p / 100.0).log10()
}

fn percentile_chart(report: &Report, scenario: &ScenarioResult, sides: &[String]) -> Chart {
    let series = sides
        .iter()
        .filter_map(|side| {
            // All rounds together: the distribution the side gave over the whole scenario.
            let mut merged = crate::load::histogram();
            for run in scenario.runs_of(side) {
                if let Ok(h) = decode(&run.latency_histogram) {
                    let _ = merged.add(&h);
                }
            }
            if merged.is_empty() {
                return None;
            }
            let points = merged
                .iter_quantiles(4)
                .map(|v| {
                    (
                        v.quantile_iterated_to() * 100.0,
                        v.value_iterated_to() as f64,
                    )
                })
                .filter(|(p, _)| *p < 100.0)
                .map(|(p, v)| (tail(p), v))
                .collect();
            Some(Series {
                name: side.clone(),
                color: color(report, side),
                dashed: false,
                points,
            })
        })
        .collect();
    Chart {
        title: format!("{}: latency by percentile", scenario.name),
        x_label: "percentile".into(),
        y_label: "latency".into(),
        // The x values are already -log10(1 - p): a linear axis over them.
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        x_ticks: Some(
            [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
                .iter()
                .map(|&p| (tail(p), format!("{p}%")))
                .collect(),
        ),
        x_format: |v| format!("{v}"),
        y_format: figures::micros,
        y_from_zero: false,
        series,
    }
}

#[derive(Clone, Copy)]
enum Timeline {
    Rss,
    Cpu,
}

fn timeline_chart(
    report: &Report,
    scenario: &ScenarioResult,
    runs: &[Run],
    what: Timeline,
) -> Chart {
    let series = runs
        .iter()
        .map(|run| {
            let origin = run.measure_start_seconds;
            let points = match what {
                Timeline::Rss => run
                    .timeline
                    .iter()
                    .map(|s| (s.t - origin, s.resident_bytes as f64 / (1024.0 * 1024.0)))
                    .collect(),
                Timeline::Cpu => cpu_rate(&run.timeline)
                    .into_iter()
                    .map(|(t, cores)| (t - origin, cores))
                    .collect(),
            };
            Series {
                name: format!("{} (round {})", run.side, run.round + 1),
                color: color(report, &run.side),
                dashed: false,
                points,
            }
        })
        .collect();
    let (title, y_label, y_format): (&str, &str, fn(f64) -> String) = match what {
        Timeline::Rss => ("resident memory", "RSS (MiB)", |v| format!("{v:.0}")),
        Timeline::Cpu => ("CPU", "cores busy", |v| format!("{v:.2}")),
    };
    Chart {
        title: format!("{}: {title} over time", scenario.name),
        x_label: "seconds from the end of warm-up".into(),
        y_label: y_label.into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        x_ticks: None,
        // `+ 0.0` turns -0 into 0.
        x_format: |v| format!("{:.0}", v + 0.0),
        y_format,
        y_from_zero: true,
        series,
    }
}

/// Cores busy over windows of at least half a second: CPU time is counted in 10 ms
/// ticks, so between two 100 ms samples it reads 0 or 0.1 at low load.
fn cpu_rate(samples: &[crate::sample::Sample]) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    let mut start = 0;
    for (i, s) in samples.iter().enumerate() {
        let first = &samples[start];
        if s.t - first.t >= 0.5 {
            points.push((s.t, (s.cpu_seconds - first.cpu_seconds) / (s.t - first.t)));
            start = i;
        }
    }
    points
}

fn sweep(out: &mut String, report: &Report, scenario: &ScenarioResult, sides: &[String]) {
    let limits = scenario.sweep.expect("a sweep");
    let _ = write!(
        out,
        "<p>A step passes with p99 ≤ {} ms, errors ≤ {:.2}% and at least 90% of the target \
         rate achieved.</p><table><tr><th>side</th><th>target req/s</th><th>achieved req/s</th>\
         <th>p50</th><th>p99</th><th>errors</th><th>CPU s per 1000 req</th><th>passes</th></tr>",
        limits.p99_limit_ms,
        limits.max_error_ratio * 100.0
    );
    for side in sides {
        for run in scenario.runs_of(side) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(side),
                run.rate,
                run.achieved_rate,
                figures::micros(run.latency_us.p50),
                figures::micros(run.latency_us.p99),
                run.error_count(),
                run.cpu_per_1000().map_or("–".into(), |c| format!("{c:.3}")),
                if passes(run, limits) { "yes" } else { "no" }
            );
        }
    }
    out.push_str("</table><ul>");
    for side in [SERVERLESS, TRADITIONAL] {
        let best = scenario
            .best_rate(side)
            .map_or("no step".to_string(), |r| format!("{r} req/s"));
        let _ = write!(out, "<li>{side}: highest passing rate {best}</li>");
    }
    out.push_str("</ul><div class=\"charts\">");
    let mut series = Vec::new();
    for side in sides {
        // At a rate tried twice, the second attempt decided: chart that one.
        let mut runs: Vec<&Run> = Vec::new();
        for run in scenario.runs_of(side).filter(|r| r.ok > 0) {
            if runs.last().is_some_and(|last| last.rate == run.rate) {
                runs.pop();
            }
            runs.push(run);
        }
        for (label, dashed, pick) in [
            ("p50", true, (|r: &Run| r.latency_us.p50) as fn(&Run) -> f64),
            ("p99", false, |r: &Run| r.latency_us.p99),
        ] {
            series.push(Series {
                name: format!("{side} {label}"),
                color: color(report, side),
                dashed,
                points: runs.iter().map(|r| (r.rate, pick(r))).collect(),
            });
        }
    }
    let chart = Chart {
        title: format!("{}: latency against rate", scenario.name),
        x_label: "target rate (requests per second)".into(),
        y_label: "latency".into(),
        x_scale: Scale::Log,
        y_scale: Scale::Log,
        x_ticks: None,
        x_format: |v| format!("{v}"),
        y_format: figures::micros,
        y_from_zero: false,
        series,
    };
    out.push_str(&chart.render());
    out.push_str("</div>");
}
