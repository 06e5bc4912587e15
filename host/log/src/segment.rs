//! Segment files: naming and the 36-byte file header.
//!
//! ```text
//! offset  size  field
//!      0     8  magic       b"INTSTLOG"
//!      8     4  version     format version, u32 LE (1)
//!     12     4  reserved    zero
//!     16     8  base_tx_id  id of the first record this segment may hold, u64 LE
//!     24     8  salt        random per file, u64 LE; seeds every record checksum
//!     32     4  crc32       CRC-32 (IEEE) of bytes 0..32
//! ```

use std::hash::{BuildHasher, Hasher};
use std::path::Path;

use crate::error::DamageKind;

pub const MAGIC: [u8; 8] = *b"INTSTLOG";
pub const FORMAT_VERSION: u32 = 1;

const VERSION_OFFSET: usize = MAGIC.len();
const RESERVED_OFFSET: usize = VERSION_OFFSET + 4;
const BASE_OFFSET: usize = RESERVED_OFFSET + 4;
const SALT_OFFSET: usize = BASE_OFFSET + 8;
const CRC_OFFSET: usize = SALT_OFFSET + 8;
/// Bytes before the first record.
pub const HEADER_LEN: usize = CRC_OFFSET + 4;
const _: () = assert!(HEADER_LEN == 36);

/// File name suffix of segments.
pub const SUFFIX: &str = ".log";
/// Digits of the zero-padded base tx id in a segment's name, so names sort
/// in tx order.
const NAME_DIGITS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub base_tx_id: u64,
    pub salt: u64,
}

impl Header {
    /// A header for a new segment, with a fresh random salt.
    pub fn new(base_tx_id: u64) -> Self {
        Header {
            base_tx_id,
            salt: fresh_salt(),
        }
    }

    /// A header whose salt is a function of `seed` and the base tx id
    /// (splitmix64 of their XOR), for `LogConfig::salt_seed`.
    pub fn seeded(base_tx_id: u64, seed: u64) -> Self {
        let mut z = (seed ^ base_tx_id).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Header {
            base_tx_id,
            salt: z ^ (z >> 31),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..VERSION_OFFSET].copy_from_slice(&MAGIC);
        out[VERSION_OFFSET..RESERVED_OFFSET].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[BASE_OFFSET..SALT_OFFSET].copy_from_slice(&self.base_tx_id.to_le_bytes());
        out[SALT_OFFSET..CRC_OFFSET].copy_from_slice(&self.salt.to_le_bytes());
        let crc = crc32fast::hash(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the header at the start of a segment's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Header, DamageKind> {
        if bytes.len() < HEADER_LEN {
            return Err(DamageKind::ShortHeader {
                len: bytes.len() as u64,
                needed: HEADER_LEN as u64,
            });
        }
        if bytes[..VERSION_OFFSET] != MAGIC {
            return Err(DamageKind::BadMagic);
        }
        let stored = u32::from_le_bytes(bytes[CRC_OFFSET..HEADER_LEN].try_into().expect("4"));
        if stored != crc32fast::hash(&bytes[..CRC_OFFSET]) {
            return Err(DamageKind::HeaderChecksum);
        }
        let version = u32::from_le_bytes(
            bytes[VERSION_OFFSET..RESERVED_OFFSET]
                .try_into()
                .expect("4"),
        );
        if version != FORMAT_VERSION {
            return Err(DamageKind::UnsupportedVersion(version));
        }
        Ok(Header {
            base_tx_id: u64::from_le_bytes(bytes[BASE_OFFSET..SALT_OFFSET].try_into().expect("8")),
            salt: u64::from_le_bytes(bytes[SALT_OFFSET..CRC_OFFSET].try_into().expect("8")),
        })
    }
}

/// A random 64-bit salt from the standard library's randomly keyed hasher
/// (seeded from the operating system), mixed with the time.
fn fresh_salt() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish()
}

/// The file name of the segment whose first record is `base_tx_id`.
pub fn file_name(base_tx_id: u64) -> String {
    format!("{base_tx_id:0NAME_DIGITS$}{SUFFIX}")
}

/// The base tx id a segment file name encodes, or `None` for any other file.
pub fn parse_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_header() {
        let h = Header {
            base_tx_id: 0x11,
            salt: 0x2233,
        };
        let bytes = h.encode();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"INTSTLOG");
        expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x11, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x33, 0x22, 0, 0, 0, 0, 0, 0]);
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(Header::decode(&bytes), Ok(h));
    }

    #[test]
    fn damaged_headers_are_refused() {
        let bytes = Header::new(5).encode();
        for cut in 0..HEADER_LEN {
            assert!(Header::decode(&bytes[..cut]).is_err());
        }
        for bit in 0..HEADER_LEN * 8 {
            let mut b = bytes;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn seeded_salts_repeat_only_for_the_same_seed_and_base() {
        assert_eq!(Header::seeded(1, 7), Header::seeded(1, 7));
        assert_ne!(Header::seeded(1, 7).salt, Header::seeded(2, 7).salt);
        assert_ne!(Header::seeded(1, 7).salt, Header::seeded(1, 8).salt);
        let h = Header::seeded(9, 7);
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(
            parse_name(Path::new("x/00000000000000000042.log")),
            Some(42)
        );
        assert_eq!(parse_name(Path::new("42.log")), None);
        assert_eq!(parse_name(Path::new("00000000000000000042.tmp")), None);
        assert!(file_name(9) < file_name(10));
    }
}
