//! Where each side's time per request goes, on `hello` (the handler that does nothing, so
//! what is left is the cost of serving it): the mean latency the client measured, split
//! with what else the same run measured. Traditional: HTTP serving (the webserver alone,
//! `direct`) and the nginx hop (traditional minus direct). Serverless: instantiation and
//! the guest's run (the runtime's own `faas_init_duration_seconds` and
//! `faas_invoke_duration_seconds` over the run) and the rest (HTTP serving, admission,
//! the response). Other sides are shown whole.

use super::Report;
use super::figures::{
    DIRECT, SERVERLESS, SERVERLESS_JS, SERVERLESS_PYTHON, SERVERLESS_WAGI, TRADITIONAL, micros,
};
use super::svg::escape;
use super::view::Table;
use std::fmt::Write;

/// Segment names, in the order they stack.
pub const HTTP: &str = "HTTP serving";
pub const NGINX_HOP: &str = "nginx hop";
pub const INSTANTIATION: &str = "instantiation";
pub const GUEST: &str = "guest run";
pub const RUNTIME_REST: &str = "HTTP serving and the rest";
pub const WHOLE: &str = "whole request";

const INIT_FAMILY: &str = "faas_init_duration_seconds";
const INVOKE_FAMILY: &str = "faas_invoke_duration_seconds";

/// Said under the table and the chart.
pub const NOTE: &str = "Mean latency as the client measured it (median over rounds), split by \
what the same run measured: the webserver alone (direct) for HTTP serving and nginx's share, \
and the runtime's own instantiation and guest-run histograms for its part. A segment can \
come out slightly negative when two sides' means differ by less than the noise.";

#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub scenario: String,
    pub bars: Vec<Bar>,
}

/// One side's mean request, in microseconds per segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub side: String,
    pub segments: Vec<(&'static str, f64)>,
}

impl Bar {
    pub fn total(&self) -> f64 {
        self.segments.iter().map(|(_, us)| us).sum()
    }
}

/// The breakdown of the first fixed-rate `hello` scenario that serverless and
/// traditional both ran, if any.
pub fn breakdown(report: &Report) -> Option<Breakdown> {
    let scenario = report.scenarios.iter().find(|s| {
        s.sweep.is_none()
            && service_ops::traffic::function_name(&s.path) == "hello"
            && s.runs_of(SERVERLESS).next().is_some()
            && s.runs_of(TRADITIONAL).next().is_some()
    })?;
    let mean = |side: &str| scenario.spread_of(side, |r| Some(r.latency_us.mean));
    // A runtime's own means of instantiation and guest run, in µs.
    let server = |side: &str, family: &str| {
        scenario.spread_of(side, |r| r.server_mean_seconds.get(family).map(|s| s * 1e6))
    };
    let direct = mean(DIRECT).map(|s| s.median);
    let mut bars = Vec::new();
    for side in &report.sides {
        let Some(total) = mean(&side.name).map(|s| s.median) else {
            continue;
        };
        let segments = match side.name.as_str() {
            DIRECT => vec![(HTTP, total)],
            TRADITIONAL => match direct {
                Some(direct) => vec![(HTTP, direct), (NGINX_HOP, total - direct)],
                None => vec![(WHOLE, total)],
            },
            SERVERLESS | SERVERLESS_WAGI | SERVERLESS_JS | SERVERLESS_PYTHON => match (
                server(&side.name, INIT_FAMILY),
                server(&side.name, INVOKE_FAMILY),
            ) {
                (Some(init), Some(invoke)) => vec![
                    (INSTANTIATION, init.median),
                    (GUEST, invoke.median),
                    (RUNTIME_REST, total - init.median - invoke.median),
                ],
                _ => vec![(WHOLE, total)],
            },
            _ => vec![(WHOLE, total)],
        };
        bars.push(Bar {
            side: side.name.clone(),
            segments,
        });
    }
    Some(Breakdown {
        scenario: scenario.name.clone(),
        bars,
    })
}

impl Breakdown {
    /// Every segment that occurs, in stacking order.
    fn columns(&self) -> Vec<&'static str> {
        [HTTP, NGINX_HOP, INSTANTIATION, GUEST, RUNTIME_REST, WHOLE]
            .into_iter()
            .filter(|name| {
                self.bars
                    .iter()
                    .any(|bar| bar.segments.iter().any(|(n, _)| n == name))
            })
            .collect()
    }

    /// One row per side: each segment's microseconds (blank where it has none), the total.
    pub fn table(&self) -> Table {
        let columns = self.columns();
        let mut header = vec!["side".to_string()];
        header.extend(columns.iter().map(|c| c.to_string()));
        header.push("mean latency".into());
        let rows = self
            .bars
            .iter()
            .map(|bar| {
                let mut row = vec![bar.side.clone()];
                for column in &columns {
                    row.push(
                        bar.segments
                            .iter()
                            .find(|(name, _)| name == column)
                            .map_or_else(String::new, |(_, us)| micros(*us)),
                    );
                }
                row.push(micros(bar.total()));
                row
            })
            .collect();
        Table { header, rows }
    }

    /// The bars as a stacked horizontal bar chart, one colour per segment.
    pub fn svg(&self) -> String {
        const COLORS: [&str; 6] = [
            "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f",
        ];
        let columns = self.columns();
        let colour = |name: &str| {
            let i = columns.iter().position(|c| *c == name).unwrap_or(0);
            COLORS[i % COLORS.len()]
        };
        let (label_w, plot_w, bar_h, gap, top) = (110.0, 560.0, 22.0, 10.0, 30.0);
        let widest = self
            .bars
            .iter()
            .map(|b| b.segments.iter().map(|(_, us)| us.max(0.0)).sum::<f64>())
            .fold(0.0, f64::max)
            .max(1e-9);
        let legend_h = 24.0;
        let height = top + self.bars.len() as f64 * (bar_h + gap) + legend_h + 10.0;
        let width = label_w + plot_w + 90.0;
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\
             <text x=\"{label_w}\" y=\"18\" font-weight=\"bold\">Where the time goes: {} (mean per request)</text>",
            escape(&self.scenario)
        );
        for (i, bar) in self.bars.iter().enumerate() {
            let y = top + i as f64 * (bar_h + gap);
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                label_w - 6.0,
                y + bar_h * 0.7,
                escape(&bar.side)
            );
            let mut x = label_w;
            for (name, us) in &bar.segments {
                let w = us.max(0.0) / widest * plot_w;
                let _ = write!(
                    out,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar_h}\" fill=\"{}\"><title>{}: {}</title></rect>",
                    colour(name),
                    escape(name),
                    micros(*us)
                );
                x += w;
            }
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x + 4.0,
                y + bar_h * 0.7,
                micros(bar.total())
            );
        }
        let mut x = label_w;
        let y = top + self.bars.len() as f64 * (bar_h + gap) + 8.0;
        for name in &columns {
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                colour(name),
                x + 16.0,
                y + 10.0,
                escape(name)
            );
            x += 24.0 + 7.0 * name.len() as f64;
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(side: &str, segments: &[(&'static str, f64)]) -> Bar {
        Bar {
            side: side.into(),
            segments: segments.to_vec(),
        }
    }

    #[test]
    fn the_table_has_a_column_per_segment_and_the_totals() {
        let b = Breakdown {
            scenario: "seed-hello".into(),
            bars: vec![
                bar(DIRECT, &[(HTTP, 100.0)]),
                bar(TRADITIONAL, &[(HTTP, 100.0), (NGINX_HOP, 60.0)]),
                bar(
                    SERVERLESS,
                    &[(INSTANTIATION, 40.0), (GUEST, 10.0), (RUNTIME_REST, 150.0)],
                ),
            ],
        };
        let t = b.table();
        assert_eq!(
            t.header,
            [
                "side",
                HTTP,
                NGINX_HOP,
                INSTANTIATION,
                GUEST,
                RUNTIME_REST,
                "mean latency"
            ]
        );
        assert_eq!(t.rows[1][2], micros(60.0));
        assert_eq!(t.rows[1].last().unwrap(), &micros(160.0));
        assert_eq!(t.rows[2].last().unwrap(), &micros(200.0));
        assert_eq!(t.rows[0][2], "");
        let svg = b.svg();
        assert_eq!(svg.matches("<rect").count(), 6 + 5, "{svg}");
    }
}
