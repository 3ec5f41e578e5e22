//! `bench diff A.json B.json`: what changed between two results, figure by figure, and
//! whether the change is larger than the noise each result measured in itself (the
//! spread of its own rounds). Two commits, two machines, or one machine twice.

use crate::report::figures::{FIGURES, Figure, HEADLINE, format};
use crate::report::view::Table;
use crate::report::{Report, Spread};

/// One figure of one side in one scenario, in both results.
#[derive(Debug, Clone)]
pub struct Change {
    pub scenario: String,
    pub side: String,
    pub figure: &'static Figure,
    pub before: Spread,
    pub after: Spread,
    /// after / before (medians).
    pub factor: f64,
    /// Beyond the noise: the rounds' ranges do not overlap and the medians differ by more
    /// than either result's own spread (and more than `tolerance`).
    pub real: bool,
}

/// The figures compared: the headline ones and peak memory.
fn compared() -> impl Iterator<Item = &'static Figure> {
    FIGURES
        .iter()
        .filter(|f| HEADLINE.contains(&f.name) || f.name == "peak RSS")
}

/// Every figure both results have for a fixed-rate scenario and side.
pub fn diff(before: &Report, after: &Report, tolerance: f64) -> Vec<Change> {
    let mut changes = Vec::new();
    for a in before.scenarios.iter().filter(|s| s.sweep.is_none()) {
        let Some(b) = after.scenarios.iter().find(|s| s.name == a.name) else {
            continue;
        };
        for side in &before.sides {
            for figure in compared() {
                let spread = |scenario: &crate::report::ScenarioResult| {
                    scenario.spread_of(&side.name, figure.get)
                };
                let (Some(x), Some(y)) = (spread(a), spread(b)) else {
                    continue;
                };
                if x.median <= 0.0 {
                    continue;
                }
                changes.push(Change {
                    scenario: a.name.clone(),
                    side: side.name.clone(),
                    figure,
                    before: x,
                    after: y,
                    factor: y.median / x.median,
                    real: beyond_noise(x, y, tolerance),
                });
            }
        }
    }
    changes
}

/// Whether `after` differs from `before` by more than noise: their rounds' ranges do not
/// overlap, and the medians differ by more than either result's own spread
/// ((max - min) / median) and more than `tolerance`.
pub fn beyond_noise(before: Spread, after: Spread, tolerance: f64) -> bool {
    let own = |s: Spread| (s.max - s.min) / s.median.max(f64::MIN_POSITIVE);
    let noise = own(before).max(own(after)).max(tolerance);
    let apart = after.min > before.max || after.max < before.min;
    let factor = after.median / before.median.max(f64::MIN_POSITIVE);
    apart && (factor - 1.0).abs() > noise
}

/// The changes as a table, the real ones said in words.
pub fn table(changes: &[Change]) -> Table {
    let header = [
        "scenario",
        "side",
        "figure",
        "before",
        "after",
        "after / before",
        "",
    ]
    .map(String::from)
    .to_vec();
    let rows = changes
        .iter()
        .map(|c| {
            let unit = c.figure.unit;
            vec![
                c.scenario.clone(),
                c.side.clone(),
                c.figure.name.to_string(),
                crate::report::figures::spread(unit, &c.before),
                crate::report::figures::spread(unit, &c.after),
                format!("{:.2}×", c.factor),
                if c.real {
                    format!(
                        "changed: {} → {}",
                        format(unit, c.before.median),
                        format(unit, c.after.median)
                    )
                } else {
                    "within the noise".into()
                },
            ]
        })
        .collect();
    Table { header, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(min: f64, median: f64, max: f64) -> Spread {
        Spread { median, min, max }
    }

    #[test]
    fn a_change_is_real_when_the_rounds_do_not_overlap_and_it_beats_the_noise() {
        let apart = beyond_noise;
        // Twice as slow, tight rounds: real.
        assert!(apart(
            spread(95.0, 100.0, 105.0),
            spread(190.0, 200.0, 210.0),
            0.15
        ));
        // 10% slower, rounds overlap: noise.
        assert!(!apart(
            spread(90.0, 100.0, 115.0),
            spread(100.0, 110.0, 120.0),
            0.15
        ));
        // 20% slower and apart, but each result's own rounds spread 30%: noise.
        assert!(!apart(
            spread(85.0, 100.0, 115.0),
            spread(116.0, 120.0, 152.0),
            0.15
        ));
    }
}
