//! The record frame: a 16-byte header (checksum, payload length, tx id)
//! followed by the payload. `docs/log-format.md` is the specification.
//!
//! ```text
//! offset  size  field
//!      0     4  crc32   CRC-32 (IEEE) of: segment salt (8 bytes LE) ++ bytes 4..16 ++ payload
//!      4     4  len     payload length in bytes, u32 LE
//!      8     8  tx_id   transaction id, u64 LE
//!     16   len  payload
//! ```

use crate::error::DamageKind;
use crate::limits::RECORD_PAYLOAD_BYTES_MAX;

pub const CRC_OFFSET: usize = 0;
pub const LEN_OFFSET: usize = CRC_OFFSET + 4;
pub const TX_ID_OFFSET: usize = LEN_OFFSET + 4;
/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = TX_ID_OFFSET + 8;
const _: () = assert!(FRAME_HEADER_LEN == 16);

/// The checksum of a record in a segment with this salt.
pub fn checksum(salt: u64, header_tail: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(header_tail.len(), FRAME_HEADER_LEN - LEN_OFFSET);
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(header_tail);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `out`.
pub fn encode(salt: u64, tx_id: u64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_BYTES_MAX,
        "payload size is checked before framing"
    );
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&tx_id.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = checksum(
        salt,
        &out[start + LEN_OFFSET..start + FRAME_HEADER_LEN],
        payload,
    );
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record that passed its checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tx_id: u64,
    pub payload: &'a [u8],
    /// Total bytes including the header.
    pub len: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the record at the start of `bytes` (which runs to the end of the
/// segment).
pub fn decode(salt: u64, bytes: &[u8]) -> Result<Frame<'_>, DamageKind> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(DamageKind::TruncatedHeader {
            available: bytes.len() as u64,
            needed: FRAME_HEADER_LEN as u64,
        });
    }
    let len = u32_at(bytes, LEN_OFFSET) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DamageKind::LengthTooLarge {
            len: len as u64,
            max: RECORD_PAYLOAD_BYTES_MAX as u64,
        });
    }
    let available = bytes.len() - FRAME_HEADER_LEN;
    if available < len {
        return Err(DamageKind::TruncatedPayload {
            available: available as u64,
            needed: len as u64,
        });
    }
    let payload = &bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    let stored = u32_at(bytes, CRC_OFFSET);
    let computed = checksum(salt, &bytes[LEN_OFFSET..FRAME_HEADER_LEN], payload);
    if stored != computed {
        return Err(DamageKind::Checksum { stored, computed });
    }
    Ok(Frame {
        tx_id: u64_at(bytes, TX_ID_OFFSET),
        payload,
        len: FRAME_HEADER_LEN + len,
    })
}

/// The first offset after `from` where a valid record with a tx id in
/// `(after_tx, after_tx + window]` starts: where valid data resumes after a
/// damaged region. The tx id filter keeps the search cheap; the checksum,
/// seeded with the segment's salt, makes a false match vanishingly rare.
pub fn resync(salt: u64, bytes: &[u8], from: usize, after_tx: u64, window: u64) -> Option<usize> {
    let last_start = bytes.len().checked_sub(FRAME_HEADER_LEN)?;
    (from..=last_start).find(|&at| {
        let tx = u64_at(bytes, at + TX_ID_OFFSET);
        tx > after_tx
            && tx - after_tx <= window
            && decode(salt, &bytes[at..]).is_ok_and(|f| f.tx_id == tx)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        encode(0x0102_0304_0506_0708, 7, b"abc", &mut out);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[8, 7, 6, 5, 4, 3, 2, 1]);
        crc.update(&[3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        crc.update(b"abc");
        let crc = crc.finalize().to_le_bytes();
        let expected = [&crc[..], &[3, 0, 0, 0], &[7, 0, 0, 0, 0, 0, 0, 0], b"abc"].concat();
        assert_eq!(out, expected);
        let frame = decode(0x0102_0304_0506_0708, &out).unwrap();
        assert_eq!(
            (frame.tx_id, frame.payload, frame.len),
            (7, &b"abc"[..], 19)
        );
    }

    #[test]
    fn another_salt_rejects_the_record() {
        let mut out = Vec::new();
        encode(1, 7, b"abc", &mut out);
        assert!(matches!(decode(2, &out), Err(DamageKind::Checksum { .. })));
    }

    #[test]
    fn every_cut_is_detected() {
        let mut out = Vec::new();
        encode(9, 1, b"some payload", &mut out);
        for cut in 0..out.len() {
            assert!(decode(9, &out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn resync_finds_the_next_record() {
        let mut out = Vec::new();
        encode(5, 1, b"first", &mut out);
        let second = out.len();
        encode(5, 2, b"second", &mut out);
        out[3] ^= 0x40;
        assert!(decode(5, &out).is_err());
        assert_eq!(resync(5, &out, 1, 0, 10), Some(second));
        assert_eq!(resync(5, &out, 1, 2, 10), None);
    }
}
