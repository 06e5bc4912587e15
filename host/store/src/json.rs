//! JSON views of values and rows, converted through declared types
//! (`docs/row-encoding.md`, "JSON"):
//!
//! | type | JSON |
//! |------|------|
//! | bool | `true` / `false` |
//! | 8- to 64-bit integers | a number; a string of digits is also accepted |
//! | u128, i128 | a string of decimal digits; a number is also accepted |
//! | f32, f64 | a number; `"NaN"`, `"Infinity"`, `"-Infinity"` for those |
//! | string | a string |
//! | bytes | a string of hex digits (`"00ff"`) |
//! | identity | a string of 64 hex digits |
//! | timestamp | RFC 3339 in UTC with microseconds; an integer of µs is also accepted |
//! | duration | an integer of µs |
//! | option<T> | `null` for none, else the JSON of `T` |
//! | vec<T> | an array |
//! | struct | an object keyed by field name |
//! | enum | `"Unit"`, `{"Tuple": v}`, `{"Tuple": [v1, v2]}`, `{"Struct": {"f": v}}` |
//!
//! Every refusal names the path of the offending value:
//! `inventory[3].kind: unknown variant "Sward"`.

use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use crate::codec;
use crate::error::DecodeError;
use crate::schema::{ParamDef, TableDef};
use crate::types::{AlgebraicType, Field, VariantShape};
use crate::value::Value;

/// JSON that does not fit the declared types. `field` is the path of the
/// offending value, starting with the column or parameter name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    #[error("field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("expected {expected} arguments, got {got}")]
    Arity { expected: usize, got: usize },
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("arguments must be a JSON array or object, got {0}")]
    Shape(&'static str),
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A refusal deep inside a value: the reason, and the path to it from the
/// value converted, innermost step last.
struct Refusal {
    path: Vec<Step>,
    reason: String,
}

enum Step {
    Index(usize),
    Field(String),
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Self {
        Refusal {
            path: Vec::new(),
            reason: reason.into(),
        }
    }

    /// The same refusal, one step further out.
    fn at(mut self, step: Step) -> Self {
        self.path.push(step);
        self
    }

    /// The path after `base`: `base[3].kind`.
    fn path_from(&self, base: &str) -> String {
        let mut out = base.to_string();
        for step in self.path.iter().rev() {
            match step {
                Step::Index(i) => out.push_str(&format!("[{i}]")),
                Step::Field(f) if out.is_empty() => out.push_str(f),
                Step::Field(f) => {
                    out.push('.');
                    out.push_str(f);
                }
            }
        }
        out
    }

    fn message(&self) -> String {
        if self.path.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.path_from(""), self.reason)
        }
    }
}

type Converted = Result<Value, Refusal>;

fn int<T: TryFrom<i128>>(json: &Json) -> Result<T, Refusal> {
    let wide: i128 = match json {
        Json::Number(n) => {
            if let Some(v) = n.as_u64() {
                v as i128
            } else if let Some(v) = n.as_i64() {
                v as i128
            } else {
                return Err(Refusal::new(format!("{n} is not an integer")));
            }
        }
        Json::String(s) => s
            .parse()
            .map_err(|_| Refusal::new(format!("{s:?} is not an integer")))?,
        other => {
            return Err(Refusal::new(format!(
                "expected an integer, got {}",
                kind(other)
            )));
        }
    };
    T::try_from(wide).map_err(|_| Refusal::new(format!("{wide} is out of range")))
}

fn u128_of(json: &Json) -> Result<u128, Refusal> {
    match json {
        Json::String(s) => s
            .parse()
            .map_err(|_| Refusal::new(format!("{s:?} is not a u128"))),
        _ => int::<i128>(json).and_then(|v| {
            u128::try_from(v).map_err(|_| Refusal::new(format!("{v} is out of range")))
        }),
    }
}

fn float(json: &Json) -> Result<f64, Refusal> {
    match json {
        Json::Number(n) => n
            .as_f64()
            .ok_or_else(|| Refusal::new(format!("{n} is not a number"))),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(Refusal::new(format!(
                "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got {s:?}"
            ))),
        },
        other => Err(Refusal::new(format!(
            "expected a number, got {}",
            kind(other)
        ))),
    }
}

fn float_json(v: f64, shortest: String) -> Json {
    if v.is_nan() {
        Json::String("NaN".into())
    } else if v.is_infinite() {
        Json::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        // The shortest decimal that reads back as the same float.
        shortest
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Json::Null, Json::Number)
    }
}

fn text<'j>(json: &'j Json, what: &str) -> Result<&'j str, Refusal> {
    json.as_str()
        .ok_or_else(|| Refusal::new(format!("expected {what}, got {}", kind(json))))
}

fn decode_hex(s: &str) -> Result<Vec<u8>, Refusal> {
    if !s.len().is_multiple_of(2) {
        return Err(Refusal::new("hex string has an odd number of digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| Refusal::new(format!("{s:?} is not a hex string")))
        })
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A timestamp as RFC 3339 in UTC with six fractional digits; as an integer
/// of microseconds when its year is outside 0000–9999, which RFC 3339
/// cannot write.
fn timestamp_to_json(micros: i64) -> Json {
    let nanos = i128::from(micros) * 1_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) if (0..=9999).contains(&t.year()) => Json::String(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )),
        _ => Json::from(micros),
    }
}

fn timestamp_from_json(json: &Json) -> Result<i64, Refusal> {
    let Json::String(s) = json else {
        return int(json);
    };
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Refusal::new(format!("{s:?} is not an RFC 3339 timestamp: {e}")))?;
    let nanos = t.unix_timestamp_nanos();
    if nanos % 1_000 != 0 {
        return Err(Refusal::new(format!(
            "{s:?} has more than microsecond precision"
        )));
    }
    i64::try_from(nanos / 1_000).map_err(|_| Refusal::new(format!("{s:?} is out of range")))
}

/// Converts JSON to a value of type `ty`. The error is a reason, with the
/// path inside the value when the refusal is deeper than its top.
pub fn value_from_json(json: &Json, ty: &AlgebraicType) -> Result<Value, String> {
    from_json(json, ty).map_err(|r| r.message())
}

fn from_json(json: &Json, ty: &AlgebraicType) -> Converted {
    use AlgebraicType as T;
    if json.is_null() {
        return if ty.is_optional() {
            Ok(Value::Null)
        } else {
            Err(Refusal::new(format!("expected {ty}, got null")))
        };
    }
    Ok(match ty {
        T::Bool => Value::Bool(
            json.as_bool()
                .ok_or_else(|| Refusal::new(format!("expected a boolean, got {}", kind(json))))?,
        ),
        T::U8 => Value::U8(int(json)?),
        T::U16 => Value::U16(int(json)?),
        T::U32 => Value::U32(int(json)?),
        T::U64 => Value::U64(int(json)?),
        T::I8 => Value::I8(int(json)?),
        T::I16 => Value::I16(int(json)?),
        T::I32 => Value::I32(int(json)?),
        T::I64 => Value::I64(int(json)?),
        T::U128 => Value::U128(Box::new(u128_of(json)?)),
        T::I128 => Value::I128(Box::new(match json {
            Json::String(s) => s
                .parse()
                .map_err(|_| Refusal::new(format!("{s:?} is not an i128")))?,
            _ => int(json)?,
        })),
        T::F32 => {
            let v = float(json)?;
            let narrow = v as f32;
            if v.is_finite() && narrow.is_infinite() {
                return Err(Refusal::new(format!("{v} is out of range for f32")));
            }
            Value::F32(narrow)
        }
        T::F64 => Value::F64(float(json)?),
        T::String => Value::String(text(json, "a string")?.into()),
        T::Bytes => Value::Bytes(decode_hex(text(json, "a hex string")?)?.into()),
        T::Identity => {
            let s = text(json, "an identity (64 hex digits)")?;
            let bytes = decode_hex(s)?;
            let array: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                Refusal::new(format!("an identity is 64 hex digits, got {}", b.len() * 2))
            })?;
            Value::Identity(Box::new(array))
        }
        T::Timestamp => Value::Timestamp(timestamp_from_json(json)?),
        T::Duration => Value::Duration(int(json)?),
        T::Option(inner) => from_json(json, inner)?,
        T::Vec(inner) => {
            let Json::Array(items) = json else {
                return Err(Refusal::new(format!(
                    "expected an array, got {}",
                    kind(json)
                )));
            };
            let values = items
                .iter()
                .enumerate()
                .map(|(i, item)| from_json(item, inner).map_err(|r| r.at(Step::Index(i))))
                .collect::<Result<Box<[Value]>, _>>()?;
            Value::Array(values)
        }
        T::Product(p) => Value::Product(object_fields(json, &p.fields, &p.name)?),
        T::Sum(s) => sum_from_json(json, s)?,
    })
}

/// An enum value: `"Unit"`, or an object of one entry, the variant's name
/// and its payload.
fn sum_from_json(json: &Json, s: &crate::types::SumType) -> Converted {
    let (name, payload) = match json {
        Json::String(name) => (name.as_str(), None),
        Json::Object(map) if map.len() == 1 => {
            let (name, payload) = map.iter().next().expect("one entry");
            (name.as_str(), Some(payload))
        }
        other => {
            return Err(Refusal::new(format!(
                "expected a variant of enum `{}` (a string, or an object of one entry), got {}",
                s.name,
                kind(other)
            )));
        }
    };
    let Some(tag) = s.variants.iter().position(|v| v.name == name) else {
        return Err(Refusal::new(format!("unknown variant {name:?}")));
    };
    let variant = &s.variants[tag];
    let at = |r: Refusal| r.at(Step::Field(name.to_string()));
    let fields: Box<[Value]> = match (variant.shape, payload) {
        (VariantShape::Unit, None) => Box::new([]),
        (VariantShape::Tuple, Some(payload)) if variant.fields.len() == 1 => {
            Box::new([from_json(payload, &variant.fields[0].ty).map_err(at)?])
        }
        (VariantShape::Tuple, Some(Json::Array(items))) if items.len() == variant.fields.len() => {
            items
                .iter()
                .zip(&variant.fields)
                .enumerate()
                .map(|(i, (item, f))| from_json(item, &f.ty).map_err(|r| at(r.at(Step::Index(i)))))
                .collect::<Result<_, _>>()?
        }
        (VariantShape::Struct, Some(payload)) => {
            object_fields(payload, &variant.fields, name).map_err(at)?
        }
        _ => {
            return Err(Refusal::new(format!(
                "variant {name:?} is written {}",
                variant_form(variant.shape, variant.fields.len(), name)
            )));
        }
    };
    Ok(Value::Sum {
        tag: tag as u8,
        fields,
    })
}

fn variant_form(shape: VariantShape, fields: usize, name: &str) -> String {
    match (shape, fields) {
        (VariantShape::Unit, _) => format!("\"{name}\""),
        (VariantShape::Tuple, 1) => format!("{{\"{name}\": value}}"),
        (VariantShape::Tuple, n) => format!("{{\"{name}\": [{n} values]}}"),
        (VariantShape::Struct, _) => format!("{{\"{name}\": {{fields}}}}"),
    }
}

/// The fields of a struct (or struct variant) from an object keyed by field
/// name. A missing optional field is none.
fn object_fields(json: &Json, fields: &[Field], of: &str) -> Result<Box<[Value]>, Refusal> {
    let Json::Object(map) = json else {
        return Err(Refusal::new(format!(
            "expected an object for `{of}`, got {}",
            kind(json)
        )));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
        return Err(Refusal::new(format!("`{of}` has no field `{unknown}`")));
    }
    fields
        .iter()
        .map(|f| match map.get(&f.name) {
            Some(item) => from_json(item, &f.ty).map_err(|r| r.at(Step::Field(f.name.clone()))),
            None if f.ty.is_optional() => Ok(Value::Null),
            None => Err(Refusal::new("missing").at(Step::Field(f.name.clone()))),
        })
        .collect()
}

/// JSON of a value of type `ty`.
pub fn value_to_json(value: &Value, ty: &AlgebraicType) -> Json {
    use AlgebraicType as T;
    match (value, ty) {
        (Value::Null, _) => Json::Null,
        (v, T::Option(inner)) => value_to_json(v, inner),
        (Value::Bool(v), _) => Json::Bool(*v),
        (Value::U8(v), _) => Json::from(*v),
        (Value::U16(v), _) => Json::from(*v),
        (Value::U32(v), _) => Json::from(*v),
        (Value::U64(v), _) => Json::from(*v),
        (Value::I8(v), _) => Json::from(*v),
        (Value::I16(v), _) => Json::from(*v),
        (Value::I32(v), _) => Json::from(*v),
        (Value::I64(v), _) | (Value::Duration(v), _) => Json::from(*v),
        (Value::U128(v), _) => Json::String(v.to_string()),
        (Value::I128(v), _) => Json::String(v.to_string()),
        (Value::F32(v), _) => float_json(f64::from(*v), v.to_string()),
        (Value::F64(v), _) => float_json(*v, v.to_string()),
        (Value::String(v), _) => Json::String(v.to_string()),
        (Value::Bytes(v), _) => Json::String(encode_hex(v)),
        (Value::Identity(v), _) => Json::String(encode_hex(&v[..])),
        (Value::Timestamp(v), _) => timestamp_to_json(*v),
        (Value::Array(items), T::Vec(inner)) => {
            Json::Array(items.iter().map(|v| value_to_json(v, inner)).collect())
        }
        (Value::Product(values), T::Product(p)) => fields_to_json(values, &p.fields),
        (Value::Sum { tag, fields }, T::Sum(s)) => {
            let Some(variant) = s.variants.get(*tag as usize) else {
                return Json::Null;
            };
            let payload = match variant.shape {
                VariantShape::Unit => return Json::String(variant.name.clone()),
                VariantShape::Tuple if fields.len() == 1 => {
                    value_to_json(&fields[0], &variant.fields[0].ty)
                }
                VariantShape::Tuple => Json::Array(
                    fields
                        .iter()
                        .zip(&variant.fields)
                        .map(|(v, f)| value_to_json(v, &f.ty))
                        .collect(),
                ),
                VariantShape::Struct => fields_to_json(fields, &variant.fields),
            };
            let mut object = Map::with_capacity(1);
            object.insert(variant.name.clone(), payload);
            Json::Object(object)
        }
        // A value that does not fit its type: never built by the decoder.
        _ => Json::Null,
    }
}

fn fields_to_json(values: &[Value], fields: &[Field]) -> Json {
    let mut object = Map::with_capacity(values.len());
    for (v, f) in values.iter().zip(fields) {
        object.insert(f.name.clone(), value_to_json(v, &f.ty));
    }
    Json::Object(object)
}

/// Reducer arguments from a JSON array (declaration order) or object (keyed
/// by parameter name), encoded as one row of the parameters.
pub fn args_from_json(json: &Json, params: &[ParamDef]) -> Result<Vec<u8>, JsonError> {
    let field_err = |p: &ParamDef, r: Refusal| JsonError::Field {
        field: r.path_from(&p.name),
        reason: r.reason,
    };
    let values: Vec<Value> = match json {
        Json::Array(items) => {
            if items.len() != params.len() {
                return Err(JsonError::Arity {
                    expected: params.len(),
                    got: items.len(),
                });
            }
            items
                .iter()
                .zip(params)
                .map(|(item, p)| from_json(item, &p.ty).map_err(|r| field_err(p, r)))
                .collect::<Result<_, _>>()?
        }
        Json::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !params.iter().any(|p| &p.name == *k)) {
                return Err(JsonError::UnknownField(unknown.clone()));
            }
            params
                .iter()
                .map(|p| match map.get(&p.name) {
                    Some(item) => from_json(item, &p.ty).map_err(|r| field_err(p, r)),
                    None if p.ty.is_optional() => Ok(Value::Null),
                    None => Err(JsonError::MissingField(p.name.clone())),
                })
                .collect::<Result<_, _>>()?
        }
        Json::Null if params.is_empty() => Vec::new(),
        other => return Err(JsonError::Shape(kind(other))),
    };
    let mut out = Vec::with_capacity(16 * values.len());
    for (value, p) in values.iter().zip(params) {
        codec::encode_value(value, &p.ty, &mut out);
    }
    Ok(out)
}

/// Encoded reducer arguments as a JSON object keyed by parameter name (for
/// audit views of the log).
pub fn args_to_json(args: &[u8], params: &[ParamDef]) -> Result<Json, DecodeError> {
    let types: Vec<AlgebraicType> = params.iter().map(|p| p.ty.clone()).collect();
    let values = codec::decode_row(args, &types)?;
    let mut object = Map::with_capacity(values.len());
    for (param, value) in params.iter().zip(&values) {
        object.insert(param.name.clone(), value_to_json(value, &param.ty));
    }
    Ok(Json::Object(object))
}

/// A stored row as a JSON object keyed by column name.
pub fn row_to_json(row: &[u8], table: &TableDef) -> Result<Json, DecodeError> {
    let values = codec::decode_row(row, &table.column_types())?;
    let mut object = Map::with_capacity(values.len());
    for (column, value) in table.columns.iter().zip(&values) {
        object.insert(column.name.clone(), value_to_json(value, &column.ty));
    }
    Ok(Json::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(name: &str, ty: AlgebraicType) -> ParamDef {
        ParamDef {
            name: name.into(),
            ty,
        }
    }

    #[test]
    fn args_array_and_object_agree() {
        let params = [
            param("id", AlgebraicType::U64),
            param("note", AlgebraicType::option(AlgebraicType::String)),
        ];
        let a = args_from_json(&json!([5, "x"]), &params).unwrap();
        let b = args_from_json(&json!({"note": "x", "id": 5}), &params).unwrap();
        assert_eq!(a, b);
        let none = args_from_json(&json!({"id": 5}), &params).unwrap();
        assert_eq!(none, vec![5, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn args_errors_name_the_field() {
        let params = [param("amount", AlgebraicType::U64)];
        let err = args_from_json(&json!([-1]), &params).unwrap_err();
        assert_eq!(err.to_string(), "field amount: -1 is out of range");
        let err = args_from_json(&json!(["ten"]), &params).unwrap_err();
        assert_eq!(err.to_string(), "field amount: \"ten\" is not an integer");
        assert_eq!(
            args_from_json(&json!([1, 2]), &params).unwrap_err(),
            JsonError::Arity {
                expected: 1,
                got: 2
            }
        );
        assert_eq!(
            args_from_json(&json!({"amnt": 1}), &params).unwrap_err(),
            JsonError::UnknownField("amnt".into())
        );
        assert_eq!(
            args_from_json(&json!("1"), &params).unwrap_err(),
            JsonError::Shape("a string")
        );
    }

    #[test]
    fn bytes_are_hex() {
        let ty = AlgebraicType::Bytes;
        let v = value_from_json(&json!("00ff10"), &ty).unwrap();
        assert_eq!(value_to_json(&v, &ty), json!("00ff10"));
        assert!(value_from_json(&json!("0g"), &ty).is_err());
        assert!(value_from_json(&json!("abc"), &ty).is_err());
        assert_eq!(
            value_from_json(&json!([0, 255]), &ty).unwrap_err(),
            "expected a hex string, got an array"
        );
    }

    fn field(name: &str, ty: AlgebraicType) -> Field {
        Field {
            name: name.into(),
            ty,
        }
    }

    fn variant(name: &str, shape: VariantShape, fields: Vec<Field>) -> crate::types::Variant {
        crate::types::Variant {
            name: name.into(),
            shape,
            fields,
        }
    }

    /// `enum Kind { Sword, Bow(u8), Pair(u8, u8), Staff { power: u16 } }`
    fn kind_type() -> AlgebraicType {
        AlgebraicType::sum(
            "Kind",
            vec![
                variant("Sword", VariantShape::Unit, vec![]),
                variant(
                    "Bow",
                    VariantShape::Tuple,
                    vec![field("0", AlgebraicType::U8)],
                ),
                variant(
                    "Pair",
                    VariantShape::Tuple,
                    vec![field("0", AlgebraicType::U8), field("1", AlgebraicType::U8)],
                ),
                variant(
                    "Staff",
                    VariantShape::Struct,
                    vec![field("power", AlgebraicType::U16)],
                ),
            ],
        )
    }

    fn inventory_type() -> AlgebraicType {
        AlgebraicType::vec(AlgebraicType::product(
            "Item",
            vec![
                field("kind", kind_type()),
                field("count", AlgebraicType::U32),
                field("note", AlgebraicType::option(AlgebraicType::String)),
            ],
        ))
    }

    #[test]
    fn every_type_has_its_documented_json() {
        let cases = [
            (AlgebraicType::U8, json!(255)),
            (AlgebraicType::I16, json!(-32768)),
            (
                AlgebraicType::U128,
                json!("340282366920938463463374607431768211455"),
            ),
            (
                AlgebraicType::I128,
                json!("-170141183460469231731687303715884105728"),
            ),
            (AlgebraicType::F32, json!(0.1)),
            (AlgebraicType::F64, json!("NaN")),
            (AlgebraicType::F64, json!("-Infinity")),
            (AlgebraicType::F32, json!("Infinity")),
            (AlgebraicType::Identity, json!("ab".repeat(32))),
            (
                AlgebraicType::Timestamp,
                json!("2026-12-02T19:31:37.000042Z"),
            ),
            (
                AlgebraicType::Timestamp,
                json!("1969-12-31T23:59:59.999999Z"),
            ),
            (AlgebraicType::Duration, json!(-1500)),
            (AlgebraicType::option(AlgebraicType::Duration), json!(null)),
            (
                inventory_type(),
                json!([
                    {"kind": "Sword", "count": 1, "note": null},
                    {"kind": {"Bow": 3}, "count": 2, "note": "x"},
                    {"kind": {"Pair": [1, 2]}, "count": 3, "note": null},
                    {"kind": {"Staff": {"power": 9}}, "count": 4, "note": null},
                ]),
            ),
        ];
        for (ty, text) in cases {
            let value = value_from_json(&text, &ty).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(value_to_json(&value, &ty), text, "{ty}");
        }
        // Accepted on input besides the canonical form.
        let ts = value_from_json(&json!(-1), &AlgebraicType::Timestamp).unwrap();
        assert_eq!(
            value_to_json(&ts, &AlgebraicType::Timestamp),
            json!("1969-12-31T23:59:59.999999Z")
        );
        let offset = value_from_json(
            &json!("2026-12-02T20:31:37+01:00"),
            &AlgebraicType::Timestamp,
        )
        .unwrap();
        assert_eq!(
            value_to_json(&offset, &AlgebraicType::Timestamp),
            json!("2026-12-02T19:31:37.000000Z")
        );
        let big = value_from_json(&json!(7), &AlgebraicType::U128).unwrap();
        assert_eq!(value_to_json(&big, &AlgebraicType::U128), json!("7"));
        // A missing optional field is none.
        let item = value_from_json(&json!([{"kind": "Sword", "count": 1}]), &inventory_type());
        assert!(item.is_ok(), "{item:?}");
    }

    #[test]
    fn refusals_name_the_path_of_the_value() {
        let params = [ParamDef {
            name: "inventory".into(),
            ty: inventory_type(),
        }];
        let refused = |args: Json| {
            args_from_json(&json!([args]), &params)
                .unwrap_err()
                .to_string()
        };
        let ok = json!({"kind": "Sword", "count": 1});
        assert_eq!(
            refused(json!([ok, ok, ok, {"kind": "Sward", "count": 1}])),
            "field inventory[3].kind: unknown variant \"Sward\""
        );
        assert_eq!(
            refused(json!([{"kind": {"Staff": {"power": 70000}}, "count": 1}])),
            "field inventory[0].kind.Staff.power: 70000 is out of range"
        );
        assert_eq!(
            refused(json!([{"kind": {"Pair": [1]}, "count": 1}])),
            "field inventory[0].kind: variant \"Pair\" is written {\"Pair\": [2 values]}"
        );
        assert_eq!(
            refused(json!([{"kind": "Bow", "count": 1}])),
            "field inventory[0].kind: variant \"Bow\" is written {\"Bow\": value}"
        );
        assert_eq!(
            refused(json!([{"kind": "Sword"}])),
            "field inventory[0].count: missing"
        );
        assert_eq!(
            refused(json!([{"kind": "Sword", "count": 1, "extra": 0}])),
            "field inventory[0]: `Item` has no field `extra`"
        );
        assert_eq!(
            refused(json!({"Sword": null})),
            "field inventory: expected an array, got an object"
        );
        let ts = AlgebraicType::Timestamp;
        assert!(
            value_from_json(&json!("yesterday"), &ts)
                .unwrap_err()
                .contains("is not an RFC 3339 timestamp")
        );
        assert_eq!(
            value_from_json(&json!("abcd"), &AlgebraicType::Identity).unwrap_err(),
            "an identity is 64 hex digits, got 4"
        );
        assert_eq!(
            value_from_json(&json!(1e39), &AlgebraicType::F32).unwrap_err(),
            "1000000000000000000000000000000000000000 is out of range for f32"
        );
    }
}
