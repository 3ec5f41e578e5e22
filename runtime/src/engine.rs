//! The process's wasmtime engines (Cranelift for optimized code; Winch, the baseline
//! compiler, for fast first deploys), their linker, and the epoch ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::Config;
use crate::host::{Host, WagiHost};

/// How often the epoch advances: a guest running wasm yields to the scheduler at every
/// tick, so this bounds how long it holds a worker thread at a time, and is the
/// resolution of a CPU-bound guest's timeout (its tokio timer is checked when it yields).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine: async (guests may await host I/O), component model, pooling
/// allocator with copy-on-write memory images (so instantiation is a few microseconds of
/// mapping, not a copy), and epoch interruption for deadlines.
pub fn build(config: &Config, strategy: wasmtime::Strategy) -> anyhow::Result<Engine> {
    let slots = config.pool_instances.get();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // A component built by wit-component holds its main module plus a few shim
        // modules; every one is a core instance, most without a memory.
        .max_core_instances_per_component(32)
        .total_core_instances(slots.saturating_mul(8))
        .max_memories_per_component(4)
        .total_memories(slots.saturating_mul(2))
        .max_tables_per_component(8)
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_memory_size(config.max_memory_mib.bytes_usize())
        // Returning a slot's memory with madvise costs, on every request, a page fault
        // per page touched next time and, in a multi-threaded process, a cross-core TLB
        // shootdown. Keeping memory resident resets it in place instead, with
        // PAGEMAP_SCAN (Linux 6.7+) only where the guest dirtied it: a request pays for
        // the pages it touched, and a warm slot keeps at most the budget. That the scan
        // finds only touched pages is our patch to wasmtime (patches/).
        .linear_memory_keep_resident(config.memory_keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes)
        .async_stack_keep_resident(config.keep_resident_bytes)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(config.decommit_batch_size.get());

    let mut wasm = compile_config(strategy);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| anyhow::anyhow!("configuring wasmtime: {e:#}"))
}

/// Every setting that decides what `strategy` compiles, and nothing about running it:
/// what a compile in a child process (`compiler::worker`) builds its engine from, so
/// its code loads into the serving engine (a test compares their compatibility hashes).
pub fn compile_config(strategy: wasmtime::Strategy) -> wasmtime::Config {
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        // Concurrent (component-model-async) execution makes every component call
        // several times dearer (upstream measured 140 -> 600 ns) and no wasi:http 0.2
        // guest needs it. Off explicitly, so a feature that a dependency switches on
        // cannot turn it on behind our back (a test checks).
        .concurrency_support(false)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .strategy(strategy);
    wasm
}

/// Everything a guest may import: the wasi:http proxy world, plus the rest of WASI 0.2
/// (cli, filesystem, sockets) because Rust's std on wasm32-wasip2 imports
/// `wasi:cli/environment` and friends. Those are present but empty: no preopened
/// directories, no host environment, sockets denied (see `host`).
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<Host>> {
    use crate::host::CappedRandom;
    use wasmtime_wasi::p2::bindings::random;

    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // The same host functions for wasi:io and wasi:random, reaching their own state
    // instead of the whole WASI context, which is then only built for a guest that uses
    // the rest (environment, clocks, stdio). An HTTP body's streams and std's HashMap
    // seed are on nearly every request; building the context costs three RNG seedings.
    linker.allow_shadowing(true);
    wasmtime_wasi_io::add_to_linker_async(&mut linker)?;
    // Capped per call (`host::MAX_RANDOM_BYTES`).
    let capped = Host::capped_random;
    random::random::add_to_linker::<Host, CappedRandom>(&mut linker, capped)?;
    random::insecure::add_to_linker::<Host, CappedRandom>(&mut linker, capped)?;
    random::insecure_seed::add_to_linker::<Host, CappedRandom>(&mut linker, capped)?;
    linker.allow_shadowing(false);
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    charge_header_sets(&mut linker)?;
    Ok(linker)
}

/// Replaces the three ways a guest makes a header set (`fields` constructor,
/// `from-list`, `clone`) with the same calls after a charge to the instance's memory
/// budget ([`Host::charge_header_set`]): with 2,048 live resources of 32 KiB each, header
/// sets could otherwise pin 64 MiB per instance outside every budget.
fn charge_header_sets(linker: &mut Linker<Host>) -> anyhow::Result<()> {
    use wasmtime::StoreContextMut;
    use wasmtime::component::Resource;
    use wasmtime_wasi_http::FieldMap;
    use wasmtime_wasi_http::WasiHttpView as _;
    use wasmtime_wasi_http::p2::bindings::http::types::{self, HostFields};
    linker.allow_shadowing(true);
    let mut types_instance = linker.instance(HTTP_TYPES)?;
    types_instance.func_wrap(
        "[constructor]fields",
        |mut store: StoreContextMut<'_, Host>, (): ()| {
            let host = store.data_mut();
            host.charge_header_set()?;
            Ok((HostFields::new(&mut host.http())?,))
        },
    )?;
    types_instance.func_wrap(
        "[static]fields.from-list",
        |mut store: StoreContextMut<'_, Host>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let host = store.data_mut();
            host.charge_header_set()?;
            let mut http = host.http();
            let made: Result<Resource<FieldMap>, types::HeaderError> =
                match HostFields::from_list(&mut http, entries) {
                    Ok(fields) => Ok(fields),
                    Err(e) => Err(types::Host::convert_header_error(&mut http, e)?),
                };
            Ok((made,))
        },
    )?;
    types_instance.func_wrap(
        "[method]fields.clone",
        |mut store: StoreContextMut<'_, Host>, (fields,): (Resource<FieldMap>,)| {
            let host = store.data_mut();
            host.charge_header_set()?;
            Ok((HostFields::clone(&mut host.http(), fields)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The wasi:http types interface as wasmtime-wasi-http registers it (guests importing any
/// 0.2.x patch version are linked to it).
const HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// Advances the engines' epochs every [`EPOCH_TICK`] on one thread for the whole process;
/// stops when dropped. Engines created later (the baseline compiler's, on first use) are
/// added with [`EpochTicker::add`].
#[derive(Debug)]
pub struct EpochTicker {
    engines: Arc<std::sync::Mutex<Vec<Engine>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Self {
        let engines = Arc::new(std::sync::Mutex::new(vec![engine]));
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, ticked) = (stop.clone(), engines.clone());
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in ticked.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            engines,
            stop,
            thread: Some(thread),
        }
    }

    /// Ticks `engine` too from now on.
    pub fn add(&self, engine: Engine) {
        self.engines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(engine);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// WASI 0.1 (`wasi_snapshot_preview1`), and nothing else, for core modules; with its
/// predecessor `wasi_unstable`, which older toolchains' modules import, on the same
/// context.
pub fn wagi_linker(engine: &Engine) -> anyhow::Result<wasmtime::Linker<WagiHost>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, WagiHost::wasi)?;
    wasmtime_wasi::p0::add_to_linker_async(&mut linker, WagiHost::wasi)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn concurrency_support_stays_off_for_both_compilers() {
        let config = crate::Config::parse_from(["runtime", "--pool-instances", "2"]);
        for strategy in [wasmtime::Strategy::Cranelift, wasmtime::Strategy::Winch] {
            let engine = super::build(&config, strategy).unwrap();
            assert!(!engine.get_concurrency_support(), "{strategy:?}");
        }
    }
}
