//! The canonical row encoding, version 1 (docs/row-encoding.md).
//!
//! A row is the concatenation of its column values in declaration order, with
//! no header and no padding:
//!
//! | type     | bytes                                          |
//! |----------|------------------------------------------------|
//! | bool     | 1 byte, `0x00` or `0x01`                       |
//! | i32, u32 | 4 bytes, little-endian                         |
//! | i64, u64 | 8 bytes, little-endian                         |
//! | f64      | 8 bytes, IEEE 754 binary64 bits, little-endian |
//! | string   | u32 LE byte length, then that many UTF-8 bytes |
//! | bytes    | u32 LE byte length, then that many bytes       |
//! | option   | tag `0x00` (none) or `0x01` then the value     |
//!
//! The same encoding is used for reducer arguments (one "row" of parameters)
//! and for index keys (the indexed column's value alone).

use crate::error::DecodeError;
use crate::limits::ROW_BYTES_MAX;
use crate::schema::{ColumnType, ScalarType};
use crate::value::Value;

/// The encoding version these functions implement.
pub const ROW_ENCODING_VERSION: u32 = 1;

const _: () = assert!(ROW_BYTES_MAX <= u32::MAX as usize);

/// Appends `value` as a column of type `ty`.
///
/// # Panics
/// If the value does not fit the type: callers convert and check first.
pub fn encode_value(value: &Value, ty: ColumnType, out: &mut Vec<u8>) {
    assert!(
        value.fits(ty),
        "value {value:?} does not fit column type {ty}"
    );
    if ty.optional {
        if let Value::Null = value {
            out.push(0);
            return;
        }
        out.push(1);
    }
    match value {
        Value::Null => unreachable!("checked by fits"),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        Value::String(v) => put_len_prefixed(v.as_bytes(), out),
        Value::Bytes(v) => put_len_prefixed(v, out),
    }
}

fn put_len_prefixed(bytes: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(bytes.len()).expect("value longer than u32::MAX bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes a whole row.
pub fn encode_row(values: &[Value], types: &[ColumnType]) -> Vec<u8> {
    assert_eq!(values.len(), types.len(), "row arity");
    let mut out = Vec::with_capacity(16 * values.len());
    for (value, ty) in values.iter().zip(types) {
        encode_value(value, *ty, &mut out);
    }
    out
}

/// A cursor over encoded bytes that reports where a decode failed.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    column: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            column: 0,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let available = self.bytes.len() - self.pos;
        if available < n {
            return Err(DecodeError::Truncated {
                column: self.column,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    /// Decodes the next value as column `column` of type `ty`.
    pub fn value(&mut self, column: usize, ty: ColumnType) -> Result<Value, DecodeError> {
        self.column = column;
        if ty.optional {
            let offset = self.pos;
            match self.array::<1>()?[0] {
                0 => return Ok(Value::Null),
                1 => {}
                tag => {
                    return Err(DecodeError::InvalidOptionTag {
                        column,
                        offset,
                        tag,
                    });
                }
            }
        }
        Ok(match ty.scalar {
            ScalarType::Bool => {
                let offset = self.pos;
                match self.array::<1>()?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    byte => {
                        return Err(DecodeError::InvalidBool {
                            column,
                            offset,
                            byte,
                        });
                    }
                }
            }
            ScalarType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ScalarType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ScalarType::U32 => Value::U32(u32::from_le_bytes(self.array()?)),
            ScalarType::U64 => Value::U64(u64::from_le_bytes(self.array()?)),
            ScalarType::F64 => Value::F64(f64::from_bits(u64::from_le_bytes(self.array()?))),
            ScalarType::String => {
                let offset = self.pos;
                let raw = self.len_prefixed()?;
                let s = std::str::from_utf8(raw)
                    .map_err(|_| DecodeError::InvalidUtf8 { column, offset })?;
                Value::String(s.into())
            }
            ScalarType::Bytes => Value::Bytes(self.len_prefixed()?.into()),
        })
    }

    /// Checks the next value as column `column` of type `ty` without building
    /// it.
    pub fn skip(&mut self, column: usize, ty: ColumnType) -> Result<(), DecodeError> {
        match ty.scalar {
            // Variable-length and tagged types are checked by decoding; the
            // cost is the copy of one string.
            ScalarType::String | ScalarType::Bool => self.value(column, ty).map(drop),
            _ if ty.optional => self.value(column, ty).map(drop),
            ScalarType::I32 | ScalarType::U32 => {
                self.column = column;
                self.take(4).map(drop)
            }
            ScalarType::I64 | ScalarType::U64 | ScalarType::F64 => {
                self.column = column;
                self.take(8).map(drop)
            }
            ScalarType::Bytes => {
                self.column = column;
                self.len_prefixed().map(drop)
            }
        }
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        let extra = self.bytes.len() - self.pos;
        if extra == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { extra })
        }
    }
}

fn check_len(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() > ROW_BYTES_MAX {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: ROW_BYTES_MAX,
        });
    }
    Ok(())
}

/// Decodes a whole row, rejecting any byte that is not part of it.
pub fn decode_row(bytes: &[u8], types: &[ColumnType]) -> Result<Vec<Value>, DecodeError> {
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    let row = types
        .iter()
        .enumerate()
        .map(|(i, ty)| reader.value(i, *ty))
        .collect::<Result<Vec<_>, _>>()?;
    reader.finish()?;
    Ok(row)
}

/// Decodes a key: one value of type `ty` and nothing else.
pub fn decode_key(bytes: &[u8], ty: ColumnType) -> Result<Value, DecodeError> {
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    let value = reader.value(0, ty)?;
    reader.finish()?;
    Ok(value)
}

/// A column whose value [`scan_row`] extracts, with where it starts.
#[derive(Clone, Debug)]
pub struct Extracted {
    pub offset: usize,
    pub value: Value,
}

/// Validates a whole row and extracts the columns flagged in `wanted`
/// (indexed by column), in column order. This is the one pass every row from
/// a guest goes through before it is stored.
pub fn scan_row(
    bytes: &[u8],
    types: &[ColumnType],
    wanted: &[bool],
    out: &mut Vec<Extracted>,
) -> Result<(), DecodeError> {
    debug_assert_eq!(types.len(), wanted.len());
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    for (i, (ty, want)) in types.iter().zip(wanted).enumerate() {
        if *want {
            let offset = reader.position();
            let value = reader.value(i, *ty)?;
            out.push(Extracted { offset, value });
        } else {
            reader.skip(i, *ty)?;
        }
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(scalar: ScalarType, optional: bool) -> ColumnType {
        ColumnType { scalar, optional }
    }

    /// Golden bytes: the layout in docs/row-encoding.md, byte for byte.
    #[test]
    fn golden_row() {
        let types = [
            t(ScalarType::Bool, false),
            t(ScalarType::I32, false),
            t(ScalarType::U64, false),
            t(ScalarType::F64, false),
            t(ScalarType::String, false),
            t(ScalarType::Bytes, false),
            t(ScalarType::I64, true),
            t(ScalarType::U32, true),
        ];
        let values = [
            Value::Bool(true),
            Value::I32(-2),
            Value::U64(0x0102_0304_0506_0708),
            Value::F64(1.5),
            Value::String("hé".into()),
            Value::Bytes(vec![0xAB].into()),
            Value::Null,
            Value::U32(7),
        ];
        let bytes = encode_row(&values, &types);
        let expected: Vec<u8> = [
            &[0x01][..],
            &[0xFE, 0xFF, 0xFF, 0xFF],
            &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01],
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF8, 0x3F],
            &[0x03, 0x00, 0x00, 0x00, b'h', 0xC3, 0xA9],
            &[0x01, 0x00, 0x00, 0x00, 0xAB],
            &[0x00],
            &[0x01, 0x07, 0x00, 0x00, 0x00],
        ]
        .concat();
        assert_eq!(bytes, expected);
        assert_eq!(decode_row(&bytes, &types).unwrap(), values);
    }

    #[test]
    fn rejects_malformed() {
        let u = [t(ScalarType::U64, false)];
        assert!(matches!(
            decode_row(&[1, 2, 3], &u),
            Err(DecodeError::Truncated { needed: 8, .. })
        ));
        assert!(matches!(
            decode_row(&[0; 9], &u),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
        let b = [t(ScalarType::Bool, false)];
        assert!(matches!(
            decode_row(&[2], &b),
            Err(DecodeError::InvalidBool { byte: 2, .. })
        ));
        let s = [t(ScalarType::String, false)];
        assert!(matches!(
            decode_row(&[2, 0, 0, 0, 0xFF, 0xFE], &s),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
        let o = [t(ScalarType::U32, true)];
        assert!(matches!(
            decode_row(&[9], &o),
            Err(DecodeError::InvalidOptionTag { tag: 9, .. })
        ));
        // A length prefix larger than the rest of the row.
        assert!(matches!(
            decode_row(&[0xFF, 0xFF, 0xFF, 0xFF], &s),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
