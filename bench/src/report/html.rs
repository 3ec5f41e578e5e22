//! `report.html`: the report's [`view::View`], the same as the Markdown report, plus
//! charts (latency percentile curves, latency against rate for sweeps, RSS and CPU over
//! time), in one file with no external references.

use super::figures;
use super::svg::{Chart, Scale, Series, escape};
use super::view::{self, METHOD, TITLE, Table, VIRTUAL_MEMORY_NOTE};
use super::{Report, Run, ScenarioResult, decode};
use std::fmt::Write;

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b",
];

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
    let view = view::view(report);
    let sides: Vec<String> = report.sides.iter().map(|s| s.name.clone()).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{TITLE}</title><style>{STYLE}</style></head><body><h1>{TITLE}</h1>"
    );
    let incomplete = view
        .incomplete
        .as_ref()
        .map(|why| format!(" <strong>Incomplete: {}.</strong>", escape(why)))
        .unwrap_or_default();
    let _ = write!(out, "<p>{}{incomplete}</p>", escape(&view.period));
    table(&mut out, &view.sides);
    let _ = write!(
        out,
        "<p>{}</p><p class=\"note\">{}</p><h2>Summary</h2>",
        escape(METHOD),
        escape(VIRTUAL_MEMORY_NOTE)
    );
    table(&mut out, &view.summary);
    let _ = write!(out, "<p>{}</p>", escape(view.summary_note));
    if let Some(breakdown) = &view.breakdown {
        let _ = write!(
            out,
            "<h2>Where the time goes: {}</h2>",
            escape(&breakdown.scenario)
        );
        table(&mut out, &breakdown.table());
        let _ = write!(
            out,
            "<div class=\"charts\">{}</div><p>{}</p>",
            breakdown.svg(),
            escape(super::breakdown::NOTE)
        );
    }
    let repeats = report.repeats();
    if let Some(t) = super::figures::repeats_table(&repeats, super::figures::DEFAULT_TOLERANCE) {
        let _ = write!(out, "<h2>Across {} repeats</h2>", repeats.len());
        table(&mut out, &t);
        let _ = write!(out, "<p>{}</p>", escape(super::view::REPEATS_NOTE));
    }
    let priced = super::costs::priced(report);
    if let Some(first) = priced.first() {
        let _ = write!(out, "<h2>What it costs</h2>");
        table(&mut out, &super::costs::table(&report.cost, &priced));
        let scenario = report
            .scenarios
            .iter()
            .find(|s| s.name == first.scenario)
            .expect("priced from the report's scenarios");
        let _ = write!(
            out,
            "<div class=\"charts\">{}</div><p>{}</p>",
            super::costs::chart(&report.cost, first, scenario).render(),
            escape(&super::costs::note(&report.cost))
        );
    }

    if let Some(many) = &view.many {
        let _ = write!(out, "<h2>Many applications, idle</h2>");
        table(&mut out, &many.idle);
        let _ = write!(out, "<p>{}</p><ul>", escape(super::view::IDLE_NOTE));
        for note in &many.notes {
            let _ = write!(out, "<li>{}</li>", escape(note));
        }
        out.push_str("</ul>");
        if let Some((costs, note)) = &many.costs {
            let _ = write!(out, "<h2>What many quiet applications cost</h2>");
            table(&mut out, costs);
            let _ = write!(out, "<p>{}</p>", escape(note));
        }
    }
    for scenario in &view.scenarios {
        let result = scenario.result;
        let _ = write!(out, "<h2>{}</h2>", escape(&result.name));
        if !result.description.is_empty() {
            let _ = write!(out, "<p>{}</p>", escape(&result.description));
        }
        let _ = write!(out, "<p>{}</p>", code(&scenario.setup));
        if let Some(plan) = &scenario.plan {
            let _ = write!(out, "<p>{}</p>", escape(plan));
        }
        if let Some(glance) = &result.glance {
            // Our own SVG (bench glance's), inlined so the report stays one file.
            let _ = write!(out, "<figure>{}</figure>", glance.svg);
        }
        table(&mut out, &scenario.table);
        if let Some(note) = scenario.table_note {
            let _ = write!(out, "<p>{}</p>", escape(note));
        }
        out.push_str("<ul>");
        for bullet in &scenario.bullets {
            let lead = bullet
                .lead
                .map(|l| format!("<strong>{}</strong>: ", escape(l)))
                .unwrap_or_default();
            let _ = write!(out, "<li>{lead}{}</li>", escape(&bullet.text));
        }
        out.push_str("</ul><div class=\"charts\">");
        if result.runs.is_empty() {
            // Cold starts: the table says it all.
        } else if result.sweep.is_some() {
            out.push_str(&sweep_chart(report, result, &sides).render());
        } else {
            fixed_charts(&mut out, report, result, &sides);
        }
        out.push_str("</div>");
    }

    out.push_str("<h2>Machine and versions</h2><table>");
    for (group, key, value) in &view.environment {
        let _ = write!(
            out,
            "<tr><td>{group}</td><td>{}</td><td>{}</td></tr>",
            escape(key),
            escape(value)
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

fn table(out: &mut String, table: &Table) {
    out.push_str("<table><tr>");
    for cell in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(cell));
    }
    out.push_str("</tr>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// Escapes `text`, showing its Markdown `code` spans as `<code>`.
fn code(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

fn fixed_charts(out: &mut String, report: &Report, scenario: &ScenarioResult, sides: &[String]) {
    out.push_str(&percentile_chart(report, scenario, sides).render());
    let first_round = |side: &str| scenario.runs_of(side).next().cloned();
    let runs: Vec<Run> = sides.iter().filter_map(|s| first_round(s)).collect();
    out.push_str(&timeline_chart(report, scenario, &runs, Timeline::Rss).render());
    out.push_str(&timeline_chart(report, scenario, &runs, Timeline::Cpu).render());
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

fn sweep_chart(report: &Report, scenario: &ScenarioResult, sides: &[String]) -> Chart {
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
    Chart {
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
    }
}
