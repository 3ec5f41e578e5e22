//! The deployed functions by name. Readers take a cheap snapshot per request; a swap
//! replaces a function atomically while requests in flight keep the version they started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::function::Function;

#[derive(Debug, Default)]
pub struct Registry {
    functions: RwLock<HashMap<String, Arc<Function>>>,
    /// How many are deployed, kept beside the map (changed under its write lock) so a
    /// request's admission reads it without taking the lock a second time.
    deployed: AtomicUsize,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.functions
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
    }

    /// Installs `function`, returning the version it replaced.
    pub fn insert(&self, function: Arc<Function>) -> Option<Arc<Function>> {
        let name = function.name().to_string();
        let mut functions = self.functions.write().expect("registry lock");
        let replaced = functions.insert(name, function);
        self.deployed.store(functions.len(), Ordering::Relaxed);
        replaced
    }

    /// Whether `function` is the installed version of its name.
    pub fn is_current(&self, function: &Arc<Function>) -> bool {
        self.get(function.name())
            .is_some_and(|current| Arc::ptr_eq(&current, function))
    }

    /// Removes `name`; requests already running keep their version until they finish.
    pub fn remove(&self, name: &str) -> Option<Arc<Function>> {
        let mut functions = self.functions.write().expect("registry lock");
        let removed = functions.remove(name);
        self.deployed.store(functions.len(), Ordering::Relaxed);
        removed
    }

    /// Every deployed function, by name.
    pub fn all(&self) -> Vec<Arc<Function>> {
        let mut all: Vec<_> = self
            .functions
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
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
