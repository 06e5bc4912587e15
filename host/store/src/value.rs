//! Column values as the host handles them outside the row bytes: index keys,
//! JSON conversion, reducer arguments.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::types::AlgebraicType;

/// One value of an [`AlgebraicType`]. `Null` is the `none` of an option; a
/// `some` value is represented by the inner value itself (an option never
/// holds an option directly, [`AlgebraicType::validate`]).
///
/// Values order as `docs/row-encoding.md` says: by value within a type
/// (integers numerically, floats by IEEE 754 total order, strings and bytes
/// bytewise, `false < true`, `none` first, products field by field, sums by
/// variant and then fields, `vec` lexicographically).
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    U128(Box<u128>),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    I128(Box<i128>),
    F32(f32),
    F64(f64),
    String(Box<str>),
    Bytes(Box<[u8]>),
    Identity(Box<[u8; 32]>),
    Timestamp(i64),
    Duration(i64),
    /// The elements of a `vec<T>`.
    Array(Box<[Value]>),
    /// A struct's fields, in declaration order.
    Product(Box<[Value]>),
    /// One variant of an enum (its index) and its fields.
    Sum {
        tag: u8,
        fields: Box<[Value]>,
    },
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::U8(_) => 2,
            Value::U16(_) => 3,
            Value::U32(_) => 4,
            Value::U64(_) => 5,
            Value::U128(_) => 6,
            Value::I8(_) => 7,
            Value::I16(_) => 8,
            Value::I32(_) => 9,
            Value::I64(_) => 10,
            Value::I128(_) => 11,
            Value::F32(_) => 12,
            Value::F64(_) => 13,
            Value::String(_) => 14,
            Value::Bytes(_) => 15,
            Value::Identity(_) => 16,
            Value::Timestamp(_) => 17,
            Value::Duration(_) => 18,
            Value::Array(_) => 19,
            Value::Product(_) => 20,
            Value::Sum { .. } => 21,
        }
    }

    /// Whether this value may be stored as a value of type `ty`.
    pub fn fits(&self, ty: &AlgebraicType) -> bool {
        use AlgebraicType as T;
        match (self, ty) {
            (Value::Null, T::Option(_)) => true,
            (v, T::Option(inner)) => v.fits(inner),
            (Value::Bool(_), T::Bool)
            | (Value::U8(_), T::U8)
            | (Value::U16(_), T::U16)
            | (Value::U32(_), T::U32)
            | (Value::U64(_), T::U64)
            | (Value::U128(_), T::U128)
            | (Value::I8(_), T::I8)
            | (Value::I16(_), T::I16)
            | (Value::I32(_), T::I32)
            | (Value::I64(_), T::I64)
            | (Value::I128(_), T::I128)
            | (Value::F32(_), T::F32)
            | (Value::F64(_), T::F64)
            | (Value::String(_), T::String)
            | (Value::Bytes(_), T::Bytes)
            | (Value::Identity(_), T::Identity)
            | (Value::Timestamp(_), T::Timestamp)
            | (Value::Duration(_), T::Duration) => true,
            (Value::Array(items), T::Vec(inner)) => items.iter().all(|v| v.fits(inner)),
            (Value::Product(values), T::Product(p)) => {
                values.len() == p.fields.len()
                    && values.iter().zip(&p.fields).all(|(v, f)| v.fits(&f.ty))
            }
            (Value::Sum { tag, fields }, T::Sum(s)) => {
                s.variants.get(*tag as usize).is_some_and(|variant| {
                    fields.len() == variant.fields.len()
                        && fields
                            .iter()
                            .zip(&variant.fields)
                            .all(|(v, f)| v.fits(&f.ty))
                })
            }
            _ => false,
        }
    }

    /// The value of an integer column as `u64` bits, for auto-increment.
    pub fn as_auto_inc(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => Some(v as u8 as u64),
            Value::I16(v) => Some(v as u16 as u64),
            Value::I32(v) => Some(v as u32 as u64),
            Value::I64(v) => Some(v as u64),
            _ => None,
        }
    }

    /// The auto-increment value `n` as a value of `ty`, if it fits.
    pub fn from_auto_inc(n: u64, ty: &AlgebraicType) -> Option<Value> {
        use AlgebraicType as T;
        Some(match ty {
            T::U8 => Value::U8(n.try_into().ok()?),
            T::U16 => Value::U16(n.try_into().ok()?),
            T::U32 => Value::U32(n.try_into().ok()?),
            T::U64 => Value::U64(n),
            T::I8 => Value::I8(n.try_into().ok()?),
            T::I16 => Value::I16(n.try_into().ok()?),
            T::I32 => Value::I32(n.try_into().ok()?),
            T::I64 => Value::I64(n.try_into().ok()?),
            _ => return None,
        })
    }
}

impl Ord for Value {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Integer keys are by far the most common: compare them first.
        if let (Value::U64(a), Value::U64(b)) = (self, other) {
            return a.cmp(b);
        }
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::U8(a), Value::U8(b)) => a.cmp(b),
            (Value::U16(a), Value::U16(b)) => a.cmp(b),
            (Value::U32(a), Value::U32(b)) => a.cmp(b),
            (Value::U128(a), Value::U128(b)) => a.cmp(b),
            (Value::I8(a), Value::I8(b)) => a.cmp(b),
            (Value::I16(a), Value::I16(b)) => a.cmp(b),
            (Value::I32(a), Value::I32(b)) => a.cmp(b),
            (Value::I64(a), Value::I64(b)) => a.cmp(b),
            (Value::I128(a), Value::I128(b)) => a.cmp(b),
            (Value::F32(a), Value::F32(b)) => a.total_cmp(b),
            (Value::F64(a), Value::F64(b)) => a.total_cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Identity(a), Value::Identity(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Duration(a), Value::Duration(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            (Value::Product(a), Value::Product(b)) => a.cmp(b),
            (Value::Sum { tag: ta, fields: a }, Value::Sum { tag: tb, fields: b }) => {
                ta.cmp(tb).then_with(|| a.cmp(b))
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl Hash for Value {
    /// Consistent with `Eq`: floats are equal exactly when their bits are
    /// (total order), so they hash by bits.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.rank());
        match self {
            Value::Null => {}
            Value::Bool(v) => v.hash(state),
            Value::U8(v) => v.hash(state),
            Value::U16(v) => v.hash(state),
            Value::U32(v) => v.hash(state),
            Value::U64(v) => v.hash(state),
            Value::U128(v) => v.hash(state),
            Value::I8(v) => v.hash(state),
            Value::I16(v) => v.hash(state),
            Value::I32(v) => v.hash(state),
            Value::I64(v) => v.hash(state),
            Value::I128(v) => v.hash(state),
            Value::F32(v) => v.to_bits().hash(state),
            Value::F64(v) => v.to_bits().hash(state),
            Value::String(v) => v.hash(state),
            Value::Bytes(v) => v.hash(state),
            Value::Identity(v) => v.hash(state),
            Value::Timestamp(v) | Value::Duration(v) => v.hash(state),
            Value::Array(v) | Value::Product(v) => v.hash(state),
            Value::Sum { tag, fields } => {
                tag.hash(state);
                fields.hash(state);
            }
        }
    }
}

fn hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn list(f: &mut fmt::Formatter<'_>, open: &str, values: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    f.write_str(close)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::U8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::U128(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::I64(v) | Value::Timestamp(v) | Value::Duration(v) => write!(f, "{v}"),
            Value::I128(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::Bytes(v) => {
                f.write_str("0x")?;
                hex(f, v)
            }
            Value::Identity(v) => hex(f, &v[..]),
            Value::Array(v) => list(f, "[", v, "]"),
            Value::Product(v) => list(f, "(", v, ")"),
            Value::Sum { tag, fields } => list(f, &format!("#{tag}("), fields, ")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_stays_three_words() {
        // Index keys are values: growing them grows every index.
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn order_follows_the_documented_rules() {
        let sorted = [Value::Null, Value::Bool(false), Value::Bool(true)];
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        assert!(Value::F64(-0.0) < Value::F64(0.0));
        assert!(Value::F32(f32::NEG_INFINITY) < Value::F32(-1.0));
        let sum = |tag, v: u8| Value::Sum {
            tag,
            fields: vec![Value::U8(v)].into(),
        };
        assert!(sum(0, 9) < sum(1, 0));
        assert!(sum(1, 0) < sum(1, 1));
        let arr = |v: &[u8]| Value::Array(v.iter().map(|b| Value::U8(*b)).collect());
        assert!(arr(&[1]) < arr(&[1, 0]));
        assert!(arr(&[1, 0]) < arr(&[2]));
        let prod = |a: i8, b: i8| Value::Product(vec![Value::I8(a), Value::I8(b)].into());
        assert!(prod(-1, 9) < prod(0, -9));
        assert!(Value::I128(Box::new(-1)) < Value::I128(Box::new(i128::MAX)));
    }
}
