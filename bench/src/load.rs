//! The load engine: open-loop, constant arrival rate, over HTTP/1.1 keep-alive.
//!
//! A scheduler releases request *i* at `start + i / rate` whether or not earlier
//! requests have finished, onto a queue that a fixed pool of connections drains. A request's
//! latency runs from its release to the end of its response body, so time spent waiting
//! for a free connection behind a slow response counts against the server. Tools that
//! start the clock when they actually send (closed loop) hide exactly those stalls:
//! coordinated omission.
//!
//! Timing: tokio's timer has millisecond granularity, which would add up to 1 ms of the
//! generator's own error to every microsecond-scale latency. The scheduler is a task that
//! sleeps on a timerfd instead: nanosecond expiry, delivered through tokio's own epoll
//! reactor, so releasing a request wakes no other thread (cross-thread wake-ups, each a
//! context switch, were most of the generator's CPU). Latency counts from when a request
//! was actually released rather than from its ideal instant: any lateness of the
//! scheduler (milliseconds when it finds no free core) is the generator's, not the
//! server's. That lateness is recorded apart (`schedule_lag`), so a report can say when
//! the generator fell behind and the offered load was burstier than planned.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

/// A request due this soon is released now rather than after another sleep: every sleep
/// is a trip through the kernel. At rates up to 10k/s this only shifts the whole schedule
/// by a constant (and offsets part of the wake-up lateness); above, requests due within
/// the same 100 µs leave together.
pub const EARLY: Duration = Duration::from_micros(100);

/// Latencies are recorded in microseconds, from 1 µs to this bound, at 3 significant
/// digits. A latency above it is clamped (and the request is a timeout long before).
const MAX_LATENCY_US: u64 = 600 * 1_000_000;

/// One load run: what to send, how fast, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `http://HOST:PORT/path?query` (plain HTTP/1.1 only).
    pub url: http::Uri,
    pub method: http::Method,
    pub body: Bytes,
    /// Requests per second, constant.
    pub rate: f64,
    /// Measured requests, after the warm-up ones.
    pub requests: u64,
    /// Requests sent first, on the same schedule, and left out of every figure.
    pub warmup_requests: u64,
    /// Connections kept open; at most this many requests are in flight.
    pub connections: usize,
    /// A request whose response has not ended this long after its release is a timeout,
    /// whether it waited for a connection or for the server.
    pub timeout: Duration,
    /// Requests spread over many paths instead of the URL's one.
    pub spread: Option<Arc<Spread>>,
}

/// Which path each request takes: `paths[picks[i % picks.len()]]` for the i-th request
/// (warm-up included), so every side gets the same sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub paths: Vec<String>,
    pub picks: Vec<u32>,
}

impl Spread {
    /// `count` picks over `paths` with Zipf popularity of `exponent`, from `seed`: the
    /// i-th most popular path is drawn with probability proportional to `1 / i^exponent`,
    /// and which path is the i-th most popular is a shuffle from the same seed (so
    /// popularity does not follow the names' order).
    pub fn zipf(paths: Vec<String>, exponent: f64, count: u64, seed: u64) -> Self {
        use rand::seq::SliceRandom;
        use rand::{RngExt, SeedableRng};
        assert!(!paths.is_empty(), "a spread needs paths");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rank: Vec<u32> = (0..paths.len() as u32).collect();
        rank.shuffle(&mut rng);
        let zipf = rand_distr::Zipf::new(paths.len() as f64, exponent)
            .expect("n >= 1 and exponent >= 0 are checked by the scenario");
        let picks = (0..count.max(1))
            .map(|_| {
                // Zipf draws a rank from 1 to n.
                let r = rng.sample(zipf) as usize;
                rank[r.clamp(1, rank.len()) - 1]
            })
            .collect();
        Self { paths, picks }
    }

    fn path(&self, i: u64) -> &str {
        let pick = self.picks[(i % self.picks.len() as u64) as usize];
        &self.paths[pick as usize]
    }

    /// How many distinct paths the first `count` requests take.
    pub fn distinct(&self, count: u64) -> usize {
        let mut seen = vec![false; self.paths.len()];
        (0..count)
            .filter(|&i| {
                let pick = self.picks[(i % self.picks.len() as u64) as usize] as usize;
                !std::mem::replace(&mut seen[pick], true)
            })
            .count()
    }
}

impl LoadSpec {
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// No complete response within the timeout (counted from the request's release).
    Timeout,
    /// The connection failed while sending or receiving (reset, closed, bad HTTP).
    Io,
    /// A response with a status outside 2xx.
    Status(u16),
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Io => f.write_str("io"),
            ErrorKind::Status(code) => write!(f, "status_{code}"),
        }
    }
}

/// What a run measured. Only the measured requests (not warm-up) are in it.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Latency of successful requests, release to end of body, in µs.
    pub latency: Histogram<u64>,
    /// How long released requests waited for a free connection, in µs: the server falling
    /// behind (counted in latency too).
    pub send_lag: Histogram<u64>,
    /// How late the scheduler released requests after their planned instant, in µs: the
    /// generator falling behind (not counted in latency).
    pub schedule_lag: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Intended time of the first measured request, from the start of the run.
    pub measure_start: Duration,
    /// When the last measured request finished, from the start of the run.
    pub measure_end: Duration,
    /// When the last successful measured request was sent, from the start of the run.
    pub send_end: Duration,
    /// The interval between intended send times.
    pub interval: Duration,
    /// Wall-clock start of the run, for lining up resource samples.
    pub started: Instant,
}

impl LoadResult {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn completed(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Successful requests per second, over the time it took to send them: from the first
    /// intended send time to the last actual send, plus one interval. A server that keeps
    /// up gets the target rate whatever its latency (a 1 s handler is not "slower" at
    /// 100 req/s); one that falls behind delays the sends, because requests wait for a
    /// free connection, and the rate drops accordingly.
    pub fn achieved_rate(&self) -> f64 {
        let window = self.send_end.saturating_sub(self.measure_start) + self.interval;
        self.ok as f64 / window.as_secs_f64()
    }
}

/// Live counters, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("rate must be a positive number of requests per second, got {0}")]
    Rate(f64),
    #[error("connections must be at least 1")]
    Connections,
    #[error("requests must be at least 1")]
    Requests,
    #[error("only http:// URLs with a host are supported, got {0}")]
    Url(http::Uri),
}

/// A request due at `intended`, queued at `released`; `measured` is false for warm-up.
/// `index` is its place in the run (warm-up first), which picks its path in a spread.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    intended: Instant,
    released: Instant,
    measured: bool,
    index: u64,
}

impl Ticket {
    fn path<'t>(&self, target: &'t Target) -> &'t str {
        target.path(self.index)
    }
}

/// One connection's share of the results, merged at the end.
struct Tally {
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    schedule_lag: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<ErrorKind, u64>,
    last_done: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: histogram(),
            send_lag: histogram(),
            schedule_lag: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            last_done: None,
            last_sent: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.add(&other.latency).expect("same bounds");
        self.send_lag.add(&other.send_lag).expect("same bounds");
        self.schedule_lag
            .add(&other.schedule_lag)
            .expect("same bounds");
        self.ok += other.ok;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        self.last_done = self.last_done.max(other.last_done);
        self.last_sent = self.last_sent.max(other.last_sent);
    }
}

/// A one-shot timer with nanosecond resolution whose expiry wakes tokio's reactor: epoll
/// reports the timerfd readable. tokio's own timer rounds to milliseconds.
struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    fn new() -> std::io::Result<Self> {
        use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: `register` is unsafe because the reactor must not outlive the descriptor
        // it watches. Here the AsyncFd owns the OwnedFd: nothing else can close it, and
        // dropping the AsyncFd deregisters it before the descriptor is closed.
        #[expect(
            unsafe_code,
            reason = "AsyncFd::register, sound as the AsyncFd owns the fd"
        )]
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Self { fd })
    }

    async fn sleep(&self, duration: Duration) {
        use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
        // A zero expiry would disarm the timer instead of firing it.
        let duration = duration.max(Duration::from_nanos(1));
        let value = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: duration.as_secs() as _,
                tv_nsec: duration.subsec_nanos() as _,
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &value)
            .expect("arming a timerfd we own");
        loop {
            let mut guard = self.fd.readable().await.expect("timerfd in the reactor");
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                Ok(_) => return,
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(e) => panic!("reading a timerfd: {e}"),
            }
        }
    }
}

/// Whether the generator's threads run at a higher priority than the servers (nice -10,
/// which needs root or CAP_SYS_NICE). The generator shares the cores with the side under
/// test, and every moment it waits for a core is charged to that side as latency; the
/// side with more busy processes would pay more of it.
static PRIORITY_RAISED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Raises the calling thread's priority (on Linux, niceness is per thread), best effort.
pub fn raise_priority() {
    if rustix::process::nice(-10).is_ok() {
        PRIORITY_RAISED.store(true, Ordering::Relaxed);
    }
}

/// Whether [`raise_priority`] has succeeded on some thread.
pub fn priority_raised() -> bool {
    PRIORITY_RAISED.load(Ordering::Relaxed)
}

/// An empty latency histogram with the engine's bounds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

/// Runs `spec` to completion on the current tokio runtime. Returns when every request has
/// either finished or timed out.
pub async fn run(spec: &LoadSpec, progress: Arc<Progress>) -> Result<LoadResult, SpecError> {
    if !(spec.rate.is_finite() && spec.rate > 0.0) {
        return Err(SpecError::Rate(spec.rate));
    }
    if spec.connections == 0 {
        return Err(SpecError::Connections);
    }
    if spec.requests == 0 {
        return Err(SpecError::Requests);
    }
    if spec.url.scheme_str() != Some("http") || spec.url.host().is_none() {
        return Err(SpecError::Url(spec.url.clone()));
    }
    let authority = spec.url.authority().expect("checked host").to_string();
    let target = Arc::new(Target {
        authority: authority.clone(),
        connect_to: if spec.url.port().is_some() {
            authority
        } else {
            format!("{authority}:80")
        },
        path: spec
            .url
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string()),
        method: spec.method.clone(),
        body: spec.body.clone(),
        timeout: spec.timeout,
        spread: spec.spread.clone(),
    });

    // Connections open (and fail) before the clock starts, so the first requests do not
    // pay for the handshakes; a connection that cannot be opened is retried per request.
    let mut senders = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        senders.push(connect(&target.connect_to).await.ok());
    }

    let (tx, rx) = async_channel::unbounded::<Ticket>();
    let started = Instant::now();
    let interval = spec.interval();
    let total = spec.warmup_requests + spec.requests;
    let warmup = spec.warmup_requests;
    let scheduler = tokio::spawn(async move {
        let timer = PreciseTimer::new().expect("creating a timerfd");
        for i in 0..total {
            let intended = started + interval.mul_f64(i as f64);
            let now = Instant::now();
            if intended > now + EARLY {
                timer.sleep(intended - now - EARLY).await;
            }
            let ticket = Ticket {
                intended,
                released: Instant::now(),
                measured: i >= warmup,
                index: i,
            };
            if tx.send(ticket).await.is_err() {
                break;
            }
        }
    });

    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            let (rx, target, progress) = (rx.clone(), target.clone(), progress.clone());
            tokio::spawn(worker(sender, rx, target, progress))
        })
        .collect();
    drop(rx);

    let mut tally = Tally::new();
    for worker in workers {
        tally.merge(worker.await.expect("load worker panicked"));
    }
    scheduler.await.expect("the scheduler panicked");

    let measure_start = interval.mul_f64(warmup as f64);
    let since_start = |t: Option<Instant>| t.map_or(measure_start, |t| t.duration_since(started));
    let measure_end = since_start(tally.last_done);
    let send_end = since_start(tally.last_sent);
    Ok(LoadResult {
        latency: tally.latency,
        send_lag: tally.send_lag,
        schedule_lag: tally.schedule_lag,
        ok: tally.ok,
        errors: tally.errors,
        measure_start,
        measure_end,
        send_end,
        interval,
        started,
    })
}

struct Target {
    authority: String,
    connect_to: String,
    path: String,
    method: http::Method,
    body: Bytes,
    timeout: Duration,
    spread: Option<Arc<Spread>>,
}

impl Target {
    fn path(&self, index: u64) -> &str {
        self.spread
            .as_ref()
            .map_or(self.path.as_str(), |s| s.path(index))
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are small and latency-bound: do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the sender is dropped; the
        // worker sees the failure on its next request and reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One connection: takes the next due request, sends it, waits for the whole response.
async fn worker(
    mut sender: Option<Sender>,
    queue: async_channel::Receiver<Ticket>,
    target: Arc<Target>,
    progress: Arc<Progress>,
) -> Tally {
    let mut tally = Tally::new();
    while let Ok(ticket) = queue.recv().await {
        let outcome = send(&mut sender, &target, ticket.path(&target), ticket.released).await;
        let done = Instant::now();
        progress.done.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        if !ticket.measured {
            continue;
        }
        tally.last_done = Some(done);
        let _ = tally.schedule_lag.record(micros(
            ticket.released.saturating_duration_since(ticket.intended),
        ));
        match outcome {
            Ok(sent_at) => {
                tally.ok += 1;
                tally.last_sent = tally.last_sent.max(Some(sent_at));
                let _ = tally.latency.record(micros(done - ticket.released));
                let _ = tally
                    .send_lag
                    .record(micros(sent_at.saturating_duration_since(ticket.released)));
            }
            Err(kind) => *tally.errors.entry(kind).or_default() += 1,
        }
    }
    tally
}

/// Sends one request on `sender` (reconnecting if needed) and reads the body to the end.
/// Returns when the request was actually sent.
async fn send(
    sender: &mut Option<Sender>,
    target: &Target,
    path: &str,
    released: Instant,
) -> Result<Instant, ErrorKind> {
    let deadline = released + target.timeout;
    if Instant::now() >= deadline {
        // Waited out its whole timeout in the queue: never sent, connection untouched.
        return Err(ErrorKind::Timeout);
    }
    let exchange = async {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            *sender = Some(
                connect(&target.connect_to)
                    .await
                    .map_err(|_| ErrorKind::Connect)?,
            );
        }
        let s = sender.as_mut().expect("connected above");
        if s.ready().await.is_err() {
            *sender = None;
            return Err(ErrorKind::Io);
        }
        let request = http::Request::builder()
            .method(target.method.clone())
            .uri(path)
            .header(http::header::HOST, target.authority.as_str())
            .body(Full::new(target.body.clone()))
            .expect("valid request parts");
        let sent_at = Instant::now();
        let response = s.send_request(request).await.map_err(|_| ErrorKind::Io)?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|_| ErrorKind::Io)?;
        if status.is_success() {
            Ok(sent_at)
        } else {
            Err(ErrorKind::Status(status.as_u16()))
        }
    };
    match tokio::time::timeout_at(deadline.into(), exchange).await {
        Ok(Err(ErrorKind::Io)) => {
            *sender = None;
            Err(ErrorKind::Io)
        }
        Ok(outcome) => outcome,
        Err(_) => {
            // The connection is mid-exchange: unusable for the next request.
            *sender = None;
            Err(ErrorKind::Timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn a_zipf_spread_is_the_same_for_a_seed_and_favours_few_paths() {
        let paths: Vec<String> = (0..1000).map(|i| format!("/f-{i}/")).collect();
        let a = Spread::zipf(paths.clone(), 1.0, 10_000, 7);
        assert_eq!(a, Spread::zipf(paths.clone(), 1.0, 10_000, 7));
        assert_ne!(a.picks, Spread::zipf(paths.clone(), 1.0, 10_000, 8).picks);
        assert!(a.picks.iter().all(|&p| (p as usize) < paths.len()));
        // With exponent 1 over 1000 names the most popular takes 1 / H(1000) ≈ 13%;
        // uniform would give it 0.1%.
        let mut counts = vec![0u32; paths.len()];
        for &p in &a.picks {
            counts[p as usize] += 1;
        }
        let top = *counts.iter().max().unwrap();
        assert!((1000..=1700).contains(&top), "{top}");
        // Most names are touched rarely or never: the long idle tail.
        assert!(a.distinct(10_000) < 1000);
        // Exponent 0 is uniform: no name above a few times its share.
        let flat = Spread::zipf(paths.clone(), 0.0, 10_000, 7);
        let mut counts = vec![0u32; paths.len()];
        for &p in &flat.picks {
            counts[p as usize] += 1;
        }
        assert!(*counts.iter().max().unwrap() < 40);
        assert_eq!(a.path(3), paths[a.picks[3] as usize]);
    }
}
