//! The command line: `runtime [FLAGS]` serves; `runtime deploy|list|describe|versions|
//! rollback|promote|logs|rm` talk to a running runtime's deploy API.

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
    /// Deploy a new version of a function from a wasi:http component or WASI 0.1 module:
    /// it becomes current, or with --canary serves a share of requests beside the
    /// current version until `promote` or `rollback`.
    Deploy {
        /// Function name: the first path segment it is served at.
        name: String,
        /// The component or module (`.wasm`).
        file: PathBuf,
        /// A settings file (`NAME.toml`, as beside a `--functions-dir` file); the flags
        /// below override what it says (`--env` and `--allow` add to it).
        #[arg(long, value_name = "NAME.toml")]
        settings: Option<PathBuf>,
        /// Linear-memory cap in MiB.
        #[arg(long)]
        memory_mib: Option<service_ops::Mib>,
        /// Wall-clock timeout per request (`5s`, `500ms`, or a number of seconds).
        #[arg(long, visible_alias = "timeout-secs", value_parser = service_ops::positive_duration)]
        timeout: Option<std::time::Duration>,
        /// Instances at once.
        #[arg(long)]
        max_concurrency: Option<std::num::NonZeroU32>,
        /// Largest request body in bytes.
        #[arg(long)]
        max_body_bytes: Option<u64>,
        /// Environment variable for the guest, KEY=VALUE; repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Host (or host:port, or https://host) the guest may send HTTP requests to;
        /// repeatable.
        #[arg(long = "allow", value_name = "HOST[:PORT]")]
        allow: Vec<String>,
        /// Serve this share of the function's requests (1-99 %) from the new version,
        /// the rest from the current one, until `runtime promote` or `runtime rollback`.
        #[arg(long, value_name = "PERCENT", value_parser = crate::api::canary_percent)]
        canary: Option<u8>,
        /// End the canary automatically once more than this share of its answers are
        /// 5xx (`0.05` or `5%`; judged after the runtime's --canary-min-requests).
        #[arg(long, value_name = "RATE", requires = "canary", value_parser = crate::api::error_rate)]
        canary_max_error_rate: Option<f64>,
        #[command(flatten)]
        client: Client,
    },
    /// List a function's kept versions, oldest first: which is current, which a canary.
    Versions {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        client: Client,
    },
    /// Roll a function back in one step: end its canary if one runs, otherwise make
    /// VERSION (by default the newest kept version older than the current one) current.
    Rollback {
        name: String,
        version: Option<u64>,
        #[command(flatten)]
        client: Client,
    },
    /// Make a function's canary its current version, serving every request.
    Promote {
        name: String,
        #[command(flatten)]
        client: Client,
    },
    /// List deployed functions.
    List {
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        client: Client,
    },
    /// Show one function: its version (digest, size, kind, when deployed), its settings
    /// and effective limits, which compiler's code runs and whether it is loaded. `env`
    /// values are shown only with the token.
    Describe {
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        client: Client,
    },
    /// Print a function's log lines (what it wrote to stdout and stderr, kept in the
    /// runtime's memory: its newest --log-ring-kib), oldest first. Needs the token.
    Logs {
        name: String,
        /// Keep printing new lines as they come (polls every 250 ms) until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Only lines no older than this (`5m`, `30s`).
        #[arg(long, value_parser = service_ops::positive_duration)]
        since: Option<std::time::Duration>,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
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

/// How `list` and `describe` print: for people, or the API's JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

impl Output {
    /// Prints an API answer: as it came (pretty JSON), or as `text` words it for people.
    fn print(
        self,
        body: &serde_json::Value,
        text: fn(&serde_json::Value) -> String,
    ) -> anyhow::Result<()> {
        match self {
            Output::Json => println!("{}", serde_json::to_string_pretty(body)?),
            Output::Text => print!("{}", text(body)),
        }
        Ok(())
    }
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
                settings,
                memory_mib,
                timeout,
                max_concurrency,
                max_body_bytes,
                env,
                allow,
                canary,
                canary_max_error_rate,
                client,
            } => {
                let wasm =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let mut settings = match &settings {
                    Some(path) => {
                        let text = std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        crate::limits::Settings::parse(&text)
                            .with_context(|| format!("{}", path.display()))?
                    }
                    None => crate::limits::Settings::default(),
                };
                settings.memory_mib = memory_mib.or(settings.memory_mib);
                settings.timeout_secs = timeout.map(|t| t.as_secs_f64()).or(settings.timeout_secs);
                settings.max_concurrency = max_concurrency.or(settings.max_concurrency);
                settings.max_body_bytes = max_body_bytes.or(settings.max_body_bytes);
                settings.allowed_outbound_hosts.extend(allow);
                for pair in env {
                    let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty())
                    else {
                        bail!("--env takes KEY=VALUE, got {pair:?}");
                    };
                    settings.env.insert(key.to_string(), value.to_string());
                }
                let mut url = reqwest::Url::parse(&client.endpoint(Some(&name)))
                    .context("the runtime's URL")?;
                let mut query = crate::api::settings_to_query(&settings);
                if let Some(percent) = canary {
                    let canary = crate::api::canary_to_query(percent, canary_max_error_rate);
                    query = [query, canary]
                        .into_iter()
                        .filter(|q| !q.is_empty())
                        .collect::<Vec<_>>()
                        .join("&");
                }
                url.set_query((!query.is_empty()).then_some(query.as_str()));
                let request = http.put(url).body(wasm);
                let body = send(client.authorize(request)).await?;
                let what = match canary {
                    Some(percent) => format!("as a canary taking {percent} % of its requests"),
                    None => "current".into(),
                };
                println!(
                    "deployed {name} version {}, {what}: {} ({})",
                    body["version"],
                    body["digest"].as_str().unwrap_or("?"),
                    body["kind"].as_str().unwrap_or("?")
                );
            }
            Command::Versions {
                name,
                output,
                client,
            } => {
                let url = format!("{}/versions", client.endpoint(Some(&name)));
                let body = send(client.authorize(http.get(url))).await?;
                output.print(&body, versions)?;
            }
            Command::Rollback {
                name,
                version,
                client,
            } => {
                let mut url = format!("{}/rollback", client.endpoint(Some(&name)));
                if let Some(version) = version {
                    url.push_str(&format!("?version={version}"));
                }
                let body = send(client.authorize(http.post(url))).await?;
                println!(
                    "rolled back {name}: version {} is current, no canary",
                    body["current"]
                );
            }
            Command::Promote { name, client } => {
                let url = format!("{}/promote", client.endpoint(Some(&name)));
                let body = send(client.authorize(http.post(url))).await?;
                println!("promoted {name}: version {} is current", body["current"]);
            }
            Command::List { output, client } => {
                let body = send(http.get(client.endpoint(None))).await?;
                output.print(&body, list)?;
            }
            Command::Describe {
                name,
                output,
                client,
            } => {
                let body = send(client.authorize(http.get(client.endpoint(Some(&name))))).await?;
                output.print(&body, describe)?;
            }
            Command::Logs {
                name,
                follow,
                since,
                output,
                client,
            } => {
                let mut after = 0u64;
                let mut since = since.map(|d| format!("{}ms", d.as_millis()));
                loop {
                    let mut url =
                        reqwest::Url::parse(&format!("{}/logs", client.endpoint(Some(&name))))
                            .context("the runtime's URL")?;
                    url.query_pairs_mut()
                        .append_pair("after", &after.to_string());
                    if let Some(since) = since.take() {
                        url.query_pairs_mut().append_pair("since", &since);
                    }
                    let body = send(client.authorize(http.get(url))).await?;
                    for line in body["lines"].as_array().into_iter().flatten() {
                        match output {
                            Output::Json => println!("{line}"),
                            Output::Text => println!("{}", log_line(line)),
                        }
                    }
                    let next = body["next"].as_u64().unwrap_or(after);
                    let more =
                        next > after && body["lines"].as_array().is_some_and(|l| l.len() >= 1000);
                    after = next;
                    if more {
                        continue;
                    }
                    if !follow {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
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

/// `GET /functions`' answer for people: a line a function.
fn list(body: &serde_json::Value) -> String {
    let mut out = String::new();
    for f in body["functions"].as_array().into_iter().flatten() {
        let canary = match &f["canary"] {
            serde_json::Value::Null => String::new(),
            c => format!("\tcanary v{} {} %", c["version"], c["percent"]),
        };
        out.push_str(&format!(
            "{}\tv{}\t{}\t{} bytes\t{}{canary}\n",
            f["name"].as_str().unwrap_or("?"),
            f["version"],
            f["digest"].as_str().unwrap_or("?"),
            f["size"],
            f["kind"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// `GET /functions/{name}`'s answer for people: a line a field, limits and settings
/// indented below.
fn describe(f: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut out = String::new();
    for key in [
        "name",
        "version",
        "kind",
        "digest",
        "size",
        "deployed_at",
        "compiler",
        "loaded",
        "pinned",
    ] {
        out.push_str(&format!("{key:<12} {}\n", text(&f[key])));
    }
    for section in ["canary", "limits", "settings"] {
        if f[section].is_null() {
            out.push_str(&format!("{section:<12} -\n"));
            continue;
        }
        out.push_str(&format!("{section}:\n"));
        if let Some(fields) = f[section].as_object() {
            for (key, value) in fields {
                out.push_str(&format!("  {key:<22} {}\n", text(value)));
            }
        }
    }
    out
}

/// `GET /functions/{name}/versions`' answer for people: a line a version, oldest first.
fn versions(body: &serde_json::Value) -> String {
    let mut out = String::from("VERSION\tSTATE\tDEPLOYED\tDIGEST\n");
    let percent = &body["canary"]["percent"];
    for v in body["versions"].as_array().into_iter().flatten() {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(v["deployed_at"].as_u64().unwrap_or_default());
        let state = match v["state"].as_str().unwrap_or("?") {
            "canary" => format!("canary {percent} %"),
            state => state.to_string(),
        };
        out.push_str(&format!(
            "{}\t{state}\t{}\t{}\n",
            v["version"],
            humantime::format_rfc3339_seconds(at),
            v["digest"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// A kept log line for people: when (UTC), the request, the version, the stream, the text.
fn log_line(line: &serde_json::Value) -> String {
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(line["at_ms"].as_u64().unwrap_or_default());
    let version = line["version"].as_str().unwrap_or("?");
    format!(
        "{} req={} v{version} {}: {}",
        humantime::format_rfc3339_millis(at),
        line["request_id"],
        line["stream"].as_str().unwrap_or("?"),
        line["text"].as_str().unwrap_or_default()
    )
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
