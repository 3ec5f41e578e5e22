//! The report as a reader sees it: every table, sentence and warning, built once from
//! the results. Both views render this one model (`markdown` as Markdown, `html` as HTML
//! with charts beside it), so they cannot tell different stories.

use super::figures::{
    self, FIGURES, PEER, SEED_NODE, SERVERLESS, SERVERLESS_JS, SERVERLESS_PYTHON, SERVERLESS_WAGI,
    TRADITIONAL, Unit,
};
use super::{Report, Run, ScenarioResult, passes};

/// Said next to every virtual-memory figure, so nobody repeats the seed's conclusion.
pub const VIRTUAL_MEMORY_NOTE: &str = "Virtual memory is address space reserved, not memory used. \
The runtime's pooling allocator reserves slots (linear memory plus guard regions) for every \
instance it may ever run at once, terabytes of address space that is never touched; only \
resident memory (RSS) costs RAM. Compare RSS, not virtual memory.";

/// How the figures were taken, said once at the top.
pub const METHOD: &str = "Each fixed-rate scenario ran in rounds, the sides one after the other and \
alternating (A B A B ...); figures are the median over rounds with the range in brackets. \
Latency counts from the moment each request was due and released by the generator, whether \
or not a connection was free (open loop, no coordinated omission), to the end of its \
response, and covers successful requests only; errors are counted apart. The ratio is \
serverless / traditional: below 1 the serverless figure is the smaller one.";

pub const TITLE: &str = "Serverless vs server: bench report";

/// Under the repeats table.
pub const REPEATS_NOTE: &str = "Each repeat ran every scenario again, the servers staying up; a \
repeat's ratio is its median serverless over its median traditional. Spread is (max - min) / \
median across the repeats: \"held\" within 15%, \"moved\" beyond. The scenario sections above \
are the last repeat's.";

#[derive(Debug)]
pub struct View<'a> {
    /// "Run from ... to ... (UTC)."
    pub period: String,
    /// Why the run stopped early, if it did.
    pub incomplete: Option<String>,
    pub sides: Table,
    pub summary: Table,
    pub summary_note: &'static str,
    /// Where each side's time per request goes on hello, when a run measured it.
    pub breakdown: Option<super::breakdown::Breakdown>,
    pub scenarios: Vec<ScenarioView<'a>>,
    /// Many applications: the idle fleets and what they cost.
    pub many: Option<ManyView>,
    /// (group, key, value): machine, versions, settings.
    pub environment: Vec<(&'static str, String, String)>,
}

#[derive(Debug)]
pub struct ScenarioView<'a> {
    pub result: &'a ScenarioResult,
    /// `GET /hello/`, connections, warm-up, timeout.
    pub setup: String,
    /// The rate and rounds of a fixed scenario, or a sweep's rule.
    pub plan: Option<String>,
    pub table: Table,
    pub table_note: Option<&'static str>,
    /// Who wins each figure, then warnings about the runs.
    pub bullets: Vec<Bullet>,
}

#[derive(Debug)]
pub struct ManyView {
    pub idle: Table,
    pub notes: Vec<String>,
    /// What many quiet applications cost, and how it was worked out.
    pub costs: Option<(Table, String)>,
}

/// Under the idle table.
pub const IDLE_NOTE: &str = "Each side's fleet sampled for a few seconds with no traffic, \
right after it was set up. Memory is PSS where read (pages shared between processes, such \
as one binary's code, counted once), per application that total divided by the \
applications; CPU in cores (CPU seconds per second).";

#[derive(Debug, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One line of a list; `lead`, if any, is shown in bold before the text.
#[derive(Debug)]
pub struct Bullet {
    pub lead: Option<&'static str>,
    pub text: String,
}

impl Bullet {
    fn plain(text: String) -> Self {
        Self { lead: None, text }
    }
}

pub fn view(report: &Report) -> View<'_> {
    let meta = &report.meta;
    let sides: Vec<String> = report.sides.iter().map(|s| s.name.clone()).collect();
    View {
        period: format!("Run from {} to {} (UTC).", meta.started, meta.finished),
        incomplete: meta.interrupted.clone(),
        sides: Table {
            header: ["side", "what", "URL"].map(String::from).to_vec(),
            rows: report
                .sides
                .iter()
                .map(|s| vec![s.name.clone(), s.description.clone(), s.url.clone()])
                .collect(),
        },
        summary: summary(report),
        summary_note: "S = serverless, T = traditional; (×) = S / T.",
        breakdown: super::breakdown::breakdown(report),
        scenarios: report
            .scenarios
            .iter()
            .map(|scenario| {
                // Only the sides that ran it: the peer serves hello alone.
                let sides: Vec<String> = sides
                    .iter()
                    .filter(|side| scenario.runs_of(side).next().is_some())
                    .cloned()
                    .collect();
                match scenario.sweep {
                    _ if !scenario.cold.is_empty() || scenario.runs.is_empty() => cold(scenario),
                    Some(_) => sweep(scenario, &sides),
                    None => fixed(scenario, &sides),
                }
            })
            .collect(),
        many: many(report),
        environment: [
            ("machine", &meta.machine),
            ("versions", &meta.versions),
            ("settings", &meta.settings),
        ]
        .into_iter()
        .flat_map(|(group, map)| map.iter().map(move |(k, v)| (group, k.clone(), v.clone())))
        .collect(),
    }
}

fn many(report: &Report) -> Option<ManyView> {
    let fleet = report.fleet.as_ref()?;
    let bytes = |b: f64| figures::format(Unit::Bytes, b);
    Some(ManyView {
        idle: Table {
            header: [
                "side",
                "fleet",
                "applications",
                "memory",
                "per application",
                "RSS",
                "CPU while idle",
            ]
            .map(String::from)
            .to_vec(),
            rows: fleet
                .idle
                .iter()
                .map(|i| {
                    vec![
                        i.side.clone(),
                        i.description.clone(),
                        i.applications.to_string(),
                        bytes(i.memory_bytes()),
                        bytes(i.per_application_bytes()),
                        bytes(i.usage.resident_peak_bytes as f64),
                        format!("{:.4} cores", i.cores()),
                    ]
                })
                .collect(),
        },
        notes: fleet.notes.clone(),
        costs: super::costs::fleet_table(report),
    })
}

/// A cold-start scenario: each series' distribution; or why no side ran it.
fn cold(scenario: &ScenarioResult) -> ScenarioView<'_> {
    let ms = |v: f64| format!("{v:.2} ms");
    let rows = scenario
        .cold
        .iter()
        .map(|series| {
            let mut v = series.samples_ms.clone();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| {
                v.get(((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1)
                    .copied()
                    .map_or("–".to_string(), ms)
            };
            vec![
                series.side.clone(),
                series.what.clone(),
                v.len().to_string(),
                at(0.5),
                at(0.99),
                v.first().copied().map_or("–".to_string(), ms),
                v.last().copied().map_or("–".to_string(), ms),
            ]
        })
        .collect();
    ScenarioView {
        result: scenario,
        setup: format!(
            "`{} {}`, one request per start.",
            scenario.method, scenario.path
        ),
        plan: None,
        table: Table {
            header: ["side", "what", "samples", "p50", "p99", "min", "max"]
                .map(String::from)
                .to_vec(),
            rows,
        },
        table_note: None,
        bullets: skipped(scenario),
    }
}

/// Which sides did not run a scenario, and why.
fn skipped(scenario: &ScenarioResult) -> Vec<Bullet> {
    scenario
        .skipped
        .iter()
        .map(|(side, why)| Bullet {
            lead: Some("not run"),
            text: format!("{side}: {why}"),
        })
        .collect()
}

fn summary(report: &Report) -> Table {
    let header = [
        "scenario",
        "p50 S / T",
        "p99 S / T",
        "CPU s per 1000 req S / T",
        "peak RSS S / T",
        "errors S / T",
    ];
    let mut rows = Vec::new();
    for scenario in &report.scenarios {
        if scenario.runs.is_empty() {
            continue;
        }
        if let Some(limits) = scenario.sweep {
            let best = |side| {
                scenario
                    .best_rate(side)
                    .map_or("none".to_string(), |r| format!("{r} req/s"))
            };
            let mut row = vec![
                scenario.name.clone(),
                format!(
                    "highest rate with p99 ≤ {} ms: serverless {}, traditional {}",
                    limits.p99_limit_ms,
                    best(SERVERLESS),
                    best(TRADITIONAL)
                ),
            ];
            row.resize(header.len(), String::new());
            rows.push(row);
            continue;
        }
        let figures = figures::rows(scenario, &[SERVERLESS.to_string(), TRADITIONAL.to_string()]);
        let pair = |name: &str| {
            let row = figures
                .iter()
                .find(|r| r.figure.name == name)
                .expect("figure");
            let one = |i: usize| {
                row.sides[i].as_ref().map_or("–".to_string(), |s| {
                    figures::format(row.figure.unit, s.median)
                })
            };
            let ratio = figures::ratio_text(row)
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("{} / {}{ratio}", one(0), one(1))
        };
        rows.push(vec![
            scenario.name.clone(),
            pair("latency p50"),
            pair("latency p99"),
            pair("CPU seconds per 1000 requests"),
            pair("peak RSS"),
            pair("errors"),
        ]);
    }
    Table {
        header: header.map(String::from).to_vec(),
        rows,
    }
}

fn setup(scenario: &ScenarioResult) -> String {
    format!(
        "`{} {}`, {} connections, {} s warm-up, {} s timeout.",
        scenario.method,
        scenario.path,
        scenario.connections,
        scenario.warmup_seconds,
        scenario.timeout_seconds
    )
}

fn fixed<'a>(scenario: &'a ScenarioResult, sides: &[String]) -> ScenarioView<'a> {
    let plan = scenario.runs.first().map(|first| {
        let rounds = scenario.runs.iter().map(|r| r.round).max().unwrap_or(0) + 1;
        let why = match scenario.stability {
            Some(s) if s.max_rounds > s.min_rounds && s.settled => format!(
                " (at least {}, until the headline ratios' rounds agreed within {:.0}%)",
                s.min_rounds,
                s.tolerance * 100.0
            ),
            Some(s) if s.max_rounds > s.min_rounds => format!(
                " (the most allowed: the headline ratios' rounds still differed by more \
                 than {:.0}%)",
                s.tolerance * 100.0
            ),
            _ => String::new(),
        };
        format!(
            "{} req/s, {} measured requests per run, {rounds} round(s){why}.",
            first.rate, first.requests
        )
    });
    let figures = figures::rows(scenario, sides);
    let mut header = vec!["figure".to_string()];
    header.extend(sides.iter().cloned());
    header.push("S / T".into());
    let rows = figures
        .iter()
        // Cold starts only where the scenario can have them: spread over applications.
        .filter(|row| row.figure.name != figures::COLD_STARTS || scenario.applications.is_some())
        .map(|row| {
            let virtual_memory =
                row.figure.unit == Unit::Bytes && row.figure.name.starts_with("virtual");
            let mark = if virtual_memory { " ¹" } else { "" };
            let mut cells = vec![format!("{}{mark}", row.figure.name)];
            cells.extend(row.sides.iter().map(|side| {
                side.as_ref()
                    .map_or("–".to_string(), |s| figures::spread(row.figure.unit, s))
            }));
            cells.push(figures::ratio_text(row).unwrap_or_else(|| "–".to_string()));
            cells
        })
        .collect();
    let mut bullets: Vec<Bullet> = figures
        .iter()
        .filter_map(|row| row.verdict.clone())
        .map(Bullet::plain)
        .collect();
    bullets.extend(against_the_peer(scenario));
    bullets.extend(between_the_abis(scenario));
    bullets.extend(between_the_languages(scenario));
    bullets.extend(warnings(scenario));
    bullets.extend(skipped(scenario));
    ScenarioView {
        result: scenario,
        setup: setup(scenario),
        plan,
        table: Table { header, rows },
        table_note: Some("¹ A reservation, not a cost: see the note at the top."),
        bullets,
    }
}

fn sweep<'a>(scenario: &'a ScenarioResult, sides: &[String]) -> ScenarioView<'a> {
    let limits = scenario.sweep.expect("a sweep");
    let plan = format!(
        "Rates rise until a side fails a step: p99 above {} ms, errors above {:.2}%, or less \
         than 90% of the target rate achieved. A failed step is tried once more before the \
         side stops (attempt 2 in the table). Sides alternate at every step.",
        limits.p99_limit_ms,
        limits.max_error_ratio * 100.0
    );
    let header = [
        "side",
        "target req/s",
        "attempt",
        "achieved req/s",
        "p50",
        "p99",
        "p99.9",
        "errors",
        "CPU s per 1000 req",
        "peak RSS",
        "passes",
    ];
    let mut rows = Vec::new();
    for side in sides {
        for run in scenario.runs_of(side) {
            rows.push(vec![
                side.clone(),
                run.rate.to_string(),
                (run.round + 1).to_string(),
                format!("{:.0}", run.achieved_rate),
                figures::micros(run.latency_us.p50),
                figures::micros(run.latency_us.p99),
                figures::micros(run.latency_us.p999),
                run.error_count().to_string(),
                run.cpu_per_1000()
                    .map_or("–".into(), |c| format!("{c:.3} s")),
                run.usage.map_or("–".into(), |u| {
                    figures::bytes(u.resident_peak_bytes as f64)
                }),
                if passes(run, limits) { "yes" } else { "no" }.to_string(),
            ]);
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
    let mut bullets = vec![Bullet::plain(format!(
        "Highest rate within the limits: {sentence} A side that passed the last step may go \
         higher: add rates to find its limit."
    ))];
    let rate = |side| best(side).map_or("no step".to_string(), |r| format!("{r} req/s"));
    for (side, lead, what) in [
        (
            PEER,
            "Against the reference host",
            "`wasmtime serve` on the same component",
        ),
        (
            SERVERLESS_WAGI,
            "WASI 0.1 against WASI 0.2",
            "serverless-wagi (the same handler as a WAGI module)",
        ),
        (
            SERVERLESS_JS,
            "In JavaScript",
            "serverless-js (the seed's Node handler as a component)",
        ),
        (
            SERVERLESS_PYTHON,
            "In Python",
            "serverless-python (the handler in Python, as a component)",
        ),
        (
            SEED_NODE,
            "The seed's Node",
            "seed-node (Express, long-running)",
        ),
    ] {
        if scenario.runs_of(side).next().is_some() {
            bullets.push(Bullet {
                lead: Some(lead),
                text: format!(
                    "{what} passed up to {}; serverless up to {}.",
                    rate(side),
                    rate(SERVERLESS)
                ),
            });
        }
    }
    bullets.extend(warnings(scenario));
    bullets.extend(skipped(scenario));
    ScenarioView {
        result: scenario,
        setup: setup(scenario),
        plan: Some(plan),
        table: Table {
            header: header.map(String::from).to_vec(),
            rows,
        },
        table_note: None,
        bullets,
    }
}

/// How the runtime compares with the reference wasi:http host (`wasmtime serve`) on the
/// same component, when the peer was measured: the ratio serverless / peer per figure.
fn against_the_peer(scenario: &ScenarioResult) -> Option<Bullet> {
    let parts = ratios(scenario, SERVERLESS, PEER)?;
    Some(Bullet {
        lead: Some("Against the reference host"),
        text: format!(
            "serverless / peer (`wasmtime serve` on the same component): {}.",
            parts.join("; ")
        ),
    })
}

/// What each ABI costs per request, when the WASI 0.1 builds ran beside the components:
/// the ratio serverless-wagi / serverless per figure.
fn between_the_abis(scenario: &ScenarioResult) -> Option<Bullet> {
    let parts = ratios(scenario, SERVERLESS_WAGI, SERVERLESS)?;
    Some(Bullet {
        lead: Some("WASI 0.1 against WASI 0.2"),
        text: format!(
            "serverless-wagi / serverless (the same handler as a WAGI module and as a \
             wasi:http component, in the same runtime): {}.",
            parts.join("; ")
        ),
    })
}

/// What each language costs per request, when its side ran: the JavaScript component
/// against the same handlers in Node/Express (the seed's serverless side), and each
/// language against the Rust component.
fn between_the_languages(scenario: &ScenarioResult) -> Vec<Bullet> {
    let mut bullets = Vec::new();
    for (a, b, lead, what) in [
        (
            SERVERLESS_JS,
            SEED_NODE,
            "JavaScript, fresh instance against long-running Node",
            "serverless-js / seed-node (the seed's Node handlers as a component, a fresh \
             instance per request, against the same code in Express)",
        ),
        (
            SERVERLESS_JS,
            SERVERLESS,
            "JavaScript against Rust",
            "serverless-js / serverless (the same function in JavaScript and in Rust, both \
             components in the runtime)",
        ),
        (
            SERVERLESS_PYTHON,
            SERVERLESS,
            "Python against Rust",
            "serverless-python / serverless (the same function in Python and in Rust, both \
             components in the runtime)",
        ),
    ] {
        if let Some(parts) = ratios(scenario, a, b) {
            bullets.push(Bullet {
                lead: Some(lead),
                text: format!("{what}: {}.", parts.join("; ")),
            });
        }
    }
    bullets
}

/// `a`'s median against `b`'s for the headline figures, as "name A against B (A/B×)";
/// `None` when `b` did not run.
fn ratios(scenario: &ScenarioResult, a: &str, b: &str) -> Option<Vec<String>> {
    scenario.runs_of(b).next()?;
    scenario.runs_of(a).next()?;
    let median =
        |side: &str, get: fn(&Run) -> Option<f64>| scenario.spread_of(side, get).map(|s| s.median);
    Some(
        [
            "achieved rate",
            "latency p50",
            "latency p99",
            "CPU seconds per 1000 requests",
            "peak RSS",
        ]
        .iter()
        .filter_map(|name| {
            let figure = FIGURES.iter().find(|f| f.name == *name)?;
            let (x, y) = (median(a, figure.get)?, median(b, figure.get)?);
            (y > 0.0).then(|| {
                format!(
                    "{name} {} against {} ({:.2}×)",
                    figures::format(figure.unit, x),
                    figures::format(figure.unit, y),
                    x / y
                )
            })
        })
        .collect(),
    )
}

/// What could make a scenario's figures less trustworthy: the generator falling behind
/// its schedule, queueing for connections, the hypervisor taking CPU.
fn warnings(scenario: &ScenarioResult) -> Vec<Bullet> {
    let mut bullets = Vec::new();
    bullets.extend(cross_checks(scenario));
    bullets.extend(generator_note(scenario));
    bullets.extend(steal_note(scenario));
    bullets
}

/// The servers' own view beside the client's, per side that has our `/metrics`: their
/// p50 and p99 (medians over rounds) and the requests they counted against those sent.
/// A client p50 far above the server's is flagged: then the time went somewhere between
/// them (a proxy, the network, or the generator itself), not into the server.
fn cross_checks(scenario: &ScenarioResult) -> Vec<Bullet> {
    let mut sides: Vec<&str> = Vec::new();
    for run in &scenario.runs {
        if !sides.contains(&run.side.as_str()) {
            sides.push(&run.side);
        }
    }
    let mut bullets = Vec::new();
    for side in sides {
        let runs: Vec<&Run> = scenario.runs_of(side).collect();
        let median =
            |get: &dyn Fn(&Run) -> Option<f64>| scenario.spread_of(side, get).map(|s| s.median);
        let (Some(server_p50), Some(server_p99)) = (
            median(&|r| r.server_latency_us.map(|l| l.p50_us)),
            median(&|r| r.server_latency_us.map(|l| l.p99_us)),
        ) else {
            continue;
        };
        let client_p50 = median(&|r| Some(r.latency_us.p50)).unwrap_or(0.0);
        let client_p99 = median(&|r| Some(r.latency_us.p99)).unwrap_or(0.0);
        let counted: f64 = runs.iter().filter_map(|r| r.server_counted).sum();
        let sent: u64 = runs.iter().map(|r| r.requests).sum();
        let gap = client_p50 - server_p50;
        let flagged = gap > 1000.0_f64.max(2.0 * server_p50);
        bullets.push(Bullet {
            lead: Some(if flagged {
                "Client and server disagree"
            } else {
                "Server's own view"
            }),
            text: format!(
                "{side} measured p50 {} and p99 {} itself (the client: {} and {}); it counted \
                 {counted:.0} requests over the rounds, warm-ups included, for {sent} measured.{}",
                figures::micros(server_p50),
                figures::micros(server_p99),
                figures::micros(client_p50),
                figures::micros(client_p99),
                if flagged {
                    " The client waited far longer than the server worked: the time went \
                     between them (a proxy, the network, or the generator's own queue)."
                } else {
                    ""
                }
            ),
        });
    }
    bullets
}

/// Says when the hypervisor took a noticeable share of the CPU during a run.
fn steal_note(scenario: &ScenarioResult) -> Option<Bullet> {
    let (share, run) = scenario
        .runs
        .iter()
        .filter_map(|r| Some((r.steal_share?, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    (share > 0.01).then(|| Bullet {
        lead: Some("Noisy machine"),
        text: format!(
            "during the worst run ({} at {} req/s) the hypervisor took {:.1}% of the \
             machine's CPU time (steal). Neither side nor the generator could run then; tail \
             latencies of such runs say more about the neighbours than the sides.",
            run.side,
            run.rate,
            share * 100.0
        ),
    })
}

/// Flags runs where requests left well after their intended time, and says whose fault
/// it was: the generator's own scheduler (its figures are suspect) or a full connection
/// pool (the server fell behind, which latency already counts).
fn generator_note(scenario: &ScenarioResult) -> Option<Bullet> {
    let worst = |pick: fn(&Run) -> f64| {
        scenario
            .runs
            .iter()
            .max_by(|a, b| pick(a).total_cmp(&pick(b)))
    };
    if let Some(run) = worst(|r| r.schedule_lag_us.p99)
        && run.schedule_lag_us.p99 > 1000.0
    {
        return Some(Bullet {
            lead: Some("Generator behind"),
            text: format!(
                "in the worst run ({} at {} req/s) the load generator released 1% of \
                 requests more than {} after they were due (it found no free core). Latency \
                 does not include that lateness, but the load offered was burstier than \
                 planned; treat that run's tail figures with care.",
                run.side,
                run.rate,
                figures::micros(run.schedule_lag_us.p99)
            ),
        });
    }
    let run = worst(|r| r.send_lag_us.p99)?;
    (run.send_lag_us.p99 > 1000.0).then(|| Bullet {
        lead: Some("Queueing"),
        text: format!(
            "in the worst run ({} at {} req/s) 1% of requests waited more than {} for a \
             free connection, because earlier responses were slow. Latency counts that wait \
             (open loop).",
            run.side,
            run.rate,
            figures::micros(run.send_lag_us.p99)
        ),
    })
}
