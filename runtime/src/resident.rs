//! Which deployed functions have their code in memory. A function restored at start is
//! only its record until its first request loads its code (from the compiled-code cache,
//! mapped; compiled from the stored component if the cache has none); past
//! `--max-loaded-functions`, the least recently used is unloaded again: scale to zero
//! inside one process. Loading holds only the function's own lock, so a cold start never
//! waits for another function's, and concurrent first requests to one function load it
//! once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::function::{Function, Ready};
use crate::loader::{Baseline, LoadError, Loader};
use crate::store::FunctionStore;

/// The functions whose code is in memory, and how to load the others.
pub struct Resident {
    /// Most unpinned functions with code in memory at once.
    max_loaded: usize,
    /// Cranelift's loader, with the compiled-code cache.
    loader: Loader,
    /// Winch's, for a component Cranelift cannot compile within the limits.
    baseline: Option<Arc<Baseline>>,
    /// Where a function's component is read from when the cache has no code for it.
    store: Option<FunctionStore>,
    /// Every function with code in memory (pinned ones too), taken only when a load
    /// finishes, an unload happens or a function is replaced or deleted; never while
    /// loading.
    loaded: Mutex<Vec<Arc<Function>>>,
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("max_loaded", &self.max_loaded)
            .field("loaded", &self.count())
            .finish_non_exhaustive()
    }
}

/// A cold start's load: how long the request waited for its function's code.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub seconds: f64,
}

impl Resident {
    pub fn new(
        max_loaded: usize,
        loader: Loader,
        baseline: Option<Arc<Baseline>>,
        store: Option<FunctionStore>,
    ) -> Self {
        Self {
            max_loaded,
            loader,
            baseline,
            store,
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// `function`'s code, loading it first if it is not in memory (then also how long
    /// that took). Marks it used at `now`: any count that grows with every request (the
    /// request id), so the hot path adds no shared counter of its own.
    pub async fn code(
        self: &Arc<Self>,
        function: &Arc<Function>,
        now: u64,
    ) -> Result<(Arc<Ready>, Option<Loaded>), LoadError> {
        function.last_used.store(now, Ordering::Relaxed);
        if let Some(ready) = function.code() {
            return Ok((ready, None));
        }
        let start = Instant::now();
        let _loading = function.loading.lock().await;
        // Another request may have loaded it while this one waited.
        if let Some(ready) = function.code() {
            return Ok((ready, None));
        }
        let (resident, loading) = (self.clone(), function.clone());
        let ready = tokio::task::spawn_blocking(move || resident.load(&loading))
            .await
            .map_err(|e| LoadError::Store(std::io::Error::other(e)))??;
        let ready = Arc::new(ready);
        function.set_code(ready.clone());
        self.loaded(function);
        let seconds = start.elapsed().as_secs_f64();
        tracing::info!(
            function = %function.name(),
            seconds,
            result = ready.compiled.result(),
            "loaded on demand"
        );
        Ok((ready, Some(Loaded { seconds })))
    }

    /// Loads `function`'s code: from memory or the cache, else compiled from its
    /// stored component (checked against its digest as it is read); by Winch if
    /// Cranelift cannot compile it within the limits (as when it was deployed).
    fn load(&self, function: &Function) -> Result<Ready, LoadError> {
        let record = &function.record;
        let wasm = || match &self.store {
            Some(store) => store.wasm(record),
            // Without a store nothing is ever unloaded: functions from --functions-dir
            // and deploys held in memory only are pinned.
            None => Err(std::io::Error::other(
                "the function's code is not in memory and there is no store to load it from",
            )),
        };
        match self.loader.ready_with(record, function.kind, wasm) {
            Err(LoadError::CompileLimit(_, reason))
                if let Some(baseline) = self.baseline.as_ref().and_then(|b| b.get()) =>
            {
                tracing::warn!(
                    function = %function.name(),
                    "optimized code is past the compile limits ({reason}); loading the baseline compiler's"
                );
                baseline.ready_with(record, function.kind, wasm)
            }
            loaded => loaded,
        }
    }

    /// Records that `function`'s code is in memory (a deploy, a load, a swap); unloads
    /// the least recently used unpinned others past the bound.
    pub fn loaded(&self, function: &Arc<Function>) {
        let mut loaded = self.lock();
        if function.retired.load(Ordering::Relaxed) {
            return;
        }
        if !loaded.iter().any(|f| Arc::ptr_eq(f, function)) {
            loaded.push(function.clone());
        }
        loop {
            let unpinned = loaded.iter().filter(|f| !f.pinned).count();
            if unpinned <= self.max_loaded {
                break;
            }
            let Some(victim) = loaded
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.pinned && !Arc::ptr_eq(f, function))
                .min_by_key(|(_, f)| f.last_used.load(Ordering::Relaxed))
                .map(|(i, _)| i)
            else {
                break;
            };
            let victim = loaded.swap_remove(victim);
            victim.unload();
            tracing::debug!(function = %victim.name(), "unloaded: least recently used");
        }
    }

    /// Forgets `function`, replaced by a new version or deleted: it is never counted as
    /// loaded again, and its code goes when the last request holding it ends.
    pub fn retire(&self, function: &Arc<Function>) {
        let mut loaded = self.lock();
        function.retired.store(true, Ordering::Relaxed);
        loaded.retain(|f| !Arc::ptr_eq(f, function));
    }

    /// How many functions have their code in memory.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Bytes of machine code those functions map, each shared code counted once.
    pub fn code_bytes(&self) -> usize {
        let loaded = self.lock();
        let mut seen = std::collections::HashSet::new();
        loaded
            .iter()
            .filter_map(|f| f.code())
            .filter(|ready| seen.insert(Arc::as_ptr(&ready.code)))
            .map(|ready| ready.code.image_bytes())
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Function>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}
