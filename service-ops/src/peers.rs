//! What each client address holds of something shared, under a cap: open connections
//! (`server`), KiB of the request-body buffer (`body`). One client may not take it all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Units held per client address, each address at most `max`.
#[derive(Debug)]
pub(crate) struct PeerCounts {
    max: u64,
    held: Mutex<HashMap<IpAddr, u64>>,
}

/// Units one address holds; given back when dropped.
#[derive(Debug)]
pub(crate) struct PeerHold {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
    units: u64,
}

impl PeerCounts {
    pub(crate) fn new(max: u64) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// `units` more for `ip`, if its total stays within the cap.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, units: u64) -> Option<PeerHold> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = held.entry(ip).or_insert(0);
        if *now + units > self.max {
            if *now == 0 {
                held.remove(&ip);
            }
            return None;
        }
        *now += units;
        Some(PeerHold {
            counts: self.clone(),
            ip,
            units,
        })
    }

    /// The cap per address.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Addresses holding anything now.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl PeerHold {
    /// Takes over what `other` (of the same address) holds: given back with this one.
    pub(crate) fn merge(&mut self, mut other: PeerHold) {
        debug_assert_eq!(self.ip, other.ip);
        self.units += std::mem::take(&mut other.units);
    }
}

impl Drop for PeerHold {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(units) = held.get_mut(&self.ip) {
            *units = units.saturating_sub(self.units);
            if *units == 0 {
                held.remove(&self.ip);
            }
        }
    }
}
