//! The runtime's own metrics: the OpenTelemetry FaaS conventions spelled the Prometheus
//! way, plus what a host operator needs (instances, rejections, compile time).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use service_ops::LATENCY_BUCKETS;

use crate::registry::Role;

/// A set of `reason` label values: the enum, its [`ALL`](ErrorReason::ALL) list and its
/// labels come from one list, so no reason can be counted that is not also forgotten with
/// its function, or listed in the help text.
macro_rules! reasons {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// Every label, for a help text: `a, b, c`.
            fn labels() -> String {
                Self::ALL.iter().map(|r| r.label()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

reasons! {
    /// Why an invocation failed while it ran: `faas_errors_total{reason}`.
    ErrorReason {
        Trap => "trap",
        Memory => "memory",
        Timeout => "timeout",
        NoResponse => "no_response",
        ErrorResponse => "error_response",
        BadCgi => "bad_cgi",
        Exit => "exit",
        Load => "load",
    }
}

reasons! {
    /// Why an invocation is a function's cold start (the first of its version in this
    /// process, or the first after its code was unloaded): `faas_coldstarts_total{reason}`.
    ColdStart {
        /// Its first request since it was deployed by name or restored at start.
        FirstRequest => "first_request",
        /// Its first request after its code was unloaded to make room.
        Evicted => "evicted",
        /// The first request to a new version of a name that was serving another.
        Redeployed => "redeployed",
    }
}

reasons! {
    /// What a call to the deploy API came to: `faas_deployments_total{result}`.
    DeployResult {
        Created => "created",
        Replaced => "replaced",
        Canary => "canary",
        Promoted => "promoted",
        RolledBack => "rolled_back",
        Invalid => "invalid",
        Deleted => "deleted",
        NotFound => "not_found",
        Unauthorized => "unauthorized",
        Failed => "failed",
    }
}

reasons! {
    /// Why a request was refused before an instance was made:
    /// `faas_rejections_total{reason}`.
    RejectionReason {
        BodyTooLarge => "body_too_large",
        BodyTimeout => "body_timeout",
        BodyBuffer => "body_buffer",
        BodyBufferPeer => "body_buffer_peer",
        Concurrency => "concurrency",
        PoolShare => "pool_share",
        Capacity => "capacity",
        MemoryBudget => "memory_budget",
    }
}

#[derive(Debug, Clone)]
pub struct FaasMetrics {
    pub invocations: IntCounterVec,
    pub invoke_duration: HistogramVec,
    pub init_duration: HistogramVec,
    pub coldstarts: IntCounterVec,
    pub load_duration: HistogramVec,
    pub errors: IntCounterVec,
    pub timeouts: IntCounterVec,
    pub mem_usage: HistogramVec,
    pub active_instances: IntGaugeVec,
    pub rejections: IntCounterVec,
    pub compile_duration: HistogramVec,
    pub functions: IntGauge,
    pub deployments: IntCounterVec,
    pub compiles: IntCounterVec,
    pub quarantined: IntCounter,
    pub synced: IntCounterVec,
    pub sync_errors: IntCounter,
    pub worker_panics: IntCounterVec,
    pub canary_rollbacks: IntCounterVec,
}

/// The series of one function that every invocation touches, looked up once per
/// function version instead of hashing the label on every request.
#[derive(Debug, Clone)]
pub struct InvocationMetrics {
    /// Its `version` label: which of its name's versions it counts.
    pub role: Role,
    pub invocations: IntCounter,
    pub active_instances: IntGauge,
    pub init_duration: Histogram,
    pub invoke_duration: Histogram,
    pub mem_usage: Histogram,
}

/// `runtime_build_info{version, wasmtime} 1`: what is being measured, read by whoever
/// measures it (the bench records it in every report) from the running binary.
pub fn register_build_info(registry: &Registry) -> prometheus::Result<()> {
    let info = IntGaugeVec::new(
        Opts::new(
            "runtime_build_info",
            "The runtime's version and the wasmtime it is built with; always 1.",
        ),
        &["version", "wasmtime"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), wasmtime_version()])
        .set(1);
    registry.register(Box::new(info))
}

/// What the pooling allocator holds for slots not in use, read from wasmtime at scrape
/// time: `runtime_pool_warm_slots{kind}` and `runtime_pool_resident_bytes{kind}` (bytes
/// those slots keep resident: the RAM `--keep-resident-bytes` and
/// `--memory-keep-resident-bytes` cost). Cranelift's engine: the steady state.
pub struct PoolCollector {
    pool: wasmtime::PoolingAllocatorMetrics,
    warm: IntGaugeVec,
    resident: IntGaugeVec,
}

impl PoolCollector {
    /// `None` for an engine without the pooling allocator.
    pub fn new(engine: &wasmtime::Engine) -> prometheus::Result<Option<Self>> {
        let Some(pool) = engine.pooling_allocator_metrics() else {
            return Ok(None);
        };
        Ok(Some(Self {
            pool,
            warm: IntGaugeVec::new(
                Opts::new(
                    "runtime_pool_warm_slots",
                    "Pool slots not in use that were used before (memory, table, stack).",
                ),
                &["kind"],
            )?,
            resident: IntGaugeVec::new(
                Opts::new(
                    "runtime_pool_resident_bytes",
                    "Bytes that pool slots not in use keep resident (memory, table, stack).",
                ),
                &["kind"],
            )?,
        }))
    }
}

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCollector").finish_non_exhaustive()
    }
}

impl prometheus::core::Collector for PoolCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.warm
            .desc()
            .into_iter()
            .chain(self.resident.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let pool = &self.pool;
        let gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        for (kind, warm, resident) in [
            (
                "memory",
                pool.unused_warm_memories(),
                pool.unused_memory_bytes_resident(),
            ),
            (
                "table",
                pool.unused_warm_tables(),
                pool.unused_table_bytes_resident(),
            ),
            (
                "stack",
                pool.unused_warm_stacks(),
                pool.unused_stack_bytes_resident().unwrap_or(0),
            ),
        ] {
            self.warm.with_label_values(&[kind]).set(i64::from(warm));
            self.resident
                .with_label_values(&[kind])
                .set(gauge(resident));
        }
        let mut families = self.warm.collect();
        families.extend(self.resident.collect());
        families
    }
}

/// What the admission checks share, read at scrape time: the instance-memory budget
/// and what instances in flight reserve of it, and the pool slots in use.
pub struct AdmissionCollector {
    memory: std::sync::Arc<crate::admission::MemoryBudget>,
    pool: std::sync::Arc<crate::admission::PoolShares>,
    budget: IntGauge,
    reserved: IntGauge,
    slots: IntGauge,
}

impl AdmissionCollector {
    pub fn new(
        memory: std::sync::Arc<crate::admission::MemoryBudget>,
        pool: std::sync::Arc<crate::admission::PoolShares>,
    ) -> prometheus::Result<Self> {
        Ok(Self {
            memory,
            pool,
            budget: IntGauge::new(
                "runtime_memory_budget_bytes",
                "Memory all instances in flight may reserve together (--max-total-memory-mib).",
            )?,
            reserved: IntGauge::new(
                "runtime_memory_reserved_bytes",
                "Memory reserved now by instances in flight (each its function's limit).",
            )?,
            slots: IntGauge::new(
                "runtime_pool_slots_in_use",
                "Instance pool slots in use now, all functions together.",
            )?,
        })
    }
}

impl std::fmt::Debug for AdmissionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionCollector").finish_non_exhaustive()
    }
}

impl prometheus::core::Collector for AdmissionCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        [&self.budget, &self.reserved, &self.slots]
            .into_iter()
            .flat_map(|g| g.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mib = |v: u64| i64::try_from(v << 20).unwrap_or(i64::MAX);
        self.budget.set(mib(self.memory.total_mib()));
        self.reserved.set(mib(self.memory.reserved_mib()));
        self.slots.set(i64::from(self.pool.in_use()));
        [&self.budget, &self.reserved, &self.slots]
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}

/// How a [`ReadAtScrape`] gauge reads its value.
pub type Read = Box<dyn Fn() -> i64 + Send + Sync>;

/// Gauges read at scrape time from whatever owns the value: each a name, a help text
/// and how to read it.
pub struct ReadAtScrape {
    gauges: Vec<(IntGauge, Read)>,
}

impl ReadAtScrape {
    pub fn new(gauges: Vec<(&str, &str, Read)>) -> prometheus::Result<Self> {
        let gauges = gauges
            .into_iter()
            .map(|(name, help, read)| Ok((IntGauge::new(name, help)?, read)))
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { gauges })
    }
}

impl std::fmt::Debug for ReadAtScrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAtScrape").finish_non_exhaustive()
    }
}

impl prometheus::core::Collector for ReadAtScrape {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauges.iter().flat_map(|(g, _)| g.desc()).collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauges
            .iter()
            .flat_map(|(gauge, read)| {
                gauge.set(read());
                gauge.collect()
            })
            .collect()
    }
}

/// The wasmtime version this binary was built with, from the workspace's `Cargo.lock`.
pub fn wasmtime_version() -> &'static str {
    const LOCK: &str = include_str!("../../Cargo.lock");
    const ENTRY: &str = "\nname = \"wasmtime\"\nversion = \"";
    LOCK.find(ENTRY)
        .and_then(|at| LOCK[at + ENTRY.len()..].split('"').next())
        .unwrap_or("unknown")
}

impl FaasMetrics {
    /// Drops every series of a deleted function, so that deploying and deleting many
    /// names does not grow the exposition without bound. Instances still running keep
    /// their handles; what they count afterwards is simply not exported.
    pub fn forget_function(&self, name: &str) {
        let _ = self.timeouts.remove_label_values(&[name]);
        for role in Role::ALL {
            let version = role.label();
            let _ = self.invocations.remove_label_values(&[name, version]);
            let _ = self.invoke_duration.remove_label_values(&[name, version]);
            for reason in ErrorReason::ALL {
                let _ = self
                    .errors
                    .remove_label_values(&[name, version, reason.label()]);
            }
        }
        for trigger in ["error_rate", "manual"] {
            let _ = self.canary_rollbacks.remove_label_values(&[name, trigger]);
        }
        for reason in ColdStart::ALL {
            let _ = self.coldstarts.remove_label_values(&[name, reason.label()]);
        }
        for vec in [&self.init_duration, &self.mem_usage, &self.compile_duration] {
            let _ = vec.remove_label_values(&[name]);
        }
        let _ = self.active_instances.remove_label_values(&[name]);
        for reason in RejectionReason::ALL {
            let _ = self.rejections.remove_label_values(&[name, reason.label()]);
        }
    }

    /// Counts a function version's code made ready (`faas_compiles_total{result}`, its
    /// time in `faas_compile_duration_seconds`) and cached code set aside on the way.
    pub fn count_ready(&self, name: &str, result: &str, seconds: f64, set_aside: bool) {
        if set_aside {
            self.quarantined.inc();
        }
        self.compile_duration
            .with_label_values(&[name])
            .observe(seconds);
        self.compiles.with_label_values(&[result]).inc();
    }

    /// The series of `name`'s `role` version.
    pub fn for_function(&self, name: &str, role: Role) -> InvocationMetrics {
        let version = role.label();
        InvocationMetrics {
            role,
            invocations: self.invocations.with_label_values(&[name, version]),
            active_instances: self.active_instances.with_label_values(&[name]),
            init_duration: self.init_duration.with_label_values(&[name]),
            invoke_duration: self.invoke_duration.with_label_values(&[name, version]),
            mem_usage: self.mem_usage.with_label_values(&[name]),
        }
    }

    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let f = &["function"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        // `version`: which of a function's versions (current, canary) served.
        let fv = &["function", "version"];
        let histogram = |name: &str, help: &str, buckets: Vec<f64>, labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        };
        // 64 KiB (one wasm page) to 4 GiB, ×4 apart.
        let memory_buckets = prometheus::exponential_buckets(65536.0, 4.0, 12)?;
        let m = Self {
            invocations: counter(
                "faas_invocations_total",
                "Function invocations started, by function and version (current, or canary while one runs).",
                fv,
            )?,
            invoke_duration: histogram(
                "faas_invoke_duration_seconds",
                "Time from instantiation to the guest handler's return, by function and version (current, canary).",
                LATENCY_BUCKETS.to_vec(),
                fv,
            )?,
            init_duration: histogram(
                "faas_init_duration_seconds",
                "Time to instantiate a fresh instance for one request, by function.",
                LATENCY_BUCKETS.to_vec(),
                f,
            )?,
            coldstarts: counter(
                "faas_coldstarts_total",
                &format!(
                    "Cold starts: the first invocation of a function version in this process, and the first after its code was unloaded, by function and reason ({}).",
                    ColdStart::labels()
                ),
                &["function", "reason"],
            )?,
            load_duration: HistogramVec::new(
                HistogramOpts::new(
                    "faas_load_duration_seconds",
                    "Time a cold start waited for its function's code to be loaded (from memory another name shares, the compiled-code cache, or a compile), by cold-start reason; instantiation is faas_init_duration_seconds.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["reason"],
            )?,
            errors: counter(
                "faas_errors_total",
                &format!(
                    "Failed invocations by function, version (current, canary) and reason ({}).",
                    ErrorReason::labels()
                ),
                &["function", "version", "reason"],
            )?,
            timeouts: counter(
                "faas_timeouts_total",
                "Invocations cut off by their timeout.",
                f,
            )?,
            mem_usage: histogram(
                "faas_mem_usage_bytes",
                "Peak linear memory of one invocation, by function.",
                memory_buckets,
                f,
            )?,
            active_instances: IntGaugeVec::new(
                Opts::new(
                    "faas_active_instances",
                    "Instances alive right now, by function.",
                ),
                f,
            )?,
            rejections: counter(
                "faas_rejections_total",
                &format!(
                    "Requests refused before running, by function and reason ({}).",
                    RejectionReason::labels()
                ),
                &["function", "reason"],
            )?,
            compile_duration: histogram(
                "faas_compile_duration_seconds",
                "Time to compile and pre-instantiate a function version.",
                vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
                f,
            )?,
            functions: IntGauge::new("faas_functions_deployed", "Functions currently deployed.")?,
            deployments: counter(
                "faas_deployments_total",
                &format!("Deploy API calls by result ({}).", DeployResult::labels()),
                &["result"],
            )?,
            compiles: counter(
                "faas_compiles_total",
                "Function versions made ready, by how: compiled (Cranelift), baseline (Winch, served while Cranelift compiles), cached (compiled code loaded from the store), or shared (another name held the same component's code).",
                &["result"],
            )?,
            quarantined: IntCounter::new(
                "runtime_store_quarantined_total",
                "Store files set aside (quarantine/) because they were broken: manifests, blobs, functions that no longer load, compiled code that fails its SHA-256 or will not load.",
            )?,
            synced: counter(
                "runtime_store_synced_total",
                "Changes another runtime sharing the store made and this one applied, by change (deployed, removed).",
                &["change"],
            )?,
            sync_errors: IntCounter::new(
                "runtime_store_sync_errors_total",
                "Versions in a shared store this runtime could not read or load, and store syncs that failed (it keeps serving what it had, and tries again at the next poll).",
            )?,
            worker_panics: counter(
                "runtime_worker_panics_total",
                "Panics a background worker survived, by worker (store_sync, tier_up, canary): the pass is abandoned, logged, and the worker carries on with the next.",
                &["worker"],
            )?,
            canary_rollbacks: counter(
                "runtime_canary_rollbacks_total",
                "Canaries ended without being promoted, by function and trigger: error_rate (the runtime ended it past its --canary-max-error-rate) or manual (a rollback call).",
                &["function", "trigger"],
            )?,
        };
        registry.register(Box::new(m.invocations.clone()))?;
        registry.register(Box::new(m.invoke_duration.clone()))?;
        registry.register(Box::new(m.init_duration.clone()))?;
        registry.register(Box::new(m.coldstarts.clone()))?;
        registry.register(Box::new(m.load_duration.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.timeouts.clone()))?;
        registry.register(Box::new(m.mem_usage.clone()))?;
        registry.register(Box::new(m.active_instances.clone()))?;
        registry.register(Box::new(m.rejections.clone()))?;
        registry.register(Box::new(m.compile_duration.clone()))?;
        registry.register(Box::new(m.functions.clone()))?;
        registry.register(Box::new(m.deployments.clone()))?;
        registry.register(Box::new(m.compiles.clone()))?;
        registry.register(Box::new(m.quarantined.clone()))?;
        registry.register(Box::new(m.synced.clone()))?;
        registry.register(Box::new(m.sync_errors.clone()))?;
        registry.register(Box::new(m.worker_panics.clone()))?;
        registry.register(Box::new(m.canary_rollbacks.clone()))?;
        // Every result and sync change from 0, so that the first is an increase (a
        // series born at 1 is not, for `increase()`): the dashboards' deploy
        // annotations and store-sync panel see it.
        for result in DeployResult::ALL {
            m.deployments.with_label_values(&[result.label()]);
        }
        for change in ["deployed", "removed"] {
            m.synced.with_label_values(&[change]);
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wasmtime_version_is_found() {
        let v = super::wasmtime_version();
        assert_eq!(v.split('.').count(), 3, "{v}");
        assert!(v.split('.').all(|n| n.parse::<u32>().is_ok()), "{v}");
    }
}
