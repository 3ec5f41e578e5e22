//! What a report records about the machine and the software versions, so figures from
//! different machines are never compared blind.

use std::collections::BTreeMap;
use std::process::Command;

/// CPU, cores, memory, kernel and OS, read from `/proc` and `/etc/os-release`.
pub fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
    {
        m.insert("cpu".into(), model.trim().to_string());
    }
    m.insert(
        "logical cpus".into(),
        std::thread::available_parallelism().map_or("unknown".into(), |n| n.to_string()),
    );
    if let Some(kib) = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        m.insert(
            "memory".into(),
            format!("{:.1} GiB", kib / (1024.0 * 1024.0)),
        );
    }
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        m.insert("kernel".into(), kernel.trim().to_string());
    }
    if let Some(os) = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
    {
        m.insert("os".into(), os.trim_matches('"').to_string());
    }
    m
}

/// CPU time the hypervisor has taken from this machine's virtual CPUs so far (all CPUs
/// together, seconds): `steal` in `/proc/stat`. Time stolen during a run is time neither
/// side nor the generator could run, and it shows in latency tails.
pub fn steal_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    steal_ticks(&stat).map(|ticks| ticks / rustix::param::clock_ticks_per_second() as f64)
}

/// The `steal` column (the 8th value) of the all-CPUs `cpu` line of a `/proc/stat`, in
/// clock ticks.
fn steal_ticks(stat: &str) -> Option<f64> {
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    cpu.split_whitespace().nth(8)?.parse().ok()
}

/// bench, the build profile, git commit and nginx, as far as they can be found. (The
/// runtime's own versions come from the running binary: `Runner::build_info`.)
pub fn versions(nginx: Option<&std::path::Path>) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("bench".into(), env!("CARGO_PKG_VERSION").into());
    v.insert(
        "build profile".into(),
        if cfg!(debug_assertions) {
            "debug (figures are not representative: use --release)".into()
        } else {
            "release".into()
        },
    );
    let output = |program: &std::path::Path, args: &[&str]| -> Option<String> {
        let out = Command::new(program).args(args).output().ok()?;
        out.status.success().then_some(())?;
        // nginx prints its version on stderr.
        let text = [out.stdout, out.stderr].concat();
        Some(String::from_utf8_lossy(&text).trim().to_string())
    };
    if let Some(commit) = output(
        std::path::Path::new("git"),
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    ) {
        v.insert("git commit".into(), commit);
    }
    if let Some(nginx) = nginx.and_then(|n| output(n, &["-v"])) {
        v.insert(
            "nginx".into(),
            nginx.trim_start_matches("nginx version: ").to_string(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn steal_is_the_eighth_value_of_the_all_cpus_line() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  10 0 20 3000 5 0 1 77 0 0\n\
                    cpu0 5 0 10 1500 2 0 1 40 0 0\n\
                    cpu1 5 0 10 1500 3 0 0 37 0 0\n\
                    intr 12345\n";
        assert_eq!(super::steal_ticks(stat), Some(77.0));
        // A kernel too old for the column, or no all-CPUs line: unknown, not zero.
        assert_eq!(super::steal_ticks("cpu  10 0 20 3000 5 0 1\n"), None);
        assert_eq!(super::steal_ticks("cpu0 1 2 3 4 5 6 7 8\n"), None);
    }

    #[test]
    fn this_machine_reports_steal() {
        assert!(
            super::steal_seconds().is_some(),
            "no steal column in /proc/stat"
        );
    }
}
