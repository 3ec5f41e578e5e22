//! `report.md`: a table per scenario with the ratio serverless / traditional per figure and
//! a sentence per figure saying which side wins and by how much.

use super::figures::{self, SERVERLESS, TRADITIONAL, Unit};
use super::{Report, Run, ScenarioResult, passes};
use std::fmt::Write;

/// Said next to every virtual-memory figure, so nobody repeats the seed's conclusion.
pub const VIRTUAL_MEMORY_NOTE: &str = "Virtual memory is address space reserved, not memory used. \
The runtime's pooling allocator reserves slots (linear memory plus guard regions) for every \
instance it may ever run at once, terabytes of address space that is never touched; only \
resident memory (RSS) costs RAM. Compare RSS, not virtual memory.";

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let sides: Vec<String> = report.sides.iter().map(|s| s.name.clone()).collect();
    let _ = writeln!(out, "# Serverless vs server: bench report\n");
    let meta = &report.meta;
    let _ = writeln!(
        out,
        "Run from {} to {} (UTC).{}\n",
        meta.started,
        meta.finished,
        meta.interrupted
            .as_ref()
            .map(|why| format!(" **Incomplete: {why}.**"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "| side | what | URL |\n|---|---|---|");
    for side in &report.sides {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            side.name, side.description, side.url
        );
    }
    let _ = writeln!(
        out,
        "\nEach fixed-rate scenario ran in rounds, the sides one after the other and \
         alternating (A B A B ...); figures are the median over rounds with the range in \
         brackets. Latency counts from the moment each request was due and released by \
         the generator, whether or not a connection was free (open loop, no coordinated \
         omission), to the end of its response, and covers successful requests only; \
         errors are counted apart. The ratio is serverless / traditional: below 1 the serverless figure is \
         the smaller one.\n\n> {VIRTUAL_MEMORY_NOTE}\n"
    );

    summary(&mut out, report);
    for scenario in &report.scenarios {
        if scenario.sweep.is_some() {
            sweep(&mut out, scenario, &sides);
        } else {
            fixed(&mut out, scenario, &sides);
        }
    }
    environment(&mut out, report);
    out
}

fn summary(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "## Summary\n\n| scenario | p50 S / T | p99 S / T | CPU s per 1000 req S / T | peak RSS S / T | errors S / T |\n|---|---|---|---|---|---|"
    );
    for scenario in &report.scenarios {
        if let Some(limits) = scenario.sweep {
            let best = |side| {
                scenario
                    .best_rate(side)
                    .map_or("none".to_string(), |r| format!("{r} req/s"))
            };
            let _ = writeln!(
                out,
                "| {} | highest rate with p99 ≤ {} ms: serverless {}, traditional {} | | | | |",
                scenario.name,
                limits.p99_limit_ms,
                best(SERVERLESS),
                best(TRADITIONAL)
            );
            continue;
        }
        let rows = figures::rows(scenario, &[SERVERLESS.to_string(), TRADITIONAL.to_string()]);
        let pair = |name: &str| {
            let row = rows.iter().find(|r| r.figure.name == name).expect("figure");
            let one = |i: usize| {
                row.sides[i].as_ref().map_or("–".to_string(), |s| {
                    figures::format(row.figure.unit, s.median)
                })
            };
            let ratio = row.ratio.map(|r| format!(" ({r:.2}×)")).unwrap_or_default();
            format!("{} / {}{ratio}", one(0), one(1))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            scenario.name,
            pair("latency p50"),
            pair("latency p99"),
            pair("CPU seconds per 1000 requests"),
            pair("peak RSS"),
            pair("errors")
        );
    }
    let _ = writeln!(out, "\nS = serverless, T = traditional; (×) = S / T.\n");
}

fn heading(out: &mut String, scenario: &ScenarioResult) {
    let _ = writeln!(out, "## {}\n", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "{}\n", scenario.description);
    }
    let _ = writeln!(
        out,
        "`{} {}`, {} connections, {} s warm-up, {} s timeout.\n",
        scenario.method,
        scenario.path,
        scenario.connections,
        scenario.warmup_seconds,
        scenario.timeout_seconds
    );
}

fn fixed(out: &mut String, scenario: &ScenarioResult, sides: &[String]) {
    heading(out, scenario);
    if let Some(first) = scenario.runs.first() {
        let rounds = scenario.runs.iter().map(|r| r.round).max().unwrap_or(0) + 1;
        let _ = writeln!(
            out,
            "{} req/s, {} measured requests per run, {rounds} round(s).\n",
            first.rate, first.requests
        );
    }
    let rows = figures::rows(scenario, sides);
    let _ = write!(out, "| figure |");
    for side in sides {
        let _ = write!(out, " {side} |");
    }
    let _ = writeln!(out, " S / T |");
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(sides.len()));
    for row in &rows {
        let mark = if row.figure.unit == Unit::Bytes && row.figure.name.starts_with("virtual") {
            " ¹"
        } else {
            ""
        };
        let _ = write!(out, "| {}{mark} |", row.figure.name);
        for side in &row.sides {
            let cell = side
                .as_ref()
                .map_or("–".to_string(), |s| figures::spread(row.figure.unit, s));
            let _ = write!(out, " {cell} |");
        }
        let ratio = row.ratio.map_or("–".to_string(), |r| format!("{r:.2}×"));
        let _ = writeln!(out, " {ratio} |");
    }
    let _ = writeln!(
        out,
        "\n¹ A reservation, not a cost: see the note at the top.\n"
    );
    for row in &rows {
        if let Some(verdict) = &row.verdict {
            let _ = writeln!(out, "- {verdict}");
        }
    }
    generator_note(out, scenario);
    steal_note(out, scenario);
    let _ = writeln!(out);
}

fn sweep(out: &mut String, scenario: &ScenarioResult, sides: &[String]) {
    let limits = scenario.sweep.expect("a sweep");
    heading(out, scenario);
    let _ = writeln!(
        out,
        "Rates rise until a side fails a step: p99 above {} ms, errors above {:.2}%, or less \
         than 90% of the target rate achieved. A failed step is tried once more before the \
         side stops (round 2 in the table). Sides alternate at every step.\n",
        limits.p99_limit_ms,
        limits.max_error_ratio * 100.0
    );
    let _ = writeln!(
        out,
        "| side | target req/s | attempt | achieved req/s | p50 | p99 | p99.9 | errors | CPU s per 1000 req | peak RSS | passes |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for side in sides {
        for run in scenario.runs_of(side) {
            let _ = writeln!(
                out,
                "| {side} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                run.rate,
                run.round + 1,
                run.achieved_rate,
                figures::micros(run.latency_us.p50),
                figures::micros(run.latency_us.p99),
                figures::micros(run.latency_us.p999),
                run.error_count(),
                run.cpu_per_1000()
                    .map_or("–".into(), |c| format!("{c:.3} s")),
                run.usage.map_or("–".into(), |u| figures::bytes(
                    u.resident_peak_bytes as f64
                )),
                if passes(run, limits) { "yes" } else { "no" },
            );
        }
    }
    let best = |side: &str| scenario.best_rate(side);
    let sentence = match (best(SERVERLESS), best(TRADITIONAL)) {
        (Some(s), Some(t)) if s > t => format!(
            "serverless wins, {:.1}× higher ({s} against {t} req/s).",
            s / t
        ),
        (Some(s), Some(t)) if t > s => format!(
            "traditional wins, {:.1}× higher ({t} against {s} req/s).",
            t / s
        ),
        (Some(s), Some(_)) => format!("even, both {s} req/s."),
        (Some(s), None) => format!("serverless passed up to {s} req/s, traditional no step."),
        (None, Some(t)) => format!("traditional passed up to {t} req/s, serverless no step."),
        (None, None) => "neither side passed a step.".to_string(),
    };
    let _ = writeln!(
        out,
        "\n- Highest rate within the limits: {sentence} A side that passed the last step \
         may go higher: add rates to find its limit.\n"
    );
    generator_note(out, scenario);
    steal_note(out, scenario);
    let _ = writeln!(out);
}

/// Says when the hypervisor took a noticeable share of the CPU during a run.
fn steal_note(out: &mut String, scenario: &ScenarioResult) {
    let worst = scenario
        .runs
        .iter()
        .filter_map(|r| Some((r.steal_share?, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((share, run)) = worst
        && share > 0.01
    {
        let _ = writeln!(
            out,
            "- **Noisy machine**: during the worst run ({} at {} req/s) the hypervisor took \
             {:.1}% of the machine's CPU time (steal). Neither side nor the generator could \
             run then; tail latencies of such runs say more about the neighbours than the sides.",
            run.side,
            run.rate,
            share * 100.0
        );
    }
}

/// Flags runs where requests left well after their intended time, and says whose fault
/// it was: the generator's own scheduler (its figures are suspect) or a full connection
/// pool (the server fell behind, which latency already counts).
fn generator_note(out: &mut String, scenario: &ScenarioResult) {
    let worst = |pick: fn(&Run) -> f64| {
        scenario
            .runs
            .iter()
            .max_by(|a, b| pick(a).total_cmp(&pick(b)))
    };
    if let Some(run) = worst(|r| r.schedule_lag_us.p99)
        && run.schedule_lag_us.p99 > 1000.0
    {
        let _ = writeln!(
            out,
            "- **Generator behind**: in the worst run ({} at {} req/s) the load generator \
             released 1% of requests more than {} after they were due (it found no free \
             core). Latency does not include that lateness, but the load offered was \
             burstier than planned; treat that run's tail figures with care.",
            run.side,
            run.rate,
            figures::micros(run.schedule_lag_us.p99)
        );
    } else if let Some(run) = worst(|r| r.send_lag_us.p99)
        && run.send_lag_us.p99 > 1000.0
    {
        let _ = writeln!(
            out,
            "- Queueing: in the worst run ({} at {} req/s) 1% of requests waited more than {} \
             for a free connection, because earlier responses were slow. Latency counts \
             that wait (open loop).",
            run.side,
            run.rate,
            figures::micros(run.send_lag_us.p99)
        );
    }
}

fn environment(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Machine and versions\n");
    let meta = &report.meta;
    for (title, map) in [
        ("machine", &meta.machine),
        ("versions", &meta.versions),
        ("settings", &meta.settings),
    ] {
        for (key, value) in map {
            let _ = writeln!(out, "- {title} / {key}: {value}");
        }
    }
}
