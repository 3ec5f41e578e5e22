use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limits;

/// A serverless function host: every request runs in a fresh, sandboxed instance of a
/// wasi:http component.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// Address for function traffic (`/{function}/...`).
    #[arg(long, env = "RUNTIME_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address for `/metrics`, `/healthz` and the deploy API (`/functions`).
    #[arg(long, env = "RUNTIME_OPS_LISTEN", default_value = "127.0.0.1:8081")]
    pub ops_listen: SocketAddr,

    /// Directory of functions loaded at start: `NAME.wasm`, with optional `NAME.toml`
    /// settings beside it. Every one is compiled and checked before the listeners bind.
    #[arg(long, env = "RUNTIME_FUNCTIONS_DIR")]
    pub functions_dir: Option<PathBuf>,

    /// Directory where deployed functions and their compiled code are kept, so deploys
    /// survive restarts and a restart compiles nothing it compiled before. Without it,
    /// deploys live in memory only. Keep it private to the runtime's user: compiled code
    /// in it is loaded and run as is.
    #[arg(long, env = "RUNTIME_STORE_DIR")]
    pub store_dir: Option<PathBuf>,

    /// Bearer token the deploy API's mutating calls (PUT, DELETE) require. Required when
    /// the ops listener is not on a loopback address.
    #[arg(long, env = "RUNTIME_DEPLOY_TOKEN", hide_env_values = true)]
    pub deploy_token: Option<String>,

    /// Largest component accepted by `PUT /functions/{name}`, in bytes.
    #[arg(long, env = "RUNTIME_MAX_DEPLOY_BYTES", default_value_t = 64 << 20)]
    pub max_deploy_bytes: usize,

    /// Default linear-memory cap per instance, in MiB (a function's settings may lower
    /// or raise it up to --max-memory-mib).
    #[arg(long, env = "RUNTIME_MEMORY_MIB", default_value_t = 128)]
    pub memory_mib: u64,

    /// Largest memory cap any function may ask for, in MiB: sizes the pooling
    /// allocator's memory slots.
    #[arg(long, env = "RUNTIME_MAX_MEMORY_MIB", default_value_t = 1024)]
    pub max_memory_mib: u64,

    /// Default wall-clock timeout per request, in seconds.
    #[arg(long, env = "RUNTIME_TIMEOUT_SECS", default_value_t = 30.0)]
    pub timeout_secs: f64,

    /// Default maximum of concurrent instances per function; requests beyond it get 503
    /// with Retry-After.
    #[arg(long, env = "RUNTIME_MAX_CONCURRENCY", default_value_t = 200)]
    pub max_concurrency: u32,

    /// Default largest request body, in bytes; larger ones get 413.
    #[arg(long, env = "RUNTIME_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: u64,

    /// Instance slots in the pooling allocator, for all functions together: the most
    /// instances alive at once.
    #[arg(long, env = "RUNTIME_POOL_INSTANCES", default_value_t = 1000)]
    pub pool_instances: u32,

    /// Bytes of each linear memory kept resident when its slot is reused, instead of
    /// being returned to the OS with madvise. Higher: fewer page faults and TLB
    /// shootdowns per request, more resident memory.
    #[arg(long, env = "RUNTIME_KEEP_RESIDENT_BYTES", default_value_t = 1 << 20)]
    pub keep_resident_bytes: usize,

    /// Slots whose memory beyond `--keep-resident-bytes` is returned (madvise) together,
    /// sharing one TLB shootdown. Only functions that touch more than that decommit at
    /// all; for them a batch of N keeps up to N instances' pages resident (16 measured
    /// 190-226 MiB peak for 16 MiB requests against 56-62 MiB unbatched, with no gain in
    /// throughput), so the default returns each slot's memory at once.
    #[arg(long, env = "RUNTIME_DECOMMIT_BATCH_SIZE", default_value_t = 1)]
    pub decommit_batch_size: usize,

    /// Serve a newly deployed component first with code from Winch, wasmtime's baseline
    /// compiler (about 4x faster to compile, slower to run), while Cranelift compiles
    /// the optimized code in the background; that version then swaps in. A deploy whose
    /// optimized code is already cached skips the baseline. `false`: Cranelift only.
    #[arg(long, env = "RUNTIME_BASELINE_COMPILE", default_value_t = true, action = clap::ArgAction::Set)]
    pub baseline_compile: bool,

    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "RUNTIME_DRAIN_TIMEOUT_SECS", default_value_t = 30.0)]
    pub drain_timeout_secs: f64,

    /// Seconds a client may take to send its request headers.
    #[arg(long, env = "RUNTIME_HEADER_READ_TIMEOUT_SECS", default_value_t = 10.0)]
    pub header_read_timeout_secs: f64,

    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "RUNTIME_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl Config {
    /// Checks what clap's types cannot, before anything is compiled or bound.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, secs) in [
            ("--timeout-secs", self.timeout_secs),
            ("--drain-timeout-secs", self.drain_timeout_secs),
            ("--header-read-timeout-secs", self.header_read_timeout_secs),
        ] {
            anyhow::ensure!(
                secs.is_finite() && secs > 0.0,
                "{name} must be a positive number of seconds, got {secs}"
            );
        }
        anyhow::ensure!(self.memory_mib >= 1, "--memory-mib must be at least 1");
        anyhow::ensure!(
            self.memory_mib <= self.max_memory_mib,
            "--memory-mib ({}) exceeds --max-memory-mib ({})",
            self.memory_mib,
            self.max_memory_mib
        );
        anyhow::ensure!(
            self.max_memory_mib <= 4096,
            "--max-memory-mib is at most 4096 (wasm32 address space)"
        );
        anyhow::ensure!(
            self.max_concurrency >= 1,
            "--max-concurrency must be at least 1"
        );
        anyhow::ensure!(
            self.pool_instances >= 1,
            "--pool-instances must be at least 1"
        );
        anyhow::ensure!(
            self.worker_threads != Some(0),
            "--worker-threads must be at least 1"
        );
        if self.deploy_token.as_deref() == Some("") {
            anyhow::bail!("--deploy-token must not be empty");
        }
        if self.deploy_token.is_none() && !self.ops_listen.ip().is_loopback() {
            anyhow::bail!(
                "refusing to serve the deploy API on {} without a token: set --deploy-token \
                 (RUNTIME_DEPLOY_TOKEN) or listen on a loopback address",
                self.ops_listen
            );
        }
        if let Some(dir) = &self.functions_dir {
            anyhow::ensure!(
                dir.is_dir(),
                "--functions-dir {} is not a directory",
                dir.display()
            );
        }
        Ok(())
    }

    /// The limits a function gets when its settings say nothing.
    pub fn default_limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_mib << 20,
            timeout: Duration::from_secs_f64(self.timeout_secs),
            max_concurrency: self.max_concurrency,
            max_body_bytes: self.max_body_bytes,
        }
    }
}
