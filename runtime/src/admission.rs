//! What all functions share and no one of them may take whole: the instance pool's
//! slots and the memory of the instances in flight. Both are checked before an instance
//! is made; a request that does not fit is refused with 503 and Retry-After, and the
//! running ones carry on.
//!
//! - **Memory.** Every instance reserves its function's memory limit (`memory_mib`) from
//!   a process-wide budget (`--max-total-memory-mib`, by default three quarters of the
//!   cgroup's memory limit or of the machine's RAM) for as long as it lives, so no mix
//!   of requests can make the instances together grow past it, and the kernel never
//!   kills the runtime for them.
//! - **Pool slots.** Each deployed function has `r = min(--pool-reserve, C / n)` of the
//!   `C = --pool-instances` slots reserved for it, `n` being the number deployed; a
//!   function past its reserve may only take a slot that no other function's unused
//!   reserve needs. So a busy function gets at most `C − r·(n − 1)` slots while the
//!   others are idle, and every other function always finds its `r`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use service_ops::Mib;

/// The process-wide memory budget for instances in flight, in MiB.
#[derive(Debug)]
pub struct MemoryBudget {
    mib: Arc<Semaphore>,
    total: u64,
}

impl MemoryBudget {
    pub fn new(total_mib: u64) -> Self {
        let permits = usize::try_from(total_mib)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            mib: Arc::new(Semaphore::new(permits)),
            total: permits as u64,
        }
    }

    /// Reserves `memory` for one instance, if it fits now.
    pub fn reserve(&self, memory: Mib) -> Option<OwnedSemaphorePermit> {
        self.mib.clone().try_acquire_many_owned(memory.get()).ok()
    }

    pub fn total_mib(&self) -> u64 {
        self.total
    }

    /// MiB reserved by instances in flight now.
    pub fn reserved_mib(&self) -> u64 {
        self.total - self.mib.available_permits() as u64
    }
}

/// The default budget: three quarters of the memory this process may use: its cgroup's
/// limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) if it has one, otherwise the
/// machine's RAM. The rest is the runtime's own (code, compiled functions, buffers).
pub fn default_memory_budget_mib() -> u64 {
    let limit = cgroup_memory_limit()
        .into_iter()
        .chain(mem_total())
        .min()
        .unwrap_or(1 << 32);
    (limit / 4 * 3) >> 20
}

fn cgroup_memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    // "max" (v2) and v1's huge "unlimited" value parse as none or as more than RAM.
    .find_map(|text| text.trim().parse().ok())
}

fn mem_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fair shares of the instance pool (see the module's documentation).
#[derive(Debug)]
pub struct PoolShares {
    capacity: u32,
    reserve: u32,
    state: Mutex<ShareState>,
}

#[derive(Debug, Default)]
struct ShareState {
    /// Slots in use per function name (only names with some in use).
    in_use: HashMap<Arc<str>, u32>,
    total: u32,
    /// The effective reserve `reserved_in_use` was counted with.
    reserve: u32,
    /// Σ over functions of min(in use, reserve): the part of the reserves in use.
    reserved_in_use: u32,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot is in use.
    Full,
    /// The free slots are other functions' reserves.
    Reserved,
}

impl PoolShares {
    pub fn new(capacity: u32, reserve: u32) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            reserve,
            state: Mutex::new(ShareState::default()),
        })
    }

    /// Takes a slot for `function`, one of `deployed` functions.
    pub fn take(
        self: &Arc<Self>,
        function: &Arc<str>,
        deployed: usize,
    ) -> Result<PoolSlot, NoSlot> {
        let deployed = u32::try_from(deployed.max(1)).unwrap_or(u32::MAX);
        let reserve = self.reserve.min(self.capacity / deployed);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if reserve != state.reserve {
            state.reserved_in_use = state.in_use.values().map(|&u| u.min(reserve)).sum();
            state.reserve = reserve;
        }
        if state.total >= self.capacity {
            return Err(NoSlot::Full);
        }
        let used = state.in_use.get(function).copied().unwrap_or(0);
        let within_reserve = used < reserve;
        if !within_reserve {
            let idle_reserves = (deployed * reserve).saturating_sub(state.reserved_in_use);
            if state.total + idle_reserves >= self.capacity {
                return Err(NoSlot::Reserved);
            }
        }
        *state.in_use.entry(function.clone()).or_insert(0) += 1;
        state.total += 1;
        if within_reserve {
            state.reserved_in_use += 1;
        }
        Ok(PoolSlot {
            shares: self.clone(),
            function: function.clone(),
        })
    }

    fn give_back(&self, function: &Arc<str>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let reserve = state.reserve;
        let Some(used) = state.in_use.get_mut(function) else {
            return;
        };
        let was = *used;
        *used -= 1;
        if *used == 0 {
            state.in_use.remove(function);
        }
        state.total -= 1;
        if was <= reserve {
            state.reserved_in_use -= 1;
        }
    }

    /// Slots in use now, all functions together.
    pub fn in_use(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One instance's slot; given back when dropped.
#[derive(Debug)]
pub struct PoolSlot {
    shares: Arc<PoolShares>,
    function: Arc<str>,
}

impl Drop for PoolSlot {
    fn drop(&mut self) {
        self.shares.give_back(&self.function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_busy_function_leaves_every_other_its_reserve() {
        // 10 slots, 3 functions, reserve 2 each: a alone may take 10 - 2 - 2 = 6.
        let pool = PoolShares::new(10, 2);
        let (a, b, c) = (name("a"), name("b"), name("c"));
        let held: Vec<_> = (0..6).map(|_| pool.take(&a, 3).unwrap()).collect();
        assert_eq!(pool.take(&a, 3).unwrap_err(), NoSlot::Reserved);
        let b1 = pool.take(&b, 3).unwrap();
        let b2 = pool.take(&b, 3).unwrap();
        // b has used its reserve; c's is still free, so b may not borrow it.
        assert_eq!(pool.take(&b, 3).unwrap_err(), NoSlot::Reserved);
        let c_slots: Vec<_> = (0..2).map(|_| pool.take(&c, 3).unwrap()).collect();
        assert_eq!(pool.in_use(), 10);
        assert_eq!(pool.take(&c, 3).unwrap_err(), NoSlot::Full);
        drop((b1, b2, c_slots));
        // Reserves unused again: a still cannot have them...
        assert_eq!(pool.take(&a, 3).unwrap_err(), NoSlot::Reserved);
        drop(held);
        assert_eq!(pool.in_use(), 0);
        // ...and alone it gets all but the others' reserves again.
        let again: Vec<_> = (0..6).map(|_| pool.take(&a, 3).unwrap()).collect();
        assert_eq!(again.len(), 6);
    }

    #[test]
    fn more_functions_than_slots_share_what_there_is() {
        // 4 slots, 8 functions: the reserve shrinks to 0 and slots go first come.
        let pool = PoolShares::new(4, 2);
        let names: Vec<_> = (0..8).map(|i| name(&format!("f{i}"))).collect();
        let held: Vec<_> = names[..4]
            .iter()
            .map(|n| pool.take(n, 8).unwrap())
            .collect();
        assert_eq!(pool.take(&names[5], 8).unwrap_err(), NoSlot::Full);
        drop(held);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn memory_budget_reserves_each_instance_limit() {
        let budget = MemoryBudget::new(300);
        let a = budget.reserve(Mib::new(128)).unwrap();
        let b = budget.reserve(Mib::new(128)).unwrap();
        assert_eq!(budget.reserved_mib(), 256);
        assert!(budget.reserve(Mib::new(128)).is_none());
        assert!(budget.reserve(Mib::new(44)).is_some());
        drop((a, b));
        assert_eq!(budget.reserved_mib(), 0);
        assert!(default_memory_budget_mib() > 0);
    }
}
