//! The deploy API as a deployer calls it: one place that knows its URLs, its token and
//! its answers, so the tests say what they deploy and what they expect, not how.

use localrun::Service;
use std::time::{Duration, Instant};

/// The deploy API of one running runtime.
#[derive(Clone, Debug)]
pub struct Deployer {
    client: reqwest::Client,
    ops: String,
    /// Sent as `Authorization: Bearer` with every call; `None` sends none.
    token: Option<String>,
}

impl Deployer {
    pub fn new(server: &Service, token: Option<&str>) -> Self {
        Self {
            client: localrun::examples::client(),
            ops: server.url("ops"),
            token: token.map(String::from),
        }
    }

    /// The same API called with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(String::from),
            ..self.clone()
        }
    }

    /// `/functions/NAME` on the runtime's ops listener.
    pub fn url(&self, name: &str) -> String {
        format!("{}/functions/{name}", self.ops)
    }

    fn send(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// PUTs `body` as NAME with `query` (`""`, or `?memory_mib=16&…`) and returns the
    /// answer, whatever it is.
    pub async fn put(
        &self,
        name: &str,
        body: impl Into<reqwest::Body>,
        query: &str,
    ) -> reqwest::Response {
        let url = format!("{}{query}", self.url(name));
        self.send(self.client.put(&url))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"))
    }

    /// PUTs the file at `path` (an artifact) as NAME.
    pub async fn put_file(&self, name: &str, path: &str, query: &str) -> reqwest::Response {
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        self.put(name, wasm, query).await
    }

    /// Deploys the file at `path` as NAME and returns the API's description of it;
    /// anything but 201 (created) or 200 (replaced) fails the test with the answer.
    pub async fn deploy(&self, name: &str, path: &str, query: &str) -> serde_json::Value {
        let response = self.put_file(name, path, query).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status == 201 || status == 200,
            "deploying {name}{query}: {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("deploying {name}: {e}: {text}"))
    }

    /// DELETEs NAME; the status it answered.
    pub async fn delete(&self, name: &str) -> reqwest::StatusCode {
        let url = self.url(name);
        self.send(self.client.delete(&url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {url}: {e}"))
            .status()
    }

    /// GETs NAME's description: status and JSON.
    pub async fn get(&self, name: &str) -> (u16, serde_json::Value) {
        crate::get_json(&self.client, &self.url(name)).await
    }

    /// GETs the list of deployed functions.
    pub async fn list(&self) -> (u16, serde_json::Value) {
        crate::get_json(&self.client, &format!("{}/functions", self.ops)).await
    }

    /// The digest served for NAME, `None` if there is no such function.
    pub async fn digest(&self, name: &str) -> Option<String> {
        match self.get(name).await {
            (200, v) => Some(v["digest"].as_str().unwrap().to_string()),
            (404, _) => None,
            (other, v) => panic!("GET {}: {other}: {v}", self.url(name)),
        }
    }

    /// Polls until NAME runs code from `compiler` (60 s at most).
    pub async fn wait_for_compiler(&self, name: &str, compiler: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self.get(name).await;
            if v["compiler"] == compiler {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never ran {compiler} code: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
