//! The deployed functions by name. Readers take a cheap snapshot per request; a swap
//! replaces a function atomically while requests in flight keep the version they started.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::function::Function;

#[derive(Debug, Default)]
pub struct Registry {
    functions: RwLock<HashMap<String, Arc<Function>>>,
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
    pub fn insert(&self, function: Function) -> Option<Arc<Function>> {
        let name = function.name.to_string();
        self.functions
            .write()
            .expect("registry lock")
            .insert(name, Arc::new(function))
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
        self.functions.read().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
