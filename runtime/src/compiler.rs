//! Compiling code a tenant wrote without letting it take the process. Wasmtime puts no
//! bound on a compile's time or memory, and a small module can ask for a lot of both
//! (huge function bodies, deep nesting, wide `br_table`s, many locals). So a component
//! is first checked for its shape against limits named by flags (a deploy over one gets
//! a 422 naming it), then compiled in a child process (this binary, `runtime __compile`)
//! under a memory limit, a CPU limit and a deadline, single-threaded, with at most
//! `--max-concurrent-compiles` children at once: a compile bomb costs its own deploy a
//! 422 and the host a bounded slice of its cores, never the process. The child writes
//! the serialised code (`Engine::precompile_component`), which the server deserialises
//! with the same engine settings (`engine::compile_config`).

use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::function::Compiler;

/// The limits on what the runtime will compile, and how.
#[derive(clap::Args, Debug, Clone)]
pub struct CompileLimits {
    /// Most functions a component (all its core modules together) or module may define.
    #[arg(long, env = "RUNTIME_MAX_WASM_FUNCTIONS", default_value_t = 200_000)]
    pub max_wasm_functions: u64,

    /// Largest function body, in KiB: compile time and memory grow with one function's
    /// size faster than with the number of functions.
    #[arg(long, env = "RUNTIME_MAX_FUNCTION_BODY_KIB", default_value_t = 2048)]
    pub max_function_body_kib: u64,

    /// Most locals one function may declare.
    #[arg(long, env = "RUNTIME_MAX_FUNCTION_LOCALS", default_value_t = 20_000)]
    pub max_function_locals: u64,

    /// Most core modules and nested components one component may hold.
    #[arg(long, env = "RUNTIME_MAX_WASM_MODULES", default_value_t = 64)]
    pub max_wasm_modules: u64,

    /// Memory one compile may use, in MiB (the compiler process's data limit); a
    /// component that needs more fails to deploy with 422.
    #[arg(long, env = "RUNTIME_COMPILE_MEMORY_MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(64..))]
    pub compile_memory_mib: u64,

    /// How long one compile may take (wall clock, and as much CPU time); a component
    /// that takes longer fails to deploy with 422.
    #[arg(long, env = "RUNTIME_COMPILE_TIMEOUT", default_value = "120s",
          value_parser = service_ops::positive_duration)]
    pub compile_timeout: Duration,

    /// Most compiles someone waits for (deploys, first requests) at once, each on one
    /// core, besides the one background compile of optimized code [default: half the
    /// cores, at least 1].
    #[arg(long, env = "RUNTIME_MAX_CONCURRENT_COMPILES")]
    pub max_concurrent_compiles: Option<NonZeroUsize>,

    /// Compile in the serving process instead of a child (the shape limits still apply,
    /// the memory, CPU and time limits do not). For debugging.
    #[arg(long, env = "RUNTIME_COMPILE_IN_PROCESS")]
    pub compile_in_process: bool,

    /// The program a child compile runs: this binary. Set by `main`; a runtime built
    /// inside another program (the benchmarks, unit tests) compiles in process.
    #[arg(skip)]
    pub program: Option<PathBuf>,
}

impl CompileLimits {
    /// The program to compile with, unless compiles run in process.
    fn child_program(&self) -> Option<&PathBuf> {
        self.program.as_ref().filter(|_| !self.compile_in_process)
    }

    fn concurrency(&self) -> usize {
        self.max_concurrent_compiles.map_or_else(
            || {
                let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
                (cores / 2).max(1)
            },
            NonZeroUsize::get,
        )
    }
}

/// A limit a component's shape exceeds: which flag, and by how much.
#[derive(Debug, thiserror::Error)]
#[error("{found}, more than --{flag} allows ({limit})")]
pub struct ShapeError {
    pub flag: &'static str,
    pub limit: u64,
    pub found: String,
}

/// Checks `wasm`'s size and shape against `limits`, before any compiler sees it: the
/// functions it defines (nested modules included), each body's size and locals, and the
/// modules it nests. Malformed input passes: the compiler rejects it with its own,
/// better message.
pub fn check_shape(wasm: &[u8], limits: &CompileLimits) -> Result<(), ShapeError> {
    use wasmparser::Payload;
    let over = |flag, limit, found| Err(ShapeError { flag, limit, found });
    let (mut functions, mut modules) = (0u64, 0u64);
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                modules += 1;
                if modules > limits.max_wasm_modules {
                    let found = format!("it holds more than {modules} modules and components");
                    return over("max-wasm-modules", limits.max_wasm_modules, found);
                }
            }
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                if functions > limits.max_wasm_functions {
                    let found = format!("it defines more than {functions} functions");
                    return over("max-wasm-functions", limits.max_wasm_functions, found);
                }
                let size = body.range().end.saturating_sub(body.range().start);
                if size > limits.max_function_body_kib << 10 {
                    let found = format!(
                        "function {} has a body of {} KiB",
                        functions - 1,
                        size.div_ceil(1024)
                    );
                    return over("max-function-body-kib", limits.max_function_body_kib, found);
                }
                let Ok(mut reader) = body.get_locals_reader() else {
                    return Ok(());
                };
                let mut locals = 0u64;
                for _ in 0..reader.get_count() {
                    let Ok((count, _)) = reader.read() else {
                        return Ok(());
                    };
                    locals += u64::from(count);
                }
                if locals > limits.max_function_locals {
                    let found = format!("function {} declares {locals} locals", functions - 1);
                    return over("max-function-locals", limits.max_function_locals, found);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a compile in a child process gave no code.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The compiler rejected the input (invalid wasm): its message.
    #[error("{0}")]
    Rejected(String),
    /// It hit a limit: which, in words naming the flag.
    #[error("{0}")]
    Limit(String),
    /// The compiler process could not be run or failed for another reason.
    #[error("the compiler process failed: {0}")]
    Failed(String),
}

/// What a child compiles: a component or a core module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Artifact {
    Component,
    Module,
}

/// `compiler`'s serialised code for `wasm` (an `artifact`), compiled in a child process
/// under `limits`; `None` if compiles run in process. A compile someone waits for (a
/// deploy, a first request) takes one of `--max-concurrent-compiles` slots; the
/// background thread's (tier-up, one at a time already) takes none, so that a deploy
/// never waits behind the optimized compile of the one before.
pub fn in_child(
    limits: &CompileLimits,
    compiler: Compiler,
    artifact: Artifact,
    wasm: &[u8],
) -> Option<Result<Vec<u8>, ChildError>> {
    let program = limits.child_program()?;
    let _slot = (!BACKGROUND.get()).then(|| Slots::get(limits.concurrency()).take());
    Some(run_child(program, limits, compiler, artifact, wasm))
}

thread_local! {
    /// Whether this thread is the background compiler's (see [`mark_background`]).
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as the background compiler: its compiles take no slot.
pub fn mark_background() {
    BACKGROUND.set(true);
}

fn run_child(
    program: &PathBuf,
    limits: &CompileLimits,
    compiler: Compiler,
    artifact: Artifact,
    wasm: &[u8],
) -> Result<Vec<u8>, ChildError> {
    let failed = |what: &str, e: std::io::Error| ChildError::Failed(format!("{what}: {e}"));
    let cpu_secs = limits.compile_timeout.as_secs().max(1) + 1;
    let compiler = match compiler {
        Compiler::Cranelift => "cranelift",
        Compiler::Winch => "winch",
    };
    let artifact = match artifact {
        Artifact::Component => "component",
        Artifact::Module => "module",
    };
    let mut child = Command::new(program)
        .args(["__compile", "--compiler", compiler, "--artifact", artifact])
        .args(["--memory-mib", &limits.compile_memory_mib.to_string()])
        .args(["--cpu-secs", &cpu_secs.to_string()])
        // One core per compile (wasmtime compiles functions on rayon's pool), and few
        // malloc arenas, whose reservations would otherwise count against the limit.
        .env("RAYON_NUM_THREADS", "1")
        .env("MALLOC_ARENA_MAX", "2")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(&format!("starting {}", program.display()), e))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ChildError::Failed(
            "no pipes to the compiler process".into(),
        ));
    };
    let (done, finished) = std::sync::mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("compile-output".into())
        .spawn(move || {
            let mut code = Vec::new();
            let read = stdout.read_to_end(&mut code).map(|_| code);
            let mut message = Vec::new();
            // Bounded: a message, not a stream.
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut message);
            let _ = done.send(());
            (read, String::from_utf8_lossy(&message).trim().to_string())
        })
        .map_err(|e| failed("starting the compiler's reader", e));
    let reader = match reader {
        Ok(reader) => reader,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    // The child reads all its input before it writes: a write error means it ended
    // early, which its exit status explains.
    let _ = stdin.write_all(wasm);
    drop(stdin);
    let timed_out = finished
        .recv_timeout(limits.compile_timeout)
        .is_err_and(|e| e == std::sync::mpsc::RecvTimeoutError::Timeout);
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| failed("waiting for it", e))?;
    let (code, message) = reader
        .join()
        .map_err(|_| ChildError::Failed("its reader panicked".into()))?;
    let timeout = || {
        ChildError::Limit(format!(
            "compiling it took longer than --compile-timeout allows ({})",
            humantime::format_duration(limits.compile_timeout)
        ))
    };
    if timed_out {
        return Err(timeout());
    }
    if status.success() {
        return code.map_err(|e| failed("reading its output", e));
    }
    use rustix::process::Signal;
    use std::os::unix::process::ExitStatusExt;
    let memory = || {
        ChildError::Limit(format!(
            "compiling it needed more memory than --compile-memory-mib allows ({} MiB)",
            limits.compile_memory_mib
        ))
    };
    match (status.code(), status.signal()) {
        (Some(WORKER_REJECTED), _) => Err(ChildError::Rejected(message)),
        (Some(WORKER_OUT_OF_MEMORY), _) => Err(memory()),
        (_, Some(signal))
            if [Signal::XCPU, Signal::KILL]
                .map(Signal::as_raw)
                .contains(&signal) =>
        {
            Err(timeout())
        }
        // Rust aborts when an allocation fails.
        (_, Some(signal))
            if signal == Signal::ABORT.as_raw() && message.contains("memory allocation") =>
        {
            Err(memory())
        }
        _ => Err(ChildError::Failed(format!("{status}: {message}"))),
    }
}

/// The worker's exit status for input the compiler rejected (its message on stderr).
const WORKER_REJECTED: i32 = 2;
/// The worker's exit status when the compiler reported running out of memory.
const WORKER_OUT_OF_MEMORY: i32 = 3;

/// The child's side (`runtime __compile`): limits itself, reads wasm from stdin, writes
/// `compiler`'s serialised code for it to stdout. Never returns.
pub fn worker(compiler: Compiler, artifact: Artifact, memory_mib: u64, cpu_secs: u64) -> ! {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let limit = |resource, value: u64| {
        let rlimit = Rlimit {
            current: Some(value),
            maximum: Some(value),
        };
        setrlimit(resource, rlimit)
    };
    let exit = |code: i32, message: &str| -> ! {
        let _ = writeln!(std::io::stderr(), "{message}");
        std::process::exit(code)
    };
    // Data (heap and private writable mappings) rather than address space: reserved,
    // untouched address space is not what runs a machine out of memory.
    if let Err(e) = limit(Resource::Data, memory_mib << 20) {
        exit(1, &format!("setting the memory limit: {e}"));
    }
    // The CPU limit sends SIGXCPU at the soft limit, which ends the process.
    if let Err(e) = limit(Resource::Cpu, cpu_secs) {
        exit(1, &format!("setting the CPU limit: {e}"));
    }
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut wasm) {
        exit(1, &format!("reading the input: {e}"));
    }
    let engine = match wasmtime::Engine::new(&crate::engine::compile_config(compiler.strategy())) {
        Ok(engine) => engine,
        Err(e) => exit(1, &format!("configuring wasmtime: {e:#}")),
    };
    let code = match artifact {
        Artifact::Component => engine.precompile_component(&wasm),
        Artifact::Module => engine.precompile_module(&wasm),
    };
    match code {
        Ok(code) => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&code).and_then(|()| out.flush()) {
                exit(1, &format!("writing the code: {e}"));
            }
            std::process::exit(0)
        }
        Err(e) => {
            let message = format!("{e:#}");
            let code = match message.contains("out of memory")
                || message.contains("Cannot allocate memory")
            {
                true => WORKER_OUT_OF_MEMORY,
                false => WORKER_REJECTED,
            };
            exit(code, &message)
        }
    }
}

/// A counting semaphore for compiles, one per process.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Slots {
    fn get(max: usize) -> &'static Slots {
        static SLOTS: OnceLock<Slots> = OnceLock::new();
        SLOTS.get_or_init(|| Slots {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max,
        })
    }

    fn take(&'static self) -> Slot {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot(self)
    }
}

struct Slot(&'static Slots);

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        limits: CompileLimits,
    }

    fn limits(args: &[&str]) -> CompileLimits {
        Flags::parse_from(std::iter::once("runtime").chain(args.iter().copied())).limits
    }

    /// A core module of `functions` functions, each declaring `locals` i64 locals and
    /// a body of `nops` `nop`s.
    fn module(functions: u32, locals: u32, nops: usize) -> Vec<u8> {
        use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, TypeSection};
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut declared = FunctionSection::new();
        let mut code = CodeSection::new();
        for _ in 0..functions {
            declared.function(0);
            let mut body = Function::new([(locals, wasm_encoder::ValType::I64)]);
            for _ in 0..nops {
                body.instruction(&Instruction::Nop);
            }
            body.instruction(&Instruction::End);
            code.function(&body);
        }
        let mut module = wasm_encoder::Module::new();
        module.section(&types).section(&declared).section(&code);
        module.finish()
    }

    #[test]
    fn each_shape_limit_is_named_when_exceeded() {
        let defaults = limits(&[]);
        assert!(check_shape(&module(10, 10, 10), &defaults).is_ok());
        let cases = [
            (
                module(11, 0, 0),
                "--max-wasm-functions",
                "max-wasm-functions",
            ),
            (
                module(1, 0, 2048),
                "--max-function-body-kib",
                "max-function-body-kib",
            ),
            (
                module(1, 101, 0),
                "--max-function-locals",
                "max-function-locals",
            ),
        ];
        let low = limits(&[
            "--max-wasm-functions",
            "10",
            "--max-function-body-kib",
            "1",
            "--max-function-locals",
            "100",
        ]);
        for (wasm, flag, field) in cases {
            let err = check_shape(&wasm, &low).unwrap_err();
            assert_eq!(err.flag, field);
            assert!(err.to_string().contains(flag), "{err}");
        }
        // At the limits exactly: allowed.
        assert!(check_shape(&module(10, 100, 1000), &low).is_ok());
    }

    #[test]
    fn modules_nested_in_a_component_are_counted() {
        let core = module(1, 0, 0);
        let mut component = wasm_encoder::Component::new();
        for _ in 0..3 {
            component.section(&wasm_encoder::RawSection {
                id: wasm_encoder::ComponentSectionId::CoreModule as u8,
                data: &core,
            });
        }
        let component = component.finish();
        assert!(check_shape(&component, &limits(&["--max-wasm-modules", "3"])).is_ok());
        let err = check_shape(&component, &limits(&["--max-wasm-modules", "2"])).unwrap_err();
        assert_eq!(err.flag, "max-wasm-modules");
        // Functions inside nested modules count too.
        let err = check_shape(&component, &limits(&["--max-wasm-functions", "2"])).unwrap_err();
        assert_eq!(err.flag, "max-wasm-functions");
    }

    #[test]
    fn malformed_input_is_left_to_the_compiler() {
        assert!(check_shape(b"\0asm\x01\0\0\0\x0a\xff", &limits(&[])).is_ok());
    }

    #[test]
    fn a_child_compile_loads_into_the_serving_engine() {
        // The serving engine and the child's must agree on everything compiled code
        // depends on, or no code from a child would load.
        let config = crate::Config::parse_from(["runtime", "--pool-instances", "2"]);
        for strategy in [wasmtime::Strategy::Cranelift, wasmtime::Strategy::Winch] {
            let serving = crate::engine::build(&config, strategy).unwrap();
            let child = wasmtime::Engine::new(&crate::engine::compile_config(strategy)).unwrap();
            let code = child.precompile_module(&module(2, 1, 1)).unwrap();
            // SAFETY: code just compiled by an engine of this process.
            #[expect(unsafe_code, reason = "deserialising code compiled here")]
            let module = unsafe { wasmtime::Module::deserialize(&serving, &code) };
            assert!(module.is_ok(), "{strategy:?}: {:?}", module.err());
        }
    }
}
