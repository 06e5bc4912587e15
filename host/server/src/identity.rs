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
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use interstice_runtime::{Caller, Identity, TokenClaims};
use jsonwebtoken::jwk::JwkSet;
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

/// An outside issuer: its name, audience, algorithms and keys by `kid`.
struct Outside {
    issuer: String,
    audience: Vec<String>,
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    algorithms: Vec<Algorithm>,
}

/// Issues and verifies tokens.
pub struct Tokens {
    signing: EncodingKey,
    verifying: DecodingKey,
    kid: String,
    outside: Vec<Outside>,
}

impl Tokens {
    /// The server's key from `DATA_DIR/identity-key.pem` (made on first
    /// start), and the outside issuers of the settings.
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
        let outside = issuers.iter().map(outside).collect::<Result<_, _>>()?;
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

    /// The caller a bearer token names, or why not (for the server's log;
    /// clients are told only [`INVALID_TOKEN`]).
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(format!("token of {} bytes", token.len()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        let unverified = jsonwebtoken::dangerous::insecure_decode::<IssuerOnly>(token)
            .map_err(|e| format!("claims: {e}"))?;
        let issuer = unverified.claims.iss;
        if issuer == OWN_ISSUER {
            return self.verify_own(token, &header);
        }
        let outside = self
            .outside
            .iter()
            .find(|o| o.issuer == issuer)
            .ok_or_else(|| format!("issuer `{issuer}` is not trusted"))?;
        if !outside.algorithms.contains(&header.alg) {
            return Err(format!(
                "algorithm {:?} is not configured for `{issuer}`",
                header.alg
            ));
        }
        let key = outside
            .keys
            .iter()
            .filter(|(_, alg, _)| *alg == header.alg)
            .find(|(kid, _, _)| header.kid.is_none() || *kid == header.kid)
            .map(|(_, _, key)| key)
            .ok_or_else(|| format!("no key of `{issuer}` has kid {:?}", header.kid))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&outside.audience);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| format!("`{issuer}`: {e}"))?;
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
    let text = std::fs::read_to_string(&config.jwks_file).map_err(|source| KeyError::Io {
        path: config.jwks_file.clone(),
        source,
    })?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "{}: not a JWK set: {e}",
            config.jwks_file.display()
        ))
    })?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            bad(format!(
                "{}: a key does not load: {e}",
                config.jwks_file.display()
            ))
        })?;
        for &alg in &algorithms {
            if key.family() == alg.family() {
                keys.push((jwk.common.key_id.clone(), alg, key.clone()));
            }
        }
    }
    if keys.is_empty() {
        return Err(bad(format!(
            "{} has no key for the configured algorithms",
            config.jwks_file.display()
        )));
    }
    Ok(Outside {
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        keys,
        algorithms,
    })
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
