//! The command line: `runtime [FLAGS]` serves; `runtime deploy|list|rm` talk to a
//! running runtime's deploy API.

use anyhow::{Context, bail};
use std::path::PathBuf;

use crate::Config;

#[derive(clap::Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: Config,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Deploy (or replace) a function from a wasi:http component file.
    Deploy {
        /// Function name: the first path segment it is served at.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// Linear-memory cap in MiB.
        #[arg(long)]
        memory_mib: Option<service_ops::Mib>,
        /// Wall-clock timeout per request in seconds.
        #[arg(long)]
        timeout_secs: Option<f64>,
        /// Instances at once.
        #[arg(long)]
        max_concurrency: Option<std::num::NonZeroU32>,
        /// Largest request body in bytes.
        #[arg(long)]
        max_body_bytes: Option<u64>,
        /// Environment variable for the guest, KEY=VALUE; repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Host (or host:port) the guest may send HTTP requests to; repeatable.
        #[arg(long = "allow", value_name = "HOST[:PORT]")]
        allow: Vec<String>,
        #[command(flatten)]
        client: Client,
    },
    /// List deployed functions.
    List {
        #[command(flatten)]
        client: Client,
    },
    /// Remove a function.
    Rm {
        name: String,
        #[command(flatten)]
        client: Client,
    },
    /// Compiles one component or core module from stdin to stdout: what the server
    /// runs in a child process under limits (see `compiler`), not for people.
    #[command(name = "__compile", hide = true)]
    Compile {
        #[arg(long, value_enum)]
        compiler: crate::function::Compiler,
        #[arg(long, value_enum)]
        artifact: crate::compiler::Artifact,
        #[arg(long)]
        memory_mib: u64,
        #[arg(long)]
        cpu_secs: u64,
    },
}

#[derive(clap::Args, Debug)]
pub struct Client {
    /// The runtime's ops address.
    #[arg(long, env = "RUNTIME_URL", default_value = "http://127.0.0.1:8081")]
    pub url: String,
    /// Bearer token for deploy and rm.
    #[arg(long, env = "RUNTIME_DEPLOY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        if let Command::Compile {
            compiler,
            artifact,
            memory_mib,
            cpu_secs,
        } = self
        {
            crate::compiler::worker(compiler, artifact, memory_mib, cpu_secs);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.call())
    }

    async fn call(self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().build()?;
        match self {
            Command::Deploy {
                name,
                file,
                memory_mib,
                timeout_secs,
                max_concurrency,
                max_body_bytes,
                env,
                allow,
                client,
            } => {
                let wasm =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let mut settings = crate::limits::Settings {
                    memory_mib,
                    timeout_secs,
                    max_concurrency,
                    max_body_bytes,
                    allowed_outbound_hosts: allow,
                    ..Default::default()
                };
                for pair in env {
                    let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty())
                    else {
                        bail!("--env takes KEY=VALUE, got {pair:?}");
                    };
                    settings.env.insert(key.to_string(), value.to_string());
                }
                let mut url = reqwest::Url::parse(&client.endpoint(Some(&name)))
                    .context("the runtime's URL")?;
                let query = crate::api::settings_to_query(&settings);
                url.set_query((!query.is_empty()).then_some(query.as_str()));
                let request = http.put(url).body(wasm);
                let body = send(client.authorize(request)).await?;
                println!(
                    "deployed {name}: {} ({})",
                    body["digest"].as_str().unwrap_or("?"),
                    body["kind"].as_str().unwrap_or("?")
                );
            }
            Command::List { client } => {
                let body = send(http.get(client.endpoint(None))).await?;
                for f in body["functions"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{} bytes\t{}",
                        f["name"].as_str().unwrap_or("?"),
                        f["digest"].as_str().unwrap_or("?"),
                        f["size"],
                        f["kind"].as_str().unwrap_or("?")
                    );
                }
            }
            Command::Rm { name, client } => {
                send(client.authorize(http.delete(client.endpoint(Some(&name))))).await?;
                println!("removed {name}");
            }
            Command::Compile { .. } => unreachable!("run() handles it before any I/O"),
        }
        Ok(())
    }
}

impl Client {
    fn endpoint(&self, name: Option<&str>) -> String {
        let base = self.url.trim_end_matches('/');
        match name {
            Some(name) => format!("{base}/functions/{name}"),
            None => format!("{base}/functions"),
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Sends, and turns any non-2xx answer into an error carrying the runtime's message.
async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    let response = request.send().await.context("calling the runtime")?;
    let status = response.status();
    let text = response.text().await?;
    let body: serde_json::Value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    if !status.is_success() {
        let message = body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        bail!("{status}: {message}");
    }
    Ok(body)
}
