//! Many applications on each side, and cold starts, for `bench compare`.
//!
//! The serverless side's fleet is one runtime with N functions deployed (distinct names
//! over a number of distinct components), restarted before it is measured so that
//! nothing is loaded, as after a deploy of the host. The traditional side's fair
//! counterpart is what the seed deployed for each of its apps: one server process per
//! application, here one webserver each, behind one nginx that routes `/hello-{i}/` to
//! application i. Both are sampled idle before any load.
//!
//! Cold starts: the first request to a function the runtime has not loaded (its code in
//! the compile cache), and, on every side, a fresh server process from its start to its
//! first answer.

use crate::report::{ColdSeries, Fleet, Idle, figures};
use crate::runner::{FleetTarget, Runner};
use crate::sample::{ProcessSet, Sampler};
use crate::scenario::{Scenario, Spread};
use anyhow::{Context, ensure};
use localrun::{Nginx, Service, Site};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long each fleet is sampled with no traffic.
const IDLE_FOR: Duration = Duration::from_secs(5);
/// Clients deploying into the runtime at once.
const DEPLOYERS: usize = 4;

/// A copy of `wasm` made distinct (its own digest, so its own compiled code) by a custom
/// section naming `i`, appended at the end as a component or module allows.
pub fn variant(wasm: &[u8], i: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                return;
            }
        }
    }
    let name = b"bench-variant";
    let payload = i.to_string();
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The many-applications deployments of both sides.
#[derive(Debug)]
pub struct Fleets {
    runtime: Option<Service>,
    _runtime_store: Option<tempfile::TempDir>,
    servers: Vec<Service>,
    nginx: Option<Nginx>,
    report: Fleet,
    /// What the runtime fleet and the traditional fleet hold.
    pub runtime_target: Option<FleetTarget>,
    pub traditional_target: Option<FleetTarget>,
}

/// What [`Fleets::start`] needs.
#[derive(Debug)]
pub struct FleetPlan<'a> {
    pub runtime_bin: &'a Path,
    pub webserver_bin: &'a Path,
    /// The function spread over (`hello`) and its component.
    pub function: &'a str,
    pub wasm: &'a Path,
    pub applications: usize,
    /// Distinct components among the runtime's applications.
    pub components: usize,
    /// At most this many webserver processes.
    pub max_servers: usize,
    pub nginx_workers: usize,
}

impl Fleets {
    /// Sets up both fleets and samples them idle.
    pub fn start(plan: &FleetPlan<'_>, runner: &Runner) -> anyhow::Result<Self> {
        let mut fleets = Self {
            runtime: None,
            _runtime_store: None,
            servers: Vec::new(),
            nginx: None,
            report: Fleet::default(),
            runtime_target: None,
            traditional_target: None,
        };
        fleets
            .start_runtime(plan, runner)
            .context("setting up the runtime's fleet")?;
        fleets
            .start_servers(plan, runner)
            .context("setting up the traditional fleet")?;
        Ok(fleets)
    }

    fn start_runtime(&mut self, plan: &FleetPlan<'_>, runner: &Runner) -> anyhow::Result<()> {
        let store = tempfile::tempdir().context("creating the fleet runtime's store")?;
        let start = || {
            Service::start_with(
                Command::new(plan.runtime_bin)
                    .args(crate::compare::LOOPBACK)
                    .arg("--store-dir")
                    .arg(store.path())
                    .env("RUST_LOG", "warn"),
                &["traffic", "ops"],
            )
        };
        let mut runtime = start()?;
        let wasm =
            std::fs::read(plan.wasm).with_context(|| format!("reading {}", plan.wasm.display()))?;
        let components = plan.components.clamp(1, plan.applications);
        eprintln!(
            "fleet: deploying {} functions over {components} components into a runtime ...",
            plan.applications
        );
        let began = Instant::now();
        let ops = runtime.url("ops");
        runner.block_on(async {
            let client = runner.client();
            // One name per component first, each until its optimized code is in: the
            // rest share that code (a runtime keeps at most --max-loaded-functions
            // loaded, and says nothing of the compiler of one it has unloaded).
            for i in 0..components {
                let name = format!("{}-{i}", plan.function);
                crate::compare::put_function(client, &ops, &name, variant(&wasm, i)).await?;
                crate::compare::wait_for_cranelift(client, &ops, &name).await?;
            }
            let mut deployers = tokio::task::JoinSet::new();
            for k in 0..DEPLOYERS {
                let (client, ops, wasm) = (client.clone(), ops.clone(), wasm.clone());
                let (function, n) = (plan.function.to_string(), plan.applications);
                deployers.spawn(async move {
                    for i in (components + k..n).step_by(DEPLOYERS) {
                        let name = format!("{function}-{i}");
                        crate::compare::put_function(
                            &client,
                            &ops,
                            &name,
                            variant(&wasm, i % components),
                        )
                        .await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(done) = deployers.join_next().await {
                done??;
            }
            anyhow::Ok(())
        })?;
        let deployed = began.elapsed();
        runtime.terminate(Duration::from_secs(30))?;
        let began = Instant::now();
        let runtime = start()?;
        let serving = began.elapsed();
        self.report.notes.push(format!(
            "serverless fleet: {} functions ({}-0 to {}-{}) over {components} distinct \
             components (copies of {} made distinct by a custom section) in one runtime, \
             deployed through its API in {:.1} s, then restarted so that nothing is loaded: \
             it announced its listeners {:.0} ms after its start",
            plan.applications,
            plan.function,
            plan.function,
            plan.applications - 1,
            plan.function,
            deployed.as_secs_f64(),
            serving.as_secs_f64() * 1000.0
        ));
        let processes = ProcessSet {
            pids: vec![runtime.pid()],
            trees: vec![],
        };
        let usage = idle(&processes, runner)?;
        self.report.idle.push(Idle {
            side: figures::SERVERLESS.into(),
            description: format!(
                "one runtime, {} functions over {components} components, none loaded",
                plan.applications
            ),
            applications: plan.applications,
            seconds: IDLE_FOR.as_secs_f64(),
            usage,
        });
        self.runtime_target = Some(FleetTarget {
            url: runtime.url("traffic"),
            processes: Some(processes),
            metrics_url: Some(format!("{}/metrics", runtime.url("ops"))),
            applications: plan.applications,
        });
        self.runtime = Some(runtime);
        self._runtime_store = Some(store);
        Ok(())
    }

    fn start_servers(&mut self, plan: &FleetPlan<'_>, runner: &Runner) -> anyhow::Result<()> {
        let wanted = plan.applications.min(plan.max_servers);
        ensure!(wanted >= 1, "--fleet-max-servers must be at least 1");
        // Each webserver is two pipes here (its stdout and stderr) and a connection or
        // two from nginx, which inherits this process's limit: raise the soft limit on
        // open files to the hard one, and start no more than fit in it.
        let files = service_ops::raise_open_files_limit();
        let fit = files.map_or(usize::MAX, |f| {
            usize::try_from(f).unwrap_or(usize::MAX).saturating_sub(256) / 3
        });
        let count = wanted.min(fit);
        ensure!(
            count >= 1,
            "the open-files limit ({files:?}) leaves no room for a fleet of webservers: raise it (ulimit -n)"
        );
        eprintln!("fleet: starting {count} webservers, one per application, behind nginx ...");
        let began = Instant::now();
        for _ in 0..count {
            self.servers.push(
                Service::start_with(
                    Command::new(plan.webserver_bin)
                        .args(crate::compare::LOOPBACK)
                        .env("RUST_LOG", "warn"),
                    &["traffic", "ops"],
                )
                .context("starting a webserver")?,
            );
        }
        let upstreams: Vec<_> = self.servers.iter().map(|s| s.addr("traffic")).collect();
        let nginx = Nginx::start_site(
            &Site::applications(plan.function, &upstreams)?,
            plan.nginx_workers,
        )
        .context("starting nginx in front of the fleet")?;
        let mut note = format!(
            "traditional fleet: {count} webserver processes, one per application as the seed \
             deployed each of its apps, behind one nginx ({} workers) routing /{}-i/ to \
             application i; started in {:.1} s",
            plan.nginx_workers,
            plan.function,
            began.elapsed().as_secs_f64()
        );
        if count < wanted {
            note.push_str(&format!(
                "; {count} rather than {wanted}: the open-files limit ({}) fits no more \
                 (raise it with ulimit -n)",
                files.map_or("none".to_string(), |f| f.to_string())
            ));
        }
        if count < plan.applications {
            note.push_str(&format!(
                "; capped at {count}: scenarios over more applications run on the \
                 serverless side alone, and the idle cost per application below stands for \
                 the rest"
            ));
        }
        self.report.notes.push(note);
        let processes = ProcessSet {
            pids: self.servers.iter().map(Service::pid).collect(),
            trees: vec![nginx.pid()],
        };
        let usage = idle(&processes, runner)?;
        self.report.idle.push(Idle {
            side: figures::TRADITIONAL.into(),
            description: format!("{count} webservers and one nginx"),
            applications: count,
            seconds: IDLE_FOR.as_secs_f64(),
            usage,
        });
        self.traditional_target = Some(FleetTarget {
            url: nginx.url(),
            processes: Some(processes),
            metrics_url: None,
            applications: count,
        });
        self.nginx = Some(nginx);
        Ok(())
    }

    /// What the report says of the fleets.
    pub fn report(&self) -> Fleet {
        self.report.clone()
    }

    /// SIGTERM to everything, then whatever is left is killed on drop.
    pub fn stop(&mut self) {
        for service in self.runtime.iter_mut().chain(self.servers.iter_mut()) {
            let _ = service.signal(rustix::process::Signal::TERM);
        }
        for service in self.runtime.iter_mut().chain(self.servers.iter_mut()) {
            if let Err(e) = service.wait_exit(Duration::from_secs(10)) {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// The processes' use over [`IDLE_FOR`] with no traffic.
fn idle(processes: &ProcessSet, runner: &Runner) -> anyhow::Result<crate::sample::Usage> {
    // Let start-up settle first.
    std::thread::sleep(Duration::from_secs(1));
    ensure!(!runner.interrupted(), "interrupted");
    let origin = Instant::now();
    let sampler = Sampler::start(processes.clone(), origin, Duration::from_millis(500));
    std::thread::sleep(IDLE_FOR);
    let samples = sampler.finish();
    crate::sample::usage(&samples, 0.0, IDLE_FOR.as_secs_f64())
        .context("too few samples of the idle fleet")
}

/// What [`cold_starts`] starts.
#[derive(Debug)]
pub struct ColdPlan<'a> {
    pub runtime_bin: &'a Path,
    pub webserver_bin: &'a Path,
    pub peer: Option<&'a Path>,
    /// The function's component (also the peer's), and the function's name.
    pub wasm: &'a Path,
}

/// A cold-start scenario: its series for every side.
pub fn cold_starts(
    plan: &ColdPlan<'_>,
    runner: &Runner,
    scenario: &Scenario,
) -> anyhow::Result<Vec<ColdSeries>> {
    let crate::scenario::Shape::Cold { samples } = scenario.shape else {
        anyhow::bail!("{} is not a cold-start scenario", scenario.name);
    };
    let samples = samples as usize;
    let function = service_ops::traffic::function_name(&scenario.path).to_string();
    let wasm =
        std::fs::read(plan.wasm).with_context(|| format!("reading {}", plan.wasm.display()))?;
    let store = tempfile::tempdir().context("creating a store for the cold starts")?;
    let runtime = |listen: &str| {
        let mut command = Command::new(plan.runtime_bin);
        command
            .args(["--listen", listen, "--ops-listen", "127.0.0.1:0"])
            .arg("--store-dir")
            .arg(store.path())
            .env("RUST_LOG", "warn");
        command
    };
    // Two distinct functions per sample, each its own component: one for the first
    // request in a running runtime, one for a fresh process.
    let names: Vec<String> = (0..2 * samples)
        .map(|i| format!("{function}-{i}"))
        .collect();
    {
        let mut setup = Service::start_with(&mut runtime("127.0.0.1:0"), &["traffic", "ops"])?;
        let ops = setup.url("ops");
        runner.block_on(async {
            let client = runner.client();
            for (i, name) in names.iter().enumerate() {
                crate::compare::put_function(client, &ops, name, variant(&wasm, i)).await?;
                crate::compare::wait_for_cranelift(client, &ops, name).await?;
            }
            anyhow::Ok(())
        })?;
        setup.terminate(Duration::from_secs(30))?;
    }
    let path = |name: &str| Spread::with_function(&scenario.path, name);
    let mut series = Vec::new();

    // In a running runtime: first requests, then the same function warm.
    let mut running = Service::start_with(&mut runtime("127.0.0.1:0"), &["traffic", "ops"])?;
    let base = running.url("traffic");
    let (first, warm) = runner.block_on(async {
        let client = runner.client();
        let mut first = Vec::new();
        for name in &names[..samples] {
            first.push(timed_get(client, &format!("{base}{}", path(name))).await?);
        }
        let mut warm = Vec::new();
        for _ in 0..samples {
            warm.push(timed_get(client, &format!("{base}{}", path(&names[0]))).await?);
        }
        anyhow::Ok((first, warm))
    })?;
    running.terminate(Duration::from_secs(30))?;
    series.push(ColdSeries {
        side: figures::SERVERLESS.into(),
        what: "first request to a function not loaded, its code in the cache (a running runtime)"
            .into(),
        samples_ms: first,
    });
    series.push(ColdSeries {
        side: figures::SERVERLESS.into(),
        what: "the same function again, loaded (warm)".into(),
        samples_ms: warm,
    });

    // Fresh processes, start to first answer.
    let mut fresh = Vec::new();
    for name in &names[samples..] {
        fresh.push(start_to_first_answer(runner, &path(name), |listen| {
            runtime(listen)
        })?);
    }
    series.push(ColdSeries {
        side: figures::SERVERLESS.into(),
        what: "fresh runtime process: start to the first answer of a stored function".into(),
        samples_ms: fresh,
    });
    let mut fresh = Vec::new();
    for _ in 0..samples {
        fresh.push(start_to_first_answer(runner, &scenario.path, |listen| {
            let mut command = Command::new(plan.webserver_bin);
            command
                .args(["--listen", listen, "--ops-listen", "127.0.0.1:0"])
                .env("RUST_LOG", "warn");
            command
        })?);
    }
    series.push(ColdSeries {
        side: figures::TRADITIONAL.into(),
        what: "fresh webserver process: start to its first answer (nginx already up)".into(),
        samples_ms: fresh,
    });
    if let Some(wasmtime) = plan.peer {
        let mut fresh = Vec::new();
        for _ in 0..samples {
            fresh.push(start_to_first_answer(runner, &scenario.path, |listen| {
                let mut command = Command::new(wasmtime);
                command
                    .args(["serve", "--addr", listen, "-S", "cli"])
                    .arg(plan.wasm);
                command
            })?);
        }
        series.push(ColdSeries {
            side: figures::PEER.into(),
            what: "fresh `wasmtime serve` process: start to its first answer".into(),
            samples_ms: fresh,
        });
    }
    Ok(series)
}

/// One GET that must answer 2xx; its time in milliseconds.
async fn timed_get(client: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let began = Instant::now();
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    response.bytes().await?;
    ensure!(status.is_success(), "GET {url}: {status}");
    Ok(began.elapsed().as_secs_f64() * 1000.0)
}

/// Starts the process `command(listen)` makes and asks for `path` every millisecond until
/// it answers 2xx; the time from the start to the end of that answer, in milliseconds.
/// The process is stopped after.
fn start_to_first_answer(
    runner: &Runner,
    path: &str,
    command: impl FnOnce(&str) -> Command,
) -> anyhow::Result<f64> {
    let port = localrun::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}{path}");
    let mut command = command(&listen);
    let program = command.get_program().to_string_lossy().into_owned();
    let began = Instant::now();
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let answered = runner.block_on(async {
        // A client of its own: no pooled connection to an earlier process.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
                && response.bytes().await.is_ok()
            {
                return anyhow::Ok(began.elapsed());
            }
            ensure!(
                began.elapsed() < Duration::from_secs(60),
                "{program} did not answer {url} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = child.wait();
    Ok(answered?.as_secs_f64() * 1000.0)
}

/// The function and component of the scenarios spread over applications, and the most
/// applications any of them needs; `None` without such a scenario.
pub fn spread_of(scenarios: &[Scenario]) -> anyhow::Result<Option<(String, usize)>> {
    let mut found: Option<(String, usize)> = None;
    for scenario in scenarios {
        let Some(spread) = scenario.spread else {
            continue;
        };
        let function = service_ops::traffic::function_name(&scenario.path).to_string();
        match &mut found {
            None => found = Some((function, spread.applications)),
            Some((f, n)) => {
                ensure!(
                    *f == function,
                    "scenarios spread over applications must share one function: {f} and {function}"
                );
                *n = (*n).max(spread.applications);
            }
        }
    }
    Ok(found)
}

/// The component of `function` among `functions`.
pub fn component(functions: &[(&str, &str)], function: &str) -> anyhow::Result<PathBuf> {
    functions
        .iter()
        .find(|(name, _)| *name == function)
        .map(|(_, path)| PathBuf::from(path))
        .with_context(|| format!("no example function {function:?} to deploy"))
}
