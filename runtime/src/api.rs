//! The deploy API on the ops listener:
//!
//! - `PUT /functions/{name}`: body = the component; settings as query parameters
//!   (`memory_mib`, `timeout_secs`, `max_concurrency`, `max_body_bytes`, `env=KEY=VALUE`
//!   repeated, `allow=HOST[:PORT]` repeated); `canary=PERCENT` (1-99) to serve that
//!   share of requests from it beside the current version, with
//!   `canary_max_error_rate=0.05` to end it automatically past that share of 5xx
//!   answers. 201 created, 200 replaced or canary started.
//! - `GET /functions`, `GET /functions/{name}`: what is deployed (version, digest, size,
//!   settings, effective limits, deployed_at, canary).
//! - `GET /functions/{name}/versions`: the kept versions, which is current, the canary.
//! - `POST /functions/{name}/rollback[?version=N]`: ends a canary, or makes version N
//!   (by default the newest older than the current one) current.
//! - `POST /functions/{name}/promote`: the canary becomes current.
//! - `GET /functions/{name}/logs`: its kept log lines.
//! - `DELETE /functions/{name}`: 204.
//!
//! Every call but the listings needs `Authorization: Bearer TOKEN` when a token is
//! configured.

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use service_ops::body::{self, BodyError};
use service_ops::ops;

use crate::config::Secret;
use crate::control::{ControlPlane, DeployError, VersionError};
use crate::limits::Settings;
use crate::metrics::DeployResult;
use crate::name::FunctionName;
use crate::registry::Routes;
use crate::store::Placement;

/// The deploy API on the ops listener: routes `/functions` calls to the control plane,
/// after the token and the request head are checked.
#[derive(Debug)]
pub struct Api {
    control: ControlPlane,
    token: Option<Secret>,
    max_deploy_bytes: u64,
    body_timeout: std::time::Duration,
}

type Reply = Response<Full<Bytes>>;

impl Api {
    /// The API over `control`, taking changes only with `token` (or, without one, only
    /// from localhost), components up to `max_deploy_bytes` uploaded within
    /// `body_timeout`.
    pub fn new(
        control: ControlPlane,
        token: Option<Secret>,
        max_deploy_bytes: u64,
        body_timeout: std::time::Duration,
    ) -> Self {
        Self {
            control,
            token,
            max_deploy_bytes,
            body_timeout,
        }
    }

    /// Answers one call to the deploy API. Everything that can be decided from the head
    /// is decided before any body is read: the route and the name (for every method),
    /// the token, the declared length. An early answer discards what the client still
    /// sends for a moment, so that it reads the answer rather than a reset, and closes
    /// the connection.
    pub async fn answer<B>(&self, request: Request<B>) -> Reply
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<service_ops::BoxError>,
    {
        let (parts, body) = request.into_parts();
        let route = match Route::of(&parts.method, parts.uri.path()) {
            Ok(route) => route,
            Err((status, message)) => return early(body, ops::json_error(status, &message)),
        };
        let authorized = self.authorized(&parts.headers);
        if route.needs_token() && !authorized {
            return early(body, self.unauthorized());
        }
        // Environment values are where secrets go: shown only to a caller with the token.
        let reveal = self.token.is_some() && authorized;
        let Route::Deploy(name) = route else {
            // No other call takes a body; one sent anyway is not read.
            if !body.is_end_stream() {
                body::discard_rest(Box::pin(body));
            }
            return match route {
                Route::List => self.list(reveal),
                Route::Describe(name) => self.describe(&name, reveal),
                Route::Versions(name) => self.versions(&name, reveal),
                Route::Logs(name) => self.logs(&name, parts.uri.query()),
                Route::Rollback(name) => self.rollback(name, parts.uri.query()).await,
                Route::Promote(name) => self.promote(name).await,
                Route::Delete(name) => self.delete(name).await,
                Route::Deploy(_) => unreachable!("taken above"),
            };
        };
        match self.read_component(&parts.headers, body).await {
            Ok(wasm) => self.deploy(name, parts.uri.query(), wasm).await,
            Err(reply) => reply,
        }
    }

    /// 401 with a token configured, 403 without one (a request not addressed to this
    /// machine).
    fn unauthorized(&self) -> Reply {
        self.control.count_deployment(DeployResult::Unauthorized);
        if self.token.is_none() {
            return ops::json_error(
                403,
                "without --deploy-token the deploy API takes changes only addressed to \
                 localhost, 127.0.0.1 or [::1] (the Host header)",
            );
        }
        let mut reply = ops::json_error(401, "a valid bearer token is required for this call");
        reply.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        reply
    }

    /// The component a PUT carries, within `--max-deploy-bytes` and the body deadline.
    async fn read_component<B>(&self, headers: &http::HeaderMap, body: B) -> Result<Bytes, Reply>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<service_ops::BoxError>,
    {
        let limit = self.max_deploy_bytes;
        let read = match body::check_declared_length(headers, limit) {
            Ok(()) => body::read_limited(body, limit, self.body_timeout).await,
            Err(too_large) => {
                body::discard_rest(Box::pin(body));
                Err(too_large)
            }
        };
        read.map_err(|e| match e {
            BodyError::TooLarge { limit } => {
                self.control.count_deployment(DeployResult::Invalid);
                let mut reply = ops::json_error(
                    413,
                    &format!("component is larger than --max-deploy-bytes ({limit} bytes)"),
                );
                BodyError::TooLarge { limit }.add_headers(reply.headers_mut());
                reply
            }
            e => e.response(),
        })
    }

    fn list(&self, reveal: bool) -> Reply {
        let functions: Vec<_> = self
            .control
            .all_routes()
            .iter()
            .map(|routes| described(routes, reveal))
            .collect();
        json(200, &serde_json::json!({ "functions": functions }))
    }

    /// `name`'s kept versions, oldest first, each marked current, canary or kept.
    fn versions(&self, name: &FunctionName, reveal: bool) -> Reply {
        let manifest = match self.control.versions(name) {
            Ok(Some(manifest)) => manifest,
            Ok(None) => return ops::json_error(404, &format!("no function named {name:?}")),
            Err(e) => return ops::json_error(500, &format!("reading the store: {e}")),
        };
        let canary = manifest.canary.as_ref();
        let versions: Vec<_> = manifest
            .versions
            .iter()
            .map(|r| {
                let state = if r.version == manifest.current {
                    "current"
                } else if canary.is_some_and(|c| c.version == r.version) {
                    "canary"
                } else {
                    "kept"
                };
                serde_json::json!({
                    "version": r.version,
                    "state": state,
                    "digest": r.digest,
                    "size": r.size,
                    "deployed_at": r.deployed_at,
                    "settings": match reveal {
                        true => serde_json::json!(r.settings),
                        false => crate::function::hide_env(&r.settings),
                    },
                })
            })
            .collect();
        json(
            200,
            &serde_json::json!({
                "name": name,
                "current": manifest.current,
                "canary": canary,
                "versions": versions,
            }),
        )
    }

    async fn rollback(&self, name: FunctionName, query: Option<&str>) -> Reply {
        let mut to = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match (&*key, value.parse::<u64>()) {
                ("version", Ok(v)) => to = Some(v),
                ("version", Err(_)) => {
                    return ops::json_error(
                        400,
                        &format!("version={value:?} is not a version number"),
                    );
                }
                _ => return ops::json_error(400, &format!("unknown parameter {key:?} (version)")),
            }
        }
        let control = self.control.clone();
        let target = name.clone();
        let result = tokio::task::spawn_blocking(move || control.rollback(&target, to)).await;
        self.versions_changed(&name, result, DeployResult::RolledBack)
    }

    async fn promote(&self, name: FunctionName) -> Reply {
        let control = self.control.clone();
        let target = name.clone();
        let result = tokio::task::spawn_blocking(move || control.promote(&target)).await;
        self.versions_changed(&name, result, DeployResult::Promoted)
    }

    /// The answer to a rollback or a promote: the function's versions now, or why
    /// nothing changed.
    fn versions_changed(
        &self,
        name: &FunctionName,
        result: Result<Result<crate::store::Manifest, VersionError>, tokio::task::JoinError>,
        done: DeployResult,
    ) -> Reply {
        match result {
            Ok(Ok(_)) => {
                self.control.count_deployment(done);
                self.versions(name, true)
            }
            Ok(Err(e)) => {
                let status = e.status();
                self.control.count_deployment(match status {
                    404 => DeployResult::NotFound,
                    500 => DeployResult::Failed,
                    _ => DeployResult::Invalid,
                });
                tracing::info!(function = %name, "{} refused: {e}", done.label());
                ops::json_error(status, &e.to_string())
            }
            Err(e) => {
                self.control.count_deployment(DeployResult::Failed);
                ops::json_error(500, &format!("{} of {name:?} failed: {e}", done.label()))
            }
        }
    }

    /// `name`'s kept log lines, oldest first: those after `after` (a line's `seq`) and,
    /// with `since` (`5m`, `30s`), no older than that; at most 1,000 a call, `next` is
    /// the `after` for the next call (what `runtime logs --follow` polls with).
    fn logs(&self, name: &FunctionName, query: Option<&str>) -> Reply {
        if self.control.function(name).is_none() {
            return ops::json_error(404, &format!("no function {name:?}"));
        }
        let (mut after, mut since_ms) = (0u64, 0u64);
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "after" => match value.parse() {
                    Ok(n) => after = n,
                    Err(_) => {
                        return ops::json_error(
                            400,
                            &format!("after={value:?} is not a line number"),
                        );
                    }
                },
                "since" => match service_ops::positive_duration(&value) {
                    Ok(d) => {
                        let now = std::time::SystemTime::now()
                            .checked_sub(d)
                            .unwrap_or(std::time::UNIX_EPOCH);
                        since_ms = now
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |t| t.as_millis() as u64);
                    }
                    Err(e) => return ops::json_error(400, &format!("since: {e}")),
                },
                _ => {
                    return ops::json_error(
                        400,
                        &format!("unknown parameter {key:?} (after, since)"),
                    );
                }
            }
        }
        let lines = crate::logs::global().read(name, after, since_ms, 1000);
        let next = lines.last().map_or(after, |l| l.seq);
        json(200, &serde_json::json!({ "lines": lines, "next": next }))
    }

    fn describe(&self, name: &FunctionName, reveal: bool) -> Reply {
        match self.control.routes(name) {
            Some(routes) => json(200, &described(&routes, reveal)),
            None => ops::json_error(404, &format!("no function named {name:?}")),
        }
    }

    async fn delete(&self, name: FunctionName) -> Reply {
        let control = self.control.clone();
        let target = name.clone();
        match tokio::task::spawn_blocking(move || control.remove(&target)).await {
            Ok(Ok(true)) => {
                self.control.count_deployment(DeployResult::Deleted);
                tracing::info!(function = %name, "deleted");
                Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .expect("static response")
            }
            Ok(Ok(false)) => {
                self.control.count_deployment(DeployResult::NotFound);
                ops::json_error(404, &format!("no function named {name:?}"))
            }
            Ok(Err(e)) => {
                self.control.count_deployment(DeployResult::Failed);
                ops::json_error(500, &format!("removing {name:?} from the store: {e}"))
            }
            Err(e) => ops::json_error(500, &format!("removing {name:?}: {e}")),
        }
    }

    /// With a token: whether the request carries it (`Authorization: Bearer TOKEN`, the
    /// scheme in any case). Without one: whether the request names this machine as its
    /// host, so that a web page in a local browser cannot reach the API through DNS
    /// rebinding.
    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return names_this_machine(headers);
        };
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        tokens_match(given, token.expose())
    }

    async fn deploy(&self, name: FunctionName, query: Option<&str>, wasm: Bytes) -> Reply {
        let (settings, placement) = match deploy_from_query(query) {
            Ok(found) => found,
            Err(message) => {
                self.control.count_deployment(DeployResult::Invalid);
                return ops::json_error(400, &message);
            }
        };
        // Compiling takes CPU seconds: keep it off the async workers.
        let control = self.control.clone();
        let target = name.clone();
        let result =
            tokio::task::spawn_blocking(move || control.deploy(target, &wasm, settings, placement))
                .await;
        match result {
            Ok(Ok((deployed, function))) => {
                self.control.count_deployment(deployed.result());
                tracing::info!(
                    function = %name,
                    version = function.record.version,
                    result = deployed.result().label(),
                    "deployed"
                );
                let status = match deployed {
                    crate::control::Deployed::Created => 201,
                    crate::control::Deployed::Replaced | crate::control::Deployed::Canary => 200,
                };
                let mut value = function.describe(true);
                if deployed == crate::control::Deployed::Canary {
                    value["canary"] = self
                        .control
                        .routes(&name)
                        .map_or(serde_json::Value::Null, |routes| canary(&routes));
                }
                json(status, &value)
            }
            Ok(Err(e @ DeployError::Refused(_))) => {
                self.control.count_deployment(DeployResult::Invalid);
                tracing::info!(function = %name, "deploy refused: {e}");
                ops::json_error(409, &e.to_string())
            }
            Ok(Err(DeployError::Invalid(e))) => {
                self.control.count_deployment(DeployResult::Invalid);
                tracing::info!(function = %name, "deploy refused: {e}");
                ops::json_error(e.status(), &e.to_string())
            }
            Ok(Err(e @ DeployError::Store(_))) => {
                self.control.count_deployment(DeployResult::Failed);
                tracing::error!(function = %name, "deploy failed: {e}");
                ops::json_error(500, &e.to_string())
            }
            Err(e) => {
                self.control.count_deployment(DeployResult::Failed);
                ops::json_error(500, &format!("deploy of {name:?} failed: {e}"))
            }
        }
    }
}

/// What a call asks for, from its method and path.
#[derive(Debug, PartialEq)]
enum Route {
    List,
    Describe(FunctionName),
    /// `GET /functions/{name}/versions`.
    Versions(FunctionName),
    /// `POST /functions/{name}/rollback`.
    Rollback(FunctionName),
    /// `POST /functions/{name}/promote`.
    Promote(FunctionName),
    /// `GET /functions/{name}/logs`: the function's kept log lines.
    Logs(FunctionName),
    Deploy(FunctionName),
    Delete(FunctionName),
}

impl Route {
    /// The route, or the status and message for a path, name or method the API does not
    /// have (404, 400, 405).
    fn of(method: &Method, path: &str) -> Result<Route, (u16, String)> {
        if let Some((name, action)) = path
            .strip_prefix("/functions/")
            .and_then(|rest| rest.split_once('/'))
        {
            let name = FunctionName::parse(name).map_err(|e| (400, e.to_string()))?;
            let route = match (action, method) {
                ("logs", &Method::GET) => Route::Logs,
                ("versions", &Method::GET) => Route::Versions,
                ("rollback", &Method::POST) => Route::Rollback,
                ("promote", &Method::POST) => Route::Promote,
                ("logs" | "versions", _) => {
                    return Err((405, format!("/functions/{{name}}/{action} supports GET")));
                }
                ("rollback" | "promote", _) => {
                    return Err((405, format!("/functions/{{name}}/{action} supports POST")));
                }
                _ => {
                    return Err((
                        404,
                        format!(
                            "no endpoint /functions/{{name}}/{action}; there are logs, versions, \
                             rollback and promote"
                        ),
                    ));
                }
            };
            return Ok(route(name));
        }
        let name = match path.strip_prefix("/functions") {
            Some("" | "/") => None,
            Some(rest) if rest.starts_with('/') => {
                Some(FunctionName::parse(&rest[1..]).map_err(|e| (400, e.to_string()))?)
            }
            _ => {
                return Err((
                    404,
                    format!("no ops endpoint {path:?}; try /functions, /metrics or /healthz"),
                ));
            }
        };
        match (method, name) {
            (&Method::GET, None) => Ok(Route::List),
            (&Method::GET, Some(name)) => Ok(Route::Describe(name)),
            (&Method::PUT, Some(name)) => Ok(Route::Deploy(name)),
            (&Method::DELETE, Some(name)) => Ok(Route::Delete(name)),
            (_, None) => Err((405, "/functions supports GET".into())),
            (_, Some(_)) => Err((405, "/functions/{name} supports GET, PUT and DELETE".into())),
        }
    }

    /// Whether the call changes what is deployed (and so needs the token).
    fn changes(&self) -> bool {
        matches!(
            self,
            Route::Deploy(_) | Route::Delete(_) | Route::Rollback(_) | Route::Promote(_)
        )
    }

    /// Whether the call needs the token: changes, and reading logs (a function may log
    /// what it was sent).
    fn needs_token(&self) -> bool {
        self.changes() || matches!(self, Route::Logs(_))
    }
}

impl service_ops::start::Ops for Api {
    fn handle(
        &self,
        request: Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Reply> + Send {
        self.answer(request)
    }

    fn ready(&self) -> Result<(), String> {
        self.control.ready()
    }
}

/// An answer given before the request's body was read: the rest of the body is read
/// and thrown away for a moment, then the connection closes.
fn early<B>(body: B, mut reply: Reply) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<service_ops::BoxError>,
{
    if !body.is_end_stream() {
        body::discard_rest(Box::pin(body));
        reply.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    reply
}

/// What the API shows of a name: its current version, with its canary.
fn described(routes: &Routes, reveal: bool) -> serde_json::Value {
    let mut value = routes.current.describe(reveal);
    value["canary"] = canary(routes);
    value
}

/// A name's canary as the API shows it (with what it answered in this runtime), or null.
fn canary(routes: &Routes) -> serde_json::Value {
    let Some(canary) = &routes.canary else {
        return serde_json::Value::Null;
    };
    let (requests, failures) = canary.watch.tally();
    serde_json::json!({
        "version": canary.function.record.version,
        "digest": canary.function.record.digest,
        "percent": canary.percent,
        "max_error_rate": canary.watch.max_error_rate,
        "requests": requests,
        "failures": failures,
    })
}

fn json(status: u16, value: &serde_json::Value) -> Reply {
    ops::response(
        status,
        "application/json",
        serde_json::to_vec(value).expect("JSON values serialise"),
    )
}

/// Whether `Host` is `localhost`, `127.0.0.1` or `[::1]` (any port).
fn names_this_machine(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::limits::split_host_port)
        .is_some_and(|(name, _)| matches!(name, "localhost" | "127.0.0.1" | "[::1]"))
}

/// Compares a given token with the configured one in time that depends on neither: both
/// are hashed first, so not even their lengths can be timed.
fn tokens_match(given: &str, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(token.as_bytes()))
        .into()
}

/// The PUT query string that carries `settings`: what [`settings_from_query`] reads back
/// as the same settings. The CLI builds its deploys with it, so the two cannot drift.
pub fn settings_to_query(settings: &Settings) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let numbers = [
        (
            "memory_mib",
            settings.memory_mib.map(|v| v.get().to_string()),
        ),
        ("timeout_secs", settings.timeout_secs.map(|v| v.to_string())),
        (
            "max_concurrency",
            settings.max_concurrency.map(|v| v.to_string()),
        ),
        (
            "max_body_bytes",
            settings.max_body_bytes.map(|v| v.to_string()),
        ),
    ];
    for (key, value) in numbers {
        if let Some(value) = value {
            query.append_pair(key, &value);
        }
    }
    for (key, value) in &settings.env {
        query.append_pair("env", &format!("{key}={value}"));
    }
    for host in &settings.allowed_outbound_hosts {
        query.append_pair("allow", host);
    }
    query.finish()
}

/// The PUT query string that starts a canary of `percent`, ending itself past
/// `max_error_rate`: what [`deploy_from_query`] reads back.
pub fn canary_to_query(percent: u8, max_error_rate: Option<f64>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("canary", &percent.to_string());
    if let Some(rate) = max_error_rate {
        query.append_pair("canary_max_error_rate", &rate.to_string());
    }
    query.finish()
}

/// Settings and placement from the PUT query string: `canary` and
/// `canary_max_error_rate` place the version, the rest are [`settings_from_query`]'s.
pub fn deploy_from_query(query: Option<&str>) -> Result<(Settings, Placement), String> {
    let (mut percent, mut max_error_rate) = (None, None);
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "canary" => percent = Some(canary_percent(&value)?),
            "canary_max_error_rate" => max_error_rate = Some(error_rate(&value)?),
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let rest = rest.finish();
    let settings = settings_from_query(Some(&rest))?;
    let placement = match (percent, max_error_rate) {
        (Some(percent), max_error_rate) => Placement::Canary {
            percent,
            max_error_rate,
        },
        (None, Some(_)) => {
            return Err(
                "canary_max_error_rate applies to a canary: give canary=PERCENT too".into(),
            );
        }
        (None, None) => Placement::Current,
    };
    Ok((settings, placement))
}

/// A canary's share: a whole percent, 1 to 99.
pub fn canary_percent(text: &str) -> Result<u8, String> {
    text.trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=99).contains(p))
        .ok_or_else(|| {
            format!(
                "a canary's share is a whole percent from 1 to 99 (of its requests), got {text:?}"
            )
        })
}

/// An error rate: a fraction from 0 to 1 (`0.05`), or a percent (`5%`).
pub fn error_rate(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let rate = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.parse::<f64>(),
    };
    rate.ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| {
            format!(
                "an error rate is a fraction from 0 to 1 (0.05) or a percent (5%), got {text:?}"
            )
        })
}

/// Settings from the PUT query string. Unknown parameters are an error, not ignored: a
/// typo must not deploy a function without the limit its author asked for.
pub fn settings_from_query(query: Option<&str>) -> Result<Settings, String> {
    let mut settings = Settings::default();
    fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        value
            .parse()
            .map_err(|e| format!("query parameter `{key}` must be a number, got {value:?}: {e}"))
    }
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "memory_mib" => settings.memory_mib = Some(number(&key, &value)?),
            "timeout_secs" => settings.timeout_secs = Some(number(&key, &value)?),
            "max_concurrency" => settings.max_concurrency = Some(number(&key, &value)?),
            "max_body_bytes" => settings.max_body_bytes = Some(number(&key, &value)?),
            "env" => {
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    format!("query parameter `env` must be KEY=VALUE, got {value:?}")
                })?;
                if k.is_empty() {
                    return Err("query parameter `env` has an empty KEY".into());
                }
                settings.env.insert(k.to_string(), v.to_string());
            }
            "allow" => settings.allowed_outbound_hosts.push(value.into_owned()),
            other => {
                return Err(format!(
                    "unknown query parameter `{other}`: use memory_mib, timeout_secs, \
                     max_concurrency, max_body_bytes, env=KEY=VALUE, allow=HOST[:PORT], \
                     canary=PERCENT or canary_max_error_rate=RATE"
                ));
            }
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_come_from_the_head_alone() {
        let name = |n: &str| FunctionName::parse(n).unwrap();
        let route =
            |method: Method, path: &str| Route::of(&method, path).map_err(|(status, _)| status);
        assert_eq!(route(Method::GET, "/functions"), Ok(Route::List));
        assert_eq!(route(Method::GET, "/functions/"), Ok(Route::List));
        assert_eq!(
            route(Method::GET, "/functions/a"),
            Ok(Route::Describe(name("a")))
        );
        assert_eq!(
            route(Method::PUT, "/functions/a"),
            Ok(Route::Deploy(name("a")))
        );
        assert_eq!(
            route(Method::DELETE, "/functions/a"),
            Ok(Route::Delete(name("a")))
        );
        assert!(route(Method::PUT, "/functions/a").unwrap().changes());
        assert!(!route(Method::GET, "/functions/a").unwrap().changes());
        // A bad name is refused for every method, before the method is looked at.
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::POST] {
            assert_eq!(route(method, "/functions/A"), Err(400));
        }
        assert_eq!(route(Method::GET, "/functions/a/b"), Err(404));
        assert_eq!(route(Method::GET, "/functions/A/logs"), Err(400));
        assert_eq!(
            route(Method::GET, "/functions/a/versions"),
            Ok(Route::Versions(name("a")))
        );
        assert_eq!(
            route(Method::POST, "/functions/a/rollback"),
            Ok(Route::Rollback(name("a")))
        );
        assert_eq!(
            route(Method::POST, "/functions/a/promote"),
            Ok(Route::Promote(name("a")))
        );
        assert!(
            route(Method::POST, "/functions/a/rollback")
                .unwrap()
                .changes()
        );
        assert_eq!(route(Method::GET, "/functions/a/rollback"), Err(405));
        assert_eq!(route(Method::POST, "/functions/a/versions"), Err(405));
        assert_eq!(route(Method::GET, "/functionsx"), Err(404));
        assert_eq!(route(Method::GET, "/other"), Err(404));
        assert_eq!(route(Method::PUT, "/functions"), Err(405));
        assert_eq!(route(Method::POST, "/functions/a"), Err(405));
    }

    #[test]
    fn query_settings() {
        let s = settings_from_query(Some(
            "memory_mib=64&env=A%3D1&env=B=x=y&allow=example.com:443",
        ))
        .unwrap();
        assert_eq!(s.memory_mib, Some(service_ops::Mib::new(64)));
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.env["B"], "x=y");
        assert_eq!(s.allowed_outbound_hosts, ["example.com:443"]);
        assert!(
            settings_from_query(Some("memory_mb=64"))
                .unwrap_err()
                .contains("memory_mb")
        );
        assert!(
            settings_from_query(Some("timeout_secs=soon"))
                .unwrap_err()
                .contains("timeout_secs")
        );
        assert!(settings_from_query(Some("env=novalue")).is_err());
        // Would once wrap to a 1 MiB limit when turned into bytes.
        let e = settings_from_query(Some("memory_mib=17592186044417")).unwrap_err();
        assert!(e.contains("memory_mib"), "{e}");
        assert!(settings_from_query(Some("max_concurrency=0")).is_err());
        assert_eq!(settings_from_query(None).unwrap(), Settings::default());
    }

    #[test]
    fn canary_placement_from_the_query() {
        let (settings, placement) =
            deploy_from_query(Some("memory_mib=8&canary=10&canary_max_error_rate=5%25")).unwrap();
        assert_eq!(settings.memory_mib, Some(service_ops::Mib::new(8)));
        assert_eq!(
            placement,
            Placement::Canary {
                percent: 10,
                max_error_rate: Some(0.05)
            }
        );
        let query = canary_to_query(25, Some(0.1));
        assert_eq!(
            deploy_from_query(Some(&query)).unwrap().1,
            Placement::Canary {
                percent: 25,
                max_error_rate: Some(0.1)
            }
        );
        assert_eq!(deploy_from_query(None).unwrap().1, Placement::Current);
        for bad in [
            "canary=0",
            "canary=100",
            "canary=ten",
            "canary=-1",
            "canary=12.5",
        ] {
            let e = deploy_from_query(Some(bad)).unwrap_err();
            assert!(e.contains("1 to 99"), "{bad}: {e}");
        }
        for bad in [
            "canary=5&canary_max_error_rate=2",
            "canary=5&canary_max_error_rate=x",
        ] {
            let e = deploy_from_query(Some(bad)).unwrap_err();
            assert!(e.contains("error rate"), "{bad}: {e}");
        }
        let e = deploy_from_query(Some("canary_max_error_rate=0.1")).unwrap_err();
        assert!(e.contains("canary=PERCENT"), "{e}");
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("secret", "secret"));
        assert!(!tokens_match("secret", "secreT"));
        assert!(!tokens_match("secret", "secrets"));
        assert!(!tokens_match("", "secret"));
    }
}
