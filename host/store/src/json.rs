//! JSON views of values and rows, converted through declared types.
//!
//! | column type | JSON                                            |
//! |-------------|-------------------------------------------------|
//! | bool        | `true` / `false`                                |
//! | integers    | a number; a string of digits is also accepted   |
//! | f64         | a number                                        |
//! | string      | a string                                        |
//! | bytes       | a string of hex digits (`"00ff"`)               |
//! | option<T>   | `null` for none, else the JSON of `T`           |

use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use crate::codec;
use crate::error::DecodeError;
use crate::schema::{ColumnType, ParamDef, ScalarType, TableDef};
use crate::value::Value;

/// JSON that does not fit the declared types. `field` names the column or
/// parameter.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    #[error("field `{field}`: {reason}")]
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

fn int<T: TryFrom<i128>>(json: &Json) -> Result<T, String> {
    let wide: i128 = match json {
        Json::Number(n) => {
            if let Some(v) = n.as_u64() {
                v as i128
            } else if let Some(v) = n.as_i64() {
                v as i128
            } else {
                return Err(format!("{n} is not an integer"));
            }
        }
        Json::String(s) => s.parse().map_err(|_| format!("{s:?} is not an integer"))?,
        other => return Err(format!("expected an integer, got {}", kind(other))),
    };
    T::try_from(wide).map_err(|_| format!("{wide} is out of range"))
}

/// Converts JSON to a value of type `ty`; the error is a reason without the
/// field name.
pub fn value_from_json(json: &Json, ty: ColumnType) -> Result<Value, String> {
    if json.is_null() {
        return if ty.optional {
            Ok(Value::Null)
        } else {
            Err(format!("expected {ty}, got null"))
        };
    }
    Ok(match ty.scalar {
        ScalarType::Bool => Value::Bool(
            json.as_bool()
                .ok_or_else(|| format!("expected a boolean, got {}", kind(json)))?,
        ),
        ScalarType::I32 => Value::I32(int(json)?),
        ScalarType::I64 => Value::I64(int(json)?),
        ScalarType::U32 => Value::U32(int(json)?),
        ScalarType::U64 => Value::U64(int(json)?),
        ScalarType::F64 => Value::F64(
            json.as_f64()
                .ok_or_else(|| format!("expected a number, got {}", kind(json)))?,
        ),
        ScalarType::String => Value::String(
            json.as_str()
                .ok_or_else(|| format!("expected a string, got {}", kind(json)))?
                .into(),
        ),
        ScalarType::Bytes => {
            let s = json
                .as_str()
                .ok_or_else(|| format!("expected a hex string, got {}", kind(json)))?;
            Value::Bytes(decode_hex(s)?.into())
        }
    })
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("hex string has an odd number of digits".to_string());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{s:?} is not a hex string"))
        })
        .collect()
}

/// JSON of a value.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(v) => Json::Bool(*v),
        Value::I32(v) => Json::from(*v),
        Value::I64(v) => Json::from(*v),
        Value::U32(v) => Json::from(*v),
        Value::U64(v) => Json::from(*v),
        Value::F64(v) => Number::from_f64(*v).map_or(Json::Null, Json::Number),
        Value::String(v) => Json::String(v.to_string()),
        Value::Bytes(v) => Json::String(v.iter().map(|b| format!("{b:02x}")).collect()),
    }
}

/// Reducer arguments from a JSON array (declaration order) or object (keyed
/// by parameter name), encoded as one row of the parameters.
pub fn args_from_json(json: &Json, params: &[ParamDef]) -> Result<Vec<u8>, JsonError> {
    let field_err = |p: &ParamDef, reason: String| JsonError::Field {
        field: p.name.clone(),
        reason,
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
                .map(|(item, p)| value_from_json(item, p.ty).map_err(|r| field_err(p, r)))
                .collect::<Result<_, _>>()?
        }
        Json::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !params.iter().any(|p| &p.name == *k)) {
                return Err(JsonError::UnknownField(unknown.clone()));
            }
            params
                .iter()
                .map(|p| match map.get(&p.name) {
                    Some(item) => value_from_json(item, p.ty).map_err(|r| field_err(p, r)),
                    None if p.ty.optional => Ok(Value::Null),
                    None => Err(JsonError::MissingField(p.name.clone())),
                })
                .collect::<Result<_, _>>()?
        }
        Json::Null if params.is_empty() => Vec::new(),
        other => return Err(JsonError::Shape(kind(other))),
    };
    let types: Vec<ColumnType> = params.iter().map(|p| p.ty).collect();
    Ok(codec::encode_row(&values, &types))
}

/// Encoded reducer arguments as a JSON object keyed by parameter name (for
/// audit views of the log).
pub fn args_to_json(args: &[u8], params: &[ParamDef]) -> Result<Json, DecodeError> {
    let types: Vec<ColumnType> = params.iter().map(|p| p.ty).collect();
    let values = codec::decode_row(args, &types)?;
    let mut object = Map::with_capacity(values.len());
    for (param, value) in params.iter().zip(&values) {
        object.insert(param.name.clone(), value_to_json(value));
    }
    Ok(Json::Object(object))
}

/// A stored row as a JSON object keyed by column name.
pub fn row_to_json(row: &[u8], table: &TableDef) -> Result<Json, DecodeError> {
    let values = codec::decode_row(row, &table.column_types())?;
    let mut object = Map::with_capacity(values.len());
    for (column, value) in table.columns.iter().zip(&values) {
        object.insert(column.name.clone(), value_to_json(value));
    }
    Ok(Json::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(name: &str, scalar: ScalarType, optional: bool) -> ParamDef {
        ParamDef {
            name: name.into(),
            ty: ColumnType { scalar, optional },
        }
    }

    #[test]
    fn args_array_and_object_agree() {
        let params = [
            param("id", ScalarType::U64, false),
            param("note", ScalarType::String, true),
        ];
        let a = args_from_json(&json!([5, "x"]), &params).unwrap();
        let b = args_from_json(&json!({"note": "x", "id": 5}), &params).unwrap();
        assert_eq!(a, b);
        let none = args_from_json(&json!({"id": 5}), &params).unwrap();
        assert_eq!(none, vec![5, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn args_errors_name_the_field() {
        let params = [param("amount", ScalarType::U64, false)];
        let err = args_from_json(&json!([-1]), &params).unwrap_err();
        assert_eq!(err.to_string(), "field `amount`: -1 is out of range");
        let err = args_from_json(&json!(["ten"]), &params).unwrap_err();
        assert!(err.to_string().contains("`amount`"), "{err}");
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
        let ty = ColumnType::required(ScalarType::Bytes);
        let v = value_from_json(&json!("00ff10"), ty).unwrap();
        assert_eq!(value_to_json(&v), json!("00ff10"));
        assert!(value_from_json(&json!("0g"), ty).is_err());
        assert!(value_from_json(&json!("abc"), ty).is_err());
    }
}
