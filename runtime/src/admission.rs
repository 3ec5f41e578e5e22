//! What all functions share and no one of them may take whole: the instance pool's
//! slots and the memory of the instances in flight. Both are checked before an instance
//! is made; a request that does not fit is refused with 503 and Retry-After, and the
//! running ones carry on.
//!
//! - **Memory.** Every instance's linear memory is charged, as it grows (in the store's
//!   `ResourceLimiter`, whole MiB), to a process-wide budget (`--max-total-memory-mib`, by
//!   default three quarters of the cgroup's memory limit or of the machine's RAM), so no
//!   mix of requests can make the instances together grow past it, and the kernel never
//!   kills the runtime for them. An instance holds what it uses, not its function's
//!   whole `memory_mib`; and the budget is shared the way the pool is, each function with
//!   `min(--memory-reserve-mib, budget / n)` reserved, so one function's many waiting
//!   requests cannot refuse another's. A growth that does not fit fails the request with
//!   503 `memory_budget`.
//! - **Pool slots.** Each deployed function has `r = min(--pool-reserve, C / n)` of the
//!   `C = --pool-instances` slots reserved for it, `n` being the number deployed; a
//!   function past its reserve may only take a slot that no other function's unused
//!   reserve needs. So a busy function gets at most `C − r·(n − 1)` slots while the
//!   others are idle, and every other function always finds its `r`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The process-wide memory budget for instances in flight, in MiB, in fair shares.
pub type MemoryBudget = Shares;

/// An instance's charge against the [`MemoryBudget`]: grows with its linear memories,
/// given back when dropped.
#[derive(Debug)]
pub struct MemoryCharge {
    share: Share,
    /// Bytes of linear memory charged for, all the instance's memories together.
    bytes: u64,
}

const MIB: u64 = 1 << 20;

impl MemoryCharge {
    /// Charges for one linear memory growing from `current` to `desired` bytes; `false`
    /// if the budget (or the function's fair part of it) has no room.
    pub fn grow(&mut self, current: usize, desired: usize) -> bool {
        let bytes = self.bytes + (desired.saturating_sub(current)) as u64;
        let want = bytes.div_ceil(MIB);
        let have = u64::from(self.share.units);
        if want > have {
            let Ok(more) = u32::try_from(want - have) else {
                return false;
            };
            if self.share.grow(more).is_err() {
                return false;
            }
        }
        self.bytes = bytes;
        true
    }

    /// MiB charged now.
    pub fn mib(&self) -> u32 {
        self.share.units
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

/// Fair shares of a resource counted in units (pool slots, MiB of memory): see the
/// module's documentation.
#[derive(Debug)]
pub struct Shares {
    capacity: u32,
    reserve: u32,
    state: Mutex<ShareState>,
}

/// The instance pool's slots, in fair shares.
pub type PoolShares = Shares;

#[derive(Debug, Default)]
struct ShareState {
    /// Units in use per function name (only names with some in use).
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

impl Shares {
    /// `capacity` units, `reserve` of them kept for each function (at most `capacity`
    /// divided by the number deployed).
    pub fn new(capacity: u32, reserve: u32) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            reserve,
            state: Mutex::new(ShareState::default()),
        })
    }

    /// A budget of `total_mib`, `reserve_mib` kept for each function.
    pub fn memory(total_mib: u64, reserve_mib: u32) -> Arc<Self> {
        Self::new(u32::try_from(total_mib).unwrap_or(u32::MAX), reserve_mib)
    }

    /// Takes one slot for `function`, one of `deployed` functions.
    pub fn take(
        self: &Arc<Self>,
        function: &Arc<str>,
        deployed: usize,
    ) -> Result<PoolSlot, NoSlot> {
        let deployed = u32::try_from(deployed.max(1)).unwrap_or(u32::MAX);
        self.add(function, deployed, 1)?;
        Ok(Share {
            shares: self.clone(),
            function: function.clone(),
            deployed,
            units: 1,
        })
    }

    /// A memory charge for one instance of `function`, one of `deployed` functions,
    /// holding nothing yet.
    pub fn charge(self: &Arc<Self>, function: &Arc<str>, deployed: usize) -> MemoryCharge {
        MemoryCharge {
            share: Share {
                shares: self.clone(),
                function: function.clone(),
                deployed: u32::try_from(deployed.max(1)).unwrap_or(u32::MAX),
                units: 0,
            },
            bytes: 0,
        }
    }

    /// Adds `n` units to `function`'s use, if they fit: all of them within the capacity,
    /// and those past the function's reserve only where no other function's unused
    /// reserve needs them.
    fn add(&self, function: &Arc<str>, deployed: u32, n: u32) -> Result<(), NoSlot> {
        let reserve = self.reserve.min(self.capacity / deployed);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if reserve != state.reserve {
            state.reserved_in_use = state.in_use.values().map(|&u| u.min(reserve)).sum();
            state.reserve = reserve;
        }
        if u64::from(state.total) + u64::from(n) > u64::from(self.capacity) {
            return Err(NoSlot::Full);
        }
        let used = state.in_use.get(function).copied().unwrap_or(0);
        let within = (used.saturating_add(n)).min(reserve) - used.min(reserve);
        if within < n {
            // Some of them come past the reserve: only from what no unused reserve needs.
            let reserved_after = state.reserved_in_use + within;
            let idle_reserves = (u64::from(deployed) * u64::from(reserve))
                .saturating_sub(u64::from(reserved_after));
            if u64::from(state.total) + u64::from(n) + idle_reserves > u64::from(self.capacity) {
                return Err(NoSlot::Reserved);
            }
        }
        *state.in_use.entry(function.clone()).or_insert(0) += n;
        state.total += n;
        state.reserved_in_use += within;
        Ok(())
    }

    fn give_back(&self, function: &Arc<str>, n: u32) {
        if n == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let reserve = state.reserve;
        let Some(used) = state.in_use.get_mut(function) else {
            return;
        };
        let was = *used;
        *used = was.saturating_sub(n);
        let now = *used;
        if now == 0 {
            state.in_use.remove(function);
        }
        state.total = state.total.saturating_sub(was - now);
        state.reserved_in_use = state
            .reserved_in_use
            .saturating_sub(was.min(reserve) - now.min(reserve));
    }

    /// Units in use now, all functions together.
    pub fn in_use(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// The budget's size in MiB (memory), or the pool's slots.
    pub fn total_mib(&self) -> u64 {
        u64::from(self.capacity)
    }

    /// MiB charged by instances in flight now (memory).
    pub fn reserved_mib(&self) -> u64 {
        u64::from(self.in_use())
    }
}

/// Units one instance holds of a [`Shares`]: a pool slot, or MiB of memory; given back
/// when dropped.
#[derive(Debug)]
pub struct Share {
    shares: Arc<Shares>,
    function: Arc<str>,
    deployed: u32,
    units: u32,
}

/// One instance's slot.
pub type PoolSlot = Share;

impl Share {
    /// `more` units besides those held, if they fit.
    fn grow(&mut self, more: u32) -> Result<(), NoSlot> {
        self.shares.add(&self.function, self.deployed, more)?;
        self.units += more;
        Ok(())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shares.give_back(&self.function, self.units);
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
    fn memory_is_charged_as_it_grows_and_given_back() {
        let budget = Shares::memory(300, 0);
        let f = name("f");
        let mut a = budget.charge(&f, 1);
        assert_eq!(budget.reserved_mib(), 0);
        // 1 MiB + 64 KiB of pages: 2 MiB charged (whole MiB).
        assert!(a.grow(0, (1 << 20) + 65536));
        assert_eq!((a.mib(), budget.reserved_mib()), (2, 2));
        // A second memory of the same instance adds to it.
        assert!(a.grow(0, 100 << 20));
        assert_eq!(budget.reserved_mib(), 102);
        let mut b = budget.charge(&f, 1);
        assert!(b.grow(0, 198 << 20));
        assert_eq!(budget.reserved_mib(), 300);
        // Past the budget: refused, nothing more charged.
        assert!(!b.grow(198 << 20, 199 << 20));
        assert_eq!(budget.reserved_mib(), 300);
        drop(a);
        assert_eq!(budget.reserved_mib(), 198);
        drop(b);
        assert_eq!(budget.reserved_mib(), 0);
        assert!(default_memory_budget_mib() > 0);
    }

    #[test]
    fn one_function_cannot_take_the_memory_others_reserve() {
        // 640 MiB, 3 functions, 64 MiB kept for each: a alone gets 640 - 128 = 512.
        let budget = Shares::memory(640, 64);
        let (a, b) = (name("a"), name("b"));
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut c = budget.charge(&a, 3);
            assert!(c.grow(0, 128 << 20));
            held.push(c);
        }
        let mut more = budget.charge(&a, 3);
        assert!(!more.grow(0, 1 << 20), "a took another's reserve");
        // b still gets its reserve, and what is free beyond all reserves.
        let mut c = budget.charge(&b, 3);
        assert!(c.grow(0, 64 << 20));
        assert_eq!(budget.reserved_mib(), 576);
        drop(held);
        assert!(more.grow(0, 128 << 20));
    }
}
