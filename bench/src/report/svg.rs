//! Line charts as inline SVG, so the HTML report is one self-contained file.
//!
//! Written here, a few hundred lines for the two chart shapes the report draws. An
//! earlier comment said `plotters` would need a font backend: its SVG backend does not
//! (it writes `<text>` elements, as this does), so switching to it is an option, not a
//! necessity; it would bring its own styling to match and little else the report needs.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 48.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base 10; non-positive values are dropped.
    Log,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Fixed x ticks (value, label), for axes with their own meaning (percentiles).
    pub x_ticks: Option<Vec<(f64, String)>>,
    pub x_format: fn(f64) -> String,
    pub y_format: fn(f64) -> String,
    /// Start a linear y axis at zero rather than at the smallest value.
    pub y_from_zero: bool,
    pub series: Vec<Series>,
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Axis {
    scale: Scale,
    min: f64,
    max: f64,
    from: f64,
    to: f64,
}

impl Axis {
    fn new(scale: Scale, values: impl Iterator<Item = f64>, from: f64, to: f64) -> Option<Self> {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            min = min.min(v);
            max = max.max(v);
        }
        if !min.is_finite() {
            return None;
        }
        let (min, max) = match scale {
            Scale::Linear if max - min < 1e-12 => (min - 1.0, max + 1.0),
            Scale::Linear => (min, max),
            Scale::Log => {
                let (lo, hi) = (min.log10().floor(), max.log10().ceil());
                (lo, if hi <= lo { lo + 1.0 } else { hi })
            }
        };
        Some(Self {
            scale,
            min,
            max,
            from,
            to,
        })
    }

    fn transform(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }

    fn position(&self, v: f64) -> f64 {
        let f = (self.transform(v) - self.min) / (self.max - self.min);
        self.from + f * (self.to - self.from)
    }

    /// Tick values in data units.
    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Log => {
                let decades = (self.max - self.min).round() as i32;
                let steps: &[f64] = if decades <= 2 {
                    &[1.0, 2.0, 5.0]
                } else {
                    &[1.0]
                };
                let mut ticks = Vec::new();
                for d in self.min as i32..=self.max as i32 {
                    for s in steps {
                        let v = s * 10f64.powi(d);
                        if v.log10() <= self.max + 1e-9 {
                            ticks.push(v);
                        }
                    }
                }
                ticks
            }
            Scale::Linear => {
                let span = self.max - self.min;
                let raw = span / 5.0;
                let magnitude = 10f64.powf(raw.log10().floor());
                let step = [1.0, 2.0, 5.0, 10.0]
                    .iter()
                    .map(|m| m * magnitude)
                    .find(|s| span / s <= 6.0)
                    .unwrap_or(10.0 * magnitude);
                let mut v = (self.min / step).ceil() * step;
                let mut ticks = Vec::new();
                while v <= self.max + step * 1e-9 {
                    ticks.push(v);
                    v += step;
                }
                ticks
            }
        }
    }
}

impl Chart {
    fn keep(scale: Scale, v: f64) -> bool {
        v.is_finite() && (scale == Scale::Linear || v > 0.0)
    }

    /// The chart as an `<svg>` element; a chart without data says so instead.
    pub fn render(&self) -> String {
        let points = || {
            self.series.iter().flat_map(|s| {
                s.points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| Self::keep(self.x_scale, x) && Self::keep(self.y_scale, y))
            })
        };
        let x = Axis::new(self.x_scale, points().map(|p| p.0), LEFT, WIDTH - RIGHT);
        let zero = (self.y_from_zero && self.y_scale == Scale::Linear).then_some(0.0);
        let y = Axis::new(
            self.y_scale,
            points().map(|p| p.1).chain(zero),
            HEIGHT - BOTTOM,
            TOP,
        );
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}" font-family="sans-serif" font-size="12">"#,
            title = escape(&self.title)
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        let (Some(x), Some(y)) = (x, y) else {
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
                WIDTH / 2.0,
                HEIGHT / 2.0
            );
            return svg;
        };

        // Grid and tick labels.
        for v in y.ticks() {
            let py = y.position(v);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                py + 4.0,
                escape(&(self.y_format)(v))
            );
        }
        let x_ticks: Vec<(f64, String)> = match &self.x_ticks {
            Some(ticks) => ticks
                .iter()
                .filter(|(v, _)| {
                    let t = x.transform(*v);
                    t >= x.min - 1e-9 && t <= x.max + 1e-9
                })
                .cloned()
                .collect(),
            None => x
                .ticks()
                .into_iter()
                .map(|v| (v, (self.x_format)(v)))
                .collect(),
        };
        for (v, label) in x_ticks {
            let px = x.position(v);
            let _ = write!(
                svg,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 16.0,
                escape(&label)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            WIDTH - LEFT - RIGHT,
            HEIGHT - TOP - BOTTOM
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label)
        );
        let _ = write!(
            svg,
            r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (TOP + HEIGHT - BOTTOM) / 2.0,
            escape(&self.y_label)
        );

        // Lines, then the legend on top of them.
        for series in &self.series {
            let path: Vec<String> = series
                .points
                .iter()
                .filter(|&&(px, py)| Self::keep(self.x_scale, px) && Self::keep(self.y_scale, py))
                .map(|&(px, py)| format!("{:.1},{:.1}", x.position(px), y.position(py)))
                .collect();
            if path.is_empty() {
                continue;
            }
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
                series.color,
                path.join(" "),
                escape(&series.name)
            );
        }
        for (i, series) in self.series.iter().enumerate() {
            let ly = TOP + 14.0 + 16.0 * i as f64;
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                svg,
                r#"<line x1="{}" x2="{}" y1="{ly:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{:.1}">{}</text>"#,
                LEFT + 10.0,
                LEFT + 34.0,
                series.color,
                LEFT + 40.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(f64, f64)>, scale: Scale) -> Chart {
        Chart {
            title: "t <&>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: Scale::Linear,
            y_scale: scale,
            x_ticks: None,
            x_format: |v| format!("{v}"),
            y_format: |v| format!("{v}"),
            y_from_zero: false,
            series: vec![Series {
                name: "s".into(),
                color: "#000",
                dashed: false,
                points,
            }],
        }
    }

    #[test]
    fn a_chart_draws_its_points_inside_the_plot_and_escapes_text() {
        let svg = chart(vec![(0.0, 10.0), (1.0, 1000.0), (2.0, 100.0)], Scale::Log).render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let coords: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(coords.len(), 3);
        for (x, y) in &coords {
            assert!((LEFT..=WIDTH - RIGHT).contains(x), "{x}");
            assert!((TOP..=HEIGHT - BOTTOM).contains(y), "{y}");
        }
        // Log scale: 10 → 100 → 1000 are evenly spaced.
        let (a, b, c) = (coords[0].1, coords[2].1, coords[1].1);
        assert!(((a - b) - (b - c)).abs() < 0.5, "{coords:?}");
        // Decade ticks are labelled.
        for label in [">10<", ">100<", ">1000<"] {
            assert!(svg.contains(label), "no tick {label}");
        }
    }

    #[test]
    fn a_chart_without_data_says_so() {
        let svg = chart(vec![(1.0, -5.0)], Scale::Log).render();
        assert!(svg.contains("no data"));
    }
}
