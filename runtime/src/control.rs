//! The control plane: every change to what is deployed. It owns the registry, the store,
//! the deploy lock and the FaaS metrics, and makes every swap: a deploy, a restore at
//! start, a delete, and the background tier-up from Winch's code to Cranelift's. The
//! data plane ([`crate::invoke`]) only reads the registry.
//!
//! With a shared store (`--shared-store`), it also applies what other runtimes on the
//! same store deployed or deleted ([`ControlPlane::sync_from_store`], every
//! `--store-poll-interval`): a manifest that differs from the version this runtime last
//! applied is loaded and swapped in exactly as a deploy would be, and a name whose
//! manifest is gone is removed. Manifests are replaced by rename, so concurrent deploys
//! of one name through different runtimes end with the one written last, everywhere.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::admission::{MemoryBudget, PoolShares};
use crate::function::{Compiled, Compiler, Function, Kind, Ready};
use crate::invoke::{Invoker, Shared};
use crate::loader::{self, Baseline, LoadError, Loader};
use crate::metrics::{ColdStart, DeployResult, FaasMetrics, ReadAtScrape};
use crate::name::FunctionName;
use crate::registry::{CanaryRoute, CanaryWatch, Registry, Routes};
use crate::resident::Resident;
use crate::store::{ChangeError, FunctionStore, Manifest, Placement, Record, Serving};
use crate::tier_up::TierUp;
use crate::{Config, engine, heap};

/// What a deploy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployed {
    Created,
    Replaced,
    /// Started a canary beside the current version.
    Canary,
}

impl Deployed {
    /// How `faas_deployments_total` counts it.
    pub(crate) fn result(self) -> DeployResult {
        match self {
            Deployed::Created => DeployResult::Created,
            Deployed::Replaced => DeployResult::Replaced,
            Deployed::Canary => DeployResult::Canary,
        }
    }
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Invalid(#[from] LoadError),
    #[error("writing the store: {0}")]
    Store(#[from] std::io::Error),
    /// A deploy that does not apply as the function is (409): a canary of a function
    /// not deployed, or without a store.
    #[error("{0}")]
    Refused(String),
}

impl From<ChangeError> for DeployError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Io(e) => DeployError::Store(e),
            e => DeployError::Refused(e.to_string()),
        }
    }
}

/// Why a rollback or a promote changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("the version could not be loaded: {0}")]
    Load(#[from] LoadError),
}

impl VersionError {
    /// Its HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            VersionError::Change(ChangeError::NoFunction(_)) => 404,
            VersionError::Change(ChangeError::Refused(_)) => 409,
            VersionError::Change(ChangeError::Io(_)) => 500,
            VersionError::Load(e) => e.status(),
        }
    }
}

/// Why versions cannot be kept without a store.
const NO_STORE: &str = "this runtime keeps no versions: it runs without --store-dir, so there \
     is nothing to roll back to and no canary can run";

/// Why the runtime could not start with what it was given to serve.
///
/// Each cause is the error's source, not part of its message: printed as a chain (`{:#}`,
/// as the runtime does at exit) each shows once.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("opening the store {dir}")]
    OpenStore {
        dir: std::path::PathBuf,
        source: crate::store::StoreError,
    },
    #[error("reading the store")]
    ReadStore(#[from] std::io::Error),
    #[error(transparent)]
    FunctionsDir(#[from] loader::DirError),
    #[error("{origin}")]
    Load { origin: String, source: LoadError },
}

/// Deploys, restores, deletes and tiers up functions. Cheap to clone: a background
/// compile holds a clone to hand its result back for the swap.
#[derive(Clone)]
pub struct ControlPlane {
    registry: Arc<Registry>,
    store: Option<FunctionStore>,
    faas: FaasMetrics,
    /// One deploy or delete at a time: store writes and the swap happen in order.
    deploy_lock: Arc<Mutex<()>>,
    /// Cranelift, with the compiled-code cache.
    optimizing: Loader,
    /// `--baseline-compile`: Winch's loader for first deploys. `None`: Cranelift only.
    baseline: Option<Arc<Baseline>>,
    config: Arc<Config>,
    /// Background Cranelift compiles: one worker, latest deploy of a name wins.
    tier_up: TierUp,
    /// Held: the epoch thread stops when the last holder goes.
    _ticker: Arc<engine::EpochTicker>,
    invoker: Arc<Invoker>,
    /// Which deployed functions have their code in memory.
    resident: Arc<Resident>,
    /// The traffic listener's HTTP metrics, whose series of a deleted function go with it.
    http: Option<service_ops::HttpMetrics>,
    /// What each name serves as this runtime last applied it from the store (restored,
    /// deployed, rolled back, synced, or tried to and failed): what
    /// [`Self::sync_from_store`] compares the store with. Changed only under
    /// `deploy_lock`.
    applied: Arc<Mutex<HashMap<FunctionName, Serving>>>,
    /// Problems with the shared store already logged, so each is logged once.
    reported: Arc<Mutex<HashSet<String>>>,
    /// With a shared store: when the last sync pass succeeded, and why the last one
    /// failed if it did (what `/readyz` reports).
    synced: Arc<Mutex<SyncState>>,
}

/// How the store sync is doing.
#[derive(Debug)]
struct SyncState {
    /// The last pass that read the whole store.
    last_ok: std::time::Instant,
    /// Why the passes since failed, if they did.
    failing: Option<String>,
    /// How long a replica may go without a good pass and still be ready.
    allowed: std::time::Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("functions", &self.registry.names())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Builds the engine and registers every FaaS metric in `prom`. Loads
    /// `--functions-dir`, then what `--store-dir` holds (a stored deploy wins over a
    /// file of the same name). Every function is compiled (or loaded from the
    /// compiled-code cache) and checked; a bad one is an error that names it.
    pub fn start(config: &Config, prom: &prometheus::Registry) -> anyhow::Result<Self> {
        config.validate()?;
        crate::outbound::configure(crate::outbound::OutboundSettings {
            block_internal: config.block_internal_outbound,
            max_connections: config.max_outbound_connections,
        });
        crate::logs::configure(config.log_ring_kib, config.max_log_memory_mib);
        let faas = FaasMetrics::new(prom)?;
        crate::metrics::register_build_info(prom)?;
        let store = match &config.store_dir {
            Some(dir) => {
                let open = match config.shared_store {
                    true => FunctionStore::open_shared,
                    false => FunctionStore::open,
                };
                let store = open(dir).map_err(|source| RestoreError::OpenStore {
                    dir: dir.clone(),
                    source,
                })?;
                match config.cache_key()? {
                    Some(key) => Some(store.with_code_key(key)),
                    None => {
                        if config.shared_store {
                            tracing::warn!(
                                "--shared-store without --cache-key-file: no compiled code is \
                                 cached in the store (replicas share code only under a shared \
                                 key); each replica compiles what it serves"
                            );
                        }
                        Some(store)
                    }
                }
            }
            None => None,
        };
        if let Some(store) = &store {
            faas.quarantined.inc_by(store.quarantined().len() as u64);
        }
        let optimizing = Loader::new(config, Compiler::Cranelift, store.clone())?;
        if let Some(store) = &store {
            // Compiles the last run did not live through: their versions are set aside
            // (in `restore`) rather than compiled, and crash, at every start.
            for digest in store.interrupted_compiles()? {
                tracing::error!(%digest, "a compile of this component did not finish in an earlier run");
                optimizing.set_aside(&digest, INTERRUPTED.to_string());
            }
        }
        if let Some(pool) = crate::metrics::PoolCollector::new(optimizing.engine())? {
            prom.register(Box::new(pool))?;
        }
        let ticker = Arc::new(engine::EpochTicker::start(optimizing.engine().clone()));
        let shared_config = Arc::new(config.clone());
        let baseline = config.baseline_compile.then(|| {
            Arc::new(Baseline::new(
                shared_config.clone(),
                optimizing.clone(),
                ticker.clone(),
            ))
        });
        let registry = Arc::new(Registry::default());
        let shared = Shared {
            bodies: config.listen.body_reader(),
            memory: MemoryBudget::memory(config.memory_budget_mib(), config.memory_reserve_mib),
            pool: PoolShares::new(config.pool_instances.get(), config.pool_reserve),
        };
        shared.bodies.register(prom)?;
        prom.register(Box::new(crate::metrics::AdmissionCollector::new(
            shared.memory.clone(),
            shared.pool.clone(),
        )?))?;
        let resident = Arc::new(Resident::new(
            config.max_loaded_functions.get(),
            optimizing.clone(),
            baseline.clone(),
            store.clone(),
        ));
        prom.register(Box::new(resident_gauges(&resident)?))?;
        let control = Self {
            invoker: Arc::new(Invoker::new(
                registry.clone(),
                resident.clone(),
                faas.clone(),
                shared,
            )),
            resident,
            registry,
            store,
            faas,
            deploy_lock: Default::default(),
            optimizing,
            baseline,
            config: shared_config,
            tier_up: Default::default(),
            _ticker: ticker,
            http: None,
            applied: Default::default(),
            reported: Default::default(),
            synced: Arc::new(Mutex::new(SyncState {
                last_ok: std::time::Instant::now(),
                failing: None,
                // Ten polls, and never less than 2 s: one slow pass is not a lag.
                allowed: (config.store_poll_interval * 10).max(std::time::Duration::from_secs(2)),
            })),
        };
        // Held by the invoker for the life of the process, as the tier-up worker holds
        // its clone: a control plane is never dropped while it serves.
        let alarm = control.clone();
        control
            .invoker
            .on_canary_failing(Box::new(move |name, watch| {
                let (control, function) = (alarm.clone(), name.clone());
                let ending =
                    std::thread::Builder::new()
                        .name("canary-end".into())
                        .spawn(move || {
                            if let Ok(name) = FunctionName::parse(&name) {
                                control.survive("canary", || {
                                    control.end_failing_canary(&name, &watch)
                                });
                            }
                        });
                if let Err(e) = ending {
                    tracing::error!(%function, "could not end the failing canary: {e}");
                }
            }));
        control.restore()?;
        heap::release_free_memory();
        if config.shared_store {
            control.watch_store(config.store_poll_interval)?;
        }
        Ok(control)
    }

    /// Starts the thread that applies other runtimes' changes to the shared store every
    /// `interval`, for the life of the process; after failed passes, less often (twice
    /// the wait after each, up to 16 intervals: 8 s by default), until one succeeds.
    fn watch_store(&self, interval: std::time::Duration) -> std::io::Result<()> {
        let control = self.clone();
        let longest = interval * 16;
        std::thread::Builder::new()
            .name("store-sync".into())
            .spawn(move || {
                let mut wait = interval;
                loop {
                    std::thread::sleep(wait);
                    let pass = control.survive("store_sync", || {
                        #[cfg(debug_assertions)]
                        test_hook_sync_fails()?;
                        control.sync_from_store()
                    });
                    let failing = match pass {
                        Some(Ok(_)) => None,
                        Some(Err(e)) => {
                            let problem = format!("reading the shared store: {e}");
                            control.report_once(problem.clone());
                            Some(problem)
                        }
                        // Counted as a failed sync too; the next poll tries again.
                        None => {
                            control.faas.sync_errors.inc();
                            Some("the store sync panicked (see the log)".to_string())
                        }
                    };
                    wait = match failing {
                        None => interval,
                        Some(_) => (wait * 2).min(longest),
                    };
                    let mut synced = control.synced.lock().unwrap_or_else(|e| e.into_inner());
                    if failing.is_none() {
                        synced.last_ok = std::time::Instant::now();
                    }
                    synced.failing = failing;
                }
            })
            .map(drop)
    }

    /// Runs one pass of background `worker`, surviving a panic in it: logged, counted in
    /// `runtime_worker_panics_total{worker}`, and `None` returned, so the worker's loop
    /// goes on with its next pass instead of dying silently while `/healthz` says 200.
    /// The locks it might hold recover from poisoning (every lock here does).
    fn survive<R>(&self, worker: &'static str, pass: impl FnOnce() -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(pass)) {
            Ok(result) => Some(result),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                self.faas.worker_panics.with_label_values(&[worker]).inc();
                tracing::error!(
                    worker,
                    "a background pass panicked ({message}); carrying on with the next"
                );
                None
            }
        }
    }

    /// Gives the control plane the traffic listener's HTTP metrics, so that deleting a
    /// function also drops its HTTP series.
    pub fn with_http_metrics(mut self, http: service_ops::HttpMetrics) -> Self {
        self.http = Some(http);
        self
    }

    /// Loads `--functions-dir` (compiled and checked now, a bad file stops the start
    /// with its name; their code stays in memory), then the store, whose deploys win
    /// over files of the same name. A stored function is only its record until its
    /// first request loads its code ([`crate::resident`]): a restart reads manifests,
    /// not code.
    fn restore(&self) -> Result<(), RestoreError> {
        if let Some(dir) = &self.config.functions_dir {
            for (record, wasm) in loader::read_dir(dir)? {
                let origin = dir.join(format!("{}.wasm", record.name));
                let function = self
                    .optimizing
                    .load(record, &wasm, true, ColdStart::FirstRequest)
                    .map_err(|source| RestoreError::Load {
                        origin: origin.display().to_string(),
                        source,
                    })?;
                if let Some(ready) = function.code() {
                    tracing::info!(
                        function = %function.name(),
                        compile_seconds = ready.compiled.seconds,
                        from_cache = ready.compiled.from_cache,
                        "loaded"
                    );
                }
                self.count_loaded(&function);
                self.install(Routes::only(Arc::new(function)));
            }
        }
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut kinds: HashMap<String, Kind> = HashMap::new();
        for manifest in store.list()? {
            let name = manifest.name.clone();
            let serving = manifest.serving();
            self.applied().insert(name.clone(), serving.clone());
            let current = match self.stored_function(store, &serving.current, &mut kinds) {
                Ok(function) => function,
                // A stored function this runtime cannot run (its settings are past a
                // ceiling lowered since, say) is set aside so that the others start. In
                // a shared store it stays: other runtimes may still run it.
                Err(source) => {
                    if store.is_shared() {
                        self.faas.sync_errors.inc();
                        tracing::error!(function = %name, "not serving the stored version: {source}");
                    } else {
                        store.quarantine_function(&name, source.to_string())?;
                        self.applied().remove(&name);
                        self.faas.quarantined.inc();
                    }
                    continue;
                }
            };
            let mut routes = Routes::only(Arc::new(current));
            if let Some((record, canary)) = &serving.canary {
                match self.stored_function(store, record, &mut kinds) {
                    Ok(function) => {
                        routes.canary = Some(self.canary_route(Arc::new(function), canary, None));
                    }
                    // The current version serves everything.
                    Err(e) => tracing::error!(
                        function = %name,
                        version = record.version,
                        "not running the stored canary: {e}"
                    ),
                }
            }
            self.install(routes);
        }
        Ok(())
    }

    /// A stored version as a function whose code loads at its first request: its kind
    /// from its blob's first bytes (once per digest), its limits from its settings.
    fn stored_function(
        &self,
        store: &FunctionStore,
        record: &Record,
        kinds: &mut HashMap<String, Kind>,
    ) -> Result<Function, LoadError> {
        let kind = match kinds.get(&record.digest) {
            Some(kind) => *kind,
            None => Kind::of(&store.wasm_header(record)?),
        };
        let limits = self.optimizing.limits(record)?;
        if let Some(reason) = self.optimizing.failed_before(&record.digest) {
            return Err(LoadError::CompileLimit(kind.artifact(), reason));
        }
        kinds.insert(record.digest.clone(), kind);
        Ok(Function::new(
            record.clone(),
            kind,
            limits,
            None,
            false,
            ColdStart::FirstRequest,
        ))
    }

    /// `function` as a canary route of `canary`'s share, watched against its threshold
    /// (by `watch` if given: the tally of the same canary before a change of share).
    fn canary_route(
        &self,
        function: Arc<Function>,
        canary: &crate::store::Canary,
        watch: Option<Arc<CanaryWatch>>,
    ) -> CanaryRoute {
        let watch = watch
            .filter(|w| {
                w.version == function.record.version && w.max_error_rate == canary.max_error_rate
            })
            .unwrap_or_else(|| {
                Arc::new(CanaryWatch::new(
                    function.record.version,
                    canary.max_error_rate,
                    self.config.canary_min_requests,
                ))
            });
        CanaryRoute {
            function,
            percent: canary.percent,
            watch,
        }
    }

    /// Whether this runtime is fit for traffic (`/readyz`): with a shared store, that
    /// its sync read the whole store recently, so what it serves is what the others do.
    /// A version it cannot load does not make it unready (every replica would be, and
    /// the others' functions with it): that is counted and logged.
    pub fn ready(&self) -> Result<(), String> {
        if !self.config.shared_store {
            return Ok(());
        }
        let synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let since = synced.last_ok.elapsed();
        if since <= synced.allowed {
            return Ok(());
        }
        Err(format!(
            "not in step with the shared store: no good sync for {:.1} s{}",
            since.as_secs_f64(),
            synced
                .failing
                .as_deref()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        ))
    }

    /// The data plane, which runs requests against the registry this control plane keeps.
    pub fn invoker(&self) -> Arc<Invoker> {
        self.invoker.clone()
    }

    /// Every deployed name's routes (current version, canary), by name.
    pub fn all_routes(&self) -> Vec<Arc<Routes>> {
        self.registry.all_routes()
    }

    pub fn routes(&self, name: &str) -> Option<Arc<Routes>> {
        self.registry.routes(name)
    }

    pub fn function(&self, name: &str) -> Option<Arc<Function>> {
        self.registry.get(name)
    }

    /// Compiles and checks `wasm`, records it durably (with a store) as a new version of
    /// `name` placed as `placement` says, then swaps it in. Requests already running
    /// finish on the version they started with; a component that fails to load, or a
    /// placement that does not apply, changes nothing.
    pub fn deploy(
        &self,
        name: FunctionName,
        wasm: &[u8],
        settings: crate::limits::Settings,
        placement: Placement,
    ) -> Result<(Deployed, Arc<Function>), DeployError> {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let canary = matches!(placement, Placement::Canary { .. });
        if canary && self.store.is_none() {
            return Err(DeployError::Refused(NO_STORE.into()));
        }
        let existed = self.registry.get(&name).is_some();
        let (mut function, baseline) = self.load_new(Record::new(name, wasm, settings), wasm)?;
        let routes = match &self.store {
            Some(store) => {
                let mut record = function.record.clone();
                let manifest = store.deploy(&mut record, wasm, &placement, self.keep_versions())?;
                function.renumber(record.version);
                self.count_loaded(&function);
                let serving = manifest.serving();
                self.applied()
                    .insert(manifest.name.clone(), serving.clone());
                let fresh = Arc::new(function);
                // The other version a canary runs beside is what this runtime serves
                // already; should it not (it failed to load here), it is loaded now.
                self.routes_for(store, &serving, Some(fresh.clone()))
                    .map(|(routes, tier_ups)| {
                        self.tier_up_all(tier_ups);
                        routes
                    })
                    .unwrap_or_else(|e| {
                        // Only a canary has another version to load. Here it does not run:
                        // what this runtime served keeps serving everything, rather than
                        // the canary taking every request.
                        tracing::error!(
                            function = %fresh.name(),
                            "the current version does not load here, so the canary does not run here: {e}"
                        );
                        let current = self.registry.get(fresh.name()).filter(|_| canary);
                        Routes::only(current.unwrap_or_else(|| fresh.clone()))
                    })
            }
            None => {
                self.count_loaded(&function);
                Routes::only(Arc::new(function))
            }
        };
        let installed = match canary {
            true => routes.canary.as_ref().map(|c| c.function.clone()),
            false => None,
        }
        .unwrap_or_else(|| routes.current.clone());
        self.install(routes);
        if baseline {
            self.tier_up(installed.clone(), wasm.to_vec());
        }
        let deployed = match (canary, existed) {
            (true, _) => Deployed::Canary,
            (false, true) => Deployed::Replaced,
            (false, false) => Deployed::Created,
        };
        Ok((deployed, installed))
    }

    fn keep_versions(&self) -> usize {
        self.config.keep_versions.get() as usize
    }

    /// Routes that serve what `serving` says, made of the versions the registry holds
    /// already where they are the same (a promote, or a canary ended, loads nothing) and
    /// of `fresh` (a version just loaded), loading the others from the store. Also the
    /// versions loaded by Winch, for a Cranelift compile in the background.
    fn routes_for(
        &self,
        store: &FunctionStore,
        serving: &Serving,
        fresh: Option<Arc<Function>>,
    ) -> Result<(Routes, Vec<TierUpJob>), LoadError> {
        let existing = self.registry.routes(&serving.current.name);
        let mut tier_ups = Vec::new();
        let mut version = |record: &Record| -> Result<Arc<Function>, LoadError> {
            let have = fresh
                .iter()
                .chain(existing.iter().flat_map(|routes| routes.functions()))
                .find(|f| f.record == *record);
            if let Some(function) = have {
                return Ok(function.clone());
            }
            let wasm = store.wasm(record)?;
            let (function, baseline) = self.load_new(record.clone(), &wasm)?;
            self.count_loaded(&function);
            let function = Arc::new(function);
            if baseline {
                tier_ups.push((function.clone(), wasm));
            }
            Ok(function)
        };
        let current = version(&serving.current)?;
        let canary = match &serving.canary {
            Some((record, canary)) => {
                let function = version(record)?;
                let watch = existing
                    .as_ref()
                    .and_then(|routes| routes.canary.as_ref())
                    .filter(|c| Arc::ptr_eq(&c.function, &function))
                    .map(|c| c.watch.clone());
                Some(self.canary_route(function, canary, watch))
            }
            None => None,
        };
        Ok((Routes { current, canary }, tier_ups))
    }

    fn tier_up_all(&self, tier_ups: Vec<TierUpJob>) {
        for (function, wasm) in tier_ups {
            self.tier_up(function, wasm);
        }
    }

    /// Makes an older version of `name` current in one step: `to`, or without it, the
    /// newest kept version older than the current one. Ends a canary too: without `to`,
    /// when a canary runs, ending it is all a rollback does. Durable, and applied by
    /// every replica sharing the store.
    pub fn rollback(&self, name: &FunctionName, to: Option<u64>) -> Result<Manifest, VersionError> {
        let mut ended = false;
        let manifest = self.change_versions(name, |m| {
            match (to, &m.canary) {
                (None, Some(_)) => {}
                (None, None) => {
                    let previous = m
                        .versions
                        .iter()
                        .rev()
                        .find(|r| r.version < m.current)
                        .ok_or_else(|| {
                            format!(
                                "{name:?} keeps no version older than its current {} to roll back to (kept: {})",
                                m.current,
                                kept(m)
                            )
                        })?;
                    m.current = previous.version;
                }
                (Some(v), _) => {
                    if m.version(v).is_none() {
                        return Err(format!(
                            "{name:?} has no version {v} (kept: {})",
                            kept(m)
                        ));
                    }
                    if v == m.current && m.canary.is_none() {
                        return Err(format!("version {v} of {name:?} is current already"));
                    }
                    m.current = v;
                }
            }
            ended = m.canary.take().is_some();
            Ok(())
        })?;
        if ended {
            self.faas
                .canary_rollbacks
                .with_label_values(&[name.as_str(), "manual"])
                .inc();
        }
        tracing::info!(function = %name, current = manifest.current, canary_ended = ended, "rolled back");
        Ok(manifest)
    }

    /// Makes `name`'s canary its current version, serving every request.
    pub fn promote(&self, name: &FunctionName) -> Result<Manifest, VersionError> {
        let manifest = self.change_versions(name, |m| {
            let canary = m
                .canary
                .take()
                .ok_or_else(|| format!("{name:?} has no canary to promote"))?;
            m.current = canary.version;
            Ok(())
        })?;
        tracing::info!(function = %name, current = manifest.current, "canary promoted");
        Ok(manifest)
    }

    /// Ends the canary `watch` tallies, which failed past its threshold: unless it
    /// ended or changed meanwhile (here or through another replica).
    fn end_failing_canary(&self, name: &FunctionName, watch: &CanaryWatch) {
        let (requests, failures) = watch.tally();
        let ended = self.change_versions(name, |m| match &m.canary {
            Some(canary) if canary.version == watch.version => {
                m.canary = None;
                Ok(())
            }
            _ => Err("the canary ended or changed meanwhile".into()),
        });
        match ended {
            Ok(_) => {
                self.faas
                    .canary_rollbacks
                    .with_label_values(&[name.as_str(), "error_rate"])
                    .inc();
                tracing::error!(
                    function = %name,
                    version = watch.version,
                    requests,
                    failures,
                    max_error_rate = watch.max_error_rate,
                    "canary rolled back: its error rate passed its threshold; the current version serves every request"
                );
            }
            Err(e) => {
                tracing::info!(function = %name, version = watch.version, "canary not ended: {e}")
            }
        }
    }

    /// Changes `name`'s versions with `edit`: the versions it then serves are loaded
    /// first (a version that does not load changes nothing), the store is written (if
    /// another replica changed `name` meanwhile, nothing is), then they are swapped in.
    fn change_versions(
        &self,
        name: &FunctionName,
        edit: impl FnOnce(&mut Manifest) -> Result<(), String>,
    ) -> Result<Manifest, VersionError> {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| ChangeError::Refused(NO_STORE.into()))?;
        let before = store
            .read_manifest(name)
            .map_err(ChangeError::Io)?
            .ok_or_else(|| ChangeError::NoFunction(name.to_string()))?;
        let mut after = before.clone();
        edit(&mut after).map_err(ChangeError::Refused)?;
        after.check().map_err(ChangeError::Refused)?;
        let serving = after.serving();
        let (routes, tier_ups) = self.routes_for(store, &serving, None)?;
        store.change(name, |m| match *m == before {
            true => {
                *m = after.clone();
                Ok(())
            }
            false => Err(format!(
                "{name:?} was changed through another runtime meanwhile; nothing was done, try again"
            )),
        })?;
        self.applied().insert(name.clone(), serving);
        self.install(routes);
        self.tier_up_all(tier_ups);
        Ok(after)
    }

    /// `name`'s versions: what the store keeps, or without one, the version serving.
    pub fn versions(&self, name: &FunctionName) -> std::io::Result<Option<Manifest>> {
        let Some(current) = self.registry.get(name) else {
            return Ok(None);
        };
        match &self.store {
            Some(store) => store.read_manifest(name),
            None => Ok(Some(Manifest::first(current.record.clone()))),
        }
    }

    /// Loads a new version: from Winch's quick compile unless Cranelift's code is
    /// already cached (Cranelift's then swaps in from the background: true). Without a
    /// store its code could not be loaded again, so it stays in memory.
    fn load_new(&self, record: Record, wasm: &[u8]) -> Result<(Function, bool), LoadError> {
        let baseline = match self.optimizing.is_cached(&record.digest) {
            true => None,
            false => self.baseline_loader(),
        };
        let cold = match self.registry.get(&record.name) {
            Some(_) => ColdStart::Redeployed,
            None => ColdStart::FirstRequest,
        };
        let pinned = self.store.is_none();
        let function = baseline
            .unwrap_or(&self.optimizing)
            .load(record, wasm, pinned, cold)?;
        heap::release_free_memory();
        Ok((function, baseline.is_some()))
    }

    /// Applies what other runtimes sharing the store changed since this one last looked:
    /// every manifest that differs from the version this runtime applied is loaded and
    /// swapped in (requests in flight finish on the version they started with), every
    /// name whose manifest is gone is removed. Returns how many changes were applied.
    /// A version that cannot be read or loaded is counted and logged once, and the
    /// version this runtime had keeps serving.
    pub fn sync_from_store(&self) -> std::io::Result<usize> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut listed = HashSet::new();
        let mut changed = Vec::new();
        for (path, manifest) in store.manifests()? {
            match manifest {
                Ok(manifest) => {
                    if self.applied().get(&manifest.name) != Some(&manifest.serving()) {
                        changed.push(manifest.name.clone());
                    }
                    listed.insert(manifest.name.as_arc().clone());
                }
                Err(reason) => {
                    // An unreadable manifest changes nothing: what was applied stays.
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        listed.insert(Arc::from(stem));
                    }
                    self.report_once(format!("{}: {reason}", path.display()));
                }
            }
        }
        let gone: Vec<FunctionName> = self
            .applied()
            .keys()
            .filter(|name| !listed.contains(name.as_str()))
            .cloned()
            .collect();
        let mut applied = 0;
        for name in changed.iter().chain(&gone) {
            applied += usize::from(self.apply_stored(store, name));
        }
        Ok(applied)
    }

    /// Makes `name` what the store holds now; true if that changed anything.
    fn apply_stored(&self, store: &FunctionStore, name: &FunctionName) -> bool {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let manifest = match store.read_manifest(name) {
            Ok(Some(found)) => found,
            Ok(None) => {
                if self.applied().remove(name).is_none() {
                    return false;
                }
                self.unregister(name);
                self.faas.synced.with_label_values(&["removed"]).inc();
                tracing::info!(function = %name, "removed through another runtime");
                return true;
            }
            // Gone between the listing and the read, or damaged: looked at again next time.
            Err(e) => {
                self.report_once(format!("reading stored function {name}: {e}"));
                return false;
            }
        };
        let serving = manifest.serving();
        // A change through this runtime may have written it meanwhile.
        if self.applied().get(name) == Some(&serving) {
            return false;
        }
        let previous = self.applied().insert(name.clone(), serving.clone());
        let (current, canary) = (
            serving.current.version,
            serving.canary.as_ref().map(|(r, c)| (r.version, c.percent)),
        );
        match self.routes_for(store, &serving, None) {
            Ok((routes, tier_ups)) => {
                self.install(routes);
                self.tier_up_all(tier_ups);
                self.faas.synced.with_label_values(&["deployed"]).inc();
                tracing::info!(function = %name, current, ?canary, "changed through another runtime");
                true
            }
            Err(e) => {
                self.faas.sync_errors.inc();
                // What may go away (reading the store, starting the compiler): the next
                // pass tries again. What will not (the component itself) is not retried.
                let transient = matches!(e, LoadError::Store(_) | LoadError::Compiler(_));
                if transient {
                    match previous {
                        Some(previous) => self.applied().insert(name.clone(), previous),
                        None => self.applied().remove(name),
                    };
                }
                tracing::error!(
                    function = %name,
                    current,
                    ?canary,
                    retried = transient,
                    "changed through another runtime, but this one cannot load it and keeps \
                     serving what it had: {e}"
                );
                false
            }
        }
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, HashMap<FunctionName, Serving>> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a problem with the shared store at most once, and counts it.
    fn report_once(&self, problem: String) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.insert(problem.clone()) {
            self.faas.sync_errors.inc();
            tracing::warn!("{problem}");
        }
    }

    /// Removes `name` (and its stored copy). False if there was no such function.
    pub fn remove(&self, name: &FunctionName) -> std::io::Result<bool> {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let stored = match &self.store {
            Some(store) => store.remove(name)?,
            None => false,
        };
        self.applied().remove(name);
        let removed = self.unregister(name);
        Ok(stored || removed)
    }

    /// Takes `name` out of the registry and its series out of the metrics; false if it
    /// was not there.
    fn unregister(&self, name: &str) -> bool {
        let removed = self.registry.remove(name);
        for function in removed.iter().flat_map(|routes| routes.functions()) {
            self.resident.retire(function);
        }
        let removed = removed.is_some();
        self.faas.functions.set(self.registry.len() as i64);
        if removed {
            self.faas.forget_function(name);
            crate::logs::global().forget(name);
            if let Some(http) = &self.http {
                http.forget_function(name);
            }
        }
        removed
    }

    /// Counts a deploy API call by its result.
    pub(crate) fn count_deployment(&self, result: DeployResult) {
        self.faas
            .deployments
            .with_label_values(&[result.label()])
            .inc();
    }

    /// Winch's loader; `None` when turned off or if building it failed.
    fn baseline_loader(&self) -> Option<&Loader> {
        self.baseline.as_ref()?.get()
    }

    /// Queues a Cranelift compile of `expected`'s component for the background worker
    /// (which caches the code in the store) and the swap in [`Self::swap_optimized`].
    fn tier_up(&self, expected: Arc<Function>, wasm: Vec<u8>) {
        self.tier_up.push(expected, wasm, || {
            let control = self.clone();
            Box::new(move |expected: Arc<Function>, wasm: Vec<u8>| {
                if !control.registry.is_current(&expected) {
                    return;
                }
                // A panic in one compile must not end the worker: the baseline code
                // keeps serving that function and the next job still runs.
                control.survive("tier_up", || {
                    match control.optimizing.ready(&expected.record, &wasm) {
                        Ok(optimized) => control.swap_optimized(&expected, optimized),
                        Err(e) => tracing::error!(
                            function = %expected.name(),
                            "compiling optimized code failed; the baseline code keeps serving: {e}"
                        ),
                    }
                });
                heap::release_free_memory();
            })
        });
    }

    /// Swaps `optimized` code in for `expected`'s, unless a newer deploy or a delete
    /// replaced `expected` meanwhile. Requests running finish on the code they started
    /// with.
    fn swap_optimized(&self, expected: &Arc<Function>, optimized: Ready) {
        let _serial = self.deploy_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.registry.is_current(expected) {
            return;
        }
        let compiled = optimized.compiled;
        expected.set_code(Arc::new(optimized));
        self.resident.loaded(expected);
        self.count_compile(expected.name(), compiled);
        tracing::info!(
            function = %expected.name(),
            compile_seconds = compiled.seconds,
            "optimized code swapped in"
        );
    }

    /// Installs `routes` for their name: the versions they no longer hold are retired
    /// (requests running on them finish), those with code in memory are counted as
    /// loaded.
    fn install(&self, routes: Routes) {
        if routes.canary.is_some() {
            // A canary's rollback counts from 0, so that its first is an increase
            // (the dashboards' annotations see it).
            for trigger in ["error_rate", "manual"] {
                self.faas
                    .canary_rollbacks
                    .with_label_values(&[routes.current.name().as_ref(), trigger]);
            }
        }
        let held: Vec<Arc<Function>> = routes.functions().cloned().collect();
        if let Some(replaced) = self.registry.insert(routes) {
            for old in replaced.functions() {
                if !held.iter().any(|f| Arc::ptr_eq(f, old)) {
                    self.resident.retire(old);
                }
            }
        }
        for function in &held {
            if function.code().is_some() {
                self.resident.loaded(function);
            }
        }
        self.faas.functions.set(self.registry.len() as i64);
    }

    /// Counts a version's code made ready as it was loaded.
    fn count_loaded(&self, function: &Function) {
        if let Some(ready) = function.code() {
            self.count_compile(function.name(), ready.compiled);
        }
    }

    fn count_compile(&self, name: &str, compiled: Compiled) {
        self.faas.count_ready(
            name,
            compiled.result(),
            compiled.seconds,
            compiled.cache_set_aside,
        );
    }
}

/// A version loaded by Winch and its component, for a Cranelift compile in the background.
type TierUpJob = (Arc<Function>, Vec<u8>);

/// Why a version whose compile an earlier run did not live through is not served.
const INTERRUPTED: &str = "the runtime ended while compiling it in an earlier run (a crash \
     or an out-of-memory kill); it is not compiled again: raise the compile limits or \
     deploy a smaller version";

/// `runtime_loaded_functions`, `runtime_loaded_code_bytes`, `runtime_log_memory_bytes`
/// and `runtime_outbound_connections_open`, read at scrape time.
fn resident_gauges(resident: &Arc<Resident>) -> prometheus::Result<ReadAtScrape> {
    let gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    let (count, bytes) = (resident.clone(), resident.clone());
    ReadAtScrape::new(vec![
        (
            "runtime_loaded_functions",
            "Functions whose code is in memory now (--functions-dir ones always; deployed ones from their first request until unloaded past --max-loaded-functions).",
            Box::new(move || gauge(count.count())),
        ),
        (
            "runtime_loaded_code_bytes",
            "Bytes of machine code the loaded functions map, code shared by several names counted once.",
            Box::new(move || gauge(bytes.code_bytes())),
        ),
        (
            "runtime_log_memory_bytes",
            "Bytes of functions' log lines kept for GET /functions/{name}/logs, all functions together (at most --max-log-memory-mib).",
            Box::new(move || gauge(crate::logs::global().bytes())),
        ),
        (
            "runtime_outbound_connections_open",
            "Outbound HTTP connections guests hold open now, all functions together (at most --max-outbound-connections).",
            Box::new(move || gauge(crate::outbound::open_connections())),
        ),
    ])
}

/// For the tests that the store sync survives failures and panics, in debug builds
/// only: with `RUNTIME_TEST_SYNC_PANIC=FILE`, a sync pass fails while FILE holds `fail`
/// and panics while it holds anything else. Release builds have no such hook.
#[cfg(debug_assertions)]
fn test_hook_sync_fails() -> std::io::Result<()> {
    let Some(file) = std::env::var_os("RUNTIME_TEST_SYNC_PANIC") else {
        return Ok(());
    };
    match std::fs::read_to_string(&file) {
        Ok(text) if text == "fail" => Err(std::io::Error::other("store sync test hook: failing")),
        Ok(_) => panic!("store sync test hook: {} exists", file.to_string_lossy()),
        Err(_) => Ok(()),
    }
}

/// A manifest's kept versions, for messages: `1, 3, 4`.
fn kept(manifest: &Manifest) -> String {
    manifest
        .versions
        .iter()
        .map(|r| r.version.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
