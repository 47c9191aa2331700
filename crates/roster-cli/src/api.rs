//! The management API client the CLI's server commands share (`roster people`, `roster push`,
//! `roster segment`): one server, one API key, and refusals turned into errors that carry the
//! envelope's text, code and every invalid field (management-api.md §2).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// The server a command talks to and the API key it uses.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the running server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "ROSTER_SERVER", value_name = "URL")]
    pub server: String,
    /// A management API key with the scope the command needs.
    #[arg(long, env = "ROSTER_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: String,
}

/// The management API of one server, with one key.
pub struct Api {
    base: String,
    auth: String,
    http: reqwest::Client,
}

impl Api {
    /// A client for `server`; the URL must be http(s).
    pub fn new(server: &ServerArgs) -> anyhow::Result<Api> {
        let base = server.server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server must be an http:// or https:// URL, got {:?}", server.server);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api {
            base,
            auth: format!("Bearer {}", server.api_key.trim()),
            http,
        })
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json("GET", path, None).await
    }

    /// `GET path?query` as JSON, the values percent-encoded.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let query: String = query
            .iter()
            .map(|(k, v)| format!("{k}={}", query_value(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.get(&format!("{path}?{query}")).await
    }

    /// A request whose answer is JSON.
    pub async fn json(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the server answered {path} with something that is not JSON"))
    }

    /// One request; the answer's bytes, or an error with the server's text, code and invalid
    /// fields.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .http
            .request(method, &url)
            .header(reqwest::header::AUTHORIZATION, &self.auth);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("the server at {} did not answer completely", self.base))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let envelope: Option<Value> = serde_json::from_slice(&bytes).ok();
        let exception = envelope
            .as_ref()
            .map(|e| &e["requestError"]["serviceException"])
            .filter(|e| e.is_object());
        match exception {
            Some(e) => {
                let mut message = format!(
                    "{} ({}, HTTP {})",
                    e["text"].as_str().unwrap_or("refused"),
                    e["messageId"].as_str().unwrap_or("?"),
                    status.as_u16()
                );
                // One line, so that a script can read the error from the last line of stderr.
                if let Some(fields) = e["validationErrors"].as_object() {
                    let fields: Vec<String> = fields
                        .iter()
                        .map(|(path, problems)| {
                            let problems: Vec<&str> = problems
                                .as_array()
                                .map(|a| a.iter().filter_map(Value::as_str).collect())
                                .unwrap_or_default();
                            format!("{path}: {}", problems.join("; "))
                        })
                        .collect();
                    message.push_str(&format!(" [{}]", fields.join(", ")));
                }
                bail!(message)
            }
            None => bail!("the server answered HTTP {}", status.as_u16()),
        }
    }
}

/// A query value, percent-encoded outside RFC 3986 unreserved characters.
pub fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JSON argument typed on the command line (`--filter '{"tags":"vip"}'`), with a clear error.
pub fn json_arg(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON: {text}"))
}
