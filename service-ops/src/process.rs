//! The standard `process_*` metrics, read from `/proc` at scrape time.
//!
//! Written here rather than taken from the `prometheus` crate's process collector because
//! that one counts CPU in whole seconds, which makes `rate()` over short windows useless;
//! this one has clock-tick (10 ms) resolution.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};
use std::fs;
use std::io;

/// One sample of a process's resource use, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User + system CPU time, in seconds.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

impl ProcStat {
    /// Reads `/proc/{pid}/stat` (`pid` may be `"self"`).
    pub fn read(pid: &str) -> io::Result<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        Self::parse(&text, boot_time()?)
    }

    fn parse(stat: &str, boot_time: u64) -> io::Result<Self> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected /proc/PID/stat format",
            )
        };
        // The command name (field 2) is in parentheses and may contain spaces and ')':
        // fields are counted from after its last ')'. Field N is then at index N - 3.
        let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> io::Result<u64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(bad)
        };
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        Ok(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            threads: field(20)?,
            start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
            virtual_bytes: field(23)?,
            resident_bytes: field(24)? * rustix::param::page_size() as u64,
        })
    }
}

fn boot_time() -> io::Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no btime in /proc/stat"))
}

/// Collects the standard `process_*` metrics for this process.
#[derive(Debug)]
pub struct ProcessCollector {
    descs: Vec<Desc>,
    cpu: Counter,
    resident: IntGauge,
    virtual_: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
}

impl ProcessCollector {
    pub fn new() -> Self {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))
        .unwrap();
        let resident = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .unwrap();
        let virtual_ = IntGauge::new(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes (address space reserved, not memory used).",
        )
        .unwrap();
        let threads =
            IntGauge::new("process_threads", "Number of OS threads in the process.").unwrap();
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )
        .unwrap();
        let open_fds =
            IntGauge::new("process_open_fds", "Number of open file descriptors.").unwrap();
        let max_fds = IntGauge::new(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )
        .unwrap();
        let descs = [
            cpu.desc(),
            resident.desc(),
            virtual_.desc(),
            threads.desc(),
            start_time.desc(),
            open_fds.desc(),
            max_fds.desc(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Self {
            descs,
            cpu,
            resident,
            virtual_,
            threads,
            start_time,
            open_fds,
            max_fds,
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stat = match ProcStat::read("self") {
            Ok(stat) => stat,
            Err(e) => {
                tracing::warn!("reading /proc/self/stat: {e}");
                return Vec::new();
            }
        };
        // A counter only goes up: add what was used since the last scrape.
        let seen = self.cpu.get();
        if stat.cpu_seconds > seen {
            self.cpu.inc_by(stat.cpu_seconds - seen);
        }
        self.resident.set(stat.resident_bytes as i64);
        self.virtual_.set(stat.virtual_bytes as i64);
        self.threads.set(stat.threads as i64);
        self.start_time.set(stat.start_time_seconds);
        if let Ok(fds) = fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(max) = limit.current {
            self.max_fds.set(max as i64);
        }
        let mut families = Vec::new();
        for c in [
            &self.cpu as &dyn Collector,
            &self.resident,
            &self.virtual_,
            &self.threads,
        ]
        .into_iter()
        .chain([
            &self.start_time as &dyn Collector,
            &self.open_fds,
            &self.max_fds,
        ]) {
            families.extend(c.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_tricky_command_name() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 \
                    104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = ProcStat::parse(line, 1_700_000_000).unwrap();
        let hz = rustix::param::clock_ticks_per_second() as f64;
        assert_eq!(s.cpu_seconds, 300.0 / hz);
        assert_eq!(s.threads, 7);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * rustix::param::page_size() as u64);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 1000.0 / hz);
    }

    #[test]
    fn collects_live_values_for_this_process() {
        let c = ProcessCollector::new();
        let families = c.collect();
        let get = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .get_metric()[0]
                .clone()
        };
        assert!(get("process_resident_memory_bytes").get_gauge().get_value() > 0.0);
        assert!(get("process_threads").get_gauge().get_value() >= 1.0);
        assert!(get("process_open_fds").get_gauge().get_value() >= 3.0);
        // Burn 300 ms of CPU, by the kernel's own clock of this process's CPU time (not
        // wall time, which a starved machine stretches): the counter must move by what
        // that clock moved, to a 10 ms tick, so it counts sub-second amounts (a
        // whole-seconds counter would move by 0 or 1). Other tests' threads burn CPU in
        // this process too; both figures include them.
        let cpu_now = |c: &ProcessCollector| {
            let f = c
                .collect()
                .into_iter()
                .find(|f| f.name() == "process_cpu_seconds_total")
                .unwrap();
            f.get_metric()[0].get_counter().get_value()
        };
        let clock = || {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
            t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
        };
        let clock_before = clock();
        let before = cpu_now(&c);
        let mut x = 0u64;
        while clock() < clock_before + 0.3 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let delta = cpu_now(&c) - before;
        let clock_delta = clock() - clock_before;
        assert!(
            delta >= 0.3 - 0.02 && delta <= clock_delta + 0.02,
            "{clock_delta} CPU seconds by the clock counted as {delta}"
        );
    }
}
