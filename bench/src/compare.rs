//! `bench compare`: start both sides locally on free loopback ports, deploy the example
//! functions into the runtime through its deploy API (and wait for their optimized code;
//! components, or with `--serverless-abi p1` their WASI 0.1 builds, and both when the
//! `serverless-wagi` side runs beside),
//! check that both sides answer every example correctly, run the scenarios, stop
//! everything, write the report.

use crate::cli::{Abi, CompareArgs, SideKind};
use crate::report::{SideInfo, figures};
use crate::runner::{Runner, Side};
use crate::sample::ProcessSet;
use anyhow::{Context, bail, ensure};
use localrun::{Nginx, SeedNode, SeedPhp, Service};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A runtime side serving the example functions written in another language.
#[derive(Debug)]
struct Language {
    kind: SideKind,
    side: &'static str,
    description: &'static str,
    functions: &'static [(&'static str, &'static str, &'static str)],
}

const LANGUAGES: &[Language] = &[
    Language {
        kind: SideKind::ServerlessJs,
        side: figures::SERVERLESS_JS,
        description: "runtime: a fresh instance per request of the same functions written in JavaScript (the seed's Node handlers), components built by componentize-js (StarlingMonkey)",
        functions: artifacts::JS_FUNCTIONS,
    },
    Language {
        kind: SideKind::ServerlessPython,
        side: figures::SERVERLESS_PYTHON,
        description: "runtime: a fresh instance per request of the same functions written in Python, components built by componentize-py (CPython)",
        functions: artifacts::PYTHON_FUNCTIONS,
    },
];

/// The one function the peer serves: `wasmtime serve` runs a single component.
const PEER_FUNCTION: &str = "hello";

/// `wasmtime serve`, started on the same component the runtime serves as `hello`.
#[derive(Debug)]
struct Peer {
    service: Service,
    /// What `wasmtime --version` says.
    version: String,
}

impl Peer {
    fn start(wasmtime: &Path) -> anyhow::Result<Self> {
        let out = Command::new(wasmtime)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", wasmtime.display()))?;
        ensure!(
            out.status.success(),
            "{} --version failed: is it the wasmtime CLI? (scripts/install-wasmtime-cli installs one)",
            wasmtime.display()
        );
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let component = artifacts::FUNCTIONS
            .iter()
            .find(|(name, _)| *name == PEER_FUNCTION)
            .map(|(_, path)| *path)
            .expect("hello is an example function");
        // Its defaults, plus `-S cli`: Rust's std imports wasi:cli, which `wasmtime
        // serve` only links on request (the runtime links it always).
        let service = Service::start_with(
            Command::new(wasmtime)
                .args(["serve", "--addr", "127.0.0.1:0", "-S", "cli"])
                .arg(component),
            &["traffic"],
        )
        .context("starting wasmtime serve (the peer)")?;
        Ok(Self { service, version })
    }
}

/// A runtime on free loopback ports with a store of its own, serving what is deployed
/// into it.
#[derive(Debug)]
struct Runtime {
    service: Service,
    _store: tempfile::TempDir,
}

impl Runtime {
    fn start(bin: &Path) -> anyhow::Result<Self> {
        let store = tempfile::tempdir().context("creating the runtime's store directory")?;
        let service = Service::start_with(
            Command::new(bin)
                .args(LOOPBACK)
                .arg("--store-dir")
                .arg(store.path())
                .env("RUST_LOG", "warn"),
            &["traffic", "ops"],
        )?;
        Ok(Self {
            service,
            _store: store,
        })
    }

    /// Deploys every `(name, path)` through the deploy API and waits until each runs
    /// Cranelift's code; returns each function's effective limits, as the deploy
    /// responses state them.
    async fn deploy(
        &self,
        client: &reqwest::Client,
        functions: &[(&str, &str)],
    ) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
        let with_defaults: Vec<_> = functions.iter().map(|(n, p)| (*n, *p, "")).collect();
        self.deploy_with(client, &with_defaults).await
    }

    /// Deploys (name, component, settings TOML) each; their effective limits.
    async fn deploy_with(
        &self,
        client: &reqwest::Client,
        functions: &[(&str, &str, &str)],
    ) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
        let ops = self.service.url("ops");
        let mut limits = BTreeMap::new();
        for (name, path, settings) in functions {
            let wasm = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            let query = settings_query(settings).with_context(|| format!("{name}'s settings"))?;
            let deployed = put_function(client, &ops, &format!("{name}{query}"), wasm).await?;
            limits.insert(name.to_string(), deployed["limits"].clone());
        }
        // A first deploy is served by Winch's quickly compiled code until Cranelift's
        // swaps in from the background: measure the steady state, not that window.
        for (name, _, _) in functions {
            wait_for_cranelift(client, &ops, name).await?;
        }
        Ok(limits)
    }
}

/// A settings file's numeric limits (`NAME.toml` beside a function) as the deploy API's
/// query string: `?memory_mib=192`, or nothing.
fn settings_query(settings: &str) -> anyhow::Result<String> {
    let table: toml::Table = settings.parse()?;
    let mut pairs = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value.as_integer()) {
            ("memory_mib" | "max_concurrency" | "max_body_bytes", Some(n)) => {
                pairs.push(format!("{key}={n}"))
            }
            _ => bail!("the bench deploys only numeric limits, not {key} = {value}"),
        }
    }
    Ok(match pairs.is_empty() {
        true => String::new(),
        false => format!("?{}", pairs.join("&")),
    })
}

/// Deploys `wasm` as `name` (and a query string after it) into the runtime at `ops`; its
/// deploy response.
pub(crate) async fn put_function(
    client: &reqwest::Client,
    ops: &str,
    name: &str,
    wasm: Vec<u8>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{ops}/functions/{name}");
    let response = client
        .put(&url)
        .body(wasm)
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    let status = response.status();
    ensure!(
        status.is_success(),
        "deploying {name}: {status} {}",
        response.text().await.unwrap_or_default()
    );
    Ok(response.json().await?)
}

/// Waits (up to two minutes) until the runtime at `ops` runs Cranelift's code for `name`.
pub(crate) async fn wait_for_cranelift(
    client: &reqwest::Client,
    ops: &str,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let url = format!("{ops}/functions/{name}");
    loop {
        let info: serde_json::Value = client.get(&url).send().await?.json().await?;
        if info["compiler"] == "cranelift" {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{name} still runs {} code two minutes after its deploy",
            info["compiler"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) const LOOPBACK: [&str; 4] = ["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"];

/// What only `compare` can do for the scenarios: cold starts (fresh processes) and the
/// fleets' idle figures.
#[derive(Debug)]
struct Extras {
    fleets: Option<crate::fleet::Fleets>,
    /// Prometheus and the dashboard's row, with `--glance`.
    glance: Option<crate::glance::Live>,
    runtime_bin: PathBuf,
    webserver_bin: PathBuf,
    peer: Option<PathBuf>,
    abi: Abi,
}

impl crate::Servers for Extras {
    fn cold_starts(
        &mut self,
        runner: &Runner,
        scenario: &crate::scenario::Scenario,
    ) -> anyhow::Result<Vec<crate::report::ColdSeries>> {
        let function = service_ops::traffic::function_name(&scenario.path);
        let wasm = crate::fleet::component(self.abi.functions(), function)?;
        let plan = crate::fleet::ColdPlan {
            runtime_bin: &self.runtime_bin,
            webserver_bin: &self.webserver_bin,
            // The peer serves hello's component alone.
            peer: self
                .peer
                .as_deref()
                .filter(|_| function == PEER_FUNCTION && self.abi == Abi::P2),
            wasm: &wasm,
        };
        crate::fleet::cold_starts(&plan, runner, scenario)
    }

    fn fleet(&self) -> Option<crate::report::Fleet> {
        self.fleets.as_ref().map(crate::fleet::Fleets::report)
    }

    fn scenario_starting(&mut self, scenario: &crate::scenario::Scenario) {
        if let Some(glance) = &self.glance {
            glance.before(scenario);
        }
    }

    fn scenario_done(&mut self, result: &mut crate::report::ScenarioResult) {
        if let Some(glance) = &mut self.glance {
            glance.after(result);
        }
    }
}

/// Everything `compare` started; stopped on drop (also on error or ctrl-c).
#[derive(Debug)]
struct Local {
    runtime: Runtime,
    /// The second runtime, serving the WASI 0.1 builds, for `serverless-wagi`.
    runtime_wagi: Option<Runtime>,
    /// A runtime for each language side asked for (`serverless-js`, `serverless-python`).
    languages: Vec<(&'static Language, Runtime)>,
    webserver: Service,
    nginx: Nginx,
    peer: Option<Peer>,
    seed_php: Option<SeedPhp>,
    seed_node: Option<SeedNode>,
    /// Each function's effective limits, as the runtime's deploy responses state them.
    limits: BTreeMap<String, serde_json::Value>,
}

impl Local {
    fn stop(mut self) {
        // SIGTERM first, so both servers drain and exit the way they would in production;
        // whatever is still running when the handles drop is killed.
        let peer = self.peer.as_mut().map(|p| &mut p.service);
        let node = self.seed_node.as_mut().map(|n| &mut n.service);
        let wagi = self.runtime_wagi.as_mut().map(|r| &mut r.service);
        for (_, runtime) in &mut self.languages {
            if let Err(e) = runtime.service.terminate(Duration::from_secs(10)) {
                eprintln!("warning: {e:#}");
            }
        }
        for service in [
            Some(&mut self.runtime.service),
            wagi,
            Some(&mut self.webserver),
            peer,
            node,
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = service.terminate(Duration::from_secs(10)) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let scenarios = args.common.scenarios()?;
    ensure!(
        args.wants(SideKind::Serverless) && args.wants(SideKind::Traditional),
        "--sides must include serverless and traditional (the comparison is between them; \
         the others are added to it)"
    );
    ensure!(
        !(args.wants(SideKind::ServerlessWagi) && args.serverless_abi == Abi::P1),
        "serverless-wagi sets the WASI 0.1 builds beside the serverless side's components: \
         leave --serverless-abi at p2 to compare the two ABIs"
    );
    // Before anything starts: a missing program is the most likely mistake.
    let nginx_binary = localrun::find_nginx()?;
    if args.wants(SideKind::SeedPhp) {
        localrun::find_php_fpm()?;
    }
    if args.wants(SideKind::SeedNode) {
        localrun::find_node()?;
    }
    let (runtime_bin, webserver_bin) = binaries(args)?;
    let runner = Runner::new(args.common.runner_options())?;

    let local = start(args, &runtime_bin, &webserver_bin, &runner)?;
    let fleets = match crate::fleet::spread_of(&scenarios)? {
        None => None,
        Some((function, applications)) => {
            let wasm = crate::fleet::component(args.serverless_abi.functions(), &function)?;
            Some(crate::fleet::Fleets::start(
                &crate::fleet::FleetPlan {
                    runtime_bin: &runtime_bin,
                    webserver_bin: &webserver_bin,
                    function: &function,
                    wasm: &wasm,
                    applications,
                    components: args.fleet_components,
                    max_servers: args.fleet_max_servers,
                    nginx_workers: args.nginx_workers(),
                },
                &runner,
            )?)
        }
    };
    let runtime_side = |name: &str, runtime: &Runtime, description: &str| Side {
        info: SideInfo {
            name: name.into(),
            description: description.into(),
            url: runtime.service.url("traffic"),
        },
        processes: Some(ProcessSet {
            pids: vec![runtime.service.pid()],
            trees: vec![],
        }),
        metrics_url: Some(format!("{}/metrics", runtime.service.url("ops"))),
        serves: None,
        fleet: None,
    };
    let mut sides = vec![
        Side {
            fleet: fleets.as_ref().and_then(|f| f.runtime_target.clone()),
            ..runtime_side(
                figures::SERVERLESS,
                &local.runtime,
                args.serverless_abi.describe(),
            )
        },
        Side {
            info: SideInfo {
                name: figures::TRADITIONAL.into(),
                description: format!(
                    "nginx ({} workers) in front of the webserver: the same handlers linked natively",
                    args.nginx_workers()
                ),
                url: local.nginx.url(),
            },
            processes: Some(ProcessSet {
                pids: vec![local.webserver.pid()],
                trees: vec![local.nginx.pid()],
            }),
            metrics_url: Some(format!("{}/metrics", local.webserver.url("ops"))),
            serves: None,
            fleet: fleets.as_ref().and_then(|f| f.traditional_target.clone()),
        },
    ];
    if args.wants(SideKind::Direct) {
        sides.push(Side {
            info: SideInfo {
                name: figures::DIRECT.into(),
                description: "the webserver alone, without nginx: what the proxy costs".into(),
                url: local.webserver.url("traffic"),
            },
            processes: Some(ProcessSet {
                pids: vec![local.webserver.pid()],
                trees: vec![],
            }),
            metrics_url: Some(format!("{}/metrics", local.webserver.url("ops"))),
            serves: None,
            fleet: None,
        });
    }
    if let Some(wagi) = &local.runtime_wagi {
        sides.push(runtime_side(
            figures::SERVERLESS_WAGI,
            wagi,
            Abi::P1.describe(),
        ));
    }
    for (language, runtime) in &local.languages {
        sides.push(runtime_side(language.side, runtime, language.description));
    }
    if let Some(php) = &local.seed_php {
        sides.push(Side {
            info: SideInfo {
                name: figures::SEED_PHP.into(),
                description: format!(
                    "the seed's PHP stack: {}, a static pool of {} workers, behind nginx ({} workers) over FastCGI",
                    php.fpm.version(),
                    args.php_fpm_children,
                    args.nginx_workers()
                ),
                url: php.url(),
            },
            processes: Some(ProcessSet {
                pids: vec![],
                trees: vec![php.nginx.pid(), php.fpm.pid()],
            }),
            // PHP-FPM has no per-request metrics of ours (its status page counts
            // accepted connections); the client's counts stand alone.
            metrics_url: None,
            serves: None,
            fleet: None,
        });
    }
    if let Some(node) = &local.seed_node {
        sides.push(Side {
            info: SideInfo {
                name: figures::SEED_NODE.into(),
                description: format!(
                    "the seed's Node stack: {}, one process, prom-client metrics under our names",
                    node.version()
                ),
                url: node.service.url("traffic"),
            },
            processes: Some(ProcessSet {
                pids: vec![node.service.pid()],
                trees: vec![],
            }),
            metrics_url: Some(format!("{}/metrics", node.service.url("ops"))),
            serves: None,
            fleet: None,
        });
    }
    if let Some(peer) = &local.peer {
        sides.push(Side {
            info: SideInfo {
                name: figures::PEER.into(),
                description: format!(
                    "{}: `wasmtime serve -S cli` on hello's wasi:http component, the reference wasi:http host (hello scenarios only)",
                    peer.version
                ),
                url: peer.service.url("traffic"),
            },
            processes: Some(ProcessSet {
                pids: vec![peer.service.pid()],
                trees: vec![],
            }),
            metrics_url: None,
            serves: Some(vec![PEER_FUNCTION.into()]),
            fleet: None,
        });
    }

    let mut settings = args.common.settings();
    settings.insert("nginx workers".into(), args.nginx_workers().to_string());
    settings.insert(
        "serverless functions".into(),
        match args.serverless_abi {
            Abi::P2 => "wasi:http components (wasm32-wasip2)",
            Abi::P1 => "WASI 0.1 modules served the WAGI way (wasm32-wasip1)",
        }
        .into(),
    );
    if local.seed_php.is_some() {
        settings.insert("php-fpm workers".into(), args.php_fpm_children.to_string());
    }
    // What a language costs starts with what each instance is made from.
    let sizes = |functions: &mut dyn Iterator<Item = (&str, &str)>| {
        functions
            .map(|(name, path)| {
                let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
                format!("{name} {}", figures::bytes(bytes as f64))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    settings.insert(
        "serverless component sizes".into(),
        sizes(&mut args.serverless_abi.functions().iter().copied()),
    );
    for (language, _) in &local.languages {
        settings.insert(
            format!("{} component sizes", language.side),
            sizes(&mut language.functions.iter().map(|(n, p, _)| (*n, *p))),
        );
    }
    settings.extend(runtime_limits(&local.limits));
    let mut meta = crate::versions_and_settings(Some(&nginx_binary), settings);
    if let Some(peer) = &local.peer {
        meta.versions
            .insert("wasmtime serve (peer)".into(), peer.version.clone());
    }
    if let Some(php) = &local.seed_php {
        meta.versions
            .insert("php-fpm (seed-php)".into(), php.fpm.version().to_string());
    }
    if let Some(node) = &local.seed_node {
        meta.versions
            .insert("node (seed-node)".into(), node.version().to_string());
    }
    let cost = args.common.cost.model()?;
    let glance =
        args.glance
            .then(|| {
                crate::glance::Live::start(
                    &crate::glance::Targets {
                        runtime: local.runtime.service.addr("ops").to_string(),
                        webserver: local.webserver.addr("ops").to_string(),
                        nginx: &local.nginx,
                        seed_node: local
                            .seed_node
                            .as_ref()
                            .map(|n| n.service.addr("ops").to_string()),
                        seed_php: local.seed_php.as_ref().map(|php| {
                            (format!("127.0.0.1:{}", php.nginx.ports().status), &php.fpm)
                        }),
                    },
                    &args.common.out,
                )
            })
            .transpose()
            .context("--glance: starting Prometheus")?;
    let mut extras = Extras {
        fleets,
        glance,
        runtime_bin,
        webserver_bin,
        peer: args.peer.clone(),
        abi: args.serverless_abi,
    };
    let outcome = crate::run_scenarios(
        &runner,
        &scenarios,
        &sides,
        meta,
        cost,
        args.common.repeat,
        &args.common.out,
        Some(&mut extras),
    );
    if let Some(fleets) = &mut extras.fleets {
        fleets.stop();
    }
    local.stop();
    outcome
}

fn start(
    args: &CompareArgs,
    runtime_bin: &Path,
    webserver_bin: &Path,
    runner: &Runner,
) -> anyhow::Result<Local> {
    let runtime = Runtime::start(runtime_bin).context("starting the runtime")?;
    let runtime_wagi = args
        .wants(SideKind::ServerlessWagi)
        .then(|| Runtime::start(runtime_bin))
        .transpose()
        .context("starting the runtime for serverless-wagi")?;
    let mut languages = Vec::new();
    for language in LANGUAGES {
        if args.wants(language.kind) {
            let runtime = Runtime::start(runtime_bin)
                .with_context(|| format!("starting the runtime for {}", language.side))?;
            languages.push((language, runtime));
        }
    }
    let webserver = Service::start_with(
        Command::new(webserver_bin)
            .args(LOOPBACK)
            .env("RUST_LOG", "warn"),
        &["traffic", "ops"],
    )
    .context("starting the webserver")?;
    let nginx =
        Nginx::start(webserver.addr("traffic"), args.nginx_workers()).context("starting nginx")?;
    let peer = args.peer.as_deref().map(Peer::start).transpose()?;
    let seed_php = args
        .wants(SideKind::SeedPhp)
        .then(|| SeedPhp::start(args.php_fpm_children, args.nginx_workers()))
        .transpose()
        .context("starting the seed's PHP stack")?;
    let seed_node = args
        .wants(SideKind::SeedNode)
        .then(SeedNode::start)
        .transpose()
        .context("starting the seed's Node stack")?;

    let limits = runner.block_on(async {
        let client = runner.client();
        let limits = runtime
            .deploy(client, args.serverless_abi.functions())
            .await?;
        if let Some(wagi) = &runtime_wagi {
            wagi.deploy(client, Abi::P1.functions())
                .await
                .context("serverless-wagi")?;
        }
        for (language, runtime) in &languages {
            runtime
                .deploy_with(client, language.functions)
                .await
                .context(language.side)?;
        }
        let mut checked = vec![
            ("runtime", runtime.service.url("traffic")),
            ("nginx", nginx.url()),
        ];
        checked.extend(
            runtime_wagi
                .as_ref()
                .map(|r| ("serverless-wagi", r.service.url("traffic"))),
        );
        checked.extend(
            languages
                .iter()
                .map(|(l, r)| (l.side, r.service.url("traffic"))),
        );
        checked.extend(seed_php.as_ref().map(|p| ("seed-php", p.url())));
        checked.extend(
            seed_node
                .as_ref()
                .map(|n| ("seed-node", n.service.url("traffic"))),
        );
        for (side, base) in checked {
            localrun::examples::check_all(client, &base)
                .await
                .with_context(|| format!("{side} does not answer the examples correctly"))?;
        }
        if let Some(peer) = &peer {
            // The peer answers hello as the others do (it serves nothing else).
            let url = format!("{}/{PEER_FUNCTION}/", peer.service.url("traffic"));
            let answer: serde_json::Value = client.get(&url).send().await?.json().await?;
            ensure!(
                answer["message"] == "Hello World!",
                "wasmtime serve answered {answer} for {url}"
            );
        }
        anyhow::Ok(limits)
    })?;
    eprintln!(
        "serverless: {}  traditional: {} (nginx) -> {} (webserver){}{}",
        runtime.service.url("traffic"),
        nginx.url(),
        webserver.url("traffic"),
        runtime_wagi
            .as_ref()
            .map(|r| format!("  serverless-wagi: {}", r.service.url("traffic")))
            .unwrap_or_default(),
        peer.as_ref()
            .map(|p| format!("  peer: {} ({})", p.service.url("traffic"), p.version))
            .unwrap_or_default()
    );
    Ok(Local {
        runtime,
        runtime_wagi,
        languages,
        webserver,
        nginx,
        peer,
        seed_php,
        seed_node,
        limits,
    })
}

/// The report's settings lines for the runtime's limits: one line when every function
/// got the same, else one per function.
fn runtime_limits(limits: &BTreeMap<String, serde_json::Value>) -> BTreeMap<String, String> {
    let describe = |l: &serde_json::Value| {
        let bytes = |v: &serde_json::Value| v.as_f64().map_or("?".into(), figures::bytes);
        format!(
            "memory {}, timeout {} s, {} concurrent instances, body {}",
            bytes(&l["memory_bytes"]),
            l["timeout_secs"],
            l["max_concurrency"],
            bytes(&l["max_body_bytes"])
        )
    };
    let mut distinct: Vec<&serde_json::Value> = limits.values().collect();
    distinct.dedup();
    match distinct.as_slice() {
        [one] => BTreeMap::from([(
            "runtime limits (from its deploy responses)".to_string(),
            format!("{} per function", describe(one)),
        )]),
        _ => limits
            .iter()
            .map(|(name, l)| (format!("runtime limits of {name}"), describe(l)))
            .collect(),
    }
}

/// The runtime and webserver binaries: given, or built now by cargo in the same profile
/// as this bench binary (so a release bench never measures debug servers, and a stale
/// binary from an older checkout is never measured).
fn binaries(args: &CompareArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(r), Some(w)) = (&args.runtime_bin, &args.webserver_bin) {
        for path in [r, w] {
            ensure!(path.is_file(), "{} does not exist", path.display());
        }
        return Ok((r.clone(), w.clone()));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    ensure!(
        manifest.is_file(),
        "the workspace ({}) is not here to build the servers from: pass --runtime-bin and --webserver-bin",
        manifest.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "-p", "runtime", "-p", "webserver"])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    eprintln!("building the runtime and the webserver ...");
    let out = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo to build the runtime and the webserver")?;
    if !out.status.success() {
        bail!("cargo could not build the runtime and the webserver (its errors are above)");
    }
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && let (Some(name), Some(exe)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            )
        {
            found.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    let pick = |given: &Option<PathBuf>, name: &str| {
        given
            .clone()
            .or_else(|| found.get(name).cloned())
            .with_context(|| format!("cargo built no {name} binary"))
    };
    Ok((
        pick(&args.runtime_bin, "runtime")?,
        pick(&args.webserver_bin, "webserver")?,
    ))
}

impl CompareArgs {
    pub fn nginx_workers(&self) -> usize {
        self.nginx_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn runtime_limits_are_one_line_when_every_function_has_the_same() {
        let same = json!({"memory_bytes": 134217728, "timeout_secs": 30.0, "max_concurrency": 200, "max_body_bytes": 16777216});
        let limits = [("a", same.clone()), ("b", same)]
            .map(|(n, l)| (n.to_string(), l))
            .into();
        let lines = super::runtime_limits(&limits);
        assert_eq!(lines.len(), 1);
        let line = &lines["runtime limits (from its deploy responses)"];
        assert!(
            line.contains("memory 128.0 MiB") && line.contains("timeout 30.0 s"),
            "{line}"
        );
        let mut limits = limits;
        limits.get_mut("b").unwrap()["memory_bytes"] = json!(1048576);
        let lines = super::runtime_limits(&limits);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines["runtime limits of b"].contains("memory 1.0 MiB"),
            "{lines:?}"
        );
    }
}
