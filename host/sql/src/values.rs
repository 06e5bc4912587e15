//! How SQL compares values: NULL is unknown, numbers compare by value
//! whatever their width, everything else by the row encoding's order
//! (docs/sql.md "Values").

use std::cmp::Ordering;

use interstice_store::{AlgebraicType, Value};

use crate::plan::LikeTok;

/// A literal of the query text, before it meets a type.
#[derive(Clone, Debug)]
pub(crate) enum Lit {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
}

impl Lit {
    /// The literal alone: integers as `i64` (`i128` past it), decimals as
    /// `f64`.
    pub fn default_typed(&self) -> (Value, AlgebraicType) {
        match self {
            Lit::Int(n) => match i64::try_from(*n) {
                Ok(v) => (Value::I64(v), AlgebraicType::I64),
                Err(_) => (Value::I128(Box::new(*n)), AlgebraicType::I128),
            },
            Lit::Float(f) => (Value::F64(*f), AlgebraicType::F64),
            Lit::Str(s) => (Value::String(s.as_str().into()), AlgebraicType::String),
            Lit::Bool(b) => (Value::Bool(*b), AlgebraicType::Bool),
            Lit::Null => (Value::Null, AlgebraicType::option(AlgebraicType::Bool)),
        }
    }

    /// The literal as a value to compare with a value of `ty`. An integer
    /// outside `ty`'s range stays a wider integer (it then equals nothing
    /// and compares as the number it is); a string is read as JSON reads
    /// one of that type: an identity's or bytes' hex, an RFC 3339
    /// timestamp, an enum variant's name.
    pub fn coerce(&self, ty: &AlgebraicType) -> Result<Value, String> {
        use AlgebraicType as T;
        let base = base(ty);
        let refuse = || {
            format!(
                "{} cannot be compared with a value of type {ty}",
                self.describe()
            )
        };
        Ok(match (self, base) {
            (Lit::Null, _) => Value::Null,
            (Lit::Int(n), t) if is_integer(t) => exact_int(*n, t).unwrap_or_else(|| wide(*n)),
            (Lit::Int(n), T::F64) => Value::F64(*n as f64),
            (Lit::Int(n), T::F32) => Value::F32(*n as f32),
            (Lit::Int(n), T::Timestamp) => {
                Value::Timestamp(i64::try_from(*n).map_err(|_| refuse())?)
            }
            (Lit::Int(n), T::Duration) => Value::Duration(i64::try_from(*n).map_err(|_| refuse())?),
            (Lit::Float(f), T::F32) => Value::F32(*f as f32),
            (Lit::Float(f), t) if is_integer(t) || *t == T::F64 => Value::F64(*f),
            (Lit::Bool(b), T::Bool) => Value::Bool(*b),
            (Lit::Str(s), T::String) => Value::String(s.as_str().into()),
            (Lit::Str(s), t) => {
                let json = serde_json::Value::String(s.clone());
                interstice_store::json::value_from_json(&json, t)
                    .map_err(|reason| format!("{}: {reason}", refuse()))?
            }
            _ => return Err(refuse()),
        })
    }

    fn describe(&self) -> String {
        match self {
            Lit::Int(n) => format!("the integer {n}"),
            Lit::Float(f) => format!("the number {f}"),
            Lit::Str(s) => format!("the string '{s}'"),
            Lit::Bool(b) => format!("{b}"),
            Lit::Null => "NULL".to_string(),
        }
    }
}

fn wide(n: i128) -> Value {
    Value::I128(Box::new(n))
}

/// `ty` without its `option`.
pub(crate) fn base(ty: &AlgebraicType) -> &AlgebraicType {
    match ty {
        AlgebraicType::Option(inner) => inner,
        other => other,
    }
}

pub(crate) fn is_integer(ty: &AlgebraicType) -> bool {
    use AlgebraicType as T;
    matches!(
        ty,
        T::U8 | T::U16 | T::U32 | T::U64 | T::U128 | T::I8 | T::I16 | T::I32 | T::I64 | T::I128
    )
}

pub(crate) fn is_float(ty: &AlgebraicType) -> bool {
    matches!(ty, AlgebraicType::F32 | AlgebraicType::F64)
}

pub(crate) fn is_number(ty: &AlgebraicType) -> bool {
    is_integer(ty) || is_float(ty)
}

/// Whether values of the two types may be compared.
pub(crate) fn comparable(a: &AlgebraicType, b: &AlgebraicType) -> bool {
    let (a, b) = (base(a), base(b));
    (is_number(a) && is_number(b)) || a == b
}

/// `n` as a value of integer type `ty`, when it is in range.
fn exact_int(n: i128, ty: &AlgebraicType) -> Option<Value> {
    use AlgebraicType as T;
    Some(match ty {
        T::U8 => Value::U8(n.try_into().ok()?),
        T::U16 => Value::U16(n.try_into().ok()?),
        T::U32 => Value::U32(n.try_into().ok()?),
        T::U64 => Value::U64(n.try_into().ok()?),
        T::U128 => Value::U128(Box::new(n.try_into().ok()?)),
        T::I8 => Value::I8(n.try_into().ok()?),
        T::I16 => Value::I16(n.try_into().ok()?),
        T::I32 => Value::I32(n.try_into().ok()?),
        T::I64 => Value::I64(n.try_into().ok()?),
        T::I128 => Value::I128(Box::new(n)),
        _ => return None,
    })
}

/// A number as SQL compares it.
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    Some(match v {
        Value::U8(x) => Num::Int(*x as i128),
        Value::U16(x) => Num::Int(*x as i128),
        Value::U32(x) => Num::Int(*x as i128),
        Value::U64(x) => Num::Int(*x as i128),
        Value::U128(x) => match i128::try_from(**x) {
            Ok(i) => Num::Int(i),
            Err(_) => Num::Float(**x as f64),
        },
        Value::I8(x) => Num::Int(*x as i128),
        Value::I16(x) => Num::Int(*x as i128),
        Value::I32(x) => Num::Int(*x as i128),
        Value::I64(x) => Num::Int(*x as i128),
        Value::I128(x) => Num::Int(**x),
        Value::F32(x) => Num::Float(*x as f64),
        Value::F64(x) => Num::Float(*x),
        _ => return None,
    })
}

/// Floats by value (`-0 = 0`), NaN equal to itself and above every number.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match a.partial_cmp(&b) {
        Some(o) => o,
        None => a.is_nan().cmp(&b.is_nan()),
    }
}

fn num_cmp(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => a.cmp(&b),
        (Num::Float(a), Num::Float(b)) => float_cmp(a, b),
        (Num::Int(a), Num::Float(b)) => float_cmp(a as f64, b),
        (Num::Float(a), Num::Int(b)) => float_cmp(a, b as f64),
    }
}

/// Two values neither of which is NULL.
fn cmp_present(a: &Value, b: &Value) -> Ordering {
    if let (Value::U64(x), Value::U64(y)) = (a, b) {
        return x.cmp(y);
    }
    match (num(a), num(b)) {
        (Some(x), Some(y)) => num_cmp(x, y),
        _ => a.cmp(b),
    }
}

/// How SQL compares two values: unknown when either is NULL.
pub(crate) fn sql_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        _ => Some(cmp_present(a, b)),
    }
}

/// The order `ORDER BY`, `MIN` and `MAX` use: NULL before every value.
pub(crate) fn order_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => cmp_present(a, b),
    }
}

/// A value as a hash-join or grouping key: numbers that SQL finds equal
/// become the same value (integers and integral floats as `i128`, every
/// NaN the same NaN).
pub(crate) fn normalized(v: &Value) -> Value {
    match num(v) {
        Some(Num::Int(i)) => Value::I128(Box::new(i)),
        Some(Num::Float(f)) if f.is_nan() => Value::F64(f64::NAN),
        Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() < 1e38 => {
            Value::I128(Box::new(f as i128))
        }
        Some(Num::Float(f)) => Value::F64(f),
        None => v.clone(),
    }
}

/// `v` as a value of `ty` (an index's column) that SQL finds equal to it,
/// if there is one: the same value, or the same number in another width.
pub(crate) fn convert_exact(v: &Value, ty: &AlgebraicType) -> Option<Value> {
    let ty = base(ty);
    if matches!(v, Value::Null) {
        return None;
    }
    if v.fits(ty) {
        return Some(v.clone());
    }
    match num(v)? {
        Num::Int(i) => exact_int(i, ty),
        Num::Float(f) if f.fract() == 0.0 && f.abs() < 1e38 => exact_int(f as i128, ty),
        Num::Float(_) => None,
    }
}

/// A `LIKE` pattern as tokens: `%` any run, `_` one character, `escape`
/// (when given) makes the next character literal.
pub(crate) fn compile_like(pattern: &str, escape: Option<char>) -> Result<Vec<LikeTok>, String> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            match chars.next() {
                Some(next) => out.push(LikeTok::Char(next)),
                None => return Err("a LIKE pattern ends with its escape character".into()),
            }
        } else if c == '%' {
            if out.last() != Some(&LikeTok::Any) {
                out.push(LikeTok::Any);
            }
        } else if c == '_' {
            out.push(LikeTok::One);
        } else {
            out.push(LikeTok::Char(c));
        }
    }
    Ok(out)
}

/// Whether `s` matches the pattern (case-sensitive; characters, not bytes).
/// Greedy with one backtrack point: at most `s.len() × pattern.len()`
/// steps.
pub(crate) fn like(s: &str, pattern: &[LikeTok]) -> bool {
    let s: Vec<char> = s.chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pattern.get(j) {
            Some(LikeTok::Any) => {
                star = Some((j, i));
                j += 1;
            }
            Some(LikeTok::One) => {
                i += 1;
                j += 1;
            }
            Some(LikeTok::Char(c)) if *c == s[i] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    pattern[j..].iter().all(|t| *t == LikeTok::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, p: &str) -> bool {
        like(s, &compile_like(p, Some('\\')).unwrap())
    }

    #[test]
    fn like_matches_as_sql_says() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "ab"));
        assert!(m("abc", "a%"));
        assert!(m("abc", "%c"));
        assert!(m("abc", "%b%"));
        assert!(m("abc", "a_c"));
        assert!(!m("ac", "a_c"));
        assert!(m("", "%"));
        assert!(!m("", "_"));
        assert!(m("aXbXc", "a%b%c"));
        assert!(!m("aXbXd", "a%b%c"));
        assert!(m("mississippi", "%iss%ppi"));
        assert!(m("50%", "50\\%"));
        assert!(!m("500", "50\\%"));
        assert!(m("ünï", "_n_"));
        assert!(!m("ABC", "abc"), "case-sensitive");
    }

    #[test]
    fn numbers_compare_by_value_across_widths() {
        assert_eq!(
            sql_cmp(&Value::U8(3), &Value::I64(3)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            sql_cmp(&Value::I32(-1), &Value::U64(0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            sql_cmp(&Value::F64(-0.0), &Value::F64(0.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            sql_cmp(&Value::F64(2.5), &Value::U32(2)),
            Some(Ordering::Greater)
        );
        assert_eq!(sql_cmp(&Value::Null, &Value::U32(2)), None);
        assert_eq!(order_cmp(&Value::Null, &Value::I8(-9)), Ordering::Less);
        assert_eq!(normalized(&Value::F64(2.0)), normalized(&Value::U16(2)));
        assert_ne!(normalized(&Value::F64(2.5)), normalized(&Value::U16(2)));
        assert_eq!(
            convert_exact(&Value::I64(7), &AlgebraicType::U8),
            Some(Value::U8(7))
        );
        assert_eq!(convert_exact(&Value::I64(700), &AlgebraicType::U8), None);
        assert_eq!(convert_exact(&Value::F64(7.5), &AlgebraicType::U8), None);
    }

    #[test]
    fn literals_take_the_type_they_meet() {
        assert_eq!(
            Lit::Int(5).coerce(&AlgebraicType::U8).unwrap(),
            Value::U8(5)
        );
        assert!(matches!(
            Lit::Int(300).coerce(&AlgebraicType::U8).unwrap(),
            Value::I128(_)
        ));
        assert!(Lit::Str("x".into()).coerce(&AlgebraicType::U8).is_err());
        assert!(Lit::Int(1).coerce(&AlgebraicType::String).is_err());
        let ts = Lit::Str("1970-01-01T00:00:01Z".into())
            .coerce(&AlgebraicType::Timestamp)
            .unwrap();
        assert_eq!(ts, Value::Timestamp(1_000_000));
    }
}
