//! The canonical row encoding, version 2 (docs/row-encoding.md).
//!
//! A row is the concatenation of its column values in declaration order, with
//! no header and no padding. Each type's bytes:
//!
//! | type                          | bytes                                          |
//! |-------------------------------|------------------------------------------------|
//! | bool                          | 1 byte, `0x00` or `0x01`                       |
//! | u8, i8                        | 1 byte                                         |
//! | u16, i16                      | 2 bytes, little-endian                         |
//! | u32, i32                      | 4 bytes, little-endian                         |
//! | u64, i64, timestamp, duration | 8 bytes, little-endian                         |
//! | u128, i128                    | 16 bytes, little-endian                        |
//! | f32, f64                      | 4 or 8 bytes, IEEE 754 bits, little-endian     |
//! | string                        | u32 LE byte length, then that many UTF-8 bytes |
//! | bytes                         | u32 LE byte length, then that many bytes       |
//! | identity                      | 32 bytes                                       |
//! | option<T>                     | tag `0x00` (none) or `0x01` then the value     |
//! | vec<T>                        | u32 LE element count, then each element        |
//! | struct                        | each field, in declaration order               |
//! | enum                          | variant index (1 byte), then its fields        |
//!
//! Version 1 had only bool, i32, i64, u32, u64, f64, string, bytes and
//! option of those, with the same bytes: every version-1 row is a valid
//! version-2 row of the same types.
//!
//! The same encoding is used for reducer arguments (one "row" of parameters)
//! and for index keys (the indexed column's value alone).

use crate::error::DecodeError;
use crate::limits::ROW_BYTES_MAX;
use crate::types::{AlgebraicType, Field};
use crate::value::Value;

/// The encoding version these functions implement.
pub const ROW_ENCODING_VERSION: u32 = 2;

const _: () = assert!(ROW_BYTES_MAX <= u32::MAX as usize);

/// Appends `value` as a value of type `ty`.
///
/// # Panics
/// If the value does not fit the type: callers convert and check first.
pub fn encode_value(value: &Value, ty: &AlgebraicType, out: &mut Vec<u8>) {
    assert!(value.fits(ty), "value {value:?} does not fit type {ty}");
    put(value, ty, out);
}

/// [`encode_value`] without the check, for values already checked.
fn put(value: &Value, ty: &AlgebraicType, out: &mut Vec<u8>) {
    if let AlgebraicType::Option(inner) = ty {
        if let Value::Null = value {
            out.push(0);
        } else {
            out.push(1);
            put(value, inner, out);
        }
        return;
    }
    match value {
        Value::Null => unreachable!("checked by fits"),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) | Value::Timestamp(v) | Value::Duration(v) => {
            out.extend_from_slice(&v.to_le_bytes())
        }
        Value::U128(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I128(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        Value::String(v) => put_len_prefixed(v.as_bytes(), out),
        Value::Bytes(v) => put_len_prefixed(v, out),
        Value::Identity(v) => out.extend_from_slice(&v[..]),
        Value::Array(items) => {
            let AlgebraicType::Vec(inner) = ty else {
                unreachable!("checked by fits")
            };
            put_len(items.len(), out);
            for item in items.iter() {
                put(item, inner, out);
            }
        }
        Value::Product(values) => {
            let AlgebraicType::Product(p) = ty else {
                unreachable!("checked by fits")
            };
            put_fields(values, &p.fields, out);
        }
        Value::Sum { tag, fields } => {
            let AlgebraicType::Sum(s) = ty else {
                unreachable!("checked by fits")
            };
            out.push(*tag);
            put_fields(fields, &s.variants[*tag as usize].fields, out);
        }
    }
}

fn put_fields(values: &[Value], fields: &[Field], out: &mut Vec<u8>) {
    for (v, f) in values.iter().zip(fields) {
        put(v, &f.ty, out);
    }
}

fn put_len(len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len).expect("value longer than u32::MAX");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_len_prefixed(bytes: &[u8], out: &mut Vec<u8>) {
    put_len(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// Encodes a whole row.
pub fn encode_row(values: &[Value], types: &[AlgebraicType]) -> Vec<u8> {
    assert_eq!(values.len(), types.len(), "row arity");
    let mut out = Vec::with_capacity(16 * values.len());
    for (value, ty) in values.iter().zip(types) {
        encode_value(value, ty, &mut out);
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

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn len_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.len()?;
        self.take(len)
    }

    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let raw = self.len_prefixed()?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 {
            column: self.column,
            offset,
        })
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        self.zero_or_one(|column, offset, byte| DecodeError::InvalidBool {
            column,
            offset,
            byte,
        })
    }

    /// Reads an option's tag: whether a value follows.
    fn some(&mut self) -> Result<bool, DecodeError> {
        self.zero_or_one(|column, offset, tag| DecodeError::InvalidOptionTag {
            column,
            offset,
            tag,
        })
    }

    /// A byte that must be `0x00` (false) or `0x01` (true); `invalid` names
    /// any other (column, offset, byte).
    fn zero_or_one(
        &mut self,
        invalid: fn(usize, usize, u8) -> DecodeError,
    ) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(invalid(self.column, offset, byte)),
        }
    }

    /// A `vec`'s element count. Every element takes at least one byte
    /// ([`AlgebraicType::validate`] refuses empty structs), so a count over
    /// the bytes left is refused before anything is allocated for it.
    fn count(&mut self) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let count = self.len()?;
        let available = self.bytes.len() - self.pos;
        if count > available {
            return Err(DecodeError::Truncated {
                column: self.column,
                offset,
                needed: count,
                available,
            });
        }
        Ok(count)
    }

    /// Reads an enum's variant tag, checked against its variant count.
    fn tag(&mut self, variants: usize) -> Result<u8, DecodeError> {
        let offset = self.pos;
        let tag = self.byte()?;
        if tag as usize >= variants {
            return Err(DecodeError::InvalidVariant {
                column: self.column,
                offset,
                tag,
                variants,
            });
        }
        Ok(tag)
    }

    /// Decodes the next value as column `column` of type `ty`.
    pub fn value(&mut self, column: usize, ty: &AlgebraicType) -> Result<Value, DecodeError> {
        self.column = column;
        self.read(ty)
    }

    fn read(&mut self, ty: &AlgebraicType) -> Result<Value, DecodeError> {
        use AlgebraicType as T;
        Ok(match ty {
            T::Bool => Value::Bool(self.bool()?),
            T::U8 => Value::U8(self.byte()?),
            T::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            T::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            T::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            T::U32 => Value::U32(u32::from_le_bytes(self.array()?)),
            T::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            T::U64 => Value::U64(u64::from_le_bytes(self.array()?)),
            T::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            T::Timestamp => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            T::Duration => Value::Duration(i64::from_le_bytes(self.array()?)),
            T::U128 => Value::U128(Box::new(u128::from_le_bytes(self.array()?))),
            T::I128 => Value::I128(Box::new(i128::from_le_bytes(self.array()?))),
            T::F32 => Value::F32(f32::from_bits(u32::from_le_bytes(self.array()?))),
            T::F64 => Value::F64(f64::from_bits(u64::from_le_bytes(self.array()?))),
            T::String => Value::String(self.string()?.into()),
            T::Bytes => Value::Bytes(self.len_prefixed()?.into()),
            T::Identity => Value::Identity(Box::new(self.array()?)),
            T::Option(inner) => {
                if self.some()? {
                    self.read(inner)?
                } else {
                    Value::Null
                }
            }
            T::Vec(inner) => {
                let count = self.count()?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.read(inner)?);
                }
                Value::Array(items.into())
            }
            T::Product(p) => Value::Product(self.read_fields(&p.fields)?),
            T::Sum(s) => {
                let tag = self.tag(s.variants.len())?;
                let fields = self.read_fields(&s.variants[tag as usize].fields)?;
                Value::Sum { tag, fields }
            }
        })
    }

    fn read_fields(&mut self, fields: &[Field]) -> Result<Box<[Value]>, DecodeError> {
        fields.iter().map(|f| self.read(&f.ty)).collect()
    }

    /// Checks the next value as column `column` of type `ty` without building
    /// it.
    pub fn skip(&mut self, column: usize, ty: &AlgebraicType) -> Result<(), DecodeError> {
        self.column = column;
        self.pass(ty)
    }

    fn pass(&mut self, ty: &AlgebraicType) -> Result<(), DecodeError> {
        use AlgebraicType as T;
        if let Some(n) = ty.fixed_len()
            && *ty != T::Bool
        {
            return self.take(n).map(drop);
        }
        match ty {
            T::Bool => self.bool().map(drop),
            T::String => self.string().map(drop),
            T::Bytes => self.len_prefixed().map(drop),
            T::Option(inner) => {
                if self.some()? {
                    self.pass(inner)?;
                }
                Ok(())
            }
            T::Vec(inner) => {
                let count = self.count()?;
                if let Some(n) = inner.fixed_len()
                    && **inner != T::Bool
                {
                    // Checked by count: the product fits in what is left.
                    return self.take(count * n).map(drop);
                }
                for _ in 0..count {
                    self.pass(inner)?;
                }
                Ok(())
            }
            T::Product(p) => self.pass_fields(&p.fields),
            T::Sum(s) => {
                let tag = self.tag(s.variants.len())?;
                self.pass_fields(&s.variants[tag as usize].fields)
            }
            _ => unreachable!("fixed-width types are taken above"),
        }
    }

    fn pass_fields(&mut self, fields: &[Field]) -> Result<(), DecodeError> {
        fields.iter().try_for_each(|f| self.pass(&f.ty))
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
pub fn decode_row(bytes: &[u8], types: &[AlgebraicType]) -> Result<Vec<Value>, DecodeError> {
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    let row = types
        .iter()
        .enumerate()
        .map(|(i, ty)| reader.value(i, ty))
        .collect::<Result<Vec<_>, _>>()?;
    reader.finish()?;
    Ok(row)
}

/// Decodes a whole row into `out` (cleared first), validating every byte
/// but building only the columns flagged in `wanted` (indexed by column);
/// the others are [`Value::Null`]. For readers that look at a few columns
/// of many rows and reuse one buffer.
pub fn decode_row_into(
    bytes: &[u8],
    types: &[AlgebraicType],
    wanted: &[bool],
    out: &mut Vec<Value>,
) -> Result<(), DecodeError> {
    debug_assert_eq!(types.len(), wanted.len());
    check_len(bytes)?;
    out.clear();
    let mut reader = Reader::new(bytes);
    for (i, (ty, want)) in types.iter().zip(wanted).enumerate() {
        if *want {
            out.push(reader.value(i, ty)?);
        } else {
            reader.skip(i, ty)?;
            out.push(Value::Null);
        }
    }
    reader.finish()
}

/// Decodes a key: one value of type `ty` and nothing else.
pub fn decode_key(bytes: &[u8], ty: &AlgebraicType) -> Result<Value, DecodeError> {
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    let value = reader.value(0, ty)?;
    reader.finish()?;
    Ok(value)
}

/// Decodes the key of an index over columns of `types`, or a prefix of it:
/// the values of the first one or more columns, one after the other. The
/// encoding delimits each value, so the prefix's length is known without a
/// count.
pub fn decode_key_prefix(bytes: &[u8], types: &[AlgebraicType]) -> Result<Vec<Value>, DecodeError> {
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    let mut out = Vec::with_capacity(types.len());
    for (column, ty) in types.iter().enumerate() {
        out.push(reader.value(column, ty)?);
        if reader.position() == bytes.len() {
            break;
        }
    }
    reader.finish()?;
    Ok(out)
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
    types: &[AlgebraicType],
    wanted: &[bool],
    out: &mut Vec<Extracted>,
) -> Result<(), DecodeError> {
    debug_assert_eq!(types.len(), wanted.len());
    check_len(bytes)?;
    let mut reader = Reader::new(bytes);
    for (i, (ty, want)) in types.iter().zip(wanted).enumerate() {
        if *want {
            let offset = reader.position();
            let value = reader.value(i, ty)?;
            out.push(Extracted { offset, value });
        } else {
            reader.skip(i, ty)?;
        }
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Variant, VariantShape};
    use AlgebraicType as T;

    fn opt(t: AlgebraicType) -> AlgebraicType {
        T::option(t)
    }

    #[test]
    fn decode_row_into_builds_only_wanted_columns_and_still_validates() {
        let types = [T::U64, opt(T::String), T::String, T::I32];
        let values = [
            Value::U64(7),
            Value::String("skipped".into()),
            Value::String("kept".into()),
            Value::I32(-3),
        ];
        let bytes = encode_row(&values, &types);
        let mut out = vec![Value::Bool(true)];
        decode_row_into(&bytes, &types, &[true, false, true, false], &mut out).unwrap();
        assert_eq!(
            out,
            [
                Value::U64(7),
                Value::Null,
                Value::String("kept".into()),
                Value::Null
            ]
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_row_into(&longer, &types, &[true, false, false, false], &mut out).is_err());
        let mut bad = bytes.clone();
        bad[8] = 2; // the skipped option's tag
        assert!(decode_row_into(&bad, &types, &[true, false, false, false], &mut out).is_err());
    }

    /// Golden bytes of version 1 (docs/row-encoding.md, first example):
    /// unchanged in version 2.
    #[test]
    fn golden_row() {
        let types = [
            T::Bool,
            T::I32,
            T::U64,
            T::F64,
            T::String,
            T::Bytes,
            opt(T::I64),
            opt(T::U32),
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

    fn field(name: &str, ty: AlgebraicType) -> Field {
        Field {
            name: name.into(),
            ty,
        }
    }

    /// `enum Shape { Dot, Circle(f32), Rect { w: u16, h: u16 } }`
    pub(crate) fn shape() -> AlgebraicType {
        T::sum(
            "Shape",
            vec![
                Variant {
                    name: "Dot".into(),
                    shape: VariantShape::Unit,
                    fields: vec![],
                },
                Variant {
                    name: "Circle".into(),
                    shape: VariantShape::Tuple,
                    fields: vec![field("0", T::F32)],
                },
                Variant {
                    name: "Rect".into(),
                    shape: VariantShape::Struct,
                    fields: vec![field("w", T::U16), field("h", T::U16)],
                },
            ],
        )
    }

    /// Golden bytes of every type version 2 adds (docs/row-encoding.md,
    /// second example), one column each.
    #[test]
    fn golden_row_v2() {
        let item = T::product(
            "Item",
            vec![field("n", T::U8), field("tags", T::vec(T::String))],
        );
        let cases: Vec<(AlgebraicType, Value, Vec<u8>)> = vec![
            (T::U8, Value::U8(0xFE), vec![0xFE]),
            (T::I8, Value::I8(-2), vec![0xFE]),
            (T::U16, Value::U16(0x0102), vec![0x02, 0x01]),
            (T::I16, Value::I16(-2), vec![0xFE, 0xFF]),
            (
                T::U128,
                Value::U128(Box::new(1 << 64 | 2)),
                [&[2, 0, 0, 0, 0, 0, 0, 0][..], &[1, 0, 0, 0, 0, 0, 0, 0]].concat(),
            ),
            (T::I128, Value::I128(Box::new(-1)), vec![0xFF; 16]),
            (T::F32, Value::F32(1.5), vec![0x00, 0x00, 0xC0, 0x3F]),
            (
                T::Identity,
                Value::Identity(Box::new([0xAA; 32])),
                vec![0xAA; 32],
            ),
            (T::Timestamp, Value::Timestamp(-1), vec![0xFF; 8]),
            (
                T::Duration,
                Value::Duration(1_000),
                vec![0xE8, 0x03, 0, 0, 0, 0, 0, 0],
            ),
            (
                T::vec(T::U16),
                Value::Array(vec![Value::U16(1), Value::U16(2)].into()),
                vec![2, 0, 0, 0, 1, 0, 2, 0],
            ),
            (
                opt(T::vec(T::Bool)),
                Value::Array(vec![Value::Bool(true)].into()),
                vec![1, 1, 0, 0, 0, 1],
            ),
            (
                item.clone(),
                Value::Product(
                    vec![
                        Value::U8(3),
                        Value::Array(vec![Value::String("a".into())].into()),
                    ]
                    .into(),
                ),
                vec![3, 1, 0, 0, 0, 1, 0, 0, 0, b'a'],
            ),
            (
                shape(),
                Value::Sum {
                    tag: 0,
                    fields: Box::new([]),
                },
                vec![0],
            ),
            (
                shape(),
                Value::Sum {
                    tag: 2,
                    fields: vec![Value::U16(3), Value::U16(4)].into(),
                },
                vec![2, 3, 0, 4, 0],
            ),
        ];
        for (ty, value, bytes) in cases {
            let mut out = Vec::new();
            encode_value(&value, &ty, &mut out);
            assert_eq!(out, bytes, "{ty}");
            assert_eq!(decode_key(&bytes, &ty).unwrap(), value, "{ty}");
            // Skipping checks the same bytes as decoding.
            let mut reader = Reader::new(&bytes);
            reader.skip(0, &ty).unwrap();
            reader.finish().unwrap();
        }
    }

    #[test]
    fn rejects_malformed() {
        let u = [T::U64];
        assert!(matches!(
            decode_row(&[1, 2, 3], &u),
            Err(DecodeError::Truncated { needed: 8, .. })
        ));
        assert!(matches!(
            decode_row(&[0; 9], &u),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
        let b = [T::Bool];
        assert!(matches!(
            decode_row(&[2], &b),
            Err(DecodeError::InvalidBool { byte: 2, .. })
        ));
        let s = [T::String];
        assert!(matches!(
            decode_row(&[2, 0, 0, 0, 0xFF, 0xFE], &s),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
        let o = [opt(T::U32)];
        assert!(matches!(
            decode_row(&[9], &o),
            Err(DecodeError::InvalidOptionTag { tag: 9, .. })
        ));
        // A length prefix larger than the rest of the row.
        assert!(matches!(
            decode_row(&[0xFF, 0xFF, 0xFF, 0xFF], &s),
            Err(DecodeError::Truncated { .. })
        ));
        // An element count larger than the bytes left is refused before
        // anything is allocated for it.
        let v = [T::vec(T::vec(T::U8))];
        assert!(matches!(
            decode_row(&[0xFF, 0xFF, 0xFF, 0x7F, 0], &v),
            Err(DecodeError::Truncated { offset: 0, .. })
        ));
        let e = [shape()];
        for bytes in [&[3u8][..], &[0xFF]] {
            assert!(matches!(
                decode_row(bytes, &e),
                Err(DecodeError::InvalidVariant { variants: 3, .. })
            ));
            let mut reader = Reader::new(bytes);
            assert!(reader.skip(0, &e[0]).is_err());
        }
        // A bool inside a vec is checked when skipped, too.
        let mut reader = Reader::new(&[1, 0, 0, 0, 7]);
        assert!(matches!(
            reader.skip(0, &T::vec(T::Bool)),
            Err(DecodeError::InvalidBool { byte: 7, .. })
        ));
    }
}
