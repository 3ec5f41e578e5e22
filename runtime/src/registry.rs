//! The deployed functions by name, each with the version that serves it and, while a
//! canary runs, the version that serves a share of its requests. Readers take a cheap
//! snapshot per request; a swap replaces a name's routes atomically while requests in
//! flight keep the version they started with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::function::Function;

#[derive(Debug, Default)]
pub struct Registry {
    functions: RwLock<HashMap<String, Arc<Routes>>>,
    /// How many are deployed, kept beside the map (changed under its write lock) so a
    /// request's admission reads it without taking the lock a second time.
    deployed: AtomicUsize,
}

/// Which version of a name serves a request.
#[derive(Debug)]
pub struct Routes {
    pub current: Arc<Function>,
    pub canary: Option<CanaryRoute>,
}

/// A canary: a version serving `percent` of its name's requests, and how it is doing.
#[derive(Debug)]
pub struct CanaryRoute {
    pub function: Arc<Function>,
    pub percent: u8,
    pub watch: Arc<CanaryWatch>,
}

/// Which of a name's versions a request went to: the `version` label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Current,
    Canary,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Current, Role::Canary];

    pub fn label(self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Canary => "canary",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A request's version of its function, drawn from the name's routes.
#[derive(Debug, Clone)]
pub struct Routed {
    pub function: Arc<Function>,
    pub role: Role,
    /// The canary's tally, when the request went to the canary.
    pub watch: Option<Arc<CanaryWatch>>,
}

/// A canary's requests and failures in this process, and when they are too many.
#[derive(Debug)]
pub struct CanaryWatch {
    /// The canary's version number.
    pub version: u64,
    /// Past this share of failures, it is ended (`None`: never automatically).
    pub max_error_rate: Option<f64>,
    /// Requests it serves before its error rate is judged.
    pub min_requests: u64,
    requests: AtomicU64,
    failures: AtomicU64,
    tripped: AtomicBool,
}

impl CanaryWatch {
    pub fn new(version: u64, max_error_rate: Option<f64>, min_requests: u64) -> Self {
        Self {
            version,
            max_error_rate,
            min_requests: min_requests.max(1),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        }
    }

    /// Counts one request the canary answered, failed (a 5xx) or not. True once: for
    /// the request that takes its error rate past the threshold, after at least
    /// `min_requests`.
    pub fn record(&self, failed: bool) -> bool {
        let requests = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let failures = match failed {
            true => self.failures.fetch_add(1, Ordering::Relaxed) + 1,
            false => self.failures.load(Ordering::Relaxed),
        };
        let Some(max) = self.max_error_rate else {
            return false;
        };
        requests >= self.min_requests
            && failures as f64 / requests as f64 > max
            && !self.tripped.swap(true, Ordering::Relaxed)
    }

    /// Requests it served and how many failed, in this process.
    pub fn tally(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

impl Routes {
    /// Routes of `current` alone.
    pub fn only(current: Arc<Function>) -> Self {
        Self {
            current,
            canary: None,
        }
    }

    /// The versions it routes to: the current one, then the canary.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<Function>> {
        std::iter::once(&self.current).chain(self.canary.as_ref().map(|c| &c.function))
    }

    /// Whether `function` is one of its versions.
    pub fn holds(&self, function: &Arc<Function>) -> bool {
        self.functions().any(|f| Arc::ptr_eq(f, function))
    }

    /// The version for one request: the canary for `percent` of them, drawn at random.
    pub fn pick(&self) -> Routed {
        match &self.canary {
            Some(canary) if fastrand::u8(0..100) < canary.percent => Routed {
                function: canary.function.clone(),
                role: Role::Canary,
                watch: Some(canary.watch.clone()),
            },
            _ => Routed {
                function: self.current.clone(),
                role: Role::Current,
                watch: None,
            },
        }
    }
}

impl Registry {
    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.routes(name).map(|routes| routes.current.clone())
    }

    pub fn routes(&self, name: &str) -> Option<Arc<Routes>> {
        self.functions
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// The version of `name` one request runs.
    pub fn pick(&self, name: &str) -> Option<Routed> {
        self.functions
            .read()
            .expect("registry lock")
            .get(name)
            .map(|routes| routes.pick())
    }

    /// Installs `routes` for its name, returning the routes it replaced.
    pub fn insert(&self, routes: Routes) -> Option<Arc<Routes>> {
        let name = routes.current.name().to_string();
        let mut functions = self.functions.write().expect("registry lock");
        let replaced = functions.insert(name, Arc::new(routes));
        self.deployed.store(functions.len(), Ordering::Relaxed);
        replaced
    }

    /// Whether `function` is one of the installed versions of its name (current or
    /// canary).
    pub fn is_current(&self, function: &Arc<Function>) -> bool {
        self.routes(function.name())
            .is_some_and(|routes| routes.holds(function))
    }

    /// Removes `name`; requests already running keep their version until they finish.
    pub fn remove(&self, name: &str) -> Option<Arc<Routes>> {
        let mut functions = self.functions.write().expect("registry lock");
        let removed = functions.remove(name);
        self.deployed.store(functions.len(), Ordering::Relaxed);
        removed
    }

    /// The routes of every deployed function, by name.
    pub fn all_routes(&self) -> Vec<Arc<Routes>> {
        let mut all: Vec<_> = self
            .functions
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.current.name().cmp(b.current.name()));
        all
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self
            .functions
            .read()
            .expect("registry lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    pub fn len(&self) -> usize {
        self.deployed.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_is_judged_once_past_its_minimum_and_threshold() {
        let watch = CanaryWatch::new(2, Some(0.2), 10);
        // 5 failures in the first 5: not judged before 10 requests.
        assert!((0..5).all(|_| !watch.record(true)));
        // 5 more good ones: 5 of 10 failed, past 20 %: trips on the 10th, once.
        assert!((0..4).all(|_| !watch.record(false)));
        assert!(watch.record(false));
        assert!(!watch.record(true));
        assert_eq!(watch.tally(), (11, 6));
        // Without a threshold, never.
        let manual = CanaryWatch::new(2, None, 1);
        assert!((0..100).all(|_| !manual.record(true)));
    }
}
