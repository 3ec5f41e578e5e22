//! Resource use of a side's whole process set, read from `/proc` at a fixed interval while
//! a run goes on: the serverless side is the runtime process; the traditional side is the
//! webserver plus nginx's master and all its workers.

use serde::{Deserialize, Serialize};
use service_ops::ProcStat;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The processes that make up one side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessSet {
    /// Counted themselves.
    pub pids: Vec<u32>,
    /// Counted together with their children (nginx's master: its workers are children).
    pub trees: Vec<u32>,
}

impl ProcessSet {
    /// Every pid in the set right now.
    pub fn members(&self) -> Vec<u32> {
        let mut all = self.pids.clone();
        for &root in &self.trees {
            all.push(root);
            all.extend(children(root));
        }
        all
    }

    /// The set's summed resource use now; processes that have gone are skipped. With
    /// `proportional`, also the summed PSS (dearer to read: the kernel walks each
    /// process's page tables).
    pub fn read(&self, t: f64, proportional: bool) -> Sample {
        let mut sample = Sample {
            t,
            ..Sample::default()
        };
        for pid in self.members() {
            if let Ok(stat) = ProcStat::read(&pid.to_string()) {
                sample.cpu_seconds += stat.cpu_seconds;
                sample.resident_bytes += stat.resident_bytes;
                sample.virtual_bytes += stat.virtual_bytes;
                sample.processes += 1;
                if proportional {
                    sample.proportional_bytes += pss_bytes(pid).unwrap_or(0);
                }
            }
        }
        sample
    }
}

/// The direct children of `pid`, from `/proc/PID/task/*/children` (or, on kernels
/// without that file, a scan of `/proc`).
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let listed: Option<Vec<u32>> = tasks.ok().and_then(|tasks| {
        let mut all = Vec::new();
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).ok()?;
            all.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        Some(all)
    });
    listed.unwrap_or_else(|| {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&child| parent(child) == Some(pid))
            .collect()
    })
}

/// A process's proportional set size: its resident pages, each shared page divided by
/// the number of processes sharing it (`Pss` in `/proc/PID/smaps_rollup`).
fn pss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The summed use of a process set at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Cumulative user + system CPU seconds of the set.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub processes: u32,
    /// Summed PSS: resident memory with every page shared between processes (a PHP-FPM
    /// pool's binary and OPcache, nginx's workers) counted once across them, where RSS
    /// counts it in every process. Read about once a second ([`PSS_EVERY`]) and carried
    /// between reads; 0 if never read.
    #[serde(default)]
    pub proportional_bytes: u64,
}

/// How often the sampler reads PSS (about 10 ms for 65 processes, where RSS takes 1 ms).
pub const PSS_EVERY: Duration = Duration::from_secs(1);

/// Samples a process set on its own thread until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `set` every `interval`, timestamps relative to `origin`.
    pub fn start(set: ProcessSet, origin: Instant, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                let mut samples: Vec<Sample> = Vec::new();
                let mut next = Instant::now();
                let mut pss_due = Instant::now();
                loop {
                    let proportional = Instant::now() >= pss_due;
                    let mut sample = set.read(origin.elapsed().as_secs_f64(), proportional);
                    if proportional {
                        pss_due += PSS_EVERY;
                    } else if let Some(last) = samples.last() {
                        sample.proportional_bytes = last.proportional_bytes;
                    }
                    samples.push(sample);
                    if flag.load(Ordering::Relaxed) {
                        return samples;
                    }
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::park_timeout(next - now);
                    } else {
                        next = now;
                    }
                }
            })
            .expect("spawning the sampler thread");
        Self { stop, thread }
    }

    /// Stops, takes one last sample, and returns them all in time order.
    pub fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        self.thread.join().expect("sampler thread panicked")
    }
}

/// A side's resource use over a measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub resident_peak_bytes: u64,
    pub resident_mean_bytes: u64,
    pub virtual_peak_bytes: u64,
    /// Most processes seen at once.
    pub processes: u32,
    /// Peak summed PSS ([`Sample::proportional_bytes`]), if it was read.
    #[serde(default)]
    pub proportional_peak_bytes: Option<u64>,
}

/// Use over `[from, to]` (seconds since the run started): CPU interpolated between the
/// samples around each end; memory over the samples inside, plus the nearest ones around.
pub fn usage(samples: &[Sample], from: f64, to: f64) -> Option<Usage> {
    if samples.len() < 2 || to <= from {
        return None;
    }
    let cpu_at = |t: f64| -> f64 {
        let after = samples.partition_point(|s| s.t < t).min(samples.len() - 1);
        let before = after.saturating_sub(1);
        let (a, b) = (samples[before], samples[after]);
        if b.t <= a.t {
            return b.cpu_seconds;
        }
        let f = ((t - a.t) / (b.t - a.t)).clamp(0.0, 1.0);
        a.cpu_seconds + f * (b.cpu_seconds - a.cpu_seconds)
    };
    let first = samples.partition_point(|s| s.t < from).saturating_sub(1);
    let last = samples
        .partition_point(|s| s.t <= to)
        .min(samples.len() - 1);
    let window = &samples[first..=last];
    Some(Usage {
        cpu_seconds: (cpu_at(to) - cpu_at(from)).max(0.0),
        resident_peak_bytes: window.iter().map(|s| s.resident_bytes).max()?,
        resident_mean_bytes: window.iter().map(|s| s.resident_bytes).sum::<u64>()
            / window.len() as u64,
        virtual_peak_bytes: window.iter().map(|s| s.virtual_bytes).max()?,
        processes: window.iter().map(|s| s.processes).max()?,
        proportional_peak_bytes: window
            .iter()
            .map(|s| s.proportional_bytes)
            .max()
            .filter(|&b| b > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, cpu: f64, rss: u64) -> Sample {
        Sample {
            t,
            cpu_seconds: cpu,
            resident_bytes: rss,
            virtual_bytes: rss * 10,
            processes: 1,
            proportional_bytes: rss / 2,
        }
    }

    #[test]
    fn usage_interpolates_cpu_and_bounds_memory_to_the_window() {
        let samples = [
            s(0.0, 0.0, 100),
            s(1.0, 1.0, 500),
            s(2.0, 3.0, 200),
            s(3.0, 3.0, 900),
        ];
        let u = usage(&samples, 0.5, 1.5).unwrap();
        // 0.5 at t=0.5, 2.0 at t=1.5.
        assert!((u.cpu_seconds - 1.5).abs() < 1e-9, "{u:?}");
        // Samples 0..=2 surround the window; 900 at t=3 is outside it.
        assert_eq!(u.resident_peak_bytes, 500);
        assert_eq!(u.resident_mean_bytes, (100 + 500 + 200) / 3);
        assert_eq!(u.virtual_peak_bytes, 5000);
        assert_eq!(u.proportional_peak_bytes, Some(250));
        assert!(usage(&samples[..1], 0.0, 1.0).is_none());
    }

    #[test]
    fn a_process_tree_counts_the_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let set = ProcessSet {
            pids: vec![],
            trees: vec![me],
        };
        let members = set.members();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            members.contains(&me) && members.contains(&child.id()),
            "{members:?}"
        );
        // The CPU this process has used, by the kernel's clock, on either side of the read:
        // what `/proc` says must lie between them (give or take a 10 ms tick).
        let cpu = || {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
            t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
        };
        let spin_until = cpu() + 0.05;
        while cpu() < spin_until {
            std::hint::black_box(());
        }
        let before = cpu();
        let sample = ProcessSet {
            pids: vec![me],
            trees: vec![],
        }
        .read(0.0, true);
        let after = cpu();
        assert_eq!(sample.processes, 1);
        assert!(sample.resident_bytes > 0, "{sample:?}");
        assert!(
            sample.cpu_seconds >= before - 0.02 && sample.cpu_seconds <= after + 0.02,
            "CPU {} s read between {before} and {after} s",
            sample.cpu_seconds
        );
        // PSS is read, and never more than RSS.
        assert!(
            sample.proportional_bytes > 0 && sample.proportional_bytes <= sample.resident_bytes,
            "{sample:?}"
        );
    }
}
