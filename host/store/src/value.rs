//! Column values as the host handles them outside the row bytes: index keys,
//! JSON conversion, reducer arguments.

use std::cmp::Ordering;
use std::fmt;

use crate::schema::{ColumnType, ScalarType};

/// One column value. `Null` is the `none` of an optional column; a `some`
/// value is represented by the inner value itself.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    U32(u32),
    U64(u64),
    F64(f64),
    String(Box<str>),
    Bytes(Box<[u8]>),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I32(_) => 2,
            Value::I64(_) => 3,
            Value::U32(_) => 4,
            Value::U64(_) => 5,
            Value::F64(_) => 6,
            Value::String(_) => 7,
            Value::Bytes(_) => 8,
        }
    }

    /// Whether this value may be stored in a column of type `ty`.
    pub fn fits(&self, ty: ColumnType) -> bool {
        match (self, ty.scalar) {
            (Value::Null, _) => ty.optional,
            (Value::Bool(_), ScalarType::Bool)
            | (Value::I32(_), ScalarType::I32)
            | (Value::I64(_), ScalarType::I64)
            | (Value::U32(_), ScalarType::U32)
            | (Value::U64(_), ScalarType::U64)
            | (Value::F64(_), ScalarType::F64)
            | (Value::String(_), ScalarType::String)
            | (Value::Bytes(_), ScalarType::Bytes) => true,
            _ => false,
        }
    }

    /// The value of an integer column as `u64` bits, for auto-increment.
    pub fn as_auto_inc(&self) -> Option<u64> {
        match *self {
            Value::I32(v) => Some(v as u32 as u64),
            Value::I64(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            _ => None,
        }
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
            (Value::I32(a), Value::I32(b)) => a.cmp(b),
            (Value::I64(a), Value::I64(b)) => a.cmp(b),
            (Value::U32(a), Value::U32(b)) => a.cmp(b),
            (Value::U64(a), Value::U64(b)) => a.cmp(b),
            (Value::F64(a), Value::F64(b)) => a.total_cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
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

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::Bytes(v) => {
                f.write_str("0x")?;
                for b in v.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}
