//! The server's settings: defaults, then `interstice.toml` (if given), then
//! command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default address: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:3000";

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body, in bytes, except module uploads.
    pub body_limit_bytes: usize,
    /// Largest module upload (`PUT /v1/modules/{module}`), in bytes.
    pub module_limit_bytes: usize,
    /// Committed transactions a subscriber may fall behind before it is
    /// disconnected.
    pub subscription_buffer: usize,
    /// Seconds a subscriber may take to accept one message before it is
    /// disconnected.
    pub send_timeout_secs: u64,
    /// Rows in a page of `GET .../tables/{table}` when `limit` is not given,
    /// and the most `limit` may ask for.
    pub page_default: usize,
    pub page_max: usize,
    /// Whether identities other than the operator may publish modules
    /// under new names (they become the owners).
    pub anyone_may_publish: bool,
    /// What one SQL query (`POST .../sql`) may cost: rows read, joined or
    /// answered, and milliseconds. The database is held while a query
    /// runs, so `sql_max_millis` is also the longest a reducer call waits
    /// behind one.
    pub sql_max_rows: u64,
    pub sql_max_millis: u64,
    /// Distinct live queries (SQL subscriptions) the server follows at
    /// once; subscribers to the same text share one.
    pub sql_live_max: usize,
    /// A second address that serves only `/healthz` and `/metrics`, with
    /// connections of its own (at most 64): monitoring gets through
    /// however the main address is flooded.
    pub health_listen: Option<String>,
    /// Connections served at once, WebSocket sessions included; past it a
    /// connection gets one answer (`/healthz` and `/metrics` as usual,
    /// anything else 503 `overloaded`) and is closed.
    pub max_connections: usize,
    /// Seconds a request head may take to arrive; also the longest a
    /// kept-alive connection may sit idle between requests.
    pub header_timeout_secs: u64,
    /// Seconds a request body may take to arrive, whole, after its head
    /// (408 past it).
    pub body_timeout_secs: u64,
    /// Reducer calls over HTTP admitted and not yet answered, server-wide;
    /// past it a call is refused at once with 503 `overloaded` and
    /// `Retry-After`.
    pub calls_queued_max: usize,
    /// Table reads and SQL statements over HTTP admitted and not yet
    /// answered, server-wide; past it 503 `overloaded` with `Retry-After`.
    pub reads_queued_max: usize,
    /// Calls a client session (`GET .../connect`) may have in flight; past
    /// it, the session reads nothing more from its socket until one is
    /// answered.
    pub session_calls_max: usize,
    /// Subscriptions one client session may hold at once.
    pub session_subscriptions_max: usize,
    /// Whether a client that connects a session without a token gets a
    /// new identity (and its token) instead of a 401.
    pub anonymous_sessions: bool,
    /// A directory of static files (a web app) served at `/` beside the
    /// API: `index.html` for a directory; paths under `/v1/` are the
    /// API's alone.
    pub static_dir: Option<PathBuf>,
    /// Outside OpenID Connect issuers whose tokens are accepted
    /// (`[[issuer]]` tables).
    #[serde(rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

/// An outside OpenID Connect issuer (docs/security.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// The `aud` values accepted: a token must name one of them.
    pub audience: Vec<String>,
    /// Its JSON Web Key Set as a file, read once at start, for servers
    /// that cannot reach the issuer. Exactly one of `jwks_file` and
    /// `jwks_url` is given.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Its JSON Web Key Set's URL (`https://`, or `http://` on a loopback
    /// address): fetched at start, every `jwks_refresh_secs`, and again,
    /// at most once a minute, when a token names a key it does not hold.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Seconds between fetches of `jwks_url`.
    #[serde(default = "jwks_refresh_default")]
    pub jwks_refresh_secs: u64,
    /// The algorithms accepted from it, e.g. `["RS256"]`. Shared-secret
    /// (HS*) algorithms are refused.
    pub algorithms: Vec<String>,
}

/// An hour: issuers announce a new key well before they sign with it, and
/// a token naming an unknown key refetches sooner.
fn jwks_refresh_default() -> u64 {
    3600
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: LISTEN_DEFAULT.to_string(),
            body_limit_bytes: 1 << 20,
            module_limit_bytes: interstice_runtime::limits::MODULE_BYTES_MAX,
            subscription_buffer: 4096,
            send_timeout_secs: 10,
            page_default: 1000,
            page_max: 10_000,
            anyone_may_publish: false,
            sql_max_rows: 1_000_000,
            sql_max_millis: 250,
            sql_live_max: 1000,
            health_listen: None,
            max_connections: 10_000,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            calls_queued_max: 4096,
            reads_queued_max: 256,
            session_calls_max: 128,
            session_subscriptions_max: 64,
            anonymous_sessions: true,
            static_dir: None,
            issuers: Vec::new(),
        }
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {what} must be at least 1")]
    Zero { path: String, what: &'static str },
}

impl ServerConfig {
    /// The budget of one SQL query.
    pub fn sql_budget(&self) -> interstice_runtime::sql::Budget {
        interstice_runtime::sql::Budget {
            rows: self.sql_max_rows,
            time: std::time::Duration::from_millis(self.sql_max_millis),
        }
    }

    /// Reads a TOML file of these settings; missing keys keep their
    /// defaults, unknown keys are refused.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: ServerConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown.clone(),
            source,
        })?;
        for (what, value) in [
            ("subscription_buffer", config.subscription_buffer),
            ("page_default", config.page_default),
            ("page_max", config.page_max),
            ("body_limit_bytes", config.body_limit_bytes),
            ("sql_max_rows", config.sql_max_rows as usize),
            ("sql_max_millis", config.sql_max_millis as usize),
            ("sql_live_max", config.sql_live_max),
            ("max_connections", config.max_connections),
            ("header_timeout_secs", config.header_timeout_secs as usize),
            ("body_timeout_secs", config.body_timeout_secs as usize),
            ("calls_queued_max", config.calls_queued_max),
            ("reads_queued_max", config.reads_queued_max),
            ("session_calls_max", config.session_calls_max),
            (
                "session_subscriptions_max",
                config.session_subscriptions_max,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { path: shown, what });
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interstice.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:8080\"\nsubscription_buffer = 16\n",
        )
        .unwrap();
        let config = ServerConfig::from_file(&path).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080");
        assert_eq!(config.subscription_buffer, 16);
        assert_eq!(config.page_max, ServerConfig::default().page_max);

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let e = ServerConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field `lisen`"), "{e}");
        std::fs::write(&path, "page_max = 0\n").unwrap();
        let e = ServerConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("page_max must be at least 1"), "{e}");
    }
}
