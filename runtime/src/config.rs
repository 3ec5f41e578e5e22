use service_ops::Mib;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};

use std::path::PathBuf;
use std::time::Duration;

use crate::limits::Limits;

service_ops::listener_flags!(
    Listen,
    env_prefix = "RUNTIME",
    traffic = "127.0.0.1:8080",
    ops = "127.0.0.1:8081",
    // No proxy in front in compose or Kubernetes: one client may hold a tenth of the
    // connections.
    per_peer = "1000"
);

/// A serverless function host: every request runs in a fresh, sandboxed instance of a
/// wasi:http component.
#[derive(clap::Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub listen: Listen,

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

    /// Share --store-dir with other runtimes (replicas on one volume): a deploy or
    /// delete made through any of them is applied by all, within --store-poll-interval.
    /// Every runtime on the store must run with it; without it the store is this
    /// runtime's alone and a second one is refused.
    #[arg(long, env = "RUNTIME_SHARED_STORE", requires = "store_dir")]
    pub shared_store: bool,

    /// File holding the key (at least 32 bytes; any text or binary) that compiled code
    /// in --store-dir is tagged with: only code tagged with it is loaded. Replicas
    /// sharing a store share compiled code only if they share this key (a Secret in
    /// Kubernetes); without it a shared store caches no compiled code, and a store used
    /// alone keeps a key of its own in the store.
    #[arg(long, env = "RUNTIME_CACHE_KEY_FILE", requires = "store_dir")]
    pub cache_key_file: Option<PathBuf>,

    /// Versions of each function --store-dir keeps (at least 1), the current one and a
    /// canary's among them: what `runtime rollback` can go back to. Older ones, and
    /// their blobs when no other version names them, are removed as new ones come.
    #[arg(long, env = "RUNTIME_KEEP_VERSIONS", default_value_t = std::num::NonZeroU32::new(5).expect("5 > 0"))]
    pub keep_versions: std::num::NonZeroU32,

    /// Requests a canary serves in this runtime before its error rate is judged against
    /// its --canary-max-error-rate (a deploy setting).
    #[arg(long, env = "RUNTIME_CANARY_MIN_REQUESTS", default_value_t = 20)]
    pub canary_min_requests: u64,

    /// How often a runtime with --shared-store reads the store for changes the others
    /// made.
    #[arg(long, env = "RUNTIME_STORE_POLL_INTERVAL", default_value = "500ms",
          value_parser = service_ops::positive_duration)]
    pub store_poll_interval: Duration,

    /// Bearer token the deploy API's mutating calls (PUT, DELETE) and `env` values
    /// require. Required when the ops listener is not on a loopback address. Prefer
    /// --deploy-token-file: a command line is visible to every local user.
    #[arg(long, env = "RUNTIME_DEPLOY_TOKEN", hide_env_values = true,
          value_parser = parse_secret, conflicts_with = "deploy_token_file")]
    pub deploy_token: Option<Secret>,

    /// File holding the deploy token (its first line).
    #[arg(long, env = "RUNTIME_DEPLOY_TOKEN_FILE")]
    pub deploy_token_file: Option<PathBuf>,

    /// If --deploy-token-file does not exist, write a new random token there (mode 0600)
    /// and use it: a deployment gets a token of its own with nothing to configure
    /// (compose does this). An existing file is used as it is.
    #[arg(
        long,
        env = "RUNTIME_CREATE_DEPLOY_TOKEN",
        requires = "deploy_token_file"
    )]
    pub create_deploy_token: bool,

    /// Largest component accepted by `PUT /functions/{name}`, in bytes.
    #[arg(long, env = "RUNTIME_MAX_DEPLOY_BYTES", default_value_t = 64 << 20)]
    pub max_deploy_bytes: u64,

    /// How long a deploy may take to upload its component, whole; a slower one gets 408
    /// (the ops listener has few connections, so none may be held by a stalled upload).
    #[arg(long, env = "RUNTIME_DEPLOY_BODY_TIMEOUT", default_value = "60s",
          value_parser = service_ops::positive_duration)]
    pub deploy_body_timeout: Duration,

    /// Default linear-memory cap per instance, in MiB (a function's settings may lower
    /// or raise it up to --max-memory-mib).
    #[arg(long, env = "RUNTIME_MEMORY_MIB", default_value = "128",
          value_parser = service_ops::wasm_memory_mib)]
    pub memory_mib: Mib,

    /// Largest memory cap any function may ask for, in MiB: sizes the pooling
    /// allocator's memory slots. At most 4096 (a wasm32 address space).
    #[arg(long, env = "RUNTIME_MAX_MEMORY_MIB", default_value = "1024",
          value_parser = service_ops::wasm_memory_mib)]
    pub max_memory_mib: Mib,

    /// Default wall-clock timeout per request (`30s`, `500ms`, or a number of seconds).
    #[arg(long, visible_alias = "timeout-secs", env = "RUNTIME_TIMEOUT",
          default_value = "30s", value_parser = service_ops::positive_duration)]
    pub timeout: Duration,

    /// Default maximum of concurrent instances per function; requests beyond it get 503
    /// with Retry-After.
    #[arg(long, env = "RUNTIME_MAX_CONCURRENCY", default_value = "200")]
    pub max_concurrency: NonZeroU32,

    /// Default largest request body, in bytes; larger ones get 413.
    #[arg(long, env = "RUNTIME_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: u64,

    /// Bytes of stdout and stderr one invocation may write to the runtime's log; lines
    /// are cut at 4 KiB, and output past the budget is dropped after one line saying so.
    #[arg(long, env = "RUNTIME_LOG_BUDGET_BYTES", default_value_t = 64 << 10)]
    pub log_budget_bytes: usize,

    /// Instance slots in the pooling allocator, for all functions together: the most
    /// instances alive at once.
    #[arg(long, env = "RUNTIME_POOL_INSTANCES", default_value = "1000")]
    pub pool_instances: NonZeroU32,

    /// Memory all instances in flight may reserve together, in MiB: each reserves its
    /// function's memory limit while it lives; one that does not fit is refused with
    /// 503. Default: three quarters of the cgroup's memory limit, or of RAM.
    #[arg(long, env = "RUNTIME_MAX_TOTAL_MEMORY_MIB")]
    pub max_total_memory_mib: Option<std::num::NonZeroU64>,

    /// Pool slots reserved for each deployed function (at most --pool-instances divided
    /// by the number of functions): a busy function may not take the slots the others'
    /// reserves need, so it cannot starve them.
    #[arg(long, env = "RUNTIME_POOL_RESERVE", default_value_t = 8)]
    pub pool_reserve: u32,

    /// MiB of the memory budget kept for each deployed function (at most the budget
    /// divided by the number of functions): a busy function's instances may not grow
    /// into the memory the others' reserves need, so they cannot starve them.
    #[arg(long, env = "RUNTIME_MEMORY_RESERVE_MIB", default_value_t = 64)]
    pub memory_reserve_mib: u32,

    /// Refuse outbound HTTP to internal addresses (loopback, private, link-local, ...)
    /// for every function, even when its allowlist names the IP itself.
    #[arg(long, env = "RUNTIME_BLOCK_INTERNAL_OUTBOUND")]
    pub block_internal_outbound: bool,

    /// Outbound HTTP connections open at once, all functions together; past it a
    /// guest's request fails with connection-limit-reached.
    #[arg(long, env = "RUNTIME_MAX_OUTBOUND_CONNECTIONS", default_value_t = 1024)]
    pub max_outbound_connections: usize,

    /// Bytes of each instance's tables and async stack kept resident when its slot is
    /// reused, reset in place instead of returned to the OS with madvise: fewer page
    /// faults and TLB shootdowns per request, a little more resident memory.
    #[arg(long, env = "RUNTIME_KEEP_RESIDENT_BYTES", default_value_t = 1 << 20)]
    pub keep_resident_bytes: usize,

    /// Bytes of each linear memory a pool slot keeps resident between requests: the
    /// pages a request dirtied are zeroed in place up to this many, the rest returned to
    /// the OS. A request then pays for the pages it touched, not for faulting them in
    /// again; a warm slot holds at most this much. Raise it for functions that touch
    /// more per request (16 MiB and up: docs/performance.md); 0 returns it all.
    #[arg(long, env = "RUNTIME_MEMORY_KEEP_RESIDENT_BYTES", default_value_t = 1 << 20)]
    pub memory_keep_resident_bytes: usize,

    /// Slots whose memory beyond `--keep-resident-bytes` is returned (madvise) together,
    /// sharing one TLB shootdown. Only functions that touch more than that decommit at
    /// all; for them a batch of N keeps up to N instances' pages resident (16 measured
    /// 190-226 MiB peak for 16 MiB requests against 56-62 MiB unbatched, with no gain in
    /// throughput), so the default returns each slot's memory at once.
    #[arg(long, env = "RUNTIME_DECOMMIT_BATCH_SIZE", default_value = "1")]
    pub decommit_batch_size: NonZeroUsize,

    /// Most deployed functions with their code in memory at once. A stored function is
    /// loaded by its first request (from the compiled-code cache, mapped); past this
    /// many, the least recently used is unloaded and its next request loads it again (a
    /// cold start). Names that deploy the same component share one copy of its code.
    /// Functions from --functions-dir, and deploys without --store-dir, stay loaded and
    /// do not count.
    #[arg(long, env = "RUNTIME_MAX_LOADED_FUNCTIONS", default_value = "1000")]
    pub max_loaded_functions: NonZeroUsize,

    /// Serve a newly deployed component first with code from Winch, wasmtime's baseline
    /// compiler (about 4x faster to compile, slower to run), while Cranelift compiles
    /// the optimized code in the background; that version then swaps in. A deploy whose
    /// optimized code is already cached skips the baseline. `false`: Cranelift only.
    #[arg(long, env = "RUNTIME_BASELINE_COMPILE", default_value_t = true, action = clap::ArgAction::Set)]
    pub baseline_compile: bool,
    #[command(flatten)]
    pub compile: crate::compiler::CompileLimits,

    /// What each function's log lines (stdout and stderr) may hold in memory for
    /// `GET /functions/{name}/logs` and `runtime logs`, in KiB: its newest lines.
    #[arg(long, env = "RUNTIME_LOG_RING_KIB", default_value_t = 64)]
    pub log_ring_kib: usize,

    /// What all functions' kept log lines may hold together, in MiB; past it, the
    /// oldest lines of any function go first.
    #[arg(long, env = "RUNTIME_MAX_LOG_MEMORY_MIB", default_value_t = 32)]
    pub max_log_memory_mib: usize,
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(Secret(value.to_string()))
}

/// A configuration whose values contradict each other.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--memory-mib ({memory}) exceeds --max-memory-mib ({max})")]
    MemoryOverMax { memory: u32, max: u32 },
    #[error(
        "refusing to serve the deploy API on {0} without a token: set --deploy-token \
         (RUNTIME_DEPLOY_TOKEN) or listen on a loopback address"
    )]
    TokenRequired(SocketAddr),
    #[error(
        "--memory-mib ({memory}) exceeds the memory budget for instances ({budget} MiB): \
         lower it or raise --max-total-memory-mib"
    )]
    MemoryOverBudget { memory: u32, budget: u64 },
    #[error(
        "--max-body-bytes ({bytes}) exceeds the body buffer (--max-body-buffer-mib {buffer_mib}): \
         no body that large could be read"
    )]
    BodyOverBuffer { bytes: u64, buffer_mib: u32 },
    #[error("--deploy-token-file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("--cache-key-file {path}: {reason}")]
    CacheKeyFile { path: PathBuf, reason: String },
    #[error("--functions-dir {0} is not a directory")]
    FunctionsDir(PathBuf),
    #[error(transparent)]
    Listeners(#[from] service_ops::start::ListenersError),
}

impl Config {
    /// The rules across values, before anything is compiled or bound; each value's own
    /// rules are in its type.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_mib > self.max_memory_mib {
            return Err(ConfigError::MemoryOverMax {
                memory: self.memory_mib.get(),
                max: self.max_memory_mib.get(),
            });
        }
        let budget = self.memory_budget_mib();
        if u64::from(self.memory_mib.get()) > budget {
            return Err(ConfigError::MemoryOverBudget {
                memory: self.memory_mib.get(),
                budget,
            });
        }
        if self.max_body_bytes > self.ceilings().body_bytes {
            return Err(ConfigError::BodyOverBuffer {
                bytes: self.max_body_bytes,
                buffer_mib: self.listen.max_body_buffer_mib.get(),
            });
        }
        self.cache_key()?;
        if self.token()?.is_none() && !self.listen.ops_listen.ip().is_loopback() {
            return Err(ConfigError::TokenRequired(self.listen.ops_listen));
        }
        if let Some(dir) = &self.functions_dir
            && !dir.is_dir()
        {
            return Err(ConfigError::FunctionsDir(dir.clone()));
        }
        self.listen.listeners().validate()?;
        Ok(())
    }

    /// The deploy token: the flag's, or the first line of the token file.
    pub fn token(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(path) = &self.deploy_token_file else {
            return Ok(self.deploy_token.clone());
        };
        let fail = |reason: String| ConfigError::TokenFile {
            path: path.clone(),
            reason,
        };
        if self.create_deploy_token
            && crate::secret::create_file(path).map_err(|e| fail(e.to_string()))?
        {
            tracing::info!(path = %path.display(), "wrote a new deploy token (read it from the file)");
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        parse_secret(token)
            .map(Some)
            .map_err(|e| fail(format!("the token {e}")))
    }

    /// The key from --cache-key-file (the SHA-256 of its bytes), if given.
    pub fn cache_key(&self) -> Result<Option<crate::store::CodeKey>, ConfigError> {
        let Some(path) = &self.cache_key_file else {
            return Ok(None);
        };
        let fail = |reason: String| ConfigError::CacheKeyFile {
            path: path.clone(),
            reason,
        };
        crate::secret::key_from_file(path).map(Some).map_err(fail)
    }

    /// The memory budget for all instances in flight, in MiB: the flag, or three
    /// quarters of the cgroup's limit or of RAM.
    pub fn memory_budget_mib(&self) -> u64 {
        self.max_total_memory_mib
            .map_or_else(crate::admission::default_memory_budget_mib, |m| m.get())
    }

    /// The largest memory limit a function may have: the pool's slot size, or the whole
    /// budget if that is smaller (a bigger one could never get an instance).
    pub fn max_function_memory(&self) -> Mib {
        let budget = u32::try_from(self.memory_budget_mib()).unwrap_or(u32::MAX);
        Mib::new(self.max_memory_mib.get().min(budget))
    }

    /// The most any function's settings may ask for.
    pub fn ceilings(&self) -> crate::limits::Ceilings {
        crate::limits::Ceilings {
            memory: self.max_function_memory(),
            body_bytes: u64::from(self.listen.max_body_buffer_mib.get()) << 20,
        }
    }

    /// The limits a function gets when its settings say nothing.
    pub fn default_limits(&self) -> Limits {
        Limits {
            memory: self.memory_mib,
            timeout: self.timeout,
            max_concurrency: self.max_concurrency,
            max_body_bytes: self.max_body_bytes,
            log_budget_bytes: self.log_budget_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let config = super::Config::parse_from(["runtime", "--deploy-token", "hunter2"]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.token().unwrap().unwrap().expose(), "hunter2");
    }

    #[test]
    fn the_token_file_gives_its_first_line() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "s3cret\n").unwrap();
        let path = file.path().to_str().unwrap();
        let config = super::Config::parse_from(["runtime", "--deploy-token-file", path]);
        assert_eq!(config.token().unwrap().unwrap().expose(), "s3cret");
        std::fs::write(file.path(), "\n").unwrap();
        let err = config.token().unwrap_err().to_string();
        assert!(err.contains("must not be empty"), "{err}");
    }

    #[test]
    fn a_missing_token_file_is_created_once_when_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let args = ["runtime", "--deploy-token-file", path.to_str().unwrap()];
        // Without --create-deploy-token a missing file is an error naming it.
        let err = super::Config::parse_from(args)
            .token()
            .unwrap_err()
            .to_string();
        assert!(err.contains(path.to_str().unwrap()), "{err}");
        assert!(!path.exists());

        let config = super::Config::parse_from(args.iter().chain(&["--create-deploy-token"]));
        let first = config.token().unwrap().unwrap().expose().to_string();
        assert_eq!(first.len(), 64, "{first}");
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second start keeps it; another file gets another token.
        assert_eq!(config.token().unwrap().unwrap().expose(), first);
        let other = dir.path().join("other");
        let config = super::Config::parse_from([
            "runtime",
            "--deploy-token-file",
            other.to_str().unwrap(),
            "--create-deploy-token",
        ]);
        assert_ne!(config.token().unwrap().unwrap().expose(), first);
    }
}
