//! `report.md`: the report's [`View`] as Markdown.

use super::Report;
use super::view::{self, Bullet, METHOD, TITLE, Table, VIRTUAL_MEMORY_NOTE};
use std::fmt::Write;

pub fn markdown(report: &Report) -> String {
    let view = view::view(report);
    let mut out = String::new();
    let _ = writeln!(out, "# {TITLE}\n");
    let incomplete = view
        .incomplete
        .as_ref()
        .map(|why| format!(" **Incomplete: {why}.**"))
        .unwrap_or_default();
    let _ = writeln!(out, "{}{incomplete}\n", view.period);
    table(&mut out, &view.sides);
    let _ = writeln!(out, "\n{METHOD}\n\n> {VIRTUAL_MEMORY_NOTE}\n");
    let _ = writeln!(out, "## Summary\n");
    table(&mut out, &view.summary);
    let _ = writeln!(out, "\n{}\n", view.summary_note);
    if let Some(breakdown) = &view.breakdown {
        let _ = writeln!(out, "## Where the time goes: {}\n", breakdown.scenario);
        table(&mut out, &breakdown.table());
        let _ = writeln!(out, "\n{}\n", super::breakdown::NOTE);
    }
    let repeats = report.repeats();
    if let Some(t) = super::figures::repeats_table(&repeats, super::figures::DEFAULT_TOLERANCE) {
        let _ = writeln!(out, "## Across {} repeats\n", repeats.len());
        table(&mut out, &t);
        let _ = writeln!(out, "\n{}\n", super::view::REPEATS_NOTE);
    }
    let priced = super::costs::priced(report);
    if !priced.is_empty() {
        let _ = writeln!(out, "## What it costs\n");
        table(&mut out, &super::costs::table(&report.cost, &priced));
        let _ = writeln!(out, "\n{}\n", super::costs::note(&report.cost));
    }
    if let Some(many) = &view.many {
        let _ = writeln!(out, "## Many applications, idle\n");
        table(&mut out, &many.idle);
        let _ = writeln!(out, "\n{}\n", view::IDLE_NOTE);
        for note in &many.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out);
        if let Some((costs, note)) = &many.costs {
            let _ = writeln!(out, "## What many quiet applications cost\n");
            table(&mut out, costs);
            let _ = writeln!(out, "\n{note}\n");
        }
    }
    for scenario in &view.scenarios {
        let result = scenario.result;
        let _ = writeln!(out, "## {}\n", result.name);
        if !result.description.is_empty() {
            let _ = writeln!(out, "{}\n", result.description);
        }
        let _ = writeln!(out, "{}\n", scenario.setup);
        if let Some(plan) = &scenario.plan {
            let _ = writeln!(out, "{plan}\n");
        }
        if let Some(glance) = &result.glance {
            let _ = writeln!(
                out,
                "![The comparison dashboard's stat row right after {} (its minute)]({})\n",
                result.name, glance.file
            );
        }
        table(&mut out, &scenario.table);
        let _ = writeln!(out);
        if let Some(note) = scenario.table_note {
            let _ = writeln!(out, "{note}\n");
        }
        for bullet in &scenario.bullets {
            let _ = writeln!(out, "- {}", text(bullet));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "## Machine and versions\n");
    for (group, key, value) in &view.environment {
        let _ = writeln!(out, "- {group} / {key}: {value}");
    }
    out
}

fn table(out: &mut String, table: &Table) {
    let row = |cells: &[String]| format!("| {} |", cells.join(" | "));
    let _ = writeln!(out, "{}", row(&table.header));
    let _ = writeln!(out, "|{}", "---|".repeat(table.header.len()));
    for cells in &table.rows {
        let _ = writeln!(out, "{}", row(cells));
    }
}

fn text(bullet: &Bullet) -> String {
    match bullet.lead {
        Some(lead) => format!("**{lead}**: {}", bullet.text),
        None => bullet.text.clone(),
    }
}
