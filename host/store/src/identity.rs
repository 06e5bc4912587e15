//! Who acts: a 32-byte [`Identity`], how one is derived from a verified
//! token's issuer and subject, and the operator's fixed identity
//! (docs/security.md, "Identities").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// 32 bytes naming whoever calls a reducer, owns a module or holds a
/// session. Written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity(pub [u8; 32]);

/// What goes first in the hash of [`Identity::from_claims`].
const MODULE_DOMAIN: &[u8] = b"interstice module v1\0";
const CLAIMS_DOMAIN: &[u8] = b"interstice identity v1\0";

/// What is hashed, alone, for [`Identity::OPERATOR`]. No input of
/// [`Identity::from_claims`] starts this way, so no token can name it.
const OPERATOR_DOMAIN: &[u8] = b"interstice operator v1\0";

impl Identity {
    /// The operator: whoever holds the admin token or runs the local CLI
    /// without `--as`. SHA-256 of the 23 bytes `interstice operator v1\0`:
    /// `69c4955a...` (the test `the_operator_identity_is_fixed` pins all of it).
    pub fn operator() -> Identity {
        Identity(Sha256::digest(OPERATOR_DOMAIN).into())
    }

    /// The identity of a token from an outside issuer:
    /// SHA-256(`interstice identity v1\0` ‖ u32 LE length of `issuer` ‖
    /// `issuer` ‖ u32 LE length of `subject` ‖ `subject`). The same issuer
    /// and subject give the same identity on every server.
    pub fn from_claims(issuer: &str, subject: &str) -> Identity {
        let mut hash = Sha256::new();
        hash.update(CLAIMS_DOMAIN);
        for part in [issuer, subject] {
            hash.update((part.len() as u32).to_le_bytes());
            hash.update(part.as_bytes());
        }
        Identity(hash.finalize().into())
    }

    /// The identity of module `name`, the sender of the transactions the
    /// host runs for it on its own (scheduled reducers):
    /// SHA-256(`interstice module v1\0` ‖ u32 LE length of `name` ‖
    /// `name`). No token can name it: tokens' identities are random or
    /// hashed under another prefix.
    pub fn of_module(name: &str) -> Identity {
        let mut hash = Sha256::new();
        hash.update(MODULE_DOMAIN);
        hash.update((name.len() as u32).to_le_bytes());
        hash.update(name.as_bytes());
        Identity(hash.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

/// Why a text is not an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an identity is 64 hex digits")]
pub struct IdentityParseError;

impl FromStr for Identity {
    type Err = IdentityParseError;

    fn from_str(text: &str) -> Result<Identity, IdentityParseError> {
        let text = text.as_bytes();
        if text.len() != 64 {
            return Err(IdentityParseError);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(IdentityParseError);
            *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Identity(out))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl Serialize for Identity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Identity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Identity, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_identity_is_fixed() {
        assert_eq!(
            Identity::operator().to_string(),
            OPERATOR_HEX,
            "the operator identity is part of the documented contract"
        );
    }

    const OPERATOR_HEX: &str = "69c4955a8db29f265213f07e48970eecd3ea70a7b7c01f5fd21c919d945d0636";

    #[test]
    fn claims_are_length_prefixed_so_boundaries_cannot_shift() {
        let a = Identity::from_claims("https://a.example", "bob");
        assert_eq!(a, Identity::from_claims("https://a.example", "bob"));
        assert_ne!(a, Identity::from_claims("https://a.exampleb", "ob"));
        assert_ne!(a, Identity::from_claims("https://a.example", "bob "));
        assert_ne!(a, Identity::operator());
        // Golden value: the documented rule, computed once.
        assert_eq!(
            Identity::from_claims("https://issuer.example", "user-1").to_string(),
            CLAIMS_HEX
        );
    }

    const CLAIMS_HEX: &str = "87b538122428b0c6874e4bc90efb9a2d8973afecbac828a2cad1db3ce8fd5c55";

    #[test]
    fn hex_round_trips_and_refuses_everything_else() {
        let id = Identity::from_claims("i", "s");
        assert_eq!(id.to_string().parse::<Identity>(), Ok(id));
        assert_eq!(id.to_string().to_uppercase().parse::<Identity>(), Ok(id));
        for bad in [
            "",
            "ab",
            &"g".repeat(64),
            &"a".repeat(63),
            &"a".repeat(65),
            &"é".repeat(32),
        ] {
            assert_eq!(bad.parse::<Identity>(), Err(IdentityParseError), "{bad}");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), id);
    }
}
