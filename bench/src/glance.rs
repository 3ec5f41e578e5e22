//! The overview dashboard's at-a-glance row without Grafana: its stat panels' queries,
//! read from the dashboard's own JSON and evaluated by Prometheus, drawn as one SVG row
//! of tiles the way Grafana's stat panel shows them (a coloured box per series, coloured
//! by the panel's thresholds, formatted by its unit and decimals).
//!
//! `bench glance --prometheus URL --out glance.svg` against the compose stack's
//! Prometheus; the README's image is one.

use crate::report::svg::escape;
use anyhow::{Context, bail};
use serde_json::Value;
use std::fmt::Write;

/// One stat panel of the dashboard's top row, as its JSON says.
#[derive(Debug, Clone, PartialEq)]
pub struct StatPanel {
    pub title: String,
    pub description: String,
    /// (PromQL, legend format) per target.
    pub targets: Vec<(String, String)>,
    pub unit: String,
    pub decimals: Option<u32>,
    /// (from, colour) in ascending order; the first has no lower bound.
    pub thresholds: Vec<(Option<f64>, String)>,
}

/// A stat panel with its values: (legend, value) per series, in legend order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub panel: StatPanel,
    pub values: Vec<(String, f64)>,
}

/// The stat panels on the dashboard's first row (`gridPos.y` 0), left to right.
pub fn stat_panels(dashboard: &Value) -> anyhow::Result<Vec<StatPanel>> {
    let panels = dashboard["panels"]
        .as_array()
        .context("the dashboard has no panels")?;
    let mut row: Vec<(i64, StatPanel)> = Vec::new();
    for p in panels {
        if p["type"] != "stat" || p["gridPos"]["y"].as_i64() != Some(0) {
            continue;
        }
        let defaults = &p["fieldConfig"]["defaults"];
        let thresholds = defaults["thresholds"]["steps"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| {
                        (
                            s["value"].as_f64(),
                            s["color"].as_str().unwrap_or("").into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let targets = p["targets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        let expr = t["expr"].as_str()?;
                        Some((expr.to_string(), t["legendFormat"].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        row.push((
            p["gridPos"]["x"].as_i64().unwrap_or(0),
            StatPanel {
                title: p["title"].as_str().unwrap_or("").into(),
                description: p["description"].as_str().unwrap_or("").into(),
                targets,
                unit: defaults["unit"].as_str().unwrap_or("").into(),
                decimals: defaults["decimals"].as_u64().map(|d| d as u32),
                thresholds,
            },
        ));
    }
    if row.is_empty() {
        bail!("the dashboard has no stat panels on its first row");
    }
    row.sort_by_key(|(x, _)| *x);
    Ok(row.into_iter().map(|(_, p)| p).collect())
}

/// `expr` as Grafana sends it with every variable at "All": `$side` and `$function`
/// match any value.
pub fn expand(expr: &str) -> String {
    expr.replace("$side", ".+").replace("$function", ".+")
}

/// A legend format (`vs {{versus}}`) filled from a series' labels.
pub fn legend(format: &str, labels: &serde_json::Map<String, Value>) -> String {
    let mut out = format.to_string();
    for (name, value) in labels {
        out = out.replace(&format!("{{{{{name}}}}}"), value.as_str().unwrap_or(""));
    }
    out
}

/// A value as the panel's unit and decimals show it.
pub fn format_value(panel: &StatPanel, v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else {
            "∞".into()
        };
    }
    let d = panel.decimals.unwrap_or(2) as usize;
    match panel.unit.as_str() {
        "percentunit" => format!("{:.d$} %", v * 100.0),
        "percent" => format!("{v:.d$} %"),
        unit => match unit.strip_prefix("suffix:") {
            Some(suffix) => format!("{v:.d$}{suffix}"),
            None => format!("{v:.d$}"),
        },
    }
}

/// The colour the panel's thresholds give `v`, as Grafana's palette draws the named
/// colours.
pub fn colour(panel: &StatPanel, v: f64) -> &'static str {
    let name = panel
        .thresholds
        .iter()
        .rev()
        .find(|(from, _)| from.is_none_or(|from| v >= from))
        .map_or("", |(_, c)| c.as_str());
    match name {
        "green" => "#56a64b",
        "orange" => "#ff9830",
        "red" => "#e02f44",
        "blue" => "#3274d9",
        "yellow" => "#fade2a",
        "purple" => "#a352cc",
        _ => "#8e8e8e",
    }
}

/// Evaluates every tile's queries against Prometheus at `time` (Unix seconds; now if
/// `None`).
pub async fn evaluate(
    client: &reqwest::Client,
    prometheus: &str,
    panels: Vec<StatPanel>,
    time: Option<f64>,
) -> anyhow::Result<Vec<Tile>> {
    let mut tiles = Vec::new();
    for panel in panels {
        let mut values = Vec::new();
        for (expr, format) in &panel.targets {
            let query = expand(expr);
            let series = localrun::prometheus::instant_query(client, prometheus, &query, time)
                .await
                .with_context(|| format!("evaluating {}'s {query}", panel.title))?;
            for series in &series {
                let labels = series["metric"].as_object().cloned().unwrap_or_default();
                let Some(v) = series["value"][1].as_str().and_then(|v| v.parse().ok()) else {
                    continue;
                };
                values.push((legend(format, &labels), v));
            }
        }
        values.sort_by(|a, b| a.0.cmp(&b.0));
        tiles.push(Tile { panel, values });
    }
    Ok(tiles)
}

const TILE_WIDTH: f64 = 236.0;
const GAP: f64 = 8.0;
const HEAD: f64 = 44.0;
const BOX: f64 = 46.0;

/// The row as one SVG: a tile per panel, a coloured box per value.
pub fn render(tiles: &[Tile], caption: &str) -> String {
    let rows = tiles
        .iter()
        .map(|t| t.values.len().max(1))
        .max()
        .unwrap_or(1);
    let width = tiles.len() as f64 * (TILE_WIDTH + GAP) + GAP;
    let height = HEAD + rows as f64 * (BOX + 6.0) + 34.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="Inter, Helvetica, Arial, sans-serif" role="img"><title>{}</title><rect width="100%" height="100%" fill="#111217"/>"##,
        escape(caption)
    );
    for (i, tile) in tiles.iter().enumerate() {
        let x = GAP + i as f64 * (TILE_WIDTH + GAP);
        let _ = write!(
            svg,
            r##"<g><title>{}</title><rect x="{x}" y="{GAP}" width="{TILE_WIDTH}" height="{}" rx="3" fill="#181b1f" stroke="#2c3235"/>"##,
            escape(&tile.panel.description),
            height - 2.0 * GAP - 22.0,
        );
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" fill="#ccccdc" font-size="12" font-weight="500">{}</text>"##,
            x + 8.0,
            GAP + 20.0,
            escape(&tile.panel.title)
        );
        if tile.values.is_empty() {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" fill="#8e8e8e" font-size="14" text-anchor="middle">No data</text>"##,
                x + TILE_WIDTH / 2.0,
                HEAD + BOX / 2.0
            );
        }
        for (row, (label, v)) in tile.values.iter().enumerate() {
            let y = HEAD + row as f64 * (BOX + 6.0);
            let _ = write!(
                svg,
                r##"<rect x="{}" y="{y}" width="{}" height="{BOX}" rx="2" fill="{}"/><text x="{}" y="{}" fill="#ffffff" font-size="11">{}</text><text x="{}" y="{}" fill="#ffffff" font-size="22" font-weight="600" text-anchor="end">{}</text>"##,
                x + 6.0,
                TILE_WIDTH - 12.0,
                colour(&tile.panel, *v),
                x + 12.0,
                y + 17.0,
                escape(label),
                x + TILE_WIDTH - 12.0,
                y + 38.0,
                escape(&format_value(&tile.panel, *v)),
            );
        }
        svg.push_str("</g>");
    }
    let _ = write!(
        svg,
        r##"<text x="{GAP}" y="{}" fill="#8e8e8e" font-size="11">{}</text></svg>"##,
        height - 10.0,
        escape(caption)
    );
    svg
}

/// The row as a Markdown table: panel, series, value.
pub fn markdown(tiles: &[Tile]) -> String {
    let mut out = String::from("| panel | series | value |\n|---|---|---|\n");
    for tile in tiles {
        if tile.values.is_empty() {
            let _ = writeln!(out, "| {} | | no data |", tile.panel.title);
        }
        for (label, v) in &tile.values {
            let _ = writeln!(
                out,
                "| {} | {label} | {} |",
                tile.panel.title,
                format_value(&tile.panel, *v)
            );
        }
    }
    out
}

/// What `bench compare --glance` runs beside the sides: Prometheus with the compose
/// stack's configuration and rules, scraping them every second, and process-exporter
/// for nginx's and seed-php's processes; after each fixed-rate scenario, the overview's
/// row.
#[derive(Debug)]
pub struct Live {
    prometheus: localrun::prometheus::Prometheus,
    _exporters: Vec<localrun::prometheus::ProcessGroup>,
    dashboard: Value,
    out: std::path::PathBuf,
    /// When the last scenario (of any shape) ended: its load is in the next minute.
    last_end: Option<std::time::Instant>,
}

/// Where the compared sides' metrics are, by the compose target each stands for.
#[derive(Debug)]
pub struct Targets<'a> {
    pub runtime: String,
    pub webserver: String,
    /// The nginx in front of the webserver, for its processes' CPU and memory.
    pub nginx: &'a localrun::Nginx,
    pub seed_node: Option<String>,
    /// PHP-FPM's status page (its nginx's status port) and PHP-FPM.
    pub seed_php: Option<(String, &'a localrun::PhpFpm)>,
}

impl Live {
    pub fn start(targets: &Targets<'_>, out: &std::path::Path) -> anyhow::Result<Self> {
        let dashboard_path =
            localrun::prometheus::config_dir().join("../grafana/dashboards/overview.json");
        let dashboard: Value = serde_json::from_slice(
            &std::fs::read(&dashboard_path)
                .with_context(|| format!("reading {}", dashboard_path.display()))?,
        )?;
        let mut replace = vec![
            ("runtime:8081", targets.runtime.clone()),
            ("webserver:8001", targets.webserver.clone()),
        ];
        if let Some(node) = &targets.seed_node {
            replace.push(("seed-node:3001", node.clone()));
        }
        let nginx = localrun::prometheus::ProcessGroup::nginx(targets.nginx)
            .context("--glance: nginx's CPU and memory")?;
        replace.push(("nginx-processes:9256", nginx.addr().to_string()));
        let mut exporters = vec![nginx];
        if let Some((status, fpm)) = &targets.seed_php {
            let processes = localrun::prometheus::ProcessGroup::php_fpm(fpm)
                .context("--glance with seed-php: PHP-FPM's CPU and memory")?;
            replace.push(("seed-php-nginx:8080", status.clone()));
            replace.push(("seed-php-processes:9256", processes.addr().to_string()));
            exporters.push(processes);
        }
        let prometheus = localrun::prometheus::Prometheus::start_compose(&replace)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(prometheus.wait_for_series(
                &reqwest::Client::new(),
                r#"up{job="runtime"} == 1"#,
                std::time::Duration::from_secs(30),
            ))?;
        Ok(Self {
            prometheus,
            _exporters: exporters,
            dashboard,
            out: out.to_path_buf(),
            last_end: None,
        })
    }

    /// Before a fixed-rate scenario: waits until the last scenario's load is out of the
    /// rules' one-minute window, so that the row drawn after it holds it alone.
    pub fn before(&self, scenario: &crate::scenario::Scenario) {
        let fixed = matches!(scenario.shape, crate::scenario::Shape::Fixed { .. });
        let window = std::time::Duration::from_secs(61);
        if let Some(end) = self.last_end
            && fixed
            && end.elapsed() < window
        {
            let wait = window - end.elapsed();
            eprintln!(
                "{}: waiting {:.0} s, so that the dashboard's minute holds this scenario alone (--glance)",
                scenario.name,
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
    }

    /// After any scenario: draws the row if it was a fixed-rate one.
    pub fn after(&mut self, result: &mut crate::report::ScenarioResult) {
        if result.sweep.is_none() && result.cold.is_empty() && !result.runs.is_empty() {
            match self.draw(&result.name) {
                Ok(glance) => result.glance = Some(glance),
                Err(e) => eprintln!("warning: the dashboard's row after {}: {e:#}", result.name),
            }
        }
        self.last_end = Some(std::time::Instant::now());
    }

    /// Draws the row now (after two more scrapes and an evaluation) into
    /// `glance-SCENARIO.svg`, prints its table, and returns it for the report.
    pub fn draw(&self, scenario: &str) -> anyhow::Result<crate::report::Glance> {
        std::thread::sleep(std::time::Duration::from_secs(3));
        let panels = stat_panels(&self.dashboard)?;
        let client = reqwest::Client::new();
        let tiles = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(evaluate(&client, self.prometheus.url(), panels, None))?;
        std::fs::create_dir_all(&self.out)?;
        let name = format!("glance-{scenario}.svg");
        let file = self.out.join(&name);
        let caption = format!(
            "The overview dashboard's at-a-glance row after scenario {scenario} (bench compare --glance): each stat over the minute before"
        );
        let svg = render(&tiles, &caption);
        std::fs::write(&file, &svg)?;
        eprintln!("{scenario}: the dashboard's row, in {}", file.display());
        eprint!("{}", markdown(&tiles));
        Ok(crate::report::Glance { file: name, svg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(unit: &str) -> StatPanel {
        StatPanel {
            title: "p99 <latency>".into(),
            description: "d".into(),
            targets: vec![],
            unit: unit.into(),
            decimals: Some(2),
            thresholds: vec![(None, "green".into()), (Some(1.0), "orange".into())],
        }
    }

    #[test]
    fn values_are_formatted_and_coloured_as_the_panel_says() {
        let p = panel("suffix:×");
        assert_eq!(format_value(&p, 1.8432), "1.84×");
        assert_eq!(colour(&p, 0.99), "#56a64b");
        assert_eq!(colour(&p, 1.0), "#ff9830");
        let mut percent = panel("percentunit");
        percent.decimals = Some(1);
        assert_eq!(format_value(&percent, 0.0123), "1.2 %");
        assert_eq!(format_value(&p, f64::INFINITY), "∞");
    }

    #[test]
    fn the_top_row_is_read_left_to_right_and_drawn_escaped() {
        let dashboard = serde_json::json!({"panels": [
            {"type": "stat", "title": "B", "gridPos": {"x": 5, "y": 0},
             "fieldConfig": {"defaults": {"unit": "short"}},
             "targets": [{"expr": "b", "legendFormat": "{{job}}"}]},
            {"type": "timeseries", "title": "T", "gridPos": {"x": 0, "y": 0}, "targets": []},
            {"type": "stat", "title": "below", "gridPos": {"x": 0, "y": 5}, "targets": []},
            {"type": "stat", "title": "A", "gridPos": {"x": 0, "y": 0},
             "fieldConfig": {"defaults": {"unit": "suffix:×", "decimals": 2,
                 "thresholds": {"steps": [{"color": "green", "value": null},
                                          {"color": "orange", "value": 1}]}}},
             "targets": [{"expr": "side:x{job=~\"$side\"}", "legendFormat": "vs {{versus}}"}]}
        ]});
        let panels = stat_panels(&dashboard).unwrap();
        assert_eq!(
            panels.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert_eq!(expand(&panels[0].targets[0].0), "side:x{job=~\".+\"}");
        let labels = serde_json::json!({"versus": "webserver"});
        assert_eq!(
            legend("vs {{versus}}", labels.as_object().unwrap()),
            "vs webserver"
        );
        let tiles = vec![
            Tile {
                panel: panel("suffix:×"),
                values: vec![("vs webserver".into(), 1.84)],
            },
            Tile {
                panel: panel("suffix:×"),
                values: vec![],
            },
        ];
        let svg = render(&tiles, "caption & more");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("p99 &lt;latency&gt;"), "{svg}");
        assert!(svg.contains(">1.84×<") && svg.contains("#ff9830"), "{svg}");
        assert!(svg.contains("No data") && svg.contains("caption &amp; more"));
        let table = markdown(&tiles);
        assert!(
            table.contains("| p99 <latency> | vs webserver | 1.84× |"),
            "{table}"
        );
        assert!(table.contains("no data"));
    }

    #[test]
    fn a_dashboard_without_a_stat_row_is_an_error() {
        let dashboard =
            serde_json::json!({"panels": [{"type": "timeseries", "gridPos": {"y": 0}}]});
        assert!(stat_panels(&dashboard).is_err());
    }
}
