//! The types a column or reducer parameter can have: scalars, `option`,
//! `vec`, named products (structs) and named sums (enums), nested to
//! [`limits::TYPE_DEPTH_MAX`]. `docs/row-encoding.md` gives each one's bytes,
//! order and JSON.
//!
//! A type is a tree: a product or sum that several columns use is shared
//! (`Arc`), not referred to by number. Guests describe their types as a
//! typespace (types referring to each other by index, `wit/interstice.wit`);
//! [`Typespace::resolve`] turns that into trees, refusing cycles.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::SchemaError;
use crate::limits;

/// A column or parameter type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "repr::Type", into = "repr::Type")]
pub enum AlgebraicType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
    String,
    /// A byte string (`Vec<u8>` in Rust).
    Bytes,
    /// 32 bytes naming a caller.
    Identity,
    /// Microseconds since the Unix epoch, signed.
    Timestamp,
    /// Microseconds, signed.
    Duration,
    Option(Arc<AlgebraicType>),
    Vec(Arc<AlgebraicType>),
    Product(Arc<ProductType>),
    Sum(Arc<SumType>),
}

/// A struct: named fields in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProductType {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub ty: AlgebraicType,
}

/// An enum: variants in declaration order; a value is one variant and its
/// fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SumType {
    pub name: String,
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub shape: VariantShape,
    /// The variant's fields; those of a tuple variant are named `0`, `1`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

/// How a variant was declared, which decides its JSON form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VariantShape {
    /// `A`: no fields.
    Unit,
    /// `A(x, y)`: fields by position.
    Tuple,
    /// `A { x, y }`: fields by name.
    Struct,
}

/// The scalar types by name, as definitions and `interstice schema` spell
/// them.
pub const SCALARS: [(&str, AlgebraicType); 18] = [
    ("bool", AlgebraicType::Bool),
    ("u8", AlgebraicType::U8),
    ("u16", AlgebraicType::U16),
    ("u32", AlgebraicType::U32),
    ("u64", AlgebraicType::U64),
    ("u128", AlgebraicType::U128),
    ("i8", AlgebraicType::I8),
    ("i16", AlgebraicType::I16),
    ("i32", AlgebraicType::I32),
    ("i64", AlgebraicType::I64),
    ("i128", AlgebraicType::I128),
    ("f32", AlgebraicType::F32),
    ("f64", AlgebraicType::F64),
    ("string", AlgebraicType::String),
    ("bytes", AlgebraicType::Bytes),
    ("identity", AlgebraicType::Identity),
    ("timestamp", AlgebraicType::Timestamp),
    ("duration", AlgebraicType::Duration),
];

impl AlgebraicType {
    pub fn option(inner: AlgebraicType) -> Self {
        AlgebraicType::Option(Arc::new(inner))
    }

    pub fn vec(inner: AlgebraicType) -> Self {
        AlgebraicType::Vec(Arc::new(inner))
    }

    pub fn product(name: impl Into<String>, fields: Vec<Field>) -> Self {
        AlgebraicType::Product(Arc::new(ProductType {
            name: name.into(),
            fields,
        }))
    }

    pub fn sum(name: impl Into<String>, variants: Vec<Variant>) -> Self {
        AlgebraicType::Sum(Arc::new(SumType {
            name: name.into(),
            variants,
        }))
    }

    /// The name of a scalar type; `None` for the others.
    pub fn scalar_name(&self) -> Option<&'static str> {
        SCALARS.iter().find(|(_, t)| t == self).map(|(n, _)| *n)
    }

    /// The scalar type named `name`.
    pub fn scalar_named(name: &str) -> Option<AlgebraicType> {
        SCALARS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
    }

    /// Whether a value of this type may be absent (`option<T>`).
    pub fn is_optional(&self) -> bool {
        matches!(self, AlgebraicType::Option(_))
    }

    /// Integer types of at most 64 bits may carry an auto-increment column.
    pub fn is_auto_inc_integer(&self) -> bool {
        use AlgebraicType::*;
        matches!(self, U8 | U16 | U32 | U64 | I8 | I16 | I32 | I64)
    }

    /// Bytes of every value of a fixed-width type, `None` for the others.
    pub fn fixed_len(&self) -> Option<usize> {
        use AlgebraicType::*;
        Some(match self {
            Bool | U8 | I8 => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | Timestamp | Duration => 8,
            U128 | I128 => 16,
            Identity => 32,
            _ => return None,
        })
    }

    /// Levels of nesting: 1 for a scalar, 1 + the deepest part otherwise.
    pub fn depth(&self) -> usize {
        match self {
            AlgebraicType::Option(t) | AlgebraicType::Vec(t) => 1 + t.depth(),
            AlgebraicType::Product(p) => 1 + fields_depth(&p.fields),
            AlgebraicType::Sum(s) => {
                1 + s
                    .variants
                    .iter()
                    .map(|v| fields_depth(&v.fields))
                    .max()
                    .unwrap_or(0)
            }
            _ => 1,
        }
    }

    /// Checks what the codec, the JSON mapping and the indexes rely on:
    /// bounded depth, identifiers for names, no name twice, at least one
    /// field in a product, one to 256 variants in a sum, and no `option`
    /// directly inside an `option` (JSON could not tell `none` from
    /// `some(none)`).
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.depth() > limits::TYPE_DEPTH_MAX {
            return Err(SchemaError::Invalid(format!(
                "type {self} is nested {} deep; at most {} levels are allowed",
                self.depth(),
                limits::TYPE_DEPTH_MAX
            )));
        }
        self.validate_parts()
    }

    fn validate_parts(&self) -> Result<(), SchemaError> {
        let invalid = |why: String| Err(SchemaError::Invalid(why));
        match self {
            AlgebraicType::Option(inner) => {
                if inner.is_optional() {
                    return invalid(format!(
                        "type {self}: an option directly inside an option cannot be told apart in JSON; use an enum"
                    ));
                }
                inner.validate_parts()
            }
            AlgebraicType::Vec(inner) => inner.validate_parts(),
            AlgebraicType::Product(p) => {
                crate::schema::check_name("type", &p.name)?;
                if p.fields.is_empty() {
                    return invalid(format!("struct `{}` has no fields", p.name));
                }
                validate_fields(&p.fields, &format!(" of struct `{}`", p.name))
            }
            AlgebraicType::Sum(s) => validate_sum(s),
            _ => Ok(()),
        }
    }
}

/// An enum's names, variant count, and each variant's shape and fields.
fn validate_sum(s: &SumType) -> Result<(), SchemaError> {
    let invalid = |why: String| Err(SchemaError::Invalid(why));
    crate::schema::check_name("type", &s.name)?;
    if s.variants.is_empty() || s.variants.len() > limits::VARIANTS_MAX {
        return invalid(format!(
            "enum `{}` has {} variants; it must have 1 to {}",
            s.name,
            s.variants.len(),
            limits::VARIANTS_MAX
        ));
    }
    crate::schema::check_unique_names(
        "variant",
        s.variants.iter().map(|v| v.name.as_str()),
        &format!(" of enum `{}`", s.name),
    )?;
    for v in &s.variants {
        crate::schema::check_name("variant", &v.name)?;
        let at = format!(" of variant `{}::{}`", s.name, v.name);
        match (v.shape, v.fields.is_empty()) {
            (VariantShape::Unit, false) => {
                return invalid(format!("unit variant `{}::{}` has fields", s.name, v.name));
            }
            (VariantShape::Tuple | VariantShape::Struct, true) => {
                return invalid(format!("variant `{}::{}` has no fields", s.name, v.name));
            }
            _ => {}
        }
        if v.shape == VariantShape::Tuple {
            for (i, f) in v.fields.iter().enumerate() {
                if f.name != i.to_string() {
                    return invalid(format!(
                        "field {i}{at} is named `{}`; tuple fields are named by position",
                        f.name
                    ));
                }
            }
            for f in &v.fields {
                f.ty.validate_parts()?;
            }
        } else {
            validate_fields(&v.fields, &at)?;
        }
    }
    Ok(())
}

fn fields_depth(fields: &[Field]) -> usize {
    fields.iter().map(|f| f.ty.depth()).max().unwrap_or(0)
}

fn validate_fields(fields: &[Field], at: &str) -> Result<(), SchemaError> {
    if fields.len() > limits::COLUMNS_PER_TABLE_MAX {
        return Err(SchemaError::TooMany {
            what: "fields",
            max: limits::COLUMNS_PER_TABLE_MAX,
        });
    }
    crate::schema::check_unique_names("field", fields.iter().map(|f| f.name.as_str()), at)?;
    for f in fields {
        crate::schema::check_name("field", &f.name)?;
        f.ty.validate_parts()?;
    }
    Ok(())
}

impl fmt::Display for AlgebraicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlgebraicType::Option(t) => write!(f, "option<{t}>"),
            AlgebraicType::Vec(t) => write!(f, "vec<{t}>"),
            AlgebraicType::Product(p) => f.write_str(&p.name),
            AlgebraicType::Sum(s) => f.write_str(&s.name),
            scalar => f.write_str(scalar.scalar_name().unwrap_or("?")),
        }
    }
}

/// How a column's type changed between two versions of a module, for
/// migrations (`docs/migrations.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeChange {
    Same,
    /// Every old value is a valid value of the new type with the same bytes:
    /// the only changes are variants added at the end of enums, named here.
    Extended(Vec<String>),
    /// Old values do not carry over. The reason, when the difference lies
    /// inside the type (an element, a field, a variant); `None` when the two
    /// types differ at the top and their names say it all.
    Breaking(Option<String>),
}

/// Compares the type of a column (or field) in the old and new definition.
pub fn type_change(old: &AlgebraicType, new: &AlgebraicType) -> TypeChange {
    let mut added = Vec::new();
    match extend(old, new, &mut added) {
        Err(_) if std::mem::discriminant(old) != std::mem::discriminant(new) => {
            TypeChange::Breaking(None)
        }
        Err(why) => TypeChange::Breaking(Some(why)),
        Ok(()) if added.is_empty() => TypeChange::Same,
        Ok(()) => TypeChange::Extended(added),
    }
}

fn extend(old: &AlgebraicType, new: &AlgebraicType, added: &mut Vec<String>) -> Result<(), String> {
    use AlgebraicType as T;
    match (old, new) {
        (T::Option(a), T::Option(b)) | (T::Vec(a), T::Vec(b)) => extend(a, b, added),
        (T::Product(a), T::Product(b)) => {
            if a.name != b.name {
                return Err(format!("struct `{}` becomes struct `{}`", a.name, b.name));
            }
            if a.fields.len() != b.fields.len() {
                return Err(format!(
                    "struct `{}`: fields ({}) become ({})",
                    a.name,
                    field_names(&a.fields),
                    field_names(&b.fields)
                ));
            }
            for (fa, fb) in a.fields.iter().zip(&b.fields) {
                if fa.name != fb.name {
                    return Err(format!(
                        "struct `{}`: field `{}` becomes `{}`",
                        a.name, fa.name, fb.name
                    ));
                }
                extend(&fa.ty, &fb.ty, added)?;
            }
            Ok(())
        }
        (T::Sum(a), T::Sum(b)) => {
            if a.name != b.name {
                return Err(format!("enum `{}` becomes enum `{}`", a.name, b.name));
            }
            if let Some(lost) = a.variants.get(b.variants.len()) {
                return Err(format!(
                    "enum `{}`: variant `{}` removed",
                    a.name, lost.name
                ));
            }
            for (va, vb) in a.variants.iter().zip(&b.variants) {
                if va.name != vb.name || va.shape != vb.shape || va.fields.len() != vb.fields.len()
                {
                    return Err(format!(
                        "enum `{}`: variant `{}` changes or moves",
                        a.name, va.name
                    ));
                }
                for (fa, fb) in va.fields.iter().zip(&vb.fields) {
                    if fa.name != fb.name {
                        return Err(format!(
                            "enum `{}`: variant `{}` changes its fields",
                            a.name, va.name
                        ));
                    }
                    extend(&fa.ty, &fb.ty, added)?;
                }
            }
            for v in &b.variants[a.variants.len()..] {
                added.push(format!("enum `{}` gains variant `{}`", a.name, v.name));
            }
            Ok(())
        }
        _ if old == new => Ok(()),
        _ => Err(format!("{old} becomes {new}")),
    }
}

fn field_names(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Types as a guest describes them (`module-def.typespace` in the WIT): a
/// list whose entries refer to each other by index, so that a type used in
/// many places is written once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Typespace {
    pub types: Vec<TypeDef>,
}

/// One entry of a typespace; `u32`s are indexes of other entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeDef {
    Scalar(AlgebraicType),
    Option(u32),
    Vec(u32),
    Product {
        name: String,
        fields: Vec<(String, u32)>,
    },
    Sum {
        name: String,
        variants: Vec<VariantDef>,
    },
}

/// A variant of a typespace enum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantDef {
    pub name: String,
    pub shape: VariantShape,
    pub fields: Vec<(String, u32)>,
}

impl Typespace {
    /// Every entry's type, in order. Refuses an index past the end, a type
    /// that contains itself, a type nested deeper than
    /// [`limits::TYPE_DEPTH_MAX`] or with more than
    /// [`limits::TYPE_NODES_MAX`] parts once expanded, and a typespace over
    /// [`limits::TYPESPACE_MAX`] entries. Each entry is resolved once.
    pub fn resolve_all(&self) -> Result<Vec<AlgebraicType>, SchemaError> {
        let mut done = self.memo()?;
        (0..self.types.len() as u32)
            .map(|i| {
                self.resolve_in(i, &mut done, &mut Vec::new())
                    .map(|(t, _)| t)
            })
            .collect()
    }

    fn memo(&self) -> Result<Vec<Option<(AlgebraicType, usize)>>, SchemaError> {
        if self.types.len() > limits::TYPESPACE_MAX {
            return Err(SchemaError::TooMany {
                what: "types",
                max: limits::TYPESPACE_MAX,
            });
        }
        Ok(vec![None; self.types.len()])
    }

    /// The type an entry defines, its parts resolved; adds their sizes to
    /// `size`.
    fn build(
        &self,
        def: &TypeDef,
        done: &mut Vec<Option<(AlgebraicType, usize)>>,
        open: &mut Vec<u32>,
        size: &mut usize,
    ) -> Result<AlgebraicType, SchemaError> {
        let mut fields = |list: &[(String, u32)], size: &mut usize| {
            list.iter()
                .map(|(name, t)| {
                    let (ty, n) = self.resolve_in(*t, done, open)?;
                    *size = size.saturating_add(n);
                    Ok(Field {
                        name: name.clone(),
                        ty,
                    })
                })
                .collect::<Result<Vec<_>, SchemaError>>()
        };
        Ok(match def {
            TypeDef::Scalar(t) => t.clone(),
            TypeDef::Option(inner) | TypeDef::Vec(inner) => {
                let (inner_ty, n) = self.resolve_in(*inner, done, open)?;
                *size = size.saturating_add(n);
                if matches!(def, TypeDef::Option(_)) {
                    AlgebraicType::option(inner_ty)
                } else {
                    AlgebraicType::vec(inner_ty)
                }
            }
            TypeDef::Product { name, fields: f } => {
                AlgebraicType::product(name.clone(), fields(f, size)?)
            }
            TypeDef::Sum { name, variants } => {
                let variants = variants
                    .iter()
                    .map(|v| {
                        Ok(Variant {
                            name: v.name.clone(),
                            shape: v.shape,
                            fields: fields(&v.fields, size)?,
                        })
                    })
                    .collect::<Result<Vec<_>, SchemaError>>()?;
                AlgebraicType::sum(name.clone(), variants)
            }
        })
    }

    /// The type at `index` and its size: the parts of its expanded tree,
    /// a shared struct counted at every use (what serializing, validating
    /// and comparing it cost).
    fn resolve_in(
        &self,
        index: u32,
        done: &mut Vec<Option<(AlgebraicType, usize)>>,
        open: &mut Vec<u32>,
    ) -> Result<(AlgebraicType, usize), SchemaError> {
        let at = index as usize;
        let def = self.types.get(at).ok_or_else(|| {
            SchemaError::Invalid(format!(
                "type reference {index} is past the end of the typespace ({} types)",
                self.types.len()
            ))
        })?;
        if let Some(t) = &done[at] {
            return Ok(t.clone());
        }
        if open.contains(&index) || open.len() >= limits::TYPE_DEPTH_MAX {
            return Err(SchemaError::Invalid(format!(
                "type {} contains itself or is nested more than {} deep",
                def.name(),
                limits::TYPE_DEPTH_MAX
            )));
        }
        open.push(index);
        let mut size = 1usize;
        let t = self.build(def, done, open, &mut size)?;
        open.pop();
        if size > limits::TYPE_NODES_MAX {
            return Err(SchemaError::Invalid(format!(
                "type {} has {size} parts once every use of a shared type is counted; at most {} are allowed",
                def.name(),
                limits::TYPE_NODES_MAX
            )));
        }
        done[at] = Some((t.clone(), size));
        Ok((t, size))
    }
}

impl TypeDef {
    /// How refusals name the entry.
    pub fn name(&self) -> String {
        match self {
            TypeDef::Product { name, .. } | TypeDef::Sum { name, .. } => format!("`{name}`"),
            TypeDef::Scalar(t) => t.to_string(),
            TypeDef::Option(_) => "option".into(),
            TypeDef::Vec(_) => "vec".into(),
        }
    }
}

/// The JSON form of a type in definitions:
///
/// - a scalar as its name: `"u64"`, `"string"`, `"identity"`;
/// - `{"option": T}`, `{"vec": T}`;
/// - `{"product": {"name": …, "fields": [{"name": …, "ty": T}]}}`;
/// - `{"sum": {"name": …, "variants": [{"name": …, "shape": "unit" | "tuple" | "struct", "fields": […]}]}}`.
///
/// Definitions written for row encoding 1 spelled a type
/// `{"scalar": "u64", "optional": false}`; that form is still read.
mod repr {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use super::{AlgebraicType, ProductType, SumType};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum Type {
        Scalar(Scalar),
        Legacy { scalar: Scalar, optional: bool },
        Composite(Composite),
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Composite {
        Option(Box<AlgebraicType>),
        Vec(Box<AlgebraicType>),
        Product(ProductType),
        Sum(SumType),
    }

    /// A scalar's name, checked on the way in.
    #[derive(Clone, Serialize, Deserialize)]
    #[serde(try_from = "String", into = "String")]
    pub struct Scalar(AlgebraicType);

    impl TryFrom<String> for Scalar {
        type Error = String;
        fn try_from(name: String) -> Result<Self, String> {
            AlgebraicType::scalar_named(&name)
                .map(Scalar)
                .ok_or_else(|| format!("unknown type `{name}`"))
        }
    }

    impl From<Scalar> for String {
        fn from(s: Scalar) -> String {
            s.0.scalar_name().unwrap_or("?").to_string()
        }
    }

    impl From<Type> for AlgebraicType {
        fn from(t: Type) -> Self {
            match t {
                Type::Scalar(Scalar(t)) => t,
                Type::Legacy {
                    scalar: Scalar(t),
                    optional: true,
                } => AlgebraicType::option(t),
                Type::Legacy {
                    scalar: Scalar(t), ..
                } => t,
                Type::Composite(Composite::Option(t)) => AlgebraicType::Option(Arc::new(*t)),
                Type::Composite(Composite::Vec(t)) => AlgebraicType::Vec(Arc::new(*t)),
                Type::Composite(Composite::Product(p)) => AlgebraicType::Product(Arc::new(p)),
                Type::Composite(Composite::Sum(s)) => AlgebraicType::Sum(Arc::new(s)),
            }
        }
    }

    impl From<AlgebraicType> for Type {
        fn from(t: AlgebraicType) -> Self {
            match t {
                AlgebraicType::Option(t) => {
                    Type::Composite(Composite::Option(Box::new(Arc::unwrap_or_clone(t))))
                }
                AlgebraicType::Vec(t) => {
                    Type::Composite(Composite::Vec(Box::new(Arc::unwrap_or_clone(t))))
                }
                AlgebraicType::Product(p) => {
                    Type::Composite(Composite::Product(Arc::unwrap_or_clone(p)))
                }
                AlgebraicType::Sum(s) => Type::Composite(Composite::Sum(Arc::unwrap_or_clone(s))),
                scalar => Type::Scalar(Scalar(scalar)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: AlgebraicType) -> Field {
        Field {
            name: name.into(),
            ty,
        }
    }

    fn kind() -> AlgebraicType {
        AlgebraicType::sum(
            "Kind",
            vec![
                Variant {
                    name: "Sword".into(),
                    shape: VariantShape::Unit,
                    fields: vec![],
                },
                Variant {
                    name: "Bow".into(),
                    shape: VariantShape::Tuple,
                    fields: vec![field("0", AlgebraicType::U8)],
                },
            ],
        )
    }

    #[test]
    fn json_form_round_trips_and_reads_the_v1_form() {
        let item = AlgebraicType::product(
            "Item",
            vec![
                field("kind", kind()),
                field("tags", AlgebraicType::vec(AlgebraicType::String)),
                field("owner", AlgebraicType::option(AlgebraicType::Identity)),
            ],
        );
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"product":{"name":"Item","fields":[{"name":"kind","ty":{"sum":{"name":"Kind","variants":[{"name":"Sword","shape":"unit"},{"name":"Bow","shape":"tuple","fields":[{"name":"0","ty":"u8"}]}]}}},{"name":"tags","ty":{"vec":"string"}},{"name":"owner","ty":{"option":"identity"}}]}}"#
        );
        assert_eq!(serde_json::from_str::<AlgebraicType>(&json).unwrap(), item);
        let v1: AlgebraicType =
            serde_json::from_str(r#"{"scalar":"string","optional":true}"#).unwrap();
        assert_eq!(v1, AlgebraicType::option(AlgebraicType::String));
        let v1: AlgebraicType =
            serde_json::from_str(r#"{"scalar":"u64","optional":false}"#).unwrap();
        assert_eq!(v1, AlgebraicType::U64);
        assert!(serde_json::from_str::<AlgebraicType>(r#""u65""#).is_err());
    }

    #[test]
    fn validation_refuses_what_the_codec_and_json_cannot_carry() {
        let err = |t: AlgebraicType| t.validate().unwrap_err().to_string();
        assert!(
            err(AlgebraicType::option(AlgebraicType::option(
                AlgebraicType::U8
            )))
            .contains("option directly inside an option")
        );
        assert!(err(AlgebraicType::product("Empty", vec![])).contains("has no fields"));
        assert!(err(AlgebraicType::sum("Never", vec![])).contains("0 variants"));
        let mut deep = AlgebraicType::U8;
        for _ in 0..limits::TYPE_DEPTH_MAX {
            deep = AlgebraicType::vec(deep);
        }
        assert!(err(deep).contains("nested"));
        let twice = AlgebraicType::product(
            "P",
            vec![field("a", AlgebraicType::U8), field("a", AlgebraicType::U8)],
        );
        assert!(err(twice).contains("duplicate field name `a`"));
        kind().validate().unwrap();
    }

    #[test]
    fn typespace_resolves_shared_types_and_refuses_cycles() {
        let mut types = vec![
            TypeDef::Scalar(AlgebraicType::F32),
            TypeDef::Product {
                name: "Pos".into(),
                fields: vec![("x".into(), 0), ("y".into(), 0)],
            },
            TypeDef::Vec(1),
            TypeDef::Product {
                name: "Path".into(),
                fields: vec![("from".into(), 1), ("to".into(), 1), ("via".into(), 2)],
            },
        ];
        let resolved = Typespace {
            types: types.clone(),
        }
        .resolve_all()
        .unwrap();
        let AlgebraicType::Product(p) = &resolved[3] else {
            panic!("{:?}", resolved[3])
        };
        assert_eq!(p.fields[0].ty, p.fields[1].ty);
        assert_eq!(p.fields[0].ty, resolved[1]);
        assert_eq!(p.fields[2].ty, AlgebraicType::vec(p.fields[0].ty.clone()));
        // `Node { next: Option<Node> }`.
        types.push(TypeDef::Product {
            name: "Node".into(),
            fields: vec![("next".into(), 5)],
        });
        types.push(TypeDef::Option(4));
        let cycle = Typespace {
            types: types.clone(),
        }
        .resolve_all()
        .unwrap_err()
        .to_string();
        assert!(cycle.contains("`Node` contains itself"), "{cycle}");
        types.truncate(4);
        types.push(TypeDef::Vec(9));
        let past = Typespace { types }.resolve_all().unwrap_err().to_string();
        assert!(past.contains("past the end"), "{past}");
    }

    #[test]
    fn a_typespace_that_doubles_at_every_level_is_refused_quickly() {
        // Entry k is a struct of two entries k-1: 2^30 parts once expanded,
        // from 31 entries.
        let mut types = vec![TypeDef::Scalar(AlgebraicType::U8)];
        for k in 1..31u32 {
            types.push(TypeDef::Product {
                name: format!("T{k}"),
                fields: vec![("a".into(), k - 1), ("b".into(), k - 1)],
            });
        }
        let err = Typespace {
            types: types.clone(),
        }
        .resolve_all()
        .unwrap_err()
        .to_string();
        assert!(err.contains("`T12` has 8191 parts"), "{err}");
        // Entry k has 2^(k+1) - 1 parts: up to T11 (4,095), it resolves.
        types.truncate(12);
        assert!(Typespace { types }.resolve_all().is_ok());
    }

    #[test]
    fn type_changes_for_migrations() {
        let mut more = kind();
        if let AlgebraicType::Sum(s) = &mut more {
            Arc::make_mut(s).variants.push(Variant {
                name: "Axe".into(),
                shape: VariantShape::Unit,
                fields: vec![],
            });
        }
        assert_eq!(type_change(&kind(), &kind()), TypeChange::Same);
        assert_eq!(
            type_change(
                &AlgebraicType::vec(kind()),
                &AlgebraicType::vec(more.clone())
            ),
            TypeChange::Extended(vec!["enum `Kind` gains variant `Axe`".into()])
        );
        // Removing the last variant, reordering and retyping are breaking.
        assert!(matches!(
            type_change(&more, &kind()),
            TypeChange::Breaking(_)
        ));
        let mut swapped = kind();
        if let AlgebraicType::Sum(s) = &mut swapped {
            Arc::make_mut(s).variants.swap(0, 1);
        }
        assert!(matches!(
            type_change(&kind(), &swapped),
            TypeChange::Breaking(_)
        ));
        let p1 = AlgebraicType::product("P", vec![field("a", AlgebraicType::U8)]);
        let p2 = AlgebraicType::product(
            "P",
            vec![field("a", AlgebraicType::U8), field("b", AlgebraicType::U8)],
        );
        assert!(matches!(type_change(&p1, &p2), TypeChange::Breaking(_)));
        assert_eq!(
            type_change(&p1, &p2),
            TypeChange::Breaking(Some("struct `P`: fields (a) become (a, b)".into()))
        );
        assert_eq!(
            type_change(&more, &kind()),
            TypeChange::Breaking(Some("enum `Kind`: variant `Axe` removed".into()))
        );
        // A difference at the top needs no reason; one inside names itself.
        assert_eq!(
            type_change(&AlgebraicType::U32, &AlgebraicType::U64),
            TypeChange::Breaking(None)
        );
        assert_eq!(
            type_change(
                &AlgebraicType::vec(AlgebraicType::U32),
                &AlgebraicType::vec(AlgebraicType::U64)
            ),
            TypeChange::Breaking(Some("u32 becomes u64".into()))
        );
    }
}
