//! What functions write to stdout and stderr, kept per function in memory so that one
//! function's lines can be read without the host's (`GET /functions/{name}/logs`,
//! `runtime logs NAME`). Bounded twice: each function keeps its newest
//! `--log-ring-kib`, and all together at most `--max-log-memory-mib`, past which the
//! oldest lines of any function go first. The process log keeps every line as before.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

/// One line a function wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    /// Increases with every line the process keeps: what `after` pages by.
    pub seq: u64,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub request_id: u64,
    /// The number of the version that wrote it (`GET /functions/{name}/versions`).
    pub version: Arc<str>,
    pub stream: &'static str,
    pub text: String,
}

impl Line {
    fn bytes(&self) -> usize {
        self.text.len() + 64
    }
}

/// Every function's lines.
#[derive(Debug)]
pub struct Logs {
    inner: Mutex<Inner>,
    per_function: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Inner {
    rings: HashMap<Arc<str>, Ring>,
    /// Every kept line's (seq, function) in order: who to evict first when the total
    /// is past its bound. Entries whose line a ring already dropped are skipped.
    order: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
    /// Lines kept, all rings together.
    lines: usize,
    seq: u64,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
}

static GLOBAL: OnceLock<Logs> = OnceLock::new();

/// Sets the bounds, once, at start (`ControlPlane::start`); without it, the defaults.
pub fn configure(per_function_kib: usize, total_mib: usize) {
    let _ = GLOBAL.set(Logs::new(per_function_kib << 10, total_mib << 20));
}

/// The process's logs.
pub fn global() -> &'static Logs {
    GLOBAL.get_or_init(|| Logs::new(64 << 10, 32 << 20))
}

impl Logs {
    pub fn new(per_function: usize, total: usize) -> Self {
        Self {
            inner: Mutex::default(),
            per_function,
            total,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a line `function` wrote.
    pub fn push(
        &self,
        function: &Arc<str>,
        version: &Arc<str>,
        request_id: u64,
        stream: &'static str,
        text: String,
    ) {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut inner = self.lock();
        inner.seq += 1;
        let line = Line {
            seq: inner.seq,
            at_ms,
            request_id,
            version: version.clone(),
            stream,
            text,
        };
        let size = line.bytes();
        inner.order.push_back((line.seq, function.clone()));
        inner.bytes += size;
        inner.lines += 1;
        let ring = inner.rings.entry(function.clone()).or_default();
        ring.bytes += size;
        ring.lines.push_back(line);
        let (mut dropped, mut count) = (0, 0);
        while ring.bytes > self.per_function
            && let Some(old) = ring.lines.pop_front()
        {
            ring.bytes -= old.bytes();
            dropped += old.bytes();
            count += 1;
        }
        inner.bytes -= dropped;
        inner.lines -= count;
        while inner.bytes > self.total {
            let Some((seq, name)) = inner.order.pop_front() else {
                break;
            };
            let Some(ring) = inner.rings.get_mut(&name) else {
                continue;
            };
            if let Some(old) = ring.lines.pop_front_if(|l| l.seq == seq) {
                ring.bytes -= old.bytes();
                inner.bytes -= old.bytes();
                inner.lines -= 1;
            }
        }
        // Entries for lines rings dropped on their own: trimmed when they are many.
        if inner.order.len() > 2 * inner.lines + 1024 {
            let Inner { rings, order, .. } = &mut *inner;
            order.retain(|(seq, name)| {
                rings
                    .get(name)
                    .and_then(|r| r.lines.front())
                    .is_some_and(|front| *seq >= front.seq)
            });
        }
    }

    /// `function`'s lines after `after` (a `seq`) and at or after `since_ms`, oldest
    /// first, at most `limit`.
    pub fn read(&self, function: &str, after: u64, since_ms: u64, limit: usize) -> Vec<Line> {
        let inner = self.lock();
        let Some(ring) = inner.rings.get(function) else {
            return Vec::new();
        };
        ring.lines
            .iter()
            .filter(|l| l.seq > after && l.at_ms >= since_ms)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Forgets `function`'s lines (it was deleted).
    pub fn forget(&self, function: &str) {
        let mut inner = self.lock();
        if let Some(ring) = inner.rings.remove(function) {
            inner.bytes -= ring.bytes;
            inner.lines -= ring.lines.len();
        }
    }

    /// Bytes kept, all functions together.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn each_function_reads_its_own_lines_in_order_after_a_seq() {
        let logs = Logs::new(1 << 20, 1 << 20);
        let (a, b, v) = (name("a"), name("b"), name("sha256:1"));
        logs.push(&a, &v, 1, "stdout", "a one".into());
        logs.push(&b, &v, 2, "stderr", "b one".into());
        logs.push(&a, &v, 3, "stdout", "a two".into());
        let lines = logs.read("a", 0, 0, 100);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a one", "a two"]);
        let after = logs.read("a", lines[0].seq, 0, 100);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].request_id, 3);
        assert_eq!(logs.read("b", 0, 0, 100)[0].stream, "stderr");
        logs.forget("a");
        assert!(logs.read("a", 0, 0, 100).is_empty());
    }

    #[test]
    fn a_flood_keeps_each_function_and_the_process_within_bounds() {
        let logs = Logs::new(10 << 10, 64 << 10);
        let v = name("sha256:1");
        let quiet = name("quiet");
        logs.push(&quiet, &v, 1, "stdout", "still here".into());
        for i in 0..100_000 {
            let f = name(&format!("f{}", i % 20));
            logs.push(&f, &v, i, "stdout", "x".repeat(100));
            assert!(logs.bytes() <= 64 << 10);
        }
        for i in 0..20 {
            let kept: usize = logs
                .read(&format!("f{i}"), 0, 0, usize::MAX)
                .iter()
                .map(Line::bytes)
                .sum();
            assert!(kept <= 10 << 10, "f{i} keeps {kept}");
        }
        // The quiet function's line was the oldest: the total bound took it.
        assert!(logs.read("quiet", 0, 0, 10).is_empty());
        let newest = logs.read("f19", 0, 0, usize::MAX);
        assert_eq!(newest.last().unwrap().request_id, 99_999);
    }
}
