//! The background compiles that replace Winch's quick code with Cranelift's: one worker
//! thread for the whole process (they share the cores with traffic), started by the
//! first deploy that needs it, fed by a queue in which the latest deploy of a name wins:
//! a version superseded before its turn is never compiled, and its component bytes are
//! dropped at once instead of waiting in a thread of their own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::function::Function;

/// What the worker does with one job: compile `wasm` for `expected` and swap it in.
pub type Work = Box<dyn Fn(Arc<Function>, Vec<u8>) + Send + Sync>;

#[derive(Default)]
struct Queue {
    /// Names in the order their (latest) job arrived.
    order: VecDeque<Arc<str>>,
    jobs: HashMap<Arc<str>, (Arc<Function>, Vec<u8>)>,
}

/// The queue and its worker.
#[derive(Clone, Default)]
pub struct TierUp {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    worker: Arc<OnceLock<std::io::Result<()>>>,
}

impl TierUp {
    /// Queues a compile of `wasm` for `expected`, replacing any queued one of the same
    /// name; starts the worker, running `work`, if it is not running yet.
    pub fn push(&self, expected: Arc<Function>, wasm: Vec<u8>, work: impl FnOnce() -> Work) {
        let started = self.worker.get_or_init(|| {
            let queue = self.queue.clone();
            let work = work();
            std::thread::Builder::new()
                .name("tier-up".into())
                .spawn(move || {
                    crate::compiler::mark_background();
                    run(&queue, &work)
                })
                .map(drop)
        });
        if let Err(e) = started {
            tracing::error!("no background compiler ({e}); the baseline code keeps serving");
            return;
        }
        let (lock, ready) = &*self.queue;
        let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
        let name = expected.name().clone();
        if queue.jobs.insert(name.clone(), (expected, wasm)).is_none() {
            queue.order.push_back(name);
        }
        ready.notify_one();
    }
}

fn run(queue: &(Mutex<Queue>, Condvar), work: &Work) {
    let (lock, ready) = queue;
    loop {
        let (expected, wasm) = {
            let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(name) = queue.order.pop_front()
                    && let Some(job) = queue.jobs.remove(&name)
                {
                    break job;
                }
                queue = ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        hold();
        work(expected, wasm);
    }
}

/// For the test that a first deploy is served by Winch's code, in debug builds only:
/// with `RUNTIME_TIER_UP_HOLD=FILE` the worker starts no compile until FILE exists, so
/// the test knows no swap can happen while it sends its requests. Release builds have
/// no such hook.
#[cfg(debug_assertions)]
fn hold() {
    static HOLD: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    if let Some(file) =
        HOLD.get_or_init(|| std::env::var_os("RUNTIME_TIER_UP_HOLD").map(Into::into))
    {
        while !file.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(not(debug_assertions))]
fn hold() {}
