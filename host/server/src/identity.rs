//! Identities and tokens (docs/security.md): the server's own signing key,
//! the tokens it issues, and the verification of every bearer token a
//! request carries, its own or an outside OpenID Connect issuer's.
//!
//! The server signs with Ed25519 (JWT `alg: EdDSA`): a 32-byte key that
//! cannot be weak by a bad parameter choice, deterministic signatures (no
//! nonce to get wrong), and fast verification. Each issuer is checked only
//! against the algorithms configured for it; an asymmetric key is never
//! used as an HMAC secret (jsonwebtoken refuses a key of another algorithm
//! family), and `alg: none` is not an algorithm jsonwebtoken knows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use interstice_runtime::{Caller, Identity, TokenClaims};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::IssuerConfig;

/// The file, in the data directory, holding the server's signing key
/// (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "identity-key.pem";

/// The `iss` of the tokens this server issues.
pub const OWN_ISSUER: &str = "urn:interstice:server";

/// Longest bearer token read; longer ones are refused unread.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// What every refusal of a token says: nothing of why.
pub const INVALID_TOKEN: &str = "invalid token";

/// Least time between two fetches of an issuer's JWK set that tokens
/// naming unknown keys cause: a stream of made-up `kid`s costs the issuer
/// one request a minute.
pub const JWKS_REFETCH_MIN: Duration = Duration::from_secs(60);

/// Longest wait for an issuer's JWK set.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JWK set read.
pub const JWKS_BYTES_MAX: u64 = 1 << 20;

/// Why tokens could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("no randomness for a key: {0}")]
    Random(String),
    #[error("issuer `{issuer}`: {reason}")]
    Issuer { issuer: String, reason: String },
}

/// The claims of a token this server issues.
#[derive(Serialize, Deserialize)]
struct OwnClaims {
    iss: String,
    sub: String,
    iat: u64,
}

/// The claims read from any token once its signature verified.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Audience,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

/// Only `iss`, read before the signature is checked, to choose the keys.
#[derive(Deserialize)]
struct IssuerOnly {
    iss: String,
}

/// A key of an outside issuer: its `kid`, the algorithm it is used with.
type Key = (Option<String>, Algorithm, DecodingKey);

/// Where an outside issuer's keys come from.
enum KeySource {
    File(PathBuf),
    Url { url: String, every: Duration },
}

/// An outside issuer: its name, audience, algorithms and keys by `kid`.
pub struct Outside {
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Algorithm>,
    source: KeySource,
    /// The keys last read; a failed fetch keeps them.
    keys: RwLock<Arc<Vec<Key>>>,
    /// Held while a fetch runs, so that concurrent callers wait for one
    /// fetch; holds when the last fetch for an unknown key began.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// Counts the fetches that replaced the keys.
    generation: AtomicU64,
}

/// Why a token was refused, and whether fetching its issuer's keys again
/// might change that.
struct Refusal {
    reason: String,
    unknown_key: Option<usize>,
}

impl From<String> for Refusal {
    fn from(reason: String) -> Refusal {
        Refusal {
            reason,
            unknown_key: None,
        }
    }
}

/// Issues and verifies tokens.
pub struct Tokens {
    signing: EncodingKey,
    verifying: DecodingKey,
    kid: String,
    outside: Vec<Arc<Outside>>,
}

impl Tokens {
    /// The server's key from `DATA_DIR/identity-key.pem` (made on first
    /// start), and the outside issuers of the settings with their keys.
    /// A JWK set URL that cannot be fetched now is a warning, not an
    /// error: its issuer's tokens are refused until a fetch succeeds.
    /// This blocks on the network; call it off the async runtime.
    pub fn load(data_dir: &Path, issuers: &[IssuerConfig]) -> Result<Tokens, KeyError> {
        let key = signing_key(data_dir)?;
        let public = key.verifying_key().to_bytes();
        let der = key.to_pkcs8_der().map_err(|e| KeyError::BadKey {
            path: data_dir.join(KEY_FILE),
            reason: e.to_string(),
        })?;
        let kid = Sha256::digest(public)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let outside = issuers
            .iter()
            .map(|c| outside(c).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Tokens {
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            verifying: DecodingKey::from_ed_der(&public),
            kid,
            outside,
        })
    }

    /// A new identity and a token for it. The token does not expire: it is
    /// the identity's only credential (docs/security.md).
    pub fn issue(&self) -> Result<(Identity, String), KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        let identity = Identity(bytes);
        let token = self.sign(&identity)?;
        Ok((identity, token))
    }

    fn sign(&self, identity: &Identity) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = OwnClaims {
            iss: OWN_ISSUER.to_string(),
            sub: identity.to_string(),
            iat: jsonwebtoken::get_current_timestamp(),
        };
        jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|e| KeyError::BadKey {
            path: PathBuf::from(KEY_FILE),
            reason: e.to_string(),
        })
    }

    /// The outside issuers whose keys come from a URL, with how often to
    /// fetch them: the server runs [`Outside::keep_fresh`] for each.
    pub fn fetched(&self) -> Vec<Arc<Outside>> {
        self.outside
            .iter()
            .filter(|o| matches!(o.source, KeySource::Url { .. }))
            .cloned()
            .collect()
    }

    /// The caller a bearer token names, or why not (for the server's log;
    /// clients are told only [`INVALID_TOKEN`]). A token naming a key its
    /// issuer's URL has not served yet waits for one fetch of the keys
    /// (at most one a minute per issuer), then is checked again.
    pub async fn verify(&self, token: &str) -> Result<Caller, String> {
        match self.check(token) {
            Err(Refusal {
                reason,
                unknown_key: Some(i),
            }) => {
                if self.outside[i].refetch().await {
                    self.check(token).map_err(|r| r.reason)
                } else {
                    Err(reason)
                }
            }
            checked => checked.map_err(|r| r.reason),
        }
    }

    /// [`Tokens::verify`] with the keys held now.
    fn check(&self, token: &str) -> Result<Caller, Refusal> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(format!("token of {} bytes", token.len()).into());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        let unverified = jsonwebtoken::dangerous::insecure_decode::<IssuerOnly>(token)
            .map_err(|e| format!("claims: {e}"))?;
        let issuer = unverified.claims.iss;
        if issuer == OWN_ISSUER {
            return Ok(self.verify_own(token, &header)?);
        }
        let (index, outside) = self
            .outside
            .iter()
            .enumerate()
            .find(|(_, o)| o.issuer == issuer)
            .ok_or_else(|| format!("issuer `{issuer}` is not trusted"))?;
        if !outside.algorithms.contains(&header.alg) {
            return Err(format!(
                "algorithm {:?} is not configured for `{issuer}`",
                header.alg
            )
            .into());
        }
        let keys = outside.keys();
        let key = keys
            .iter()
            .filter(|(_, alg, _)| *alg == header.alg)
            .find(|(kid, _, _)| header.kid.is_none() || *kid == header.kid)
            .map(|(_, _, key)| key)
            .ok_or_else(|| Refusal {
                reason: format!("no key of `{issuer}` has kid {:?}", header.kid),
                unknown_key: matches!(outside.source, KeySource::Url { .. }).then_some(index),
            })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&outside.audience);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| format!("`{issuer}`: {e}"))?;
        drop(keys);
        let claims = data.claims;
        check_subject(&claims.sub)?;
        Ok(Caller {
            identity: Identity::from_claims(&claims.iss, &claims.sub),
            token: Some(Arc::new(TokenClaims {
                issuer: claims.iss,
                subject: claims.sub,
                audience: match claims.aud {
                    Audience::None => Vec::new(),
                    Audience::One(a) => vec![a],
                    Audience::Many(a) => a,
                },
            })),
        })
    }

    fn verify_own(&self, token: &str, header: &Header) -> Result<Caller, String> {
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(format!("kid {:?} is not this server's key", header.kid));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.set_issuer(&[OWN_ISSUER]);
        validation.set_required_spec_claims(&["iss", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation)
            .map_err(|e| format!("own token: {e}"))?;
        let identity: Identity = data
            .claims
            .sub
            .parse()
            .map_err(|_| "own token: the subject is not an identity".to_string())?;
        Ok(Caller {
            identity,
            token: Some(Arc::new(TokenClaims {
                issuer: data.claims.iss,
                subject: data.claims.sub,
                audience: Vec::new(),
            })),
        })
    }
}

/// A subject is an identifier, not a document.
fn check_subject(sub: &str) -> Result<(), String> {
    if sub.is_empty() || sub.len() > 255 {
        return Err(format!("subject of {} bytes", sub.len()));
    }
    Ok(())
}

impl Outside {
    /// The keys held now.
    fn keys(&self) -> Arc<Vec<Key>> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches the keys again for a token that named one not held, unless
    /// such a fetch began less than [`JWKS_REFETCH_MIN`] ago. True when the
    /// keys may have changed since the caller looked (this fetch or one it
    /// waited for replaced them).
    async fn refetch(&self) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_MIN) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!("issuer `{}`: {reason}", self.issuer);
                false
            }
        }
    }

    /// Fetches the keys every `jwks_refresh_secs`, for as long as the
    /// server runs. A failure keeps the keys held and is logged.
    pub async fn keep_fresh(self: Arc<Self>) {
        let KeySource::Url { every, .. } = self.source else {
            return;
        };
        loop {
            tokio::time::sleep(every).await;
            let _held = self.fetching.lock().await;
            if let Err(reason) = self.fetch().await {
                tracing::warn!("issuer `{}`: {reason}", self.issuer);
            }
        }
    }

    /// One fetch of the keys, on the blocking pool; the caller holds
    /// `fetching`.
    async fn fetch(&self) -> Result<(), String> {
        let KeySource::Url { url, .. } = &self.source else {
            return Ok(());
        };
        let url = url.clone();
        let text = tokio::task::spawn_blocking(move || fetch_jwks(&url))
            .await
            .map_err(|e| e.to_string())??;
        let keys = parse_keys(&text, &self.algorithms)?;
        self.replace(keys);
        Ok(())
    }

    fn replace(&self, keys: Vec<Key>) {
        let count = keys.len();
        match self.keys.write() {
            Ok(mut held) => *held = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        self.generation.fetch_add(1, Ordering::Release);
        tracing::info!("issuer `{}`: {count} keys", self.issuer);
    }
}

/// The outside issuer of one `[[issuer]]` entry, with its keys read.
fn outside(config: &IssuerConfig) -> Result<Outside, KeyError> {
    let bad = |reason: String| KeyError::Issuer {
        issuer: config.issuer.clone(),
        reason,
    };
    if config.issuer == OWN_ISSUER {
        return Err(bad(format!("`{OWN_ISSUER}` is this server's own issuer")));
    }
    if config.audience.is_empty() {
        return Err(bad("needs at least one audience".into()));
    }
    let mut algorithms = Vec::new();
    for name in &config.algorithms {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| bad(format!("unknown algorithm `{name}`")))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(bad(format!(
                "`{name}` is a shared-secret algorithm; an issuer's keys are public"
            )));
        }
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(bad("needs at least one algorithm".into()));
    }
    let source = match (&config.jwks_file, &config.jwks_url) {
        (Some(path), None) => KeySource::File(path.clone()),
        (None, Some(url)) => {
            check_url(url).map_err(bad)?;
            if config.jwks_refresh_secs == 0 {
                return Err(bad("jwks_refresh_secs must be at least 1".into()));
            }
            KeySource::Url {
                url: url.clone(),
                every: Duration::from_secs(config.jwks_refresh_secs),
            }
        }
        _ => return Err(bad("needs exactly one of jwks_file and jwks_url".into())),
    };
    let keys = match &source {
        KeySource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            parse_keys(&text, &algorithms).map_err(|e| bad(format!("{}: {e}", path.display())))?
        }
        KeySource::Url { url, .. } => {
            match fetch_jwks(url).and_then(|t| parse_keys(&t, &algorithms)) {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(
                        "issuer `{}`: {e}; its tokens are refused until a fetch succeeds",
                        config.issuer
                    );
                    Vec::new()
                }
            }
        }
    };
    Ok(Outside {
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        algorithms,
        source,
        keys: RwLock::new(Arc::new(keys)),
        fetching: tokio::sync::Mutex::new(None),
        generation: AtomicU64::new(0),
    })
}

/// A JWK set URL is `https://`, or `http://` on a loopback address: keys
/// fetched in the clear from elsewhere could be anyone's.
fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("jwks_url `{url}`: {e}"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(()),
        Some("http") => Err(format!(
            "jwks_url `{url}`: plain http is accepted only on a loopback address; use https"
        )),
        _ => Err(format!("jwks_url `{url}` is not an http(s) URL")),
    }
}

/// The text of a JWK set at `url`: bounded in time and size.
fn fetch_jwks(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(JWKS_FETCH_TIMEOUT))
        .https_only(url.starts_with("https://"))
        .max_redirects(3)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| format!("fetching {url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(JWKS_BYTES_MAX)
        .read_to_string()
        .map_err(|e| format!("reading {url}: {e}"))
}

/// The keys of a JWK set usable with `algorithms`, at least one. Keys this
/// server cannot use (another type, meant for encryption, bound to another
/// algorithm) are skipped: issuers publish such keys side by side.
fn parse_keys(text: &str, algorithms: &[Algorithm]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(text).map_err(|e| format!("not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for value in set.keys {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                skipped.push(e.to_string());
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let key = match DecodingKey::from_jwk(&jwk) {
            Ok(key) => key,
            Err(e) => {
                skipped.push(e.to_string());
                continue;
            }
        };
        for &alg in algorithms {
            let bound = jwk
                .common
                .key_algorithm
                .is_none_or(|k| k.to_string() == format!("{alg:?}"));
            if bound && key.family() == alg.family() {
                keys.push((jwk.common.key_id.clone(), alg, key.clone()));
            }
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "no key for the configured algorithms{}",
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped: {})", skipped.join("; "))
            }
        ));
    }
    Ok(keys)
}

/// The signing key: read, or made and written (0600, atomically) on first
/// start.
fn signing_key(data_dir: &Path) -> Result<SigningKey, KeyError> {
    let path = data_dir.join(KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            crate::auth::restrict(&path).map_err(io)?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::BadKey {
                path: path.clone(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
            let key = SigningKey::from_bytes(&seed);
            let pem = key
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map_err(|e| KeyError::BadKey {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            interstice_runtime::fs::atomic::write_atomic(
                &interstice_runtime::fs::RealFs,
                &path,
                pem.as_bytes(),
            )
            .map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P-256 public key of RFC 7517, appendix A.1.
    fn ec(extra: serde_json::Value) -> serde_json::Value {
        let mut jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        });
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    #[test]
    fn a_jwk_set_gives_only_the_keys_usable_for_signatures_of_the_configured_algorithms() {
        let set = serde_json::json!({ "keys": [
            { "kty": "XYZ", "kid": "unknown type" },
            { "kty": "oct", "k": "c2VjcmV0", "kid": "a shared secret" },
            ec(serde_json::json!({ "use": "enc", "kid": "for encryption" })),
            ec(serde_json::json!({ "alg": "ES384", "kid": "another algorithm" })),
            ec(serde_json::json!({ "use": "sig", "alg": "ES256", "kid": "bound" })),
            ec(serde_json::json!({ "kid": "free" })),
        ]})
        .to_string();
        let keys = parse_keys(&set, &[Algorithm::ES256, Algorithm::RS256]).unwrap();
        let kids: Vec<_> = keys
            .iter()
            .map(|(kid, alg, _)| (kid.as_deref().unwrap(), *alg))
            .collect();
        assert_eq!(
            kids,
            [("bound", Algorithm::ES256), ("free", Algorithm::ES256)]
        );

        let none = parse_keys(&set, &[Algorithm::RS256]).unwrap_err();
        assert!(
            none.contains("no key for the configured algorithms"),
            "{none}"
        );
        let e = parse_keys("[]", &[Algorithm::ES256]).unwrap_err();
        assert!(e.starts_with("not a JWK set"), "{e}");
    }

    #[test]
    fn a_jwks_url_is_https_or_loopback_http() {
        for good in [
            "https://issuer.example/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://issuer.example/jwks",
            "http://localhost.issuer.example/jwks",
            "http://127.0.0.2/jwks",
            "ftp://issuer.example/jwks",
            "https:///jwks",
            "jwks.json",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
