//! A real Prometheus running the compose stack's configuration (`infra/prometheus`: its
//! scrape jobs, recording and alert rules) against local processes, scraping and
//! evaluating every second, and its HTTP API: what the dashboards' tests query.

use crate::Background;
use anyhow::Context;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `infra/prometheus` in this checkout.
pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/prometheus")
}

/// Seconds since the Unix epoch, as Prometheus's API takes times.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// A Prometheus process, killed on drop, with its data in a temporary directory.
#[derive(Debug)]
pub struct Prometheus {
    _process: Background,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with compose's configuration, each `(compose target, local
    /// address)` pair replacing a target (`"runtime:8081"`, `"127.0.0.1:41234"`); the
    /// targets not replaced stay unreachable (their jobs are down).
    pub fn start_compose(targets: &[(&str, String)]) -> anyhow::Result<Self> {
        let port = crate::free_port()?;
        let mut config = std::fs::read_to_string(config_dir().join("prometheus.yml"))?
            .replace("scrape_interval: 5s", "scrape_interval: 1s")
            .replace("evaluation_interval: 5s", "evaluation_interval: 1s")
            .replace(
                "rules/*.yml",
                &format!("{}/rules/*.yml", config_dir().display()),
            )
            .replace("localhost:9090", &format!("127.0.0.1:{port}"));
        for (target, local) in targets {
            anyhow::ensure!(
                config.contains(target),
                "the compose scrape config has no target {target}"
            );
            config = config.replace(target, local);
        }
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("prometheus.yml"), config)?;
        let program = crate::find_program("prometheus").context(
            "prometheus not found: install it with `apt-get install -y prometheus` (scripts/test does it as root)",
        )?;
        let process = Background::spawn(
            Command::new(program)
                .arg(format!(
                    "--config.file={}/prometheus.yml",
                    dir.path().display()
                ))
                .arg(format!("--storage.tsdb.path={}/data", dir.path().display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("starting prometheus")?;
        Ok(Self {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The series an instant query returns (at `time`, or now); `None` if Prometheus
    /// does not answer (yet).
    pub async fn query_at(
        &self,
        client: &reqwest::Client,
        query: &str,
        time: Option<f64>,
    ) -> Option<Vec<serde_json::Value>> {
        instant_query(client, &self.url, query, time).await.ok()
    }

    /// The series an instant query returns now.
    pub async fn query(
        &self,
        client: &reqwest::Client,
        query: &str,
    ) -> Option<Vec<serde_json::Value>> {
        self.query_at(client, query, None).await
    }

    /// The series a range query returns from `start` to now, a point a second.
    pub async fn query_range(
        &self,
        client: &reqwest::Client,
        query: &str,
        start: f64,
    ) -> Option<Vec<serde_json::Value>> {
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", unix_now().to_string()),
            ("step", "1".to_string()),
        ];
        api(client, &self.url, "query_range", &params).await.ok()
    }

    /// Waits until a query has a series (Prometheus scraped or recorded it), failing
    /// after `timeout`.
    pub async fn wait_for_series(
        &self,
        client: &reqwest::Client,
        query: &str,
        timeout: Duration,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(series) = self.query(client, query).await
                && !series.is_empty()
            {
                return Ok(series);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "Prometheus has no {query} after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The series an instant query returns from the Prometheus at `base` (at `time`, or
/// now).
pub async fn instant_query(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    time: Option<f64>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut params = vec![("query", query.to_string())];
    if let Some(time) = time {
        params.push(("time", time.to_string()));
    }
    api(client, base, "query", &params).await
}

/// `GET /api/v1/ENDPOINT`: the result's series, or why there are none.
async fn api(
    client: &reqwest::Client,
    base: &str,
    endpoint: &str,
    params: &[(&str, String)],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let url = format!("{}/api/v1/{endpoint}", base.trim_end_matches('/'));
    let answer: serde_json::Value = client
        .get(&url)
        .query(params)
        .send()
        .await
        .with_context(|| format!("querying {url}"))?
        .json()
        .await
        .with_context(|| format!("reading {url}'s answer"))?;
    anyhow::ensure!(
        answer["status"] == "success",
        "Prometheus refused {params:?}: {answer}"
    );
    answer["data"]["result"]
        .as_array()
        .cloned()
        .with_context(|| format!("no result in {answer}"))
}

/// process-exporter (Debian's `prometheus-process-exporter`) watching one process
/// tree, a master whose command line names `config` and its workers, as group `name`:
/// what compose's `seed-php-processes` and `nginx-processes` export, for servers that
/// export neither their CPU nor their memory (PHP-FPM, nginx). Killed on drop.
#[derive(Debug)]
pub struct ProcessGroup {
    _process: Background,
    addr: std::net::SocketAddr,
    _config: tempfile::NamedTempFile,
}

impl ProcessGroup {
    /// PHP-FPM's master and workers, as group `php-fpm`.
    pub fn php_fpm(fpm: &crate::PhpFpm) -> anyhow::Result<Self> {
        Self::start("php-fpm", &fpm.config())
    }

    /// nginx's master and workers, as group `nginx`.
    pub fn nginx(nginx: &crate::Nginx) -> anyhow::Result<Self> {
        Self::start("nginx", &nginx.config())
    }

    fn start(name: &str, config: &std::path::Path) -> anyhow::Result<Self> {
        let program = crate::find_program("prometheus-process-exporter").context(
            "prometheus-process-exporter not found: install it with `apt-get install -y prometheus-process-exporter` (scripts/test does it as root)",
        )?;
        let port = crate::free_port()?;
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(
            file.path(),
            format!(
                "process_names:\n  - name: {name}\n    cmdline:\n      - '{}'\n",
                config.display().to_string().replace('.', "\\.")
            ),
        )?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let process = Background::spawn(
            Command::new(program)
                .arg(format!("-config.path={}", file.path().display()))
                .arg(format!("-web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("starting process-exporter")?;
        crate::wait_for_port(addr, Duration::from_secs(10))
            .context("process-exporter did not come up")?;
        Ok(Self {
            _process: process,
            addr,
            _config: file,
        })
    }

    /// Where Prometheus scrapes it.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}
