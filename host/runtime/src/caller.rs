//! Who makes a call: the identity the server verified (or the operator's),
//! and what the token said.

use std::sync::Arc;

pub use interstice_store::Identity;

/// What a verified token says of its holder, as reducers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub issuer: String,
    pub subject: String,
    pub audience: Vec<String>,
}

/// Whoever makes a call. Built by the server from a verified token, by the
/// local CLI for the operator or `--as`, and by the host for the sessions it
/// ends at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// The token's claims; `None` for the operator and for `--as`.
    pub token: Option<Arc<TokenClaims>>,
}

impl Caller {
    /// The operator ([`Identity::operator`]), with no token.
    pub fn operator() -> Caller {
        Caller::identity(Identity::operator())
    }

    /// `identity`, with no token: what the local CLI's `--as` gives.
    pub fn identity(identity: Identity) -> Caller {
        Caller {
            identity,
            token: None,
        }
    }
}
