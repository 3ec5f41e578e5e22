//! The runtime as users run it: the real binary on 127.0.0.1, real components, real
//! sockets. Tests deploy through a functions directory or the deploy API ([`Deployer`]).

mod compile_bombs;
mod containment;
mod density;
mod deploy;
mod deployer;
mod functions;
mod isolation;
mod limits;
mod logs;
mod metrics;
mod replicas;
mod sandbox;
mod shutdown;
mod startup;
mod under_load;
mod versions;
mod wagi;

pub use deployer::Deployer;
use localrun::Service;
use std::path::Path;

/// A functions directory with every example function and test program, plus `extra`
/// deployments: (name, component path, settings TOML).
pub fn functions_dir(extra: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("functions-")
        .tempdir()
        .unwrap();
    for (name, path) in artifacts::FUNCTIONS.iter().chain(artifacts::TEST_PROGRAMS) {
        std::fs::copy(path, dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    for (name, path, settings) in extra {
        std::fs::copy(path, dir.path().join(format!("{name}.wasm"))).unwrap();
        std::fs::write(dir.path().join(format!("{name}.toml")), settings).unwrap();
    }
    dir
}

/// Starts the runtime serving `dir` on free ports, with `extra` flags.
pub fn start(dir: &Path, extra: &[&str]) -> Service {
    let mut args = args(dir);
    // Small pools keep the test processes light; the tests never need more.
    for (flag, value) in [("--pool-instances", "64"), ("--max-memory-mib", "256")] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Service::start(env!("CARGO_BIN_EXE_runtime"), &args, &["traffic", "ops"])
        .expect("runtime starts")
}

/// The deploy token of the runtimes the tests deploy to.
pub const TOKEN: &str = "test-token";

/// Starts the runtime with its store at `store`, [`TOKEN`] and `extra` flags, and returns
/// it with its deploy API.
pub fn start_with_store(store: &Path, extra: &[&str]) -> (Service, Deployer) {
    let empty = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--store-dir",
        store.to_str().unwrap(),
        "--deploy-token",
        TOKEN,
    ];
    args.extend_from_slice(extra);
    let server = start(empty.path(), &args);
    let ops = Deployer::new(&server, Some(TOKEN));
    (server, ops)
}

/// The flags that make the runtime serve `dir` on free loopback ports.
pub fn args(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    [
        "--listen",
        "127.0.0.1:0",
        "--ops-listen",
        "127.0.0.1:0",
        "--functions-dir",
        dir,
    ]
    .map(String::from)
    .to_vec()
}

pub use localrun::{metrics, sample};

/// The CLI, `runtime ARGS`, against `server`'s deploy API, with `token` if given (and
/// none from the environment otherwise).
pub fn cli(server: &Service, args: &[&str], token: Option<&str>) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtime"));
    command
        .args(args)
        .env("RUNTIME_URL", server.url("ops"))
        .env_remove("RUNTIME_DEPLOY_TOKEN");
    if let Some(token) = token {
        command.env("RUNTIME_DEPLOY_TOKEN", token);
    }
    command
}

/// GET `url`, returning status and JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text:?}"));
    (status, json)
}

/// Polls `/metrics` until `function` has `n` active instances (30 s at most).
pub async fn wait_for_active(client: &reqwest::Client, server: &Service, function: &str, n: u32) {
    let series = format!(r#"faas_active_instances{{function="{function}"}}"#);
    localrun::wait_for_sample(client, server, &series, f64::from(n)).await;
}

/// Sends `n` GETs of `url` at once and counts those refused with 503 for want of room
/// in the memory budget; every other answer must be 200 with a body that passes `ok`.
pub async fn refused_by_memory_budget(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    ok: impl Fn(&[u8]),
) -> u32 {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.bytes().await.unwrap())
            })
        })
        .collect();
    let mut refused = 0;
    for request in requests {
        let (status, body) = request.await.unwrap();
        let text = || String::from_utf8_lossy(&body).into_owned();
        match status {
            200 => ok(&body),
            503 => {
                refused += 1;
                assert!(text().contains("memory budget"), "{}", text());
            }
            _ => panic!("{url}: {status} {}", text()),
        }
    }
    refused
}

/// GET `url`, returning only the status.
pub async fn status(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> reqwest::StatusCode {
    client.get(url).send().await.unwrap().status()
}

/// Requests sent over and over until [`Load::stop`], by `tasks` tasks per URL: the
/// traffic that a redeploy must not disturb.
#[derive(Debug)]
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
}

impl Load {
    pub fn start(client: &reqwest::Client, urls: &[String], tasks: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = urls
            .iter()
            .flat_map(|url| std::iter::repeat_n(url.clone(), tasks))
            .map(|url| {
                let (client, stop) = (client.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u32, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(r) => failed.push(format!("{url}: {}", r.status())),
                            Err(e) => failed.push(format!("{url}: {e}")),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the load; how many requests succeeded, and what every other one got.
    pub async fn stop(self) -> (u32, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut ok, mut failed) = (0, Vec::new());
        for task in self.tasks {
            let (n, f) = task.await.unwrap();
            ok += n;
            failed.extend(f);
        }
        (ok, failed)
    }
}
