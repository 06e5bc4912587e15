//! Who a request comes from: the admin token (the operator), an identity
//! token (the server's own or an outside issuer's, `crate::identity`), or
//! nobody. Every route that needs someone asks [`who`].

use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::ApiError;

/// The file, in the data directory, holding the generated admin token.
pub const TOKEN_FILE: &str = "admin-token";

/// Environment variable that sets the admin token (nothing is written then).
pub const TOKEN_ENV: &str = "INTERSTICE_ADMIN_TOKEN";

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no token")]
    Empty { path: PathBuf },
    #[error("no randomness for a token: {0}")]
    Random(String),
}

/// Where the token came from, for the start-up message (never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

/// The admin token: `INTERSTICE_ADMIN_TOKEN` when set (and not empty),
/// else `DATA_DIR/admin-token`, generated (32 random bytes, hex) and
/// written with mode 0600 on first start.
pub fn admin_token(
    data_dir: &Path,
    from_env: Option<String>,
) -> Result<(String, TokenSource), TokenError> {
    if let Some(token) = from_env.map(|t| t.trim().to_string())
        && !token.is_empty()
    {
        return Ok((token, TokenSource::Environment));
    }
    let path = data_dir.join(TOKEN_FILE);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(TokenError::Empty { path });
            }
            restrict(&path).map_err(io)?;
            Ok((token, TokenSource::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            // The real file system creates every file owner-only (0600)
            // before a byte is written.
            interstice_runtime::fs::atomic::write_atomic(
                &interstice_runtime::fs::RealFs,
                &path,
                format!("{token}\n").as_bytes(),
            )
            .map_err(io)?;
            Ok((token, TokenSource::Generated(path)))
        }
        Err(e) => Err(io(e)),
    }
}

/// Narrows an existing token file that others could read back to 0600.
#[cfg(unix)]
pub(crate) fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{} was readable by others (mode {:o}); set to 0600",
            path.display(),
            mode & 0o777
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The header that once named the caller, taken as given. It is refused
/// so that old clients learn at once that it no longer names anyone.
pub const OLD_CALLER_HEADER: &str = "x-interstice-caller";

/// Who a request comes from.
#[derive(Clone, Debug)]
pub enum Who {
    /// No `Authorization` header.
    Anonymous,
    /// The admin token.
    Operator,
    /// A verified identity token.
    Identity(interstice_runtime::Caller),
}

impl Who {
    /// Who a SQL statement runs as.
    pub fn reader(&self) -> interstice_runtime::Reader<'_> {
        match self {
            Who::Operator => interstice_runtime::Reader::Operator,
            Who::Identity(caller) => interstice_runtime::Reader::Identity(&caller.identity),
            Who::Anonymous => interstice_runtime::Reader::Anonymous,
        }
    }

    /// The caller a reducer sees; `None` for an anonymous request.
    pub fn caller(&self) -> Option<interstice_runtime::Caller> {
        match self {
            Who::Anonymous => None,
            Who::Operator => Some(interstice_runtime::Caller::operator()),
            Who::Identity(caller) => Some(caller.clone()),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Who::Operator)
    }
}

/// Reads a request's `Authorization: Bearer <token>`. A token that is
/// neither the admin token nor a valid identity token is a 401 that says
/// only `invalid token`; the reason goes to the server's log.
pub async fn who(
    headers: &HeaderMap,
    admin: &str,
    tokens: &crate::identity::Tokens,
) -> Result<Who, ApiError> {
    if headers.contains_key(OLD_CALLER_HEADER) {
        return Err(ApiError::bad_request(
            OLD_CALLER_HEADER,
            "this header no longer names the caller; send Authorization: Bearer <token> \
             (POST /v1/identity gives one)",
        ));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Who::Anonymous);
    };
    let bytes = value.as_bytes();
    if bytes.len() > crate::identity::TOKEN_BYTES_MAX + 7 {
        tracing::debug!("refused a token: {} bytes", bytes.len());
        return Err(invalid_token());
    }
    let token = std::str::from_utf8(bytes)
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(invalid_token)?;
    who_is(token, admin, tokens).await
}

/// Who holds `token`, given other than in a header (a WebSocket's
/// subprotocol or query parameter): the admin token, a valid identity
/// token, or a 401 that says only `invalid token`.
pub async fn who_is(
    token: &str,
    admin: &str,
    tokens: &crate::identity::Tokens,
) -> Result<Who, ApiError> {
    if token.len() > crate::identity::TOKEN_BYTES_MAX {
        tracing::debug!("refused a token: {} bytes", token.len());
        return Err(invalid_token());
    }
    if constant_time_eq(token.as_bytes(), admin.as_bytes()) {
        return Ok(Who::Operator);
    }
    match tokens.verify(token).await {
        Ok(caller) => Ok(Who::Identity(caller)),
        Err(reason) => {
            tracing::debug!("refused a token: {reason}");
            Err(invalid_token())
        }
    }
}

/// The 401 for a token that is refused: it says only `invalid token` (the
/// reason goes to the server's log).
fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        crate::identity::INVALID_TOKEN,
    )
}

/// 401 for a route that needs a token and got none.
pub fn needs_token(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "{what} needs a token: Authorization: Bearer <token> (POST /v1/identity gives one)"
        ),
    )
}

/// Checks a request's bearer token: 401 when there is none, 403 when it is
/// wrong.
pub fn check(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs the admin token: Authorization: Bearer <token>",
        ));
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin token is wrong",
        )),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_mode_0600_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (token, source) = admin_token(dir.path(), None).unwrap();
        assert_eq!(token.len(), 64);
        assert!(matches!(source, TokenSource::Generated(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = admin_token(dir.path(), None).unwrap();
        assert_eq!(again, token);
        assert!(matches!(source, TokenSource::File(_)));
        // The environment wins, and nothing is written for it.
        let (env, source) = admin_token(dir.path(), Some("s3cret".into())).unwrap();
        assert_eq!((env.as_str(), source), ("s3cret", TokenSource::Environment));
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_can_read_is_narrowed_to_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        std::fs::write(&path, "abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (token, source) = admin_token(dir.path(), None).unwrap();
        assert_eq!(token, "abc");
        assert_eq!(source, TokenSource::File(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // An empty file is refused, not taken as an empty token.
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            admin_token(dir.path(), None),
            Err(TokenError::Empty { .. })
        ));
    }

    #[test]
    fn missing_token_is_401_and_wrong_token_403() {
        let mut headers = HeaderMap::new();
        assert_eq!(check(&headers, "t").unwrap_err().status, 401);
        headers.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(check(&headers, "t").unwrap_err().status, 403);
        headers.insert(header::AUTHORIZATION, "Basic t".parse().unwrap());
        assert_eq!(check(&headers, "t").unwrap_err().status, 403);
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert!(check(&headers, "t").is_ok());
    }
}
