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
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let steal: f64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    Some(steal / rustix::param::clock_ticks_per_second() as f64)
}

/// The wasmtime version the workspace pins, read from `Cargo.lock` at build time.
fn wasmtime_version() -> Option<&'static str> {
    let lock = include_str!("../../Cargo.lock");
    let at = lock.find("\nname = \"wasmtime\"\nversion = \"")?;
    let rest = &lock[at + "\nname = \"wasmtime\"\nversion = \"".len()..];
    rest.split('"').next()
}

/// bench, the build profile, wasmtime, git commit and nginx, as far as they can be found.
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
    if let Some(wasmtime) = wasmtime_version() {
        v.insert("wasmtime".into(), wasmtime.into());
    }
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
    fn steal_time_is_read_from_proc_stat() {
        let steal = super::steal_seconds().expect("a steal column in /proc/stat");
        assert!(steal >= 0.0);
    }

    #[test]
    fn the_pinned_wasmtime_version_is_found() {
        let v = super::wasmtime_version().expect("wasmtime in Cargo.lock");
        assert!(v.split('.').count() == 3, "{v}");
    }
}
