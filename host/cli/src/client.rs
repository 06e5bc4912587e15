//! `--server URL`: the CLI as a client of `interstice serve`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tungstenite::client::IntoClientRequest;

/// A server and the tokens to show it: an identity token (`--token`),
/// else the admin token.
pub struct Client {
    base: String,
    token_file: Option<PathBuf>,
    identity_token: Option<String>,
    agent: ureq::Agent,
}

/// An answer: status and body.
struct Answer {
    status: u16,
    body: String,
    next_after: Option<String>,
}

impl Client {
    pub fn new(
        server: &str,
        token_file: Option<PathBuf>,
        identity_token: Option<String>,
    ) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Client {
            base: server.trim_end_matches('/').to_string(),
            token_file,
            identity_token: identity_token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            agent,
        }
    }

    /// The bearer token for routes that need one: `--token`, else the
    /// admin token.
    fn bearer(&self) -> Result<String> {
        match &self.identity_token {
            Some(token) => Ok(token.clone()),
            None => self.token(),
        }
    }

    /// The bearer token, if there is any, for routes that take one.
    fn bearer_if_any(&self) -> Option<String> {
        self.bearer().ok()
    }

    /// The admin token: `INTERSTICE_ADMIN_TOKEN`, else `--token-file`.
    fn token(&self) -> Result<String> {
        if let Ok(token) = std::env::var(interstice_server::auth::TOKEN_ENV)
            && !token.trim().is_empty()
        {
            return Ok(token.trim().to_string());
        }
        let Some(path) = &self.token_file else {
            bail!(
                "this needs the server's admin token: set {} or pass --token-file (the server keeps it in DATA_DIR/{})",
                interstice_server::auth::TOKEN_ENV,
                interstice_server::auth::TOKEN_FILE
            );
        };
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        Ok(token.trim().to_string())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer> {
        let mut response = response.with_context(|| format!("contacting {}", self.base))?;
        let status = response.status().as_u16();
        let next_after = response
            .headers()
            .get("x-interstice-next-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .context("reading the answer")?;
        Ok(Answer {
            status,
            body,
            next_after,
        })
    }

    /// The answer's body on success; the server's message as the error
    /// otherwise.
    fn expect_ok(answer: Answer) -> Result<String> {
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let message = serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(answer.body);
        Err(anyhow!("server answered {}: {message}", answer.status))
    }

    pub fn publish(&self, name: &str, wasm: &Path, clear: bool, owner: Option<&str>) -> Result<()> {
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let token = self.bearer()?;
        let mut request = self.agent.put(&self.url(&format!("/v1/modules/{name}")));
        if clear {
            request = request.query("clear", "true");
        }
        if let Some(owner) = owner {
            request = request.query("owner", owner);
        }
        let response = request
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/wasm")
            .send(&bytes[..]);
        let body = Self::expect_ok(self.finish(response)?)?;
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        println!(
            "published module `{name}` (version {}): {} tables, {} reducers",
            answer["version"], answer["tables"], answer["reducers"]
        );
        Ok(())
    }

    pub fn call(&self, module: &str, reducer: &str, args: &str) -> Result<()> {
        let token = self.bearer()?;
        let response = self
            .agent
            .post(&self.url(&format!("/v1/modules/{module}/reducers/{reducer}")))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"))
            .send(args.as_bytes());
        let body = Self::expect_ok(self.finish(response)?)?;
        println!("{}", body.trim());
        Ok(())
    }

    /// Runs one SQL query; the server's answer.
    pub fn sql(&self, module: &str, text: &str) -> Result<serde_json::Value> {
        let mut request = self
            .agent
            .post(&self.url(&format!("/v1/modules/{module}/sql")))
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(token) = self.bearer_if_any() {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let body = Self::expect_ok(self.finish(request.send(text.as_bytes()))?)?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Prints every row, page after page, as JSON lines.
    pub fn query(&self, module: &str, table: &str, filter: Option<&str>) -> Result<()> {
        let mut after: Option<String> = None;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        loop {
            let mut request = self
                .agent
                .get(&self.url(&format!("/v1/modules/{module}/tables/{table}")))
                .query("limit", "10000");
            if let Some(token) = self.bearer_if_any() {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            if let Some((column, value)) = filter.and_then(|f| f.split_once('=')) {
                request = request.query(column, value);
            }
            if let Some(after) = &after {
                request = request.query("after", after);
            }
            let answer = self.finish(request.call())?;
            let next = answer.next_after.clone();
            let body = Self::expect_ok(answer)?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&body)?;
            for row in rows {
                writeln!(out, "{row}")?;
            }
            match next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    fn websocket(
        &self,
        path_and_query: &str,
        admin: bool,
    ) -> Result<tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>>
    {
        let url = self.url(path_and_query);
        let ws_url = if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            url
        };
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .with_context(|| format!("bad server address {ws_url}"))?;
        let token = if admin {
            Some(self.token()?)
        } else {
            self.bearer_if_any()
        };
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .context("the token is not a valid header value")?;
            request.headers_mut().insert("Authorization", value);
        }
        match tungstenite::connect(request) {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let refused = Self::expect_ok(Answer {
                    status,
                    body,
                    next_after: None,
                });
                Err(refused.err().unwrap_or_else(|| {
                    anyhow!("the server refused the WebSocket upgrade ({status})")
                }))
            }
            Err(e) => Err(anyhow!(e).context(format!("connecting to {ws_url}"))),
        }
    }

    /// Prints every message of a WebSocket stream as a JSON line, until the
    /// server closes it or `max` messages were printed. An error when the
    /// server closed it for a reason other than shutdown.
    fn stream(
        &self,
        path_and_query: &str,
        admin: bool,
        max: Option<u64>,
        show: impl Fn(&serde_json::Value) -> String,
    ) -> Result<()> {
        let mut socket = self.websocket(path_and_query, admin)?;
        let mut printed = 0u64;
        let stdout = std::io::stdout();
        loop {
            if max.is_some_and(|m| printed >= m) {
                let _ = socket.close(None);
                return Ok(());
            }
            let message = match socket.read() {
                Ok(m) => m,
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(anyhow!(e).context("reading from the server")),
            };
            match message {
                tungstenite::Message::Text(text) => {
                    let value: serde_json::Value =
                        serde_json::from_str(&text).context("a message that is not JSON")?;
                    if value["type"] == "closed" {
                        bail!(
                            "the server ended the stream: {}",
                            value["reason"].as_str().unwrap_or("")
                        );
                    }
                    let mut out = stdout.lock();
                    writeln!(out, "{}", show(&value))?;
                    out.flush()?;
                    printed += 1;
                }
                tungstenite::Message::Close(_) => return Ok(()),
                _ => {}
            }
        }
    }

    pub fn subscribe(
        &self,
        module: &str,
        table: &str,
        filter: Option<&str>,
        max: Option<u64>,
    ) -> Result<()> {
        let mut path = format!("/v1/modules/{module}/tables/{table}/subscribe");
        if let Some((column, value)) = filter.and_then(|f| f.split_once('=')) {
            path.push_str(&format!(
                "?{}={}",
                percent_encode(column),
                percent_encode(value)
            ));
        }
        self.stream(&path, false, max, |v| v.to_string())
    }

    pub fn logs(&self, module: &str, max: Option<u64>) -> Result<()> {
        self.stream(
            &format!("/v1/modules/{module}/logs"),
            true,
            max,
            |v| match v["type"].as_str() {
                Some("log") => format!(
                    "tx {} {}.{} [{}]{} {}",
                    v["tx_id"],
                    v["module"].as_str().unwrap_or(""),
                    v["reducer"].as_str().unwrap_or(""),
                    v["level"].as_str().unwrap_or(""),
                    if v["committed"] == true {
                        ""
                    } else {
                        " (rolled back)"
                    },
                    v["message"].as_str().unwrap_or("")
                ),
                _ => v.to_string(),
            },
        )
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
